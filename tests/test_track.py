"""Run lifecycle and store helpers: no run is ever left RUNNING."""
from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from src import track


@pytest.fixture
def experiment(tracking_uri):
    experiment_id = track.ensure_experiment(tracking_uri, "lifecycle")
    yield experiment_id
    while mlflow.active_run():
        mlflow.end_run()


def _only_run(tracking_uri, experiment_id):
    runs = MlflowClient(tracking_uri).search_runs([experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_finished_run(tracking_uri, experiment):
    with track.tracked_run("ok", {"k": "v"}, experiment_id=experiment):
        mlflow.log_metric("m", 1.0)
    run = _only_run(tracking_uri, experiment)
    assert run.info.status == "FINISHED" and run.data.tags["k"] == "v"


def test_exception_ends_failed_and_propagates(tracking_uri, experiment):
    with pytest.raises(ValueError, match="boom"):
        with track.tracked_run("crash", experiment_id=experiment):
            raise ValueError("boom")
    assert _only_run(tracking_uri, experiment).info.status == "FAILED"
    assert mlflow.active_run() is None


def test_ctrl_c_ends_killed(tracking_uri, experiment):
    with pytest.raises(KeyboardInterrupt):
        with track.tracked_run("interrupted", experiment_id=experiment):
            raise KeyboardInterrupt
    assert _only_run(tracking_uri, experiment).info.status == "KILLED"


def test_embedded_store_lives_under_mlruns():
    uri = track.embedded_uri()
    assert uri.startswith("sqlite:///") and uri.endswith("/mlruns/mlflow.db")
    assert track.artifact_root(uri).endswith("/mlruns/artifacts")
    assert "--backend-store-uri" in track.ui_command(uri)


def test_resolve_uri_prefers_config_then_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/env.db")
    assert track.resolve_uri("http://server:5000") == "http://server:5000"
    assert track.resolve_uri(None) == "sqlite:////tmp/env.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert track.resolve_uri(None) == track.embedded_uri()


def test_ensure_experiment_is_idempotent_and_puts_artifacts_beside_the_db(tracking_uri, tmp_path):
    first = track.ensure_experiment(tracking_uri, "twice")
    assert track.ensure_experiment(tracking_uri, "twice") == first
    location = MlflowClient(tracking_uri).get_experiment(first).artifact_location
    assert location == (tmp_path / "mlruns" / "artifacts" / "twice").as_uri()


def test_unreachable_server_fails_fast():
    with pytest.raises(track.TrackingError, match="tracking.uri=http://127.0.0.1:9.*not reachable"):
        track.check_reachable("http://127.0.0.1:9", timeout=2)


def test_flatten_names_nested_keys_with_dots():
    flat = track.flatten({"model": {"filters": [32, 64], "dropout": 0.5}, "seed": 1, "tags": {}})
    assert flat == {"model.filters": "[32, 64]", "model.dropout": "0.5", "seed": "1", "tags": "{}"}
