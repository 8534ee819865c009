"""Config: the typed schema, the search space, and validation of a composed config.

Everything here runs before TensorFlow is imported, so a bad value costs well
under a second and never creates an MLflow run.
"""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from src.config import machine, search_space, tuner_kinds
from src.config.errors import ProjectError, check_report_counts
from src.config.schema import (  # noqa: F401
    Augmentation,
    Config,
    ConfigError,
    DataConfig,
    FinalFit,
    LrScaling,
    ModelConfig,
    Optimizer,
    Precision,
    TrackingConfig,
    TrainerConfig,
    TunerConfig,
    TunerKind,
    Validation,
    register,
)


def validate(cfg: DictConfig) -> Config:
    """Run every range check (and the search space's); returns the typed config."""
    check_report_counts()  # the study's report reads them at its end, after all the training
    typed = OmegaConf.to_object(cfg)
    typed.trainer = machine.resolve(typed.trainer)
    if typed.tuner is not None:
        search_space.check(typed.tuner.search_space, typed)
        tuner_kinds.of(typed.tuner.kind).check_space(typed.tuner.search_space)
        search_space.check_enqueued(typed)
    return typed


__all__ = ["Augmentation", "Config", "ConfigError", "DataConfig", "FinalFit", "LrScaling", "ModelConfig", "Optimizer", "Precision",
           "ProjectError", "TrackingConfig", "TrainerConfig", "TunerConfig", "TunerKind", "Validation",
           "register", "search_space", "validate"]
