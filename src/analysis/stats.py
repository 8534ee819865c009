"""Small statistics for comparing runs: spreads, differences, importances."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats


def mean_std(values: np.ndarray) -> str:
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return f"{values.mean():.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f} (sd)"


@dataclass
class Difference:
    estimate: float
    half_width: float  # of a 95 % interval
    method: str


def difference(a: np.ndarray, b: np.ndarray, test_size: int) -> Difference:
    """mean(a) - mean(b) with a 95 % interval.

    With at least two runs on each side, Welch's t-interval over runs (it
    covers seed-to-seed variation). Otherwise only the test set's sampling
    error can be estimated: a binomial standard error per accuracy on
    `test_size` images, which understates the uncertainty (seeds vary too).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    estimate = a.mean() - b.mean()
    if len(a) >= 2 and len(b) >= 2:
        low, high = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
        return Difference(estimate, float(high - low) / 2, f"Welch t over {len(a)} and {len(b)} runs")
    se = math.sqrt(sum(p * (1 - p) / test_size for p in (a.mean(), b.mean())))
    return Difference(estimate, float(scipy_stats.norm.ppf(0.975) * se),
                      f"test-set sampling error only ({test_size} images); seed variation not included")


def importances(frame: pd.DataFrame, columns: List[str], objective: str) -> Optional[pd.DataFrame]:
    """Random-forest and permutation importances of `columns` for `objective`."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    data = frame.dropna(subset=[objective])
    if len(data) < 4 or not columns:
        return None
    features = pd.DataFrame({c: _encode(data[c]) for c in columns})
    target = data[objective].to_numpy(dtype=float)
    forest = RandomForestRegressor(n_estimators=500, random_state=0, min_samples_leaf=1).fit(features, target)
    permuted = permutation_importance(forest, features, target, n_repeats=20, random_state=0)
    table = pd.DataFrame({"hyperparameter": columns, "forest_importance": forest.feature_importances_,
                          "permutation_importance": permuted.importances_mean})
    return table.sort_values(["forest_importance", "hyperparameter"], ascending=[False, True]).reset_index(drop=True)


def _encode(values: pd.Series) -> np.ndarray:
    """Numbers as they are; anything else (lists of filters, words) as ordered codes."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        return numeric.to_numpy(dtype=float)
    labels = sorted(values.astype(str).unique())
    return values.astype(str).map({label: i for i, label in enumerate(labels)}).to_numpy(dtype=float)
