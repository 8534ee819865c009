"""fANOVA importance tables per budget (`src/analysis/importance.py`) on synthetic trials of
known truth: the driving hyperparameter ranked first at each budget, Hyperband's budget never
ranked, too few trials left out, and each importance carrying its noise floor's columns."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from src.analysis import importance, noise_floor
from src.analysis.importance import budget_importances, headline_budget, trial_counts
from src.analysis.verdicts import evidence


def synthetic_study(rng: np.random.Generator, trials: int, effect: float) -> pd.DataFrame:
    """Only dropout moves the objective (by `effect` a step), plus noise of SD 0.01."""
    frame = pd.DataFrame({"dropout": rng.choice([0.0, 0.25, 0.5], trials),
                          "filters0": rng.choice([16, 32, 64], trials)})
    frame["best_val_accuracy"] = 0.6 + effect * frame["dropout"] / 0.25 + rng.normal(0, 0.01, trials)
    return frame


def monte_carlo_range(row) -> tuple:
    """Clopper-Pearson 95 % on the exceedances behind a p = (1 + b) / (1 + B)."""
    exceed = round(row["p_value"] * (row["permutations"] + 1)) - 1
    ci = scipy_stats.binomtest(exceed, int(row["permutations"])).proportion_ci(0.95, method="exact")
    return ci.low, ci.high


def test_a_driving_hyperparameter_gets_a_small_settled_p_after_extra_shuffles(monkeypatch):
    """20 shuffles cannot show p < 0.05 beyond Monte Carlo doubt (0 of 20 exceedances is
    compatible with a true p of 0.17), so the shuffles double until it is settled."""
    monkeypatch.setattr(noise_floor, "MAX_PERMUTATIONS_FACTOR", 10)  # the default (the suite's is 1: conftest)
    frame = synthetic_study(np.random.default_rng(3), 12, effect=0.03)
    table = importance.budget_importances(frame, ["dropout", "filters0"], "best_val_accuracy", None,
                                          permutations=20, bootstraps=0, trees=8)[None].set_index("hyperparameter")
    assert list(table.reset_index().columns) == importance.IMPORTANCE_COLUMNS
    dropout = table.loc["dropout"]
    assert 20 < dropout["permutations"] <= 200 and dropout["settled"]
    assert dropout["p_value"] < dropout["p_high"] < 0.05 and dropout["p_adjusted"] < 0.05
    assert (dropout["p_low"], dropout["p_high"]) == pytest.approx(monte_carlo_range(dropout))
    # Every hyperparameter rests on the same shuffles: each fANOVA fit scores them all.
    assert table.loc["filters0", "permutations"] == dropout["permutations"]
    assert evidence(dropout["p_value"], dropout["p_adjusted"], dropout["settled"]) == "established"


def test_a_null_study_reports_each_p_with_its_monte_carlo_range():
    frame = synthetic_study(np.random.default_rng(5), 12, effect=0.0)
    table = importance.budget_importances(frame, ["dropout", "filters0"], "best_val_accuracy", None,
                                          permutations=20, bootstraps=0, trees=8)[None]
    for _, row in table.iterrows():
        assert row["p_low"] <= row["p_value"] <= row["p_high"]
        assert (row["p_low"], row["p_high"]) == pytest.approx(monte_carlo_range(row))
        assert row["permutations"] >= 20
    verdicts = [evidence(p, q, s) for p, q, s in zip(table["p_value"], table["p_adjusted"], table["settled"])]
    assert "established" not in verdicts


def hyperband_table(seed: int = 0) -> pd.DataFrame:
    """Trials at four rungs (fewer at the higher ones, as Hyperband runs them);
    only dropout moves the objective, and more so with more epochs."""
    rng = np.random.default_rng(seed)
    rows = []
    for epochs, trials in ((2, 24), (6, 12), (18, 8), (54, 3)):
        for _ in range(trials):
            dropout = float(rng.choice(np.round(np.arange(0.1, 0.65, 0.1), 1)))
            rows.append({"trainer.epochs": epochs, "model.dropout": dropout,
                         "model.width": float(rng.choice([0.5, 1.0, 2.0])),
                         "model.filters": [[32, 64, 128], [64, 128, 256]][rng.integers(2)],
                         "optimizer": "adam",
                         "best_val_accuracy": 0.5 + 0.3 * dropout * epochs / 54 + rng.normal(0, 1e-4)})
    return pd.DataFrame(rows)


@pytest.mark.slow  # fANOVA with permutations over many synthetic trials
def test_importances_per_budget_rank_the_driving_hyperparameter_first():
    frame = hyperband_table()
    params = ["trainer.epochs", "model.dropout", "model.width", "model.filters", "optimizer"]
    # The ranking is what is checked here, so no extra shuffles for the p-values (test_noise_floor.py):
    # with the escalation to settle them this test took 76 s of the suite.
    result = budget_importances(frame, params, "best_val_accuracy", budget="trainer.epochs",
                                permutations=20, max_permutations=20)
    counts = trial_counts(frame, "best_val_accuracy", "trainer.epochs")
    assert counts == {2: 24, 6: 12, 18: 8, 54: 3}
    assert sorted(result) == [2, 6, 18]  # 3 trials at 54 epochs are too few
    for epochs, table in result.items():
        assert "trainer.epochs" not in set(table["hyperparameter"])
        assert table.iloc[0]["hyperparameter"] == "model.dropout", (epochs, table)
        assert table.iloc[0]["importance"] > 0.5
        assert table["importance"].sum() == pytest.approx(1.0)
        # One optimizer throughout: nothing to attribute, so no number, listed last.
        assert table.iloc[-1]["hyperparameter"] == "optimizer" and math.isnan(table.iloc[-1]["importance"])
        assert (table["trials"] == counts[epochs]).all()
    assert headline_budget(result, counts) == 18
    assert headline_budget(result, {**counts, 18: 5}) == 6


def test_importances_without_a_budget_pool_all_trials():
    frame = hyperband_table().query("`trainer.epochs` == 2")
    # The ranking is what is checked here, so no extra shuffles for the p-values (test_noise_floor.py).
    result = budget_importances(frame, ["model.dropout", "model.width"], "best_val_accuracy", budget=None,
                                permutations=20, max_permutations=20)
    assert list(result) == [None]
    assert result[None].iloc[0]["hyperparameter"] == "model.dropout"
    assert budget_importances(frame.head(4), ["model.dropout"], "best_val_accuracy", budget=None) == {}


def test_a_constant_objective_has_no_importances():
    frame = hyperband_table().query("`trainer.epochs` == 2").assign(best_val_accuracy=0.7)
    table = budget_importances(frame, ["model.dropout", "model.width"], "best_val_accuracy", None)[None]
    assert table["importance"].isna().all()
