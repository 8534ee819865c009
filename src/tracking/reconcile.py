"""Close runs whose process is gone, so that no run stays RUNNING forever.

MLflow has no heartbeat of its own: a run whose process is killed with
SIGKILL (the out-of-memory killer, `kill -9`, a lost node, a power cut)
stays RUNNING. Every run this project starts carries its `host`, `pid` and
`process_start` and keeps a `heartbeat` tag fresh (src/tracking/runs.py). So:

- every command that opens a store (a run, a study, a sweep, a report) closes
  the RUNNING runs whose process is gone from this host (`close_orphans`);
- `python -m src.report --reconcile [--stale-after SECONDS]` also closes runs
  on any host whose heartbeat is older than the threshold (`close_stale`).

A closed run ends FAILED, keeps everything it logged, and says why in its
tag `closed_because`.
"""
from __future__ import annotations

import logging
import socket
import time
from typing import List, Optional

import psutil

log = logging.getLogger(__name__)

CLOSED_BECAUSE = "closed_because"  # the tag that says why a command, not the run's process, ended it


def process_alive(pid: str, process_start: str) -> bool:
    """Whether the process that started the run still runs (and is not a later one with its pid)."""
    try:
        process = psutil.Process(int(pid))
        return abs(process.create_time() - float(process_start)) < 1.0 and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def last_sign_of_life(run) -> float:
    """Epoch seconds of the run's last heartbeat, else its start."""
    try:
        return float(run.data.tags["heartbeat"])
    except (KeyError, ValueError):
        return run.info.start_time / 1000.0


def _running_runs(client) -> list:
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, "attributes.status = 'RUNNING'", max_results=50000) if ids else []


def close_run(client, run, reason: str) -> None:
    """End a RUNNING run FAILED, at its last sign of life, saying why in `closed_because`."""
    client.set_tag(run.info.run_id, CLOSED_BECAUSE, reason)
    client.set_terminated(run.info.run_id, "FAILED", end_time=int(last_sign_of_life(run) * 1000))
    log.warning("closed run %s (%s) as FAILED: %s", run.info.run_id, run.info.run_name, reason)


def close_orphans(client, host: Optional[str] = None) -> List[str]:
    """Close the RUNNING runs started on this host by a process that is gone; returns their ids."""
    host = host or socket.gethostname()
    closed = []
    for run in _running_runs(client):
        tags = run.data.tags
        if tags.get("host") != host or "pid" not in tags:
            continue  # another machine's run, or one this project did not start
        if process_alive(tags["pid"], tags.get("process_start", "0")):
            continue
        close_run(client, run, f"its process {tags['pid']} on {host} is gone (killed without a chance to end the "
                            f"run); noticed at {time.strftime('%Y-%m-%d %H:%M:%S')}")
        closed.append(run.info.run_id)
    return closed


def close_stale(client, stale_after: float) -> List[str]:
    """Close RUNNING runs on any host whose last heartbeat is older than `stale_after` seconds."""
    closed, now = [], time.time()
    for run in _running_runs(client):
        silent = now - last_sign_of_life(run)
        if silent > stale_after:
            close_run(client, run, f"no heartbeat for {silent:.0f} s (threshold {stale_after:.0f} s) from "
                                f"{run.data.tags.get('host', 'an unknown host')}")
            closed.append(run.info.run_id)
    return closed
