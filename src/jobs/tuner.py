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

from src.config import Config, TunerKind, search_space
from src.core import data as data_module
from src.core import interrupt, memory, train
from src.jobs import budget as study_budget
from src.jobs import plan, training, warm_start
from src.jobs.state import save_tuner_json_atomically
from src.tracking import disk
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
        # The oracle process of a parallel study holds no data: it builds only to read the space.
        images = len(self.splits.x_train) + len(self.splits.x_val) if self.splits is not None else 0
        try:
            memory.check_fits(cfg.model, cfg.trainer, images=images)
        except memory.MemoryBudgetError as err:
            run = mlflow.active_run()
            if run is None or run.data.tags.get("study_role") != "trial":
                return None  # keras-tuner probing the search space at start-up: it uses only the hp declared
            mlflow.set_tag("failure", str(err))
            log.warning("[study] trial %s refused: %s", run.data.tags.get("trial_id"), err)
            # keras-tuner records the trial FAILED and goes on; tracked_run ends its MLflow run FAILED.
            raise keras_tuner.errors.FailedTrialError(str(err)) from None
        model = train.prepare_model(cfg.model, cfg.trainer)
        if self.base.tuner.carry_optimizer and hp.values.get("tuner/trial_id"):
            # A Hyperband round that continues an earlier one: keras-tuner loads that round's
            # best-epoch checkpoint next, a Keras weights file that holds the optimizer's
            # variables too. Built now, the optimizer takes them (Adam's moments and step);
            # unbuilt, Keras skips them with a warning and Adam starts again from zero.
            model.optimizer.build(model.trainable_variables)
        return model

    def fit(self, hp, model, callbacks=None, epochs=None, initial_epoch=0, **ignored):
        """Train inside the trial's MLflow run; Hyperband passes its own epochs. What else
        keras-tuner passes is ignored: search(verbose=0) turns off its banners, not Keras'
        progress, which is trainer.verbose."""
        cfg = self.trial_config(hp)
        trainer = dataclasses.replace(cfg.trainer, epochs=epochs or cfg.trainer.epochs)
        trial_cfg = dataclasses.replace(cfg, trainer=trainer, tuner=None)
        # Scored on validation only: the test set never selects.
        trained = training.train_evaluate_log(trial_cfg, self.splits, model=model, initial_epoch=initial_epoch,
                                              callbacks=callbacks or (), score=("val",))
        return trained.training.keras_history


def trial_name(trial_id: str, values: Mapping) -> str:
    parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items() if "/" not in k]
    if "tuner/epochs" in values:
        parts.append(f"epochs={values['tuner/initial_epoch']}-{values['tuner/epochs']}")
    return f"trial {trial_id} " + " ".join(parts)


class TrackedTrials:
    """Tuner mixin: each trial runs inside its own nested MLflow run: under the
    active (study) run, or in a worker process under `parent_run_id`."""

    study_tags: Dict[str, str] = {}
    parent_run_id: Optional[str] = None
    progress: Optional[plan.Progress] = None

    def finished_in_mlflow(self, trial_id: str):
        """This trial's FINISHED child run, if a killed process ended it in MLflow but died
        before keras-tuner saved the trial (which then runs it again on resume)."""
        parent = self.parent_run_id or mlflow.active_run().info.run_id
        client = mlflow.MlflowClient()
        experiment_id = client.get_run(parent).info.experiment_id
        done = [run for run in child_runs(client, experiment_id, parent, status="FINISHED", role="trial")
                if run.data.tags.get("trial_id") == trial_id]
        return done[-1] if done else None

    def run_trial(self, trial, *args, **kwargs):
        interrupt.check()
        values = dict(trial.hyperparameters.values)
        objective = self.oracle.objective.name
        done = self.finished_in_mlflow(trial.trial_id)
        if done is not None and f"best_{objective}" in done.data.metrics:
            # Its training, checkpoint and MLflow record are complete: report the same
            # result instead of training it again, so it stays FINISHED exactly once.
            score = done.data.metrics[f"best_{objective}"]
            log.info("[study] %s already finished in MLflow (run %s): reusing %s %.4f",
                     trial_name(trial.trial_id, values), done.info.run_id, objective, score)
            interrupt.defer()
            return {objective: score}
        tags = {**self.study_tags, "study_role": "trial", "trial_id": trial.trial_id,
                "tuner_worker": self.tuner_id}
        known = warm_start.label(self.hypermodel.base, values)
        if known:
            tags["warm_start"] = known  # the baseline configuration, or a tuner.enqueue entry
        started = time.perf_counter()
        with tracked_run(trial_name(trial.trial_id, values), tags, nested=True,
                         parent_run_id=self.parent_run_id):
            mlflow.log_params({f"hp.{key}": value for key, value in values.items()})
            histories = super().run_trial(trial, *args, **kwargs)
            pick = min if self.oracle.objective.direction == "min" else max
            score = statistics.fmean(pick(h.history[objective]) for h in histories)
            gc.collect()
            interrupt.check()
            mlflow.log_metrics({f"best_{objective}": score, "trial_seconds": time.perf_counter() - started,
                                "process_rss_mb": psutil.Process().memory_info().rss / 2**20})
            # A trial finished in MLflow must also be saved by keras-tuner, or a resume
            # runs it again: hold signals until on_trial_end has saved it (a SIGKILL
            # cannot be held: finished_in_mlflow covers that on resume).
            interrupt.defer()
        interrupt.failpoint("trial_finished_in_mlflow")
        who = f"study {self.tuner_id}" if os.environ.get("KERASTUNER_ORACLE_IP") else "study"
        log.info("[%s] %s -> %s %.4f (%.0f s); %s", who, trial_name(trial.trial_id, values), objective, score,
                 time.perf_counter() - started,
                 self.progress_line(values, sum(len(h.history.get("loss", [])) for h in histories)))
        return histories

    def progress_line(self, values: Mapping, epochs_trained: int) -> str:
        """Trial k of N and the ETA, counted from the study's FINISHED trial runs in MLflow
        (the one record every worker, and a resumed study, shares)."""
        if self.progress is None:
            self.progress = plan.Progress(self.hypermodel.base)
        parent = self.parent_run_id or mlflow.active_run().info.run_id
        client = mlflow.MlflowClient()
        done = child_runs(client, client.get_run(parent).info.experiment_id, parent, status="FINISHED",
                          role="trial")
        epochs = sum(int(run.data.metrics.get("epochs_trained", 0)) for run in done)
        return self.progress.line(len(done), epochs, epochs_trained, values)

    def _run_and_update_trial(self, trial, *args, **kwargs):
        # keras-tuner records any error of a trial and hands out the next: a full disk would fail
        # them all. FatalError stops the search; the trial stays ongoing in the saved state, and
        # a resume runs it again.
        try:
            return super()._run_and_update_trial(trial, *args, **kwargs)
        except Exception as err:
            if disk.full_disk_cause(err) is None:
                raise
            raise keras_tuner.errors.FatalError(str(disk.full_disk_cause(err))) from err

    def on_trial_end(self, trial):
        try:
            super().on_trial_end(trial)
        finally:
            interrupt.undefer()


class TrackedHyperband(TrackedTrials, keras_tuner.Hyperband):
    pass


class TrackedRandomSearch(TrackedTrials, keras_tuner.RandomSearch):
    pass


class TrackedBayesianOptimization(TrackedTrials, keras_tuner.BayesianOptimization):
    pass


class TrackedGridSearch(TrackedTrials, keras_tuner.GridSearch):
    pass


TUNER_CLASSES = {
    TunerKind.hyperband: TrackedHyperband,
    TunerKind.random: TrackedRandomSearch,
    TunerKind.bayesian: TrackedBayesianOptimization,
    TunerKind.grid: TrackedGridSearch,
}


def make_tuner(cfg: Config, hypermodel: CifarHyperModel, directory: Path, tags: Dict[str, str],
               parent_run_id: Optional[str] = None):
    """The study's tuner; with tuner.overwrite=false it carries on from the saved state."""
    save_tuner_json_atomically()
    kind = cfg.tuner.kind
    tuner_class = TUNER_CLASSES[kind]
    common = dict(hypermodel=hypermodel, objective=cfg.tuner.objective, seed=cfg.tuner.seed,
                  executions_per_trial=cfg.tuner.executions_per_trial, overwrite=cfg.tuner.overwrite,
                  directory=str(directory.parent), project_name=directory.name)
    budget = (dict(max_epochs=cfg.tuner.max_epochs, factor=cfg.tuner.factor,
                   hyperband_iterations=cfg.tuner.hyperband_iterations) if kind is TunerKind.hyperband
              else dict(max_trials=cfg.tuner.max_trials))
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
            study_budget.install(oracle, cfg, parent_run_id or mlflow.active_run().info.run_id)
    return tuner
