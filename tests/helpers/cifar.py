"""Synthetic data: a tiny CIFAR-10 in the real on-disk layout, and random images in memory."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]


def write_batch(path: Path, images: np.ndarray, labels: np.ndarray, name: str) -> None:
    """One batch the way the official files are laid out (bytes keys, N x 3072 uint8)."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": data,
             b"filenames": [f"{name}/{i:04d}.png".encode() for i in range(len(images))]}
    with path.open("wb") as handle:
        pickle.dump(batch, handle, protocol=2)


def make_synthetic_cifar(root: Path, per_batch: int = 40, test_size: int = 60, seed: int = 0) -> Path:
    """Five train batches and a test batch of learnable images: each class has
    its own mean colour, so a few epochs separate them."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    palette = rng.integers(30, 225, size=(10, 3))

    def images_for(labels):
        noise = rng.normal(0, 20, size=(len(labels), 32, 32, 3))
        return np.clip(palette[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)

    for index in range(1, 6):
        labels = rng.permutation(np.arange(per_batch) % 10)
        write_batch(root / f"data_batch_{index}", images_for(labels), labels, f"train{index}")
    labels = rng.permutation(np.arange(test_size) % 10)
    write_batch(root / "test_batch", images_for(labels), labels, "test")
    with (root / "batches.meta").open("wb") as handle:
        pickle.dump({b"label_names": [n.encode() for n in CLASS_NAMES], b"num_vis": 3072,
                     b"num_cases_per_batch": per_batch}, handle, protocol=2)
    return root


def random_images(count: int, seed: int = 0):
    """`count` random 32x32 RGB images in [0, 1) and one-hot labels of 10 classes."""
    rng = np.random.default_rng(seed)
    return rng.random((count, 32, 32, 3), dtype=np.float32), np.eye(10, dtype=np.float32)[rng.integers(0, 10, count)]


def splits_of(seed: int = 0):
    """Splits of 20 training, 10 validation and 10 test random images in memory (no files)."""
    from src.core.data import Splits

    rng = np.random.default_rng(seed)
    images = rng.random((40, 32, 32, 3), dtype=np.float32)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 40)]
    return Splits(x_train=images[:20], y_train=labels[:20], x_val=images[20:30], y_val=labels[20:30],
                  x_test=images[30:], y_test=labels[30:], class_names=[str(i) for i in range(10)],
                  source="synthetic", lossy=False, validation="split")
