"""The leaderboard: finished runs ranked, a retried trial counted once."""
from __future__ import annotations

import pandas as pd

from src.analysis import compare
from src.config import register

register()


# ---- the leaderboard -------------------------------------------------------

def frame(rows):
    return pd.DataFrame(rows, columns=["run_name", "status", "trial_id", "best_val_accuracy"])


def test_leaderboard_ranks_finished_runs_best_first():
    board = compare.leaderboard(frame([("a", "FINISHED", "0", 0.5), ("b", "FAILED", "1", 0.9),
                                       ("c", "FINISHED", "2", 0.7)]))
    assert list(board["run_name"]) == ["c", "a", "b"]


def test_leaderboard_counts_a_retried_trial_once_by_its_finished_run():
    board = compare.leaderboard(frame([("t1 first try", "FAILED", "1", 0.8), ("t1 again", "FINISHED", "1", 0.6),
                                       ("t2", "FINISHED", "2", 0.5)]))
    assert list(board["run_name"]) == ["t1 again", "t2"]


def test_leaderboard_sorts_a_loss_ascending():
    rows = pd.DataFrame({"run_name": ["a", "b"], "status": ["FINISHED"] * 2, "trial_id": ["0", "1"],
                         "best_val_loss": [0.9, 0.3]})
    assert list(compare.leaderboard(rows, "best_val_loss")["run_name"]) == ["b", "a"]
