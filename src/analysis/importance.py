"""Which hyperparameters matter, and by how much: fANOVA importances per
budget, marginal effects with intervals, and whether the best value sits at
the edge of the searched space.

Pure functions over a table of trials (one row per trial, one column per
hyperparameter, the objective and, for multi-fidelity studies, the budget);
they read no store and train nothing.
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Collection, Mapping
from typing import Any, Dict, Hashable, List, Optional, Tuple

import numpy as np
import optuna
import pandas as pd
from scipy import stats as scipy_stats

IMPORTANCE_COLUMNS = ["hyperparameter", "importance", "importance_low", "importance_high", "p_value", "p_low",
                      "p_high", "permutations", "settled", "p_adjusted", "distinct_values", "trials"]
# The noise floor of an importance: how often the objective, shuffled across the trials (no
# hyperparameter can matter then), gives that hyperparameter as large an importance; and how far
# the importance moves when the trials are resampled. Fixed seeds: a report reads the same twice.
# REPORT_RESAMPLES lowers both for a quick look (the test suite's reports use 20); a report
# states the counts it used.
# create_study logs an INFO line per study, and a report builds hundreds.
optuna.logging.set_verbosity(optuna.logging.WARNING)
PERMUTATIONS = BOOTSTRAPS = int(os.environ.get("REPORT_RESAMPLES", "200"))
# A p-value from B shuffles is an estimate with binomial Monte Carlo error: 5 exceedances of 200
# (p = 0.030) are compatible with a true p of 0.008 to 0.057. A verdict its Monte Carlo range
# leaves in doubt gets more shuffles, doubling up to this factor times the first count (2,000
# by default: enough to tell 0.03 from 0.05), and is reported unsettled if still in doubt there.
# Each shuffle scores every hyperparameter at once, so the extra shuffles serve them all.
MAX_PERMUTATIONS_FACTOR = 10
SIGNIFICANCE = 0.05
MONTE_CARLO_CONFIDENCE = 0.95
# Each shuffled or resampled importance is scored by the same evaluator as the reported one
# (optuna's fANOVA, 64 trees, fixed seed), so the p-value compares like with like: ~0.14 s a fit
# on a Zen 3, so 400 fits take about a minute per budget (and up to 5 more where p needs 2,000 shuffles).
FANOVA_TREES = 64


def trial_counts(frame: pd.DataFrame, objective: str, budget: Optional[str]) -> Dict[Hashable, int]:
    """Trials with an objective value, per budget (one entry, key None, without a budget column)."""
    data = frame.dropna(subset=[objective])
    if budget is None:
        return {None: len(data)}
    return {value: int(count) for value, count in data.groupby(budget, sort=True).size().items()}


def budget_importances(frame: pd.DataFrame, params: List[str], objective: str, budget: Optional[str],
                       min_trials: int = 6, permutations: int = PERMUTATIONS,
                       bootstraps: int = BOOTSTRAPS, trees: int = FANOVA_TREES,
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
        distinct = {p: rows[p].map(hashable).nunique() for p in ranked}
        varying = [p for p in ranked if distinct[p] > 1]
        # optuna needs every trial to have every parameter; a trial missing one cannot be placed.
        complete = rows.dropna(subset=varying)
        target = complete[objective].to_numpy(dtype=float)
        importance = dict.fromkeys(ranked, math.nan)
        noise = dict.fromkeys(ranked, NoiseFloor())
        if varying and len(complete) >= 2 and np.ptp(target) > 0:
            importance.update(_fanova(complete, varying, target, trees))
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


def headline_budget(result: Dict[Hashable, pd.DataFrame], counts: Dict[Hashable, int],
                    min_trials: int = 6) -> Optional[Hashable]:
    """The highest budget with at least `min_trials` trials and a table in `result`:
    the one closest to how the final model is trained. None if there is none."""
    usable = [value for value in result if counts.get(value, 0) >= min_trials]
    if not usable:
        return None
    # Without a budget column the only key is None, which does not sort.
    return max(usable) if None not in usable else None


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
                bootstraps: int = BOOTSTRAPS, seed: int = 0, trees: int = FANOVA_TREES,
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
    observed = _fanova(rows, params, target, trees)
    tests = permutation_test(rows, params, target, observed, permutations, max_permutations, seed, trees)
    # Its own stream, so the interval does not depend on how many shuffles the p-values took.
    rng = np.random.default_rng(seed + 1)
    resampled = {p: [] for p in params}
    for _ in range(bootstraps):
        pick = rng.integers(0, len(rows), len(rows))
        sample, values = rows.iloc[pick], target[pick]
        varying = [p for p in params if sample[p].map(hashable).nunique() > 1]
        scores = _fanova(sample, varying, values, trees) if varying and np.ptp(values) > 0 else {}
        for p in params:
            resampled[p].append(scores.get(p, 0.0))
    return {p: dataclasses.replace(tests[p], importance_low=float(np.percentile(resampled[p], 2.5)),
                                   importance_high=float(np.percentile(resampled[p], 97.5)))
            if bootstraps else tests[p] for p in params}


def permutation_test(rows: pd.DataFrame, params: List[str], target: np.ndarray, observed: Dict[str, float],
                     permutations: int = PERMUTATIONS, max_permutations: Optional[int] = None, seed: int = 0,
                     trees: int = FANOVA_TREES) -> Dict[str, NoiseFloor]:
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
            null = _fanova(rows, params, rng.permutation(target), trees)
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


def _fanova(rows: pd.DataFrame, params: List[str], target: np.ndarray, trees: int = FANOVA_TREES) -> Dict[str, float]:
    # The direction is irrelevant to a variance decomposition; optuna needs one to build a study.
    return optuna.importance.get_param_importances(
        optuna_study(rows, params, target), evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0, n_trees=trees),
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
    numeric = _numeric(values)
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


def _numeric(values: pd.Series) -> Optional[pd.Series]:
    """The values as numbers, or None if any is not one. Booleans count as
    categories: True/False are not a range to interpolate over."""
    if values.map(lambda v: isinstance(v, (bool, np.bool_))).any():
        return None
    numeric = pd.to_numeric(values.map(hashable), errors="coerce")
    return numeric if numeric.notna().all() else None


def hashable(value: Any) -> Any:
    # Filter lists like [32, 64, 128] are values of one hyperparameter; pandas cannot group lists.
    return str(value) if isinstance(value, (list, tuple, dict, np.ndarray)) else value


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
    numeric = _numeric(values)
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


# The smallest value the config allows for a key (src/config/schema.py): a best value there is
# at the edge of what exists, not of the space, and no wider space would reach beyond it.
LOWEST_POSSIBLE = {"model.dropout": 0.0, "trainer.epochs": 1.0}


def edge_of_space(best_value: Any, space_spec: Any, name: Optional[str] = None) -> Optional[str]:
    """A warning if the best value is at a bound of its searched range, else None.

    When the best value is the smallest or largest offered, the optimum may lie
    outside the space, so the space should be widened before trusting it.
    `space_spec` is a search-space entry as in conf/tuner/search_space/*.yaml
    (a dict, an OmegaConf node or `src.config.schema.HyperParameter`):
    int/float ranges compare with the lowest and the highest reachable value
    (min, and the last step at or below max), numeric choices with the
    smallest and largest choice. Non-numeric choices (words, filter lists),
    booleans and fixed values have no edge to report, and neither has a lower
    bound that is the smallest value the key can take (LOWEST_POSSIBLE).
    """
    spec = _spec_dict(space_spec)
    label = name or spec.get("key") or "hyperparameter"
    kind = getattr(spec.get("type"), "value", spec.get("type")) or "float"
    best = _as_number(best_value)
    if best is None:
        return None
    if kind == "choice":
        choices = list(spec.get("values") or [])
        if len(choices) < 2 or any(_as_number(v) is None for v in choices):
            return None
        lowest, highest = min(choices, key=_as_number), max(choices, key=_as_number)
    elif kind in ("int", "float") and spec.get("min") is not None and spec.get("max") is not None:
        lowest = spec["min"]
        top = _highest_reachable(float(lowest), float(spec["max"]), spec.get("step"),
                                 getattr(spec.get("sampling"), "value", spec.get("sampling")))
        highest = spec["max"] if _same(top, _as_number(spec["max"])) else (round(top) if kind == "int" else top)
    else:
        return None
    if _same(_as_number(lowest), _as_number(highest)):
        return None
    floor = LOWEST_POSSIBLE.get(spec.get("key") or label)
    for bound, word, short in ((highest, "largest", "max"), (lowest, "smallest", "min")):
        if word == "smallest" and floor is not None and _same(_as_number(bound), floor):
            continue  # nothing lies below it: no dropout, one epoch
        if _same(best, _as_number(bound)):
            return (f"{label}: best value {_show(best_value)} is the {word} offered ({short} {_show(bound)}): "
                    "at the edge of the space: widen it")
    return None


UNTRIED = "that no trial drew: search there"


def edge_of_what_was_tried(best_value: Any, tried: Any, space_spec: Any, name: Optional[str] = None) -> Optional[str]:
    """A warning if the best value is the largest (or smallest) value any trial drew while the
    space offers a value beyond it that no trial drew: the optimum may lie there. Only for
    numeric choices and stepped linear ranges, whose values can be listed (a continuous range's
    extreme draw is never its bound, and says nothing). A sampler can leave such a value undrawn
    by chance or always: keras-tuner never drew 0.6 from 0.0..0.6 by 0.1
    (keras-team/keras-tuner#1001) before src/config/search_space.py declared a sliver above max."""
    if edge_of_space(best_value, space_spec, name) is not None:
        return None  # the space's own edge: edge_of_space says it
    spec = _spec_dict(space_spec)
    label = name or spec.get("key") or "hyperparameter"
    offered = _offered_values(spec)
    best = _as_number(best_value)
    numbers = [n for n in (_as_number(v) for v in tried) if n is not None]
    if best is None or not offered or len(set(numbers)) < 2:
        return None
    floor = LOWEST_POSSIBLE.get(spec.get("key") or label)
    top, bottom = max(numbers), min(numbers)
    ends = (("largest", top, [v for v in offered if v > top and not _same(v, top)]),
            ("smallest", bottom, [v for v in offered if v < bottom and not _same(v, bottom)][::-1]))
    for word, bound, beyond in ends:
        if word == "smallest" and floor is not None and _same(bound, floor):
            continue
        if _same(best, bound) and beyond:  # beyond what any trial drew: untried
            return (f"{label}: best value {_show(best_value)} is the {word} any trial drew, and the space offers "
                    f"{_show(beyond[0])} {UNTRIED}")
    return None


def _offered_values(spec: Dict[str, Any]) -> List[float]:
    """The values a numeric choice or a stepped linear range offers, sorted; else []."""
    kind = getattr(spec.get("type"), "value", spec.get("type")) or "float"
    if kind == "choice":
        numbers = [_as_number(v) for v in spec.get("values") or []]
        return sorted(numbers) if numbers and all(n is not None for n in numbers) else []
    sampling = getattr(spec.get("sampling"), "value", spec.get("sampling")) or "linear"
    if kind in ("int", "float") and spec.get("step") and sampling == "linear" and spec.get("min") is not None:
        low, step = float(spec["min"]), float(spec["step"])
        top = _highest_reachable(low, float(spec["max"]), step, sampling)
        return [low + k * step for k in range(int(round((top - low) / step)) + 1)]
    return []


def _same(x: float, y: float) -> bool:
    # Stepped floats drift (0.1 + 5 * 0.1 != 0.6); logged values may be rounded.
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def _spec_dict(space_spec: Any) -> Dict[str, Any]:
    if isinstance(space_spec, Mapping):  # a dict or an OmegaConf DictConfig
        return dict(space_spec)
    if dataclasses.is_dataclass(space_spec):
        return dataclasses.asdict(space_spec)
    raise TypeError(f"a search-space entry should be a mapping, got {type(space_spec).__name__}")


def _highest_reachable(low: float, high: float, step: Any, sampling: Any) -> float:
    """keras-tuner offers min, min+step, ... up to max (min*step, ... with log
    sampling), so with a step that does not divide the range the top is below max."""
    if not step:
        return high
    step = float(step)
    # The small slack keeps 0.1 + 5 * 0.1 from landing just under 0.6 and losing a step.
    if sampling == "log" and step > 1:
        return low * step ** math.floor(math.log(high / low) / math.log(step) + 1e-9)
    return low + step * math.floor((high - low) / step + 1e-9)


def _as_number(value: Any) -> Optional[float]:
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _show(value: Any) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(int(value))
    number = _as_number(value)
    # round() hides float drift from stepping (0.6000000000000001) but keeps 2.0 looking like a float.
    return repr(round(number, 10)) if number is not None else str(value)
