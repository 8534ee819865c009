"""The study report's importance sections: which hyperparameters matter at each budget
(fANOVA tables with their noise floors, `importance.csv`), the headline sentence that
names only what clears the noise, and the marginal effects with their F-tests.

The numbers come from `importance`, `noise_floor` and `marginal_effects`; this module
words them, with one rule for every verdict (`verdicts.evidence`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Hashable, List, Optional, Tuple

import pandas as pd

from src.analysis import compare, fanova, importance, marginal_effects, noise_floor, verdicts
from src.analysis.study_search import CONTINUES, StudyTrials, show_value

MIN_TRIALS = 6  # per budget, for an importance table (fewer trials cannot split the variance)
STATISTIC = "fANOVA importance of the hyperparameter, against the objective shuffled across trials"


def importance_lines(frame: pd.DataFrame, names: List[str], objective: str, budget: Optional[str],
                     out_dir: Path) -> Tuple[List[str], str, Optional[Hashable], List[str]]:
    """fANOVA importances per budget (or over all runs without one), each with its noise floor
    (permutation p-value with its Monte Carlo range, bootstrap interval), `importance.csv`, and a
    headline from the highest budget with enough trials that names only what clears the noise.
    Returns (lines, headline, that budget, its hyperparameters with an importance, most important first)."""
    counts = importance.trial_counts(frame, objective, budget)
    tables = importance.budget_importances(frame, names, objective, budget, MIN_TRIALS)
    top = None if budget is None else importance.headline_budget(tables, counts, MIN_TRIALS)
    if not tables:
        headline = (f"Importance: too few trials for an importance table (need {MIN_TRIALS} at a budget; "
                    f"trials per {budget or 'study'}: {_counts(counts)}).")
        return ["## Which hyperparameters matter", "", headline, ""], headline, None, []
    pd.concat([t.assign(budget=b) for b, t in tables.items()]).to_csv(out_dir / "importance.csv", index=False,
                                                                      float_format="%.6g")
    headline = importance_headline(tables[top], counts[top], _budget(budget, top) if budget else None, objective)
    if budget is not None:
        headline += _other_budgets(tables, top, budget) + _shared_lineage(tables, frame, budget)
    lines = ["## Which hyperparameters matter", "",
             f"fANOVA importances (optuna's `FanovaImportanceEvaluator`, {fanova.FANOVA_TREES} trees, fixed seed) of "
             f"`{objective}`: the share "
             "of its variance each hyperparameter explains. Each has its noise floor: a permutation p-value (the "
             f"statistic tested: the {STATISTIC}; {noise_floor.PERMUTATIONS} shuffles, fixed seed: how often "
             "chance alone gives that hyperparameter as large an importance) and a 95 % bootstrap interval "
             f"({noise_floor.BOOTSTRAPS} resamples of the trials). A p-value from B shuffles has Monte Carlo error: "
             "`p_low`-`p_high` is its 95 % range (Clopper-Pearson), and where that range leaves the verdict in "
             "doubt the shuffles are doubled, up to "
             f"{noise_floor.MAX_PERMUTATIONS_FACTOR * noise_floor.PERMUTATIONS} (`permutations`: the count each p "
             "rests on); a verdict still in doubt there is `settled` False and reported unsettled. Only a "
             f"hyperparameter with p < {verdicts.SIGNIFICANCE} is named as mattering; with a handful of trials "
             "an importance of 0.5 can be pure noise. `p_adjusted` counts every hyperparameter tested at the "
             "budget (Benjamini-Hochberg): a hyperparameter whose p clears 0.05 only before that adjustment is "
             "named as a lead, not an established effect. "
             + (f"Hyperband trains most trials for a few epochs and a few for many, and what matters after a few "
                f"epochs need not be what matters after many, so each budget ({budget}) is analysed on its own and "
                f"the {budget} are never ranked as a hyperparameter; its rounds continue trials from lower budgets, "
                "so the budgets are not independent samples. " if budget else "")
             + f"A budget needs {MIN_TRIALS} trials; trials per {budget or 'study'}: {_counts(counts)}.", "",
             f"**{headline}**", ""]
    for value, table in sorted(tables.items(), key=lambda item: (item[0] is None, item[0]), reverse=True):
        if budget is not None:
            lines += [f"### {_budget(budget, value)}" + (" (headline)" if value == top else ""), ""]
        lines += [compare.markdown_table(table), ""]
    return lines, headline, top, tables[top].dropna(subset=["importance"])["hyperparameter"].tolist()


def _other_budgets(tables: Dict[Hashable, pd.DataFrame], top: Optional[Hashable], budget: str) -> str:
    """' At other budgets: ...' naming what clears p < 0.05 (or is too close to call) below the headline's."""
    labels = {"established": "", "lead": ": a lead", "unsettled": ": unsettled"}
    elsewhere = [f"{_budget(budget, value)}: " + ", ".join(
        f"{r.hyperparameter} ({_p(r)}, {r.p_adjusted:.3f} adjusted{labels[kind]})"
        for r, kind in zip(table.itertuples(), _verdicts(table)) if kind in labels)
        for value, table in sorted(tables.items()) if value != top and set(_verdicts(table)) & set(labels)]
    return (" At other budgets, p < 0.05 or too close to call: " + "; ".join(elsewhere) + ".") if elsewhere else ""


def _shared_lineage(tables: Dict[Hashable, pd.DataFrame], frame: pd.DataFrame, budget: str) -> str:
    """A sentence for each hyperparameter named (established, a lead or unsettled) at two or more
    budgets: Hyperband continues a lower budget's trials at the next, so the budgets' tables share
    trials' lineage and agree partly because of it: one finding, not several."""
    flagged: Dict[str, List[Hashable]] = {}
    for value, table in sorted(tables.items()):
        for r, kind in zip(table.itertuples(), _verdicts(table)):
            if kind in ("established", "lead", "unsettled"):
                flagged.setdefault(r.hyperparameter, []).append(value)
    sentences = []
    for name, values in flagged.items():
        if len(values) < 2:
            continue
        at = " and ".join(_budget(budget, v) for v in values)
        upper = " and ".join(_budget(budget, v) for v in values[1:])
        lower = _budget(budget, values[0]) if len(values) == 2 else "a lower one of these budgets"
        shared = _continued(frame, budget, values)
        if shared is not None and shared[0] == 0:
            sentences.append(f" {name} is named at {at}; no trial at {upper} continues one at {lower}, so these "
                             "are separate trials' findings.")
            continue
        lineage = (f"{shared[0]} of the {shared[1]} trials at {upper} continue a trial at {lower}" if shared
                   else "Hyperband continues trials from lower budgets (the runs do not record which)")
        sentences.append(f" {name} is named at {at}, but {lineage}: these budgets are not independent, "
                         "so this counts as one finding, not corroboration.")
    return "".join(sentences)


def _continued(frame: pd.DataFrame, budget: str, values: List[Hashable]) -> Optional[Tuple[int, int]]:
    """(trials at the budgets above the lowest of `values` whose chain of continued trials reaches
    a trial at a lower one of `values`, all trials at those budgets); None without lineage columns."""
    if CONTINUES not in frame or "trial_id" not in frame:
        return None
    at = dict(zip(frame["trial_id"], frame[budget]))
    before = dict(zip(frame["trial_id"], frame[CONTINUES]))
    upper = [t for t, b in at.items() if b in values[1:]]
    shared = 0
    for trial in upper:
        earlier, depth = before.get(trial), 0
        # A chain is as long as Hyperband's rounds; the bound only guards against a corrupt record.
        while earlier and depth < 64 and not (at.get(earlier) in values and at[earlier] < at[trial]):
            earlier, depth = before.get(earlier), depth + 1
        shared += bool(earlier) and depth < 64
    return shared, len(upper)


def _p(r) -> str:
    """'p = 0.030 (Monte Carlo 95 % 0.017-0.049, 2000 shuffles)': a permutation p with its Monte Carlo error."""
    return f"p = {r.p_value:.3f} (Monte Carlo 95 % {r.p_low:.3f}-{r.p_high:.3f}, {r.permutations} shuffles)"


def _verdicts(table: pd.DataFrame) -> List[str]:
    """verdicts.evidence of each row."""
    return [verdicts.evidence(p, q, bool(s)) for p, q, s in zip(table["p_value"], table["p_adjusted"],
                                                                   table["settled"])]


def _significant(table: pd.DataFrame, kinds=("established", "lead")) -> pd.DataFrame:
    """The rows whose evidence (verdicts.evidence) is one of `kinds`."""
    return table[[kind in kinds for kind in _verdicts(table)]]


def importance_headline(table: pd.DataFrame, trials: int, where: Optional[str], objective: str) -> str:
    """One sentence: what clears the noise at this budget, or plainly that nothing does."""
    at = f"at {where}" if where else "over the study"
    measured = table.dropna(subset=["importance"])
    if measured.empty:
        return f"Importance {at}: none, {objective} does not vary over {trials} trials."
    tested = int(measured["p_value"].notna().sum())
    established, leads = _significant(measured, ("established",)), _significant(measured, ("lead",))
    unsettled = _significant(measured, ("unsettled",))
    rest = measured[~measured.index.isin(_significant(measured, ("established", "lead", "unsettled")).index)]
    if established.empty and leads.empty and unsettled.empty:
        p_values = measured["p_value"].dropna()
        spread = (f" (permutation p-values {p_values.min():.2f}-{p_values.max():.2f}, statistic: the {STATISTIC})"
                  if len(p_values) else "")
        return (f"{at[0].upper()}{at[1:]} no hyperparameter's effect is distinguishable from noise in "
                f"{trials} trials{spread}.")

    def named(rows: pd.DataFrame) -> str:
        return ", ".join(f"{r.hyperparameter} {r.importance:.2f} (95 % {r.importance_low:.2f}-"
                         f"{r.importance_high:.2f}, {_p(r)}, {r.p_adjusted:.3f} adjusted)"
                         for r in rows.itertuples())

    sentence = (f"What matters {at} (statistic: the {STATISTIC}; {trials} trials, permutation p < "
                f"{verdicts.SIGNIFICANCE} after counting the {tested} hyperparameters tested, Benjamini-Hochberg): "
                f"{named(established)}." if len(established) else
                f"{at[0].upper()}{at[1:]} no hyperparameter's effect is established above the noise in {trials} "
                f"trials once the {tested} hyperparameters tested are counted (Benjamini-Hochberg; statistic: the "
                f"{STATISTIC}).")
    if len(leads):
        sentence += (f" A lead to confirm, not an established effect (p < {verdicts.SIGNIFICANCE} only before "
                     f"that count): {named(leads)}.")
    if len(unsettled):
        sentence += (" Unsettled (the p-value's Monte Carlo range spans a threshold even after the extra shuffles, "
                     f"so more shuffles could change the verdict): {named(unsettled)}.")
    return sentence + (f" Not distinguishable from noise: {', '.join(rest['hyperparameter'])}." if len(rest) else "")


def importance_sections(trials: StudyTrials, out_dir: Path,
                        confirmed=None) -> Tuple[List[str], str, Optional[Hashable], List[str]]:
    """The importance and marginal-effects sections, their headline, the budget of the marginal
    effects (the headline's, else the highest) and the importance table's ranking there."""
    lines, headline, top, ranked = importance_lines(trials.frame, trials.names, trials.objective, trials.budget,
                                                    out_dir)
    frame = trials.frame
    if trials.budget is not None and len(frame):
        # The top budget: the headline's, else the highest there is (said so).
        top = top if top is not None else frame[trials.budget].max()
        frame = frame[frame[trials.budget] == top]
    # Seed-to-seed noise from the study's own replicates: each confirmed configuration's seeds.
    seed_var, seed_df = (marginal_effects.seed_variance(confirmed.table.groupby("candidate")["val_accuracy"]
                                                        .apply(list).to_dict())
                         if confirmed is not None else (math.nan, 0))
    rows, tests = [], []
    for name in trials.names:
        effects = marginal_effects.marginal_effects(frame, name, trials.objective, seed_var=seed_var,
                                                    seed_df=seed_df)
        for effect in effects.itertuples():
            interval = "" if math.isnan(effect.low) else f"{effect.low:.4f} to {effect.high:.4f}"
            rows.append({"hyperparameter": name, "value": show_value(effect.value), "trials": effect.count,
                         "mean": effect.mean, "95% interval": interval})
        tests.append({"hyperparameter": name, "values": len(effects),
                      "F": effects.attrs.get("f_statistic", math.nan), "p_value": effects.attrs.get("p_value", math.nan),
                      "residual variance from": effects.attrs.get("variance_source", "none")})
    if tests:  # as the importances: each hyperparameter's test counted among all of them
        for test, p_adjusted in zip(tests, verdicts.adjusted([t["p_value"] for t in tests])):
            p_value = test["p_value"]
            test["p_adjusted"] = p_adjusted
            test["verdict"] = {"established": "differs across values",
                               "lead": "a lead: only before counting the tests",
                               "noise": "inside the noise",
                               "untestable": "not testable"}[verdicts.evidence(p_value, p_adjusted)]
    if rows:
        where = f" at {_budget(trials.budget, top)}" if trials.budget else ""
        noise = (f"the study's own seed-to-seed variance (its confirmation runs: SD {math.sqrt(seed_var):.4f} "
                 f"in validation accuracy, {seed_df} degrees of freedom)" if seed_df else
                 "no seed-to-seed variance (the study has no confirmation runs over several seeds)")
        lines += [f"### Marginal effects{where}", "",
                  f"Mean `{trials.objective}` per value (continuous ranges in quantile bins) over the other "
                  "hyperparameters. Each trial is one seed of one configuration, so each interval (t, 95 %) uses "
                  f"the larger of the pooled within-value variance and {noise}; a value tried once still gets an "
                  "interval. Each hyperparameter's values are tested against each other with a one-way F-test "
                  "on the same variance; `p_adjusted` counts every hyperparameter tested (Benjamini-Hochberg).", "",
                  compare.markdown_table(pd.DataFrame(rows)), "",
                  compare.markdown_table(pd.DataFrame(tests)), ""]
    return lines, headline, top, ranked


def _budget(budget: str, value) -> str:
    return f"{value} {budget.removesuffix('s') if value == 1 else budget}"  # "20 epochs", "1 epoch"


def _counts(counts: Dict[Hashable, int]) -> str:
    return ", ".join(f"{k}: {v}" if k is not None else str(v) for k, v in counts.items()) or "none"
