"""keras-tuner studies: search on a held-out split, every trial a nested MLflow run.

One parent MLflow run per study (tag `study=<tuner.project_name>`); each trial
is a child run with its hyperparameters, per-epoch curves and a validation
classification report. The winner is chosen on validation data only, then
evaluated once on the test set. Re-running the same command resumes an
interrupted study: keras-tuner reloads its state from
`<tuner.directory>/<tuner.project_name>/`, finished trials are not run (or
logged) again, and the same parent run is reopened.
"""
from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path
from typing import Dict, Mapping, Optional

import keras
import mlflow
import numpy as np
from mlflow import MlflowClient
from omegaconf import OmegaConf

from src.analysis import compare, report
from src.config import Config, FinalFit, TunerKind, cluster
from src.core import data as data_module
from src.core import interrupt, train
from src.jobs import confirm, distributed, resume, training
from src.jobs.job import OpenedJob
from src.jobs.state import save_state_config, state_dir
from src.jobs.tuner import CifarHyperModel, make_tuner
from src.tracking import logged, store
from src.tracking.runs import run_tags, tracked_run
from src.tracking.store import find_study_run

log = logging.getLogger(__name__)


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


def final_model(cfg: Config, tuner, hypermodel: CifarHyperModel, final_trial, final_row,
                splits: data_module.Splits, confirmation):
    """The chosen trial's (final_choice) one test evaluation, in the study's run, and its model
    logged: its best-epoch checkpoint as it is, or its configuration retrained on the whole
    training set for its best epoch count. Returns the test evaluation and how the model was obtained."""
    interrupt.failpoint("final_stage")
    chosen = {f"final.hp.{k}": v for k, v in final_trial.hyperparameters.values.items()}
    if cfg.tuner.final_fit is FinalFit.checkpoint:
        with warnings.catch_warnings():  # a model to evaluate, never to train: its optimizer's state is moot
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model = tuner.load_model(final_trial)
        final = {"final.mode": "checkpoint", "final.trial_id": final_trial.trial_id,
                 "final.train_images": splits.x_train.shape[0]}
        logged.log_params_once({**final, **chosen})
        result = training.score_and_log(model, splits, ("test",))["test"]
    else:
        best_cfg = hypermodel.trial_config(final_trial.hyperparameters)
        epochs = int(final_row["best_val_epoch"])
        best_cfg = dataclasses.replace(best_cfg, seed=cfg.seed,
                                       trainer=dataclasses.replace(best_cfg.trainer, epochs=epochs))
        full = whole_training_set(splits)
        final = {"final.mode": "retrain", "final.trial_id": final_trial.trial_id, "final.epochs": epochs,
                 "final.train_images": full.x_train.shape[0]}
        logged.log_params_once({**final, **chosen})
        # The study's run keeps the search's curves and summaries: the retrain logs none of its own.
        trained = training.train_evaluate_log(best_cfg, full, validate=False, log_config=False, log_curves=False)
        model, result = trained.model, trained.scores["test"]
    if cfg.tracking.log_model:
        model_info = logged.log_keras_model(model, splits.x_test)
        if cfg.tracking.register_best_as:
            register_unless_beaten(model_info.model_uri, cfg.tracking.register_best_as, confirmation)
    return result, final


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


def leaderboard(client, experiment_id: str, parent_id: str, cfg: Config, tuner):
    """The trials ranked on validation (an MLflow table and CSV), the best trial, its row and
    hyperparameters, and the search's counts, logged on the study's run. The figures are the
    report's (src/analysis/study_figures.py), logged with it under `report/`."""
    best_trial = tuner.oracle.get_best_trials(1)[0]
    columns = {name: f"hp.{name}" for name in cfg.tuner.search_space}
    if cfg.tuner.kind is TunerKind.hyperband:
        columns.update({"epochs": "hp.tuner/epochs", "initial_epoch": "hp.tuner/initial_epoch"})
    trials = store.child_runs(client, experiment_id, parent_id, as_frame=True, role="trial")
    board = compare.leaderboard(compare.runs_frame(trials, columns), f"best_{cfg.tuner.objective}")
    board = mark_warm_start(board, trials, cfg.tuner.objective)
    logged.replace_table(board, "leaderboard.json")
    mlflow.log_text(board.to_csv(index=False), "leaderboard.csv")
    best_row = board[board["trial_id"] == best_trial.trial_id].iloc[0]
    mlflow.log_dict(best_trial.hyperparameters.values, "best_hyperparameters.json")
    logged.log_params_once({f"best.{k}": v for k, v in best_trial.hyperparameters.values.items()})
    statuses = board["status"].value_counts()
    mlflow.log_metrics({f"best_{cfg.tuner.objective}": float(best_row[f"best_{cfg.tuner.objective}"]),
                        "trials_finished": int(statuses.get("FINISHED", 0)),
                        "trials_failed": int(statuses.get("FAILED", 0))})
    return board, best_trial, best_row


def mark_warm_start(board, trials, objective: str):
    """The leaderboard's `warm_start` column (baseline, enqueued), and where the baseline
    configuration ranks among the trials of its budget (a Hyperband trial of 3 epochs is not
    compared with one of 20): logged, and the metric `baseline_search_rank`."""
    marks = dict(zip(trials["run_id"], trials["tags.warm_start"])) if "tags.warm_start" in trials else {}
    board = board.assign(warm_start=[marks.get(run) if isinstance(marks.get(run), str) else ""
                                     for run in board["run_id"]])
    baseline = board[(board["warm_start"] == "baseline") & (board["status"] == "FINISHED")]
    if baseline.empty:
        return board
    row = baseline.iloc[0]
    peers = board[board["status"] == "FINISHED"]
    if "epochs" in board:
        peers = peers[peers["epochs"] == row["epochs"]]
    rank = int(list(peers["run_id"]).index(row["run_id"])) + 1  # the board is best first
    mlflow.log_metric("baseline_search_rank", rank)
    log.info("[study] the baseline configuration (trial %s) ranks %d of %d trials at its budget in the search "
             "(%s %.4f)", row["trial_id"], rank, len(peers), objective, row[f"best_{objective}"])
    return board


def search(cfg: Config, splits: data_module.Splits, directory: Path, study_tags: Dict[str, str], run_id: str,
           uri: str, experiment_id: str, overrides: Optional[list]):
    """keras-tuner's search, in this process (trials one after another) or on the study's
    workers (src/jobs/distributed/). Returns the tuner and its hypermodel."""
    hypermodel = CifarHyperModel(cfg, splits)
    if cluster.distributed(cfg.tuner):
        return distributed.search(cfg, hypermodel, directory, study_tags, run_id, uri, experiment_id,
                                  overrides), hypermodel
    tuner = make_tuner(cfg, hypermodel, directory, study_tags)
    save_state_config(cfg, directory)
    # verbose=0: without keras-tuner's print()ed banners ("Trial 3 Complete [...]", "Best val_accuracy
    # So Far"); the study's own line per trial says it. Keras' progress stays trainer.verbose.
    tuner.search(verbose=0)
    return tuner, hypermodel


def run_study(cfg: Config, job: OpenedJob, config_yaml: str, overrides: Optional[list] = None,
              tags: Optional[Mapping[str, str]] = None, parent_run_id: Optional[str] = None) -> float:
    """A study, as its recipe: open its run -> search -> leaderboard -> confirm -> final model ->
    report. Each step finds what is already done in MLflow, so a resumed study repeats nothing."""
    directory, client, project = state_dir(cfg), store.client(job.uri), cfg.tuner.project_name
    study_run_id = find_study_run(client, job.experiment_id, project) if job.resuming else None
    study_tags = {"study": project, **{k: v for k, v in (tags or {}).items() if k.startswith("sweep")}}
    parent_tags = run_tags({**cfg.tracking.tags, **(tags or {}), **study_tags, "study_role": "parent",
                            "tuner": cfg.tuner.kind.value}, overrides)
    keras.utils.set_random_seed(cfg.seed)
    train.set_threads(cfg.trainer)
    with tracked_run(cfg.tracking.run_name or f"study {project}", parent_tags, experiment_id=job.experiment_id,
                     parent_run_id=parent_run_id, run_id=study_run_id) as run:
        if study_run_id is None:
            log_study_inputs(cfg, job.splits, config_yaml, overrides)
        log.info("%s: %s search%s, state in %s%s; MLflow run %s", project, cfg.tuner.kind.value,
                 f" with {cfg.tuner.workers} workers" if cfg.tuner.workers > 1 else "", directory,
                 " (resumed)" if study_run_id else "", run.info.run_id)
        tuner, hypermodel = search(cfg, job.splits, directory, study_tags, run.info.run_id, job.uri,
                                   job.experiment_id, overrides)
        board, best_trial, best_row = leaderboard(client, job.experiment_id, run.info.run_id, cfg, tuner)
        trials = {trial_id: trial.hyperparameters.values for trial_id, trial in tuner.oracle.trials.items()}
        confirmation = confirm.confirm(cfg, board, trials, job.splits, study_tags, job.experiment_id)
        if confirmation is not None:
            mlflow.set_tag("mlflow.note.content", confirmation.summary())
            log.info("%s", confirmation.summary())
        final_trial, final_row = final_choice(tuner, board, best_trial, best_row, confirmation)
        result, final = final_model(cfg, tuner, hypermodel, final_trial, final_row, job.splits, confirmation)
    log_leaderboard(board, cfg, result, run.info.run_id, job.experiment_id, final, job.uri)
    publish_report(client, run.info.run_id, project)
    return result.accuracy


def log_study_inputs(cfg: Config, splits: data_module.Splits, config_yaml: str, overrides: Optional[list]) -> None:
    """The study's inputs at its start; a resume is checked against its data (src/jobs/resume.py).
    Its commit (tags git_commit, git_commits) and trainer.resolved are recorded with them."""
    logged.log_run_inputs(cfg, splits, config_yaml, overrides)
    mlflow.set_tag(resume.DATA_DIGEST_TAG, resume.data_digest(splits))
    mlflow.log_dict(OmegaConf.to_container(OmegaConf.structured(cfg.tuner), enum_to_str=True), "search_space.json")


def publish_report(client: MlflowClient, run_id: str, project: str) -> None:
    """The study's REPORT.md and figures into its run (`report/`), its answer as the run's
    description; read back from MLflow, nothing retrained."""
    try:
        report.publish_study_report(client, run_id)
    except Exception:  # noqa: BLE001 - the results are logged and the run has ended; the report can be rebuilt
        log.warning("the study's report could not be logged; `python -m src.report --study %s` retries",
                    project, exc_info=True)


def log_leaderboard(board, cfg: Config, result, run_id: str, experiment_id: str, final: dict, uri: str) -> None:
    objective = f"best_{cfg.tuner.objective}"
    shown = ["trial_id", *[c for c in board.columns if c in cfg.tuner.search_space or c in ("epochs",)],
             objective, "best_val_epoch", "status", "seconds"]
    log.info("leaderboard (validation on a held-out split of the training set):\n%s\n\n"
             "best trial %s (%s): test accuracy %.4f (test loss %.4f)\n"
             "mlflow run      %s  (experiment '%s')\nopen the UI     %s\nthe run         %s",
             board[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}"),
             final["final.trial_id"], final["final.mode"], result.accuracy, result.loss,
             run_id, cfg.tracking.experiment, store.ui_command(uri), store.run_link(uri, experiment_id, run_id))
