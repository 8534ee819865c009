"""One rule from p-values to what a report may say (`src/analysis/verdicts.py`): established
only after counting every test at the budget, a lead before it, unsettled where the Monte Carlo
range spans a verdict, else noise."""
from __future__ import annotations

from src.analysis import verdicts


def test_one_rule_says_what_a_test_established():
    """verdicts.evidence is the rule the headline, the other budgets' notes and the F-tests'
    verdicts share: established only after the count, a lead before it, else noise."""
    nan = float("nan")
    assert verdicts.evidence(0.001, 0.004) == "established"
    assert verdicts.evidence(0.03, 0.06) == "lead"
    assert verdicts.evidence(0.4, 0.53) == "noise"
    assert verdicts.evidence(0.05, 0.05) == "noise"  # the boundary is excluded, as p < 0.05 says
    assert verdicts.evidence(nan, nan) == "untestable"
    assert verdicts.evidence(0.01, nan) == "lead"  # an unadjusted p never establishes on its own
    assert verdicts.evidence(0.03, 0.06, settled=False) == "unsettled"  # Monte Carlo error spans a verdict


def test_evidence_says_unsettled_only_for_a_testable_p():
    nan = float("nan")
    assert verdicts.evidence(0.04, 0.08, settled=False) == "unsettled"
    assert verdicts.evidence(nan, nan, settled=False) == "untestable"
    assert verdicts.evidence(0.04, 0.08) == "lead"  # an exact p (an F-test's) is settled
