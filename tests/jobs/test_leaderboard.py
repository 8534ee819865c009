"""A study's leaderboard: where the baseline configuration ranks among trials of its budget."""
from __future__ import annotations

import mlflow
import pandas as pd

from src.jobs import leaderboard


def test_the_baseline_ranks_among_the_trials_of_its_own_budget(monkeypatch):
    logged = {}
    monkeypatch.setattr(mlflow, "log_metric", lambda key, value: logged.update({key: value}))
    board = pd.DataFrame({"run_id": ["a", "b", "c", "d"], "trial_id": ["1", "2", "3", "4"],
                          "epochs": [20, 7, 20, 20], "status": ["FINISHED"] * 4,
                          "best_val_accuracy": [0.71, 0.70, 0.69, 0.68]})  # best first
    trials = pd.DataFrame({"run_id": ["a", "b", "c", "d"], "tags.warm_start": [None, None, "baseline", "enqueued"]})
    marked = leaderboard.mark_warm_start(board, trials, "val_accuracy")
    assert list(marked["warm_start"]) == ["", "", "baseline", "enqueued"]
    assert logged == {"baseline_search_rank": 2}  # behind trial 1; trial 2's 7 epochs do not compare


def test_no_baseline_in_the_search_no_rank(monkeypatch):
    monkeypatch.setattr(mlflow, "log_metric", lambda *args: (_ for _ in ()).throw(AssertionError(args)))
    board = pd.DataFrame({"run_id": ["a"], "trial_id": ["1"], "status": ["FINISHED"], "best_val_accuracy": [0.7]})
    marked = leaderboard.mark_warm_start(board, pd.DataFrame({"run_id": ["a"]}), "val_accuracy")
    assert list(marked["warm_start"]) == [""]
