"""Races in MLflow 3.17's SQL store when several processes use one store at
once (sweep jobs, tuner workers, confirmation runs, two users, a UI or a
notebook), and what this project does about each. tests/tracking/test_races.py
shows the races still exist upstream (so these can go once they are fixed) and
that these hold them off.
"""
from __future__ import annotations

import fcntl
import functools
import logging
import os
import sqlite3
import time
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Callable, Mapping, Optional, TypeVar

import mlflow
from mlflow.exceptions import MlflowException

T = TypeVar("T")
# How long a first use waits, in all, for another process's migration of the same new
# store to finish: the ~50 migrations take 2-10 s on a busy 2-core machine.
FOREIGN_MIGRATION_WAIT_S = 60.0
QUIET_S = 2.0  # a migrating process writes several times a second; a busy machine can stall it ~1 s
log = logging.getLogger(__name__)

# Messages of a unique-key violation, as SQLite, PostgreSQL and MySQL word it
# (through a tracking server they arrive inside an INTERNAL_ERROR's text).
_DUPLICATE_KEY = ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry", "IntegrityError")
DATASET_LOG_ATTEMPTS = 8


def log_input_retrying(dataset, context: str, tags: Mapping[str, str]) -> None:
    """`mlflow.log_input` that survives other processes logging the same dataset at once.

    MLflow 3.17's SqlAlchemyStore.log_inputs selects the experiment's dataset
    row by (name, digest) and inserts it when missing, with no lock and no
    handling of the unique-key violation: two runs (sweep jobs, tuner workers,
    confirmation runs, two users) logging the same dataset to an experiment
    that has not seen it yet can both miss the row, and the slower insert fails
    with an IntegrityError that ends its run. The failed transaction is rolled
    back whole, and on the next attempt the row exists and is reused, so a
    retry is safe. Bounded: a violation that persists is a real error.
    """
    for attempt in range(1, DATASET_LOG_ATTEMPTS + 1):
        try:
            mlflow.log_input(dataset, context=context, tags=dict(tags))
            return
        except MlflowException as err:
            if attempt == DATASET_LOG_ATTEMPTS or not any(m in str(err) for m in _DUPLICATE_KEY):
                raise
            time.sleep(0.05 * attempt)


@contextmanager
def creation_lock(path: Optional[Path]):
    """Hold while touching a SQLite store for the first time in a process.

    MLflow 3.17 creates and migrates a fresh SQLite store on first use, with no
    lock: two processes doing it at once crash ("duplicate column name", "Online
    migration expected to match one row", measured 2 of 3 processes failing).
    An advisory lock on the store's directory makes the second wait until the
    first has finished (no upstream issue found). A server store migrates once,
    at `mlflow server` start, so it needs none.
    """
    if path is None:
        yield
        return
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(directory, fcntl.LOCK_EX)
        yield
    finally:
        os.close(directory)  # releases the lock


def first_use(path: Optional[Path], open_store: Callable[[], T]) -> T:
    """`open_store()` (a call that may create and migrate the SQLite store at `path`) under
    `creation_lock`, out of the way of another process's migration of the same new file.

    The creation lock covers only this project's processes. Any other MLflow client (a
    UI, a notebook, a monitoring script) that opens a new store at the same moment
    migrates it too, unlocked, and whichever of the two is behind fails ("table
    sql_trace_metric_daily_rollups already exists", "duplicate column name", alembic's
    "Online migration expected to match one row": 4 of 6 tries here with the other
    client starting 1-2 s ahead). SQLite's migrations are not transactional, so the two
    can also both fail and leave the store half made. So: a store not yet at MLflow's
    newest revision whose file keeps changing is being migrated by someone else, and is
    left alone until it has been still for QUIET_S; a failure on a store that was not
    migrated is retried the same way. Both within FOREIGN_MIGRATION_WAIT_S. A store
    already migrated, or one that sits still at an old revision (written by an older
    MLflow: "run mlflow db upgrade"), fails at once, as before. A server store migrates
    once, at `mlflow server` start, and needs none of this.
    """
    if path is None:
        return open_store()
    deadline, failed, waited = time.monotonic() + FOREIGN_MIGRATION_WAIT_S, None, False
    while True:
        with creation_lock(path):
            before = _revision(path)
            busy = path.exists() and before != _head_revision() and _being_changed(path)
            if not busy or time.monotonic() > deadline:
                try:
                    return open_store()
                except Exception as err:  # noqa: BLE001 - judged below; anything else is raised as it was
                    if before == _head_revision() or time.monotonic() > deadline or (
                            failed is not None and not _being_changed(path)):
                        if not waited:
                            raise
                        raise MlflowException(
                            f"its schema migration failed after waiting for another process's migration of it "
                            f"({type(err).__name__}: {(str(err).strip() or 'no detail').splitlines()[0]})") from err
                    failed = err
        if not waited:
            why = f" ({str(failed).strip().splitlines()[0][:200]})" if failed is not None else ""
            log.info("tracking store %s is being created by another process%s; waiting for it", path, why)
            waited = True


def _being_changed(path: Path) -> bool:
    """Whether the store's file, journal or revision changes within QUIET_S (or a write
    transaction is open: its journal is there)."""
    first = _fingerprint(path)
    time.sleep(QUIET_S)
    second = _fingerprint(path)
    return first != second or second[-1]


def _revision(path: Path) -> Optional[str]:
    """The store's schema revision (read only); None for a new, unfinished or locked store."""
    if not path.exists():
        return None
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)) as db:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


@functools.lru_cache(maxsize=1)
def _head_revision() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision  # deferred: SQLAlchemy, alembic, ~1 s; SQLite only

    return _get_latest_schema_revision()


def _fingerprint(path: Path) -> tuple:
    """What changes while some process migrates the store: its revision, the file, and
    SQLite's journal (present only during a write transaction; last element)."""
    def stat(candidate: Path):
        try:
            info = candidate.stat()
            return info.st_mtime_ns, info.st_size
        except OSError:
            return None

    journal = stat(path.with_name(path.name + "-journal"))
    return _revision(path), stat(path), journal, journal is not None
