"""The dataset cache (src/core/cache.py): a hit maps the same arrays; a damaged,
partial, stale or hostile entry is rebuilt, never trusted; concurrent builders
don't clash."""
from __future__ import annotations

import json
import multiprocessing
import pickle

import numpy as np
import pytest

from src.config import DataConfig
from src.core import cache, data

from helpers.cifar import make_synthetic_cifar


@pytest.fixture
def source(tmp_path):
    return make_synthetic_cifar(tmp_path / "cifar-10-batches-py")


def config(source, tmp_path, **extra) -> DataConfig:
    return DataConfig(dir=str(source), cache_dir=str(tmp_path / "cache"), **extra)


def same(a: data.Splits, b: data.Splits) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in data.ARRAYS) and \
        (a.class_names, a.source, a.lossy, a.validation) == (b.class_names, b.source, b.lossy, b.validation)


def only_entry(tmp_path):
    entries = [p for p in (tmp_path / "cache").iterdir()]
    assert len(entries) == 1, entries  # no half-built or set-aside folders left behind
    return entries[0]


def test_a_hit_maps_the_same_arrays_as_decoding(source, tmp_path):
    cfg = config(source, tmp_path)
    decoded = data.load(DataConfig(dir=str(source), cache=False), seed=3)
    first, again = data.load(cfg, seed=3), data.load(cfg, seed=3)
    assert same(first, decoded) and same(again, decoded)
    assert isinstance(again.x_train, np.memmap) and not again.x_train.flags.writeable
    assert only_entry(tmp_path).name == cache.entry_key(json.loads(
        (only_entry(tmp_path) / cache.MANIFEST).read_text())["key"])


def test_split_settings_and_seed_get_their_own_entries(source, tmp_path):
    data.load(config(source, tmp_path), seed=1)
    data.load(config(source, tmp_path), seed=2)
    data.load(config(source, tmp_path, val_fraction=0.2), seed=1)
    assert len(list((tmp_path / "cache").iterdir())) == 3


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "no manifest", "manifest from another key"])
def test_a_damaged_or_partial_entry_is_rebuilt(damage, source, tmp_path, caplog):
    cfg = config(source, tmp_path)
    data.load(cfg, seed=0)
    expected = data.load(DataConfig(dir=str(source), cache=False), seed=0)  # not a map of the file damaged below
    entry = only_entry(tmp_path)
    target = entry / "x_train.npy"
    if damage == "flip a byte":
        raw = bytearray(target.read_bytes())
        raw[-5] ^= 0xFF
        target.write_bytes(bytes(raw))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:1000])
    elif damage == "no manifest":
        (entry / cache.MANIFEST).unlink()
    else:
        manifest = json.loads((entry / cache.MANIFEST).read_text())
        manifest["key"]["seed"] = 99
        (entry / cache.MANIFEST).write_text(json.dumps(manifest))
    with caplog.at_level("WARNING"):
        rebuilt = data.load(cfg, seed=0)
    assert "rebuilding" in caplog.text
    assert same(rebuilt, expected)
    assert cache._valid(only_entry(tmp_path), json.loads((only_entry(tmp_path) / cache.MANIFEST).read_text())["key"])


def test_a_changed_source_never_reuses_the_old_entry(source, tmp_path):
    cfg = config(source, tmp_path)
    before = data.load(cfg, seed=0)
    make_synthetic_cifar(source, seed=7)  # same files, other pixels
    after = data.load(cfg, seed=0)
    assert not np.array_equal(before.x_test, after.x_test)
    assert same(after, data.load(DataConfig(dir=str(source), cache=False), seed=0))


class Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_cache_file_that_needs_pickle_is_never_executed(source, tmp_path):
    cfg = config(source, tmp_path)
    data.load(cfg, seed=0)
    expected = data.load(DataConfig(dir=str(source), cache=False), seed=0)
    entry = only_entry(tmp_path)
    marker = tmp_path / "executed"
    hostile = np.array([Hostile(str(marker))], dtype=object)
    np.save(entry / "y_test.npy", hostile, allow_pickle=True)
    manifest = json.loads((entry / cache.MANIFEST).read_text())  # a forger can fix the manifest too
    path = entry / "y_test.npy"
    manifest["files"]["y_test"] = {"size": path.stat().st_size, "sha256": cache.digest_files([path])}
    (entry / cache.MANIFEST).write_text(json.dumps(manifest))
    assert same(data.load(cfg, seed=0), expected)
    assert not marker.exists()


def _load_in_process(args):
    source, cache_dir, barrier = args
    barrier.wait(timeout=60)
    splits = data.load(DataConfig(dir=source, cache_dir=cache_dir), seed=0)
    return pickle.dumps({k: np.asarray(getattr(splits, k)).tobytes() for k in data.ARRAYS})


def test_concurrent_builders_of_the_same_entry_do_not_clash(source, tmp_path):
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(4)
        with context.Pool(4) as pool:
            results = pool.map(_load_in_process, [(str(source), str(tmp_path / "cache"), barrier)] * 4)
    assert len(set(results)) == 1
    only_entry(tmp_path)
    decoded = data.load(DataConfig(dir=str(source), cache=False), seed=0)
    assert pickle.loads(results[0])["x_train"] == decoded.x_train.tobytes()
