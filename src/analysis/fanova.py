"""optuna's side of the importance analysis: a table of trials as an in-memory optuna
study, and optuna's fANOVA importances over it.

A trials table has one row per trial and one column per hyperparameter, whose values
may be numbers, words, booleans or lists (a filter list is one value). optuna needs a
distribution per parameter, so it is inferred from what the trials tried. Used by the
importance tables (`importance`, `noise_floor`) and optuna's figures (`study_figures`).
"""
from __future__ import annotations

from collections.abc import Collection
from typing import Any, Dict, List, Optional

import numpy as np
import optuna
import pandas as pd

from src.config.errors import env_count

# create_study logs an INFO line per study, and a report builds hundreds.
optuna.logging.set_verbosity(optuna.logging.WARNING)
# Each shuffled or resampled importance is scored by the same evaluator as the reported one
# (optuna's fANOVA, 64 trees, fixed seed), so the p-value compares like with like: ~0.14 s a fit
# on a Zen 3, so 400 fits take about a minute per budget (and up to 5 more where p needs 2,000 shuffles).
# REPORT_FANOVA_TREES lowers it for a quick look (the test suite's reports use 16, ~3x faster a fit);
# a permutation p-value stays valid for any number of trees, since the shuffles use the same evaluator.
FANOVA_TREES = env_count("REPORT_FANOVA_TREES", 64)


def importances(rows: pd.DataFrame, params: List[str], target: np.ndarray,
                trees: Optional[int] = None) -> Dict[str, float]:
    """{parameter: fANOVA importance of `target` over `rows`}, summing to 1 (seed 0: reruns agree)."""
    # The direction is irrelevant to a variance decomposition; optuna needs one to build a study.
    return optuna.importance.get_param_importances(
        optuna_study(rows, params, target), evaluator=optuna.importance.FanovaImportanceEvaluator(
            seed=0, n_trees=FANOVA_TREES if trees is None else trees),
        params=params)


def optuna_study(rows: pd.DataFrame, params: List[str], target: np.ndarray, direction: str = "maximize",
                 log: Collection[str] = ()) -> optuna.Study:
    """An in-memory optuna study of `rows` (one finished trial each: its `params`, and `target` as
    its value), each parameter's distribution inferred from what was tried (`_distribution`; the
    names in `log` on a log scale, where their values are > 0): for fANOVA and optuna's figures."""
    distributions = {p: _distribution(rows[p], log=p in log) for p in params}
    study = optuna.create_study(direction=direction)
    study.add_trials([optuna.trial.create_trial(params={p: _optuna_value(row[p], distributions[p]) for p in params},
                                                distributions=distributions, value=float(value))
                      for (_, row), value in zip(rows.iterrows(), target)])
    return study


def _distribution(values: pd.Series, log: bool = False) -> optuna.distributions.BaseDistribution:
    """Infer what was searched from what was tried: integers -> IntDistribution,
    other numbers -> FloatDistribution over the tried range, anything else
    (words, lists of filters, booleans) -> categorical over their str()."""
    numeric = numeric_values(values)
    if numeric is None:
        return optuna.distributions.CategoricalDistribution(sorted(values.map(str).unique()))
    if pd.api.types.is_integer_dtype(numeric):
        return optuna.distributions.IntDistribution(int(numeric.min()), int(numeric.max()))
    low, high = float(numeric.min()), float(numeric.max())
    return optuna.distributions.FloatDistribution(low, high, log=log and low > 0)


def _optuna_value(value: Any, distribution: optuna.distributions.BaseDistribution) -> Any:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return str(value)
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return int(value)
    return float(value)


def numeric_values(values: pd.Series) -> Optional[pd.Series]:
    """The values as numbers, or None if any is not one. Booleans count as
    categories: True/False are not a range to interpolate over."""
    if values.map(lambda v: isinstance(v, (bool, np.bool_))).any():
        return None
    numeric = pd.to_numeric(values.map(hashable), errors="coerce")
    return numeric if numeric.notna().all() else None


def hashable(value: Any) -> Any:
    # Filter lists like [32, 64, 128] are values of one hyperparameter; pandas cannot group lists.
    return str(value) if isinstance(value, (list, tuple, dict, np.ndarray)) else value
