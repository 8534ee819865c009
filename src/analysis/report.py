"""Write `experiments/<name>/REPORT.md` (+ figures and CSVs) from runs in MLflow.

    python -m src.report baseline                # an experiment name
    python -m src.report tune_hyperband          # a study (tag `study`) or its experiment
    python -m src.report 2026-11-24/10-00-00     # a sweep (tag `sweep`), or a parent run id
    python -m src.report --experiment seeds --tracking-uri sqlite:///mlflow.db --out experiments/seeds

The store is found as MLflow finds it (MLFLOW_TRACKING_URI, else the
project's embedded store) unless --tracking-uri is given. Runs are read
through MLflow's search API; running it twice on the same runs gives the same
files.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np
import pandas as pd

from src.analysis import compare, stats
from src.config import ProjectError
from src.config.paths import PROJECT_ROOT
from src.config.schema import is_hyperparameter
from src.tracking.store import check_sqlite_store, child_runs, resolve_uri, sqlite_path

FIGURES = ["figures/learning_curves.png", "figures/test_confusion_matrix.png",
           "figures/test_confusion_matrix_normalized.png"]
REPORTS = ["reports/test_classification_report.txt", "reports/test_confusion_matrix.csv"]


@dataclass
class Selection:
    selector: str  # as the user gave it
    name: str  # a folder name for it
    runs: list  # the runs compared (a sweep's jobs, a study's trials, an experiment's runs)
    evaluated: list  # runs with a test evaluation (a study's parent; each job of a sweep)
    kind: str  # "experiment", "study", "sweep"


SELECTOR_KINDS = ("study", "sweep", "run", "experiment")


def select(client, selector: str, kind: Optional[str] = None) -> Selection:
    """A study, a sweep, a parent run id or an experiment name -> the runs to compare.
    Without `kind`, the first of these that matches."""
    experiments = client.search_experiments()
    ids = [e.experiment_id for e in experiments]
    for key in ("study", "sweep"):
        if kind not in (None, key):
            continue
        parents = client.search_runs(ids, f"tags.{key} = '{selector}' and tags.{key}_role = 'parent'",
                                     order_by=["attributes.start_time DESC"])
        if parents:
            return _from_parent(client, parents[0], selector, selector, key)
    run = None
    if kind in (None, "run"):
        try:
            run = client.get_run(selector)
        except Exception:  # noqa: BLE001 - not a run id
            run = None
    if run is not None:
        found = "study" if run.data.tags.get("study_role") == "parent" else "sweep"
        return _from_parent(client, run, selector, run.info.run_name.replace(" ", "_"), found)
    experiment = client.get_experiment_by_name(selector) if kind in (None, "experiment") else None
    if experiment is None:
        what = f"a {kind}" if kind else "a study, a sweep, a run id or an experiment"
        raise SystemExit(f"error: {selector!r} is not {what} in this store; "
                         f"experiments: {', '.join(sorted(e.name for e in experiments))}")
    runs = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time ASC"], max_results=10000)
    studies = [r for r in runs if r.data.tags.get("study_role") == "parent"]
    if studies:  # an experiment that holds a study: report the latest study
        return _from_parent(client, studies[-1], selector, selector, "study")
    leaves = [r for r in runs if r.data.tags.get("sweep_role") != "parent"]
    return Selection(selector, selector, leaves, [r for r in leaves if "test_accuracy" in r.data.metrics],
                     "experiment")


def _from_parent(client, parent, selector: str, name: str, kind: str) -> Selection:
    # A study's leaderboard is its trials; its confirmation runs are a comparison of their own.
    children = child_runs(client, parent.info.experiment_id, parent.info.run_id, status="FINISHED",
                          role="trial" if kind == "study" else None)
    evaluated = [parent] if kind == "study" else [r for r in children if "test_accuracy" in r.data.metrics]
    return Selection(selector, name.replace("/", "_"), children, evaluated, kind)


def hyperparameters(runs: pd.DataFrame) -> List[str]:
    """The model/trainer params whose values differ between runs (seed apart); `runs` as
    `mlflow.search_runs` gives them."""
    keys = sorted(c.removeprefix("params.") for c in runs if c.startswith("params."))
    keys = [k for k in keys if k.startswith(("model.", "trainer.", "data.")) and is_hyperparameter(k)]
    return [k for k in keys if runs[f"params.{k}"].nunique(dropna=False) > 1]


def config_table(runs: pd.DataFrame, columns: List[str]) -> pd.DataFrame:
    frame = compare.runs_frame(runs, {c: c for c in [*columns, "seed"]})
    frame["config"] = frame[columns].astype(str).agg(" ".join, axis=1) if columns else "all"
    return frame


def grouped_leaderboard(frame: pd.DataFrame, columns: List[str]) -> pd.DataFrame:
    """One row per configuration: mean and std over its runs (seeds), best first."""
    metrics = [m for m in ("best_val_accuracy", "test_accuracy") if frame[m].notna().any()]
    aggregations = {c: (c, "first") for c in columns}
    aggregations["runs"] = ("run_id", "count")
    for metric in metrics:
        aggregations[f"{metric}_mean"] = (metric, "mean")
        aggregations[f"{metric}_std"] = (metric, "std")
    grouped = frame.groupby("config", sort=False).agg(**aggregations    ).reset_index()
    return grouped.sort_values([f"{metrics[0]}_mean", *columns], ascending=[False, *[True] * len(columns)],
                               kind="stable").reset_index(drop=True)


def baseline_accuracies(client, experiment: str) -> np.ndarray:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return np.array([])
    runs = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'", max_results=1000)
    return np.array([r.data.metrics["test_accuracy"] for r in runs if "test_accuracy" in r.data.metrics])


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    def cell(value):
        if isinstance(value, float):
            return "" if np.isnan(value) else f"{value:.{digits}f}"
        return str(value)
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def write_report(client, selection: Selection, out_dir: Path, baseline: str, title: Optional[str]) -> Path:
    if not selection.runs:
        raise SystemExit(f"no finished runs found for {selection.name!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = out_dir / "figures"
    figures.mkdir(exist_ok=True)
    table = compare.search_frame(selection.runs)
    columns = hyperparameters(table)
    frame = config_table(table, columns)
    board = grouped_leaderboard(frame, columns)
    board.drop(columns="config").to_csv(out_dir / "leaderboard.csv", index=False, float_format="%.6g")
    frame.drop(columns=["config"]).sort_values("run_name").to_csv(out_dir / "runs.csv", index=False,
                                                                  float_format="%.6g")
    validation = sorted({r.data.params.get("data.validation", "?") for r in selection.runs})
    lines = [f"# {title or 'Report: ' + selection.name}", "",
             f"Generated by `python -m src.report {selection.selector}` from {len(selection.runs)} finished runs "
             f"of the {selection.kind} `{selection.selector}` (validation: {', '.join(validation)}).", ""]
    notes = out_dir / "NOTES.md"  # hand-written reading of the results, kept across regenerations
    if notes.is_file():
        lines += [notes.read_text().rstrip(), ""]
    lines += study_section(selection, frame)
    lines += ["## Leaderboard", "", "Mean and standard deviation over the runs of each configuration "
              "(seeds); `best_val_accuracy` is each run's best epoch on its validation data.", "",
              markdown_table(board.drop(columns="config")), ""]
    lines += comparison_section(client, selection, frame, board, baseline)
    if columns:
        compare.plot_objective_vs_params(frame.assign(status="FINISHED"), columns).savefig(
            figures / "objective_vs_hyperparameters.png", metadata={"Software": None})
        lines += ["## Objective against each hyperparameter", "",
                  "![objective vs hyperparameters](figures/objective_vs_hyperparameters.png)", ""]
        importance = stats.importances(frame, columns, "best_val_accuracy")
        if importance is not None:
            importance.to_csv(out_dir / "importance.csv", index=False, float_format="%.6g")
            lines += ["## Which hyperparameters matter", "",
                      "A random forest (scikit-learn, 500 trees, fixed seed) fitted to predict "
                      f"`best_val_accuracy` from the hyperparameters over {len(frame)} runs: impurity "
                      "importances and permutation importances (drop in R² when a column is shuffled). "
                      "With few runs these are rough.", "", markdown_table(importance, 3), ""]
    histories = compare.metric_histories(client, sorted((r.info.run_name, r.info.run_id) for r in selection.runs))
    best_name = frame.loc[frame["config"] == board.iloc[0]["config"], "run_name"].iloc[0]
    compare.plot_curves(histories, highlight=best_name).savefig(figures / "validation_curves.png",
                                                                metadata={"Software": None})
    lines += ["## Validation curves", "", "![validation curves](figures/validation_curves.png)", ""]
    lines += best_run_section(client, selection, out_dir)
    path = out_dir / "REPORT.md"
    path.write_text("\n".join(lines))
    return path


def study_section(selection: Selection, frame: pd.DataFrame) -> List[str]:
    """A study's settings and the budget it spent."""
    if selection.kind != "study" or not selection.evaluated:
        return []
    parent = selection.evaluated[0]
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
            f"- winner: trial {p.get('final.trial_id')}, hyperparameters "
            f"{', '.join(f'{k[5:]}={_number(v)}' for k, v in sorted(p.items()) if k.startswith('best.') and '/' not in k)}; "
            f"final model: `{p.get('final.mode')}`"
            + (f" (retrained on all {p.get('final.train_images')} training images for {p.get('final.epochs')} epochs,"
               " its best epoch count)" if p.get("final.mode") == "retrain" else " (its best-epoch checkpoint)")
            + f"; test accuracy {m.get('test_accuracy', float('nan')):.4f}",
            f"- command: `{parent.data.tags.get('command', '?')}`, commit `{parent.data.tags.get('git_commit', '?')}`",
            ""]


def _number(text: str) -> str:
    """'0.30000000000000004' -> '0.3' (keras-tuner's float steps)."""
    try:
        return f"{float(text):.10g}"
    except ValueError:
        return text


def comparison_section(client, selection: Selection, frame: pd.DataFrame, board: pd.DataFrame,
                       baseline: str) -> List[str]:
    """The best configuration's test accuracy against the baseline's, with the
    difference and its uncertainty."""
    if selection.kind == "study":
        best_test = np.array([r.data.metrics["test_accuracy"] for r in selection.evaluated])
    else:
        chosen = set(frame.loc[frame["config"] == board.iloc[0]["config"], "run_id"])
        best_test = np.array([r.data.metrics["test_accuracy"] for r in selection.evaluated
                              if r.info.run_id in chosen])
    if selection.kind == "experiment" and selection.selector == baseline:
        return []  # the baseline itself
    reference = baseline_accuracies(client, baseline)
    if not len(best_test) or not len(reference):
        return ["## Best configuration against the baseline", "",
                f"(no test accuracy to compare with experiment '{baseline}')", ""]
    test_size = int(selection.evaluated[0].data.params.get("data.test_images", 10000))
    diff = stats.difference(best_test, reference, test_size)
    return ["## Best configuration against the baseline", "",
            "| | runs | test accuracy |", "|---|---:|---:|",
            f"| best configuration | {len(best_test)} | {stats.mean_std(best_test)} |",
            f"| baseline (experiment `{baseline}`) | {len(reference)} | {stats.mean_std(reference)} |",
            f"| difference | | **{diff.estimate:+.4f} ± {diff.half_width:.4f}** (95 %; {diff.method}) |", ""]


def run_section(client, run, out_dir: Path, heading: str = "Run") -> List[str]:
    """The single-run part of a report: headline, curves, reports, figures."""
    run_id = run.info.run_id
    metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
    # Only these files: the run also holds its model, which can be large.
    logged = {f.path for f in client.list_artifacts(run_id, "figures")}
    figure_dir = out_dir / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:
        if name in logged:
            client.download_artifacts(run_id, name, str(figure_dir))
    has_curves = "figures/learning_curves.png" in logged
    with tempfile.TemporaryDirectory() as downloads:
        report_text, confusion = [Path(client.download_artifacts(run_id, name, downloads)).read_text()
                                  for name in REPORTS]

    validation = "the test set (the notebook's way)" if params.get("data.validation") == "test" \
        else f"a held-out {float(params.get('data.val_fraction', 0.1)):.0%} of the training set"
    val_acc = compare.metric_history(client, run_id, "val_accuracy")
    train_acc = compare.metric_history(client, run_id, "accuracy")
    val_loss = compare.metric_history(client, run_id, "val_loss")
    lines = [
        f"## {heading}: run `{run.info.run_name}`",
        "",
        f"- **test accuracy: {metrics['test_accuracy']:.4f}** (test loss {metrics['test_loss']:.4f}) "
        f"on {params.get('data.test_images')} test images",
        f"- best validation accuracy {metrics.get('best_val_accuracy', float('nan')):.4f}"
        f"{' at epoch ' + str(int(metrics['best_val_epoch'])) if 'best_val_epoch' in metrics else ''}; "
        f"validation on {validation}",
        f"- model: filters {params.get('model.filters')}, kernel {params.get('model.kernel_size')}, "
        f"dense {params.get('model.dense_units')}, dropout {params.get('model.dropout')}, "
        f"{int(metrics.get('model_parameters', 0)):,} parameters",
        f"- training: {params.get('trainer.optimizer')} (lr {params.get('trainer.learning_rate')}), "
        f"batch {params.get('trainer.batch_size')}, {params.get('trainer.epochs')} epochs, seed {params.get('seed')}, "
        f"{params.get('data.train_images')} training images; {metrics.get('train_seconds', 0):.0f} s of training "
        f"at {metrics.get('train_images_per_s', 0):,.0f} images/s",
        f"- data: `{params.get('data.dir')}` ({params.get('data.train_images')} train / "
        f"{params.get('data.val_images')} validation / {params.get('data.test_images')} test images)",
        f"- MLflow run `{run_id}`, commit `{tags.get('git_commit', 'unknown')}`"
        f"{' (uncommitted changes)' if tags.get('git_dirty') == 'true' else ''}",
        f"- command: `{tags.get('command', 'unknown')}`",
        "",
        "### Per-epoch accuracy",
        "",
        "| epoch | train accuracy | validation accuracy | validation loss |",
        "|---:|---:|---:|---:|",
    ]
    for epoch, (acc, vacc, vloss) in enumerate(zip(train_acc, val_acc, val_loss), start=1):
        lines.append(f"| {epoch} | {acc:.4f} | {vacc:.4f} | {vloss:.4f} |")
    if not val_acc:
        lines = lines[:-4]
    if tags.get("study_role") == "parent":  # its params are the study's base config, not the winner's
        lines = [line for line in lines if not line.startswith(("- model:", "- training:"))]
    lines += [
        "",
        *(["![learning curves](figures/learning_curves.png)", ""] if has_curves else []),
        "### Classification report (test set)",
        "",
        "```",
        report_text.rstrip(),
        "```",
        "",
        "### Confusion matrix (test set; rows = true class)",
        "",
        "```",
        confusion.rstrip(),
        "```",
        "",
        "![confusion matrix](figures/test_confusion_matrix.png)",
        "![confusion matrix, row-normalised](figures/test_confusion_matrix_normalized.png)",
        "",
    ]
    return lines



def best_run_section(client, selection: Selection, out_dir: Path) -> List[str]:
    """The best evaluated run in detail: its test report and confusion matrix."""
    if not selection.evaluated:
        return []
    best = max(selection.evaluated, key=lambda r: (r.data.metrics.get("best_val_accuracy", 0), r.info.run_id))
    heading = "Final model of the study" if selection.kind == "study" else "Best run"
    return run_section(client, best, out_dir, heading)


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.report", description=__doc__.splitlines()[0])
    parser.add_argument("selector", nargs="?", help="a study, a sweep, a parent run id or an experiment name "
                        "(the first that matches)")
    for kind in SELECTOR_KINDS:
        parser.add_argument(f"--{kind}", help=f"report this {kind}" + (" id" if kind == "run" else ""))
    parser.add_argument("--out", help="output folder (default experiments/<name>)")
    parser.add_argument("--title", help="the report's heading")
    parser.add_argument("--baseline", default="baseline", help="experiment holding the baseline runs")
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI, else ./mlflow.db")
    parser.add_argument("--reconcile", action="store_true",
                        help="close RUNNING runs whose process is gone, or whose heartbeat is older than "
                             "--stale-after on any host, then stop (unless a selector is given)")
    parser.add_argument("--stale-after", type=float, default=600.0, metavar="SECONDS",
                        help="with --reconcile: heartbeat age that counts as dead on any host (default 600)")
    args = parser.parse_args(argv)
    chosen = [(kind, getattr(args, kind)) for kind in SELECTOR_KINDS if getattr(args, kind)]
    if len(chosen) + bool(args.selector) > 1:
        parser.error("give one selector: a positional one or one of --study, --sweep, --run, --experiment")
    if not chosen and not args.selector and not args.reconcile:
        parser.error("nothing to report: give a selector (or --reconcile)")

    import mlflow

    from src.tracking import reconcile

    uri = resolve_uri(args.tracking_uri)
    path = sqlite_path(uri)
    try:
        if path is not None:
            check_sqlite_store(path)
    except ProjectError as err:
        raise SystemExit(f"error: {err}") from None
    client = mlflow.MlflowClient(uri)
    closed = reconcile.close_orphans(client)
    if args.reconcile:
        closed += reconcile.close_stale(client, args.stale_after)
        print(f"closed {len(closed)} run(s) whose process is gone: {', '.join(closed) or '-'}")
        if not chosen and not args.selector:
            return
    kind, selector = chosen[0] if chosen else (None, args.selector)
    mlflow.set_tracking_uri(uri)  # compare.search_frame reads through mlflow.search_runs
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per small file
    selection = select(client, selector, kind)
    out_dir = Path(args.out) if args.out else PROJECT_ROOT / "experiments" / selection.name
    print(f"wrote {write_report(client, selection, out_dir, args.baseline, args.title)}")


if __name__ == "__main__":
    sys.exit(main())
