"""Costly session fixtures made once for all of pytest-xdist's workers."""
from __future__ import annotations

import contextlib
import fcntl
import os


@contextlib.contextmanager
def once_per_session(tmp_path_factory, name: str):
    """Yields (path, build): build is True in the one test process (of pytest-xdist's
    workers) that must make `path`; the others wait for it and reuse it, as xdist's
    docs advise for costly session fixtures."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this session's folder, shared by its workers (never an older session's)
    target = root / name
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / f"{name}.done"
        yield target, not done.exists()
        done.touch()
