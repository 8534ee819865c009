"""Hydra entry point: `python -m src.run +experiment=baseline [key=value ...]`.

Validates the composed config before anything heavy is imported, then hands
over to the pipeline. Returns the objective (test accuracy) for sweepers.
"""
from __future__ import annotations

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src import interrupt
from src.config import ConfigError, register, validate

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's retracing notices fire for every new trial model: noise here.
logging.getLogger("tensorflow").setLevel(logging.ERROR)
register()


def _stop(error: Exception) -> None:
    """A clear one-line error. In a multirun, raise instead: Hydra then marks
    only this job failed and the other jobs go on."""
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        raise error
    sys.exit(f"error: {error}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        typed = validate(cfg)
    except ConfigError as err:
        return _stop(err)
    interrupt.install()

    from mlflow.exceptions import MlflowException

    from src.data import DatasetError
    from src.distributed import WorkerFailed
    from src.pipeline import run_training
    from src.sweep import job_context
    from src.track import TrackingError
    from src.train import TrainingDiverged
    from src.tune import run_study

    overrides = list(HydraConfig.get().overrides.task)
    try:
        job = run_study if typed.tuner is not None else run_training
        return job(typed, OmegaConf.to_yaml(cfg, resolve=True), overrides, **job_context())
    except (DatasetError, TrackingError, TrainingDiverged, WorkerFailed) as err:
        return _stop(err)
    except (MlflowException, OSError) as err:  # the run itself has already ended FAILED
        return _stop(TrackingError(f"MLflow could not record the run ({type(err).__name__}: {err}); "
                                   "the run ended FAILED"))


if __name__ == "__main__":
    main()
