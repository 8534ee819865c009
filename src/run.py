"""Hydra entry point: `python -m src.run +experiment=baseline [key=value ...]`.

Validates the composed config before anything heavy is imported, then hands
over to the pipeline. Returns the objective (test accuracy) for sweepers.
"""
from __future__ import annotations

import os
import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src.config import ConfigError, register, validate

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
register()


def _raise_keyboard_interrupt(signum, frame):
    # SIGTERM (a scheduler, `kill`) ends the run KILLED, as Ctrl-C does.
    raise KeyboardInterrupt(f"received signal {signum}")


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
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)

    from src.data import DatasetError
    from src.pipeline import run_training
    from src.sweep import job_context
    from src.track import TrackingError
    from src.train import TrainingDiverged

    overrides = list(HydraConfig.get().overrides.task)
    try:
        return run_training(typed, OmegaConf.to_yaml(cfg, resolve=True), overrides, **job_context())
    except (DatasetError, TrackingError, TrainingDiverged) as err:
        return _stop(err)


if __name__ == "__main__":
    main()
