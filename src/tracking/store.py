"""The tracking store: where it is, whether it answers, experiments, and the one
query for a run's children.

The embedded store is where MLflow looks by default: the SQLite database
`mlflow.db` at the project root, with artifacts under `mlruns/` (MLflow 3.13+
refuses the plain `./mlruns` file store). So a bare `mlflow ui`, or
`mlflow.search_runs()` in a notebook, started from the project root shows
every run.
"""
from __future__ import annotations

import os
import shlex
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import mlflow
from mlflow.exceptions import MlflowException

from src.config import ProjectError
from src.config.paths import PROJECT_ROOT

EMBEDDED_DB = PROJECT_ROOT / "mlflow.db"


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
    return " ".join(shlex.quote(p) for p in parts)


def run_link(uri: str, experiment_id: str, run_id: str) -> str:
    """A direct link to the run in the UI (the default `mlflow ui` address for a local store)."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast on a tracking server that does not answer: MLflow's own
    client retries with backoff for minutes."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            response.read()
    except (urllib.error.URLError, OSError) as err:
        raise TrackingError(f"tracking.uri={uri} is not reachable ({err}); "
                            "start the server or point tracking.uri elsewhere") from None


def ensure_experiment(uri: str, name: str) -> str:
    """Create the store and the experiment if needed; returns the experiment id.

    Run it once before fanning out: several processes creating a fresh
    SQLite store at once crash in its schema migration.
    """
    path = sqlite_path(uri)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        try:
            mlflow.create_experiment(name, artifact_location=_experiment_artifacts(uri, name))
        except MlflowException:
            pass  # created meanwhile by another process
        experiment = mlflow.get_experiment_by_name(name)
    # Nested runs (a study's trials) start in the active experiment.
    mlflow.set_experiment(experiment_id=experiment.experiment_id)
    return experiment.experiment_id


def _experiment_artifacts(uri: str, name: str) -> Optional[str]:
    root = artifact_root(uri)
    if root is None:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return f"{root}/{safe}"



def child_runs(client, experiment_id: str, parent_run_id: str, status: Optional[str] = None) -> list:
    """A run's children (a study's trials, a sweep's jobs), oldest first; only `status` if given."""
    query = f"tags.mlflow.parentRunId = '{parent_run_id}'"
    if status:
        query += f" and attributes.status = '{status}'"
    return client.search_runs([experiment_id], query, max_results=10000, order_by=["attributes.start_time ASC"])
