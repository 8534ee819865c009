"""A study's final model: the chosen trial's one test evaluation, its model logged, and the
registry's champion moved only when the confirmation decided the candidate better."""
from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass
from typing import Dict

import mlflow
import numpy as np

from src.config import FinalFit
from src.core import data as data_module
from src.core import evaluate
from src.jobs import training
from src.jobs.context import StudyContext
from src.jobs.leaderboard import Leaderboard
from src.tracking import logged

log = logging.getLogger(__name__)


@dataclass
class FinalModel:
    result: evaluate.Evaluation  # its one test evaluation
    params: Dict[str, object]  # how it was obtained (final.mode, final.trial_id, ...)


def whole_training_set(splits: data_module.Splits) -> data_module.Splits:
    """Training plus validation images, for retraining the chosen configuration."""
    return dataclasses.replace(splits, x_train=np.concatenate([splits.x_train, splits.x_val]),
                               y_train=np.concatenate([splits.y_train, splits.y_val]))


def final_choice(tuner, board, best_trial, best_row, confirmation):
    """The trial the final model comes from: the confirmation's best candidate, whose mean over
    seeds at the full budget is better evidence than the search's single run (which, in
    Hyperband, may even be a short round's); without a confirmation, the search's best."""
    if confirmation is None or not confirmation.winner.startswith("trial "):
        return best_trial, best_row
    trial_id = confirmation.winner.removeprefix("trial ")
    if trial_id == best_trial.trial_id:
        return best_trial, best_row
    return tuner.oracle.get_trial(trial_id), board[board["trial_id"] == trial_id].iloc[0]


def final_model(study: StudyContext, tuner, board: Leaderboard, confirmation) -> FinalModel:
    """The chosen trial's (final_choice) one test evaluation, in the study's run, and its model
    logged: its best-epoch checkpoint as it is, or its configuration retrained on the whole
    training set for its best epoch count."""
    cfg, splits = study.cfg, study.splits
    trial, row = final_choice(tuner, board.frame, board.best_trial, board.best_row, confirmation)
    chosen = {f"final.hp.{k}": v for k, v in trial.hyperparameters.values.items()}
    if cfg.tuner.final_fit is FinalFit.checkpoint:
        with warnings.catch_warnings():  # a model to evaluate, never to train: its optimizer's state is moot
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model = tuner.load_model(trial)
        final = {"final.mode": "checkpoint", "final.trial_id": trial.trial_id,
                 "final.train_images": splits.x_train.shape[0]}
        logged.log_params_once({**final, **chosen})
        result = training.score_and_log(model, splits, ("test",))["test"]
    else:
        best_cfg = tuner.hypermodel.trial_config(trial.hyperparameters)
        epochs = int(row["best_val_epoch"])
        best_cfg = dataclasses.replace(best_cfg, seed=cfg.seed,
                                       trainer=dataclasses.replace(best_cfg.trainer, epochs=epochs))
        full = whole_training_set(splits)
        final = {"final.mode": "retrain", "final.trial_id": trial.trial_id, "final.epochs": epochs,
                 "final.train_images": full.x_train.shape[0]}
        logged.log_params_once({**final, **chosen})
        # The study's run keeps the search's curves and summaries: the retrain logs none of its own.
        trained = training.train_evaluate_log(best_cfg, full, training.FINAL_RETRAIN)
        model, result = trained.model, trained.scores["test"]
    if cfg.tracking.log_model:
        model_info = logged.log_keras_model(model, splits.x_test)
        if cfg.tracking.register_best_as:
            register_unless_beaten(model_info.model_uri, cfg.tracking.register_best_as, confirmation)
    return FinalModel(result, final)


def register_unless_beaten(model_uri: str, name: str, confirmation) -> None:
    """The registry's champion moves to the study's model only when its confirmation decided the
    candidate better than the baseline (`confirm_decision=candidate_better`); on any other outcome
    it stays, and the study's run says why (tag `registered_model`). Without a confirmation stage
    (`tuner.confirm.seeds=0`) nothing decides, and the search's best is registered as asked."""
    if confirmation is not None and confirmation.baseline_best:
        outcome = (confirmation.decision.outcome if confirmation.decision is not None
                   else "the baseline configuration beat it on mean validation accuracy")
        why = (f"not registered as {name}@champion: the confirmation of the best candidate ({confirmation.winner}) "
               f"against the baseline configuration ended {outcome}, and only candidate_better moves the champion")
        mlflow.set_tag("registered_model", why)
        log.info("%s", why)
    else:
        logged.register_champion(model_uri, name)
