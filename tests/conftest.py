"""Shared fixtures: a tiny synthetic CIFAR-10 and a temporary MLflow store per
test, so tests never touch the project's own store."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import tracking_server
from helpers.cifar import make_synthetic_cifar
from helpers.session import once_per_session
from helpers.stores import copy_template_store

# Each of pytest-xdist's workers (and whatever it starts: runs, studies, benchmarks) gets
# its share of the cores. TensorFlow's default is a thread per core in every process, and
# its thread pools degrade badly when oversubscribed: the 6 short trainings of
# test_precision.py took 632 s beside the other worker, against ~100 s on one thread each.
# Set before anything imports TensorFlow; TensorFlow reads these for its default (0)
# thread settings, so an explicit trainer.intra_op_threads still wins.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
for _name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_name, str(max(1, (os.cpu_count() or 1) // _WORKERS)))
# A report's noise floor shuffles and resamples the trials 200 times each (src/analysis/noise_floor.py),
# about a minute a budget on a Zen 3; the suite's reports check what is reported, not the p-values' calibration
# (tests/analysis/test_noise_floor.py does that with its own counts).
os.environ.setdefault("REPORT_RESAMPLES", "20")
# ... and fANOVA's forest fits dominate them (a report test spent 103 of its 114 s in 446 fits of 64 trees).
os.environ.setdefault("REPORT_FANOVA_TREES", "16")
# ... and doubling the shuffles where a p's Monte Carlo range leaves its verdict in doubt (up to 10x)
# took most of what was left (a report test: 59 of its 73 s). The test of that wording sets it back.
os.environ.setdefault("REPORT_PERMUTATIONS_FACTOR", "1")
# Ray starts its worker processes at nice 15 (its `worker_niceness`), so beside busy processes a Ray
# worker gets a few % of a core: beside two busy loops the two-Ray-worker study test timed out (500 s;
# 111 s at nice 0, 2026-12-07, Zen 4). At 0 they share the cores as the local launcher's processes do.
# Every Ray the suite starts (ray start, ray.init) inherits this.
os.environ.setdefault("RAY_worker_niceness", "0")


@pytest.fixture
def synthetic_cifar(tmp_path) -> Path:
    return make_synthetic_cifar(tmp_path / "cifar-10-batches-py")


@pytest.fixture(scope="session")
def template_store(tmp_path_factory) -> Path:
    """One migrated, empty SQLite store for the whole session (all xdist workers)."""
    from src.tracking import store

    with once_per_session(tmp_path_factory, "template-mlflow.db") as (path, build):
        if build:
            store.client(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(tmp_path, template_store) -> str:
    """A new, empty store of this test's own (copied from the template: see copy_template_store)."""
    copy_template_store(template_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def pytest_collection_modifyitems(config, items):
    """The tests on the tracking server first, together: xdist's worksteal hands each
    worker a contiguous block of the collection and steals only from a block's end, so
    one worker runs them all at its start and only that worker starts the server."""
    items.sort(key=lambda item: "mlflow_server" not in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def mlflow_server():
    """A team's tracking server on 127.0.0.1 (tests/tracking_server.py): PostgreSQL behind
    `mlflow server` with basic auth, one per test session (per xdist worker: the hook above
    keeps its tests on one), stopped and removed at its end. Skips with the reason where
    this machine cannot run it."""
    try:
        server = tracking_server.start()
    except tracking_server.Unavailable as err:
        pytest.skip(str(err))
    try:
        yield server
    finally:
        server.stop()
