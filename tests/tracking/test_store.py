"""The tracking store (src/tracking/store.py): where it is, its experiments, and damaged
SQLite stores.

A damaged store gives a one-line TrackingError naming the file and what to do, before
MLflow opens the file, and leaves the file byte-for-byte unchanged (no tables added, no
migration, no repair). The cases call `store.ensure_experiment` in-process (it is what
every command runs before its first MLflow run); one goes through the real command line.
docs/faults.md lists them.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import pytest

from src.tracking import store

from helpers.commands import run_here
from helpers.paths import PROJECT_ROOT

NOBODY = 65534


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> Path:
    """A real, current MLflow store with no runs, to copy per test (creating one takes seconds)."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    store.client(f"sqlite:///{path}").search_experiments()  # creates it without touching mlflow's global URI
    return path


def copy_store(template: Path, path: Path) -> Path:
    shutil.copyfile(template, path)
    return path


def snapshot(path: Path) -> tuple:
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(path.parent))


def assert_refused(path: Path, *expected: str) -> str:
    """ensure_experiment refuses the store in one line naming it, and changes nothing."""
    before = snapshot(path)
    with pytest.raises(store.TrackingError) as caught:
        store.ensure_experiment(f"sqlite:///{path}", "faults")
    message = str(caught.value)
    assert "\n" not in message and str(path) in message, message
    assert "left unchanged" in message, message
    for text in expected:
        assert text in message, message
    assert snapshot(path) == before  # same bytes, same mtime, nothing created beside it
    return message


def run_count(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        return db.execute("SELECT count(*) FROM runs").fetchone()[0]


@pytest.mark.parametrize("content", [os.urandom(8192), b"not a database, just some text\n" * 20],
                         ids=["random-bytes", "text-file"])
def test_a_file_that_is_not_a_database(tmp_path, content):
    path = tmp_path / "mlflow.db"
    path.write_bytes(content)
    assert_refused(path, "is not a usable SQLite database", "move it aside", "tracking.uri")


@pytest.mark.parametrize("kind", ["unrelated-table", "unknown-revision"])
def test_b_a_database_with_a_foreign_schema(tmp_path, mlflow_store, kind):
    path = tmp_path / "mlflow.db"
    if kind == "unrelated-table":
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
            db.execute("INSERT INTO notes (body) VALUES ('mine')")
            db.commit()
        assert_refused(path, "not an MLflow store", "notes", "tracking.uri")
    else:  # an MLflow store from a (future) MLflow whose schema this one does not know
        copy_store(mlflow_store, path)
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
            db.commit()
        assert_refused(path, "schema revision ffffffffffff", "does not know", "tracking.uri")
        assert run_count(path) == 0


@contextlib.contextmanager
def as_unprivileged_user():
    """Tests run as root, for whom a mode of 0o444 stops no write. So act as
    `nobody` (effective ids, restored after), whom it does stop: the check
    looks at the effective user's access. For root itself the check only
    fires on a read-only file system or an immutable file (os.access reports
    those even for root), which a test cannot create without mount rights."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.mark.parametrize("what", ["file-0444", "directory-0555"])
def test_c_a_read_only_store(mlflow_store, what):
    # Not under tmp_path: its parents are root's 0o700, which `nobody` cannot enter.
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        folder.chmod(0o755)
        path = copy_store(mlflow_store, folder / "mlflow.db")
        if os.geteuid() == 0:
            os.chown(path, NOBODY, NOBODY)  # nobody's own file: only the mode stops the write
        try:
            if what == "file-0444":
                path.chmod(0o444)
            else:
                folder.chmod(0o555)
            with as_unprivileged_user():
                assert_refused(path, "is read-only", "make both writable", "tracking.uri")
        finally:
            folder.chmod(0o755)
            path.chmod(0o644)
        assert run_count(path) == 0


def test_d_a_store_locked_past_the_timeout(tmp_path, mlflow_store, monkeypatch):
    path = copy_store(mlflow_store, tmp_path / "mlflow.db")
    monkeypatch.setattr(store, "LOCK_TIMEOUT_S", 0.5)  # 5 s in use; the wait is what is tested
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # as a process stuck mid-commit holds it
    try:
        started = time.monotonic()
        assert_refused(path, "locked by another process", "0.5 s", "wait for that process")
        assert 0.5 <= time.monotonic() - started < 5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert run_count(path) == 0


def test_a_through_the_command_line(tmp_path, synthetic_cifar):
    path = tmp_path / "store" / "mlflow.db"
    path.parent.mkdir()
    path.write_bytes(os.urandom(8192))
    before = snapshot(path)
    result = run_here(f"data.dir={synthetic_cifar}", f"tracking.uri=sqlite:///{path}", "trainer.epochs=1",
                      "trainer.verbose=0", "tracking.log_model=false", "model.filters=[8,16]",
                      "model.dense_units=[16]")
    assert result.returncode != 0
    assert "error:" in result.stderr and str(path) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert snapshot(path) == before


# ---- where the store is, and the experiments in it


def test_embedded_store_is_where_mlflow_looks_by_default():
    """`sqlite:///mlflow.db` at the project root with artifacts under mlruns/: a bare
    `mlflow ui` from the project root shows every run."""
    uri = store.embedded_uri()
    assert uri == f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"
    assert store.artifact_root(uri) == (PROJECT_ROOT / "mlruns").as_uri()
    assert store.ui_command(uri).startswith("mlflow ui")
    assert "--backend-store-uri" in store.ui_command("sqlite:////elsewhere/mlflow.db")


def test_resolve_uri_prefers_config_then_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/env.db")
    assert store.resolve_uri("http://server:5000") == "http://server:5000"
    assert store.resolve_uri(None) == "sqlite:////tmp/env.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert store.resolve_uri(None) == store.embedded_uri()


def test_ensure_experiment_is_idempotent_and_puts_artifacts_beside_the_db(tracking_uri, tmp_path):
    first = store.ensure_experiment(tracking_uri, "twice")
    assert store.ensure_experiment(tracking_uri, "twice") == first
    location = store.client(tracking_uri).get_experiment(first).artifact_location
    assert location == (tmp_path / "mlruns" / "twice").as_uri()


def test_unreachable_server_fails_fast():
    with pytest.raises(store.TrackingError, match="tracking.uri=http://127.0.0.1:9.*not reachable"):
        store.check_reachable("http://127.0.0.1:9", timeout=2)
