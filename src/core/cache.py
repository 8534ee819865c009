"""A per-machine cache of the decoded, split dataset, as `.npy` files loaded memory-mapped.

Decoding the CIFAR-10 pickles, splitting and scaling costs every job and every
tuner worker the same seconds; with the cache, a job maps the arrays it needs
straight from disk. Each entry is a folder named by a digest of what produced
it (the source files' contents and the split settings), so a changed source or
setting never reuses an old entry. An entry is trusted only if its manifest,
written last, lists every file with the size and SHA-256 it has now: a
corrupted, partial or stale entry is set aside and rebuilt. Builders write
into a private folder and rename it into place, so concurrent jobs building the
same entry never see each other's half-written files. Arrays are read with
`allow_pickle=False`: a cache file is data, never code.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Dict, Iterable, Mapping, Tuple

import numpy as np

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
FORMAT = 1  # bump when what an entry holds changes

Arrays = Dict[str, np.ndarray]


def digest_files(paths: Iterable[Path]) -> str:
    """SHA-256 over the files' contents, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def entry_key(key: Mapping) -> str:
    return hashlib.sha256(json.dumps({"format": FORMAT, **key}, sort_keys=True).encode()).hexdigest()[:24]


def _file_sha256(path: Path) -> str:
    return digest_files([path])


def _valid(entry: Path, key: Mapping) -> bool:
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        if manifest.get("key") != json.loads(json.dumps(dict(key))) or manifest.get("format") != FORMAT:
            return False
        for name, expected in manifest["files"].items():
            path = entry / f"{name}.npy"
            if path.stat().st_size != expected["size"] or _file_sha256(path) != expected["sha256"]:
                return False
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _read(entry: Path) -> Tuple[Arrays, dict]:
    manifest = json.loads((entry / MANIFEST).read_text())
    arrays = {name: np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False)
              for name in manifest["files"]}
    return arrays, manifest["meta"]


def _write(root: Path, key: Mapping, arrays: Arrays, meta: dict) -> Path:
    """Write the entry into a private folder of `root`; returns that folder."""
    private = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        files = {}
        for name, array in arrays.items():
            path = private / f"{name}.npy"
            np.save(path, np.ascontiguousarray(array), allow_pickle=False)
            files[name] = {"size": path.stat().st_size, "sha256": _file_sha256(path)}
        manifest = {"format": FORMAT, "key": dict(key), "meta": meta, "files": files}
        (private / MANIFEST).write_text(json.dumps(manifest, indent=2))  # last: it vouches for the rest
    except BaseException:
        shutil.rmtree(private, ignore_errors=True)  # a disk that filled mid-write keeps no half entry
        raise
    return private


def cached(root: Path, key: Mapping, build: Callable[[], Tuple[Arrays, dict]]) -> Tuple[Arrays, dict]:
    """The arrays and metadata for `key`: from a valid entry under `root`, else built,
    stored and then read back memory-mapped."""
    root.mkdir(parents=True, exist_ok=True)
    entry = root / entry_key(key)
    if entry.exists():
        if _valid(entry, key):
            try:
                return _read(entry)
            except ValueError:  # e.g. an object array: it would need pickle, which is refused
                pass
        log.warning("dataset cache %s is damaged, partial or stale: rebuilding it", entry)
        _set_aside(entry)
    arrays, meta = build()
    private = _write(root, key, arrays, meta)
    try:
        os.rename(private, entry)  # atomic: readers see all of an entry or none
    except OSError:  # another job renamed its copy first
        shutil.rmtree(private, ignore_errors=True)
        if not _valid(entry, key):
            return arrays, meta
    return _read(entry)


def _set_aside(entry: Path) -> None:
    """Move a bad entry out of the way (then delete it): a reader mapping it keeps its files."""
    aside = entry.with_name(f".bad-{entry.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(entry, aside)
    except OSError:
        return  # another job set it aside already
    shutil.rmtree(aside, ignore_errors=True)
