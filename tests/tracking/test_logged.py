"""What each run logs (src/tracking/logged.py): params on a resumed run, tables, test classes."""
from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from src.tracking import logged, store


@pytest.fixture
def run(tracking_uri):
    mlflow.set_tracking_uri(tracking_uri)
    experiment = store.ensure_experiment(tracking_uri, "logged")
    with mlflow.start_run(experiment_id=experiment) as active:
        yield active, store.client(tracking_uri)


def test_params_logged_again_keep_their_value_and_a_changed_one_goes_to_a_tag(run):
    active, client = run
    logged.log_params_once({"final.trial_id": "0007", "final.epochs": 12})
    logged.log_params_once({"final.trial_id": "0007", "final.epochs": 18, "final.mode": "retrain"})  # a resume
    data = client.get_run(active.info.run_id).data
    assert data.params == {"final.trial_id": "0007", "final.epochs": "12", "final.mode": "retrain"}
    assert data.tags["final.epochs"] == "18"  # MLflow refuses to change a param: the new value is kept beside it
    assert "final.trial_id" not in data.tags


def test_a_replaced_table_holds_only_its_last_version(run, tmp_path):
    active, client = run
    logged.replace_table(pd.DataFrame({"trial": ["a", "b"], "score": [0.1, 0.2]}), "board.json")
    logged.replace_table(pd.DataFrame({"trial": ["c"], "score": [0.3]}), "board.json")
    path = mlflow.artifacts.download_artifacts(run_id=active.info.run_id, artifact_path="board.json",
                                               dst_path=str(tmp_path))
    table = json.loads(open(path).read())
    assert table["data"] == [["c", 0.3]]


def test_the_test_classes_are_read_back_as_logged(run):
    active, client = run
    truth, predicted = np.array([3, 1, 4, 1, 5]), np.array([3, 1, 4, 0, 5])
    logged.log_test_classes(truth, predicted)
    read_predicted, read_truth = logged.read_test_classes(client, active.info.run_id)  # (predicted, true)
    assert list(read_truth) == list(truth) and list(read_predicted) == list(predicted)
