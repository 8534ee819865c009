"""A study's saved keras-tuner state: where it lives and whether a run may resume it.

Light on purpose (no TensorFlow): a stale or foreign state is refused before
any data is loaded or run created.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from src.config import Config, ConfigError
from src.config.schema import NOT_HYPERPARAMETERS
from src.tracking.runs import flatten


def save_state_config(cfg: Config, directory: Path) -> None:
    """The config beside the tuner state, which a resume is checked against."""
    directory.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(_comparable(cfg)), directory / "study_config.yaml")


def state_dir(cfg: Config) -> Path:
    return Path(cfg.tuner.directory).expanduser().resolve() / cfg.tuner.project_name


def _comparable(cfg: Config) -> dict:
    """The config as saved beside the tuner state, less what a resume may change."""
    config = OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)
    for key in NOT_HYPERPARAMETERS:
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node.get(parent) or {}
        node.pop(leaf, None)
    return config


def check_resumable(cfg: Config, directory: Path) -> bool:
    """True if a study is to be resumed; refuses state written by another config."""
    saved = directory / "study_config.yaml"
    if cfg.tuner.overwrite or not (directory / "oracle.json").is_file():
        return False
    if saved.is_file():
        before, now = OmegaConf.to_container(OmegaConf.load(saved)), _comparable(cfg)
        if before != now:
            changed = sorted(k for k in set(flatten(before)) | set(flatten(now))
                             if flatten(before).get(k) != flatten(now).get(k))
            raise ConfigError(
                f"tuner.project_name={cfg.tuner.project_name!r} has saved state in {directory} from a different "
                f"config (differs in {', '.join(changed)}): pass tuner.overwrite=true to start afresh, "
                "or pick another tuner.project_name")
    return True
