"""Config inheritance: each group's YAML agrees with its schema; tuner files hold only their kind and budget; experiments only what they change."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from src.config import register
from src.config import schema as schema_module

from helpers.configs import composed
from helpers.paths import CONF_DIR

register()


# ---- config inheritance ----------------------------------------------------------

SCHEMAS = {"model/cnn.yaml": schema_module.ModelConfig, "trainer/default.yaml": schema_module.TrainerConfig,
           "tracking/mlflow.yaml": schema_module.TrackingConfig, "data/cifar10.yaml": schema_module.DataConfig}


@pytest.mark.parametrize("path", list(SCHEMAS))
def test_group_yaml_agrees_with_its_schema_defaults(path):
    """A group file may spell out the schema's defaults for readers; it must not contradict them
    (values read from the environment apart)."""
    values = yaml.safe_load((CONF_DIR / path).read_text())
    defaults = dataclasses.asdict(SCHEMAS[path]())
    for key, value in values.items():
        if isinstance(value, str) and value.startswith("${oc.env:"):
            continue
        expected = defaults[key]
        assert value == getattr(expected, "value", expected), (path, key)


def test_tuner_files_hold_only_their_kind_and_budget():
    budget = {"defaults", "kind", "max_trials", "max_epochs", "factor", "hyperband_iterations"}
    for path in (CONF_DIR / "tuner").glob("*.yaml"):
        keys = set(yaml.safe_load(path.read_text()))
        assert keys <= budget, (path.name, keys - budget)
        assert "base_tuner" in yaml.safe_load(path.read_text())["defaults"]


def test_experiments_hold_only_what_they_change():
    """No experiment sets a key to the value it already has without it."""
    base = composed()
    defaults = {k: v for entry in yaml.safe_load((CONF_DIR / "config.yaml").read_text())["defaults"]
                if isinstance(entry, dict) for k, v in entry.items()}
    for path in (CONF_DIR / "experiment").glob("*.yaml"):
        text = yaml.safe_load(path.read_text())
        for group in ("data", "model", "trainer"):
            for key, value in (text.get(group) or {}).items():
                current = getattr(getattr(base, group), key)
                assert value != getattr(current, "value", current), (path.name, f"{group}.{key}")
        for entry in text.get("defaults", []):  # a group override picks an option other than the default
            for key, option in (entry.items() if isinstance(entry, dict) else []):
                group = key.removeprefix("override /")
                assert option != defaults.get(group), (path.name, entry)
