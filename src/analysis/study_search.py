"""A study's search read back from its runs: its finished trials as a table, the Study
section (settings, budget spent, winner) and the table of stages, commits and hosts.

Everything is read from the parent run and its trial and confirmation runs; nothing is
trained. The other sections of a study's report build on `StudyTrials`
(`study_importance`, `study_report`).
"""
from __future__ import annotations

import datetime
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from src.analysis import compare, confirmation
from src.config import tuner_kinds
from src.tracking.runs import commit_labels, commits_phrase
from src.tracking.store import child_runs

CONTINUES = "continues"  # a trials frame's column: the trial a Hyperband round resumed (hp tuner/trial_id), or ""


@dataclass
class StudyTrials:
    """A study's finished trials and what they searched (`study_trials`)."""
    frame: pd.DataFrame  # one row per finished trial: hyperparameters, budget, objective, costs
    names: List[str]  # the searched hyperparameters, in the search space's order
    budget: Optional[str]  # "epochs" (Hyperband's rung), else None
    objective: str
    space: Dict[str, dict]  # search-space entries by name ({} if the run has no search_space.json)


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
    budget_param = tuner_kinds.of(params.get("tuner.kind")).budget_param  # Hyperband's tuner/epochs
    budget = "epochs" if budget_param and f"params.hp.{budget_param}" in runs else None
    columns = {name: f"hp.{name}" for name in names}
    if budget:
        columns[budget] = f"hp.{budget_param}"
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
    frame[CONTINUES] = [p if isinstance(p, str) else "" for p in previous]  # lineage: study_importance._shared_lineage
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
    budget = tuner_kinds.of(kind).describe_settings(p)
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
    rows, total_images = [], 0
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
        trained, reused = _training_images(runs, parent.data.params.get("data.train_images"))
        total_images += trained
        rows.append({"stage": stage, "runs": f"{statuses.count('FINISHED')}"
                     + (f" (+{stopped} stopped)" if stopped else "")
                     + (f" (+{statuses.count('RUNNING')} running)" if "RUNNING" in statuses else ""),
                     "first start": _when(min(starts)) if starts else "",
                     "last end": _when(max(ends)) if ends else "", "span (h)": f"{span:.2f}",
                     "training runs' time (h)": f"{busy / 3.6e6:.2f}",
                     "training images": f"{trained:,}" + (f" (+{reused:,} reused)" if reused else ""),
                     "commits": ", ".join(commits),
                     "hosts": ", ".join(hosts)})
    if not rows:
        return []
    info = parent.info  # the study's own run: from its first launch to its last end, every commit it ran at
    ended = info.end_time if info.status != "RUNNING" else None  # a reopened run keeps its earlier end
    rows.append({"stage": "whole study (parent run)", "runs": 1,
                 "first start": _when(info.start_time) if info.start_time else "",
                 "last end": _when(ended) if ended else "(running)" if info.status == "RUNNING" else "",
                 "span (h)": f"{(ended - info.start_time) / 3.6e6:.2f}" if ended and info.start_time else "",
                 "training runs' time (h)": "", "training images": f"{total_images:,}",
                 "commits": ", ".join(commit_labels(parent)) or "?",
                 "hosts": _host(parent)})
    return ["### Stages, commits and hosts", "",
            "Read from the study's runs (the commits each ran at, its `host` and `cpu` tags). The span includes the time a "
            "study was stopped between sessions; the runs' time does not. Runs counts the finished ones, those stopped "
            "(killed, which a resume runs again, or failed) and those running; the stopped runs' time is in the "
            "runs' time. Training images are the finished runs' epochs times their training set; a stopped run's "
            "are not on record, and a run taken from the store (tag `reused_from`) trained nothing here: its images "
            "are counted apart, as reused.", "",
            compare.markdown_table(pd.DataFrame(rows)), ""]


def _training_images(runs, study_images: Optional[str]) -> Tuple[int, int]:
    """(images the finished runs trained on, epochs times their training set; those of the runs
    taken from the store instead of trained, tag `reused_from`). A run that did not log its
    training set's size (before they did) trained on the study's (`study_images`)."""
    trained = reused = 0
    for run in runs:
        epochs = run.data.metrics.get("epochs_trained")
        images = run.data.params.get("data.train_images", study_images)
        if run.info.status != "FINISHED" or epochs is None or images is None:
            continue
        count = int(epochs) * int(float(images))
        reused, trained = (reused + count, trained) if "reused_from" in run.data.tags else (reused, trained + count)
    return trained, reused


def _when(milliseconds: int) -> str:
    return datetime.datetime.fromtimestamp(milliseconds / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _number(text: str) -> str:
    """'0.30000000000000004' -> '0.3' (keras-tuner's float steps)."""
    try:
        return f"{float(text):.10g}"
    except ValueError:
        return text


def search_winner(trials: StudyTrials, parent) -> str:
    """The search's own winner: the trial the study evaluated on the test set, or, in a
    study still searching, the best so far at the highest budget reached."""
    if "final.trial_id" in parent.data.params:
        return f"trial {parent.data.params['final.trial_id']}"
    frame = trials.frame[trials.frame["status"] == "FINISHED"] if len(trials.frame) else trials.frame
    if trials.budget is not None and len(frame):
        frame = frame[frame[trials.budget] == frame[trials.budget].max()]
    return f"trial {frame.iloc[0]['trial_id']} (best so far)" if len(frame) else "none yet"


def log_scaled(space: Dict[str, dict]) -> List[str]:
    """The hyperparameters the study searched on a log scale (its `search_space.json`)."""
    return [name for name, spec in space.items() if str((spec or {}).get("sampling", "linear")) != "linear"]


def hyperparameter_values(row: dict, names: List[str]) -> str:
    """'dropout=0.6, width=1': a trial's hyperparameters as the report writes them."""
    return ", ".join(f"{name}={show_value(row.get(name))}" for name in names)


def show_value(value) -> str:
    """A float to 10 significant digits (keras-tuner's steps drift: 0.6000000000000001), else its text."""
    return f"{value:.10g}" if isinstance(value, float) else str(value)
