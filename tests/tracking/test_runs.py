"""A run's lifecycle (src/tracking/runs.py): no run is ever left RUNNING, through a Ctrl-C or a
locked store; the params, commits and history it carries."""
from __future__ import annotations

import mlflow
import pytest

from src.tracking import runs, store


@pytest.fixture
def experiment(tracking_uri):
    experiment_id = store.ensure_experiment(tracking_uri, "lifecycle")
    yield experiment_id
    while mlflow.active_run():
        mlflow.end_run()


def _only_run(tracking_uri, experiment_id):
    runs = store.client(tracking_uri).search_runs([experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_finished_run(tracking_uri, experiment):
    with runs.tracked_run("ok", {"k": "v"}, experiment_id=experiment):
        mlflow.log_metric("m", 1.0)
    run = _only_run(tracking_uri, experiment)
    assert run.info.status == "FINISHED" and run.data.tags["k"] == "v"


def test_exception_ends_failed_and_propagates(tracking_uri, experiment):
    with pytest.raises(ValueError, match="boom"):
        with runs.tracked_run("crash", experiment_id=experiment):
            raise ValueError("boom")
    assert _only_run(tracking_uri, experiment).info.status == "FAILED"
    assert mlflow.active_run() is None


def test_ctrl_c_ends_killed(tracking_uri, experiment):
    with pytest.raises(KeyboardInterrupt):
        with runs.tracked_run("interrupted", experiment_id=experiment):
            raise KeyboardInterrupt
    assert _only_run(tracking_uri, experiment).info.status == "KILLED"


def test_flatten_names_nested_keys_with_dots():
    flat = runs.flatten({"model": {"filters": [32, 64], "dropout": 0.5}, "seed": 1, "tags": {}})
    assert flat == {"model.filters": "[32, 64]", "model.dropout": "0.5", "seed": "1", "tags": "{}"}


def test_ctrl_c_inside_an_mlflow_write_still_ends_killed(tracking_uri, experiment):
    """The signal can land inside MLflow's INSERT of an epoch's metrics (seen in CI: the
    run then ended FAILED with "database is locked", and the command exited 1, not 143).
    Raised here from SQLAlchemy's cursor event, at the same point the signal was."""
    import sqlalchemy

    engine = mlflow.tracking._tracking_service.utils._get_store().engine

    def interrupt_metric_insert(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO METRICS"):
            raise KeyboardInterrupt("received signal 15")

    with pytest.raises(KeyboardInterrupt):
        with runs.tracked_run("interrupted mid-write", experiment_id=experiment):
            sqlalchemy.event.listen(engine, "after_cursor_execute", interrupt_metric_insert)
            try:
                mlflow.log_metrics({"loss": 1.0, "accuracy": 0.5}, step=1)
            finally:
                sqlalchemy.event.remove(engine, "after_cursor_execute", interrupt_metric_insert)
    assert _only_run(tracking_uri, experiment).info.status == "KILLED"



def _store_locked_for(monkeypatch, times):
    """`set_terminated` answers as MLflow does when SQLite refuses a write lock at once
    (two stopped processes each holding a read lock; seen in CI on a stopped sweep)."""
    from mlflow.exceptions import MlflowException

    real = mlflow.MlflowClient.set_terminated
    calls = []

    def locked(self, run_id, status=None, end_time=None):
        calls.append(status)
        if len(calls) <= times:
            raise MlflowException("(sqlite3.OperationalError) database is locked\n[SQL: UPDATE runs SET status=?]")
        return real(self, run_id, status, end_time)

    monkeypatch.setattr(mlflow.MlflowClient, "set_terminated", locked)
    monkeypatch.setattr(runs, "LOCKED_RETRY_WAITS_S", (0.01, 0.01, 0.01))
    return calls


@pytest.mark.parametrize("status", ["FINISHED", "KILLED"])
def test_a_store_locked_for_a_moment_still_ends_the_run(status, tracking_uri, experiment, monkeypatch, caplog):
    calls = _store_locked_for(monkeypatch, times=2)
    with pytest.raises(KeyboardInterrupt) if status == "KILLED" else _no_error():
        with runs.tracked_run("locked", experiment_id=experiment):
            if status == "KILLED":
                raise KeyboardInterrupt
    assert calls == [status] * 3
    assert _only_run(tracking_uri, experiment).info.status == status
    assert mlflow.active_run() is None
    assert not [r for r in caplog.records if r.levelno >= 30], caplog.text  # no MLflow traceback, no warning


def test_a_store_that_stays_locked_says_so_in_one_line_when_stopped(tracking_uri, experiment, monkeypatch, caplog):
    _store_locked_for(monkeypatch, times=99)
    with pytest.raises(KeyboardInterrupt):
        with runs.tracked_run("locked", experiment_id=experiment) as run:
            raise KeyboardInterrupt
    shown = [r.getMessage() for r in caplog.records if r.levelno >= 30]
    assert shown == [f"run {run.info.run_id} could not be recorded as KILLED (the store stayed locked); the next "
                     "command on the store records it"]
    assert _only_run(tracking_uri, experiment).info.status == "RUNNING"  # left to reconcile, said so


def test_a_finished_run_is_never_left_for_reconcile_to_call_killed(tracking_uri, experiment, monkeypatch):
    from mlflow.exceptions import MlflowException

    _store_locked_for(monkeypatch, times=99)
    with pytest.raises(MlflowException, match="database is locked"):
        with runs.tracked_run("locked", experiment_id=experiment):
            pass


def _no_error():
    from contextlib import nullcontext
    return nullcontext()


@pytest.mark.parametrize("tags, expected", [
    # Each process's state on record: dirty, clean, dirty again at one commit (a later clean resume keeps it so).
    ({"git_commits": "a,b-dirty,b", "git_commit": "b", "git_dirty": "true"}, [("a", False), ("b", True), ("b", False)]),
    # A list from before the mark: git_dirty is its last process's, at git_commit (which may be an earlier entry).
    ({"git_commits": "a,b", "git_commit": "a", "git_dirty": "true"}, [("a", True), ("b", False)]),
    ({"git_commits": "a,b", "git_commit": "b", "git_dirty": "true"}, [("a", False), ("b", True)]),
    ({"git_commit": "a", "git_dirty": "true"}, [("a", True)]),
    ({"mlflow.source.git.commit": "a"}, [("a", False)]),
    ({}, []),
])
def test_the_commits_a_run_ran_at_are_read_from_new_and_old_tags(tags, expected):
    assert runs._listed_commits(tags) == expected
    again = runs.commits_ran_at(tags, "b", dirty=False)  # a clean resume at b adds nothing it already lists
    assert runs._listed_commits(again) == expected + ([] if ("b", False) in expected else [("b", False)])


def test_every_run_carries_its_commit_and_a_resumed_run_each_commit_it_ran_at(tracking_uri, experiment, monkeypatch):
    def at(commit):
        monkeypatch.setattr(runs, "git_commit", lambda: {"git_commit": commit, "git_dirty": "false"})

    at("a" * 40)
    with runs.tracked_run("study", experiment_id=experiment) as run:
        pass
    assert _only_run(tracking_uri, experiment).data.tags["git_commits"] == "a" * 40
    from src.config import machine
    assert _only_run(tracking_uri, experiment).data.tags["cpu"] == machine.describe()  # what it ran on
    at("b" * 40)  # the study resumed after a commit: both are on record, in order, and once each
    for _ in range(2):
        with runs.tracked_run(run_id=run.info.run_id):
            pass
    tags = _only_run(tracking_uri, experiment).data.tags
    assert tags["git_commit"] == "b" * 40 and tags["git_commits"] == f"{'a' * 40},{'b' * 40}"
    # Resumed at the same commit with uncommitted edits, then clean again: the edited resume stays on record.
    monkeypatch.setattr(runs, "git_commit", lambda: {"git_commit": "b" * 40, "git_dirty": "true"})
    with runs.tracked_run(run_id=run.info.run_id):
        pass
    at("b" * 40)
    with runs.tracked_run(run_id=run.info.run_id):
        pass
    finished = _only_run(tracking_uri, experiment)
    assert finished.data.tags["git_commits"] == f"{'a' * 40},{'b' * 40},{'b' * 40}-dirty"
    assert runs.commit_labels(finished) == ["aaaaaaa", "bbbbbbb", "bbbbbbb (uncommitted changes)"]
    assert runs.commit_labels(finished, length=40, quote="`")[-1] == f"`{'b' * 40}` (uncommitted changes)"


def test_a_reopened_run_keeps_why_it_was_closed_as_history(tracking_uri, experiment):
    """Closed FAILED by a later command (its process was killed), then reopened by a resume that
    finishes: the run must not say it was closed, and the reasons are kept, in order."""
    client = mlflow.MlflowClient()
    with runs.tracked_run("study", experiment_id=experiment) as run:
        pass
    for reason in ("its process 1 on vm is gone", "its process 2 on vm is gone"):
        client.set_tag(run.info.run_id, "closed_because", reason)  # as reconcile closes a killed run
        client.set_terminated(run.info.run_id, "FAILED")
        with runs.tracked_run(run_id=run.info.run_id):
            pass
    tags = _only_run(tracking_uri, experiment).data.tags
    assert "closed_because" not in tags
    assert tags["closed_earlier"] == "its process 1 on vm is gone; its process 2 on vm is gone"
    with runs.tracked_run(run_id=run.info.run_id):  # a clean resume changes nothing
        pass
    assert _only_run(tracking_uri, experiment).data.tags["closed_earlier"] == tags["closed_earlier"]


@pytest.mark.parametrize("hold", [True, False])
def test_a_run_that_holds_signals_at_its_end_is_finished_before_the_signal_stops_it(hold, tracking_uri, experiment,
                                                                                     monkeypatch):
    """A trial holds SIGTERM from the end of its work until keras-tuner has saved it: a signal
    landing while the run's FINISHED is written waits, and is raised when released."""
    import signal

    from src.core import interrupt

    real = mlflow.MlflowClient.set_terminated

    def signal_while_ending(self, run_id, status=None, end_time=None):
        interrupt._on_signal(signal.SIGTERM, None)  # what the handler does when SIGTERM lands here
        return real(self, run_id, status, end_time)

    monkeypatch.setattr(mlflow.MlflowClient, "set_terminated", signal_while_ending)
    interrupt.reset()
    try:
        if hold:
            with runs.tracked_run("held", experiment_id=experiment, hold_signals_at_end=True):
                pass
            assert _only_run(tracking_uri, experiment).info.status == "FINISHED"
            with pytest.raises(KeyboardInterrupt):
                interrupt.undefer()  # released once the trial is saved: the stop goes on
        else:
            with pytest.raises(KeyboardInterrupt):
                with runs.tracked_run("not held", experiment_id=experiment):
                    pass
            assert _only_run(tracking_uri, experiment).info.status == "RUNNING"  # cut off mid-end: reconcile's
    finally:
        interrupt.reset()
