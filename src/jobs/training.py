"""One training run, end to end: data -> model -> train -> evaluate -> track."""
from __future__ import annotations

import logging
import time
from typing import Mapping, Optional

from src.config import Config
from src.core import data as data_module
from src.core import evaluate, train
from src.jobs.job import OpenedJob
from src.tracking import logged, store
from src.tracking.runs import run_tags, tracked_run

log = logging.getLogger(__name__)


def describe(cfg: Config) -> str:
    """A run name that says what was trained, e.g. f32-64-128_d0.5_e20_s42."""
    filters = "-".join(str(f) for f in cfg.model.conv_filters)
    return f"f{filters}_d{cfg.model.dropout:g}_e{cfg.trainer.epochs}_s{cfg.seed}"


def train_and_log(cfg: Config, splits: data_module.Splits) -> tuple:
    """Inside an active run: build, train, evaluate on the test set, log it all."""
    model = train.prepare_model(cfg.model, cfg.trainer, seed=cfg.seed)
    logged.log_model_summary(model)
    training = train.fit(model, splits, cfg.trainer, callbacks=[logged.epoch_logger()])
    logged.log_training(training, splits.validation)
    result = evaluate.evaluate(model, splits.x_test, splits.y_test, splits.class_names)
    logged.log_evaluation(result, "test")
    if cfg.tracking.log_model:
        logged.log_keras_model(model, splits.x_test)
    return model, training, result


def run_training(cfg: Config, job: OpenedJob, config_yaml: str, overrides: Optional[list] = None,
                 tags: Optional[Mapping[str, str]] = None, parent_run_id: Optional[str] = None) -> float:
    """One training job (the baseline, or one job of a sweep under
    `parent_run_id`). Data and the store are checked before a run exists."""
    splits, uri, experiment_id = job.splits, job.uri, job.experiment_id
    all_tags = run_tags({**cfg.tracking.tags, **(tags or {})}, overrides)
    started = time.perf_counter()
    with tracked_run(cfg.tracking.run_name or describe(cfg), all_tags, experiment_id=experiment_id,
                     parent_run_id=parent_run_id) as run:
        logged.log_run_inputs(cfg, splits, config_yaml, overrides)
        _, training, result = train_and_log(cfg, splits)
        mlflow_seconds = logged.log_mlflow_share(training.seconds)
    log_summary(cfg, uri, experiment_id, run.info.run_id, result, training, mlflow_seconds,
                time.perf_counter() - started)
    return result.accuracy


def log_summary(cfg: Config, uri: str, experiment_id: str, run_id: str, result, training,
                mlflow_seconds: float, seconds: float) -> None:
    best = training.best_epoch("val_accuracy")
    lines = [f"test accuracy   {result.accuracy:.4f}   (test loss {result.loss:.4f})"]
    if best is not None:
        lines.append(f"best val acc    {training.history['val_accuracy'][best]:.4f} at epoch {best + 1}"
                     f"{' (validated on the test set, as the notebook does)' if cfg.data.validation.value == 'test' else ''}")
    lines += [
        f"training        {training.seconds:.0f} s, {training.images_per_second:,.0f} images/s;"
        f" run took {seconds:.0f} s",
        f"mlflow calls    {mlflow_seconds:.1f} s, {mlflow_seconds / max(training.seconds, 1e-9):.1%}"
        " of the training time",
        f"mlflow run      {run_id}  (experiment '{cfg.tracking.experiment}')",
        f"open the UI     {store.ui_command(uri)}",
        f"the run         {store.run_link(uri, experiment_id, run_id)}",
    ]
    log.info("\n".join(lines))
