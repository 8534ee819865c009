"""The study report's importance wording (`src/analysis/study_importance.py`): a headline that
names only what clears the noise once every test is counted, and a finding repeated at
Hyperband budgets that share trials counted once."""
from __future__ import annotations

import pandas as pd
import pytest

from src.analysis import study_importance, verdicts


def test_a_p_value_that_clears_only_before_counting_the_tests_is_named_a_lead():
    """Four hyperparameters tested at a budget: filters2's p of 0.001 survives the adjustment,
    dropout's 0.03 does not (Benjamini-Hochberg: 0.03 * 4 / 2 = 0.06), and the headline says so."""
    p_values = [0.001, 0.03, 0.4, 0.8]
    assert verdicts.adjusted(p_values) == pytest.approx([0.004, 0.06, 0.5333333, 0.8])
    assert verdicts.adjusted([0.01, float("nan")])[0] == pytest.approx(0.01)  # NaN: not a test
    table = pd.DataFrame({"hyperparameter": ["filters2", "dropout", "filters1", "filters3"],
                          "importance": [0.6, 0.2, 0.1, 0.1], "importance_low": [0.3, 0.05, 0.0, 0.0],
                          "importance_high": [0.8, 0.5, 0.3, 0.3], "p_value": p_values,
                          "p_low": [0.0, 0.02, 0.3, 0.7], "p_high": [0.003, 0.042, 0.5, 0.9], "permutations": 2000,
                          "settled": True, "p_adjusted": verdicts.adjusted(p_values)})
    headline = study_importance.importance_headline(table, 8, "20 epochs", "val_accuracy")
    assert headline.startswith("What matters at 20 epochs (statistic: the fANOVA importance of the hyperparameter, "
                               "against the objective shuffled across trials; 8 trials, permutation p < 0.05 after "
                               "counting the 4 hyperparameters tested, Benjamini-Hochberg): filters2 0.60 (95 % "
                               "0.30-0.80, p = 0.001 (Monte Carlo 95 % 0.000-0.003, 2000 shuffles), 0.004 adjusted).")
    assert (" A lead to confirm, not an established effect (p < 0.05 only before that count): dropout 0.20 "
            "(95 % 0.05-0.50, p = 0.030 (Monte Carlo 95 % 0.020-0.042, 2000 shuffles), 0.060 adjusted).") in headline
    assert headline.endswith(" Not distinguishable from noise: filters1, filters3.")
    # Only leads: nothing is said to matter.
    only_leads = table.assign(p_value=[0.03, 0.04, 0.4, 0.8], p_adjusted=verdicts.adjusted([0.03, 0.04, 0.4, 0.8]))
    headline = study_importance.importance_headline(only_leads, 8, "20 epochs", "val_accuracy")
    assert headline.startswith("At 20 epochs no hyperparameter's effect is established above the noise in 8 trials "
                               "once the 4 hyperparameters tested are counted")
    assert "What matters" not in headline and "A lead to confirm" in headline
    # A verdict the Monte Carlo range leaves in doubt is named as unsettled, neither a lead nor noise.
    unsettled = table.assign(settled=[True, False, True, True])
    headline = study_importance.importance_headline(unsettled, 8, "20 epochs", "val_accuracy")
    assert "A lead to confirm" not in headline
    assert (" Unsettled (the p-value's Monte Carlo range spans a threshold even after the extra shuffles, so more "
            "shuffles could change the verdict): dropout 0.20") in headline
    assert headline.endswith(" Not distinguishable from noise: filters1, filters3.")


def flagged_tables(p_values: dict) -> dict:
    """{budget: importance table} with dropout's p per budget and width never flagged."""
    tables = {}
    for budget, p in p_values.items():
        values = [p, 0.6]
        tables[budget] = pd.DataFrame({"hyperparameter": ["dropout", "width"], "p_value": values,
                                       "p_low": values, "p_high": values, "permutations": 200,
                                       "settled": True, "p_adjusted": verdicts.adjusted(values)})
    return tables


def test_a_hyperparameter_flagged_at_budgets_sharing_trials_counts_once():
    """Hyperband's 3-epoch trials 10-17 continue 1-epoch trials 0-7, so dropout flagged at
    both budgets is one finding; without the lineage column the report still says so."""
    tables = flagged_tables({1: 0.01, 3: 0.02, 9: 0.4})
    frame = pd.DataFrame({"trial_id": [f"{t:04d}" for t in range(18)], "epochs": [1] * 10 + [3] * 8,
                          "continues": [""] * 10 + [f"{t:04d}" for t in range(8)]})
    sentence = study_importance._shared_lineage(tables, frame, "epochs")
    assert sentence == (" dropout is named at 1 epoch and 3 epochs, but 8 of the 8 trials at 3 epochs continue "
                        "a trial at 1 epoch: these budgets are not independent, so this counts as one finding, "
                        "not corroboration.")
    unrecorded = study_importance._shared_lineage(tables, frame.drop(columns="continues"), "epochs")
    assert "Hyperband continues trials from lower budgets (the runs do not record which)" in unrecorded
    assert "counts as one finding" in unrecorded
    fresh = study_importance._shared_lineage(tables, frame.assign(continues=""), "epochs")
    assert "no trial at 3 epochs continues one at 1 epoch" in fresh
    # Flagged at one budget only: nothing to say.
    assert study_importance._shared_lineage(flagged_tables({1: 0.01, 3: 0.4}), frame, "epochs") == ""
