"""The search space: declared, mapped to config keys, re-validated, refused before any trial when it cannot work."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from src.config import ConfigError, register

from helpers.configs import composed

register()


# ---- the search space ------------------------------------------------------------

def test_search_space_declares_each_entry_and_maps_it_to_its_config_key():
    import keras_tuner

    from src.config import search_space

    cfg = composed("+experiment=tune_random")
    hp = keras_tuner.HyperParameters()
    values = search_space.declare(hp, cfg.tuner.search_space)
    assert set(values) == {spec.key for spec in cfg.tuner.search_space.values()}
    assert set(hp.values) == set(cfg.tuner.search_space)
    trial_cfg = search_space.apply(cfg, values)
    applied = OmegaConf.structured(trial_cfg)
    for key, value in values.items():  # e.g. model.filters.0: one conv block's filters
        assert OmegaConf.select(applied, key) == value
    assert search_space.config_values({**hp.values, "tuner/epochs": 3}, cfg.tuner.search_space) == values


def test_applying_a_value_re_runs_the_schema_checks():
    from src.config import search_space

    cfg = composed("+experiment=tune_random")
    with pytest.raises(ConfigError, match=r"model\.dropout=1\.5 is not allowed"):
        search_space.apply(cfg, {"model.dropout": 1.5})
    assert cfg.model.dropout == 0.5  # the base config is untouched


def test_a_range_that_reaches_an_invalid_value_is_refused_before_any_trial():
    with pytest.raises(ConfigError, match=r"tuner\.search_space\.dropout can take 1\.2"):
        composed("+experiment=tune_random", "tuner.search_space.dropout.max=1.2")


def test_the_card_space_on_a_model_with_fewer_blocks_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"tuner\.search_space\.filters3\.key='model\.filters\.2' is not allowed with "
                       r"model\.filters=\[8, 16\]: it sets entry 2 of a list of 2"):
        composed("+experiment=tune_hyperband", "model.filters=[8,16]")


def test_hyperband_may_not_tune_the_epochs_it_sets_itself():
    with pytest.raises(ConfigError, match="Hyperband sets the epochs itself"):
        composed("+experiment=tune_hyperband", "tuner/search_space=filters_dropout_epochs")


def test_a_stepped_float_range_reaches_its_max_as_the_space_reads():
    """keras-tuner alone never draws 0.6 from 0.0..0.6 by 0.1 (keras-team/keras-tuner#1001):
    the card study's dropout would stop at 0.5 while its space and its report say 0.6."""
    import keras_tuner

    from src.config import search_space

    cfg = composed("+experiment=card_study")
    hp = keras_tuner.HyperParameters()
    search_space.declare(hp, cfg.tuner.search_space)
    dropout = next(spec for spec in hp.space if spec.name == "dropout")
    drawn = {search_space.config_values({"dropout": dropout.random_sample(seed)}, cfg.tuner.search_space)
             ["model.dropout"] for seed in range(400)}
    assert drawn == {0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6}  # every step, max included, no float drift


def test_the_beyond_space_is_accepted_and_each_lever_reaches_its_config_key():
    """conf/tuner/search_space/beyond.yaml (issue 34): every value each entry can take is a valid
    config, the learning rate on a log scale; its most extreme corner applies too."""
    from src.config import Augmentation, search_space, tuner_kinds

    cfg = composed("+experiment=beyond_study")
    space = cfg.tuner.search_space
    search_space.check(space, cfg)
    tuner_kinds.of("hyperband").check_space(space)  # raises ConfigError naming a bad entry
    assert {name: spec.key for name, spec in space.items()} == {
        "learning_rate": "trainer.learning_rate", "weight_decay": "trainer.weight_decay",
        "batch_norm": "model.batch_norm", "augmentation": "model.augmentation", "filters2": "model.filters.1",
        "dropout": "model.dropout"}
    assert space["learning_rate"].sampling == "log"
    corner = search_space.apply(cfg, {"trainer.learning_rate": 3e-3, "trainer.weight_decay": 0.04,
                                      "model.batch_norm": True, "model.augmentation": "flip_shift",
                                      "model.filters.1": 256, "model.dropout": 0.1})
    assert (corner.model.augmentation, corner.model.filters, corner.trainer.weight_decay) == \
           (Augmentation.flip_shift, [32, 256, 128], 0.04)
    with pytest.raises(ConfigError, match=r"^tuner\.search_space\.augmentation can take 'rotate', but "
                       r"model\.augmentation='rotate' is not allowed: Invalid value 'rotate', expected one of "
                       r"\[none, flip, flip_shift\]"):
        composed("+experiment=beyond_study", "tuner.search_space.augmentation.values=[none,rotate]")
    # The study's baseline configuration is the notebook's: every lever off at the composed values.
    assert (cfg.model.batch_norm, cfg.model.augmentation, cfg.trainer.weight_decay,
            cfg.trainer.learning_rate) == (False, Augmentation.none, 0.0, 0.001)
