"""The keras-tuner side of a study: the hypermodel, a tuner whose every trial is a
nested MLflow run, and the saved state a study resumes from."""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Dict, Mapping, Optional

import keras_tuner
import mlflow
import psutil

from src.config import Config, search_space, tuner_kinds
from src.core import data as data_module
from src.core import interrupt, memory, train
from src.jobs import budget as study_budget
from src.jobs import plan, training, trial_seams, warm_start
from src.jobs.state import save_tuner_json_atomically
from src.jobs.trial_seams import trial_name
from src.tracking.runs import tracked_run
from src.tracking.store import child_runs

log = logging.getLogger(__name__)

class CifarHyperModel(keras_tuner.HyperModel):
    """The project's model and training, with the search space applied to the config."""

    def __init__(self, base: Config, splits: data_module.Splits):
        super().__init__(name="cifar10_cnn")
        self.base, self.splits = base, splits

    def trial_config(self, hp) -> Config:
        return search_space.apply(self.base, search_space.declare(hp, self.base.tuner.search_space))

    def build(self, hp):
        cfg = self.trial_config(hp)
        model = train.prepare_model(cfg.model, cfg.trainer)
        if self.base.tuner.carry_optimizer and hp.values.get("tuner/trial_id"):
            # A Hyperband round that continues an earlier one: keras-tuner loads that round's
            # best-epoch checkpoint next, a Keras weights file that holds the optimizer's
            # variables too. Built now, the optimizer takes them (Adam's moments and step);
            # unbuilt, Keras skips them with a warning and Adam starts again from zero.
            model.optimizer.build(model.trainable_variables)
        return model

    def check_fits(self, hp) -> None:
        """MemoryBudgetError if this trial's configuration would not fit in memory."""
        cfg = self.trial_config(hp)
        memory.check_fits(cfg.model, cfg.trainer, images=len(self.splits.x_train) + len(self.splits.x_val))

    def fit(self, hp, model, callbacks=None, epochs=None, initial_epoch=0, **ignored):
        """Train inside the trial's MLflow run; Hyperband passes its own epochs. What else
        keras-tuner passes is ignored: search(verbose=0) turns off its banners, not Keras'
        progress, which is trainer.verbose."""
        cfg = self.trial_config(hp)
        trainer = dataclasses.replace(cfg.trainer, epochs=epochs or cfg.trainer.epochs)
        trial_cfg = dataclasses.replace(cfg, trainer=trainer, tuner=None)
        # Scored on validation only: the test set never selects.
        trained = training.train_evaluate_log(trial_cfg, self.splits, training.TRIAL, model=model,
                                              initial_epoch=initial_epoch, callbacks=callbacks or ())
        return trained.training.keras_history


class TrackedTrials:
    """Tuner mixin: `run_trial` only trains, evaluates and logs, in the trial's own MLflow run
    (nested under the study's run, or in a worker process under `parent_run_id`).

    The rare cases sit at the seam where keras-tuner starts a trial (`_run_and_update_trial`):
    a stop between trials, a trial a killed process already finished in MLflow, a trial too big
    for memory, a full disk; and the signal hold from a trial's end until keras-tuner has saved it."""

    study_tags: Dict[str, str] = {}
    parent_run_id: Optional[str] = None
    progress: Optional[plan.Progress] = None

    def run_trial(self, trial, *args, **kwargs):
        values, objective = dict(trial.hyperparameters.values), self.oracle.objective.name
        started = time.perf_counter()
        # Signals are held from the end of its work until on_trial_end has saved the trial in keras-tuner's
        # state: a trial FINISHED in MLflow but not saved would run again on resume.
        with tracked_run(trial_name(trial.trial_id, values), self.trial_tags(trial), nested=True,
                         parent_run_id=self.parent_run_id, hold_signals_at_end=True):
            mlflow.log_params({f"hp.{key}": value for key, value in values.items()})
            histories = super().run_trial(trial, *args, **kwargs)
            pick = min if self.oracle.objective.direction == "min" else max
            score = statistics.fmean(pick(h.history[objective]) for h in histories)
            gc.collect()
            mlflow.log_metrics({f"best_{objective}": score, "trial_seconds": time.perf_counter() - started,
                                "process_rss_mb": psutil.Process().memory_info().rss / 2**20})
        who = f"study {self.tuner_id}" if os.environ.get("KERASTUNER_ORACLE_IP") else "study"
        seconds = time.perf_counter() - started
        log.info("[%s] %s -> %s %.4f (%.0f s); %s", who, trial_name(trial.trial_id, values), objective, score,
                 seconds, self.progress_line(values, sum(len(h.history.get("loss", [])) for h in histories), seconds))
        return histories

    def trial_tags(self, trial) -> Dict[str, str]:
        tags = {**self.study_tags, "study_role": "trial", "trial_id": trial.trial_id, "tuner_worker": self.tuner_id}
        known = warm_start.label(self.hypermodel.base, trial.hyperparameters.values)
        return {**tags, "warm_start": known} if known else tags  # the baseline configuration, or a tuner.enqueue entry

    # ---- the seam where a trial starts: its rare cases, one line each ----------------------

    def _run_and_update_trial(self, trial, *args, **kwargs):
        interrupt.check()  # a stop between two trials
        if trial_seams.finished_before(self, trial):  # a killed process finished it in MLflow
            return
        with trial_seams.full_disk_stops_the_search():
            trial_seams.refuse_if_too_big(self, trial)  # recorded FAILED; keras-tuner goes on
            return super()._run_and_update_trial(trial, *args, **kwargs)

    def on_trial_end(self, trial):
        try:
            super().on_trial_end(trial)
        finally:
            interrupt.undefer()

    def progress_line(self, values: Mapping, epochs_trained: int, seconds: float) -> str:
        """Trial k of N and the ETA, counted from the study's FINISHED trial runs in MLflow
        (the one record every worker, and a resumed study, shares)."""
        if self.progress is None:
            self.progress = plan.Progress(self.hypermodel.base)
        parent = self.parent_run_id or mlflow.active_run().info.run_id
        client = mlflow.MlflowClient()
        done = child_runs(client, client.get_run(parent).info.experiment_id, parent, status="FINISHED",
                          role="trial")
        epochs = sum(int(run.data.metrics.get("epochs_trained", 0)) for run in done)
        return self.progress.line(len(done), epochs, epochs_trained, values, seconds)


class TrackedHyperband(TrackedTrials, keras_tuner.Hyperband):
    pass


class TrackedRandomSearch(TrackedTrials, keras_tuner.RandomSearch):
    pass


class TrackedBayesianOptimization(TrackedTrials, keras_tuner.BayesianOptimization):
    pass


class TrackedGridSearch(TrackedTrials, keras_tuner.GridSearch):
    pass


# By the keras-tuner class each extends (src/config/tuner_kinds.py names it per tuner kind).
TRACKED_TUNERS = {cls.__bases__[1].__name__: cls for cls in TrackedTrials.__subclasses__()}


def make_tuner(cfg: Config, hypermodel: CifarHyperModel, directory: Path, tags: Dict[str, str],
               parent_run_id: Optional[str] = None):
    """The study's tuner; with tuner.overwrite=false it carries on from the saved state."""
    save_tuner_json_atomically()
    kind = tuner_kinds.of(cfg.tuner.kind)
    tuner_class = TRACKED_TUNERS[kind.keras_tuner_class]
    common = dict(hypermodel=hypermodel, objective=cfg.tuner.objective, seed=cfg.tuner.seed,
                  executions_per_trial=cfg.tuner.executions_per_trial, overwrite=cfg.tuner.overwrite,
                  directory=str(directory.parent), project_name=directory.name)
    budget = kind.tuner_arguments(cfg.tuner)
    # keras-tuner print()s "Reloading Tuner from <file>" as it carries on from saved state, and
    # the launcher of a parallel study reloads it once the workers are done: DEBUG records of the
    # study's logger, off the console at its INFO level (a resumed study says "(resumed)" itself).
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        tuner = tuner_class(**budget, **common)
    tuner.study_tags, tuner.parent_run_id = dict(tags), parent_run_id  # before any trial runs
    for line in printed.getvalue().splitlines():
        log.debug("keras-tuner: %s", line)
    oracle = tuner.oracle
    # keras-tuner reloads the oracle only if `<tuner id>.json` exists: state written under
    # another id (tuner0 alone, or the chief and workers of a parallel study) is reloaded here.
    if (isinstance(oracle, keras_tuner.Oracle) and not cfg.tuner.overwrite and not oracle.trials
            and (directory / "oracle.json").is_file()):
        oracle.reload()
    if isinstance(oracle, keras_tuner.Oracle):  # a parallel study's worker holds a client, not the oracle
        warm_start.install(oracle, cfg)
        if cfg.tuner.budget_minutes and (parent_run_id or mlflow.active_run()):
            study_budget.install(oracle, cfg, parent_run_id or mlflow.active_run().info.run_id, hypermodel.splits)
    return tuner
