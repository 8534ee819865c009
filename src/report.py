"""Write `experiments/<name>/REPORT.md` from runs in an MLflow store.

    python -m src.report baseline                 # an experiment name
    python -m src.report --run <run_id> --out experiments/baseline

Reads runs through MLflow's search API; the store is found as MLflow finds it
(MLFLOW_TRACKING_URI, else the project's embedded store) unless
--tracking-uri is given. Running it twice on the same runs gives the same files.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import List, Optional

from src.track import PROJECT_ROOT, resolve_uri

FIGURES = ["figures/learning_curves.png", "figures/test_confusion_matrix.png",
           "figures/test_confusion_matrix_normalized.png"]


def find_runs(client, selector: str):
    """An experiment name -> its finished top-level runs, best test accuracy first."""
    experiment = client.get_experiment_by_name(selector)
    if experiment is None:
        names = sorted(e.name for e in client.search_experiments())
        raise SystemExit(f"no experiment named {selector!r} in this store; experiments: {', '.join(names)}")
    return client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'",
                              order_by=["metrics.test_accuracy DESC", "attributes.start_time ASC"])


def metric_history(client, run_id: str, key: str) -> List[float]:
    return [p.value for p in sorted(client.get_metric_history(run_id, key), key=lambda p: p.step)]


def run_section(client, run, out_dir: Path) -> List[str]:
    """The single-run part of a report: headline, curves, reports, figures."""
    run_id = run.info.run_id
    metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
    downloaded = Path(client.download_artifacts(run_id, "", str(out_dir / ".download")))
    figure_dir = out_dir / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:
        if (downloaded / name).is_file():
            shutil.copyfile(downloaded / name, figure_dir / Path(name).name)
    report_text = (downloaded / "reports/test_classification_report.txt").read_text()
    confusion = (downloaded / "reports/test_confusion_matrix.csv").read_text()
    shutil.rmtree(out_dir / ".download")

    validation = "the test set (the notebook's way)" if params.get("data.validation") == "test" \
        else f"a held-out {float(params.get('data.val_fraction', 0.1)):.0%} of the training set"
    val_acc = metric_history(client, run_id, "val_accuracy")
    train_acc = metric_history(client, run_id, "accuracy")
    val_loss = metric_history(client, run_id, "val_loss")
    lines = [
        f"## Run `{run.info.run_name}`",
        "",
        f"- **test accuracy: {metrics['test_accuracy']:.4f}** (test loss {metrics['test_loss']:.4f}) "
        f"on {params.get('data.test_images')} test images",
        f"- best validation accuracy {metrics.get('best_val_accuracy', float('nan')):.4f} at epoch "
        f"{int(metrics.get('best_val_epoch', 0))}; validation on {validation}",
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
    lines += [
        "",
        "![learning curves](figures/learning_curves.png)",
        "",
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


def write_report(client, runs, out_dir: Path, title: str, uri: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    if not runs:
        raise SystemExit("no finished runs to report")
    best = runs[0]
    lines = [f"# {title}", "",
             "Generated by `python -m src.report` from the MLflow store "
             f"(`{uri if not uri.startswith('sqlite:///' + str(PROJECT_ROOT)) else 'mlruns/mlflow.db'}`).", ""]
    if len(runs) > 1:
        lines += ["| run | test accuracy | best val accuracy | epochs | seed |", "|---|---:|---:|---:|---:|"]
        for run in runs:
            m, p = run.data.metrics, run.data.params
            lines.append(f"| {run.info.run_name} | {m.get('test_accuracy', float('nan')):.4f} | "
                         f"{m.get('best_val_accuracy', float('nan')):.4f} | {p.get('trainer.epochs')} | {p.get('seed')} |")
        lines.append("")
    lines += run_section(client, best, out_dir)
    path = out_dir / "REPORT.md"
    path.write_text("\n".join(lines))
    (out_dir / "run.json").write_text(json.dumps(
        {"run_id": best.info.run_id, "metrics": dict(sorted(best.data.metrics.items())),
         "params": dict(sorted(best.data.params.items()))}, indent=2) + "\n")
    return path


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("selector", nargs="?", help="an MLflow experiment name")
    parser.add_argument("--run", help="report this run id only")
    parser.add_argument("--out", help="output folder (default experiments/<selector>)")
    parser.add_argument("--title", help="the report's heading")
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI, else mlruns/mlflow.db")
    args = parser.parse_args(argv)
    if not args.selector and not args.run:
        parser.error("give an experiment name or --run RUN_ID")

    from mlflow import MlflowClient

    uri = resolve_uri(args.tracking_uri)
    client = MlflowClient(uri)
    runs = [client.get_run(args.run)] if args.run else find_runs(client, args.selector)
    name = args.selector or runs[0].info.run_name
    out_dir = Path(args.out) if args.out else PROJECT_ROOT / "experiments" / name
    path = write_report(client, runs, out_dir, args.title or f"Report: {name}", uri)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
