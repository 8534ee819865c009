"""A keras-tuner study with parallel worker processes (tuner.workers=2): every
worker's trials are child runs of one study run, and no process outlives it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
from mlflow import MlflowClient

from helpers import PROJECT_ROOT, run_cli

TINY_STUDY = ("+experiment=tune_random", "tuner.confirm.seeds=0", "trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=[16]",
              "tuner/search_space=width_dropout_epochs",
              "tuner.search_space.epochs.min=1", "tuner.search_space.epochs.max=2",
              "tuner.search_space.epochs.step=1", "tuner.max_trials=4", "tracking.log_model=false",
              "tuner.workers=2")


def overrides(synthetic_cifar, tracking_uri, tmp_path, *extra):
    return (*TINY_STUDY, f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
            f"tuner.directory={tmp_path / 'tuner'}", *extra)


def study_runs(uri):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tune_random")
    runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    return (client, [r for r in runs if r.data.tags.get("study_role") == "parent"],
            [r for r in runs if r.data.tags.get("study_role") == "trial"])


def leftover_processes(tmp_path: Path) -> list:
    """Processes whose command line names this test's folder (the workers name their launch file)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if any(str(tmp_path) in part for part in process.info["cmdline"] or []):
            found.append(process.info)
    return found


def test_two_workers_run_one_study(synthetic_cifar, tracking_uri, tmp_path):
    result = run_cli(*overrides(synthetic_cifar, tracking_uri, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    client, parents, trials = study_runs(tracking_uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert len(trials) == 4 and all(t.info.status == "FINISHED" for t in trials)
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent.info.run_id}
    assert len({t.data.tags["trial_id"] for t in trials}) == 4
    assert {t.data.tags["tuner_worker"] for t in trials} == {"tuner0", "tuner1"}
    assert all(t.data.tags["study"] == "tune_random" for t in trials)
    assert {t.data.params["trainer.intra_op_threads"] for t in trials} == {"1"}  # one thread per worker
    local = Path(client.download_artifacts(parent.info.run_id, "leaderboard.csv", str(tmp_path / "dl")))
    assert len(pd.read_csv(local)) == 4
    assert parent.data.metrics["trials_finished"] == 4 and "test_accuracy" in parent.data.metrics
    assert "[study tuner0] trial" in result.stdout and "[study tuner1] trial" in result.stdout
    assert leftover_processes(tmp_path) == []


def test_a_crashed_worker_fails_the_study_and_stops_the_others(synthetic_cifar, tracking_uri, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_TRACKING_URI", None)
    launcher = subprocess.Popen([sys.executable, "-m", "src.run",
                                 *overrides(synthetic_cifar, tracking_uri, tmp_path,
                                            "tuner.search_space.epochs.min=2", "tuner.search_space.epochs.max=3")],
                                cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, victim = time.time() + 300, None
        while victim is None and time.time() < deadline and launcher.poll() is None:
            # Written once the study run is open: the store exists (reading it earlier races its creation).
            if (tmp_path / "tuner" / "tune_random" / "launch" / "launch.json").exists():
                _, _, trials = study_runs(tracking_uri)
                if any(t.info.status == "RUNNING" and t.data.tags.get("tuner_worker") == "tuner1" for t in trials):
                    victim = next(p for p in psutil.Process(launcher.pid).children()
                                  if p.environ().get("KERASTUNER_TUNER_ID") == "tuner1")
            time.sleep(0.2)
        assert victim is not None, "worker tuner1 never started a trial"
        victim.send_signal(signal.SIGKILL)  # a crash in the middle of a trial
        _, stderr = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0
    assert "worker tuner1 of the parallel study was killed by signal 9" in stderr, stderr[-3000:]
    _, parents, trials = study_runs(tracking_uri)
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    assert "RUNNING" not in {t.info.status for t in trials}
    assert leftover_processes(tmp_path) == []
