"""MLflow: where the store is, run lifecycle, and what every run logs.

The embedded store is a SQLite database under `mlruns/` with artifacts beside
it, because MLflow 3.13+ refuses the plain `./mlruns` file store.
"""
from __future__ import annotations

import contextlib
import io
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ContextDecorator, contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Iterator, Mapping, Optional

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException

from src import interrupt

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EMBEDDED_STORE = PROJECT_ROOT / "mlruns"
MAX_PARAM_LENGTH = 6000


class TrackingError(RuntimeError):
    """The tracking store cannot be used."""


class Stopwatch(ContextDecorator):
    """Seconds spent inside `with stopwatch:` blocks or decorated calls, summed (re-entrant)."""

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


# Time this process spends in MLflow calls (and drawing the figures it logs).
MLFLOW_TIME = Stopwatch()


def embedded_uri(store_dir: Path = EMBEDDED_STORE) -> str:
    return f"sqlite:///{(store_dir / 'mlflow.db').resolve()}"


def resolve_uri(uri: Optional[str]) -> str:
    """`tracking.uri`, else MLFLOW_TRACKING_URI, else the embedded store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or embedded_uri()


def sqlite_path(uri: str) -> Optional[Path]:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def artifact_root(uri: str) -> Optional[str]:
    """Artifacts of a local SQLite store live in `artifacts/` beside the database."""
    path = sqlite_path(uri)
    return (path.resolve().parent / "artifacts").as_uri() if path else None


def ui_command(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    parts = ["mlflow", "ui", "--backend-store-uri", uri]
    root = artifact_root(uri)
    if root:
        parts += ["--default-artifact-root", root]
    return " ".join(shlex.quote(p) for p in parts)


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


@contextmanager
def tracked_run(run_name: Optional[str] = None, tags: Optional[Mapping[str, str]] = None,
                nested: bool = False, experiment_id: Optional[str] = None,
                parent_run_id: Optional[str] = None, run_id: Optional[str] = None) -> Iterator[mlflow.ActiveRun]:
    """A run that always ends: FINISHED, FAILED on an exception, KILLED on Ctrl-C or SIGTERM.
    With `run_id`, an existing run is reopened (a resumed study)."""
    if run_id:
        run = mlflow.start_run(run_id=run_id, nested=nested)
        mlflow.set_tags(dict(tags or {}))
    else:
        run = mlflow.start_run(run_name=run_name, tags=dict(tags or {}), nested=nested,
                               experiment_id=experiment_id, parent_run_id=parent_run_id)
    try:
        yield run
        interrupt.check()  # a Ctrl-C that Python dropped still ends the run KILLED
        mlflow.flush_async_logging()
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


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


def git_commit() -> Dict[str, str]:
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


def command_line(overrides: Optional[list] = None) -> str:
    """The command that reproduces this job: the launch command for a single
    run, the job's own overrides for a job of a multirun."""
    args = list(overrides) if overrides is not None else sys.argv[1:]
    return " ".join(["python", "-m", "src.run", *(shlex.quote(a) for a in args)])


def run_tags(extra: Optional[Mapping[str, str]] = None, overrides: Optional[list] = None) -> Dict[str, str]:
    tags = {**git_commit(), "command": command_line(overrides),
            "launch_command": " ".join(shlex.quote(a) for a in ["python", "-m", "src.run", *sys.argv[1:]])}
    tags.update({k: str(v) for k, v in (extra or {}).items()})
    return tags


def replace_table(frame, artifact_file: str) -> None:
    """`mlflow.log_table`, replacing the file instead of appending to it (a
    resumed study logs its leaderboard again)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        get_artifact_repository(mlflow.get_artifact_uri()).delete_artifacts(artifact_file)
    except (NotImplementedError, MlflowException, OSError):
        pass  # nothing there yet, or a store that cannot delete: log_table appends
    mlflow.log_table(frame, artifact_file)


def log_dataset(images: np.ndarray, one_hot_labels: np.ndarray, name: str, source: str,
                context: str, lossy: bool) -> None:
    dataset = mlflow.data.from_numpy(images, targets=one_hot_labels.argmax(axis=1), name=name,
                                     source=source)
    note = ("lossy offline rebuild: most images decoded from JPEG (quality 75), "
            "accuracies run a little below published CIFAR-10 figures") if lossy else "original pixels"
    log_input_retrying(dataset, context=context, tags={"note": note})


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


def _save_keras_model(path, **kwargs):
    # mlflow#16183 (open, 3.17): mlflow.keras.save_model writes the input
    # example before creating the model directory; create it first.
    os.makedirs(path, exist_ok=True)
    return mlflow.keras.save_model(path=path, **kwargs)


# mlflow.keras with that one fix, for Model.log's documented `flavor` argument.
KERAS_FLAVOR = SimpleNamespace(__name__="mlflow.keras", save_model=_save_keras_model)


def log_keras_model(model, example_images: np.ndarray, name: str = "model"):
    """The model in MLflow's Keras flavour, with a signature and an input example."""
    import keras
    import tensorflow as tf
    from mlflow.models import Model, infer_signature

    example = example_images[:2]
    signature = infer_signature(example, model.predict(example, verbose=0))
    # Explicit requirements: MLflow otherwise re-imports the model in a
    # subprocess to infer them, which costs a TensorFlow start-up per run.
    # MLflow checks the input example with a predict call that draws a Keras
    # progress bar on stdout; keep the console for the run's own output.
    with contextlib.redirect_stdout(io.StringIO()):
        return Model.log(artifact_path=None, name=name, flavor=KERAS_FLAVOR, model=model, signature=signature,
                         input_example=example,
                         pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"])


def register_champion(model_uri: str, name: str, alias: str = "champion") -> str:
    """Register the model and point `alias` at the new version; returns the version."""
    version = mlflow.register_model(model_uri, name)
    mlflow.MlflowClient().set_registered_model_alias(name, alias, version.version)
    mlflow.set_tag("registered_model", f"{name}@{alias} (version {version.version})")
    return version.version


def epoch_logger():
    """A Keras callback logging each epoch's metrics with step = epoch (1-based,
    as Keras prints it). MLflow's own MlflowCallback also logs a stepless copy
    of every validation metric, which would break one naming scheme."""
    import keras

    class MlflowEpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs:
                with MLFLOW_TIME:
                    mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch + 1,
                                       synchronous=False)

    return MlflowEpochLogger()
