"""Faults from outside the project's processes (issue 33), through the real command line:
a disk that fills mid-study or mid-run, or while a report is written. Each gives one line
naming what to do, no traceback, and loses nothing recorded. The resumed study's cases (data
changed, a run deleted in MLflow, a state file cut short) are tests/jobs/test_resume.py's.

docs/faults.md lists each case with what the user sees and what is kept.
"""
from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest

from src.tracking import disk, store

from helpers.commands import run_cli, run_here, start_cli
from helpers.paths import PROJECT_ROOT
from helpers.stores import copy_template_store
from helpers.studies import TRIALS, one_line, roles, runs_of, study

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
