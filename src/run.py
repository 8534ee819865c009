"""Hydra entry point: `python -m src.run +experiment=baseline [key=value ...]`.

Validates the composed config before anything heavy is imported, then runs
the job it describes: a study when a tuner is configured, else one training
run. Returns the objective (test accuracy) for sweepers.
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
import urllib.parse
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src.config import ProjectError, register, validate
from src.core import interrupt
from src.core.native_log import native_stderr_to
from src.jobs.multirun import job_context, job_process, stop_sweep

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow errors surface as exceptions
# MLflow's own INFO lines (database migrations) are not the run's news.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
# Nor are its download progress bars: a study's report fetches a few small files, a bar each.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow cannot tell which of two equal readers a file:// dataset source needs; either is right.
warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
register()


def _stop(error: Exception) -> None:
    """A clear one-line error. In a multirun, raise instead: Hydra then marks
    only this job failed and the other jobs go on."""
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        raise error
    sys.exit(f"error: {error}")


def _interrupted(study: bool) -> None:
    """Ctrl-C or SIGTERM: the runs it cut short have already ended KILLED
    (tracked_run). One line instead of a traceback, and the exit status a
    shell gives a process ended by that signal (130, 143). In a multirun,
    raise: Hydra then stops the sweep."""
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        raise
    signum = interrupt.received() or signal.SIGINT
    resume = "; the same command resumes the study" if study else ""
    sys.stderr.write(f"interrupted by {signal.Signals(signum).name}: the run was recorded as KILLED{resume}\n")
    sys.exit(128 + signum)


def _write_places(cfg):
    """The tracking URI, the places this command writes to (for a full disk's line), and what
    the same command does once space is freed."""
    from src.core.data import DEFAULT_CACHE  # deferred: scikit-learn, ~1 s; not before the config is checked
    from src.tracking import store  # deferred: mlflow, ~3 s; not before the config is checked

    uri = store.resolve_uri(cfg.tracking.uri)
    database, artifacts = store.sqlite_path(uri), store.artifact_root(uri)
    places = {"the tracking store": database.parent if database else None,
              "the artifacts": Path(urllib.parse.urlparse(artifacts).path) if artifacts else None,
              "the tuner's state": Path(cfg.tuner.directory) if cfg.tuner is not None else None,
              "the output folder": Path(HydraConfig.get().runtime.output_dir),
              "the dataset cache": Path(cfg.data.cache_dir or DEFAULT_CACHE),
              "temporary files": Path(tempfile.gettempdir())}
    again = "the study resumes where it stopped" if cfg.tuner is not None else "the run trains again, as a new run"
    return uri, places, again


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        typed = validate(cfg)
    except ProjectError as err:
        return _stop(err)
    # In a multirun, a second signal is not raised: it would cut short the ending of the run.
    interrupt.install(first_only=HydraConfig.get().mode == RunMode.MULTIRUN)

    from mlflow.exceptions import MlflowException  # deferred: mlflow, ~3 s; not before the config is checked

    from src.jobs.job import open_job  # deferred: mlflow, scikit-learn; not before the config is checked
    from src.tracking import disk  # deferred: mlflow, ~3 s; not before the config is checked
    from src.tracking.store import TrackingError  # deferred: mlflow, ~3 s; not before the config is checked

    overrides = list(HydraConfig.get().overrides.task)
    job = None
    disk.quiet_upstream_tracebacks()
    try:
        # A full disk anywhere inside is one line (DiskFullError, a ProjectError), not tracebacks.
        with job_process(), disk.reported_when_full(*_write_places(typed)):
            output_dir = Path(HydraConfig.get().runtime.output_dir)
            output_dir.mkdir(parents=True, exist_ok=True)
            if typed.tuner is not None and typed.tuner.plan:  # loads the data, probes speed; no store, no run
                with native_stderr_to(output_dir / "tensorflow.log"):
                    from src.jobs import plan  # deferred: TensorFlow, ~5 s; its start-up lines go to the log
                return plan.show(typed)
            job = open_job(typed)  # ownership, the data, memory and store checks, before TensorFlow starts
            with native_stderr_to(output_dir / "tensorflow.log"):
                from src.jobs.distributed.worker_process import run_worker  # deferred: as plan, TensorFlow
                from src.jobs.study import run_study  # deferred: as plan, TensorFlow
                from src.jobs.training import run_training  # deferred: as plan, TensorFlow
            run = run_training if typed.tuner is None else run_worker if typed.tuner.role == "worker" else run_study
            return run(typed, job, OmegaConf.to_yaml(cfg, resolve=True), overrides, **job_context())
    except ProjectError as err:
        return _stop(err)
    except KeyboardInterrupt:
        return _interrupted(study=typed.tuner is not None)
    except (MlflowException, OSError) as err:  # the run itself has already ended FAILED
        return _stop(TrackingError(f"MLflow could not record the run ({type(err).__name__}: {err}); "
                                   "the run ended FAILED"))
    finally:
        if job is not None:
            job.release()  # the study's ownership


def cli() -> None:
    """`python -m src.run`. A multirun stopped by SIGTERM or SIGINT comes out of Hydra as
    KeyboardInterrupt in the launcher (a single run's is handled in main): every run it
    started is ended and no process of its left (multirun.stop_sweep), then one line and
    the status a shell gives a process ended by that signal (143, 130), not a traceback."""
    try:
        main()
    except KeyboardInterrupt:
        signum = interrupt.received() or signal.SIGINT
        sys.stderr.write(stop_sweep(signum) + "\n")
        sys.exit(128 + signum)


if __name__ == "__main__":
    cli()
