"""The tracking store: where it is, whether it answers, experiments, and the two
queries for runs: a study's parent run, and a run's children. (The two MLflow
3.17 SQL-store races it works around are in races.py.)

The embedded store is where MLflow looks by default: the SQLite database
`mlflow.db` at the project root, with artifacts under `mlruns/` (MLflow 3.13+
refuses the plain `./mlruns` file store). So a bare `mlflow ui`, or
`mlflow.search_runs()` in a notebook, started from the project root shows
every run.
"""
from __future__ import annotations

import os
import shlex
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Optional

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request

from src.config import ProjectError
from src.config.paths import PROJECT_ROOT
from src.tracking.races import first_use

EMBEDDED_DB = PROJECT_ROOT / "mlflow.db"
# How long another process may hold the store locked before we give up: the same
# 5 s that MLflow's own SQLite connections wait (pysqlite's default timeout).
LOCK_TIMEOUT_S = 5.0
# Tables every MLflow store has; a database with other tables but not these is not MLflow's.
MLFLOW_TABLES = {"alembic_version", "experiments", "runs"}


class TrackingError(ProjectError):
    """The tracking store cannot be used."""


def embedded_uri(db_path: Path = EMBEDDED_DB) -> str:
    return f"sqlite:///{db_path.resolve()}"


def resolve_uri(uri: Optional[str]) -> str:
    """`tracking.uri`, else MLFLOW_TRACKING_URI, else the embedded store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or embedded_uri()


def sqlite_path(uri: str) -> Optional[Path]:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def artifact_root(uri: str) -> Optional[str]:
    """Artifacts of a local SQLite store live in `mlruns/` beside the database, as MLflow's default."""
    path = sqlite_path(uri)
    return (path.resolve().parent / "mlruns").as_uri() if path else None


def ui_command(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    if uri == embedded_uri():
        return "mlflow ui   (from the project root)"
    parts = ["mlflow", "ui", "--backend-store-uri", uri]
    root = artifact_root(uri)
    if root:
        parts += ["--default-artifact-root", root]
    return shlex.join(parts)


def run_link(uri: str, experiment_id: str, run_id: str) -> str:
    """A direct link to the run in the UI (the default `mlflow ui` address for a local store)."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast on a tracking server that does not answer (MLflow's own client
    retries with backoff for minutes), or that will not let this client in."""
    if not uri.startswith(("http://", "https://")):
        return
    parts = urllib.parse.urlsplit(uri)
    if parts.password is not None:
        shown = parts._replace(netloc=f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}").geturl()
        raise TrackingError(f"tracking.uri={shown} carries a password, which would be logged with every run "
                            "(its params and command): set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                            "in the environment instead")
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            response.read()
    except (urllib.error.URLError, OSError) as err:
        raise TrackingError(f"tracking.uri={uri} is not reachable ({err}); "
                            "start the server or point tracking.uri elsewhere") from None
    check_credentials(uri, timeout)


def check_credentials(uri: str, timeout: float = 5.0) -> None:
    """Ask the server for one experiment with the credentials MLflow's own client would send
    (MLflow builds them: MLFLOW_TRACKING_USERNAME/PASSWORD or ~/.mlflow/credentials, a token,
    TLS settings). `/health` answers anyone, so a server with authentication
    (`mlflow server --app-name basic-auth`) or host protection (`--allowed-hosts`) would
    otherwise refuse the client only later, in a traceback from deep inside MLflow.
    Other answers are left to MLflow."""
    try:
        creds = get_default_host_creds(uri)
        response = http_request(creds, "/api/2.0/mlflow/experiments/search", "GET", params={"max_results": 1},
                                max_retries=0, timeout=timeout, raise_on_status=False)
    except Exception:  # noqa: BLE001 - answered /health a moment ago: MLflow's own retries and messages take it
        return
    if response.status_code == 401 and (creds.username and creds.password or creds.token):
        who = f"MLFLOW_TRACKING_USERNAME={creds.username}" if creds.username and creds.password else "MLFLOW_TRACKING_TOKEN"
        raise TrackingError(f"tracking server {uri} refused the credentials of {who} (HTTP 401): "
                            "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    if response.status_code == 401:
        raise TrackingError(f"tracking server {uri} requires a login (HTTP 401): set MLFLOW_TRACKING_USERNAME "
                            "and MLFLOW_TRACKING_PASSWORD in the environment (never on the command line)")
    if response.status_code == 403 and "Invalid Host header" in response.text:
        host = urllib.parse.urlsplit(uri).netloc
        raise TrackingError(f"tracking server {uri} refuses the host name {host} (HTTP 403, its --allowed-hosts "
                            f"protection): use an address the server allows, or add {host} to its "
                            "--allowed-hosts")


def check_sqlite_store(path: Path, timeout: Optional[float] = None) -> None:
    """Refuse a SQLite file that MLflow cannot use, before MLflow opens it.

    Left to MLflow, a foreign database gets MLflow's tables added to it, a store
    from an unknown MLflow gets a misleading "run mlflow db upgrade", and the
    rest end in a SQLAlchemy traceback. This only reads the file (mode=ro), so
    it never changes it. A missing or empty file is a new store: MLflow creates it.
    """
    timeout = LOCK_TIMEOUT_S if timeout is None else timeout
    elsewhere = "point tracking.uri at another file (tracking.uri=sqlite:///<new file>)"

    def refuse(problem: str, todo: str) -> TrackingError:
        return TrackingError(f"tracking store {path} {problem}; it was left unchanged: {todo}")

    if not path.exists():
        if not _writable(path.parent):
            raise refuse("cannot be created: its directory is not writable", f"make it writable, or {elsewhere}")
        return
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)) as db:
            tables = {name for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
            row = db.execute("SELECT version_num FROM alembic_version").fetchone() if MLFLOW_TABLES <= tables else None
    except sqlite3.Error as err:
        code = getattr(err, "sqlite_errorname", "")
        if code.startswith("SQLITE_BUSY"):
            raise refuse(f"is locked by another process (still locked after {timeout:g} s)",
                         "wait for that process to finish, or stop it, then run again") from None
        if code != "SQLITE_READONLY_ROLLBACK":
            raise refuse(f"is not a usable SQLite database ({err})", f"move it aside, or {elsewhere}") from None
        # A hot journal: a writer crashed mid-commit. Reading it needs SQLite's own
        # rollback to the last commit, which MLflow's connection does; not damage.
        tables, row = MLFLOW_TABLES, None
    if tables and not MLFLOW_TABLES <= tables and not _being_created(tables):
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise refuse(f"is an SQLite database but not an MLflow store (its tables: {shown})", elsewhere)
    if row and row[0] not in _known_schema_revisions():
        raise refuse(f"has MLflow schema revision {row[0]}, which MLflow {mlflow.__version__} does not know "
                     "(written by a newer MLflow?)", f"use the MLflow version that wrote it, or {elsewhere}")
    # SQLite writes a journal beside the file, so the directory must be writable too.
    if not (_writable(path) and _writable(path.parent)):
        raise refuse("is read-only (the file or its directory cannot be written)",
                     f"make both writable, or {elsewhere}")


def _being_created(tables: set) -> bool:
    """Only MLflow's own tables, without alembic_version yet: a store that another process
    (a UI, a notebook, a command) is creating right now, one table at a time
    (races.first_use waits for it), not someone else's database."""
    from mlflow.store.db.utils import Base, InitialBase  # deferred: SQLAlchemy, alembic, ~1 s; SQLite only

    known = set(Base.metadata.tables) | set(InitialBase.metadata.tables)
    return all(name in known or name.startswith("_alembic_tmp_") for name in tables)


def _writable(path: Path) -> bool:
    """As the process's effective user (what the file system checks on write). Root
    passes unless the file system is read-only or the file immutable."""
    return os.access(path, os.W_OK, effective_ids=os.access in os.supports_effective_ids)


def _known_schema_revisions() -> set:
    """Every schema revision this MLflow can migrate from (its Alembic scripts)."""
    from alembic.script import ScriptDirectory  # deferred: alembic, ~0.3 s; SQLite only
    from mlflow.store.db.utils import _get_alembic_config  # deferred: SQLAlchemy, alembic, ~1 s; SQLite only

    return {script.revision for script in ScriptDirectory.from_config(_get_alembic_config("")).walk_revisions()}


def client(uri: str) -> "mlflow.MlflowClient":
    """An MlflowClient for `uri`, created under `creation_lock`.

    MlflowClient opens its store as it is built, so on a fresh SQLite file it
    creates and migrates the tables right there: built while another process
    migrates the same file, one of them crashes ("No such index ...", measured
    in CI). Every client this project builds goes through here (races.first_use
    also waits out a foreign process's migration).
    """
    return first_use(sqlite_path(uri), lambda: mlflow.MlflowClient(uri))


def ensure_experiment(uri: str, name: str) -> str:
    """Create the store and the experiment if needed; returns the experiment id."""
    path = sqlite_path(uri)
    if path:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TrackingError(f"tracking store {path} cannot be created ({err}); "
                                "point tracking.uri at another file") from None
        check_sqlite_store(path)
    check_reachable(uri)
    from alembic.util.exc import CommandError  # deferred: alembic, ~0.3 s; only this function needs it
    from sqlalchemy.exc import SQLAlchemyError  # deferred: SQLAlchemy, ~0.1 s; only this function needs it

    try:
        mlflow.set_tracking_uri(uri)
        experiment = first_use(sqlite_path(uri), lambda: mlflow.get_experiment_by_name(name))
        if experiment is None:
            try:
                mlflow.create_experiment(name, artifact_location=_experiment_artifacts(uri, name))
            except MlflowException:
                # Created meanwhile by another process? If not, report why it could not be.
                if mlflow.get_experiment_by_name(name) is None:
                    raise
            experiment = mlflow.get_experiment_by_name(name)
        # Nested runs (a study's trials) start in the active experiment.
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
    except (MlflowException, SQLAlchemyError, sqlite3.Error, CommandError) as err:
        # Whatever the check above cannot foresee: one line, not MLflow's traceback.
        first_line = (str(err).strip() or "no detail").splitlines()[0]
        raise TrackingError(f"tracking store {uri} cannot be used ({type(err).__name__}: {first_line}); "
                            "check it, or point tracking.uri at another store") from None
    return experiment.experiment_id


def _experiment_artifacts(uri: str, name: str) -> Optional[str]:
    root = artifact_root(uri)
    if root is None:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return f"{root}/{safe}"


def find_study_run(client, experiment_id: str, project: str) -> Optional[str]:
    """The newest parent run of study `project` (tags study, study_role=parent): the run a
    resumed study reopens and a worker joins. Here, not in jobs, so both can ask."""
    runs = client.search_runs([experiment_id], f"tags.study = '{project}' and tags.study_role = 'parent'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def child_runs(client, experiment_id: str, parent_run_id: str, status: Optional[str] = None,
               as_frame: bool = False, role: Optional[str] = None):
    """A run's children (a study's trials and confirmation runs, a sweep's jobs), oldest first;
    only `status` and only `role` (tag study_role: trial, confirm) if given. As Run objects, or
    with `as_frame` as `mlflow.search_runs`' pandas table (same query)."""
    query = f"tags.mlflow.parentRunId = '{parent_run_id}'"
    if status:
        query += f" and attributes.status = '{status}'"
    if role:
        query += f" and tags.study_role = '{role}'"
    order = ["attributes.start_time ASC"]
    if as_frame:
        return mlflow.search_runs([experiment_id], query, max_results=10000, order_by=order)
    return client.search_runs([experiment_id], query, max_results=10000, order_by=order)
