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
from omegaconf import DictConfig, OmegaConf

from src.config import ConfigError, register, validate

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
register()


def _raise_keyboard_interrupt(signum, frame):
    # SIGTERM (a scheduler, `kill`) ends the run KILLED, as Ctrl-C does.
    raise KeyboardInterrupt(f"received signal {signum}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        typed = validate(cfg)
    except ConfigError as err:
        sys.exit(f"config error: {err}")
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)

    from src.data import DatasetError
    from src.pipeline import run_training
    from src.track import TrackingError

    overrides = list(HydraConfig.get().overrides.task)
    try:
        return run_training(typed, OmegaConf.to_yaml(cfg, resolve=True), overrides)
    except (DatasetError, TrackingError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
