"""`python -m src.predict`: classify image files with a model from MLflow, by
run id or by registered model alias; unreadable files fail alone."""
from __future__ import annotations

import subprocess

import matplotlib.image
import numpy as np
import pytest
from PIL import Image

from src.tracking import store

from helpers.cifar import CLASS_NAMES, make_synthetic_cifar
from helpers.commands import call_here, run_here


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny real run with a logged model: (tracking uri, run id)."""
    root = tmp_path_factory.mktemp("predict")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    result = run_here("+experiment=baseline", f"data.dir={make_synthetic_cifar(root / 'cifar')}",
                      f"tracking.uri={uri}", "tracking.experiment=predict", "trainer.epochs=1",
                      "trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=[16]")
    assert result.returncode == 0, result.stderr[-3000:]
    client = store.client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("predict").experiment_id])
    return uri, run.info.run_id


def predict(*args: str) -> subprocess.CompletedProcess:
    """`python -m src.predict ...`, in this process (its own start-up is no part of what is tested)."""
    from src.predict import main

    return call_here(main, *args)


def predictions(stdout: str) -> dict:
    """{path: (class name, probability)} from `path<TAB>class<TAB>probability` lines."""
    rows = [line.split("\t") for line in stdout.splitlines()]
    assert all(len(row) == 3 for row in rows), stdout
    return {path: (name, float(probability)) for path, name, probability in rows}


def write_images(folder):
    """A 32x32 RGB(A) PNG, a larger greyscale JPEG, and a file that is no image."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    matplotlib.image.imsave(folder / "a.png", rng.random((32, 32, 3)))
    Image.fromarray(rng.integers(0, 256, (64, 48), dtype=np.uint8)).save(folder / "b.jpg")
    (folder / "garbage.png").write_text("not an image")
    return folder


def test_by_run_id_each_image_gets_a_class_and_bad_files_fail_alone(trained, tmp_path, monkeypatch):
    uri, run_id = trained
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)  # as in a new shell
    folder = write_images(tmp_path / "images")
    missing = tmp_path / "missing.png"
    result = predict(str(folder), str(missing), "--run", run_id, "--tracking-uri", uri)

    assert result.returncode != 0
    found = predictions(result.stdout)
    assert list(found) == [str(folder / "a.png"), str(folder / "b.jpg")]  # the folder's images, sorted
    for name, probability in found.values():
        assert name in CLASS_NAMES and 0.0 <= probability <= 1.0
    assert f"error: cannot read image {folder / 'garbage.png'}" in result.stderr
    assert f"error: cannot read image {missing}" in result.stderr
    assert "Downloading artifacts" not in result.stdout + result.stderr  # MLflow's progress bars


def test_by_registered_model_alias(trained, tmp_path):
    import mlflow

    uri, run_id = trained
    mlflow.set_tracking_uri(uri)
    version = mlflow.register_model(f"runs:/{run_id}/model", "cifar10-cnn").version
    store.client(uri).set_registered_model_alias("cifar10-cnn", "champion", version)
    image = tmp_path / "a.png"
    matplotlib.image.imsave(image, np.random.default_rng(1).random((40, 40, 3)))

    result = predict(str(image), "--name", "cifar10-cnn", "--alias", "champion", "--tracking-uri", uri)
    assert result.returncode == 0, result.stderr[-3000:]
    ((name, probability),) = predictions(result.stdout).values()
    assert name in CLASS_NAMES and 0.0 <= probability <= 1.0

    result = predict(str(image), "--name", "cifar10-cnn", "--alias", "nobody", "--tracking-uri", uri)
    assert result.returncode != 0 and "cannot load model models:/cifar10-cnn@nobody" in result.stderr
