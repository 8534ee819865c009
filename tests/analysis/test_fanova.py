"""optuna's side of the importance analysis (`src/analysis/fanova.py`): what each column of
tried values becomes in an in-memory optuna study, and fANOVA importances over it."""
from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest

from src.analysis.fanova import hashable, importances, numeric_values, optuna_study


def test_each_column_gets_the_distribution_its_tried_values_imply():
    rows = pd.DataFrame({"epochs": [5, 10, 20], "lr": [1e-3, 1e-2, 1e-4], "dropout": [0.0, 0.25, 0.5],
                         "filters": [[32, 64], [64, 128], [32, 64]], "augment": [True, False, True]})
    study = optuna_study(rows, list(rows.columns), np.array([0.6, 0.7, 0.65]), log=["lr", "dropout"])
    distributions = study.trials[0].distributions
    assert distributions["epochs"] == optuna.distributions.IntDistribution(5, 20)
    assert distributions["lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    # A log scale needs values > 0: a dropout range from 0 stays linear.
    assert distributions["dropout"] == optuna.distributions.FloatDistribution(0.0, 0.5, log=False)
    # Lists and booleans are categories (their text), never a range to interpolate over.
    assert distributions["filters"] == optuna.distributions.CategoricalDistribution(["[32, 64]", "[64, 128]"])
    assert distributions["augment"] == optuna.distributions.CategoricalDistribution(["False", "True"])
    assert [t.value for t in study.trials] == pytest.approx([0.6, 0.7, 0.65])
    assert study.trials[1].params == {"epochs": 10, "lr": 1e-2, "dropout": 0.25, "filters": "[64, 128]",
                                      "augment": "False"}


def test_values_are_numbers_only_when_every_one_is():
    assert numeric_values(pd.Series(["0.5", "1.0"])).tolist() == [0.5, 1.0]  # as MLflow logs params
    assert numeric_values(pd.Series([0.5, "adam"])) is None
    assert numeric_values(pd.Series([True, False])) is None
    assert numeric_values(pd.Series([[32, 64], [64, 128]])) is None
    assert hashable([32, 64]) == "[32, 64]" and hashable(0.5) == 0.5


def test_importances_sum_to_one_and_rank_the_driving_hyperparameter_first():
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"dropout": rng.choice([0.0, 0.25, 0.5], 16), "width": rng.choice([0.5, 1.0, 2.0], 16)})
    target = (0.6 + 0.1 * rows["dropout"] + rng.normal(0, 1e-3, 16)).to_numpy()
    scores = importances(rows, ["dropout", "width"], target, trees=8)
    assert sum(scores.values()) == pytest.approx(1.0)
    assert scores["dropout"] > 0.9 > scores["width"]
    assert importances(rows, ["dropout", "width"], target, trees=8) == scores  # seed 0: reruns agree
