"""The rare cases of a trial, where keras-tuner starts one (`TrackedTrials._run_and_update_trial`).

Each is one line there, so that the trial hook itself (`run_trial`) only trains,
evaluates and logs:
- a trial a killed process finished in MLflow before keras-tuner saved it;
- a trial whose configuration would not fit in memory: recorded FAILED, the search goes on;
- a full disk: the search stops (a resume runs the trial again) rather than fail every trial.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator, Mapping

import keras_tuner
import mlflow

from src.core import interrupt, memory
from src.tracking import disk
from src.tracking.runs import tracked_run
from src.tracking.store import child_runs

log = logging.getLogger(__name__)


def trial_name(trial_id: str, values: Mapping) -> str:
    """A trial's run name: its id, its values, and a Hyperband round's epochs."""
    parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items() if "/" not in k]
    if "tuner/epochs" in values:
        parts.append(f"epochs={values['tuner/initial_epoch']}-{values['tuner/epochs']}")
    return f"trial {trial_id} " + " ".join(parts)


def finished_before(tuner, trial) -> bool:
    """True, with keras-tuner's oracle given the recorded score (unless it holds it already: a
    kill after keras-tuner saved the score, before it ended the trial), when this trial's child
    run is already FINISHED in MLflow: its training, checkpoint and record are complete, so it is
    reported again, not trained again, and stays FINISHED exactly once."""
    objective = tuner.oracle.objective.name
    parent = tuner.parent_run_id or mlflow.active_run().info.run_id
    client = mlflow.MlflowClient()
    done = [run for run in child_runs(client, client.get_run(parent).info.experiment_id, parent,
                                      status="FINISHED", role="trial")
            if run.data.tags.get("trial_id") == trial.trial_id and f"best_{objective}" in run.data.metrics]
    if not done:
        return False
    score = done[-1].data.metrics[f"best_{objective}"]
    interrupt.defer()  # held until on_trial_end has saved it, as after a trial that trains
    log.info("[study] %s already finished in MLflow (run %s): reusing %s %.4f",
             trial_name(trial.trial_id, trial.hyperparameters.values), done[-1].info.run_id, objective, score)
    if not tuner.oracle.get_trial(trial.trial_id).metrics.exists(objective):  # as keras-tuner's own path checks
        tuner.oracle.update_trial(trial.trial_id, {objective: score})
    return True


def refuse_if_too_big(tuner, trial) -> None:
    """A configuration that would not fit in memory is refused before it trains (rather than
    the out-of-memory killer ending the study mid-epoch): its child run is recorded FAILED with
    the reason (tag `failure`), and keras-tuner records the trial FAILED and goes on."""
    try:
        tuner.hypermodel.check_fits(trial.hyperparameters)
    except memory.MemoryBudgetError as err:
        values = trial.hyperparameters.values
        log.warning("[study] trial %s refused: %s", trial.trial_id, err)
        with contextlib.suppress(memory.MemoryBudgetError):
            with tracked_run(trial_name(trial.trial_id, values), {**tuner.trial_tags(trial), "failure": str(err)},
                             nested=True, parent_run_id=tuner.parent_run_id):
                mlflow.log_params({f"hp.{key}": value for key, value in values.items()})
                raise err  # the run ends FAILED
        raise keras_tuner.errors.FailedTrialError(str(err)) from None


@contextlib.contextmanager
def full_disk_stops_the_search() -> Iterator[None]:
    """keras-tuner records any error of a trial and hands out the next: a full disk would fail
    them all. FatalError stops the search; the trial stays ongoing in the saved state, and a
    resume runs it again."""
    try:
        yield
    except Exception as err:
        cause = disk.full_disk_cause(err)
        if cause is None:
            raise
        raise keras_tuner.errors.FatalError(str(cause)) from err
