"""The typed schema (src/config/schema.py) refuses bad values: OmegaConf refuses a wrong type
or choice while Hydra composes, the range checks name the key, the value and what is allowed
when `validate` builds the dataclasses."""
from __future__ import annotations

import pytest
from hydra.errors import HydraException
from omegaconf.errors import ValidationError

from src.config import ConfigError, validate

from helpers.configs import compose_config, composed


@pytest.mark.parametrize("override, key, allowed", [
    ("model.dropout=1.5", "model.dropout", "[0, 1)"),
    ("model.dropout=-0.1", "model.dropout", "[0, 1)"),
    ("model.filters=[32,0,128]", "model.filters", ">= 1"),
    ("model.filters=[]", "model.filters", "non-empty"),
    ("model.dense_units=[256,-1]", "model.dense_units", ">= 1"),
    ("trainer.epochs=0", "trainer.epochs", ">= 1"),
    ("trainer.batch_size=0", "trainer.batch_size", ">= 1"),
    ("trainer.learning_rate=0", "trainer.learning_rate", "> 0"),
    ("data.val_fraction=1.0", "data.val_fraction", "(0, 1)"),
    ("data.val_fraction=0", "data.val_fraction", "(0, 1)"),
    ("data.limit_train=3", "data.limit_train", ">= 10"),
    ("model.filters=[32,64,128,256,512]", "model.filters", "conv blocks"),
])
def test_out_of_range_values_name_key_value_and_allowed(override, key, allowed):
    with pytest.raises(ConfigError) as err:
        validate(compose_config("+experiment=baseline", override))
    message = str(err.value)
    assert key in message and allowed in message
    assert override.split("=", 1)[1].strip("[]").split(",")[0] in message


@pytest.mark.parametrize("override, key", [
    ("data.validation=train", "data.validation"),
    ("trainer.optimizer=adagradx", "trainer.optimizer"),
    ("trainer.epochs=ten", "trainer.epochs"),
    ("model.dropout=high", "model.dropout"),
])
def test_wrong_types_and_choices_are_rejected_while_composing(override, key):
    with pytest.raises((HydraException, ValidationError)) as err:
        compose_config("+experiment=baseline", override)
    assert key.split(".")[-1] in str(err.value) or key in str(err.value.__cause__)


@pytest.mark.parametrize("override, line", [
    ("trainer.weight_decay=-0.1",
     "trainer.weight_decay=-0.1 is not allowed: expected 0 (off) or a decoupled decay rate in (0, 1)"),
    ("trainer.learning_rate=0", "trainer.learning_rate=0.0 is not allowed: expected a number > 0"),
])
def test_a_bad_lever_value_is_one_line_naming_key_value_and_allowed(override, line):
    with pytest.raises(ConfigError) as err:
        composed(override)
    assert str(err.value) == line


def test_an_unknown_augmentation_is_refused_while_composing_naming_the_choices():
    """As trainer.optimizer=adagradx: OmegaConf refuses the name while Hydra composes (before any run),
    Hydra's one line naming the override, OmegaConf's naming the value and every allowed name."""
    with pytest.raises(HydraException) as err:
        composed("model.augmentation=rotate")
    assert str(err.value) == "Error merging override model.augmentation=rotate"
    cause = str(err.value.__cause__)
    assert cause.splitlines()[0] == "Invalid value 'rotate', expected one of [none, flip, flip_shift]"
    assert "full_key: model.augmentation" in cause
