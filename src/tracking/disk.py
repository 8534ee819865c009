"""A full disk, wherever it surfaces: one line that says what could not be written,
where, the free space there, and what the store holds now.

A command writes to several places: the tracking store (SQLite), the artifacts,
the tuner's state and checkpoints, Hydra's output folder, the dataset cache and
the temporary folder (MLflow stages artifacts there). A full one surfaces as
`OSError` ENOSPC (or EDQUOT, a quota), as SQLite's "database or disk is full"
inside SQLAlchemy and MlflowException, or as text inside another error's
message (keras-tuner's). SQLite fails the write, not the database, so nothing
recorded is lost; a run that could not be marked ended is closed by the next
command on the store (src/tracking/reconcile.py).
"""
from __future__ import annotations

import errno
import logging
import re
import shutil
import socket
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Mapping, Optional, Tuple

import mlflow
import psutil

from src.config import ProjectError
from src.config.paths import PROJECT_ROOT
from src.tracking.store import sqlite_path

log = logging.getLogger(__name__)
NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
NO_SPACE_TEXT = ("No space left on device", "database or disk is full", "Disk quota exceeded")
# A study's disk need per parameter of its largest model: keras-tuner keeps each trial's
# best-epoch checkpoint, the weights and Adam's two moments in float32.
CHECKPOINT_BYTES_PER_PARAM = 3 * 4
RUN_FILES_BYTES = 2**20  # a run's figures, reports and store rows, about (measured: 0.3-0.6 MiB)


class DiskFullError(ProjectError):
    """A write failed for want of space."""


def chain(err: BaseException) -> List[BaseException]:
    """`err`, then what it was raised from or while handling, down to the first error."""
    found: List[BaseException] = []
    while err is not None and all(err is not seen for seen in found):
        found.append(err)
        err = err.__cause__ or err.__context__
    return found


def is_full_disk(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in NO_SPACE_ERRNOS:
        return True
    return any(text in str(err) for text in NO_SPACE_TEXT)


def full_disk_cause(err: BaseException) -> Optional[BaseException]:
    """The first write that failed for want of space in `err`'s chain (a failed write is often
    followed by another, such as ending the run), else None."""
    return next((e for e in reversed(chain(err)) if is_full_disk(e)), None)


def free_bytes(path: Path) -> Optional[int]:
    """Free bytes on the file system holding `path` (its nearest existing folder)."""
    path = Path(path).expanduser().absolute()
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def size(n: Optional[float]) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def what_and_where(err: BaseException, cause: BaseException, places: Mapping[str, Optional[Path]],
                   store_file: Optional[Path]) -> Tuple[str, Optional[Path]]:
    """(what could not be written, the path whose disk is full) for a full-disk error."""
    if "database or disk is full" in str(cause):
        # SQLite's own error names no statement; SQLAlchemy's, which wraps it, does.
        table = next(filter(None, (re.search(r"\[SQL: (?:INSERT INTO|UPDATE|DELETE FROM) \"?(\w+)", str(e))
                                   for e in reversed(chain(err)))), None)
        rows = f" ({table.group(1)} rows)" if table else ""
        if store_file is None:
            return f"to the tracking server{rows}", None
        return f"the tracking store {store_file}{rows}", store_file.parent
    # The file an OSError names may be the source of a copy (MLflow stages artifacts in the
    # temporary folder): the fullest of it and the places this command writes is where it failed.
    filename = getattr(cause, "filename", None) if isinstance(cause, OSError) else None
    candidates = {**places, "": Path(filename).parent if filename else None}
    known = [(free_bytes(path), name, path) for name, path in candidates.items() if path is not None]
    known = [entry for entry in known if entry[0] is not None]
    if not known:
        return str(filename or "a file"), None
    free, name, path = min(known, key=lambda entry: entry[0])
    if not name:
        return str(filename), path
    names = [entry[1] for entry in known if entry[0] == free and entry[1]]  # places on that same disk
    return f"a file of {' or '.join(names)}" + (f" (writing {Path(filename).name})" if filename else ""), path


def project_frame(err: BaseException, cause: BaseException) -> str:
    """Where in the project's code the failed write was made: ' (in src/x.py:function)', or ''.
    The first error of the chain may hold only library frames: then the error that wraps it."""
    src = str(PROJECT_ROOT / "src")
    errors = chain(err)
    for current in reversed(errors[:errors.index(cause) + 1] if cause in errors else errors):
        frames = [frame for frame in traceback.extract_tb(current.__traceback__) if frame.filename.startswith(src)]
        if frames:
            return f" (in {Path(frames[-1].filename).relative_to(PROJECT_ROOT)}:{frames[-1].name})"
    return ""


def store_now(uri: str) -> str:
    """What the store holds of this process's runs, read back after the failure (reading
    needs no space). A run it could not end is closed by the next command on the store."""
    database = sqlite_path(uri)
    if database is not None and not database.exists():
        return "the store holds no run of this command"  # (and is not created now, on a full disk)
    process = psutil.Process()
    query = f"tags.pid = '{process.pid}' and tags.host = '{socket.gethostname()}'"
    try:
        client = mlflow.MlflowClient(uri)
        ids = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(ids, query, max_results=1000) if ids else []
    except Exception as err:  # noqa: BLE001 - a store that cannot even be read: say so, do not mask the error
        return f"the store could not be read back ({type(err).__name__}); the next command closes any run left RUNNING"
    started = f"{process.create_time():.3f}"
    runs = [run for run in runs if run.data.tags.get("process_start") == started]
    if not runs:
        return "the store holds no run of this command"
    running = [run for run in runs if run.info.status == "RUNNING"]
    ended = [run for run in runs if run.info.status != "RUNNING"]
    statuses = sorted({run.info.status for run in ended})
    listed = ("run " + ", ".join(f"{run.info.run_id[:8]} {run.info.status}" for run in ended) if len(ended) <= 3
              else ", ".join(f"{sum(r.info.status == status for r in ended)} runs {status}" for status in statuses))
    parts = [f"the store keeps what its runs logged ({listed})"] if ended else []
    if running:
        parts.append(f"run {', '.join(run.info.run_id[:8] for run in running)} could not be marked ended and stays "
                     "RUNNING until the next command on this store closes it as FAILED")
    return "; ".join(parts)


def describe(err: BaseException, uri: str, places: Mapping[str, Optional[Path]], again: str) -> Optional[str]:
    """The one line for a full disk in `err`'s chain, else None."""
    cause = full_disk_cause(err)
    if cause is None:
        return None
    store_file = sqlite_path(uri)
    what, where = what_and_where(err, cause, places, store_file)
    free = f"{size(free_bytes(where))} free on {where}" if where is not None else "on the server's disk"
    now = store_now(uri)
    return (f"no space left on the disk: could not write {what}{project_frame(err, cause)}; {free}. "
            f"{now[:1].upper()}{now[1:]}. Free some space there, then run the same command again: {again}")


@contextmanager
def reported_when_full(uri: str, places: Mapping[str, Optional[Path]], again: str) -> Iterator[None]:
    """Turns a full disk anywhere inside into DiskFullError: one line, not the tracebacks."""
    try:
        yield
    except Exception as err:
        line = describe(err, uri, places, again)
        if line is None:
            raise
        log.debug("full disk", exc_info=True)
        raise DiskFullError(line) from None


class _FullDiskFilter(logging.Filter):
    """Drops the traceback MLflow logs for every SQLAlchemy OperationalError before raising it
    again: on a full disk, the project reports that error itself, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return error is None or full_disk_cause(error) is None


def quiet_upstream_tracebacks() -> None:
    logger = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _FullDiskFilter) for f in logger.filters):
        logger.addFilter(_FullDiskFilter())


def short_of(path, need: int, what: str) -> List[str]:
    """A plan's warning line when `need` bytes will not fit on `path`'s disk, else none."""
    free = free_bytes(Path(path))
    if free is None or free >= need:
        return []
    return [f"  warning: {what} need about {size(need)}, but {size(free)} is free on {path}: "
            "free some space first, or a full disk stops the study (it resumes once space is freed)"]
