"""The noise floor of a fANOVA importance: a permutation p-value with its Monte Carlo
error, and a bootstrap interval.

With a handful of trials an importance of 0.5 can be pure noise, so each one is
reported with how often chance alone gives as large an importance (the objective
shuffled across the trials, so no hyperparameter can matter) and how far it moves when
the trials are resampled. A p-value from B shuffles is itself an estimate; where its
Monte Carlo range leaves the verdict (`verdicts.evidence`) in doubt, the shuffles are
doubled, up to a cap, and a verdict still in doubt there is reported unsettled.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from src.analysis import fanova
from src.analysis.verdicts import adjusted, evidence
from src.config.errors import env_count

# Fixed seeds: a report reads the same twice. REPORT_RESAMPLES lowers both counts for a quick
# look (the test suite's reports use 20); a report states the counts it used.
PERMUTATIONS = BOOTSTRAPS = env_count("REPORT_RESAMPLES", 200)
# A p-value from B shuffles is an estimate with binomial Monte Carlo error: 5 exceedances of 200
# (p = 0.030) are compatible with a true p of 0.008 to 0.057. A verdict its Monte Carlo range
# leaves in doubt gets more shuffles, doubling up to this factor times the first count (2,000
# by default: enough to tell 0.03 from 0.05), and is reported unsettled if still in doubt there.
# Each shuffle scores every hyperparameter at once, so the extra shuffles serve them all.
# REPORT_PERMUTATIONS_FACTOR=1 keeps the first count (the test suite's, where a report's wording,
# not its p-values' precision, is checked).
MAX_PERMUTATIONS_FACTOR = env_count("REPORT_PERMUTATIONS_FACTOR", 10)
MONTE_CARLO_CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class NoiseFloor:
    """One hyperparameter's noise floor (NaN, 0 shuffles and settled where it is not testable)."""
    importance_low: float = math.nan  # bootstrap 2.5 %
    importance_high: float = math.nan  # bootstrap 97.5 %
    p_value: float = math.nan  # permutation p-value, (1 + b) / (1 + B)
    p_low: float = math.nan  # its Monte Carlo range: Clopper-Pearson on b of B
    p_high: float = math.nan
    permutations: int = 0  # B, the shuffles it rests on
    settled: bool = True  # whether the verdict (`evidence`) is the same across that range


def noise_floor(rows: pd.DataFrame, params: List[str], target: np.ndarray, permutations: int = PERMUTATIONS,
                bootstraps: int = BOOTSTRAPS, seed: int = 0, trees: Optional[int] = None,
                max_permutations: Optional[int] = None) -> Dict[str, NoiseFloor]:
    """{hyperparameter: NoiseFloor} of its fANOVA importance.

    p-value: the statistic is the fANOVA importance of the hyperparameter, against the objective
    shuffled across the trials (any effect destroyed, the trials' hyperparameters kept): (1 +
    shuffles with an importance >= the observed) / (1 + shuffles), a one-sided test of "this
    hyperparameter explains more than chance would". `permutation_test` says how many shuffles
    (`permutations`, extended up to `max_permutations`) and how far the estimate can be off.
    Interval: trials resampled with replacement `bootstraps` times, percentiles of the importance
    (a resample where the objective or the hyperparameter does not vary counts as 0).
    """
    observed = fanova.importances(rows, params, target, trees)
    tests = permutation_test(rows, params, target, observed, permutations, max_permutations, seed, trees)
    # Its own stream, so the interval does not depend on how many shuffles the p-values took.
    rng = np.random.default_rng(seed + 1)
    resampled = {p: [] for p in params}
    for _ in range(bootstraps):
        pick = rng.integers(0, len(rows), len(rows))
        sample, values = rows.iloc[pick], target[pick]
        varying = [p for p in params if sample[p].map(fanova.hashable).nunique() > 1]
        scores = fanova.importances(sample, varying, values, trees) if varying and np.ptp(values) > 0 else {}
        for p in params:
            resampled[p].append(scores.get(p, 0.0))
    return {p: dataclasses.replace(tests[p], importance_low=float(np.percentile(resampled[p], 2.5)),
                                   importance_high=float(np.percentile(resampled[p], 97.5)))
            if bootstraps else tests[p] for p in params}


def permutation_test(rows: pd.DataFrame, params: List[str], target: np.ndarray, observed: Dict[str, float],
                     permutations: int = PERMUTATIONS, max_permutations: Optional[int] = None, seed: int = 0,
                     trees: Optional[int] = None) -> Dict[str, NoiseFloor]:
    """Permutation p-values of `observed` importances, each with its Monte Carlo range.

    Starts with `permutations` shuffles; while some hyperparameter's verdict (`evidence` of its
    p and of the budget's adjusted p's) differs between the two ends of its Monte Carlo range,
    doubles the shuffles, up to `max_permutations` (default MAX_PERMUTATIONS_FACTOR times the
    start). Every hyperparameter gets the final count, so their p's stay comparable."""
    cap = max(permutations, MAX_PERMUTATIONS_FACTOR * permutations if max_permutations is None else max_permutations)
    rng = np.random.default_rng(seed)
    exceed, done, goal = dict.fromkeys(params, 0), 0, permutations
    while True:
        for _ in range(goal - done):
            null = fanova.importances(rows, params, rng.permutation(target), trees)
            for p in params:
                exceed[p] += null[p] >= observed[p] - 1e-12
        done = goal
        result = _monte_carlo(exceed, done)
        if done >= cap or all(r.settled for r in result.values()):
            return result
        goal = min(2 * done, cap)


def _monte_carlo(exceed: Dict[str, int], shuffles: int) -> Dict[str, NoiseFloor]:
    """p-values from `exceed` of `shuffles`, their Clopper-Pearson ranges, and whether each
    verdict holds across its range (the adjusted p's taken at the low and the high ends alike:
    Benjamini-Hochberg never lowers an adjusted p when a p rises)."""
    if not shuffles:
        return dict.fromkeys(exceed, NoiseFloor())
    ranges = {p: scipy_stats.binomtest(int(b), shuffles).proportion_ci(MONTE_CARLO_CONFIDENCE, method="exact")
              for p, b in exceed.items()}
    low, high = [r.low for r in ranges.values()], [r.high for r in ranges.values()]
    values = [(1 + b) / (1 + shuffles) for b in exceed.values()]
    verdicts = zip(map(evidence, values, adjusted(values)), map(evidence, low, adjusted(low)),
                   map(evidence, high, adjusted(high)))
    return {p: NoiseFloor(p_value=v, p_low=lo, p_high=hi, permutations=shuffles, settled=len(set(kinds)) == 1)
            for p, v, lo, hi, kinds in zip(exceed, values, low, high, verdicts)}
