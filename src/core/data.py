"""CIFAR-10: read the standard `cifar-10-batches-py` layout, split, scale, one-hot;
the batches Keras trains and evaluates on (`batches`, which alone imports TensorFlow).

The pickles are read with numpy and the standard library only, so a missing or
broken dataset is reported before TensorFlow is imported or a run is created.
With no directory configured, the Keras download is used (needs internet).
"""
from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from sklearn.model_selection import train_test_split

from src.config import DataConfig, ProjectError, Validation
from src.config.paths import PROJECT_ROOT
from src.core import cache

NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
# The order Keras and the official batches.meta use.
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]
KERAS_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
DEFAULT_CACHE = PROJECT_ROOT / ".cache" / "datasets"  # git-ignored


class DatasetError(ProjectError):
    """The dataset is missing, truncated or not in the expected layout."""


@dataclass
class RawCifar:
    """uint8 images (N, 32, 32, 3) and int labels (N,), in file order."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: List[str]
    source: str
    # True when the images were decoded from JPEGs (the offline rebuild).
    lossy: bool


@dataclass
class Splits:
    """float32 images in [0, 1] and one-hot float32 labels, ready for `fit`."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: List[str]
    source: str
    lossy: bool
    validation: str  # "test" (the notebook's way) or "split"


def _expected_layout(root: Path) -> str:
    return f"{root}/{{{', '.join(TRAIN_FILES + [TEST_FILE, META_FILE])}}} (the CIFAR-10 'python version')"


# Unpickling calls whatever global a file names, so a crafted file in data.dir
# would run code: resolve only what rebuilding the batches' numpy arrays needs
# (both numpy module paths: files saved under numpy 1 and 2), refuse the rest.
_ARRAY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy", "ndarray"), ("numpy", "dtype")}


def _latin1(text: str, encoding: str) -> bytes:
    # Python 3 writes bytes in protocol 2 as _codecs.encode(text, "latin1"); allow only that.
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def __init__(self, handle, path: Path):
        super().__init__(handle, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) in _ARRAY_GLOBALS:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1
        allowed = ", ".join(sorted(f"{m}.{n}" for m, n in _ARRAY_GLOBALS))
        raise DatasetError(f"refusing to load {self.path}: it asks for {module}.{name}, and a CIFAR-10 batch "
                           f"may only reference numpy arrays ({allowed}) and latin-1 bytes (_codecs.encode); "
                           "the file is not executed")


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            return _ArrayOnlyUnpickler(handle, path).load()
    except FileNotFoundError:
        raise DatasetError(f"missing dataset file {path}") from None
    except DatasetError:
        raise
    except Exception as err:  # damaged bytes fail in any of a dozen ways (OverflowError for a huge length, ...)
        raise DatasetError(
            f"cannot read {path}: truncated or not a CIFAR-10 pickle ({type(err).__name__}: {err})"
        ) from None


def read_batch(path: Path) -> Tuple[np.ndarray, np.ndarray, list]:
    """One batch file -> (uint8 images N x 32 x 32 x 3, int64 labels N, filenames)."""
    batch = _unpickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DatasetError(f"{path} has no b'data'/b'labels' entries: not a CIFAR-10 batch")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(
            f"{path}: data has shape {data.shape} and dtype {data.dtype}, expected (N, 3072) uint8"
        )
    if labels.shape != (data.shape[0],):
        raise DatasetError(f"{path}: {labels.shape[0]} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DatasetError(f"{path}: labels outside 0..{NUM_CLASSES - 1}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels, list(batch.get(b"filenames", []))


def read_class_names(root: Path) -> List[str]:
    meta = _unpickle(root / META_FILE)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", [])]
    if len(names) != NUM_CLASSES:
        raise DatasetError(f"{root / META_FILE}: expected {NUM_CLASSES} label_names, found {len(names)}")
    return names


def _as_text(name) -> str:
    return name.decode("latin1") if isinstance(name, bytes) else str(name)


def load_cifar_dir(directory: str | Path) -> RawCifar:
    """Read the python-layout batches from `directory` (file order kept)."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset directory {root} does not exist: expected {_expected_layout(root)}")
    missing = [name for name in TRAIN_FILES + [TEST_FILE, META_FILE] if not (root / name).is_file()]
    if missing:
        raise DatasetError(f"{root} is missing {', '.join(missing)}: expected {_expected_layout(root)}")
    class_names = read_class_names(root)
    parts = [read_batch(root / name) for name in TRAIN_FILES]
    x_test, y_test, test_names = read_batch(root / TEST_FILE)
    lossy = any(_as_text(name).lower().endswith((".jpg", ".jpeg")) for name in test_names[:10])
    return RawCifar(
        x_train=np.concatenate([p[0] for p in parts]),
        y_train=np.concatenate([p[1] for p in parts]),
        x_test=x_test,
        y_test=y_test,
        class_names=class_names,
        source=root.resolve().as_uri(),
        lossy=lossy,
    )


def load_keras_download() -> RawCifar:
    """The online path: Keras downloads and caches the official archive."""
    import keras  # deferred: importing Keras starts TensorFlow

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as err:  # Keras raises a bare Exception for a failed fetch
        first_line = (str(err).strip() or type(err).__name__).splitlines()[0]
        raise DatasetError(f"data.dir is not set and CIFAR-10 could not be downloaded ({first_line}); "
                           "set data.dir=<folder with cifar-10-batches-py files> or CIFAR10_DIR") from None
    return RawCifar(x_train, y_train.reshape(-1).astype(np.int64), x_test,
                    y_test.reshape(-1).astype(np.int64), list(CLASS_NAMES), KERAS_SOURCE, lossy=False)


def load_raw(directory: Optional[str]) -> RawCifar:
    return load_cifar_dir(directory) if directory else load_keras_download()


def stratified_subset(labels: np.ndarray, size: Optional[int], seed: int) -> np.ndarray:
    """Indices of a stratified, seeded subset of `size`, in the original order."""
    indices = np.arange(labels.shape[0])
    if size is None or size >= labels.shape[0]:
        return indices
    chosen, _ = train_test_split(indices, train_size=size, stratify=labels, random_state=seed)
    return np.sort(chosen)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(keep, held_out) indices: a stratified, seeded `fraction` held out, order kept."""
    indices = np.arange(labels.shape[0])
    keep, held_out = train_test_split(indices, test_size=fraction, stratify=labels, random_state=seed)
    return np.sort(keep), np.sort(held_out)


def scale(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / np.float32(255.0)


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(NUM_CLASSES, dtype=np.float32)[labels]


def make_splits(raw: RawCifar, cfg: DataConfig, seed: int) -> Splits:
    train_idx = stratified_subset(raw.y_train, cfg.limit_train, seed)
    test_idx = stratified_subset(raw.y_test, cfg.limit_test, seed)
    x_train, y_train = raw.x_train[train_idx], raw.y_train[train_idx]
    x_test, y_test = raw.x_test[test_idx], raw.y_test[test_idx]
    if Validation(cfg.validation) is Validation.split:
        keep, held_out = stratified_split(y_train, cfg.val_fraction, seed)
        x_val, y_val = x_train[held_out], y_train[held_out]
        x_train, y_train = x_train[keep], y_train[keep]
    else:
        x_val, y_val = x_test, y_test
    return Splits(
        x_train=scale(x_train), y_train=one_hot(y_train),
        x_val=scale(x_val), y_val=one_hot(y_val),
        x_test=scale(x_test), y_test=one_hot(y_test),
        class_names=raw.class_names, source=raw.source, lossy=raw.lossy,
        validation=Validation(cfg.validation).value,
    )


ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def load(cfg: DataConfig, seed: int) -> Splits:
    """The splits for `cfg` and `seed`: from the dataset cache when `data.cache` is on
    and the source is a directory (src/core/cache.py), else decoded from the batches."""
    if not (cfg.cache and cfg.dir):
        return make_splits(load_raw(cfg.dir), cfg, seed)
    root = Path(cfg.dir).expanduser()
    files = [root / name for name in TRAIN_FILES + [TEST_FILE, META_FILE]]
    if not all(path.is_file() for path in files):
        return make_splits(load_raw(cfg.dir), cfg, seed)  # reports what is missing

    def build():
        splits = make_splits(load_raw(cfg.dir), cfg, seed)
        meta = {"class_names": splits.class_names, "source": splits.source, "lossy": splits.lossy,
                "validation": splits.validation}
        return {name: getattr(splits, name) for name in ARRAYS}, meta

    key = {"source_sha256": cache.digest_files(files), "validation": Validation(cfg.validation).value,
           "val_fraction": cfg.val_fraction, "limit_train": cfg.limit_train, "limit_test": cfg.limit_test,
           "seed": seed}
    arrays, meta = cache.cached(Path(cfg.cache_dir or DEFAULT_CACHE).expanduser(), key, build)
    return Splits(**arrays, **meta)


def batches(images, labels, batch_size: int, shuffle: bool):
    """The batches `model.fit(x, y)`, `evaluate` and `predict` make of in-memory arrays
    (Keras's own pipeline, its shuffling included; `labels` None for predict), with
    tf.data's autotuning off: on 2 cores that the model keeps busy it delayed the start
    of most training epochs by 5-14 s, and of evaluations by up to ~1.5 s
    (experiments/perf/REPORT.md)."""
    import tensorflow as tf  # deferred: ~5 s; loading the data needs none (open_job loads it before TensorFlow)
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter  # deferred: as tensorflow

    dataset = ArrayDataAdapter(images, labels, batch_size=batch_size, shuffle=shuffle).get_tf_dataset()
    options = tf.data.Options()
    options.autotune.enabled = False
    steps = math.ceil(len(images) / batch_size)  # so that Keras knows an epoch's length
    return dataset.apply(tf.data.experimental.assert_cardinality(steps)).with_options(options)
