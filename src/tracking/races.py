"""Two races in MLflow 3.17's SQL store when several processes use one store at
once (sweep jobs, tuner workers, confirmation runs, two users), and what this
project does about each. tests/test_concurrency.py shows both races still exist
upstream (so these can go once they are fixed) and that these hold them off.
"""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Mapping, Optional

import mlflow
from mlflow.exceptions import MlflowException

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
