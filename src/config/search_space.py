"""A keras-tuner search space declared in YAML (`tuner.search_space`).

Each entry names a hyperparameter and the config key it sets:

    dropout: {key: model.dropout, type: float, min: 0.0, max: 0.6, step: 0.1}
    width:   {key: model.width,   type: choice, values: [0.5, 1.0, 2.0]}
    epochs:  {key: trainer.epochs, type: int, min: 5, max: 20, step: 5}

so adding a tunable (learning rate, dense units, one block's filters via
`model.filters.0`) is a YAML edit. Checked when the config is validated,
before TensorFlow is imported; applied to a copy of the typed config per trial,
which re-runs every range check of the schema.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Mapping

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src.config.schema import Config, ConfigError, HyperParameter, HyperParameterType, Sampling

# The key a multi-fidelity tuner sets itself (src/config/tuner_kinds.py: Hyperband.check_space).
HYPERBAND_EPOCHS_KEY = "trainer.epochs"


def _check_key(name: str, spec: HyperParameter, base: Config) -> None:
    where = f"tuner.search_space.{name}.key"
    node = OmegaConf.structured(base)
    container, _, index = (spec.key or "").rpartition(".")
    entries = OmegaConf.select(node, container, default=None) if container else None
    if index.isdigit() and OmegaConf.is_list(entries) and int(index) >= len(entries):
        raise ConfigError(f"{where}={spec.key!r} is not allowed with {container}={list(entries)}: it sets entry "
                          f"{index} of a list of {len(entries)}; give {container} {int(index) + 1} entries, or "
                          "choose a space that fits (e.g. tuner/search_space=width_dropout)")
    if not spec.key or OmegaConf.select(node, spec.key, default="__missing__") == "__missing__":
        raise ConfigError(f"{where}={spec.key!r} is not allowed: expected a config key such as "
                          "model.dropout, model.width, model.filters.0, trainer.epochs, trainer.learning_rate")
    if spec.key.startswith(("tuner.", "tracking.", "data.")) or spec.key == "seed":
        raise ConfigError(f"{where}={spec.key!r} is not allowed: expected a model.* or trainer.* key")


def check(space: Mapping[str, HyperParameter], base: Config) -> None:
    """Every entry well-formed, pointing at a real key, and every value it can take valid."""
    for name, spec in space.items():
        prefix = f"tuner.search_space.{name}"
        _check_key(name, spec, base)
        kind = HyperParameterType(spec.type)
        if kind in (HyperParameterType.int, HyperParameterType.float):
            if spec.min is None or spec.max is None or not spec.min < spec.max:
                raise ConfigError(f"{prefix}: min={spec.min!r}, max={spec.max!r} is not allowed: "
                                  "expected numbers with min < max")
            if spec.step is not None and spec.step <= 0:
                raise ConfigError(f"{prefix}.step={spec.step!r} is not allowed: expected null or a number > 0")
            if spec.sampling != "linear" and spec.min <= 0:
                raise ConfigError(f"{prefix}.sampling={spec.sampling!r} is not allowed with min={spec.min}: "
                                  "log sampling needs min > 0")
            candidates = [spec.min, spec.max]
        elif kind is HyperParameterType.choice:
            if not spec.values:
                raise ConfigError(f"{prefix}.values={spec.values!r} is not allowed: expected a non-empty list")
            candidates = list(spec.values)
        elif kind is HyperParameterType.boolean:
            candidates = [True, False]
        else:
            candidates = [spec.value]
        for value in candidates:
            apply(base, {spec.key: int(value) if kind is HyperParameterType.int else value},
                  context=f"{prefix} can take {value!r}, but")


def declare(hp, space: Mapping[str, HyperParameter]) -> Dict[str, Any]:
    """Register every entry with keras-tuner; returns {config key: value for this trial}."""
    values: Dict[str, Any] = {}
    for name, spec in space.items():
        kind = HyperParameterType(spec.type)
        if kind is HyperParameterType.int:
            value = hp.Int(name, int(spec.min), int(spec.max), step=int(spec.step) if spec.step else None,
                           sampling=spec.sampling)
        elif kind is HyperParameterType.float:
            value = hp.Float(name, float(spec.min), _inclusive_max(spec), step=spec.step, sampling=spec.sampling)
        elif kind is HyperParameterType.choice:
            value = hp.Choice(name, list(spec.values))
        elif kind is HyperParameterType.boolean:
            value = hp.Boolean(name)
        else:
            value = hp.Fixed(name, spec.value)
        values[spec.key] = _tidy(value)
    return values


def _inclusive_max(spec: HyperParameter) -> float:
    """keras-tuner floors (max - min) / step with no slack for linear sampling, so 0.0..0.6 by
    0.1 never draws 0.6 (keras-team/keras-tuner#1001; its log sampling has a slack of its own).
    A sliver above max keeps max inclusive, as keras-tuner documents and the space reads."""
    if spec.step and Sampling(spec.sampling) is Sampling.linear:
        return float(spec.max) + abs(float(spec.step)) * 1e-9
    return float(spec.max)


def config_values(hp_values: Mapping[str, Any], space: Mapping[str, HyperParameter]) -> Dict[str, Any]:
    """A trial's values by hyperparameter name -> {config key: value} (keras-tuner's own
    `tuner/...` entries left out). Floats lose keras-tuner's drift (0.1 * 3 = 0.30000000000000004)."""
    return {spec.key: _tidy(hp_values[name]) for name, spec in space.items() if name in hp_values}


def _tidy(value: Any) -> Any:
    return float(f"{value:.12g}") if isinstance(value, float) else value  # 12 significant digits


def apply(base: Config, values: Mapping[str, Any], context: str = "") -> Config:
    """A copy of `base` with the config keys in `values` set, fully re-validated."""
    node = OmegaConf.structured(copy.deepcopy(base))
    for key, value in values.items():
        try:
            OmegaConf.update(node, key, value, merge=False)
        except OmegaConfBaseException as err:
            raise ConfigError(f"{context} {key}={value!r} is not allowed: {err}".strip()) from None
    try:
        return OmegaConf.to_object(node)
    except ConfigError as err:
        raise ConfigError(f"{context} {err}".strip()) from None


def _inside(spec: HyperParameter, value: Any) -> bool:
    kind = HyperParameterType(spec.type)
    if kind is HyperParameterType.choice:
        return value in list(spec.values)
    if kind in (HyperParameterType.int, HyperParameterType.float):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and spec.min <= value <= spec.max
    if kind is HyperParameterType.boolean:
        return isinstance(value, bool)
    return value == spec.value


def baseline_values(cfg: Config) -> Dict[str, Any]:
    """The base configuration's value of every hyperparameter of the space, by name."""
    node = OmegaConf.structured(cfg)
    values = {}
    for name, spec in cfg.tuner.search_space.items():
        value = OmegaConf.select(node, spec.key)
        values[name] = getattr(value, "value", value)  # an enum (model.augmentation) by its name
    return values


def outside(space: Mapping[str, HyperParameter], values: Mapping[str, Any]) -> List[str]:
    """The entries of `values` the space cannot take, in words."""
    return [f"{name}={value!r}" + (f" (not in {list(space[name].values)})" if space[name].values else
                                   f" (outside {space[name].min}..{space[name].max})")
            for name, value in values.items() if not _inside(space[name], value)]


def check_enqueued(cfg: Config) -> None:
    """tuner.enqueue: every name a hyperparameter of the space, every value one it can take
    (at config time, before TensorFlow). Raises ConfigError."""
    space = cfg.tuner.search_space
    for index, entry in enumerate(cfg.tuner.enqueue):
        where = f"tuner.enqueue.{index}"
        unknown = sorted(set(entry) - set(space))
        if unknown:
            raise ConfigError(f"{where}={dict(entry)!r} is not allowed: {', '.join(unknown)} is not a hyperparameter "
                              f"of the search space (expected names among {sorted(space)})")
        wrong = outside(space, {**baseline_values(cfg), **entry})  # the rest is the baseline's
        if wrong:
            raise ConfigError(f"{where}={dict(entry)!r} is not allowed: the space cannot take {', '.join(wrong)}")
        apply(cfg, config_values(entry, space), context=f"{where}:")
