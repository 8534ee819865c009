"""The confirmation runs per seed and per epoch: the CSVs a reader can check the
Confirmation section against without the MLflow store, the figure of their mean
validation curves, and the Epochs section (accuracy against training length).

Read from the confirmation runs only, never the search's trials: a trial is one seed,
and a Hyperband trial's curve is cut at its round's budget.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from src.analysis import compare, study_figures

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
