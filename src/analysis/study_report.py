"""A study's answer: its confirmation, which hyperparameters matter at each budget,
where the winner sits in the space, the figures, and the summary that becomes the
study run's description in MLflow.

Everything is read back from the study's runs (the parent, its trials and its
confirmation runs); nothing is trained. `report.write_report` places these
sections in REPORT.md; `publish` logs the report into the parent run.
"""
from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Hashable, List, Optional, Tuple

import numpy as np
import pandas as pd

from src.analysis import compare, confirmation, importance, study_figures
from src.tracking import logged
from src.tracking.runs import commit_labels, commits_phrase
from src.tracking.store import child_runs

MIN_TRIALS = 6  # per budget, for an importance table (fewer trials cannot split the variance)
REPORT_ARTIFACTS = "report"  # where a study's report lives among its parent run's artifacts
NOTE_TAG = "mlflow.note.content"  # the run's description, shown at the top of the run in the MLflow UI
CONTINUES = "continues"  # a trials frame's column: the trial a Hyperband round resumed (hp tuner/trial_id), or ""
STATISTIC = "fANOVA importance of the hyperparameter, against the objective shuffled across trials"


@dataclass
class StudyTrials:
    frame: pd.DataFrame  # one row per finished trial: hyperparameters, budget, objective, costs
    names: List[str]  # the searched hyperparameters, in the search space's order
    budget: Optional[str]  # "epochs" (Hyperband's rung), else None
    objective: str
    space: Dict[str, dict]  # search-space entries by name ({} if the run has no search_space.json)


@dataclass
class StudyAnswer:
    confirmation: List[str]  # markdown: the confirmation section (or why there is none)
    analysis: List[str]  # markdown: importance, marginal effects, edges of the space, figures
    note: str  # the parent run's description
    confirmed: bool = False
    flags: List[str] = field(default_factory=list)  # edge-of-space warnings


def search_space(client, parent) -> Dict[str, dict]:
    """The study's search space as its parent run logged it (`search_space.json`: the tuner config)."""
    if "search_space.json" not in {f.path for f in client.list_artifacts(parent.info.run_id)}:
        return {}
    with tempfile.TemporaryDirectory() as folder:
        tuner = json.loads(Path(client.download_artifacts(parent.info.run_id, "search_space.json", folder)).read_text())
    return dict(tuner.get("search_space") or {})


def study_trials(client, parent) -> StudyTrials:
    params = parent.data.params
    objective = f"best_{params.get('tuner.objective', 'val_accuracy')}"
    space = search_space(client, parent)
    runs = child_runs(client, parent.info.experiment_id, parent.info.run_id, status="FINISHED", as_frame=True,
                      role="trial")
    logged_names = {c[len("params.hp."):] for c in runs.columns if c.startswith("params.hp.") and "/" not in c}
    names = [n for n in space if n in logged_names] + sorted(logged_names - set(space))
    budget = "epochs" if params.get("tuner.kind") == "hyperband" and "params.hp.tuner/epochs" in runs else None
    columns = {name: f"hp.{name}" for name in names}
    if budget:
        columns[budget] = "hp.tuner/epochs"
    frame = compare.runs_frame(runs, columns)
    if f"metrics.{objective}" in runs:  # runs_frame has the accuracy summaries, not every objective
        frame[objective] = runs[f"metrics.{objective}"].to_numpy(dtype=float)
    metric_columns = [c for c in runs.columns if c.startswith("metrics.")]
    param_columns = [c for c in runs.columns if c.startswith("params.model.")]
    frame["parameters"] = [compare.model_parameters({c[8:]: v for c, v in row[metric_columns].items()},
                                                    {c[7:]: v for c, v in row[param_columns].items()})
                           for _, row in runs.iterrows()]
    previous = runs["params.hp.tuner/trial_id"] if "params.hp.tuner/trial_id" in runs else pd.Series(index=runs.index)
    frame["seconds_from_scratch"] = _seconds_from_scratch(frame["trial_id"], frame["train_seconds"], previous)
    frame[CONTINUES] = [p if isinstance(p, str) else "" for p in previous]  # lineage: see _shared_lineage
    frame = compare.leaderboard(frame, objective) if len(frame) else frame
    return StudyTrials(frame, [n for n in names if n != budget], budget, objective, space)


def _seconds_from_scratch(trial_ids: pd.Series, seconds: pd.Series, previous: pd.Series) -> List[float]:
    """A trial's training seconds plus those of the trials it continued: a Hyperband round
    resumes the previous round's best weights (hp `tuner/trial_id`), so its own seconds
    understate what its accuracy cost."""
    own = dict(zip(trial_ids, seconds.astype(float)))
    before = {t: p for t, p in zip(trial_ids, previous) if isinstance(p, str) and p}

    def total(trial_id: str, depth: int = 0) -> float:
        earlier = before.get(trial_id)
        # A chain is as long as Hyperband's rounds; the bound only guards against a corrupt record.
        return own[trial_id] + (total(earlier, depth + 1) if earlier in own and depth < 64 else 0.0)

    return [total(t) for t in trial_ids]


def settings_lines(parent, frame: pd.DataFrame) -> List[str]:
    """A study's settings and the budget it spent (`frame`: its trials, as the report tabulates them)."""
    p, m = parent.data.params, parent.data.metrics
    kind = p.get("tuner.kind")
    budget = (f"max_epochs={p.get('tuner.max_epochs')}, factor={p.get('tuner.factor')}, "
              f"hyperband_iterations={p.get('tuner.hyperband_iterations')}" if kind == "hyperband"
              else f"max_trials={p.get('tuner.max_trials')}")
    epochs = int(np.nansum(frame["epochs_trained"]))
    hours = np.nansum(frame["seconds"]) / 3600
    space = ", ".join(sorted(k[len("tuner.search_space."):-len(".key")] for k in p
                             if k.startswith("tuner.search_space.") and k.endswith(".key")))
    return ["## Study", "",
            f"- keras-tuner {kind} ({budget}), objective `{p.get('tuner.objective')}` on a held-out "
            f"{float(p.get('data.val_fraction', 0.1)):.0%} of the training set; search space: {space} "
            "(see the run's `search_space.json`)",
            f"- budget spent: {int(m.get('trials_finished', len(frame)))} trials, {epochs} training epochs, "
            f"{hours:.2f} h of trial time on this machine",
            _winner_line(p, m, parent.data.tags),
            *([f"- budget ({p.get('tuner.budget_minutes')} min): {parent.data.tags['budget_cut']}"]
              if "budget_cut" in parent.data.tags else []),
            f"- command: `{parent.data.tags.get('command', '?')}`, {commits_phrase(parent)}",
            ""]


def _winner_line(p: Dict[str, str], m: Dict[str, float], tags: Dict[str, str]) -> str:
    best = ", ".join(f"{k[5:]}={_number(v)}" for k, v in sorted(p.items()) if k.startswith("best.") and "/" not in k)
    if p.get("final.trial_id") is None:  # reported while it runs, or stopped before its final model
        return ("- winner: not chosen yet (the study has not reached its final model)"
                + (f"; the search's best: {best}" if best else ""))
    chosen = ", ".join(f"{k[9:]}={_number(v)}" for k, v in sorted(p.items()) if k.startswith("final.hp.") and "/" not in k)
    # The final model is the best candidate's even when the baseline beat it (tag `confirm_winner`):
    # then it is not the study's winner, and the line must not call it one.
    why = (f"its confirmation against the baseline configuration ended {tags['confirm_decision'].replace('_', ' ')}"
           if "confirm_decision" in tags else "the baseline configuration beat it in the confirmation")
    who = (f"- best searched configuration: trial {p.get('final.trial_id')} ({why})"
           if tags.get("confirm_winner") == confirmation.BASELINE else f"- winner: trial {p.get('final.trial_id')}")
    return (f"{who}, hyperparameters {chosen or best}; "
            f"final model: `{p.get('final.mode')}`"
            + (f" (retrained on all {p.get('final.train_images')} training images for {p.get('final.epochs')} epochs,"
               " its best epoch count)" if p.get("final.mode") == "retrain" else " (its best-epoch checkpoint)")
            + f"; test accuracy {m.get('test_accuracy', float('nan')):.4f}")


def _host(run) -> str:
    """'vm (AMD EPYC, family 25 model 1, 2 CPUs, avx2 fma; no ...)': the host and its CPU (tag `cpu`)."""
    tags = run.data.tags
    return tags.get("host", "?") + (f" ({tags['cpu']})" if tags.get("cpu") else "")


def history_lines(client, parent) -> List[str]:
    """When and where each stage ran, from its runs: a study resumed across sessions (or
    machines) shows each commit and host it ran at, so a resume that mixed code changes into
    the study is on record."""
    rows = []
    for role, stage in (("trial", "search"), ("confirm", "confirmation")):
        runs = child_runs(client, parent.info.experiment_id, parent.info.run_id, role=role)
        if not runs:
            continue
        starts = [r.info.start_time for r in runs if r.info.start_time]
        ends = [r.info.end_time for r in runs if r.info.end_time]
        busy = sum((r.info.end_time - r.info.start_time) for r in runs if r.info.end_time and r.info.start_time)
        commits = sorted({label for r in runs for label in commit_labels(r) or ["?"]})
        hosts = sorted({_host(r) for r in runs})
        span = (max(ends) - min(starts)) / 3.6e6 if starts and ends else float("nan")
        statuses = [r.info.status for r in runs]
        stopped = sum(s in ("KILLED", "FAILED") for s in statuses)
        rows.append({"stage": stage, "runs": f"{statuses.count('FINISHED')}"
                     + (f" (+{stopped} stopped)" if stopped else "")
                     + (f" (+{statuses.count('RUNNING')} running)" if "RUNNING" in statuses else ""),
                     "first start": _when(min(starts)) if starts else "",
                     "last end": _when(max(ends)) if ends else "", "span (h)": f"{span:.2f}",
                     "training runs' time (h)": f"{busy / 3.6e6:.2f}", "commits": ", ".join(commits),
                     "hosts": ", ".join(hosts)})
    if not rows:
        return []
    info = parent.info  # the study's own run: from its first launch to its last end, every commit it ran at
    ended = info.end_time if info.status != "RUNNING" else None  # a reopened run keeps its earlier end
    rows.append({"stage": "whole study (parent run)", "runs": 1,
                 "first start": _when(info.start_time) if info.start_time else "",
                 "last end": _when(ended) if ended else "(running)" if info.status == "RUNNING" else "",
                 "span (h)": f"{(ended - info.start_time) / 3.6e6:.2f}" if ended and info.start_time else "",
                 "training runs' time (h)": "", "commits": ", ".join(commit_labels(parent)) or "?",
                 "hosts": _host(parent)})
    return ["### Stages, commits and hosts", "",
            "Read from the study's runs (the commits each ran at, its `host` and `cpu` tags). The span includes the time a "
            "study was stopped between sessions; the runs' time does not. Runs counts the finished ones, those stopped "
            "(killed, which a resume runs again, or failed) and those running; the stopped runs' time is in the "
            "runs' time.", "",
            compare.markdown_table(pd.DataFrame(rows)), ""]


def _when(milliseconds: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(milliseconds / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _number(text: str) -> str:
    """'0.30000000000000004' -> '0.3' (keras-tuner's float steps)."""
    try:
        return f"{float(text):.10g}"
    except ValueError:
        return text


def study_answer(client, parent, out_dir: Path) -> StudyAnswer:
    """The study's sections and note; figures and CSVs are written under `out_dir`."""
    trials = study_trials(client, parent)
    confirmed = confirmation.read_confirmation(client, parent)
    described = {f"trial {row['trial_id']}": _values(row, trials.names) for row in trials.frame.to_dict("records")}
    if confirmed is not None:
        confirmation_lines = confirmation.confirmation_lines(confirmed, {**described, confirmation.BASELINE:
                                                                         "the study's base configuration"})
        answer = confirmed.summary()
    else:
        confirmation_lines = ["## Confirmation", "", "No confirmation runs (a study still searching, `tuner.confirm.seeds=0`, or a study "
                              "from before the stage existed): the winner below rests on one training run per "
                              "configuration.", ""]
        test = parent.data.metrics.get("test_accuracy")
        answer = (f"Search winner: {search_winner(trials, parent)}, "
                  + (f"test accuracy {test:.4f}" if test is not None else "no test evaluation yet")
                  + " (not confirmed over seeds).")
    importance_lines, headline, top, ranked = _importance(trials, out_dir, confirmed)
    winner = confirmed.winner if confirmed is not None else search_winner(trials, parent)
    who = confirmed.best_is_called if confirmed is not None else "winner"
    edge_lines, flags = _edges(trials, winner, parent.data.params, who)
    figure_lines = study_figures.write_figures(trials.frame, trials.names, trials.objective, trials.budget,
                                               None if confirmed is None else confirmed.table, out_dir,
                                               study_figures.Focus(top, ranked, log_scaled(trials.space)))
    epoch_lines, still_rising = (([], []) if confirmed is None
                                 else epochs_lines(write_confirmation(client, confirmed, out_dir)))
    next_line = next_step(confirmed, flags, still_rising, who)
    values = f" Hyperparameters of {winner}: {described[winner]}." if described.get(winner) else ""
    answer = answer if answer.endswith(".") else answer + "."  # the pairing's sentence ends without one
    note = "\n\n".join([f"**Study `{parent.data.tags.get('study', parent.info.run_name)}`.** {answer}{values}",
                         headline, *flags, f"What to try next: {next_line}",
                         f"Full report: artifacts `{REPORT_ARTIFACTS}/REPORT.md`."])
    return StudyAnswer([*confirmation_lines, *epoch_lines], [*importance_lines, *edge_lines,
                       "## What to try next", "", next_line, "", *figure_lines], note, confirmed is not None, flags)


EPOCH_MARKS = (5, 10, 15, 20)
CURVE_METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")  # what each epoch logs (logged.epoch_logger)
SEEDS_CSV, CURVES_CSV = "confirmation_seeds.csv", "confirmation_curves.csv"
CURVES_FIGURE = "confirmation_curves.png"


def confirmation_frames(client, confirmed) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """The confirmation runs per seed (their summary metrics) and per epoch (their metric
    histories), each candidate in the confirmation table's order, its seeds ascending."""
    table = confirmed.table
    rank = {candidate: i for i, candidate in enumerate(dict.fromkeys(table["candidate"]))}
    table = table.sort_values(["candidate", "seed"], key=lambda c: c.map(rank) if c.name == "candidate" else c)
    seeds, curves = [], []
    for row in table.itertuples():
        metrics = client.get_run(row.run_id).data.metrics
        seeds.append({"candidate": row.candidate, "seed": row.seed, "val_accuracy": row.val_accuracy,
                      "test_accuracy": row.test_accuracy, "best_epoch": metrics.get("best_val_epoch", math.nan),
                      "epochs_trained": metrics.get("epochs_trained", math.nan), "run_id": row.run_id})
        epochs: Dict[int, Dict[str, float]] = {}
        for key in CURVE_METRICS:
            for point in client.get_metric_history(row.run_id, key):
                epochs.setdefault(point.step, {})[key] = point.value
        curves += [{"candidate": row.candidate, "seed": row.seed, "epoch": epoch, **values}
                   for epoch, values in sorted(epochs.items())]
    return pd.DataFrame(seeds), pd.DataFrame(curves, columns=["candidate", "seed", "epoch", *CURVE_METRICS])


def write_confirmation(client, confirmed, out_dir: Path) -> pd.DataFrame:
    """`confirmation_seeds.csv` and `confirmation_curves.csv`, so that every number the
    Confirmation and Epochs sections state can be checked from the report's own files
    (without the MLflow store), and the figure of the confirmation curves. Returns the curves."""
    seeds, curves = confirmation_frames(client, confirmed)
    seeds.to_csv(out_dir / SEEDS_CSV, index=False, float_format="%.6g")
    curves.to_csv(out_dir / CURVES_CSV, index=False, float_format="%.6g")
    means = study_figures.mean_curves(curves)
    if len(means):
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)
        study_figures.plot_confirmation_curves(means).savefig(out_dir / "figures" / CURVES_FIGURE,
                                                              metadata={"Software": None})
    return curves


def _mean_interval(values: np.ndarray) -> str:
    """'mean (low-high)': a 95 % t-interval over the seeds, or the mean alone where it has no spread."""
    from scipy import stats as scipy_stats

    if len(values) > 1 and values.std() > 0:
        low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=scipy_stats.sem(values))
        return f"{values.mean():.4f} ({low:.4f}-{high:.4f})"
    return f"{values.mean():.4f}"


def epochs_lines(curves: pd.DataFrame) -> Tuple[List[str], List[str]]:
    """How accuracy grows with epochs, from the confirmation runs' validation curves (never the
    search's trials: one seed each, and a Hyperband trial's curve is cut at its round's budget):
    each candidate's mean over seeds at 5, 10, 15 and 20 epochs with a t-interval, and where its
    mean curve peaks. Returns (lines, candidates still rising at their last epoch)."""
    means = study_figures.mean_curves(curves)
    rows, rising = [], []
    for candidate, mean in means.groupby("candidate", sort=False):
        group = curves[curves["candidate"] == candidate].dropna(subset=["val_accuracy"])
        last = int(mean["epoch"].max())  # the last epoch every seed reached (mean_curves)
        steps = [e for e in EPOCH_MARKS if e <= last] + ([last] if last not in EPOCH_MARKS else [])
        row = {"candidate": candidate, "seeds": group["seed"].nunique()}
        for epoch in steps:
            row[f"epoch {epoch}"] = _mean_interval(group.loc[group["epoch"] == epoch, "val_accuracy"].to_numpy())
        peak = mean.loc[mean["mean"].idxmax()]
        best_epochs = group.loc[group.groupby("seed", sort=False)["val_accuracy"].idxmax(), "epoch"]
        row["mean curve peaks at"] = f"epoch {int(peak['epoch'])} ({peak['mean']:.4f})"
        row["each seed's best epoch"] = ", ".join(str(int(e)) for e in best_epochs)
        if int(peak["epoch"]) == last:
            rising.append(candidate)
        rows.append(row)
    if not rows:
        return [], []
    lines = ["### Epochs: accuracy against training length", "",
             "Computed from the confirmation runs (their per-epoch validation curves, `confirmation_curves.csv`; "
             "per seed: `confirmation_seeds.csv`), not from the search's trials. Validation accuracy of each "
             "confirmed configuration, mean over its seeds (95 % t-interval), at 5, 10, 15 and 20 epochs and its "
             "last, and the "
             "epoch where its mean curve peaks (up to the last epoch all its seeds reached). A peak at the last "
             "epoch means more epochs may still help.", "",
             compare.markdown_table(pd.DataFrame(rows).fillna("")), "",
             "Each configuration's mean validation curve over its seeds, the band from its lowest to its highest "
             "seed at each epoch (min-max), the star at the mean curve's peak:", "",
             f"![confirmation curves](figures/{CURVES_FIGURE})", ""]
    return lines, rising


def next_step(confirmed, flags: List[str], still_rising: List[str], who: str = "winner") -> str:
    """One actionable sentence: an edge worth widening, more epochs, or that nothing here beats
    the baseline."""
    advice = []
    untried = [f for f in flags if f.endswith(importance.UNTRIED)]
    at_edge = [f for f in flags if f not in untried]
    if at_edge:
        advice.append(f"widen the space where the {who} sits at its edge (" + "; ".join(
            f.split(":")[0] for f in at_edge) + ")")
    if untried:
        advice.append(f"search the values the space offers beyond the {who}'s that no trial drew (" + "; ".join(
            f.split(":")[0] for f in untried) + ")")
    if still_rising:
        advice.append(f"train longer: {', '.join(still_rising)} still improved at the last epoch")
    if confirmed is not None and confirmed.baseline_best:
        advice.insert(0, confirmed.advice())
    return ("; ".join(advice) if advice else
            "nothing flags a direction: no edge of the space is reached and every confirmed curve peaks before "
            "its last epoch") + "."


def search_winner(trials: StudyTrials, parent) -> str:
    """The search's own winner: the trial the study evaluated on the test set, or, in a
    study still searching, the best so far at the highest budget reached."""
    if "final.trial_id" in parent.data.params:
        return f"trial {parent.data.params['final.trial_id']}"
    frame = trials.frame[trials.frame["status"] == "FINISHED"] if len(trials.frame) else trials.frame
    if trials.budget is not None and len(frame):
        frame = frame[frame[trials.budget] == frame[trials.budget].max()]
    return f"trial {frame.iloc[0]['trial_id']} (best so far)" if len(frame) else "none yet"


def publish(client, parent_run_id: str, out_dir: Path, note: str) -> None:
    """The report's folder into the parent run's artifacts (`report/`), the summary into its description."""
    logged.replace_artifacts(client, parent_run_id, str(out_dir), REPORT_ARTIFACTS)
    client.set_tag(parent_run_id, NOTE_TAG, note)


def _values(row: dict, names: List[str]) -> str:
    return ", ".join(f"{name}={_show(row.get(name))}" for name in names)


def _show(value) -> str:
    return f"{value:.10g}" if isinstance(value, float) else str(value)


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
             f"fANOVA importances (optuna's `FanovaImportanceEvaluator`, fixed seed) of `{objective}`: the share "
             "of its variance each hyperparameter explains. Each has its noise floor: a permutation p-value (the "
             f"statistic tested: the {STATISTIC}; {importance.PERMUTATIONS} shuffles, fixed seed: how often "
             "chance alone gives that hyperparameter as large an importance) and a 95 % bootstrap interval "
             f"({importance.BOOTSTRAPS} resamples of the trials). A p-value from B shuffles has Monte Carlo error: "
             "`p_low`-`p_high` is its 95 % range (Clopper-Pearson), and where that range leaves the verdict in "
             "doubt the shuffles are doubled, up to "
             f"{importance.MAX_PERMUTATIONS_FACTOR * importance.PERMUTATIONS} (`permutations`: the count each p "
             "rests on); a verdict still in doubt there is `settled` False and reported unsettled. Only a "
             f"hyperparameter with p < {importance.SIGNIFICANCE} is named as mattering; with a handful of trials "
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
    """importance.evidence of each row."""
    return [importance.evidence(p, q, bool(s)) for p, q, s in zip(table["p_value"], table["p_adjusted"],
                                                                   table["settled"])]


def _significant(table: pd.DataFrame, kinds=("established", "lead")) -> pd.DataFrame:
    """The rows whose evidence (importance.evidence) is one of `kinds`."""
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
                f"{importance.SIGNIFICANCE} after counting the {tested} hyperparameters tested, Benjamini-Hochberg): "
                f"{named(established)}." if len(established) else
                f"{at[0].upper()}{at[1:]} no hyperparameter's effect is established above the noise in {trials} "
                f"trials once the {tested} hyperparameters tested are counted (Benjamini-Hochberg; statistic: the "
                f"{STATISTIC}).")
    if len(leads):
        sentence += (f" A lead to confirm, not an established effect (p < {importance.SIGNIFICANCE} only before "
                     f"that count): {named(leads)}.")
    if len(unsettled):
        sentence += (" Unsettled (the p-value's Monte Carlo range spans a threshold even after the extra shuffles, "
                     f"so more shuffles could change the verdict): {named(unsettled)}.")
    return sentence + (f" Not distinguishable from noise: {', '.join(rest['hyperparameter'])}." if len(rest) else "")


def _importance(trials: StudyTrials, out_dir: Path,
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
    seed_var, seed_df = (importance.seed_variance(confirmed.table.groupby("candidate")["val_accuracy"]
                                                  .apply(list).to_dict())
                         if confirmed is not None else (math.nan, 0))
    rows, tests = [], []
    for name in trials.names:
        effects = importance.marginal_effects(frame, name, trials.objective, seed_var=seed_var, seed_df=seed_df)
        for effect in effects.itertuples():
            interval = "" if math.isnan(effect.low) else f"{effect.low:.4f} to {effect.high:.4f}"
            rows.append({"hyperparameter": name, "value": _show(effect.value), "trials": effect.count,
                         "mean": effect.mean, "95% interval": interval})
        tests.append({"hyperparameter": name, "values": len(effects),
                      "F": effects.attrs.get("f_statistic", math.nan), "p_value": effects.attrs.get("p_value", math.nan),
                      "residual variance from": effects.attrs.get("variance_source", "none")})
    if tests:  # as the importances: each hyperparameter's test counted among all of them
        for test, p_adjusted in zip(tests, importance.adjusted([t["p_value"] for t in tests])):
            p_value = test["p_value"]
            test["p_adjusted"] = p_adjusted
            test["verdict"] = {"established": "differs across values",
                               "lead": "a lead: only before counting the tests",
                               "noise": "inside the noise",
                               "untestable": "not testable"}[importance.evidence(p_value, p_adjusted)]
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


def _edges(trials: StudyTrials, winner: str, parent_params: Dict[str, str],
           who: str = "winner") -> Tuple[List[str], List[str]]:
    """Whether each of the winner's values is the smallest or largest the space offered (`who`:
    'best candidate' when the baseline beat it)."""
    label = winner.removesuffix(" (best so far)")
    row = trials.frame[("trial " + trials.frame["trial_id"]) == label] if len(trials.frame) else trials.frame
    if len(row):
        values = {name: row.iloc[0][name] for name in trials.names}
    else:  # the search's winner, as the parent run recorded it
        values = {name: parent_params[f"best.{name}"] for name in trials.names if f"best.{name}" in parent_params}
    if not trials.space:
        return ["## Edges of the space", "", "(the run has no `search_space.json`: edges not checked)", ""], []
    flags, lines = [], ["## Edges of the space", "", f"The {who} ({winner}) against the range each hyperparameter "
                        "offered (the study's `search_space.json`):", ""]
    for name in trials.names:
        if name not in values or name not in trials.space:
            continue
        flag = importance.edge_of_space(values[name], trials.space[name], name) or (
            importance.edge_of_what_was_tried(values[name], trials.frame[name], trials.space[name], name)
            if name in trials.frame else None)
        flags += [flag] if flag else []
        lines.append(f"- **{flag}**" if flag else f"- {name}: {_show(values[name])} is inside the range offered")
    return lines + [""], flags


def log_scaled(space: Dict[str, dict]) -> List[str]:
    """The hyperparameters the study searched on a log scale (its `search_space.json`)."""
    return [name for name, spec in space.items() if str((spec or {}).get("sampling", "linear")) != "linear"]


def _budget(budget: str, value) -> str:
    return f"{value} {budget.removesuffix('s') if value == 1 else budget}"  # "20 epochs", "1 epoch"


def _counts(counts: Dict[Hashable, int]) -> str:
    return ", ".join(f"{k}: {v}" if k is not None else str(v) for k, v in counts.items()) or "none"

