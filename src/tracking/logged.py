"""What each run logs: its inputs, training, evaluations, datasets and model."""
from __future__ import annotations

import contextlib
import functools
import io
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Mapping, Optional, Tuple

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import Model, infer_signature
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from omegaconf import OmegaConf

from src.config import Config
from src.core import evaluate
from src.core.data import Splits
from src.tracking import races
from src.tracking.runs import HEARTBEAT, flatten, mlflow_clock


def timed(function):
    """Count the call's time as the active run's MLflow time."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with mlflow_clock():
            return function(*args, **kwargs)
    return wrapper


def replace_table(frame, artifact_file: str) -> None:
    """`mlflow.log_table`, replacing the file instead of appending to it (a
    resumed study logs its leaderboard again)."""
    _delete_artifacts(mlflow.get_artifact_uri(), artifact_file)  # (where it cannot, log_table appends)
    mlflow.log_table(frame, artifact_file)


def _delete_artifacts(artifact_uri: str, path: str) -> None:
    try:
        get_artifact_repository(artifact_uri).delete_artifacts(path)
    except (NotImplementedError, MlflowException, OSError):
        pass  # nothing there yet, or a store that cannot delete


def log_dataset(images: np.ndarray, one_hot_labels: np.ndarray, name: str, source: str,
                context: str, lossy: bool) -> None:
    dataset = mlflow.data.from_numpy(images, targets=one_hot_labels.argmax(axis=1), name=name,
                                     source=source)
    note = ("lossy offline rebuild: most images decoded from JPEG (quality 75), "
            "accuracies run a little below published CIFAR-10 figures") if lossy else "original pixels"
    races.log_input_retrying(dataset, context=context, tags={"note": note})


def _save_keras_model(path, **kwargs):
    # mlflow#16183 (open, 3.17): mlflow.keras.save_model writes the input
    # example before creating the model directory; create it first.
    os.makedirs(path, exist_ok=True)
    return mlflow.keras.save_model(path=path, **kwargs)


# mlflow.keras with that one fix, for Model.log's documented `flavor` argument.
KERAS_FLAVOR = SimpleNamespace(__name__="mlflow.keras", save_model=_save_keras_model)


@timed
def log_keras_model(model, example_images: np.ndarray, name: str = "model"):
    """The model in MLflow's Keras flavour, with a signature and an input example."""
    import keras  # deferred: TensorFlow, ~5 s; the reports read runs through this module without it
    import tensorflow as tf  # deferred: as keras

    example = example_images[:2]
    signature = infer_signature(example, model.predict(example, verbose=0))
    # Explicit requirements: MLflow otherwise re-imports the model in a
    # subprocess to infer them, which costs a TensorFlow start-up per run.
    # MLflow checks the input example with a predict call that draws a Keras
    # progress bar on stdout; keep the console for the run's own output.
    with contextlib.redirect_stdout(io.StringIO()):
        return Model.log(artifact_path=None, name=name, flavor=KERAS_FLAVOR, model=model, signature=signature,
                         input_example=example,
                         pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"])


def register_champion(model_uri: str, name: str, alias: str = "champion") -> str:
    """Register the model and point `alias` at the new version; returns the version."""
    version = mlflow.register_model(model_uri, name)
    mlflow.MlflowClient().set_registered_model_alias(name, alias, version.version)
    mlflow.set_tag("registered_model", f"{name}@{alias} (version {version.version})")
    return version.version


def epoch_logger():
    """A Keras callback logging each epoch's metrics with step = epoch (1-based,
    as Keras prints it). MLflow's own MlflowCallback also logs a stepless copy
    of every validation metric, which would break one naming scheme."""
    import keras  # deferred: TensorFlow, ~5 s; the reports read runs through this module without it

    class MlflowEpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs:
                with mlflow_clock():
                    # Synchronous, a few ms an epoch: once MLflow's async queue is used, every
                    # flush (two at each run's end) waits up to 1 s for its thread, which polls
                    # with a 1 s timeout: 1.75 s a run, every trial of a study (measured).
                    mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch + 1)
                    HEARTBEAT.beat()

    return MlflowEpochLogger()


def log_params_once(params: Mapping[str, object]) -> None:
    """Log params on the active run; a resumed run may already hold some of them.
    MLflow refuses to change a param ("Changing param values is not allowed"),
    so a value that differs from the recorded one (a study killed after logging
    its winner, resumed to another) goes into a tag of the same name instead."""
    run = mlflow.get_run(mlflow.active_run().info.run_id)
    recorded = run.data.params
    new = {k: str(v)[:6000] for k, v in params.items() if k not in recorded}
    changed = {k: str(v) for k, v in params.items() if k in recorded and recorded[k] != str(v)[:6000]}
    if new:
        mlflow.log_params(new)
    if changed:
        mlflow.set_tags(changed)


@timed
def log_run_inputs(cfg: Config, splits: Splits, config_yaml: str, overrides: Optional[list]) -> None:
    mlflow.log_params(flatten(asdict(cfg)))
    mlflow.log_params({"data.train_images": splits.x_train.shape[0],
                       "data.val_images": splits.x_val.shape[0],
                       "data.test_images": splits.x_test.shape[0]})
    mlflow.log_text(config_yaml, "config/config.yaml")
    mlflow.log_text(OmegaConf.to_yaml(OmegaConf.create({"overrides": list(overrides or [])})),
                    "config/overrides.yaml")
    log_dataset(splits.x_train, splits.y_train, "cifar10-train", splits.source, "training", splits.lossy)
    if splits.validation == "split":
        log_dataset(splits.x_val, splits.y_val, "cifar10-validation", splits.source, "validation", splits.lossy)
    log_dataset(splits.x_test, splits.y_test, "cifar10-test", splits.source, "test", splits.lossy)


@timed
def log_model_summary(model) -> None:
    lines: list = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    mlflow.log_text("\n".join(lines), "model_summary.txt")
    mlflow.log_metric("model_parameters", model.count_params())


# Every test evaluation's per-image answers, so that any two runs scored on the same test
# images can be compared image by image (src/analysis/pairing.py). uint8 per image, npy
# without pickle: 10 kB each for CIFAR-10's test set, and nothing in them can run code.
PREDICTED_CLASSES = "predictions/test_predicted_class.npy"
TRUE_CLASSES = "predictions/test_true_class.npy"


@timed
def log_evaluation(result: evaluate.Evaluation, prefix: str, metrics: bool = True) -> None:
    """Metrics `<prefix>_accuracy/_loss` (unless `metrics` is off: a trial's
    validation figures are already its last epoch's), both reports, the
    confusion matrix as CSVs and figures (counts and row-normalised); for the
    test set also the predicted and the true class of every image."""
    if metrics:
        mlflow.log_metrics({f"{prefix}_accuracy": result.accuracy, f"{prefix}_loss": result.loss})
    if prefix == "test":
        log_test_classes(result.y_true, result.y_pred)
    mlflow.log_text(result.report_text, f"reports/{prefix}_classification_report.txt")
    mlflow.log_dict(result.report, f"reports/{prefix}_classification_report.json")
    names = result.class_names
    mlflow.log_text(evaluate.confusion_csv(result.confusion, names), f"reports/{prefix}_confusion_matrix.csv")
    mlflow.log_text(evaluate.confusion_csv(result.confusion_normalized, names, float_format="%.4f"),
                    f"reports/{prefix}_confusion_matrix_normalized.csv")
    for normalized, suffix in ((False, ""), (True, "_normalized")):
        matrix = result.confusion_normalized if normalized else result.confusion
        figure = evaluate.plot_confusion_matrix(matrix, names, normalized,
                                                title=f"Confusion matrix ({prefix})")
        mlflow.log_figure(figure, f"figures/{prefix}_confusion_matrix{suffix}.png")


def log_test_classes(true_classes: np.ndarray, predicted_classes: np.ndarray) -> None:
    """The class of every test image, predicted and true, on the active run."""
    # The true classes travel with the predictions: they say which images were scored
    # (two runs on different test subsets are not paired), and a report needs no dataset.
    with tempfile.TemporaryDirectory() as folder:
        for artifact, classes in ((PREDICTED_CLASSES, predicted_classes), (TRUE_CLASSES, true_classes)):
            path = Path(folder) / Path(artifact).name
            np.save(path, np.asarray(classes).astype(np.uint8), allow_pickle=False)
        mlflow.log_artifacts(folder, str(Path(PREDICTED_CLASSES).parent))


def read_test_classes(client, run_id: str) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(predicted, true) class per test image as a run logged them; None for what it lacks
    (runs from before the true classes were logged have only the predictions)."""
    logged_files = {f.path for f in client.list_artifacts(run_id, str(Path(PREDICTED_CLASSES).parent))}
    arrays = []
    with tempfile.TemporaryDirectory() as folder:
        for artifact in (PREDICTED_CLASSES, TRUE_CLASSES):
            arrays.append(np.load(client.download_artifacts(run_id, artifact, folder), allow_pickle=False)
                          if artifact in logged_files else None)
    return arrays[0], arrays[1]


def replace_artifacts(client, run_id: str, local_dir: str, artifact_path: str) -> None:
    """Log a folder's files under `artifact_path` of a run, removing what an earlier
    call left there (a regenerated report may no longer have a figure)."""
    # (Where the store cannot delete, files of the same name are overwritten.)
    _delete_artifacts(client.get_run(run_id).info.artifact_uri, artifact_path)
    client.log_artifacts(run_id, local_dir, artifact_path)


@timed
def log_training(training, validation: str) -> None:
    summary = {"train_seconds": training.seconds, "fit_seconds": training.fit_seconds,
               "train_images_per_s": training.images_per_second, "epochs_trained": training.epochs}
    best = training.best_epoch("val_accuracy")
    if best is not None:
        summary["best_val_accuracy"] = training.history["val_accuracy"][best]
        summary["best_val_epoch"] = training.initial_epoch + best + 1
    mlflow.log_metrics(summary)
    label = "test (notebook's validation)" if validation == "test" else "validation"
    mlflow.log_figure(evaluate.plot_learning_curves(training.history, label, training.initial_epoch + 1),
                      "figures/learning_curves.png")


def log_mlflow_share(training_seconds: float) -> float:
    """The run's own time in MLflow calls, absolute and as a share of its training; returns the seconds."""
    seconds = mlflow_clock().seconds
    mlflow.log_metrics({"mlflow_seconds": seconds,
                        "mlflow_share_of_training": seconds / max(training_seconds, 1e-9)})
    return seconds
