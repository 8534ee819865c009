"""Write `experiments/<name>/REPORT.md` (+ figures and CSVs) from runs in MLflow.

    python -m src.report baseline                # an experiment name
    python -m src.report tune_hyperband          # a study (tag `study`) or its experiment
    python -m src.report 2026-11-24/10-00-00     # a sweep (tag `sweep`), or a parent run id
    python -m src.report --experiment seeds --tracking-uri sqlite:///mlflow.db --out experiments/seeds
    python -m src.report --compare "tags.study = 'card_study' and tags.confirm_candidate = 'trial 0026'" \
                                   "tags.study = 'card_study' and tags.confirm_candidate = 'baseline'"

The store is found as MLflow finds it (MLFLOW_TRACKING_URI, else the
project's embedded store) unless --tracking-uri is given. Runs are read
through MLflow's search API; running it twice on the same runs gives the same
files. A study's report is also logged into the study's parent run (artifacts
`report/`, and its answer as the run's description) unless --no-publish.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import mlflow
import numpy as np
import pandas as pd

from src.analysis import compare, pairing, run_report, stats, study_importance, study_report, study_search
from src.config import ProjectError
from src.config.paths import PROJECT_ROOT
from src.config.schema import is_hyperparameter
from src.tracking import disk, reconcile
from src.tracking.store import check_sqlite_store, child_runs, resolve_uri, sqlite_path
from src.tracking.store import client as store_client

log = logging.getLogger(__name__)

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


def write_report(client, selection: Selection, out_dir: Path, baseline: str, title: Optional[str],
                 publish: bool = False) -> Path:
    """REPORT.md, CSVs and figures in `out_dir`; for a study with `publish`, also into its
    parent run (`report/` artifacts, and the answer as the run's description)."""
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
    answer = None
    if selection.kind == "study" and selection.evaluated:
        answer = study_report.study_answer(client, selection.evaluated[0], out_dir)
        lines += [answer.note.split("\n\n")[0], ""]  # the report opens with the decision, as the run's description
    notes = out_dir / "NOTES.md"  # hand-written reading of the results, kept across regenerations
    if notes.is_file():
        lines += [notes.read_text().rstrip(), ""]
    if answer is not None:
        lines += study_search.settings_lines(selection.evaluated[0], frame)
        lines += study_search.history_lines(client, selection.evaluated[0])
        lines += answer.confirmation
    lines += ["## Leaderboard", "", "Mean and standard deviation over the runs of each configuration "
              "(seeds); `best_val_accuracy` is each run's best epoch on its validation data.", "",
              compare.markdown_table(board.drop(columns="config")), ""]
    if answer is None or not answer.confirmed:  # a confirmation is the better-founded comparison
        lines += comparison_section(client, selection, frame, board, baseline)
    if answer is not None:
        lines += answer.analysis
    elif columns:
        compare.plot_objective_vs_params(frame.assign(status="FINISHED"), columns).savefig(
            figures / "objective_vs_hyperparameters.png", metadata={"Software": None})
        lines += ["## Objective against each hyperparameter", "",
                  "![objective vs hyperparameters](figures/objective_vs_hyperparameters.png)", ""]
        lines += study_importance.importance_lines(frame, columns, "best_val_accuracy", None, out_dir)[0]
    best_name = frame.loc[frame["config"] == board.iloc[0]["config"], "run_name"].iloc[0]
    lines += curves_section(client, selection, best_name, figures, answer is not None and answer.confirmed)
    lines += run_report.best_run_section(client, selection.evaluated, selection.kind, out_dir)
    path = out_dir / "REPORT.md"
    path.write_text("\n".join(lines))
    if answer is not None and publish:
        study_report.publish(client, selection.evaluated[0].info.run_id, out_dir, answer.note)
        log.info("logged the report to run %s (artifacts %s/) and its summary as the run's description",
                 selection.evaluated[0].info.run_id, study_report.REPORT_ARTIFACTS)
    return path


def curves_section(client, selection: Selection, best_name: str, figures: Path, confirmed: bool) -> List[str]:
    """Every run's validation curve (`validation_curves.png`, `best_name` on top). A study's runs
    are its trials: one seed each, a Hyperband trial cut at its round's epochs, so the heading
    says so and a confirmed study's epochs are read from its confirmation runs instead."""
    histories = compare.metric_histories(client, sorted((r.info.run_name, r.info.run_id) for r in selection.runs))
    compare.plot_curves(histories, highlight=best_name).savefig(figures / "validation_curves.png",
                                                                metadata={"Software": None})
    if selection.kind != "study":
        lines = ["## Validation curves", ""]
    else:
        lines = ["## Validation curves of the search trials", "",
                 "Each trial's own curve (one seed)" + ("; how accuracy grows with epochs is read from the "
                                                         "confirmation runs instead (Epochs, under Confirmation)."
                                                         if confirmed else "."), ""]
    return lines + ["![validation curves](figures/validation_curves.png)", ""]


def publish_study_report(client, parent_run_id: str, baseline: str = "baseline") -> None:
    """The study's report, built in a temporary folder and logged into its parent run: how a
    study ends (src/jobs/study.py). `python -m src.report <study>` does the same and keeps a copy."""
    parent = client.get_run(parent_run_id)
    selection = _from_parent(client, parent, parent.data.tags.get("study", parent_run_id),
                             parent.data.tags.get("study", parent_run_id), "study")
    if not selection.runs:  # nothing finished to report on (write_report would stop the process)
        log.warning("study run %s has no finished trials: no report logged", parent_run_id)
        return
    with tempfile.TemporaryDirectory() as folder:
        write_report(client, selection, Path(folder), baseline, None, publish=True)


def comparison_section(client, selection: Selection, frame: pd.DataFrame, board: pd.DataFrame,
                       baseline: str) -> List[str]:
    """The best configuration's test accuracy against the baseline's, with the
    difference and its uncertainty."""
    if selection.kind == "study":
        # (A study still running has no test evaluation yet.)
        best_test = np.array([r.data.metrics["test_accuracy"] for r in selection.evaluated
                              if "test_accuracy" in r.data.metrics])
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


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """The command line, checked; nothing read or written (tests/docs/test_parsed_commands.py parses the docs' commands)."""
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
    parser.add_argument("--no-publish", action="store_true",
                        help="for a study: write the report here only, not into the study's MLflow run")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="compare two configurations' test accuracy instead of writing a report: each side "
                             "an MLflow filter string (search_runs syntax, over every experiment, e.g. "
                             "\"params.model.width = '2.0' and tags.sweep = 'grid'\") or comma-separated run "
                             "ids. Runs are paired by their `seed` param and, where they logged per-image test "
                             "predictions, image by image (else Welch over seeds, which the output says); "
                             "writes COMPARISON.md and comparison.csv to --out "
                             "(default experiments/comparisons/<A_vs_B>)")
    parser.add_argument("--labels", nargs=2, metavar=("NAME_A", "NAME_B"),
                        help="with --compare: what to call the two sides (default: as given)")
    args = parser.parse_args(argv)
    chosen = [(kind, getattr(args, kind)) for kind in SELECTOR_KINDS if getattr(args, kind)]
    if len(chosen) + bool(args.selector) + bool(args.compare) > 1:
        parser.error("give one selector: a positional one or one of --study, --sweep, --run, --experiment, "
                     "--compare")
    if not chosen and not args.selector and not args.reconcile and not args.compare:
        parser.error("nothing to report: give a selector, --compare A B (or --reconcile)")
    return args


def main(argv: Optional[list] = None) -> None:
    """`python -m src.report`: a full disk while it writes is one line (src/tracking/disk.py), as for src.run."""
    args = parse_args(argv)
    disk.quiet_upstream_tracebacks()
    out = Path(args.out) if args.out else PROJECT_ROOT / "experiments"
    try:
        with disk.reported_when_full(resolve_uri(args.tracking_uri), {"the report's folder": out},
                                     "python -m src.report with the same arguments"):
            report(args)
    except disk.DiskFullError as err:
        raise SystemExit(f"error: {err}") from None


def report(args) -> None:
    chosen = [(kind, getattr(args, kind)) for kind in SELECTOR_KINDS if getattr(args, kind)]
    if not logging.getLogger().handlers:  # run as a command: say what it does on the console
        logging.basicConfig(level=logging.INFO, format="%(message)s")

    uri = resolve_uri(args.tracking_uri)
    path = sqlite_path(uri)
    try:
        if path is not None:
            check_sqlite_store(path)
    except ProjectError as err:
        raise SystemExit(f"error: {err}") from None
    client = store_client(uri)
    closed = reconcile.close_orphans(client)
    if args.reconcile:
        closed += reconcile.close_stale(client, args.stale_after)
        print(f"closed {len(closed)} run(s) whose process is gone: {', '.join(closed) or '-'}")
        if not chosen and not args.selector and not args.compare:
            return
    mlflow.set_tracking_uri(uri)  # compare.search_frame reads through mlflow.search_runs
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per small file
    if args.compare:
        try:
            written = pairing.compare_sides(client, *args.compare, args.labels, Path(args.out) if args.out else None)
        except ProjectError as err:
            raise SystemExit(f"error: {err}") from None
        print(f"wrote {written}")
        return
    kind, selector = chosen[0] if chosen else (None, args.selector)
    selection = select(client, selector, kind)
    out_dir = Path(args.out) if args.out else PROJECT_ROOT / "experiments" / selection.name
    print(f"wrote {write_report(client, selection, out_dir, args.baseline, args.title, not args.no_publish)}")


if __name__ == "__main__":
    sys.exit(main())
