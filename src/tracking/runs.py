"""Run lifecycle: a run that always ends, what identifies it (tags, command,
commit), and the time it spends in MLflow."""
from __future__ import annotations

import functools
import gc
import logging
import shlex
import socket
import subprocess
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import mlflow
import psutil
from mlflow.tracking import fluent

from src.config import machine
from src.config.paths import PROJECT_ROOT
from src.core import interrupt
from src.tracking.reconcile import CLOSED_BECAUSE

MAX_PARAM_LENGTH = 6000
HEARTBEAT_SECONDS = 30.0
log = logging.getLogger(__name__)


class Stopwatch:
    """Seconds spent inside `with stopwatch:` blocks, summed (re-entrant)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._depth = 0
        self._started = 0.0

    def __enter__(self):
        if self._depth == 0:
            self._started = time.perf_counter()
        self._depth += 1
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0:
            self.seconds += time.perf_counter() - self._started


_mlflow_clocks: Dict[str, Stopwatch] = {}


def mlflow_clock() -> Stopwatch:
    """The active run's time in MLflow calls (and drawing the figures it logs):
    one per run, so that the jobs of a sweep sharing a process never mix."""
    run = mlflow.active_run()
    return _mlflow_clocks.setdefault(run.info.run_id if run else "", Stopwatch())


def process_tags() -> Dict[str, str]:
    """Who runs this run: a later command uses these to tell whether its process is
    gone (the pid alone could have been reused; the start time pins it down)."""
    process = psutil.Process()
    return {"host": socket.gethostname(), "pid": str(process.pid),
            "process_start": f"{process.create_time():.3f}", "heartbeat": f"{time.time():.0f}"}


class Heartbeat:
    """Keeps the tag `heartbeat` (epoch seconds) fresh on every run this process
    has open, every HEARTBEAT_SECONDS from a daemon thread and at each epoch
    (`beat()`), because MLflow keeps no sign of life of its own: a run whose
    process was killed with SIGKILL stays RUNNING forever (src/tracking/reconcile.py)."""

    def __init__(self) -> None:
        self._runs: Dict[str, Any] = {}  # run id -> MlflowClient of its store
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._wake = threading.Event()

    def add(self, run_id: str) -> None:
        with self._lock:
            self._runs[run_id] = mlflow.MlflowClient(mlflow.get_tracking_uri())
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="mlflow-heartbeat", daemon=True)
                self._thread.start()

    def remove(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def beat(self) -> None:
        with self._lock:
            runs = list(self._runs.items())
        now = f"{time.time():.0f}"
        for run_id, client in runs:
            try:
                client.set_tag(run_id, "heartbeat", now)
            except Exception as err:  # noqa: BLE001 - a missed beat is harmless; the next one comes
                log.debug("heartbeat of run %s failed: %s", run_id, err)

    def _loop(self) -> None:
        while not self._wake.wait(HEARTBEAT_SECONDS):
            self.beat()


HEARTBEAT = Heartbeat()


@contextmanager
def tracked_run(run_name: Optional[str] = None, tags: Optional[Mapping[str, str]] = None,
                nested: bool = False, experiment_id: Optional[str] = None,
                parent_run_id: Optional[str] = None, run_id: Optional[str] = None,
                hold_signals_at_end: bool = False) -> Iterator[mlflow.ActiveRun]:
    """A run that always ends: FINISHED, FAILED on an exception, KILLED on Ctrl-C or SIGTERM.
    `hold_signals_at_end`: from the moment its work is done, Ctrl-C and SIGTERM are held
    (`interrupt.defer`) until the caller releases them, so that what must follow a FINISHED
    run (a trial saved by keras-tuner) is not cut off.
    With `run_id`, an existing run is reopened (a resumed study). Every run carries the commit
    its process runs (tag `git_commit`); a reopened run also keeps each commit it ran at
    (`git_commits`), so a resume that mixed code changes into a study is on record."""
    commit = dict(git_commit())
    all_tags = {**commit, "cpu": machine.describe(), **dict(tags or {}), **process_tags()}
    # System metrics ("system/..."): CPU, memory, disk, network, sampled every 10 s by MLflow's
    # daemon thread, which end_run stops (a run shorter than that records none); a reopened
    # run continues their steps.
    if run_id:
        earlier = mlflow.MlflowClient().get_run(run_id).data.tags
        run = mlflow.start_run(run_id=run_id, nested=nested, log_system_metrics=True)
        mlflow.set_tags({**all_tags, **commits_ran_at(earlier, commit.get("git_commit"), commit.get("git_dirty") == "true"),
                         **_closed_earlier(run_id, earlier)})
    else:
        all_tags.update(commits_ran_at({}, commit.get("git_commit"), commit.get("git_dirty") == "true"))
        run = mlflow.start_run(run_name=run_name, tags=all_tags, nested=nested, experiment_id=experiment_id,
                               parent_run_id=parent_run_id, log_system_metrics=True)
    HEARTBEAT.add(run.info.run_id)
    try:
        yield run
        if hold_signals_at_end:
            interrupt.defer()
        interrupt.check()  # a Ctrl-C that Python dropped still ends the run KILLED
    except KeyboardInterrupt as stop:
        release_interrupted_frames(stop)
        end_run(run.info.run_id, "KILLED")
        raise
    except BaseException:
        end_run(run.info.run_id, "FAILED")
        raise
    finally:
        HEARTBEAT.remove(run.info.run_id)
    end_run(run.info.run_id, "FINISHED")
    interrupt.failpoint(f"{all_tags.get('study_role', 'run')}_finished_in_mlflow")  # the kill tests' moment


LOCKED_RETRY_WAITS_S = (0.1, 0.3, 0.6, 1.0)


def end_run(run_id: str, status: str) -> None:
    """`mlflow.end_run`, tried again when SQLite answers "database is locked" at once.
    Two processes stopped together (a sweep's jobs on SIGTERM) can each hold a read lock
    and ask for the write lock: SQLite refuses one of them immediately, without its busy
    timeout, to avoid a deadlock. A fresh transaction a moment later succeeds. MLflow pops
    its active run before it writes, so the retries write the status by the run's id."""
    with _quiet_store_errors():
        try:
            mlflow.end_run(status)
            return
        except Exception as err:  # noqa: BLE001 - re-raised unless it is the lock
            if not _locked(err):
                raise
            last = err
        for wait in LOCKED_RETRY_WAITS_S:
            time.sleep(wait)
            try:
                mlflow.MlflowClient().set_terminated(run_id, status)
                break
            except Exception as err:  # noqa: BLE001 - re-raised unless it is the lock
                if not _locked(err):
                    raise
                last = err
        else:
            if status != "KILLED":  # a finished run must not be left for reconcile to call KILLED
                raise last
            log.warning("run %s could not be recorded as KILLED (the store stayed locked); the next command on "
                        "the store records it", run_id)
    monitor = fluent.run_id_to_system_metrics_monitor.pop(run_id, None)
    if monitor is not None:
        monitor.finish()


def _locked(err: BaseException) -> bool:
    return "database is locked" in str(err)


@contextmanager
def _quiet_store_errors() -> Iterator[None]:
    """MLflow logs every SQLAlchemy error with its traceback before raising it; a lock
    that the retry gets past is not an error for the console."""
    logger = logging.getLogger("mlflow.store.db.utils")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _closed_earlier(run_id: str, earlier: Mapping[str, str]) -> Dict[str, str]:
    """A reopened run is running again: why a command closed it before (`closed_because`) is its
    history, not its state. The card study's parent, FINISHED, still read "its process ... is gone"
    from a kill two sessions before. Moved to `closed_earlier` (every such reason, in order)."""
    if CLOSED_BECAUSE not in earlier:
        return {}
    mlflow.MlflowClient().delete_tag(run_id, CLOSED_BECAUSE)
    return {"closed_earlier": "; ".join(filter(None, [earlier.get("closed_earlier"), earlier[CLOSED_BECAUSE]]))}


def release_interrupted_frames(stop: BaseException) -> None:
    """Free what the frames a signal cut short still hold, before the run's last write.
    A KeyboardInterrupt raised inside an MLflow write (an epoch's metrics) leaves that
    SQLite statement alive in the traceback's frames; SQLAlchemy closes the connection,
    but SQLite keeps its transaction, and the write lock, until the statement is freed:
    ending the run then failed with "database is locked" (1 stop in 10 here)."""
    traceback.clear_frames(stop.__traceback__)  # frames still executing are skipped
    gc.collect()


def flatten(config: Mapping[str, Any], prefix: str = "") -> Dict[str, str]:
    """Nested config -> {'model.filters': '[32, 64, 128]', ...}."""
    flat: Dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = str(value.value if hasattr(value, "value") else value)[:MAX_PARAM_LENGTH]
    return flat


@functools.lru_cache(maxsize=None)
def git_commit() -> Dict[str, str]:
    """The commit this process runs, read once: the code it loaded at its start, whatever
    is committed or edited while it runs."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
    try:
        commit = git("rev-parse", "--verify", "--quiet", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    if not commit:
        return {}
    return {"mlflow.source.git.commit": commit, "git_commit": commit, "git_dirty": str(dirty).lower()}


DIRTY = "-dirty"  # git describe's mark: that resume ran with uncommitted changes


def ran_at(run) -> List[Tuple[str, bool]]:
    """The commits a run ran at, each with whether it had uncommitted changes: `git_commits`
    (a resumed run lists each), else its `git_commit`, else the commit MLflow itself records
    (runs from before the project tagged every run)."""
    return _listed_commits(run.data.tags)


def commit_labels(run, length: int = 7, quote: str = "") -> List[str]:
    """`ran_at` as the reports print it: 'abc1234', or 'abc1234 (uncommitted changes)'
    (`quote`: '`' for Markdown code around the commit)."""
    return [f"{quote}{commit[:length]}{quote}" + (" (uncommitted changes)" if dirty else "")
            for commit, dirty in ran_at(run)]


def commits_phrase(run) -> str:
    """The reports' words for `ran_at`: 'commit `<sha>`', or 'commits `<sha>`, `<sha>` (...)'."""
    labels = commit_labels(run, length=40, quote="`")
    return ("commits " if len(labels) > 1 else "commit ") + (", ".join(labels) or "unknown")


def _listed_commits(tags: Mapping[str, str]) -> List[Tuple[str, bool]]:
    listed = tags.get("git_commits") or tags.get("git_commit") or tags.get("mlflow.source.git.commit") or ""
    entries = [(c.removesuffix(DIRTY), c.endswith(DIRTY)) for c in listed.split(",") if c]
    if tags.get("git_dirty") == "true" and not any(dirty for _, dirty in entries):
        # A list from before the mark: `git_dirty` is its last process's, at `git_commit`.
        last = tags.get("git_commit") or (entries[-1][0] if entries else None)
        at = max((i for i, (commit, _) in enumerate(entries) if commit == last), default=None)
        if at is not None:
            entries[at] = (last, True)
    return entries


def commits_ran_at(tags: Mapping[str, str], commit: Optional[str], dirty: bool = False) -> Dict[str, str]:
    """The tag `git_commits`: the commits a run ran at, in order, a commit run with uncommitted
    changes marked `-dirty` (so a resume with edits stays on record after a clean one)."""
    known = [c + (DIRTY if d else "") for c, d in _listed_commits(tags)]
    entry = commit + (DIRTY if dirty else "") if commit else None
    if entry and entry not in known:
        known.append(entry)
    return {"git_commits": ",".join(known)} if known else {}


def command_line(overrides: Optional[list] = None) -> str:
    """The command that reproduces this job: the launch command for a single
    run, the job's own overrides for a job of a multirun."""
    args = list(overrides) if overrides is not None else sys.argv[1:]
    return shlex.join(["python", "-m", "src.run", *args])


def run_tags(extra: Optional[Mapping[str, str]] = None, overrides: Optional[list] = None) -> Dict[str, str]:
    tags = {"command": command_line(overrides),  # the commit: tracked_run, for every run
            "launch_command": shlex.join(["python", "-m", "src.run", *sys.argv[1:]])}
    tags.update({k: str(v) for k, v in (extra or {}).items()})
    return tags

