"""Comparing runs read back from MLflow: leaderboards and comparison figures.

Used by tuning studies (their trials), sweeps and `src.report`, so that every
comparison is made from what MLflow recorded, not from process memory (a
resumed study has trials from several processes).
"""
from __future__ import annotations

import ast
import math
from typing import Dict, List, Mapping, Optional, Sequence

import mlflow
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from src.config import ModelConfig, ProjectError
from src.core import memory

SUMMARY_METRICS = ["best_val_accuracy", "best_val_epoch", "val_accuracy", "val_loss", "test_accuracy",
                   "epochs_trained", "train_seconds"]


def search_frame(runs: Sequence) -> pd.DataFrame:
    """Run objects (a query's list) re-read as `mlflow.search_runs` tabulates them, in their order."""
    if len(runs) == 0:  # (search_runs would search the default experiment)
        return pd.DataFrame(columns=["run_id", "status", "start_time", "end_time"])
    ids = [run.info.run_id for run in runs]
    found = mlflow.search_runs(sorted({run.info.experiment_id for run in runs}),
                               f"attributes.run_id IN ({', '.join(repr(i) for i in ids)})")
    return found.set_index("run_id").loc[ids].reset_index()


def runs_frame(runs: pd.DataFrame, param_columns: Dict[str, str]) -> pd.DataFrame:
    """One row per run of an `mlflow.search_runs` frame: name, status, the params in
    `param_columns` ({column: param key}, parsed as numbers where they are), the summary
    metrics, duration, ids."""
    # mlflow.search_runs has a column only for the keys some run has.
    wanted = ["tags.mlflow.runName", "tags.trial_id", *(f"params.{k}" for k in param_columns.values()),
              *(f"metrics.{k}" for k in SUMMARY_METRICS)]
    runs = runs.reindex(columns=list(dict.fromkeys([*runs.columns, *wanted])))
    frame = pd.DataFrame({"run_name": runs["tags.mlflow.runName"], "status": runs["status"],
                          **{column: runs[f"params.{key}"].map(_parse) for column, key in param_columns.items()},
                          **{key: runs[f"metrics.{key}"].astype(float) for key in SUMMARY_METRICS},
                          "seconds": (runs["end_time"].fillna(runs["start_time"]) - runs["start_time"])
                          / pd.Timedelta(seconds=1),
                          "trial_id": runs["tags.trial_id"].astype(object).fillna("").astype(str), "run_id": runs["run_id"]})
    frame["best_val_epoch"] = frame["best_val_epoch"].astype("Int64")
    return frame.reset_index(drop=True)


def model_parameters(metrics: Mapping[str, float], params: Mapping[str, str]) -> float:
    """A run's parameter count: its `model_parameters` metric, else counted from its
    logged model config (runs that did not log the metric, e.g. a study's trials)."""
    logged = metrics.get("model_parameters")
    if logged is not None and not math.isnan(logged):
        return float(logged)
    try:
        model = ModelConfig(filters=list(ast.literal_eval(params["model.filters"])),
                            width=float(params.get("model.width", 1.0)),
                            kernel_size=int(params.get("model.kernel_size", 3)),
                            dense_units=list(ast.literal_eval(params["model.dense_units"])),
                            dropout=float(params.get("model.dropout", 0.5)))
    except (KeyError, ValueError, SyntaxError, TypeError, ProjectError):
        return math.nan  # not a run of this project's CNN
    return float(memory.count(model)[0])


def _parse(value):
    if not isinstance(value, str):  # a run without the param
        return None
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


def leaderboard(frame: pd.DataFrame, objective: str = "best_val_accuracy") -> pd.DataFrame:
    """Finished runs first, best objective first; a trial retried after an
    interruption appears once (its finished run)."""
    if frame.empty:
        return frame
    ranked = frame.assign(_finished=frame["status"].eq("FINISHED"))
    if ranked["trial_id"].astype(bool).any():
        ranked = ranked.sort_values(["_finished"], ascending=False, kind="stable")
        ranked = ranked.drop_duplicates("trial_id", keep="first")
    ascending = objective.endswith("loss")
    ranked = ranked.sort_values(["_finished", objective, "run_name"], ascending=[False, ascending, True],
                                kind="stable", na_position="last")
    return ranked.drop(columns="_finished").reset_index(drop=True)


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A markdown table (pandas' own `to_markdown` needs the optional `tabulate`)."""
    def cell(value):
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.{digits}f}"
        return str(value)
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def plot_objective_vs_params(frame: pd.DataFrame, columns: List[str], objective: str = "best_val_accuracy",
                             budget: Optional[str] = None) -> Figure:
    """One panel per hyperparameter: each finished run's objective against its value;
    with `budget` (Hyperband's epochs) one colour per budget, since a trial's score
    depends on how long it trained as much as on its hyperparameters."""
    finished = frame[frame["status"] == "FINISHED"]
    groups = [(None, finished)] if budget is None else list(finished.groupby(budget, sort=True))
    palette = colormaps["viridis"].resampled(max(2, len(groups)))
    figure = Figure(figsize=(4 * max(1, len(columns)), 3.5), dpi=80, layout="constrained")
    for index, column in enumerate(columns):
        axes = figure.add_subplot(1, max(1, len(columns)), index + 1)
        numeric = finished[column].map(lambda v: isinstance(v, (int, float))).all()
        # Lists or words: one slot per distinct value.
        labels = [] if numeric else sorted(finished[column].astype(str).unique())
        for group_index, (value, rows) in enumerate(groups):
            positions = (rows[column].astype(float) if numeric
                         else rows[column].astype(str).map({label: i for i, label in enumerate(labels)}))
            axes.scatter(positions, rows[objective], alpha=0.7, color=None if budget is None else palette(group_index),
                         label=None if budget is None else f"{budget} {value}")
        if labels:
            axes.set_xticks(range(len(labels)), labels=labels, rotation=20)
        axes.set_xlabel(column)
        axes.set_ylabel(objective)
        axes.grid(alpha=0.3)
        if budget is not None and index == 0:
            axes.legend(fontsize=7)
    figure.suptitle(f"{objective} against each hyperparameter" + (f", by {budget}" if budget else ""))
    return figure


def metric_history(client, run_id: str, key: str) -> List[float]:
    """A metric's values in step order."""
    return [p.value for p in sorted(client.get_metric_history(run_id, key), key=lambda p: p.step)]


def metric_histories(client, names_and_ids, key: str = "val_accuracy") -> Dict[str, List[tuple]]:
    """{run name: [(step, value), ...]} for each (run name, run id)."""
    return {name: sorted((p.step, p.value) for p in client.get_metric_history(run_id, key))
            for name, run_id in names_and_ids}


def plot_curves(histories: Dict[str, List[tuple]], key: str = "val_accuracy", highlight: str = "") -> Figure:
    """Every run's per-epoch curve on one axes; `highlight` drawn on top."""
    figure = Figure(figsize=(8, 5), dpi=80, layout="constrained")
    axes = figure.add_subplot()
    for name, points in sorted(histories.items()):
        if not points:
            continue
        steps, values = zip(*points)
        best = name == highlight
        axes.plot(steps, values, marker="o", markersize=2, linewidth=2.5 if best else 1,
                  alpha=1.0 if best else 0.5, label=name if best or len(histories) <= 12 else None,
                  zorder=3 if best else 2)
    finish_epoch_axes(axes, key, f"{key} per epoch, {len(histories)} runs")
    return figure


def finish_epoch_axes(axes, metric: str, title: str) -> None:
    """The axes of a per-epoch figure: whole epochs, labels, grid, a legend where lines are named."""
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7)
