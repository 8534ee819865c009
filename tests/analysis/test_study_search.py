"""A study's search read back from its runs (`src/analysis/study_search.py`): the Study
section's winner line while a study runs and after, and the table of the stages, commits and
hosts a study ran at."""
from __future__ import annotations

import mlflow
import pandas as pd

from src.analysis import study_search
from src.tracking import store

from helpers.stores import logged_run


def test_the_stages_table_lists_every_commit_a_study_ran_at(experiment):
    """A study resumed after a commit: its search ran at two commits (one run tagged only by
    MLflow itself, as runs were before the project tagged each), its confirmation at one."""
    uri, experiment_id = experiment
    parent = logged_run(experiment_id, "study", tags={"study": "resumed", "study_role": "parent", "host": "vm",
                                                       "git_commits": f"{'a' * 40}-dirty,{'b' * 40}"},
                        params={"data.train_images": 900})
    for trial, tags in enumerate(({"git_commit": "a" * 40}, {"mlflow.source.git.commit": "a" * 40},
                                  {"git_commit": "b" * 40, "git_dirty": "true"})):
        logged_run(experiment_id, f"trial {trial}", parent=parent,
                   tags={"study": "resumed", "study_role": "trial", "trial_id": f"{trial:04d}", "host": "vm", **tags},
                   metrics={"epochs_trained": trial + 1})  # the study's 900 images (trials did not log theirs)
    killed = logged_run(experiment_id, "trial 2", parent=parent, tags={"study": "resumed", "study_role": "trial",
                                                                        "trial_id": "0002", "git_commit": "a" * 40})
    mlflow.MlflowClient().set_terminated(killed, "KILLED")  # stopped by a session's end, run again on resume
    cpu = "AMD EPYC, family 25 model 1, 2 CPUs, avx2 fma; no avx512f avx512_bf16 amx_bf16"
    for name, extra in (("confirm", {}), ("confirm reused", {"reused_from": "f" * 32})):
        logged_run(experiment_id, name, parent=parent,
                   tags={"study": "resumed", "study_role": "confirm", "git_commit": "b" * 40, "host": "vm", "cpu": cpu,
                         **extra},
                   params={"data.train_images": 900}, metrics={"epochs_trained": 5})
    client = store.client(uri)
    text = "\n".join(study_search.history_lines(client, client.get_run(parent)))
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "aaaaaaa, bbbbbbb (uncommitted changes)" in rows["search"] and "| 3 (+1 stopped) |" in rows["search"]
    assert "| bbbbbbb | vm (AMD EPYC, family 25 model 1, 2 CPUs, avx2 fma; no avx512f avx512_bf16 amx_bf16) |" \
        in rows["confirmation"]
    assert "aaaaaaa (uncommitted changes), bbbbbbb |" in rows["whole study (parent run)"]
    # Training images: the finished trials' 1 + 2 + 3 epochs of 900 images (the killed one's are not on
    # record); the confirmation's own run, and the reused one apart; the whole study, what it trained.
    assert "| 5,400 |" in rows["search"] and "| 4,500 (+4,500 reused) |" in rows["confirmation"]
    assert "| 9,900 |" in rows["whole study (parent run)"]


def test_a_study_reported_while_it_runs_has_no_winner_yet(experiment):
    """src.report during a study (or after one stopped before its final model): the Study section
    names the best trial so far, not 'trial None ... test accuracy nan'."""
    uri, experiment_id = experiment
    frame = pd.DataFrame({"epochs_trained": [3, 20], "seconds": [60.0, 900.0]})
    running = logged_run(experiment_id, "study", tags={"study": "running", "study_role": "parent"},
                         params={"tuner.kind": "hyperband", "best.dropout": "0.1", "best.filters2": "128"})
    client = store.client(uri)
    text = "\n".join(study_search.settings_lines(client.get_run(running), frame))
    assert "- winner: not chosen yet (the study has not reached its final model); the search's best: " \
           "dropout=0.1, filters2=128" in text
    winner = next(line for line in text.splitlines() if line.startswith("- winner"))
    assert "None" not in winner and "nan" not in winner
    ended = logged_run(experiment_id, "study", tags={"study": "ended", "study_role": "parent"},
                       params={"tuner.kind": "hyperband", "best.dropout": "0.1", "final.trial_id": "0025",
                               "final.hp.dropout": "0.3", "final.mode": "checkpoint"},
                       metrics={"test_accuracy": 0.7})  # the confirmed candidate, not the search's best
    text = "\n".join(study_search.settings_lines(client.get_run(ended), frame))
    assert "- winner: trial 0025, hyperparameters dropout=0.3; final model: `checkpoint` (its best-epoch " \
           "checkpoint); test accuracy 0.7000" in text
    lost = logged_run(experiment_id, "study", tags={"study": "lost", "study_role": "parent", "confirm_winner": "baseline"},
                      params={"tuner.kind": "hyperband", "final.trial_id": "0025", "final.hp.dropout": "0.3",
                              "final.mode": "checkpoint"}, metrics={"test_accuracy": 0.7})
    text = "\n".join(study_search.settings_lines(client.get_run(lost), frame))
    assert "- best searched configuration: trial 0025 (the baseline configuration beat it in the confirmation), " \
           "hyperparameters dropout=0.3; final model: `checkpoint`" in text
    assert "- winner" not in text
