"""Marginal effects: the objective's mean per value of one hyperparameter, averaged over
the others, with intervals no narrower than the study's seed-to-seed noise and an F-test
across the values.

Pure functions over a table of trials, as `importance`'s; filter it to one budget
first, since means over mixed budgets mostly measure the budget.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Tuple

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from src.analysis.fanova import hashable, numeric_values


def seed_variance(groups: Mapping[Any, Any]) -> Tuple[float, int]:
    """The objective's seed-to-seed variance, pooled over configurations each trained with
    several seeds (a study's confirmation runs): (variance, degrees of freedom); (nan, 0) if
    no configuration has two seeds."""
    squares, df = 0.0, 0
    for values in groups.values():
        values = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
        if len(values) > 1:
            squares += float(((values - values.mean()) ** 2).sum())
            df += len(values) - 1
    return (squares / df, df) if df else (math.nan, 0)


def marginal_effects(frame: pd.DataFrame, param: str, objective: str, max_bins: int = 4,
                     confidence: float = 0.95, seed_var: float = math.nan, seed_df: int = 0) -> pd.DataFrame:
    """Mean `objective` per value of `param`, averaged over everything else, with an interval
    that cannot be narrower than seed-to-seed noise, and a test across the values.

    Numbers with more than `max_bins` distinct values (continuous ranges) are
    grouped into at most `max_bins` quantile bins (`pd.qcut`), so each group
    has enough trials to average; otherwise one row per value, in order.
    Filter to one budget first: means over mixed budgets mostly measure the
    budget.

    Each trial is one seed of one configuration, so a value tried once (or by trials that
    happen to agree) says nothing about its noise. The residual variance is the larger of the
    pooled within-value variance (one-way ANOVA's) and `seed_var`, the study's own
    seed-to-seed variance (`seed_variance` of its confirmation runs), with the degrees of
    freedom of whichever is used. Returns DataFrame[value, count, mean, low, high] with
    low/high a t-interval of each mean at `confidence` (NaN when there is no variance to
    use); `attrs` hold the F-test across values: `f_statistic`, `p_value`, `variance_source`.
    """
    data = frame.dropna(subset=[objective])
    values = data[param].map(hashable)
    numeric = numeric_values(values)
    if numeric is not None and numeric.nunique() > max_bins:
        keys = pd.qcut(numeric, q=max_bins, duplicates="drop")
    elif numeric is not None:
        keys = numeric
    else:
        keys = values.astype(str)
    groups = [(key, group.to_numpy()) for key, group in data[objective].astype(float).groupby(keys, sort=True,
                                                                                                observed=True)]
    total = sum(len(g) for _, g in groups)
    within_df = total - len(groups)
    within = (sum(float(((g - g.mean()) ** 2).sum()) for _, g in groups) / within_df) if within_df > 0 else math.nan
    candidates = [(v, df, source) for v, df, source in ((within, within_df, "within values"),
                                                        (seed_var, seed_df, "seed-to-seed"))
                  if df > 0 and math.isfinite(v)]
    variance, df, source = max(candidates, key=lambda c: c[0]) if candidates else (math.nan, 0, "none")
    rows = []
    for key, group in groups:
        count, mean = len(group), float(group.mean())
        if df and variance > 0:
            half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(variance / count)
            low, high = mean - half, mean + half
        elif df:
            low = high = mean  # every trial alike and no seed noise known: nothing to widen by
        else:
            low = high = math.nan
        rows.append({"value": key, "count": count, "mean": mean, "low": low, "high": high})
    table = pd.DataFrame(rows, columns=["value", "count", "mean", "low", "high"])
    f_statistic = p_value = math.nan
    if len(groups) > 1 and df and variance > 0:
        grand = float(np.concatenate([g for _, g in groups]).mean())
        between = sum(len(g) * (float(g.mean()) - grand) ** 2 for _, g in groups) / (len(groups) - 1)
        f_statistic = between / variance
        p_value = float(scipy_stats.f.sf(f_statistic, len(groups) - 1, df))
    table.attrs.update(f_statistic=f_statistic, p_value=p_value, variance_source=source, df=df)
    return table
