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


def migrate_slowly_as_a_foreign_client(uri: str, ready, migrating, results, pause: float) -> None:
    """Another MLflow client (a UI, a notebook), not this project: a bare MlflowClient opening
    a new store, without the creation lock, its SQL slowed down by `pause` a statement so that
    its migration is certain to be under way when the other process starts (`migrating`)."""
    import time

    import sqlalchemy

    def slow(conn, cursor, statement, parameters, context, executemany):
        if "alembic_version" in statement and not migrating.is_set():
            migrating.set()
        time.sleep(pause)

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", slow)
    ready.wait(timeout=120)
    try:
        mlflow.MlflowClient(uri).search_experiments()
        results.put(("foreign", "ok"))
    except Exception as err:  # reported to the parent, which asserts
        results.put(("foreign", f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"))
    migrating.set()


def open_while_another_migrates(uri: str, ready, migrating, results, guarded: bool) -> None:
    """This project's first use of the store (`store.ensure_experiment`), or with `guarded=False`
    MLflow's own (a bare MlflowClient), started once the other process's migration is under way.
    Reports the outcome and what races.first_use logged."""
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger("src.tracking.races").addHandler(handler)
    logging.getLogger("src.tracking.races").setLevel(logging.INFO)
    ready.set()
    migrating.wait(timeout=120)
    try:
        if guarded:
            store.ensure_experiment(uri, "fresh")
        else:
            mlflow.MlflowClient(uri).search_experiments()
        results.put(("ours", "ok", records))
    except Exception as err:
        results.put(("ours", f"{type(err).__name__}: {str(err).splitlines()[0][:300]}", records))


def race_a_foreign_migration(uri: str, guarded: bool, pause: float = 0.01) -> dict:
    """The two above on a new store at `uri`; {"foreign": outcome, "ours": outcome, "logged": [...]}."""
    context = multiprocessing.get_context("spawn")
    ready, migrating, results = context.Event(), context.Event(), context.Queue()
    foreign = context.Process(target=migrate_slowly_as_a_foreign_client, args=(uri, ready, migrating, results, pause))
    ours = context.Process(target=open_while_another_migrates, args=(uri, ready, migrating, results, guarded))
    foreign.start()
    ours.start()
    outcomes = {}
    for _ in range(2):
        who, outcome, *logged = results.get(timeout=300)
        outcomes[who] = outcome
        if logged:
            outcomes["logged"] = logged[0]
    for process in (foreign, ours):
        process.join(timeout=60)
    return outcomes
