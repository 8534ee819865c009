"""`python -m src.run` end to end, as a user runs it, into a temporary MLflow store."""
from __future__ import annotations

import json

import matplotlib.image
import mlflow
import numpy as np
import pytest

from src.tracking import store

from helpers.commands import run_here
from helpers.paths import SHARED_CIFAR, requires_shared_data
from helpers.stores import EXPECTED_ARTIFACTS


def all_artifacts(client, run_id, path=None):
    found = []
    for item in client.list_artifacts(run_id, path):
        found += all_artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def only_run(uri, experiment):
    client = store.client(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} was not created"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return client, runs[0]


def test_baseline_end_to_end_on_tiny_data(synthetic_cifar, tracking_uri, tmp_path):
    result = run_here("+experiment=baseline", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
                      "trainer.epochs=3", "trainer.batch_size=16", "model.dropout=0.1", "trainer.verbose=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy" in result.stdout and "mlflow ui --backend-store-uri" in result.stdout
    assert "Epoch 3/3" in result.stdout

    client, run = only_run(tracking_uri, "baseline")
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "f32-64-128_d0.1_e3_s42"
    assert run.info.run_id in result.stdout
    params = run.data.params
    assert params["model.filters"] == "[32, 64, 128]" and params["model.dropout"] == "0.1"
    assert params["trainer.epochs"] == "3" and params["trainer.batch_size"] == "16"
    assert params["data.validation"] == "test" and params["data.dir"] == str(synthetic_cifar)
    assert params["tracking.experiment"] == "baseline"

    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(point.step for point in history) == [1, 2, 3], key
    metrics = run.data.metrics
    for key in ("test_accuracy", "test_loss", "best_val_accuracy", "best_val_epoch",
                "train_seconds", "train_images_per_s"):
        assert key in metrics, key
    val_history = [p.value for p in sorted(client.get_metric_history(run.info.run_id, "val_accuracy"),
                                           key=lambda p: p.step)]
    assert metrics["best_val_accuracy"] == pytest.approx(max(val_history))
    assert metrics["best_val_epoch"] == 1 + int(np.argmax(val_history))
    assert metrics["model_parameters"] == 258_762
    # Notebook mode validates on the test set: the last val_accuracy is the test accuracy.
    assert metrics["test_accuracy"] == pytest.approx(val_history[-1], abs=1e-6)

    tags = run.data.tags
    assert tags["command"].startswith("python -m src.run +experiment=baseline")
    assert "trainer.epochs=3" in tags["command"]
    assert len(tags["git_commit"]) == 40

    names = set(all_artifacts(client, run.info.run_id))
    assert EXPECTED_ARTIFACTS <= names, EXPECTED_ARTIFACTS - names
    local = client.download_artifacts(run.info.run_id, "", str(tmp_path / "downloaded"))
    for png in [n for n in names if n.endswith(".png")]:
        assert matplotlib.image.imread(f"{local}/{png}").shape[2] in (3, 4)
    report = json.loads(open(f"{local}/reports/test_classification_report.json").read())
    assert {"airplane", "truck", "accuracy", "macro avg"} <= set(report)
    assert report["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert "airplane" in open(f"{local}/reports/test_classification_report.txt").read()
    counts = np.loadtxt(f"{local}/reports/test_confusion_matrix.csv", delimiter=",", skiprows=1,
                        usecols=range(1, 11))
    assert counts.shape == (10, 10) and counts.sum() == 60
    assert "trainer.epochs=3" in open(f"{local}/config/overrides.yaml").read()

    datasets = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert {"cifar10-train", "cifar10-test"} <= set(datasets)
    assert datasets["cifar10-train"].dataset.source and datasets["cifar10-train"].dataset.digest

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert model.metadata.signature is not None
    prediction = np.asarray(model.predict(np.zeros((5, 32, 32, 3), np.float32)))
    assert prediction.shape == (5, 10)
    np.testing.assert_allclose(prediction.sum(axis=1), 1.0, rtol=1e-4)


def test_held_out_split_logs_the_validation_set(synthetic_cifar, tracking_uri):
    result = run_here(f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}", "trainer.epochs=1",
                      "tracking.log_model=false", "tracking.experiment=split", "trainer.verbose=0")
    assert result.returncode == 0, result.stderr[-3000:]
    _, run = only_run(tracking_uri, "split")
    assert run.data.params["data.validation"] == "split"
    assert run.data.params["data.val_images"] == "20" and run.data.params["data.train_images"] == "180"
    contexts = {d.dataset.name for d in run.inputs.dataset_inputs}
    assert contexts == {"cifar10-train", "cifar10-validation", "cifar10-test"}


def test_missing_dataset_fails_before_any_run(tmp_path, tracking_uri):
    missing = tmp_path / "no-such-dir"
    result = run_here("+experiment=baseline", f"data.dir={missing}", f"tracking.uri={tracking_uri}")
    assert result.returncode != 0
    assert str(missing) in result.stderr and "expected" in result.stderr
    assert "Traceback" not in result.stderr
    client = store.client(tracking_uri)
    experiment = client.get_experiment_by_name("baseline")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_bad_value_is_refused_before_training(tracking_uri):
    result = run_here("+experiment=baseline", "model.dropout=1.5", f"tracking.uri={tracking_uri}")
    assert result.returncode != 0
    assert "model.dropout=1.5" in result.stderr and "[0, 1)" in result.stderr


@pytest.mark.slow
@requires_shared_data()
def test_real_data_one_epoch_on_5000_images_beats_chance(tracking_uri):
    # The notebook's architecture, without dropout and at batch 8: measured here,
    # dropout 0.5 needs more than one short epoch to get going (0.15-0.25 test
    # accuracy over seeds), while this reaches 0.32-0.33. A loader that mixed up
    # images and labels would stay at 0.10.
    result = run_here("+experiment=baseline", f"data.dir={SHARED_CIFAR}", f"tracking.uri={tracking_uri}",
                      "data.limit_train=5000", "trainer.epochs=1", "trainer.verbose=2",
                      "model.dropout=0", "trainer.batch_size=8", "seed=42", "tracking.log_model=false")
    assert result.returncode == 0, result.stderr[-3000:]
    _, run = only_run(tracking_uri, "baseline")
    assert run.data.metrics["test_accuracy"] > 0.30, run.data.metrics
    assert run.data.params["data.test_images"] == "10000"
