"""Configs as `src.run` composes them, without running anything."""
from __future__ import annotations

from helpers.paths import CONF_DIR


def compose_config(*overrides: str):
    """The config `src.run` composes from these overrides as Hydra gives it: not validated,
    nothing resolved for this machine."""
    from hydra import compose, initialize_config_dir

    from src.config import register

    register()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="config", overrides=list(overrides))


def composed(*overrides: str):
    """The typed config of `src.run` with these overrides, validated, without running anything."""
    from src.config import validate

    return validate(compose_config(*overrides))


def study_config(tmp_path, *overrides: str):
    """A random-search study's typed config with its tuner state under `tmp_path`."""
    return composed("+experiment=tune_random", f"tuner.directory={tmp_path}", *overrides)
