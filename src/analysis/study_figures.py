"""Figures of a study's trials: the objective against each hyperparameter by budget, a
parallel-coordinates plot, and the Pareto front of accuracy against training cost
(seconds, parameters); at the report's headline budget, optuna's slice and contour plots;
and of its confirmation runs: the validation curves over seeds.

matplotlib's object API (no pyplot state), as in `compare`, so that building
figures in a long process leaks nothing; optuna's figures, which pyplot draws, are
closed once saved (`_optuna_pyplot`).
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, List, Optional, Sequence

import matplotlib
import numpy as np
import optuna
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from src.analysis import compare
from src.analysis.fanova import hashable, optuna_study

PARETO_VALUE = "best_val_accuracy"  # validation, as selection: the test set is for the confirmed winner only
COSTS = {"seconds_from_scratch": "training seconds (from scratch)", "parameters": "parameters"}


def plot_parallel_coordinates(frame: pd.DataFrame, columns: List[str], objective: str) -> Figure:
    """One vertical axis per column (and the objective last), one line per trial,
    coloured by the objective and drawn best last, so the best trials' paths are on top.
    Each axis runs from its smallest to its largest value; words and lists get one
    evenly spaced slot per distinct value."""
    data = frame.dropna(subset=[objective]).sort_values(objective, ascending=objective.endswith("loss"))
    names = [*columns, objective]
    figure = Figure(figsize=(max(6.0, 1.8 * len(names)), 4.5), dpi=80, layout="constrained")
    axes = figure.add_subplot()
    scaled, ticks = [], []
    for name in names:
        values = data[name].map(hashable)
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all():
            low, high = float(numeric.min()), float(numeric.max())
            # A column with one value sits in the middle rather than dividing by zero.
            scaled.append((numeric - low) / (high - low) if high > low else numeric * 0 + 0.5)
            ticks.append([(0.0, f"{low:g}"), (1.0, f"{high:g}")] if high > low else [(0.5, f"{low:g}")])
        else:
            labels = sorted(values.astype(str).unique())
            spacing = max(len(labels) - 1, 1)
            scaled.append(values.astype(str).map({label: i / spacing for i, label in enumerate(labels)}))
            ticks.append([(i / spacing, label) for i, label in enumerate(labels)])
    heights = np.column_stack([s.to_numpy(dtype=float) for s in scaled]) if len(data) else np.empty((0, len(names)))
    segments = [np.column_stack([np.arange(len(names)), row]) for row in heights]
    lines = LineCollection(segments, cmap="viridis", linewidths=1.2, alpha=0.8)
    lines.set_array(data[objective].to_numpy(dtype=float))
    axes.add_collection(lines)
    for position, axis_ticks in enumerate(ticks):
        axes.axvline(position, color="0.3", linewidth=0.8)
        for height, label in axis_ticks:
            axes.annotate(label, (position, height), xytext=(3, 0), textcoords="offset points", fontsize=7,
                          va="center", bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5})
    axes.set_xticks(range(len(names)), labels=names, rotation=15)
    axes.set_xlim(-0.2, len(names) - 0.5)
    axes.set_ylim(-0.05, 1.05)
    axes.set_yticks([])
    figure.colorbar(lines, ax=axes, label=objective)
    axes.set_title(f"{len(data)} trials: hyperparameters and {objective}")
    return figure


def pareto_front(frame: pd.DataFrame, cost: str, value: str) -> pd.Series:
    """True for the rows no other row beats: none is at least as cheap and more accurate.
    Sorted by cost (then best value first), a row is on the front when it is more
    accurate than every cheaper one."""
    data = frame.dropna(subset=[cost, value]).sort_values([cost, value], ascending=[True, False])
    best_before = data[value].cummax().shift(fill_value=-np.inf)
    return (data[value] > best_before).reindex(frame.index, fill_value=False)


def plot_pareto(points: pd.DataFrame, value: str) -> Figure:
    """Accuracy against each cost in COSTS (log scale): trials as dots, confirmed
    configurations (mean over their seeds) as labelled stars, the front as a step line.
    `points`: one row per trial or confirmed configuration, with columns label,
    kind ('trial' or 'confirmed'), `value` and the costs."""
    figure = Figure(figsize=(11, 4.5), dpi=80, layout="constrained")
    for index, (cost, cost_label) in enumerate(COSTS.items()):
        axes = figure.add_subplot(1, len(COSTS), index + 1)
        data = points.dropna(subset=[cost, value])
        trials, confirmed = data[data["kind"] == "trial"], data[data["kind"] == "confirmed"]
        axes.scatter(trials[cost], trials[value], s=18, alpha=0.6, color="tab:blue", label="trials")
        axes.scatter(confirmed[cost], confirmed[value], s=110, marker="*", color="tab:red",
                     label="confirmed (mean over seeds)", zorder=3)
        for row in confirmed.itertuples():
            axes.annotate(row.label, (getattr(row, cost), getattr(row, value)), xytext=(4, 4),
                          textcoords="offset points", fontsize=7)
        front = data[pareto_front(data, cost, value)].sort_values(cost)
        if len(front):
            axes.step(front[cost], front[value], where="post", color="black", linewidth=1, label="Pareto front")
        if len(data) and data[cost].min() > 0:
            axes.set_xscale("log")
            plain_log_ticks(axes.xaxis)
        axes.set_xlabel(cost_label)
        axes.set_ylabel(value)
        axes.grid(alpha=0.3)
        if index == 0:
            axes.legend(fontsize=7)
    figure.suptitle(f"{value} against training cost: what each extra second or parameter buys")
    return figure


def plain_log_ticks(axis) -> None:
    """1-2-5 ticks in plain numbers on a log axis: a short log range otherwise gets one label, or
    crowded minor ones."""
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def mean_curves(curves: pd.DataFrame, metric: str = "val_accuracy") -> pd.DataFrame:
    """Each candidate's curve over its seeds (`curves`: candidate, seed, epoch, `metric`): per
    epoch the seeds, their mean, lowest and highest, up to the last epoch every seed reached, so
    that the mean never switches to fewer seeds near its end (where its peak would then sit)."""
    frames = []
    for candidate, group in curves.dropna(subset=[metric]).groupby("candidate", sort=False):
        last = group.groupby("seed")["epoch"].max().min()
        by_epoch = group[group["epoch"] <= last].groupby("epoch")[metric]
        frames.append(pd.DataFrame({"candidate": candidate, "seeds": by_epoch.size(), "mean": by_epoch.mean(),
                                    "low": by_epoch.min(), "high": by_epoch.max()}).reset_index())
    columns = ["epoch", "candidate", "seeds", "mean", "low", "high"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def plot_confirmation_curves(means: pd.DataFrame, metric: str = "val_accuracy") -> Figure:
    """The confirmation runs' curves (`means`: mean_curves' table): per configuration its mean
    over seeds as a line, a band from the lowest to the highest seed (min-max: with three seeds a
    standard deviation would rest on two degrees of freedom) and a star at the mean's peak."""
    figure = Figure(figsize=(8, 5), dpi=80, layout="constrained")
    axes = figure.add_subplot()
    for candidate, curve in means.groupby("candidate", sort=False):
        line, = axes.plot(curve["epoch"], curve["mean"], marker="o", markersize=2,
                          label=f"{candidate} (mean of {int(curve['seeds'].max())} seeds)")
        axes.fill_between(curve["epoch"], curve["low"], curve["high"], color=line.get_color(), alpha=0.2,
                          linewidth=0)
        peak = curve.loc[curve["mean"].idxmax()]
        axes.scatter([peak["epoch"]], [peak["mean"]], marker="*", s=120, color=line.get_color(), zorder=3)
    compare.finish_epoch_axes(axes, metric, f"Confirmation runs: {metric} per epoch, mean over seeds (band: min-max)")
    return figure


@dataclass(frozen=True)
class Focus:
    """Where optuna's figures look: `budget_value`, the budget of the report's headline and marginal
    effects (None: the highest, or every trial in a study without budgets); `ranked`, that budget's
    importance table, most important first; `log`, what the study searched on a log scale."""
    budget_value: Optional[Hashable] = None
    ranked: Sequence[str] = ()
    log: Sequence[str] = ()


@contextlib.contextmanager
def _optuna_pyplot():
    """Around optuna's matplotlib figures: they are experimental (an ExperimentalWarning each call,
    silenced here), switch pyplot's global style to ggplot (rc_context puts every rcParam back, so
    the figures drawn after them are unchanged) and live in pyplot's registry (closed on leaving)."""
    import matplotlib.pyplot as plt  # deferred: pyplot (~0.3 s) only where optuna's figures are drawn

    before = set(plt.get_fignums())
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            yield
        finally:
            for number in set(plt.get_fignums()) - before:
                plt.close(number)


def plot_slice(study: optuna.Study, params: List[str], objective: str, title: str) -> Figure:
    """optuna's slice plot: per hyperparameter (in name order) each trial's objective against its
    value, coloured by trial order. Call inside `_optuna_pyplot`."""
    axes = np.ravel(optuna.visualization.matplotlib.plot_slice(study, params=params, target_name=objective))
    for each in axes:
        each.set_title("")
        if each.get_xscale() == "log":
            plain_log_ticks(each.xaxis)
    axes[0].figure.suptitle(title)
    return axes[0].figure


def plot_contour(study: optuna.Study, params: List[str], objective: str, title: str) -> Figure:
    """optuna's contour plot of the objective over two hyperparameters (x: the first by name),
    interpolated between the trials, which it marks. Call inside `_optuna_pyplot`."""
    axes = optuna.visualization.matplotlib.plot_contour(study, params=params, target_name=objective)
    axes.set_title(title)
    for axis, scale in ((axes.xaxis, axes.get_xscale()), (axes.yaxis, axes.get_yscale())):
        if scale == "log":
            plain_log_ticks(axis)
    return axes.figure


def optuna_figures(frame: pd.DataFrame, names: List[str], objective: str, budget: Optional[str], focus: Focus,
                   figures: Path) -> List[str]:
    """slice.png and contour.png at the focus budget, from an in-memory optuna study of its trials
    (`fanova.optuna_study`, as fANOVA's); returns the report's lines. They complement
    objective_vs_hyperparameters.png and parallel_coordinates.png rather than replace them: those
    draw every budget at once (coloured by budget, or with the budget as an axis), which optuna's
    figures, one study at a time, cannot."""
    for stale in ("slice.png", "contour.png"):  # from an earlier report of the same folder
        (figures / stale).unlink(missing_ok=True)
    at = focus.budget_value if focus.budget_value is not None or budget is None else frame[budget].max()
    rows = frame if budget is None else frame[frame[budget] == at]
    rows = rows.dropna(subset=[objective])
    varying = [n for n in names if rows[n].map(hashable).nunique() > 1]
    rows = rows.dropna(subset=varying)
    if not varying or len(rows) < 2:
        return []
    where = f" at {at} {budget.removesuffix('s') if at == 1 else budget}" if budget else ""
    study = optuna_study(rows, varying, rows[objective].to_numpy(dtype=float), log=focus.log)
    pair = [n for n in focus.ranked if n in varying][:2]
    save = {"metadata": {"Software": None}, "bbox_inches": "tight"}  # optuna's layout clips long labels
    with _optuna_pyplot():
        plot_slice(study, varying, objective, f"{objective} against each hyperparameter{where}, "
                   f"{len(rows)} trials").savefig(figures / "slice.png", **save)
        if len(pair) == 2:
            plot_contour(study, pair, objective, f"{objective}{where}: {pair[0]} and {pair[1]}").savefig(
                figures / "contour.png", **save)
    lines = [f"Each hyperparameter's slice{where} ({len(rows)} trials; optuna's `plot_slice`, coloured by trial "
             "order): where its good values lie once the budget is fixed.", "", "![slice](figures/slice.png)", ""]
    if len(pair) == 2:
        lines += [f"`{objective}` over the two most important hyperparameters{where} by the importance table, "
                  f"{pair[0]} and {pair[1]}, interpolated between the trials (optuna's `plot_contour`; "
                  "dots: the trials).", "", "![contour](figures/contour.png)", ""]
    return lines


def write_figures(frame: pd.DataFrame, names: List[str], objective: str, budget: Optional[str],
                  confirmed: Optional[pd.DataFrame], out_dir: Path, focus: Focus = Focus()) -> List[str]:
    """A study's figures under `out_dir/figures` and `pareto.csv`; returns the report's lines.
    `frame`: its finished trials (hyperparameters, budget, objective, seconds_from_scratch,
    parameters); `confirmed`: its confirmation runs (candidate, val_accuracy, train_seconds,
    parameters), or None; `focus`: where optuna's slice and contour plots look."""
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    if not len(frame) or not names:
        return []
    save = {"metadata": {"Software": None}}  # no version stamp: the same runs give the same bytes
    compare.plot_objective_vs_params(frame, names, objective, budget).savefig(
        figures / "objective_vs_hyperparameters.png", **save)
    plot_parallel_coordinates(frame, [*([budget] if budget else []), *names], objective).savefig(
        figures / "parallel_coordinates.png", **save)
    points = frame.assign(label="trial " + frame["trial_id"], kind="trial")
    if confirmed is not None:
        means = confirmed.groupby("candidate", sort=False)[["val_accuracy", "train_seconds", "parameters"]].mean()
        points = pd.concat([points, pd.DataFrame({"label": means.index, "kind": "confirmed",
                                                  PARETO_VALUE: means["val_accuracy"].to_numpy(),
                                                  "seconds_from_scratch": means["train_seconds"].to_numpy(),
                                                  "parameters": means["parameters"].to_numpy()})],
                           ignore_index=True)
    points = points[["label", "kind", PARETO_VALUE, *COSTS]]
    for cost in COSTS:
        points[f"front_{cost}"] = pareto_front(points, cost, PARETO_VALUE)
    points.to_csv(out_dir / "pareto.csv", index=False, float_format="%.6g")
    plot_pareto(points, PARETO_VALUE).savefig(figures / "pareto_front.png", **save)
    front = points[points["front_seconds_from_scratch"]].sort_values("seconds_from_scratch")
    return ["## Figures", "",
            f"`{objective}` against each hyperparameter" + (f", coloured by {budget}" if budget else "") + ":", "",
            "![objective vs hyperparameters](figures/objective_vs_hyperparameters.png)", "",
            *optuna_figures(frame, names, objective, budget, focus, figures),
            "Every trial through its hyperparameters:", "", "![parallel coordinates](figures/parallel_coordinates.png)",
            "", "Validation accuracy against training cost, trials and confirmed configurations (mean over seeds); "
            "a Hyperband trial's seconds include the earlier rounds it continued; "
            "the Pareto front links the configurations that nothing cheaper beats (`pareto.csv`). On the "
            "seconds axis: " + "; ".join(f"{r.label}{' (confirmed)' if r.kind == 'confirmed' else ''} "
                                         f"({r.seconds_from_scratch:.0f} s, {r.best_val_accuracy:.4f})"
                                         for r in front.itertuples()) + ".", "",
            "![Pareto front](figures/pareto_front.png)", ""]
