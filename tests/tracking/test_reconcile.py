"""No run stays RUNNING once its process is gone: heartbeats, process tags, and
the next command closing what a SIGKILL left behind."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import mlflow
import pytest

from src.tracking import reconcile, runs, store

from helpers.commands import run_here
from helpers.paths import PROJECT_ROOT

TINY = ("trainer.epochs=3", "trainer.batch_size=4", "trainer.steps_per_execution=1", "tracking.log_model=false",
        "trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=[16]")


def dead_pid() -> tuple:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    started = __import__("psutil").Process(process.pid).create_time()
    process.wait()
    return str(process.pid), f"{started:.3f}"


@pytest.fixture
def client(tracking_uri):
    store.ensure_experiment(tracking_uri, "orphans")
    yield store.client(tracking_uri)
    while mlflow.active_run():
        mlflow.end_run()


def make_run(client, **tags) -> str:
    experiment = client.get_experiment_by_name("orphans").experiment_id
    return client.create_run(experiment, tags=tags).info.run_id


def test_runs_carry_host_pid_process_start_and_a_heartbeat(client, tracking_uri):
    with runs.tracked_run("alive", experiment_id=client.get_experiment_by_name("orphans").experiment_id) as run:
        tags = client.get_run(run.info.run_id).data.tags
        assert tags["host"] == socket.gethostname() and tags["pid"] == str(os.getpid())
        assert reconcile.process_alive(tags["pid"], tags["process_start"])
        first = float(tags["heartbeat"])
        time.sleep(1.1)
        runs.HEARTBEAT.beat()  # synchronous: recorded when it returns
        assert float(client.get_run(run.info.run_id).data.tags["heartbeat"]) > first


def test_close_orphans_closes_only_runs_whose_process_is_gone(client):
    pid, started = dead_pid()
    here = socket.gethostname()
    me = runs.process_tags()
    orphan = make_run(client, host=here, pid=pid, process_start=started, heartbeat="1")
    reused_pid = make_run(client, host=here, pid=me["pid"], process_start="12345.000")  # same pid, other process
    alive = make_run(client, host=here, pid=me["pid"], process_start=me["process_start"])
    elsewhere = make_run(client, host="another-node", pid=pid, process_start=started)
    foreign = make_run(client)  # not started by this project: no process tags

    closed = reconcile.close_orphans(client)
    assert sorted(closed) == sorted([orphan, reused_pid])
    status = {run_id: client.get_run(run_id).info.status for run_id in (orphan, reused_pid, alive, elsewhere, foreign)}
    assert status == {orphan: "FAILED", reused_pid: "FAILED", alive: "RUNNING", elsewhere: "RUNNING",
                      foreign: "RUNNING"}
    assert f"process {pid} on {here} is gone" in client.get_run(orphan).data.tags["closed_because"]
    assert client.get_run(orphan).info.end_time == 1000  # at its last heartbeat


def test_close_stale_closes_silent_runs_on_any_host(client):
    silent = make_run(client, host="another-node", pid="1", process_start="0", heartbeat=f"{time.time() - 900:.0f}")
    recent = make_run(client, host="another-node", pid="1", process_start="0", heartbeat=f"{time.time():.0f}")
    assert reconcile.close_stale(client, stale_after=600) == [silent]
    assert client.get_run(silent).info.status == "FAILED"
    assert "no heartbeat for" in client.get_run(silent).data.tags["closed_because"]
    assert client.get_run(recent).info.status == "RUNNING"


def test_report_reconcile_closes_stale_runs(client, tracking_uri, capsys):
    from src.analysis import report

    silent = make_run(client, host="another-node", pid="1", process_start="0", heartbeat="1")
    report.main(["--reconcile", "--stale-after", "60", "--tracking-uri", tracking_uri])
    assert client.get_run(silent).info.status == "FAILED"
    assert silent in capsys.readouterr().out


@pytest.mark.slow
def test_a_sigkilled_sweep_is_closed_by_the_next_command(synthetic_cifar, tracking_uri, tmp_path):
    """A multirun (sequential launcher: the job runs in the launcher's process) killed with
    SIGKILL mid-epoch leaves its sweep parent and its job RUNNING; the next command on the
    same store closes both as FAILED and keeps what they logged."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CIFAR_FAILPOINT": "train_batch:60"}
    env.pop("MLFLOW_TRACKING_URI", None)
    killed = subprocess.run([sys.executable, "-m", "src.run", "-m", f"data.dir={synthetic_cifar}",
                             f"tracking.uri={tracking_uri}", "tracking.experiment=killed",
                             f"hydra.sweep.dir={tmp_path / 'sweep'}", *TINY, "seed=1,2"],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    client = store.client(tracking_uri)
    experiment = client.get_experiment_by_name("killed").experiment_id
    left = client.search_runs([experiment])
    assert sorted(r.info.status for r in left) == ["RUNNING", "RUNNING"]  # the sweep parent and job 0
    job = next(r for r in left if "mlflow.parentRunId" in r.data.tags)
    assert client.get_metric_history(job.info.run_id, "loss")  # it had logged epochs

    result = run_here(f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}", *TINY)
    assert result.returncode == 0, result.stderr[-2000:]
    after = {r.info.run_id: r for r in client.search_runs([experiment])}
    assert {r.info.status for r in after.values()} == {"FAILED"}
    assert all("is gone" in r.data.tags["closed_because"] for r in after.values())
    assert client.get_metric_history(job.info.run_id, "loss")  # nothing recorded is lost
