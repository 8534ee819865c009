"""The single-run part of a report: a run's headline, per-epoch table, test report,
confusion matrix and figures, downloaded from its MLflow artifacts."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import List, Tuple

from src.analysis import compare
from src.tracking.runs import commits_phrase

FIGURES = ["figures/learning_curves.png", "figures/test_confusion_matrix.png",
           "figures/test_confusion_matrix_normalized.png"]
REPORTS = ["reports/test_classification_report.txt", "reports/test_confusion_matrix.csv"]


def run_section(client, run, out_dir: Path, heading: str = "Run") -> List[str]:
    """The single-run part of a report: headline, curves, reports, figures."""
    has_curves, report_text, confusion = _download(client, run.info.run_id, out_dir)
    lines = _headline(run, heading) + _epoch_table(client, run.info.run_id)
    if run.data.tags.get("study_role") == "parent":  # its params are the study's base config, not the winner's
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


def _download(client, run_id: str, out_dir: Path) -> Tuple[bool, str, str]:
    """The run's figures into `out_dir/figures`; (whether it has learning curves, its
    classification report, its confusion matrix as text)."""
    # Only these files: the run also holds its model, which can be large.
    logged = {f.path for f in client.list_artifacts(run_id, "figures")}
    figure_dir = out_dir / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:
        if name in logged:
            client.download_artifacts(run_id, name, str(figure_dir))
    with tempfile.TemporaryDirectory() as downloads:
        report_text, confusion = [Path(client.download_artifacts(run_id, name, downloads)).read_text()
                                  for name in REPORTS]
    return "figures/learning_curves.png" in logged, report_text, confusion


def _headline(run, heading: str) -> List[str]:
    """The run's test accuracy, validation, model, training, data and provenance, one line each."""
    run_id = run.info.run_id
    metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
    validation = "the test set (the notebook's way)" if params.get("data.validation") == "test" \
        else f"a held-out {float(params.get('data.val_fraction', 0.1)):.0%} of the training set"
    return [
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
        f"- MLflow run `{run_id}`, {commits_phrase(run)}",
        f"- command: `{tags.get('command', 'unknown')}`",
        "",
    ]


def _epoch_table(client, run_id: str) -> List[str]:
    """Train and validation accuracy and validation loss per epoch; nothing without a validation history."""
    val_acc = compare.metric_history(client, run_id, "val_accuracy")
    if not val_acc:
        return []
    train_acc = compare.metric_history(client, run_id, "accuracy")
    val_loss = compare.metric_history(client, run_id, "val_loss")
    return ["### Per-epoch accuracy", "",
            "| epoch | train accuracy | validation accuracy | validation loss |",
            "|---:|---:|---:|---:|",
            *(f"| {epoch} | {acc:.4f} | {vacc:.4f} | {vloss:.4f} |"
              for epoch, (acc, vacc, vloss) in enumerate(zip(train_acc, val_acc, val_loss), start=1))]


def best_run_section(client, evaluated: list, kind: str, out_dir: Path) -> List[str]:
    """The best evaluated run in detail: its test report and confusion matrix."""
    evaluated = [r for r in evaluated if "test_accuracy" in r.data.metrics]  # not a study still running
    if not evaluated:
        return []
    best = max(evaluated, key=lambda r: (r.data.metrics.get("best_val_accuracy", 0), r.info.run_id))
    heading = "Final model of the study" if kind == "study" else "Best run"
    return run_section(client, best, out_dir, heading)
