"""The one recipe (train_evaluate_log) and what each run kind does around it."""
from __future__ import annotations

import dataclasses

import mlflow
import pytest

from src.config import DataConfig
from src.core import data
from src.jobs import training
from src.tracking import store
from src.tracking.runs import tracked_run

from helpers.configs import composed


@pytest.fixture
def tiny(synthetic_cifar, tracking_uri):
    cfg = composed(f"data.dir={synthetic_cifar}", "trainer.epochs=3", "trainer.batch_size=32", "trainer.verbose=0",
                   "model.filters=[8,16]", "model.dense_units=[16]", "tracking.log_model=false")
    splits = data.load(DataConfig(dir=str(synthetic_cifar), cache=False), seed=cfg.seed)
    mlflow.set_tracking_uri(tracking_uri)
    experiment = store.ensure_experiment(tracking_uri, "kinds")
    yield cfg, splits, experiment, store.client(tracking_uri)
    while mlflow.active_run():
        mlflow.end_run()


def _run(tiny, kind, **kwargs):
    cfg, splits, experiment, client = tiny
    with tracked_run(kind.name, experiment_id=experiment) as run:
        trained = training.train_evaluate_log(cfg, splits, kind, **kwargs)
    logged = client.get_run(run.info.run_id).data
    return trained, logged, client.get_metric_history(run.info.run_id, "val_accuracy")


def test_a_trial_is_scored_on_validation_only_and_logs_its_config_and_curves(tiny):
    trained, logged, curve = _run(tiny, training.TRIAL)
    assert set(trained.scores) == {"val"}
    assert "test_accuracy" not in logged.metrics and "val_accuracy_scored" in logged.metrics
    assert logged.params["model.dropout"] == "0.5" and len(curve) == 3
    # with its training set's size: a study's report counts each run's training images from it
    assert logged.params["data.train_images"] == str(len(tiny[1].x_train))


def test_a_job_is_scored_on_test_and_leaves_its_inputs_to_the_job(tiny):
    trained, logged, curve = _run(tiny, training.JOB)
    assert set(trained.scores) == {"test"} and logged.metrics["test_accuracy"] == trained.scores["test"].accuracy
    assert "model.dropout" not in logged.params and len(curve) == 3


def test_a_confirmation_run_scores_the_best_validation_epochs_weights(tiny):
    trained, logged, curve = _run(tiny, training.CONFIRMATION)
    assert list(trained.scores) == ["val", "test"]
    best = max(point.value for point in curve)
    assert logged.metrics["val_accuracy_scored"] == pytest.approx(best, abs=1e-6)  # restored, not the last epoch's


def test_a_final_retrain_has_no_validation_and_no_curves_of_its_own(tiny):
    cfg, splits, *_ = tiny
    trained, logged, curve = _run(tiny, training.FINAL_RETRAIN)
    assert set(trained.scores) == {"test"} and curve == []
    assert "val_accuracy" not in trained.training.history and "model.dropout" not in logged.params


def test_a_kind_that_may_log_the_model_logs_it_only_when_tracking_asks(tiny):
    cfg, splits, experiment, client = tiny
    with_model = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, log_model=True))
    with tracked_run("model", experiment_id=experiment) as run:
        training.train_evaluate_log(with_model, splits, training.JOB)
    with tracked_run("no model", experiment_id=experiment) as other:
        training.train_evaluate_log(with_model, splits, training.TRIAL)
    assert client.search_logged_models([experiment], filter_string=f"source_run_id = '{run.info.run_id}'")
    assert not client.search_logged_models([experiment], filter_string=f"source_run_id = '{other.info.run_id}'")
