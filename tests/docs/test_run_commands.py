"""Every `python -m src.run ...` line the README and docs/ quote still composes with Hydra
and validates as `src.run` does before it imports TensorFlow (each sweep expanded into its
jobs): a renamed config key or experiment fails here, not in the reader's shell."""
from __future__ import annotations

import importlib.util
import itertools
from typing import List, Optional

import pytest

from helpers.markdown import ids, of
from helpers.paths import CONF_DIR


def sweep_points(overrides: List[str]) -> List[List[str]]:
    """A multirun's overrides as the jobs it would run (each sweep expanded)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for override, text in zip(parsed, overrides):
        if override.is_sweep_override():
            prefix = text[:len(text) - len(text.lstrip("+~"))]
            key = prefix + override.get_key_element().lstrip("+~")
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([text])
    return [list(point) for point in itertools.product(*choices)]


def launcher_missing(overrides: List[str]) -> Optional[str]:
    plugins = {"slurm": "hydra_plugins.hydra_submitit_launcher", "ray": "hydra_plugins.hydra_ray_launcher",
               "joblib": "hydra_plugins.hydra_joblib_launcher"}
    for override in overrides:
        name = override.partition("+launcher=")[2]
        if name in plugins and importlib.util.find_spec(plugins[name]) is None:
            return f"{plugins[name]} is not installed (the {name} extra)"
    return None


@pytest.mark.parametrize("command", of("src.run"), ids=ids(of("src.run")))
def test_run_commands_compose_and_validate(command):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from src.config import register, validate

    multirun = any(a in ("-m", "--multirun") for a in command.args)
    overrides = [a for a in command.args if a not in ("-m", "--multirun")]
    assert not [a for a in overrides if a.startswith("-")], f"{command}: an option src.run does not take"
    reason = launcher_missing(overrides)
    if reason:
        pytest.skip(reason)
    register()
    points = sweep_points(overrides)
    assert multirun or len(points) == 1, f"{command}: a sweep without -m"
    for point in points:
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            try:
                validate(compose(config_name="config", overrides=point))
            except Exception as err:  # noqa: BLE001 - say which documented line broke
                raise AssertionError(f"{command}\n  {type(err).__name__}: {err}") from err
