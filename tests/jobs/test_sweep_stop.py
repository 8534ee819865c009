"""A stopped multirun ends every run it started (issue 25): SIGTERM to a joblib sweep's
launcher (`kill`, `timeout`, a scheduler) and Ctrl-C on its terminal (SIGINT to the whole
process group) mid-job. Within 30 s the command exits 143 or 130 with one line; the jobs
that were training end KILLED, the finished one stays FINISHED, the queued one never
starts, the sweep parent is KILLED, and none of its processes is left. The same on a
local Ray instance (SIGTERM). While it runs, the same sweep directory cannot be launched
again. A sweep whose parent run cannot be created starts no job.

docs/faults.md, "Ownership and stopping", lists what the user sees for each.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import tempfile
import time

import psutil
import pytest

from helpers.commands import run_here, start_cli
from helpers.stores import all_runs
from helpers.sweeps import RAY_MISSING, processes_using, stop

TINY = ("trainer.batch_size=4", "tracking.log_model=false", "trainer.verbose=0", "model.filters=[8,16]",
        "model.dense_units=[16]")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM-to-launcher", "Ctrl-C-to-group"])
def test_a_stopped_joblib_multirun_ends_every_run_and_leaves_no_process(signum, synthetic_cifar, tracking_uri,
                                                                         tmp_path):
    sweep_dir = tmp_path / "sweep"
    # 2 jobs at a time: a 1-epoch job finishes, two 500-epoch ones are stopped mid-training, the last waits.
    args = ("-m", "+launcher=joblib", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
            "tracking.experiment=stopped", f"hydra.sweep.dir={sweep_dir}", *TINY, "trainer.epochs=1,500,500,500")
    launcher = start_cli(*args, new_session=True)
    try:
        wait_until_training(launcher, tracking_uri, finished=1, running=2)
        processes = psutil.Process(launcher.pid).children(recursive=True)
        workers = [p for p in processes if "popen_loky_posix" in " ".join(p.cmdline())]
        assert len(workers) == 2, [p.cmdline() for p in processes]

        if signum == signal.SIGTERM:  # while it runs, the same sweep directory is refused
            again = run_here(*args)
            assert again.returncode != 0
            assert re.fullmatch(rf"error: sweep {re.escape(str(sweep_dir.resolve()))} is running \(host "
                                rf"{re.escape(socket.gethostname())}, pid {launcher.pid}, since [-\d: ]+\): "
                                "wait for it, or stop it", again.stderr.strip()), again.stderr[-2000:]
            assert len([r for r in all_runs(tracking_uri) if r.data.tags.get("sweep_role") == "parent"]) == 1

        started = time.monotonic()
        if signum == signal.SIGTERM:
            launcher.send_signal(signal.SIGTERM)  # `kill <pid>`: the launcher alone
        else:
            os.killpg(launcher.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        _, stderr = launcher.communicate(timeout=60)
        elapsed = time.monotonic() - started
        left_at_exit = [p for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.communicate()

    assert launcher.returncode == 128 + signum, stderr[-3000:]
    assert elapsed < 30, elapsed
    lines = [line for line in stderr.splitlines() if line.strip() and "Warning" not in line
             and not line.startswith("  ")]  # MLflow's dataset-source UserWarning, printed by the jobs
    assert lines == [f"interrupted by {signal.Signals(signum).name}: sweep {sweep_dir.parent.name}/sweep stopped; "
                     "2 running job(s) and the sweep's parent run recorded as KILLED, 1 finished job(s) kept"], stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert left_at_exit == []
    # The resource trackers of loky and multiprocessing end once the launcher's pipe closes.
    gone_by = time.time() + 10
    while time.time() < gone_by and any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes):
        time.sleep(0.2)
    assert [p.pid for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []

    runs = all_runs(tracking_uri)
    assert "RUNNING" not in {r.info.status for r in runs}
    parent = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    jobs = sorted((r.data.params["trainer.epochs"], r.info.status) for r in runs if r not in parent)
    assert [p.info.status for p in parent] == ["KILLED"]
    assert jobs == [("1", "FINISHED"), ("500", "KILLED"), ("500", "KILLED")]  # the 4th job never started
    assert not (sweep_dir / "3" / "job_status.json").exists()


def wait_until_training(launcher, uri: str, finished: int, running: int) -> None:
    """Until `finished` jobs have FINISHED and `running` have trained an epoch at least."""
    deadline = time.time() + 300
    while time.time() < deadline and launcher.poll() is None:
        runs = [r for r in all_runs(uri) if r.data.tags.get("sweep_role") != "parent"]
        statuses = [r.info.status for r in runs]
        if statuses.count("FINISHED") == finished and statuses.count("RUNNING") == running and all(
                "loss" in r.data.metrics for r in runs):
            return
        time.sleep(0.3)
    os.killpg(launcher.pid, signal.SIGKILL)
    pytest.fail(f"the jobs did not get to training:\n{launcher.communicate()[1][-3000:]}")


@pytest.mark.slow
@pytest.mark.skipif(RAY_MISSING, reason="ray / hydra-ray-launcher not installed (pip install -e '.[ray]')")
def test_a_stopped_ray_multirun_ends_every_run_and_leaves_no_process(synthetic_cifar, tracking_uri, tmp_path):
    """Ray's own handlers would abort the launcher on SIGTERM (exit 134) and leave a job
    RUNNING; multirun._start_ray_first installs the sweep's after them."""
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths; tells its processes apart
    launcher = start_cli("-m", "+launcher=ray", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
                         "tracking.experiment=stopped", f"hydra.sweep.dir={tmp_path / 'sweep'}", *TINY,
                         "trainer.epochs=500,500", "hydra.launcher.ray.init.address=null",
                         "+hydra.launcher.ray.init._node_ip_address=127.0.0.1",
                         "+hydra.launcher.ray.init.include_dashboard=false",
                         f"+hydra.launcher.ray.init._temp_dir={ray_tmp}", new_session=True)
    try:
        wait_until_training(launcher, tracking_uri, finished=0, running=2)
        started = time.monotonic()
        launcher.send_signal(signal.SIGTERM)
        _, stderr = launcher.communicate(timeout=60)
        elapsed = time.monotonic() - started
        assert launcher.returncode == 143, stderr[-3000:]
        assert elapsed < 30, elapsed
        assert stderr.strip().splitlines()[-1] == (
            f"interrupted by SIGTERM: sweep {tmp_path.name}/sweep stopped; 2 running job(s) and the sweep's parent "
            "run recorded as KILLED, 0 finished job(s) kept"), stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]
        assert processes_using(ray_tmp) == []
        assert sorted(r.info.status for r in all_runs(tracking_uri)) == ["KILLED"] * 3
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.communicate()
        stop(processes_using(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_a_sweep_whose_parent_run_cannot_be_created_starts_no_job(synthetic_cifar, tmp_path):
    """Hydra turns an error in a callback into a warning and launches the jobs anyway."""
    foreign = tmp_path / "notes.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    before = foreign.read_bytes()
    sweep_dir = tmp_path / "sweep"
    result = run_here("-m", f"data.dir={synthetic_cifar}", f"tracking.uri=sqlite:///{foreign}",
                      f"hydra.sweep.dir={sweep_dir}", "trainer.epochs=1", *TINY, "seed=1,2")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("error: the sweep's MLflow parent run could not be created, so no job was started: "
                               f"tracking store {foreign} is an SQLite database but not an MLflow store"), lines[0]
    assert foreign.read_bytes() == before
    assert not (sweep_dir / "0").exists() and not (sweep_dir / "1").exists()
