"""Faults from outside the project's processes (issue 33), through the real command line:
a disk that fills mid-study, a dataset changed between a study's start and its resume, a
run deleted in MLflow behind the study's back, a tuner state file cut short. Each gives
one line naming what to do, no traceback, and loses nothing recorded.

docs/faults.md lists each case with what the user sees and what is kept.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest

from src.tracking import disk, store

from helpers.cifar import make_synthetic_cifar
from helpers.commands import run_cli, run_here, start_cli
from helpers.paths import PROJECT_ROOT
from helpers.stores import copy_template_store

TRIALS = 3


def study(synthetic_cifar, uri, tuner_dir, *extra):
    """A tiny random-search study of TRIALS trials of 2 epochs each (40 batches an epoch)."""
    return ("+experiment=tune_random", "tuner.confirm.seeds=0", f"data.dir={synthetic_cifar}", f"tracking.uri={uri}",
            f"tuner.directory={tuner_dir}", f"tuner.max_trials={TRIALS}", "tracking.log_model=false",
            "data.cache=false", "trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=[16]",
            "trainer.batch_size=4", "trainer.steps_per_execution=1", "tuner/search_space=width_dropout_epochs",
            "tuner.search_space.epochs.type=fixed", "tuner.search_space.epochs.value=2", *extra)


def runs_of(uri):
    client = store.client(uri)
    experiment = client.get_experiment_by_name("tune_random")
    return client, client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []


def roles(runs, role):
    return [run for run in runs if run.data.tags.get("study_role") == role]


def one_line(result) -> str:
    """The command's refusal: non-zero, no traceback; the line itself."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return next(line for line in result.stderr.splitlines() if line.startswith("error: "))


# ---- a full disk


@contextlib.contextmanager
def small_disk(path: Path, size: str = "12m"):
    """A tmpfs of `size` at `path` (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root (mount -t tmpfs)")
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path) -> Path:
    """Fill the disk of `folder` to its last byte; returns the file to delete to free it."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:
        with pytest.raises(OSError) as full:
            while True:
                out.write(b"\0" * 65536)
    assert full.value.errno == errno.ENOSPC
    return filler


def wait_for_finished_trials(process, uri, count: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        _, runs = runs_of(uri)
        if len([run for run in roles(runs, "trial") if run.info.status == "FINISHED"]) >= count:
            return
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"no trial finished in time; the command's stderr ends:\n{process.communicate()[1][-3000:]}")


@pytest.mark.slow  # a study in a process of its own, then its resume
def test_a_disk_that_fills_mid_study_is_one_line_and_the_same_command_resumes(tmp_path, synthetic_cifar,
                                                                             template_store):
    with small_disk(tmp_path / "disk") as small:
        copy_template_store(template_store, small / "mlflow.db")
        uri = f"sqlite:///{small / 'mlflow.db'}"
        args = study(synthetic_cifar, uri, small / "tuner", f"hydra.run.dir={tmp_path / 'out'}")
        process = start_cli(*args)
        wait_for_finished_trials(process, uri, 1)
        filler = fill(small)  # the store, its artifacts and the tuner's state: all on this disk
        _, stderr = process.communicate(timeout=300)

        line = one_line(subprocess.CompletedProcess(args, process.returncode, "", stderr))
        assert line.startswith("error: no space left on the disk: could not write "), line
        assert f"free on {small}" in line and "run the same command again: the study resumes" in line, line
        with closing(sqlite3.connect(small / "mlflow.db")) as db:  # SQLite failed the writes, not the database
            assert db.execute("pragma integrity_check").fetchone() == ("ok",)
        _, before = runs_of(uri)
        kept = {run.info.run_id for run in roles(before, "trial") if run.info.status == "FINISHED"}
        assert kept

        filler.unlink()  # space freed: the same command resumes
        resumed = run_here(*args)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        _, after = runs_of(uri)
        parents, trials = roles(after, "parent"), roles(after, "trial")
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        finished = [run.data.tags["trial_id"] for run in trials if run.info.status == "FINISHED"]
        assert sorted(finished) == sorted(set(finished)) and len(finished) == TRIALS, finished
        assert kept <= {run.info.run_id for run in trials if run.info.status == "FINISHED"}  # nothing lost
        assert {run.info.status for run in trials} <= {"FINISHED", "FAILED"}  # the cut-short trial closed
        assert parents[0].data.metrics["trials_finished"] == TRIALS


def fill_but(folder: Path, left: int) -> Path:
    """Fill the disk of `folder` until `left` bytes are free; returns the file to delete."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:
        while disk.free_bytes(folder) > left:
            out.write(b"\0" * min(65536, disk.free_bytes(folder) - left))
    return filler


@pytest.mark.slow  # a run in a process of its own, then the same run again
def test_a_run_that_fills_the_disk_is_one_line_and_runs_again_once_freed(tmp_path, synthetic_cifar, template_store):
    with small_disk(tmp_path / "disk") as small:
        copy_template_store(template_store, small / "mlflow.db")
        uri = f"sqlite:///{small / 'mlflow.db'}"
        args = (f"data.dir={synthetic_cifar}", f"tracking.uri={uri}", "trainer.epochs=2", "trainer.verbose=0",
                "model.filters=[8,16]", "model.dense_units=[16]", "tracking.log_model=true", "data.cache=false",
                "tracking.experiment=disk", f"hydra.run.dir={tmp_path / 'out'}")
        filler = fill_but(small, 320 * 1024)  # room for the run's metrics, not for its model too
        line = one_line(run_cli(*args))
        assert line.startswith("error: no space left on the disk: could not write "), line
        assert f"free on {small}" in line and "run the same command again: the run trains again" in line, line
        with closing(sqlite3.connect(small / "mlflow.db")) as db:
            assert db.execute("pragma integrity_check").fetchone() == ("ok",)

        filler.unlink()
        again = run_here(*args)
        assert again.returncode == 0, again.stderr[-3000:]
        client = store.client(uri)
        runs = client.search_runs([client.get_experiment_by_name("disk").experiment_id])
        assert sorted(run.info.status for run in runs) == ["FAILED", "FINISHED"]  # the first one closed, not lost
        first = next(run for run in runs if run.info.status == "FAILED")
        assert "loss" in first.data.metrics  # what it logged before the disk filled is kept


# ---- inputs changed under a resumed study


@pytest.mark.slow  # a study, then two refused resumes
def test_a_resume_on_changed_data_is_refused_before_training(tmp_path, synthetic_cifar, tracking_uri):
    args = study(synthetic_cifar, tracking_uri, tmp_path / "tuner")
    first = run_here(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    client, runs = runs_of(tracking_uri)
    parent = roles(runs, "parent")[0]
    recorded = parent.data.tags["data_sha256"]
    assert "trainer.resolved" in parent.data.params and parent.data.tags["git_commits"]  # recorded at the start

    make_synthetic_cifar(synthetic_cifar, seed=1)  # a re-built dataset: same layout and shapes, other images
    refused = run_here(*args)
    line = one_line(refused)
    assert f"data digest {recorded[:12]} at its start (run {parent.info.run_id})" in line, line
    assert "now (data.dir=" in line and "tuner.project_name" in line and "tuner.overwrite=true" in line, line
    _, after = runs_of(tracking_uri)
    assert len(after) == len(runs) and client.get_run(parent.info.run_id).info.status == "FINISHED"

    # A study from before the tag: MLflow's own dataset digests are compared instead.
    client.delete_tag(parent.info.run_id, "data_sha256")
    line = one_line(run_here(*args))
    logged = {d.dataset.name: d.dataset.digest for d in client.get_run(parent.info.run_id).inputs.dataset_inputs}
    assert f"cifar10-train digest {logged['cifar10-train']} at its start" in line, line
    assert len(runs_of(tracking_uri)[1]) == len(runs)


# ---- state edited behind the study's back


@pytest.mark.slow  # a study, refused resumes, then a resume once restored
def test_a_run_deleted_in_mlflow_is_named_and_restoring_it_resumes(tmp_path, synthetic_cifar, tracking_uri):
    args = study(synthetic_cifar, tracking_uri, tmp_path / "tuner")
    assert run_here(*args).returncode == 0
    client, runs = runs_of(tracking_uri)
    parent, trial = roles(runs, "parent")[0], roles(runs, "trial")[1]

    client.delete_run(trial.info.run_id)  # as the UI's delete does: soft, restorable
    line = one_line(run_here(*args))
    assert f"run {trial.info.run_id} (trial {trial.data.tags['trial_id']} of study tune_random) was deleted" in line
    assert f"mlflow runs restore --run-id {trial.info.run_id}" in line and "tuner.overwrite=true" in line, line
    client.restore_run(trial.info.run_id)

    client.delete_run(parent.info.run_id)
    line = one_line(run_here(*args))
    assert f"study tune_random's run {parent.info.run_id} was deleted in MLflow" in line, line
    assert f"mlflow runs restore --run-id {parent.info.run_id}" in line, line
    assert len(runs_of(tracking_uri)[1]) == len(runs) - 1  # nothing created meanwhile (the parent is hidden)
    client.restore_run(parent.info.run_id)

    resumed = run_here(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _, after = runs_of(tracking_uri)
    assert [run.info.run_id for run in roles(after, "parent")] == [parent.info.run_id]
    assert len(roles(after, "trial")) == TRIALS


@pytest.mark.slow  # a study, then refused resumes
def test_a_state_file_cut_short_is_named_not_a_json_traceback(tmp_path, synthetic_cifar, tracking_uri):
    directory = tmp_path / "tuner" / "tune_random"
    args = study(synthetic_cifar, tracking_uri, tmp_path / "tuner")
    assert run_here(*args).returncode == 0
    _, runs = runs_of(tracking_uri)
    for name in ("oracle.json", "trial_1/trial.json"):
        path = directory / name
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) // 2])  # what an in-place write cut short by a kill leaves
        line = one_line(run_here(*args))
        assert f"the study's tuner state file {path} is cut short or damaged" in line, line
        assert "tuner.overwrite=true" in line, line
        path.write_bytes(whole)
    trial_file = directory / "trial_1" / "trial.json"
    trial_file.rename(trial_file.with_suffix(".moved"))
    line = one_line(run_here(*args))
    assert f"the study's tuner state lacks {trial_file}" in line, line
    assert len(runs_of(tracking_uri)[1]) == len(runs)  # no run created by any refused command


def test_the_tuners_state_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """keras-tuner's save_json, as the project installs it: a write that fails midway (the
    disk fills, or a kill) leaves the old file as it was and no temporary file behind."""
    from keras_tuner.src import utils

    from src.jobs import state

    monkeypatch.setattr(utils, "save_json", utils.save_json)  # put back whatever was there
    state.save_tuner_json_atomically()
    path = tmp_path / "oracle.json"
    utils.save_json(str(path), {"trials": 1})
    assert json.loads(path.read_text()) == {"trials": 1} and oct(path.stat().st_mode & 0o777) == "0o644"

    def full(_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        utils.save_json(str(path), {"trials": 2, "padding": "x" * 100_000})
    assert json.loads(path.read_text()) == {"trials": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["oracle.json"]


def test_docs_list_each_case():
    table = (PROJECT_ROOT / "docs" / "faults.md").read_text()
    for name in ("test_a_disk_that_fills_mid_study", "test_a_run_that_fills_the_disk", "test_a_resume_on_changed_data",
                 "test_a_run_deleted_in_mlflow", "test_a_state_file_cut_short"):
        assert name in table, name


def test_a_full_disk_while_a_report_is_written_is_one_line(tmp_path, tracking_uri, monkeypatch):
    """src.report writes REPORT.md, CSVs and figures: a full disk there is one line naming the
    place and its free space, as for src.run, not a traceback."""
    import errno

    import pytest

    from src.analysis import report

    def no_space(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "REPORT.md"))

    monkeypatch.setattr(report, "report", no_space)
    with pytest.raises(SystemExit) as ended:
        report.main(["some_study", "--tracking-uri", tracking_uri, "--out", str(tmp_path / "out")])
    line = str(ended.value)
    assert line.startswith("error: ") and "\n" not in line
    assert "free on" in line and "python -m src.report with the same arguments" in line, line
