"""Every config composes and validates; bad values name the key, value and what is allowed."""
from __future__ import annotations

import os
import platform

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf.errors import ValidationError

from src.config import ConfigError, Validation, register, validate

from helpers import CONF_DIR

register()
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def compose_config(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="config", overrides=list(overrides))


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


# --- trainer=fast, resolved per machine ---------------------------------------------------------

ZEN3_FLAGS = "flags\t\t: fpu sse2 avx avx2 fma sha_ni vaes"
ZEN4_FLAGS = "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16 vaes"


@pytest.mark.parametrize("cpuinfo, gpu, expected", [
    (ZEN3_FLAGS, False, None), (ZEN4_FLAGS, False, "avx512_bf16"),
    ("flags\t\t: avx2 amx_bf16 amx_tile", False, "amx_bf16"), (ZEN3_FLAGS, True, "GPU")])
def test_native_bfloat16_is_read_from_the_cpu_flags_or_a_gpu(cpuinfo, gpu, expected):
    from src.config.machine import native_bfloat16

    assert native_bfloat16(cpuinfo, gpu=gpu) == expected


def test_the_machine_is_described_by_its_model_and_the_flags_that_decide_its_speed(monkeypatch):
    """Every run's `cpu` tag: a figure from the store names the CPU it was measured on."""
    from src.config import machine

    monkeypatch.setattr(machine, "gpu_visible", lambda: False)
    zen3 = f"processor\t: 0\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n{ZEN3_FLAGS}\n\nprocessor\t: 1\n"
    cpus = len(os.sched_getaffinity(0))
    assert machine.describe(zen3) == f"AMD EPYC, family 25 model 1, {cpus} CPUs, avx2 fma; no avx512f avx512_bf16 amx_bf16"
    zen4 = f"model name\t: AMD EPYC 9R14\ncpu family\t: 25\nmodel\t\t: 17\n{ZEN4_FLAGS}\n"
    assert machine.describe(zen4).endswith(f"{cpus} CPUs, avx2 fma avx512f avx512_bf16; no amx_bf16")
    assert machine.describe("") == f"unknown CPU ({platform.machine()}), {cpus} CPUs"
    monkeypatch.setattr(machine, "gpu_visible", lambda: True)  # read each call, not cached with the text
    assert machine.describe(zen3).endswith("amx_bf16, GPU")


def test_trainer_fast_is_bfloat16_only_where_it_is_native():
    """On a CPU that emulates bfloat16 (a Zen 3) the fast setting was the slow one: there it is
    the faithful float32 setting, and the run says what it became."""
    from omegaconf import OmegaConf

    from src.config import LrScaling, Precision
    from src.config.machine import resolve
    from src.config.schema import effective_learning_rate

    raw = compose_config("+experiment=baseline", "trainer=fast")
    fast = validate(raw)
    assert Precision(fast.trainer.precision) is not Precision.auto and fast.trainer.resolved  # resolved once
    unresolved = OmegaConf.to_object(raw).trainer
    assert Precision(unresolved.precision) is Precision.auto
    native = resolve(unresolved, native="avx512_bf16")
    assert (native.precision, native.batch_size, native.lr_scaling) == (Precision.mixed_bfloat16, 64, LrScaling.sqrt)
    assert native.resolved == "mixed_bfloat16 (native: avx512_bf16)"
    emulated = resolve(unresolved, native=None, probe=False)
    assert (emulated.precision, emulated.batch_size, emulated.lr_scaling) == (Precision.float32, 32, LrScaling.none)
    assert effective_learning_rate(emulated) == 0.001 and emulated.resolved.startswith("float32 (no native bfloat16")
    faithful = validate(compose_config("+experiment=baseline")).trainer
    assert (faithful.precision, faithful.batch_size) == (Precision.float32, 32) and faithful.resolved == ""


# --- the levers of issue 34: batch norm, augmentation, weight decay -------------------------------

def test_the_levers_compose_off_by_default_and_on_when_asked():
    from src.config import Augmentation

    from helpers import composed

    default = composed()
    assert (default.model.batch_norm, default.model.augmentation, default.trainer.weight_decay) == \
           (False, Augmentation.none, 0.0)
    on = composed("model.batch_norm=true", "model.augmentation=flip_shift", "trainer.weight_decay=0.004")
    assert (on.model.batch_norm, on.model.augmentation, on.trainer.weight_decay) == \
           (True, Augmentation.flip_shift, 0.004)


@pytest.mark.parametrize("override, line", [
    ("trainer.weight_decay=-0.1",
     "trainer.weight_decay=-0.1 is not allowed: expected 0 (off) or a decoupled decay rate in (0, 1)"),
    ("trainer.learning_rate=0", "trainer.learning_rate=0.0 is not allowed: expected a number > 0"),
])
def test_a_bad_lever_value_is_one_line_naming_key_value_and_allowed(override, line):
    from helpers import composed

    with pytest.raises(ConfigError) as err:
        composed(override)
    assert str(err.value) == line


def test_an_unknown_augmentation_is_refused_while_composing_naming_the_choices():
    """As trainer.optimizer=adagradx: OmegaConf refuses the name while Hydra composes (before any run),
    Hydra's one line naming the override, OmegaConf's naming the value and every allowed name."""
    from helpers import composed

    with pytest.raises(HydraException) as err:
        composed("model.augmentation=rotate")
    assert str(err.value) == "Error merging override model.augmentation=rotate"
    cause = str(err.value.__cause__)
    assert cause.splitlines()[0] == "Invalid value 'rotate', expected one of [none, flip, flip_shift]"
    assert "full_key: model.augmentation" in cause
