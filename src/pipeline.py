"""One training run, end to end: data -> model -> train -> evaluate -> track."""
from __future__ import annotations

import time
from dataclasses import asdict
from typing import Mapping, Optional

import mlflow
from omegaconf import OmegaConf

from src import data as data_module
from src import evaluate, track
from src.config import Config


def describe(cfg: Config) -> str:
    """A run name that says what was trained, e.g. f32-64-128_d0.5_e20_s42."""
    filters = "-".join(str(f) for f in cfg.model.conv_filters)
    return f"f{filters}_d{cfg.model.dropout:g}_e{cfg.trainer.epochs}_s{cfg.seed}"


@track.MLFLOW_TIME
def log_run_inputs(cfg: Config, splits: data_module.Splits, config_yaml: str,
                    overrides: Optional[list]) -> None:
    mlflow.log_params(track.flatten(asdict(cfg)))
    mlflow.log_params({"data.train_images": splits.x_train.shape[0],
                       "data.val_images": splits.x_val.shape[0],
                       "data.test_images": splits.x_test.shape[0]})
    mlflow.log_text(config_yaml, "config/config.yaml")
    mlflow.log_text(OmegaConf.to_yaml(OmegaConf.create({"overrides": list(overrides or [])})),
                    "config/overrides.yaml")
    track.log_dataset(splits.x_train, splits.y_train, "cifar10-train", splits.source, "training", splits.lossy)
    if splits.validation == "split":
        track.log_dataset(splits.x_val, splits.y_val, "cifar10-validation", splits.source,
                          "validation", splits.lossy)
    track.log_dataset(splits.x_test, splits.y_test, "cifar10-test", splits.source, "test", splits.lossy)


@track.MLFLOW_TIME
def log_evaluation(result: evaluate.Evaluation, prefix: str, metrics: bool = True) -> None:
    """Metrics `<prefix>_accuracy/_loss` (unless `metrics` is off: a trial's
    validation figures are already its last epoch's), both reports, the
    confusion matrix as CSVs and figures (counts and row-normalised)."""
    if metrics:
        mlflow.log_metrics({f"{prefix}_accuracy": result.accuracy, f"{prefix}_loss": result.loss})
    mlflow.log_text(result.report_text, f"reports/{prefix}_classification_report.txt")
    mlflow.log_dict(result.report, f"reports/{prefix}_classification_report.json")
    names = result.class_names
    mlflow.log_text(evaluate.confusion_csv(result.confusion, names), f"reports/{prefix}_confusion_matrix.csv")
    mlflow.log_text(evaluate.confusion_csv(result.confusion_normalized, names, fmt="{:.4f}"),
                    f"reports/{prefix}_confusion_matrix_normalized.csv")
    for normalized, suffix in ((False, ""), (True, "_normalized")):
        matrix = result.confusion_normalized if normalized else result.confusion
        figure = evaluate.plot_confusion_matrix(matrix, names, normalized,
                                                title=f"Confusion matrix ({prefix})")
        mlflow.log_figure(figure, f"figures/{prefix}_confusion_matrix{suffix}.png")


@track.MLFLOW_TIME
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


def train_and_log(cfg: Config, splits: data_module.Splits) -> tuple:
    """Inside an active run: build, train, evaluate on the test set, log it all."""
    import keras

    from src import model as model_module
    from src import train

    train.set_threads(cfg.trainer)
    keras.utils.set_random_seed(cfg.seed)
    train.set_precision(cfg.trainer.precision)
    model = train.compile_model(model_module.build_cnn(cfg.model), cfg.trainer)
    summary_lines: list = []
    model.summary(print_fn=lambda line, *args, **kwargs: summary_lines.append(line))
    mlflow.log_text("\n".join(summary_lines), "model_summary.txt")
    mlflow.log_metric("model_parameters", model.count_params())
    training = train.fit(model, splits, cfg.trainer, callbacks=[track.epoch_logger()])
    log_training(training, splits.validation)
    result = evaluate.evaluate(model, splits.x_test, splits.y_test, splits.class_names)
    log_evaluation(result, "test")
    if cfg.tracking.log_model:
        with track.MLFLOW_TIME:
            track.log_keras_model(model, splits.x_test)
    mlflow_seconds = track.MLFLOW_TIME.seconds
    mlflow.log_metrics({"mlflow_seconds": mlflow_seconds,
                        "mlflow_share_of_training": mlflow_seconds / max(training.seconds, 1e-9)})
    return model, training, result


def run_training(cfg: Config, config_yaml: str, overrides: Optional[list] = None,
                 tags: Optional[Mapping[str, str]] = None, parent_run_id: Optional[str] = None) -> float:
    """One training job (the baseline, or one job of a sweep under
    `parent_run_id`). Data and the store are checked before a run exists."""
    track.MLFLOW_TIME.seconds = 0.0  # this run's share only (a sweep's jobs may share a process)
    splits = data_module.load(cfg.data, cfg.seed)
    uri = track.resolve_uri(cfg.tracking.uri)
    experiment_id = track.ensure_experiment(uri, cfg.tracking.experiment)
    all_tags = track.run_tags({**cfg.tracking.tags, **(tags or {})}, overrides)
    started = time.perf_counter()
    with track.tracked_run(cfg.tracking.run_name or describe(cfg), all_tags, experiment_id=experiment_id,
                           parent_run_id=parent_run_id) as run:
        log_run_inputs(cfg, splits, config_yaml, overrides)
        _, training, result = train_and_log(cfg, splits)
    print_summary(cfg, uri, run.info.run_id, result, training, time.perf_counter() - started)
    return result.accuracy


def print_summary(cfg: Config, uri: str, run_id: str, result, training, seconds: float) -> None:
    best = training.best_epoch("val_accuracy")
    lines = [
        "",
        f"test accuracy   {result.accuracy:.4f}   (test loss {result.loss:.4f})",
    ]
    if best is not None:
        lines.append(f"best val acc    {training.history['val_accuracy'][best]:.4f} at epoch {best + 1}"
                     f"{' (validated on the test set, as the notebook does)' if cfg.data.validation.value == 'test' else ''}")
    lines += [
        f"training        {training.seconds:.0f} s, {training.images_per_second:,.0f} images/s;"
        f" run took {seconds:.0f} s",
        f"mlflow calls    {track.MLFLOW_TIME.seconds:.1f} s, {track.MLFLOW_TIME.seconds / max(training.seconds, 1e-9):.1%}"
        " of the training time",
        f"mlflow run      {run_id}  (experiment '{cfg.tracking.experiment}')",
        f"open the UI     {track.ui_command(uri)}",
    ]
    print("\n".join(lines), flush=True)
