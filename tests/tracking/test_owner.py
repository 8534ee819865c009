"""One study, one owner (issue 25): a second command on a study that a live process runs
is refused in one line and logs nothing; a dead owner holds nothing; a sweep directory
is launched once at a time.

docs/faults.md, "Ownership and stopping", lists what the user sees for each.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from src.tracking import owner, store
from src.tracking.owner import Busy, OwnerLock, check_study_run

from helpers.commands import run_here, start_cli
from helpers.paths import PROJECT_ROOT
from helpers.stores import all_runs


def study_args(synthetic_cifar, uri, tuner_dir, epochs: int):
    """A 3-trial random study of a tiny model (as tests/jobs/test_study_kills.py runs it)."""
    return ("tuner.confirm.seeds=0", "+experiment=tune_random", f"data.dir={synthetic_cifar}", f"tracking.uri={uri}",
            f"tuner.directory={tuner_dir}", "tuner.max_trials=3", "tracking.log_model=false", "trainer.verbose=0",
            "model.filters=[8,16]", "model.dense_units=[16]", "trainer.batch_size=4", "trainer.steps_per_execution=1",
            "tuner/search_space=width_dropout_epochs", "tuner.search_space.epochs.type=fixed",
            f"tuner.search_space.epochs.value={epochs}")


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 240.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the command ended ({process.returncode}) before {what}:\n{process.communicate()[1][-3000:]}")
        found = condition()
        if found:
            return found
        time.sleep(0.3)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"no {what} within {timeout:.0f} s:\n{process.communicate()[1][-3000:]}")


@pytest.mark.slow
def test_a_second_command_on_a_running_study_is_refused_and_a_killed_owner_is_taken_over(
        synthetic_cifar, tracking_uri, tmp_path):
    args = study_args(synthetic_cifar, tracking_uri, tmp_path / "tuner", epochs=500)
    first = start_cli(*args, new_session=True)
    try:
        def training():
            runs = all_runs(tracking_uri)
            trials = [r for r in runs if r.data.tags.get("study_role") == "trial" and r.info.status == "RUNNING"]
            return runs if trials else None

        before = wait_for(training, first, "a trial training")
        # The same command again (the same tuner state and store): refused by the lock on this machine.
        again = run_here(*args)
        # The same study from another tuner directory (another machine's state, the same store):
        # refused by the study's parent run, RUNNING for a live process.
        elsewhere = run_here(*study_args(synthetic_cifar, tracking_uri, tmp_path / "other", epochs=500))
        for refused in (again, elsewhere):
            assert refused.returncode != 0, refused.stdout[-2000:]
            lines = [line for line in refused.stderr.splitlines() if line.strip()]
            assert len(lines) == 1, refused.stderr[-3000:]
            assert lines[0].startswith(f"error: study tune_random is running (host {socket.gethostname()}, "
                                       f"pid {first.pid}, since "), lines[0]
            assert lines[0].endswith("): wait for it, or stop it"), lines[0]
        assert first.poll() is None  # the owner goes on
        after = all_runs(tracking_uri)
        assert {r.info.run_id for r in after} <= {r.info.run_id for r in before} | {
            r.info.run_id for r in after if r.data.tags.get("pid") == str(first.pid)}  # nothing from the refused
        assert not (tmp_path / "other" / "tune_random").exists()  # nor any tuner state
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)  # as the out-of-memory killer would
        first.communicate(timeout=60)
    # A dead owner holds nothing: the lock is free at once and its RUNNING parent does not count.
    client = store.client(tracking_uri)
    experiment = client.get_experiment_by_name("tune_random").experiment_id
    parents = [r for r in client.search_runs([experiment]) if r.data.tags.get("study_role") == "parent"]
    assert [p.info.status for p in parents] == ["RUNNING"]  # what SIGKILL leaves
    lock = OwnerLock(tmp_path / "tuner" / "tune_random.lock", "study tune_random").acquire()
    try:
        check_study_run(client, experiment, "tune_random")
    finally:
        lock.release()


def test_owner_lock_refuses_a_second_holder_and_frees_when_its_process_dies(tmp_path):
    path = tmp_path / "state" / "s.lock"
    lock = OwnerLock(path, "study s").acquire()
    with pytest.raises(Busy, match=rf"^study s is running \(host {socket.gethostname()}, pid {os.getpid()}, since "
                                   r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\): wait for it, or stop it$"):
        OwnerLock(path, "study s").acquire()
    lock.release()
    OwnerLock(path, "study s").acquire().release()
    # Held by another process that is then killed with SIGKILL: free at once, no waiting.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from src.tracking.owner import OwnerLock; OwnerLock(Path(sys.argv[1]), 'study s')"
                               ".acquire(); print('held', flush=True); time.sleep(600)", str(path)],
                              cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match=f"pid {holder.pid}, "):
            OwnerLock(path, "study s").acquire()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    OwnerLock(path, "study s").acquire().release()


def study_parent(client, experiment_id: str, host: str, pid: str, heartbeat: float, process_start: str = "0") -> str:
    run = client.create_run(experiment_id, run_name="study s", tags={
        "study": "s", "study_role": "parent", "host": host, "pid": pid, "process_start": process_start,
        "heartbeat": f"{heartbeat:.0f}"})
    return run.info.run_id


def test_a_study_run_elsewhere_is_owned_while_its_heartbeat_is_fresh(tracking_uri):
    experiment = store.ensure_experiment(tracking_uri, "owners")
    client = store.client(tracking_uri)
    check_study_run(client, experiment, "s")  # no such study yet
    stale = study_parent(client, experiment, "node7", "4242", time.time() - owner.STALE_AFTER_S - 60)
    check_study_run(client, experiment, "s")  # silent past the threshold: a lost node, taken over
    fresh = study_parent(client, experiment, "node7", "4242", time.time() - 30, process_start="1700000000")
    with pytest.raises(Busy, match=r"^study s is running \(host node7, pid 4242, since 2023-11-1"):
        check_study_run(client, experiment, "s")
    client.set_terminated(fresh, "FINISHED")  # ended: nobody owns it
    client.set_terminated(stale, "KILLED")
    check_study_run(client, experiment, "s")
    # On this host, a RUNNING run whose process is gone holds nothing, however fresh its heartbeat.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    study_parent(client, experiment, socket.gethostname(), gone.stdout.strip(), time.time(), process_start=f"{time.time():.3f}")
    check_study_run(client, experiment, "s")
    # ...and one whose process is alive does.
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        study_parent(client, experiment, socket.gethostname(), str(alive.pid), time.time() - 5,
                     process_start=f"{psutil.Process(alive.pid).create_time():.3f}")
        with pytest.raises(Busy, match=f"pid {alive.pid}, "):
            check_study_run(client, experiment, "s")
    finally:
        alive.kill()
        alive.wait(timeout=30)
