"""A study survives a hard kill at any moment: killed with SIGKILL (through the
CIFAR_FAILPOINT test hook, src/core/interrupt.py) mid-epoch, between a trial's
MLflow run ending and keras-tuner saving the trial, during the confirmation
stage and in the final stage,
the same command resumes and finishes with every trial FINISHED exactly once,
the interrupted trial's stale run closed, and nothing counted twice."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from src.tracking import store

from helpers.commands import run_cli, run_here

TRIALS = 4


def overrides(synthetic_cifar, uri, tmp_path, confirm: bool = False):
    stage = ("tuner.confirm.top_k=1", "tuner.confirm.seeds=1", "tuner.confirm.max_seeds=1",
             "tuner.confirm.epochs=2") if confirm \
        else ("tuner.confirm.seeds=0",)
    return (*stage, "+experiment=tune_random", f"data.dir={synthetic_cifar}", f"tracking.uri={uri}",
            f"tuner.directory={tmp_path / 'tuner'}", f"tuner.max_trials={TRIALS}", "tracking.log_model=false",
            "trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=[16]", "trainer.batch_size=4",
            "trainer.steps_per_execution=1", "tuner/search_space=width_dropout_epochs",
            "tuner.search_space.epochs.type=fixed",
            "tuner.search_space.epochs.value=2")


def run_with_failpoint(failpoint: str, args) -> subprocess.CompletedProcess:
    return run_cli(*args, env={"CIFAR_FAILPOINT": failpoint})


# 160 training images at batch 4: 40 batches an epoch, 80 a trial (and a confirmation run),
# so the 4 trials end at batch 320. (failpoint, with a confirmation stage)
KILL_POINTS = {
    "mid-epoch of the second trial": ("train_batch:100", False),
    "after the second trial ended in MLflow, before keras-tuner saved it": ("trial_finished_in_mlflow:2", False),
    "mid-epoch of the first confirmation run": ("train_batch:340", True),
    "in the final stage": ("final_stage", True),
}


@pytest.mark.slow
@pytest.mark.parametrize("kill", list(KILL_POINTS.values()), ids=list(KILL_POINTS))
def test_a_study_killed_with_sigkill_resumes_and_counts_every_trial_once(kill, synthetic_cifar,
                                                                         tracking_uri, tmp_path):
    failpoint, confirm = kill
    args = overrides(synthetic_cifar, tracking_uri, tmp_path, confirm)
    killed = run_with_failpoint(failpoint, args)
    assert killed.returncode == -9, killed.stderr[-3000:]
    client = store.client(tracking_uri)
    experiment = client.get_experiment_by_name("tune_random").experiment_id
    assert "RUNNING" in {r.info.status for r in client.search_runs([experiment])}  # what SIGKILL leaves

    resumed = run_here(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    runs = client.search_runs([experiment], max_results=1000)
    assert "RUNNING" not in {r.info.status for r in runs}
    parents = [r for r in runs if r.data.tags.get("study_role") == "parent"]
    trials = [r for r in runs if r.data.tags.get("study_role") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    finished = sorted(r.data.tags["trial_id"] for r in trials if r.info.status == "FINISHED")
    assert finished == [f"{i:02d}" for i in range(TRIALS)] or finished == [str(i) for i in range(TRIALS)], finished
    for stale in (r for r in trials if r.info.status != "FINISHED"):
        assert stale.info.status == "FAILED" and "is gone" in stale.data.tags["closed_because"]
    assert parents[0].data.metrics["trials_finished"] == TRIALS
    board = pd.read_csv(Path(client.download_artifacts(parents[0].info.run_id, "leaderboard.csv",
                                                       str(tmp_path / "dl"))))
    assert len(board) == TRIALS and board["trial_id"].is_unique
    assert "test_accuracy" in parents[0].data.metrics
    confirms = [r for r in runs if r.data.tags.get("study_role") == "confirm"]
    finished_confirms = sorted(r.data.tags["confirm_candidate"] for r in confirms if r.info.status == "FINISHED")
    assert len(finished_confirms) == (2 if confirm else 0) and len(set(finished_confirms)) == len(finished_confirms)
    for stale in (r for r in confirms if r.info.status != "FINISHED"):
        assert stale.info.status == "FAILED" and "is gone" in stale.data.tags["closed_because"]
