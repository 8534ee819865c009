"""A study's wall-time budget (`tuner.budget_minutes`), as Optuna's `timeout` and Ray Tune's
`time_budget_s`: the search stops when the time left is what the confirmation needs, then
the study confirms.

The time spent is the study's own runs' wall time in MLflow (its trials and confirmation runs,
whatever session ran them), so a resumed study counts what earlier sessions spent. The
confirmation's need is its expected epochs under the deciding rule (`plan.plan`) at the
seconds per epoch the finished trials took here, less the baseline configuration's first
seeds that the store already holds with the same recipe (`reuse`: taken, not trained). keras-tuner stops a search when its oracle
hands out a STOPPED trial; the budget hands one out in place of the next trial.
"""
from __future__ import annotations

import logging
import time
from typing import Optional

import mlflow
from keras_tuner.src.engine import trial as trial_module

from src.config import Config, tuner_kinds
from src.jobs import confirm, plan, reuse
from src.tracking.store import child_runs

log = logging.getLogger(__name__)


class Budget:
    def __init__(self, cfg: Config, parent_id: str, splits=None):
        self.minutes = cfg.tuner.budget_minutes
        self.parent_id = parent_id
        reusable = reusable_baseline_epochs(cfg, splits) if splits is not None else 0
        # expected, under the deciding rule (never below nothing: the plan may count fewer epochs a run)
        self.confirm_epochs = max(0, plan.plan(cfg).confirm_epochs - reusable)
        self.reused_note = f", less {reusable} epochs of the baseline's seeds the store holds" if reusable else ""
        self.reason: Optional[str] = None

    def spent_and_rate(self):
        """(minutes the study's runs took so far, seconds per epoch of its finished trials or None)."""
        client = mlflow.MlflowClient()
        experiment_id = client.get_run(self.parent_id).info.experiment_id
        runs = child_runs(client, experiment_id, self.parent_id)
        now = time.time() * 1000
        spent = sum(((run.info.end_time or now) - run.info.start_time) / 60_000 for run in runs)
        trials = [r for r in runs if r.info.status == "FINISHED" and r.data.tags.get("study_role") == "trial"
                  and r.data.metrics.get("epochs_trained")]
        epochs = sum(r.data.metrics["epochs_trained"] for r in trials)
        seconds = sum((r.info.end_time - r.info.start_time) / 1000 for r in trials)
        return spent, (seconds / epochs if epochs else None)

    def exhausted(self, trials_done: int) -> Optional[str]:
        """Why the search must stop now, or None."""
        spent, per_epoch = self.spent_and_rate()
        if per_epoch is None:  # nothing measured yet: the first trial tells the rate
            return None
        need = self.confirm_epochs * per_epoch / 60
        if spent + need < self.minutes:
            return None
        return (f"the search stopped after {trials_done} trials: {spent:.0f} of the {self.minutes:g}-minute budget "
                f"spent, and the confirmation needs about {need:.0f} min ({self.confirm_epochs} epochs at "
                f"{per_epoch:.0f} s each, the trials' rate{self.reused_note})")


def reusable_baseline_epochs(cfg: Config, splits) -> int:
    """Epochs of the baseline configuration's first seeds already FINISHED in the store with
    the same recipe: the confirmation takes them instead of training (src/jobs/reuse.py)."""
    client = mlflow.MlflowClient()
    baseline = confirm.baseline_candidate(cfg)
    found = [reuse.find(client, reuse.recipe(confirm.run_config(cfg, baseline, cfg.seed + index), splits,
                                             cfg.tuner.objective))
             for index in range(cfg.tuner.confirm.seeds)]
    # no more a run than the plan counted for one (Hyperband's: its max_epochs)
    counted = tuner_kinds.of(cfg.tuner.kind).candidate_epochs(cfg, tuner_kinds.expected_epochs(cfg))
    return min(baseline.epochs, counted) * sum(source is not None for source in found)


def install(oracle, cfg: Config, parent_id: str, splits=None) -> None:
    """Hand out a STOPPED trial once the budget leaves only the confirmation's time."""
    if not cfg.tuner.budget_minutes or getattr(oracle, "_budget", None) is not None:
        return
    budget = oracle._budget = Budget(cfg, parent_id, splits)
    create = oracle.create_trial

    def create_within_budget(tuner_id):
        reason = budget.reason or budget.exhausted(len(oracle.trials))
        if reason is None:
            return create(tuner_id)
        if budget.reason is None:
            budget.reason = reason
            log.info("[study] budget: %s", reason)
            mlflow.MlflowClient().set_tag(parent_id, "budget_cut", reason)
        return trial_module.Trial(oracle.get_space(), status=trial_module.TrialStatus.STOPPED)
    oracle.create_trial = create_within_budget
