"""What every step of a study shares: one object instead of 7-8 arguments per step."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from mlflow import MlflowClient

from src.config import Config, tuner_kinds
from src.core import data as data_module


@dataclass
class StudyContext:
    cfg: Config
    splits: data_module.Splits
    uri: str
    experiment_id: str
    client: MlflowClient
    directory: Path  # keras-tuner's saved state
    tags: Dict[str, str]  # carried by every run of the study (`study`, and a sweep's tags)
    overrides: Optional[List[str]] = None  # the command line's (None: this process's own argv)
    run_id: Optional[str] = None  # the study's MLflow run, once opened

    @property
    def project(self) -> str:
        return self.cfg.tuner.project_name

    @property
    def kind(self) -> tuner_kinds.TrialBudget:
        return tuner_kinds.of(self.cfg.tuner.kind)
