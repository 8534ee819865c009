"""The loader on a tiny synthetic dataset written in the cifar layout, and on the real one."""
from __future__ import annotations

import pickle
import re
import sqlite3

import numpy as np
import pytest

from src.config import DataConfig, Validation
from src.core import data

from helpers.cifar import CLASS_NAMES, write_batch
from helpers.commands import run_here
from helpers.paths import SHARED_CIFAR, requires_shared_data


def test_reads_shapes_dtypes_and_file_order(synthetic_cifar):
    raw = data.load_cifar_dir(synthetic_cifar)
    assert raw.x_train.shape == (200, 32, 32, 3) and raw.x_train.dtype == np.uint8
    assert raw.y_train.shape == (200,) and raw.x_test.shape == (60, 32, 32, 3)
    assert raw.class_names == CLASS_NAMES
    # Order: batch 1 first, rows as stored, channels-last as Keras gives them.
    with (synthetic_cifar / "data_batch_2").open("rb") as handle:
        batch2 = pickle.load(handle, encoding="bytes")
    np.testing.assert_array_equal(raw.y_train[40:80], batch2[b"labels"])
    first = batch2[b"data"][0]
    np.testing.assert_array_equal(raw.x_train[40, :, :, 0].ravel(), first[:1024])
    np.testing.assert_array_equal(raw.x_train[40, :, :, 2].ravel(), first[2048:])
    assert not raw.lossy  # synthetic filenames are .png
    assert raw.source.startswith("file://")


def test_split_is_stratified_seeded_and_keeps_test_aside(synthetic_cifar):
    raw = data.load_cifar_dir(synthetic_cifar)
    cfg = DataConfig(dir=str(synthetic_cifar), validation=Validation.split, val_fraction=0.2)
    first = data.make_splits(raw, cfg, seed=1)
    again = data.make_splits(raw, cfg, seed=1)
    other = data.make_splits(raw, cfg, seed=2)
    assert first.x_val.shape[0] == 40 and first.x_train.shape[0] == 160
    assert np.bincount(first.y_val.argmax(1), minlength=10).tolist() == [4] * 10
    np.testing.assert_array_equal(first.x_val, again.x_val)
    assert not np.array_equal(first.x_val, other.x_val)
    assert first.x_test.shape[0] == 60  # the test set is untouched
    # No image is both trained on and validated on.
    train_rows = {row.tobytes() for row in first.x_train}
    assert not any(row.tobytes() in train_rows for row in first.x_val)


def test_notebook_mode_validates_on_the_test_set(synthetic_cifar):
    splits = data.load(DataConfig(dir=str(synthetic_cifar), validation=Validation.test), seed=0)
    assert splits.x_train.shape[0] == 200
    np.testing.assert_array_equal(splits.x_val, splits.x_test)


def test_scaling_and_one_hot(synthetic_cifar):
    splits = data.load(DataConfig(dir=str(synthetic_cifar)), seed=0)
    assert splits.x_train.dtype == np.float32 and 0.0 <= splits.x_train.min() <= splits.x_train.max() <= 1.0
    assert splits.y_train.dtype == np.float32 and splits.y_train.shape[1] == 10
    np.testing.assert_array_equal(splits.y_train.sum(axis=1), 1.0)


def test_limits_take_stratified_subsets(synthetic_cifar):
    cfg = DataConfig(dir=str(synthetic_cifar), validation=Validation.test, limit_train=50, limit_test=20)
    splits = data.load(cfg, seed=0)
    assert splits.x_train.shape[0] == 50 and splits.x_test.shape[0] == 20
    assert np.bincount(splits.y_train.argmax(1), minlength=10).tolist() == [5] * 10
    assert np.bincount(splits.y_test.argmax(1), minlength=10).tolist() == [2] * 10


def test_missing_directory_names_the_path(tmp_path):
    with pytest.raises(data.DatasetError, match=f"{tmp_path / 'nowhere'}.*does not exist"):
        data.load_cifar_dir(tmp_path / "nowhere")


def test_missing_batch_file_is_named(synthetic_cifar):
    (synthetic_cifar / "data_batch_3").unlink()
    with pytest.raises(data.DatasetError, match="missing data_batch_3"):
        data.load_cifar_dir(synthetic_cifar)


def test_truncated_file_is_named(synthetic_cifar):
    path = synthetic_cifar / "data_batch_4"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(data.DatasetError, match="data_batch_4.*truncated"):
        data.load_cifar_dir(synthetic_cifar)


def test_garbage_file_is_named(synthetic_cifar):
    (synthetic_cifar / "test_batch").write_bytes(b"this is not a pickle at all")
    with pytest.raises(data.DatasetError, match="test_batch"):
        data.load_cifar_dir(synthetic_cifar)


@pytest.mark.parametrize("damaged", [
    b"\x80\x04\x8d" + (2 ** 63 + 5).to_bytes(8, "little"),  # a string longer than memory: OverflowError
    b"\x80\x04" + b"(" * 200_000,  # marks nested past any stack
], ids=["huge-length", "deep-nesting"])
def test_bytes_that_break_the_unpickler_in_other_ways_are_named(synthetic_cifar, damaged):
    """Random bytes (the fault suite's corrupted batch) once failed 1 time in ~110 with an
    OverflowError that escaped as a traceback: any failure of a damaged file is named."""
    (synthetic_cifar / "test_batch").write_bytes(damaged)
    with pytest.raises(data.DatasetError, match="test_batch.*not a CIFAR-10 pickle"):
        data.load_cifar_dir(synthetic_cifar)


def test_wrong_array_shape_is_named(synthetic_cifar):
    path = synthetic_cifar / "data_batch_1"
    with path.open("wb") as handle:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]}, handle)
    with pytest.raises(data.DatasetError, match=r"data_batch_1.*\(4, 100\).*\(N, 3072\) uint8"):
        data.load_cifar_dir(synthetic_cifar)


def test_label_count_mismatch_is_named(synthetic_cifar):
    images = np.zeros((4, 32, 32, 3), np.uint8)
    write_batch(synthetic_cifar / "data_batch_5", images, np.array([0, 1, 2]), "x")
    with pytest.raises(data.DatasetError, match="data_batch_5: 3 labels for 4 images"):
        data.load_cifar_dir(synthetic_cifar)


@requires_shared_data()
def test_real_dataset_matches_the_published_layout():
    raw = data.load_cifar_dir(SHARED_CIFAR)
    assert raw.x_train.shape == (50000, 32, 32, 3) and raw.x_test.shape == (10000, 32, 32, 3)
    assert raw.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert raw.y_test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert np.bincount(raw.y_train).tolist() == [5000] * 10
    assert raw.class_names == CLASS_NAMES
    assert raw.lossy  # the offline rebuild is JPEG-derived


class _CreatesFile:
    """Unpickling this calls open(path, "w"): the marker shows whether anything in the file ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_hostile_batch(root, marker):
    with (root / "test_batch").open("wb") as handle:
        pickle.dump({b"data": _CreatesFile(marker), b"labels": []}, handle)


def test_hostile_pickle_is_refused_without_running(synthetic_cifar, tmp_path):
    marker = tmp_path / "pwned"
    write_hostile_batch(synthetic_cifar, marker)
    with pytest.raises(data.DatasetError,
                       match=re.escape(f"refusing to load {synthetic_cifar / 'test_batch'}: it asks for io.open, ")):
        data.load_cifar_dir(synthetic_cifar)
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [("builtins", "eval"), ("os", "system"), ("numpy", "load"),
                                          ("numpy.core.multiarray", "scalar")])
def test_only_array_globals_resolve(tmp_path, module, name):
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"q\x00.")  # protocol 2: GLOBAL only
    with pytest.raises(data.DatasetError, match=re.escape(f"data_batch_1: it asks for {module}.{name}, ")):
        data.read_batch(path)


def test_cli_refuses_a_hostile_batch(synthetic_cifar, tmp_path):
    marker = tmp_path / "pwned"
    write_hostile_batch(synthetic_cifar, marker)
    result = run_here(f"data.dir={synthetic_cifar}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
                      "trainer.epochs=1")
    assert result.returncode != 0, result.stdout[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert lines and "refusing to load" in lines[-1] and "io.open" in lines[-1], result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert not marker.exists()
    store = tmp_path / "mlflow.db"  # refused before any run exists
    assert not store.exists() or sqlite3.connect(store).execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
