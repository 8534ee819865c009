"""The noise floor of an importance (`src/analysis/noise_floor.py`): the permutation p-value
calibrated on synthetic studies of known truth, the bootstrap interval, and a p honest about
its own Monte Carlo error (a verdict its range leaves in doubt gets more shuffles, or is
called unsettled)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from src.analysis import fanova, noise_floor, verdicts
from src.analysis.importance import budget_importances


def synthetic_study(rng: np.random.Generator, trials: int, effect: float, noise: float) -> pd.DataFrame:
    """A study whose truth is known: only `dropout` moves the objective (by `effect` per step
    of 0.25), plus normal noise of SD `noise`; the filters are tried but do nothing."""
    frame = pd.DataFrame({"dropout": rng.choice([0.0, 0.25, 0.5], trials),
                          "filters0": rng.choice([16, 32, 64], trials),
                          "filters1": rng.choice([32, 64, 128], trials)})
    frame["best_val_accuracy"] = 0.6 + effect * frame["dropout"] / 0.25 + rng.normal(0, noise, trials)
    return frame


@pytest.mark.slow  # a calibration over 20 synthetic studies (~16 s): the loop leaves calibrations to the suite
def test_the_driving_hyperparameter_clears_the_noise_and_the_others_rarely_do():
    """Over 20 synthetic studies of 12 trials (effect 3 points a step, noise SD 1 point),
    dropout's permutation p-value is below 0.05 in most; the filters', which do nothing, in
    about 5 % (the test is conservative while another hyperparameter drives the objective:
    shuffling removes that effect too). Seeds are fixed, so the counts are the same every run;
    the bounds leave room for the binomial spread of 40 null p-values (5 % of 40 is 2). An
    8-tree forest keeps it to seconds; reports use optuna's 64, a steadier statistic. The count
    of shuffles is fixed (max_permutations): this checks the test's calibration, and
    the tests of `permutation_test` below the extra shuffles a report adds near 0.05."""
    rng = np.random.default_rng(7)
    hits = {"dropout": 0, "filters0": 0, "filters1": 0}
    draws = 20
    for _ in range(draws):
        frame = synthetic_study(rng, 12, effect=0.03, noise=0.01)
        table = budget_importances(frame, list(hits), "best_val_accuracy", None, permutations=39,
                                   max_permutations=39, bootstraps=0, trees=8)[None].set_index("hyperparameter")
        for name in hits:
            hits[name] += table.loc[name, "p_value"] < 0.05
    print("significant in", hits, "of", draws)
    assert hits["dropout"] >= 0.8 * draws
    assert hits["filters0"] + hits["filters1"] <= 0.1 * 2 * draws


@pytest.mark.slow  # a calibration over 20 synthetic studies (~16 s): the loop leaves calibrations to the suite
def test_pure_noise_is_significant_about_five_percent_of_the_time():
    """With no effect at all, the permutation p-values are uniform: about 5 % fall below 0.05
    (fixed seeds; 60 p-values, so 3 are expected and 8 would be a 1-in-100 excess)."""
    rng = np.random.default_rng(11)
    significant, total = 0, 0
    for _ in range(20):
        frame = synthetic_study(rng, 12, effect=0.0, noise=0.01)
        table = budget_importances(frame, ["dropout", "filters0", "filters1"], "best_val_accuracy", None,
                                   permutations=39, max_permutations=39, bootstraps=0, trees=8)[None]
        significant += int((table["p_value"] < 0.05).sum())
        total += len(table)
    print(f"pure noise: {significant} of {total} p-values below 0.05")
    assert significant <= 8


def test_the_bootstrap_interval_brackets_the_importance():
    frame = synthetic_study(np.random.default_rng(3), 16, effect=0.02, noise=0.005)
    table = budget_importances(frame, ["dropout", "filters0", "filters1"], "best_val_accuracy", None,
                               permutations=19, max_permutations=19, bootstraps=30)[None].set_index("hyperparameter")
    assert table.loc["dropout", "p_value"] == pytest.approx(1 / 20)  # no shuffle matches it
    assert 0 <= table.loc["dropout", "importance_low"] < table.loc["dropout", "importance_high"] <= 1
    assert table.loc["dropout", "importance_low"] > table.loc["filters0", "importance_high"] - 0.5


@pytest.fixture
def exceeding(monkeypatch):
    """fANOVA replaced by a known null: a shuffle's importance of "near" reaches the observed
    one with probability 0.045 (just under 0.05), of "far" with 0.3, of "sure" never; so the
    adaptive scheme is tested in milliseconds, against exactly known true p-values."""
    def fake_fanova(rows, params, target, trees=fanova.FANOVA_TREES):
        first = target[0]  # a shuffle's first value, uniform over 0..999
        chance = {"near": 45, "far": 300, "sure": 0}
        return {p: float(first < chance[p]) for p in params}

    monkeypatch.setattr(fanova, "importances", fake_fanova)
    monkeypatch.setattr(noise_floor, "MAX_PERMUTATIONS_FACTOR", 10)  # the default (the suite's is 1: conftest)
    return np.arange(1000.0), dict.fromkeys(("near", "far", "sure"), 1.0)


def test_a_p_far_from_the_threshold_is_settled_with_the_first_shuffles(exceeding):
    target, observed = exceeding
    result = noise_floor.permutation_test(None, ["far"], target, observed, permutations=200, max_permutations=2000)
    assert result["far"].permutations == 200 and result["far"].settled
    assert result["far"].p_low > 0.05


def test_a_p_near_the_threshold_gets_more_shuffles_and_is_unsettled_at_the_cap(exceeding):
    """A true p of 0.045: at 200 shuffles its range spans 0.05, and even 2,000 cannot tell it
    from 0.05 (about 90 exceedances: 0.036-0.055), so it is reported unsettled there."""
    target, observed = exceeding
    result = noise_floor.permutation_test(None, ["near", "far"], target, observed, permutations=200,
                                         max_permutations=2000)
    near = result["near"]
    assert near.permutations == 2000 and not near.settled
    assert near.p_low < 0.05 < near.p_high
    assert result["far"].permutations == 2000  # shared shuffles: every p rests on the same count
    assert verdicts.evidence(near.p_value, near.p_value, near.settled) == "unsettled"
    # The default cap is ten times the first count.
    assert noise_floor.permutation_test(None, ["near"], target, observed, permutations=50)["near"].permutations == 500


def test_a_p_of_no_exceedance_is_settled_once_its_range_clears_the_adjustment(exceeding):
    """No shuffle reaches "sure": with two tests, 0 of 80 (range up to 0.045, adjusted up to
    0.09) is not yet established beyond doubt; 0 of 160 (up to 0.023, 0.046 adjusted) is."""
    target, observed = exceeding
    result = noise_floor.permutation_test(None, ["sure", "far"], target, observed, permutations=20)
    assert result["sure"].permutations == 160 and result["sure"].settled
    assert result["sure"].p_value == pytest.approx(1 / 161)
