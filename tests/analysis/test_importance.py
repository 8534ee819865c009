"""An importance's p-value honest about its own uncertainty: each permutation p carries its
Monte Carlo range, a verdict that range leaves in doubt gets more shuffles (or is called
unsettled), and a finding repeated at Hyperband budgets that share trials counts once."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from src.analysis import importance, study_report


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


def test_a_driving_hyperparameter_gets_a_small_settled_p_after_extra_shuffles():
    """20 shuffles cannot show p < 0.05 beyond Monte Carlo doubt (0 of 20 exceedances is
    compatible with a true p of 0.17), so the shuffles double until it is settled."""
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
    assert importance.evidence(dropout["p_value"], dropout["p_adjusted"], dropout["settled"]) == "established"


def test_a_null_study_reports_each_p_with_its_monte_carlo_range():
    frame = synthetic_study(np.random.default_rng(5), 12, effect=0.0)
    table = importance.budget_importances(frame, ["dropout", "filters0"], "best_val_accuracy", None,
                                          permutations=20, bootstraps=0, trees=8)[None]
    for _, row in table.iterrows():
        assert row["p_low"] <= row["p_value"] <= row["p_high"]
        assert (row["p_low"], row["p_high"]) == pytest.approx(monte_carlo_range(row))
        assert row["permutations"] >= 20
    verdicts = [importance.evidence(p, q, s) for p, q, s in zip(table["p_value"], table["p_adjusted"],
                                                                table["settled"])]
    assert "established" not in verdicts


@pytest.fixture
def exceeding(monkeypatch):
    """fANOVA replaced by a known null: a shuffle's importance of "near" reaches the observed
    one with probability 0.045 (just under 0.05), of "far" with 0.3, of "sure" never; so the
    adaptive scheme is tested in milliseconds, against exactly known true p-values."""
    def fake_fanova(rows, params, target, trees=importance.FANOVA_TREES):
        first = target[0]  # a shuffle's first value, uniform over 0..999
        chance = {"near": 45, "far": 300, "sure": 0}
        return {p: float(first < chance[p]) for p in params}

    monkeypatch.setattr(importance, "_fanova", fake_fanova)
    return np.arange(1000.0), dict.fromkeys(("near", "far", "sure"), 1.0)


def test_a_p_far_from_the_threshold_is_settled_with_the_first_shuffles(exceeding):
    target, observed = exceeding
    result = importance.permutation_test(None, ["far"], target, observed, permutations=200, max_permutations=2000)
    assert result["far"].permutations == 200 and result["far"].settled
    assert result["far"].p_low > 0.05


def test_a_p_near_the_threshold_gets_more_shuffles_and_is_unsettled_at_the_cap(exceeding):
    """A true p of 0.045: at 200 shuffles its range spans 0.05, and even 2,000 cannot tell it
    from 0.05 (about 90 exceedances: 0.036-0.055), so it is reported unsettled there."""
    target, observed = exceeding
    result = importance.permutation_test(None, ["near", "far"], target, observed, permutations=200,
                                         max_permutations=2000)
    near = result["near"]
    assert near.permutations == 2000 and not near.settled
    assert near.p_low < 0.05 < near.p_high
    assert result["far"].permutations == 2000  # shared shuffles: every p rests on the same count
    assert importance.evidence(near.p_value, near.p_value, near.settled) == "unsettled"
    # The default cap is ten times the first count.
    assert importance.permutation_test(None, ["near"], target, observed, permutations=50)["near"].permutations == 500


def test_a_p_of_no_exceedance_is_settled_once_its_range_clears_the_adjustment(exceeding):
    """No shuffle reaches "sure": with two tests, 0 of 80 (range up to 0.045, adjusted up to
    0.09) is not yet established beyond doubt; 0 of 160 (up to 0.023, 0.046 adjusted) is."""
    target, observed = exceeding
    result = importance.permutation_test(None, ["sure", "far"], target, observed, permutations=20)
    assert result["sure"].permutations == 160 and result["sure"].settled
    assert result["sure"].p_value == pytest.approx(1 / 161)


def test_evidence_says_unsettled_only_for_a_testable_p():
    nan = float("nan")
    assert importance.evidence(0.04, 0.08, settled=False) == "unsettled"
    assert importance.evidence(nan, nan, settled=False) == "untestable"
    assert importance.evidence(0.04, 0.08) == "lead"  # an exact p (an F-test's) is settled


def flagged_tables(p_values: dict) -> dict:
    """{budget: importance table} with dropout's p per budget and width never flagged."""
    tables = {}
    for budget, p in p_values.items():
        values = [p, 0.6]
        tables[budget] = pd.DataFrame({"hyperparameter": ["dropout", "width"], "p_value": values,
                                       "p_low": values, "p_high": values, "permutations": 200,
                                       "settled": True, "p_adjusted": importance.adjusted(values)})
    return tables


def test_a_hyperparameter_flagged_at_budgets_sharing_trials_counts_once():
    """Hyperband's 3-epoch trials 10-17 continue 1-epoch trials 0-7, so dropout flagged at
    both budgets is one finding; without the lineage column the report still says so."""
    tables = flagged_tables({1: 0.01, 3: 0.02, 9: 0.4})
    frame = pd.DataFrame({"trial_id": [f"{t:04d}" for t in range(18)], "epochs": [1] * 10 + [3] * 8,
                          "continues": [""] * 10 + [f"{t:04d}" for t in range(8)]})
    sentence = study_report._shared_lineage(tables, frame, "epochs")
    assert sentence == (" dropout is named at 1 epoch and 3 epochs, but 8 of the 8 trials at 3 epochs continue "
                        "a trial at 1 epoch: these budgets are not independent, so this counts as one finding, "
                        "not corroboration.")
    unrecorded = study_report._shared_lineage(tables, frame.drop(columns="continues"), "epochs")
    assert "Hyperband continues trials from lower budgets (the runs do not record which)" in unrecorded
    assert "counts as one finding" in unrecorded
    fresh = study_report._shared_lineage(tables, frame.assign(continues=""), "epochs")
    assert "no trial at 3 epochs continues one at 1 epoch" in fresh
    # Flagged at one budget only: nothing to say.
    assert study_report._shared_lineage(flagged_tables({1: 0.01, 3: 0.4}), frame, "epochs") == ""
