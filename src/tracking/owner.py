"""One owner at a time for a study and for a sweep directory.

Two processes running the same keras-tuner study (a study started again in a
second terminal, a scheduler retrying a job whose first attempt still runs)
both run the whole search against the same store and tuner state: every trial
ends up FINISHED twice, and the leaderboard and the answer are built on the
duplicates. So a second owner is refused in one line, before it logs anything:

- on this machine, by a lock file beside the tuner state (`OwnerLock`, flock):
  the kernel drops it the moment its process ends, SIGKILL included, so a dead
  owner holds nothing and the next command takes over with no wait;
- from anywhere that shares the store, by the study's parent run
  (`check_study_run`): RUNNING, with a live process on this host, or with a
  heartbeat fresher than STALE_AFTER_S from another host.

The workers of a study (`tuner.role=worker`, local worker processes, Ray
tasks) are not owners: they join it. A multirun's launcher holds the same kind
of lock on its sweep directory, so the jobs of one sweep are not run twice at once.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Optional

import psutil

from src.config import ProjectError
from src.tracking import reconcile

# A RUNNING study run on another host counts as owned until its heartbeat is this old:
# the default of `python -m src.report --reconcile --stale-after` (the heartbeat comes
# every 30 s and at each epoch; an epoch of a full-size study can take minutes).
STALE_AFTER_S = 600.0


class Busy(ProjectError):
    """A live process owns what this command would run."""


def refusal(what: str, host: str, pid: str, since: float) -> Busy:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
    return Busy(f"{what} is running (host {host}, pid {pid}, since {stamp}): wait for it, or stop it")


class OwnerLock:
    """An exclusive, non-blocking flock on `path`, with its owner (host, pid, time) in the file.

    The file is kept after release: removing it would let a third process lock a new
    file while a second still holds the old one."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what
        self._fd: Optional[int] = None

    def acquire(self) -> "OwnerLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise refusal(self.what, holder.get("host", "unknown"), holder.get("pid", "unknown"),
                          float(holder.get("since", time.time()))) from None
        me = psutil.Process()
        record = json.dumps({"host": socket.gethostname(), "pid": str(me.pid), "since": f"{time.time():.3f}",
                             "process_start": f"{me.create_time():.3f}", "what": self.what})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the lock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _holder(fd: int) -> dict:
    """What the lock's owner wrote; it writes just after locking, so a moment's retry."""
    for _ in range(20):
        try:
            return json.loads(os.pread(fd, 4096, 0).decode())
        except (ValueError, OSError):
            time.sleep(0.05)
    return {}


def check_study_run(client, experiment_id: str, project: str, stale_after: float = STALE_AFTER_S) -> None:
    """Refuse if a parent run of study `project` is RUNNING for a live owner elsewhere: its
    process alive on this host, or its heartbeat fresher than `stale_after` from another."""
    here, now = socket.gethostname(), time.time()
    runs = client.search_runs([experiment_id], f"tags.study = '{project}' and tags.study_role = 'parent' "
                                               "and attributes.status = 'RUNNING'", max_results=100)
    for run in runs:
        tags = run.data.tags
        host, pid = tags.get("host", ""), tags.get("pid", "")
        if host == here:
            if pid == str(os.getpid()) or not reconcile.process_alive(pid, tags.get("process_start", "0")):
                continue  # this process's own leftover, or a dead owner: taken over
        elif now - reconcile.last_sign_of_life(run) > stale_after:
            continue  # silent too long: a lost node
        since = float(tags.get("process_start") or run.info.start_time / 1000.0)
        raise refusal(f"study {project}", host or "unknown", pid or "unknown", since)
