"""What the concurrency tests run in each of their spawned processes. A spawned process
imports the module of its target function, so these live apart from the tests (which
import pytest's helpers): each process then starts with MLflow and the store module
only, ~2 s instead of ~4 s, eight processes at a time on two cores."""
from __future__ import annotations

import multiprocessing

import mlflow
import numpy as np

from src.tracking import races, store


def _log_same_datasets(uri: str, experiment_id: str, barrier, rounds: int, guarded: bool, failures) -> None:
    """One process: a run that logs `rounds` datasets, each released by the barrier
    at the same moment as the other processes' copy of it."""
    mlflow.set_tracking_uri(uri)
    images = np.zeros((4, 32, 32, 3), dtype=np.float32)
    with mlflow.start_run(experiment_id=experiment_id):
        for index in range(rounds):
            dataset = mlflow.data.from_numpy(images + index, targets=np.arange(4), name=f"cifar10-{index}",
                                             source="file:///synthetic")
            barrier.wait(timeout=120)
            try:
                if guarded:
                    races.log_input_retrying(dataset, context="test", tags={})
                else:
                    mlflow.log_input(dataset, context="test")
            except Exception as err:  # counted, and the race goes on in the next round
                failures.append(f"{type(err).__name__}: {str(err)[:200]}")


def race_datasets(uri: str, guarded: bool, processes: int = 8, rounds: int = 4) -> list:
    """`processes` processes, held at a barrier, log the same new datasets to a fresh store."""
    experiment_id = store.ensure_experiment(uri, "race")
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier, failures = manager.Barrier(processes), manager.list()
        workers = [context.Process(target=_log_same_datasets,
                                   args=(uri, experiment_id, barrier, rounds, guarded, failures))
                   for _ in range(processes)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=300)
        assert [w.exitcode for w in workers] == [0] * processes
        return list(failures)


def open_fresh_store(uri: str, barrier, results, as_client: bool) -> None:
    barrier.wait()
    try:
        if as_client:  # a bare client (a report, a test watching a run) opens the store as it is built
            store.client(uri).search_experiments()
        else:
            store.ensure_experiment(uri, "fresh")
        results.put("ok")
    except Exception as err:  # reported to the parent, which asserts
        results.put(f"{type(err).__name__}: {err}")
