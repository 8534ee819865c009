"""Which hyperparameters matter at each budget: fANOVA importance tables, one per
budget, each importance with its noise floor (`noise_floor`).

Pure functions over a table of trials (one row per trial, one column per
hyperparameter, the objective and, for multi-fidelity studies, the budget);
they read no store and train nothing. Marginal effects are in `marginal_effects`,
the edges of the searched space in `space_edges`, the report's wording of all
this in `study_importance`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Hashable, List, Optional

import numpy as np
import pandas as pd

from src.analysis import fanova
from src.analysis.noise_floor import BOOTSTRAPS, PERMUTATIONS, NoiseFloor, noise_floor
from src.analysis.verdicts import adjusted

IMPORTANCE_COLUMNS = ["hyperparameter", "importance", "importance_low", "importance_high", "p_value", "p_low",
                      "p_high", "permutations", "settled", "p_adjusted", "distinct_values", "trials"]


def trial_counts(frame: pd.DataFrame, objective: str, budget: Optional[str]) -> Dict[Hashable, int]:
    """Trials with an objective value, per budget (one entry, key None, without a budget column)."""
    data = frame.dropna(subset=[objective])
    if budget is None:
        return {None: len(data)}
    return {value: int(count) for value, count in data.groupby(budget, sort=True).size().items()}


def budget_importances(frame: pd.DataFrame, params: List[str], objective: str, budget: Optional[str],
                       min_trials: int = 6, permutations: int = PERMUTATIONS,
                       bootstraps: int = BOOTSTRAPS, trees: Optional[int] = None,
                       max_permutations: Optional[int] = None) -> Dict[Hashable, pd.DataFrame]:
    """fANOVA importances of `params` for `objective`, one table per budget.

    Hyperband trains most trials for a few epochs and a few for many, and what
    matters after 2 epochs (say, a high learning rate) need not be what matters
    after 20, so trials from different rungs are not pooled: each budget value
    (e.g. epochs) gets its own in-memory optuna study and its own fANOVA
    (`FanovaImportanceEvaluator(seed=0)`, so reruns agree). The budget column is
    never ranked, even if listed in `params`; without a budget (`budget=None`)
    all trials form one table under the key None.

    Returns {budget value: DataFrame[IMPORTANCE_COLUMNS]}, most important first,
    importances summing to 1; `noise_floor` adds the interval, the p-value with its Monte Carlo
    range (p_low, p_high), the shuffles it took (`permutations`, at most `max_permutations`)
    and whether its verdict is `settled`.
    A budget with fewer than `min_trials` trials is left out (see
    `trial_counts`); a hyperparameter with one value at a budget has nothing
    to explain there, so its importance is NaN and it is listed last; a budget
    where the objective is constant, or where nothing varies, gets NaN for all.
    """
    ranked = [p for p in params if p != budget]
    counts = trial_counts(frame, objective, budget)
    data = frame.dropna(subset=[objective])
    groups = [(None, data)] if budget is None else list(data.groupby(budget, sort=True))
    result = {}
    for value, rows in groups:
        if counts.get(value, 0) < min_trials:
            continue
        distinct = {p: rows[p].map(fanova.hashable).nunique() for p in ranked}
        varying = [p for p in ranked if distinct[p] > 1]
        # optuna needs every trial to have every parameter; a trial missing one cannot be placed.
        complete = rows.dropna(subset=varying)
        target = complete[objective].to_numpy(dtype=float)
        importance = dict.fromkeys(ranked, math.nan)
        noise = dict.fromkeys(ranked, NoiseFloor())
        if varying and len(complete) >= 2 and np.ptp(target) > 0:
            importance.update(fanova.importances(complete, varying, target, trees))
            noise.update(noise_floor(complete, varying, target, permutations, bootstraps, trees=trees,
                                     max_permutations=max_permutations))
        table = pd.DataFrame({"hyperparameter": ranked, "importance": [importance[p] for p in ranked],
                              **{f.name: [getattr(noise[p], f.name) for p in ranked]
                                 for f in dataclasses.fields(NoiseFloor)},
                              "p_adjusted": adjusted([noise[p].p_value for p in ranked]),
                              "distinct_values": [distinct[p] for p in ranked], "trials": len(rows)})
        result[value] = (table[IMPORTANCE_COLUMNS].sort_values(["importance", "hyperparameter"],
                                                               ascending=[False, True], na_position="last")
                         .reset_index(drop=True))
    return result


def headline_budget(result: Dict[Hashable, pd.DataFrame], counts: Dict[Hashable, int],
                    min_trials: int = 6) -> Optional[Hashable]:
    """The highest budget with at least `min_trials` trials and a table in `result`:
    the one closest to how the final model is trained. None if there is none."""
    usable = [value for value in result if counts.get(value, 0) >= min_trials]
    if not usable:
        return None
    # Without a budget column the only key is None, which does not sort.
    return max(usable) if None not in usable else None
