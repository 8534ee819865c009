"""A study's leaderboard: its trials ranked on validation, logged on the study's run."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import mlflow
import pandas as pd

from src.analysis import compare
from src.jobs.context import StudyContext
from src.tracking import logged, store

log = logging.getLogger(__name__)


@dataclass
class Leaderboard:
    frame: pd.DataFrame  # best first
    best_trial: object  # keras-tuner's best trial
    best_row: pd.Series


def leaderboard(study: StudyContext, tuner) -> Leaderboard:
    """The trials ranked on validation (an MLflow table and CSV), the best trial, its row and
    hyperparameters, and the search's counts, logged on the study's run. The figures are the
    report's (src/analysis/study_figures.py), logged with it under `report/`."""
    cfg = study.cfg
    best_trial = tuner.oracle.get_best_trials(1)[0]
    columns = {name: f"hp.{name}" for name in cfg.tuner.search_space}
    columns.update(study.kind.leaderboard_columns())
    trials = store.child_runs(study.client, study.experiment_id, study.run_id, as_frame=True, role="trial")
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
    return Leaderboard(board, best_trial, best_row)


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


def show(study: StudyContext, board: Leaderboard, final) -> None:
    """The console's closing lines: the leaderboard, the final model's test score, the links."""
    cfg, frame = study.cfg, board.frame
    objective = f"best_{cfg.tuner.objective}"
    shown = ["trial_id", *[c for c in frame.columns if c in cfg.tuner.search_space or c in ("epochs",)],
             objective, "best_val_epoch", "status", "seconds"]
    log.info("leaderboard (validation on a held-out split of the training set):\n%s\n\n"
             "best trial %s (%s): test accuracy %.4f (test loss %.4f)\n"
             "mlflow run      %s  (experiment '%s')\nopen the UI     %s\nthe run         %s",
             frame[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}"),
             final.params["final.trial_id"], final.params["final.mode"], final.result.accuracy, final.result.loss,
             study.run_id, cfg.tracking.experiment, store.ui_command(study.uri),
             store.run_link(study.uri, study.experiment_id, study.run_id))
