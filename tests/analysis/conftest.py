"""Fixtures of the analysis tests that build runs in an MLflow store (the study report's,
the study search's): one store per test module, an experiment per test."""
from __future__ import annotations

import mlflow
import pytest

from src.tracking import store


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One store for the module (creating one costs seconds); each test has its own experiment."""
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    store.ensure_experiment(uri, "default")
    yield uri
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def experiment(uri, request):
    return uri, store.ensure_experiment(uri, request.node.name)
