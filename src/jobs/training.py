"""Train -> evaluate -> log, the one recipe of every run kind (baseline, sweep job, trial,
confirmation run, a study's final model), and one training job end to end."""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

import keras
import mlflow

from src.config import Config
from src.core import data as data_module
from src.core import evaluate, train
from src.jobs.job import OpenedJob
from src.tracking import logged, store
from src.tracking.runs import flatten, run_tags, tracked_run

log = logging.getLogger(__name__)


def describe(cfg: Config) -> str:
    """A run name that says what was trained, e.g. f32-64-128_d0.5_e20_s42."""
    filters = "-".join(str(f) for f in cfg.model.conv_filters)
    return f"f{filters}_d{cfg.model.dropout:g}_e{cfg.trainer.epochs}_s{cfg.seed}"


@dataclass
class Trained:
    model: object
    training: Optional[train.TrainingResult]  # None for a model scored as it is (a checkpoint)
    scores: Dict[str, evaluate.Evaluation]  # by split: "val", "test"


@dataclass(frozen=True)
class RunKind:
    """What a kind of run does around the shared recipe (train_evaluate_log)."""
    name: str
    score: Tuple[str, ...]  # the splits it is scored on, in order
    validate: bool = True  # validation during training (the final retrain has no held-out split left)
    log_config: bool = True  # its config as params (a job logs its inputs itself, a final model its choice)
    curves: bool = True  # per-epoch curves and the model's summary in its own run
    best_epoch_weights: bool = False  # score the best validation epoch's weights, as the search picked them
    may_log_model: bool = False  # log the Keras model when tracking.log_model is on


# The baseline and a sweep's job: scored on test, the model logged (its inputs logged by the job).
JOB = RunKind("job", score=("test",), log_config=False, may_log_model=True)
# A trial: keras-tuner's model, epochs and callbacks, scored on validation only (the test set never selects).
TRIAL = RunKind("trial", score=("val",))
# A confirmation run: the weights the search would have picked, then validation and test.
CONFIRMATION = RunKind("confirmation", score=("val", "test"), best_epoch_weights=True)
# A study's final retrain: the whole training set, no curves of its own in the study's run.
FINAL_RETRAIN = RunKind("final retrain", score=("test",), validate=False, log_config=False, curves=False)


def train_evaluate_log(cfg: Config, splits: data_module.Splits, kind: RunKind, *, model=None,
                       initial_epoch: int = 0, callbacks: Sequence = (),
                       objective: str = "val_accuracy") -> Trained:
    """The one recipe of every run kind, inside its active MLflow run: build (or take) the model,
    train it, score it on the kind's splits, log it all. A Hyperband round passes keras-tuner's
    model, callbacks and `initial_epoch`."""
    if kind.log_config:  # with its training set's size: its epochs times it are the images it trained on
        mlflow.log_params({**flatten(dataclasses.asdict(cfg)), "data.train_images": len(splits.x_train)})
    model = model if model is not None else train.prepare_model(cfg.model, cfg.trainer, seed=cfg.seed)
    if kind.curves:
        logged.log_model_summary(model)  # its parameter count: the cost axis of a study's Pareto front
        # > 0 where a Hyperband round continued the optimizer of the round before.
        mlflow.log_param("optimizer.start_step", int(model.optimizer.iterations.numpy()))
    extra = list(callbacks) + ([logged.epoch_logger()] if kind.curves else [])
    if kind.best_epoch_weights:
        extra.append(keras.callbacks.EarlyStopping(monitor=objective, mode="min" if objective.endswith("loss")
                                                   else "max", patience=cfg.trainer.epochs,
                                                   restore_best_weights=True))
    training = train.fit(model, splits, cfg.trainer, callbacks=extra, initial_epoch=initial_epoch,
                         validate=kind.validate)
    if kind.curves:
        logged.log_training(training, splits.validation)
    scores = score_and_log(model, splits, kind.score)
    if kind.may_log_model and cfg.tracking.log_model:
        logged.log_keras_model(model, splits.x_test)
    return Trained(model, training, scores)


def score_and_log(model, splits: data_module.Splits, score: Sequence[str]) -> Dict[str, evaluate.Evaluation]:
    """Evaluate on each split named and log it: the test set with its metrics and per-image
    predictions, validation as the report and confusion matrix the leaderboard links to, with
    `val_accuracy_scored` (of the weights that were scored)."""
    scores = {}
    for split in score:
        x, y = (splits.x_test, splits.y_test) if split == "test" else (splits.x_val, splits.y_val)
        scores[split] = evaluate.evaluate(model, x, y, splits.class_names)
        if split == "test":
            logged.log_evaluation(scores[split], "test")
        else:
            logged.log_evaluation(scores[split], "val", metrics=False)
            mlflow.log_metric("val_accuracy_scored", scores[split].accuracy)
    return scores


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
        trained = train_evaluate_log(cfg, splits, JOB)
        training, result = trained.training, trained.scores["test"]
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
