"""Marginal effects on constructed trials whose answer is known: the mean per value with an
interval never narrower than seed-to-seed noise, an F-test across the values, continuous
ranges in quantile bins (`src/analysis/marginal_effects.py`)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from src.analysis.marginal_effects import marginal_effects, seed_variance


def test_marginal_effects_use_the_pooled_variance_and_test_across_values():
    frame = pd.DataFrame({"model.width": [0.5, 0.5, 0.5, 1.0, 1.0, 2.0],
                          "best_val_accuracy": [0.60, 0.62, 0.64, 0.70, 0.70, 0.80]})
    table = marginal_effects(frame, "model.width", "best_val_accuracy")
    assert list(table["value"]) == [0.5, 1.0, 2.0]
    assert list(table["count"]) == [3, 2, 1]
    assert table["mean"].tolist() == pytest.approx([0.62, 0.70, 0.80])
    # One-way ANOVA's residual variance: (0.02^2 + 0 + 0.02^2) / (6 - 3) over 3 degrees of freedom.
    pooled = 0.0008 / 3
    for row in table.itertuples():
        half = scipy_stats.t.ppf(0.975, 3) * math.sqrt(pooled / row.count)
        assert (row.low, row.high) == pytest.approx((row.mean - half, row.mean + half))  # one trial too
    groups = [[0.60, 0.62, 0.64], [0.70, 0.70], [0.80]]
    assert table.attrs["p_value"] == pytest.approx(scipy_stats.f_oneway(*groups).pvalue)
    assert table.attrs["variance_source"] == "within values"


def test_marginal_effects_are_never_narrower_than_seed_noise():
    """Single-seed trials of different configurations that happen to agree: the study's
    confirmation seeds say how much one configuration moves from seed to seed."""
    frame = pd.DataFrame({"dropout": [0.0, 0.0, 0.5, 0.5], "best_val_accuracy": [0.60, 0.60, 0.62, 0.62]})
    assert marginal_effects(frame, "dropout", "best_val_accuracy").attrs["p_value"] == 0.0 or \
        math.isnan(marginal_effects(frame, "dropout", "best_val_accuracy").attrs["p_value"])
    seed_var, seed_df = seed_variance({"trial 3": [0.60, 0.62, 0.64], "baseline": [0.61, 0.63, 0.65]})
    assert (seed_var, seed_df) == (pytest.approx(0.0004), 4)
    table = marginal_effects(frame, "dropout", "best_val_accuracy", seed_var=seed_var, seed_df=seed_df)
    half = scipy_stats.t.ppf(0.975, 4) * math.sqrt(0.0004 / 2)
    assert table.loc[0, "high"] - table.loc[0, "low"] == pytest.approx(2 * half)
    assert table.attrs["variance_source"] == "seed-to-seed"
    # 2 points between the values against a seed SD of 2 points, two trials each: inside the noise.
    assert table.attrs["p_value"] > 0.05
    assert seed_variance({"a": [0.6], "b": [0.7]}) == (pytest.approx(math.nan, nan_ok=True), 0)



def test_marginal_effects_bin_a_continuous_hyperparameter():
    rng = np.random.default_rng(0)
    lr = rng.uniform(1e-4, 1e-2, 40)
    frame = pd.DataFrame({"trainer.learning_rate": lr, "best_val_accuracy": 0.6 + 10 * lr})
    table = marginal_effects(frame, "trainer.learning_rate", "best_val_accuracy")
    assert len(table) == 4 and table["count"].sum() == 40
    assert table["mean"].is_monotonic_increasing
    assert ((table["low"] < table["mean"]) & (table["mean"] < table["high"])).all()


def test_marginal_effects_of_list_values_group_by_their_text():
    frame = pd.DataFrame({"model.filters": [[32, 64], [32, 64], [64, 128]], "best_val_accuracy": [0.6, 0.7, 0.8]})
    table = marginal_effects(frame, "model.filters", "best_val_accuracy")
    assert dict(zip(table["value"], table["mean"])) == pytest.approx({"[32, 64]": 0.65, "[64, 128]": 0.8})
