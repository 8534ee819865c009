"""Shared fixtures: a tiny synthetic CIFAR-10 and a temporary MLflow store per
test, so tests never touch the project's own store."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import make_synthetic_cifar


@pytest.fixture
def synthetic_cifar(tmp_path) -> Path:
    return make_synthetic_cifar(tmp_path / "cifar-10-batches-py")


@pytest.fixture
def tracking_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
