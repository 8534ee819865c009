"""A test's MLflow store: made fresh from a template, filled with runs built directly,
and read back."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from src.tracking import store

from helpers.cifar import CLASS_NAMES

# What a finished training run logs as artifacts (the model aside).
EXPECTED_ARTIFACTS = {
    "config/config.yaml", "config/overrides.yaml", "model_summary.txt",
    "figures/learning_curves.png", "figures/test_confusion_matrix.png",
    "figures/test_confusion_matrix_normalized.png",
    "reports/test_classification_report.txt", "reports/test_classification_report.json",
    "reports/test_confusion_matrix.csv", "reports/test_confusion_matrix_normalized.csv",
}


def copy_template_store(template: Path, target: Path) -> None:
    """A fresh, migrated MLflow store at `target`, copied from `template`: MLflow's first
    use of a new SQLite file runs its ~50 schema migrations (3.3 s of CPU, measured),
    which most tests would otherwise pay for once or twice each. Experiment 0's artifact
    folder is set beside the copy, where MLflow would have put it for this file."""
    import shutil
    import sqlite3
    from contextlib import closing

    shutil.copyfile(template, target)
    with closing(sqlite3.connect(target)) as db, db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                   ((target.parent / "mlruns" / "0").as_uri(),))


def all_runs(uri: str) -> list:
    """Every run in a test's SQLite store ([] if the store was never created)."""
    path = store.sqlite_path(uri)
    if path is None or not path.exists():
        return []
    client = store.client(uri)  # waits if a command under test is creating this store right now
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def logged_run(experiment_id: str, name: str, tags: dict | None = None, params: dict | None = None,
               metrics: dict | None = None, parent: str | None = None, test_classes: tuple | None = None,
               evaluation: bool = False, artifacts: dict | None = None) -> str:
    """A finished MLflow run built directly (no training), in the store `mlflow` points at.
    `test_classes`: (true, predicted) classes per test image, logged with the test accuracy
    they give; `evaluation`: as a whole test evaluation (reports and figures too, slower);
    `artifacts`: {file: dict}, as JSON."""
    import mlflow

    from src.core import evaluate
    from src.tracking import logged

    tags = {**(tags or {}), **({"mlflow.parentRunId": parent} if parent else {})}
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags) as run:
        mlflow.log_params(params or {})
        mlflow.log_metrics(metrics or {})
        if test_classes is not None:
            truth, predicted = (np.asarray(c) for c in test_classes)
            accuracy = float((truth == predicted).mean())
            if evaluation:
                logged.log_evaluation(evaluate.summarize(1.0 - accuracy, accuracy, truth, predicted, CLASS_NAMES),
                                      "test")
            else:
                mlflow.log_metrics({"test_accuracy": accuracy, "test_loss": 1.0 - accuracy})
                logged.log_test_classes(truth, predicted)
        for path, content in (artifacts or {}).items():
            mlflow.log_dict(content, path)
    return run.info.run_id
