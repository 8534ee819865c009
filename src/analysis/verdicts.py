"""What a p-value lets a report say: the p-values adjusted for the number of tests at a
budget, and one rule from p-values to a verdict ("established", "lead", "noise",
"unsettled", "untestable") that every importance table, headline and F-test shares.
"""
from __future__ import annotations

import math
from typing import List

import numpy as np
from scipy import stats as scipy_stats

SIGNIFICANCE = 0.05


def adjusted(p_values: List[float]) -> List[float]:
    """The p-values adjusted for testing every hyperparameter at a budget (Benjamini-Hochberg,
    scipy's false_discovery_control): with 4 hyperparameters and no effect at all, one of them
    clears p < 0.05 by chance about 1 time in 5. NaN (not testable) stays NaN and is not counted."""
    values = np.asarray(p_values, dtype=float)
    result = np.full(len(values), math.nan)
    testable = ~np.isnan(values)
    if testable.any():
        result[testable] = scipy_stats.false_discovery_control(values[testable], method="bh")
    return result.tolist()


def evidence(p_value: float, p_adjusted: float, settled: bool = True) -> str:
    """What a test's p-values let the report say, one rule for every table and sentence:
    "established" (p < SIGNIFICANCE after counting every test at the budget), "lead" (only before
    that count: a lone p just under 0.05 is what chance gives one of several), "noise",
    "unsettled" (a permutation p whose Monte Carlo range spans two of these verdicts even after
    the extra shuffles: `settled` False) or "untestable" (no p-value). An exact p (an F-test's)
    is always settled."""
    if math.isnan(p_value):
        return "untestable"
    if not settled:
        return "unsettled"
    if not math.isnan(p_adjusted) and p_adjusted < SIGNIFICANCE:
        return "established"
    return "lead" if p_value < SIGNIFICANCE else "noise"
