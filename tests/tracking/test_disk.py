"""A full disk (src/tracking/disk.py): the one line that names the write, the place and its
free space, from an error as MLflow raises it; the plan's warning when a study will not fit.
The commands that fill a real disk: tests/test_outside_faults.py."""
from __future__ import annotations

import errno
import sqlite3

from src.tracking import disk


def test_the_disk_line_names_the_write_the_place_and_the_free_space(tmp_path):
    """The line's parts from a failure as MLflow raises it: SQLite's error inside SQLAlchemy's
    inside MlflowException, then the run's end failing the same way."""
    from mlflow.exceptions import MlflowException

    def raised(error, cause=None):
        try:
            raise error from cause
        except Exception as caught:  # noqa: BLE001
            return caught

    sqlite_error = raised(sqlite3.OperationalError("database or disk is full"))
    metrics = raised(MlflowException("(sqlite3.OperationalError) database or disk is full\n"
                                     "[SQL: INSERT INTO metrics (key, value) VALUES (?, ?)]"), sqlite_error)
    run_end = "(sqlite3.OperationalError) database or disk is full\n[SQL: UPDATE runs SET status=?]"
    try:
        try:
            raise metrics
        except MlflowException:
            raise MlflowException(run_end)  # noqa: B904 - chained implicitly, as tracked_run's end_run is
    except MlflowException as ending:
        line = disk.describe(ending, f"sqlite:///{tmp_path / 'mlflow.db'}", {}, "the run trains again")
    assert line.startswith(f"no space left on the disk: could not write the tracking store {tmp_path / 'mlflow.db'} "
                           "(metrics rows)"), line  # the first write that failed, not the run's end after it
    assert f"free on {tmp_path}" in line and "the store holds no run of this command" in line.lower()
    assert disk.describe(ValueError("unrelated"), "sqlite:///x.db", {}, "") is None
    assert disk.full_disk_cause(OSError(errno.ENOSPC, "No space left on device")) is not None


def test_the_plan_warns_when_the_studys_checkpoints_will_not_fit(tmp_path):
    assert disk.short_of(tmp_path, 1, "checkpoints") == []
    warning = disk.short_of(tmp_path, 2**62, "the study's checkpoints and run files")
    assert len(warning) == 1 and "warning: the study's checkpoints and run files need about" in warning[0]
