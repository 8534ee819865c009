"""Every shipped config composes and validates (src/config/__init__.py's `validate`), and
what the command line and the environment change reaches the typed config. The range checks
are tested in test_schema.py, what `trainer=fast` becomes per machine in test_machine.py."""
from __future__ import annotations

import pytest

from src.config import Validation, register, validate

from helpers.configs import compose_config, composed
from helpers.paths import CONF_DIR

register()
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def test_there_are_experiments():
    assert "baseline" in EXPERIMENTS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_validates(experiment):
    typed = validate(compose_config(f"+experiment={experiment}"))
    assert typed.trainer.epochs >= 1
    assert typed.model.filters


def test_baseline_is_the_notebook():
    cfg = validate(compose_config("+experiment=baseline"))
    assert cfg.model.filters == [32, 64, 128]
    assert cfg.model.kernel_size == 3
    assert cfg.model.dense_units == [256, 128]
    assert cfg.model.dropout == 0.5
    assert (cfg.trainer.epochs, cfg.trainer.batch_size) == (20, 32)
    assert cfg.trainer.optimizer.value == "adam" and cfg.trainer.learning_rate == 0.001
    assert cfg.data.validation is Validation.test
    assert cfg.tracking.experiment == "baseline"


def test_default_config_selects_on_a_held_out_split():
    cfg = validate(compose_config())
    assert cfg.data.validation is Validation.split
    assert cfg.data.val_fraction == 0.1


def test_command_line_overrides_reach_the_typed_config():
    cfg = validate(compose_config("+experiment=baseline", "model.dropout=0.3",
                                  "model.filters=[64,128,256]", "trainer.epochs=3", "seed=7"))
    assert cfg.model.dropout == 0.3
    assert cfg.model.filters == [64, 128, 256]
    assert cfg.trainer.epochs == 3 and cfg.seed == 7


def test_data_dir_defaults_to_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path))
    assert validate(compose_config()).data.dir == str(tmp_path)
    monkeypatch.delenv("CIFAR10_DIR")
    assert validate(compose_config()).data.dir is None


# --- the levers of issue 34: batch norm, augmentation, weight decay -------------------------------

def test_the_levers_compose_off_by_default_and_on_when_asked():
    from src.config import Augmentation

    default = composed()
    assert (default.model.batch_norm, default.model.augmentation, default.trainer.weight_decay) == \
           (False, Augmentation.none, 0.0)
    on = composed("model.batch_norm=true", "model.augmentation=flip_shift", "trainer.weight_decay=0.004")
    assert (on.model.batch_norm, on.model.augmentation, on.trainer.weight_decay) == \
           (True, Augmentation.flip_shift, 0.004)
