"""Typed config schema, registered in Hydra's ConfigStore.

OmegaConf checks types and choices while Hydra composes the config; the
`__post_init__` range checks run when `validate()` turns the composed config
into these dataclasses. Both happen before TensorFlow is imported, so a bad
value costs well under a second and never creates an MLflow run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value is outside what the project accepts."""


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{key}={value!r} is not allowed: expected {allowed}")


class Validation(str, Enum):
    test = "test"    # the notebook's way: validate on the test set (baseline only)
    split = "split"  # hold out data.val_fraction of the training set


class Optimizer(str, Enum):
    adam = "adam"
    sgd = "sgd"
    rmsprop = "rmsprop"
    adamw = "adamw"
    nadam = "nadam"


class Precision(str, Enum):
    float32 = "float32"
    mixed_bfloat16 = "mixed_bfloat16"


@dataclass
class DataConfig:
    dir: Optional[str] = None
    validation: Validation = Validation.split
    val_fraction: float = 0.1
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            _fail("data.val_fraction", self.val_fraction, "a fraction in (0, 1)")
        for key in ("limit_train", "limit_test"):
            value = getattr(self, key)
            if value is not None and value < 10:
                _fail(f"data.{key}", value, "null or an integer >= 10 (one image per class)")


@dataclass
class ModelConfig:
    filters: List[int] = field(default_factory=lambda: [32, 64, 128])
    kernel_size: int = 3
    dense_units: List[int] = field(default_factory=lambda: [256, 128])
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if not self.filters:
            _fail("model.filters", self.filters, "a non-empty list of integers >= 1")
        for value in self.filters:
            if value < 1:
                _fail("model.filters", list(self.filters), "a non-empty list of integers >= 1")
        for value in self.dense_units:
            if value < 1:
                _fail("model.dense_units", list(self.dense_units), "a list of integers >= 1")
        if self.kernel_size < 1:
            _fail("model.kernel_size", self.kernel_size, "an integer >= 1")
        if not 0.0 <= self.dropout < 1.0:
            _fail("model.dropout", self.dropout, "a rate in [0, 1)")


@dataclass
class TrainerConfig:
    epochs: int = 20
    batch_size: int = 32
    optimizer: Optimizer = Optimizer.adam
    learning_rate: float = 0.001
    precision: Precision = Precision.float32
    # Keras fit verbosity: 1 = progress bar per epoch, 2 = one line per epoch.
    verbose: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1:
            _fail("trainer.epochs", self.epochs, "an integer >= 1")
        if self.batch_size < 1:
            _fail("trainer.batch_size", self.batch_size, "an integer >= 1")
        if not self.learning_rate > 0:
            _fail("trainer.learning_rate", self.learning_rate, "a number > 0")
        if self.verbose not in (0, 1, 2):
            _fail("trainer.verbose", self.verbose, "0, 1 or 2")


@dataclass
class TrackingConfig:
    # null = the embedded SQLite store under mlruns/ (see src/track.py)
    uri: Optional[str] = None
    experiment: str = "cifar10"
    run_name: Optional[str] = None
    log_model: bool = True
    tags: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.experiment.strip():
            _fail("tracking.experiment", self.experiment, "a non-empty experiment name")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = 42

    def __post_init__(self) -> None:
        if self.seed < 0:
            _fail("seed", self.seed, "an integer >= 0")


def register() -> None:
    store = ConfigStore.instance()
    store.store(name="schema", node=Config)


def validate(cfg: DictConfig) -> Config:
    """Run every range check; returns the typed config."""
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"]) if "hydra" in cfg else cfg
    return OmegaConf.to_object(plain)
