"""A keras-tuner study with parallel worker processes (tuner.workers=2, or a chief and
workers started one by one with tuner.role): every worker's trials are child runs of
one study run, a worker killed mid-trial is replaced without losing or repeating a
trial, and no process outlives the study."""
from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pandas as pd
import psutil
import pytest

from src.tracking import store

from helpers.commands import run_cli, start_cli
from helpers.sweeps import TINY_STUDY

pytestmark = pytest.mark.slow  # every test starts src.run processes (a chief and its workers)


def overrides(synthetic_cifar, tracking_uri, tmp_path, *extra):
    return (*TINY_STUDY, f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
            f"tuner.directory={tmp_path / 'tuner'}", *extra)


def study_runs(uri, experiment="tune_random"):
    client = store.client(uri)
    exp = client.get_experiment_by_name(experiment)
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


# With one execution per batch, a worker passes `train_batch` 6 times an epoch (180 training
# images at batch 32): its 8th batch is inside a trial, in whichever worker gets there first.
KILL = ("trainer.steps_per_execution=1",)


def kill_one_worker(tmp_path, failpoint: str = "train_batch:8") -> dict:
    """SIGKILL, through the failpoint hook, in the first worker process to reach the point;
    the marker file keeps a replacement (same environment) from being killed again."""
    return {"CIFAR_FAILPOINT": failpoint, "CIFAR_FAILPOINT_ONCE": str(tmp_path / "failpoint-fired")}


def trial_states(tmp_path, project="tune_random") -> dict:
    """keras-tuner's own record: each trial's status in its saved state."""
    return {json.loads(path.read_text())["trial_id"]: json.loads(path.read_text())["status"]
            for path in (tmp_path / "tuner" / project).glob("trial_*/trial.json")}


def check_killed_trial_rerun_once(uri, tmp_path, experiment="tune_random", trials_expected=4):
    """The study finished; the killed worker's trial run was closed FAILED and the trial run
    again by its replacement (same tuner id); every trial FINISHED exactly once, in MLflow
    and in keras-tuner; nothing left RUNNING."""
    client, parents, trials = study_runs(uri, experiment)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert "RUNNING" not in {t.info.status for t in trials}
    finished = [t for t in trials if t.info.status == "FINISHED"]
    assert sorted(t.data.tags["trial_id"] for t in finished) == [str(i) for i in range(trials_expected)]
    killed = [t for t in trials if t.info.status != "FINISHED"]
    assert len(killed) == 1 and killed[0].info.status == "FAILED", [t.info.status for t in killed]
    assert "died in this trial" in killed[0].data.tags["closed_because"]
    rerun = next(t for t in finished if t.data.tags["trial_id"] == killed[0].data.tags["trial_id"])
    assert rerun.data.tags["tuner_worker"] == killed[0].data.tags["tuner_worker"]
    assert rerun.data.tags["pid"] != killed[0].data.tags["pid"]
    assert parents[0].data.metrics["trials_finished"] == trials_expected
    assert parents[0].data.metrics["trials_failed"] == 0
    board = pd.read_csv(Path(client.download_artifacts(parents[0].info.run_id, "leaderboard.csv", str(tmp_path / "dl"))))
    assert len(board) == trials_expected and board["trial_id"].is_unique
    assert trial_states(tmp_path, experiment) == {f"{i}": "COMPLETED" for i in range(trials_expected)}
    return killed[0]


def test_two_workers_run_one_study_and_a_worker_killed_mid_trial_is_replaced(synthetic_cifar, tracking_uri,
                                                                           tmp_path):
    """One study, both sides: what 2 workers give (each worker's trials children of one study
    run, one thread each, one leaderboard), and a worker killed mid-trial replaced without
    losing or repeating its trial. (A 2-worker study without a kill: test_confirm.py and the
    team-server test, tests/test_tracking_server.py.)"""
    result = run_cli(*overrides(synthetic_cifar, tracking_uri, tmp_path, *KILL), env=kill_one_worker(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    killed = check_killed_trial_rerun_once(tracking_uri, tmp_path)
    _, parents, trials = study_runs(tracking_uri)
    finished = [t for t in trials if t.info.status == "FINISHED"]
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parents[0].info.run_id}
    assert {t.data.tags["tuner_worker"] for t in finished} == {"tuner0", "tuner1"}
    assert all(t.data.tags["study"] == "tune_random" for t in trials)
    assert {t.data.params["trainer.intra_op_threads"] for t in trials} == {"1"}  # one thread per worker
    assert "test_accuracy" in parents[0].data.metrics
    assert "[study tuner0] trial" in result.stdout and "[study tuner1] trial" in result.stdout
    worker, logged = killed.data.tags["tuner_worker"], result.stdout  # the study's log records
    assert f"worker {worker} was killed by signal 9" in logged, logged[-3000:]
    assert f"a new {worker} takes over its trial (2 restart(s) left)" in logged
    assert f"[study {worker}] replaces a worker {worker} that died" in logged
    assert leftover_processes(tmp_path) == []


def test_a_worker_killed_without_restarts_left_fails_the_study_and_stops_the_others(synthetic_cifar, tracking_uri,
                                                                                    tmp_path):
    result = run_cli(*overrides(synthetic_cifar, tracking_uri, tmp_path, *KILL, "tuner.worker_restarts=0"),
                     env=kill_one_worker(tmp_path))
    assert result.returncode != 0
    assert re.search(r"error: worker tuner\d of the parallel study was killed by signal 9; it has no restarts "
                     r"left \(tuner\.worker_restarts\); the study stops", result.stderr), result.stderr[-3000:]
    _, parents, trials = study_runs(tracking_uri)
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    assert "RUNNING" not in {t.info.status for t in trials}
    assert leftover_processes(tmp_path) == []


def test_a_chief_and_workers_started_by_hand_run_one_study(synthetic_cifar, tracking_uri, tmp_path):
    """What a SLURM job array does (docs/clusters.md, "By hand, e.g. a SLURM job"), on 127.0.0.1: one command per role."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    base = [a for a in overrides(synthetic_cifar, tracking_uri, tmp_path) if a != "tuner.workers=2"]

    def start(*role):
        return start_cli(*base, f"tuner.chief_address={address}", *role,
                         f"hydra.run.dir={tmp_path / 'hydra' / role[-1].split('=')[-1]}")

    processes = [start("tuner.role=chief"), start("tuner.role=worker", "tuner.worker_id=node-a"),
                 start("tuner.role=worker", "tuner.worker_id=node-b")]
    try:
        outputs = [p.communicate(timeout=400) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
    assert "chief listening on 127.0.0.1:" in outputs[0][0]
    assert "[study node-a] joined study run" in outputs[1][0]
    _, parents, trials = study_runs(tracking_uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(trials) == 4 and {t.info.status for t in trials} == {"FINISHED"}
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parents[0].info.run_id}
    assert {t.data.tags["tuner_worker"] for t in trials} == {"node-a", "node-b"}
    assert parents[0].data.metrics["trials_finished"] == 4 and "test_accuracy" in parents[0].data.metrics
    assert leftover_processes(tmp_path) == []
