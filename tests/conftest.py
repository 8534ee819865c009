"""Shared fixtures: a tiny synthetic CIFAR-10 and a temporary MLflow store per
test, so tests never touch the project's own store."""
from __future__ import annotations

from pathlib import Path

import pytest

import tracking_server
from helpers import make_synthetic_cifar


@pytest.fixture
def synthetic_cifar(tmp_path) -> Path:
    return make_synthetic_cifar(tmp_path / "cifar-10-batches-py")


@pytest.fixture
def tracking_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def pytest_collection_modifyitems(config, items):
    """The tests on the tracking server first, together: xdist's worksteal hands each
    worker a contiguous block of the collection and steals only from a block's end, so
    one worker runs them all at its start and only that worker starts the server."""
    items.sort(key=lambda item: "mlflow_server" not in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def mlflow_server():
    """A team's tracking server on 127.0.0.1 (tests/tracking_server.py): PostgreSQL behind
    `mlflow server` with basic auth, one per test session (per xdist worker: the hook above
    keeps its tests on one), stopped and removed at its end. Skips with the reason where
    this machine cannot run it."""
    try:
        server = tracking_server.start()
    except tracking_server.Unavailable as err:
        pytest.skip(str(err))
    try:
        yield server
    finally:
        server.stop()
