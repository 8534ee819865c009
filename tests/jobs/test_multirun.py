"""Hydra multiruns: every job its own MLflow run, grouped under one sweep parent;
a failing job fails alone."""
from __future__ import annotations

import json

import pytest

from helpers.commands import run_cli, run_here
from helpers.sweeps import TINY, sweep_runs


@pytest.mark.slow  # a multirun of four jobs (joblib: in processes)
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_four_job_multirun_is_grouped_under_one_parent(launcher, synthetic_cifar, tracking_uri, tmp_path):
    sweep_dir = tmp_path / "sweep"
    run = run_here if launcher == "basic" else run_cli  # joblib's workers are processes either way
    result = run("-m", f"+launcher={launcher}", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
                     "tracking.experiment=sweep", f"hydra.sweep.dir={sweep_dir}", *TINY,
                     "model.dropout=0.2,0.4", "seed=1,2")
    assert result.returncode == 0, result.stderr[-3000:]
    parents, children = sweep_runs(tracking_uri, "sweep")
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["jobs_finished"] == 4 and "test_accuracy_std" in parent.data.metrics
    assert json.loads((sweep_dir / "mlflow_sweep.json").read_text())["run_id"] == parent.info.run_id
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.data.tags["sweep"] for c in children} == {parent.data.tags["sweep"]}
    assert {c.info.status for c in children} == {"FINISHED"}
    assert sorted(c.info.run_name for c in children) == [
        "f8-16_d0.2_e1_s1", "f8-16_d0.2_e1_s2", "f8-16_d0.4_e1_s1", "f8-16_d0.4_e1_s2"]
    assert sorted(c.data.tags["sweep_job"] for c in children) == ["0", "1", "2", "3"]
    # Each job's command reproduces that job alone.
    commands = [c.data.tags["command"].split() for c in children]
    assert all(cmd[:3] == ["python", "-m", "src.run"] and "-m" not in cmd[3:] for cmd in commands)
    assert {cmd[-1] for cmd in commands} == {"seed=1", "seed=2"}
    if launcher == "joblib":
        assert {c.data.params["trainer.intra_op_threads"] for c in children} == {"1"}


@pytest.mark.slow  # starts src.run in a process of its own
def test_a_failing_job_fails_alone(synthetic_cifar, tracking_uri, tmp_path):
    result = run_cli("-m", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
                     "tracking.experiment=isolation", f"hydra.sweep.dir={tmp_path / 'sweep'}", *TINY,
                     "trainer.optimizer=sgd", "trainer.learning_rate=0.01,1e6,0.02")
    assert result.returncode != 0  # the multirun reports the failure at the end...
    assert "diverged" in result.stderr and "trainer.learning_rate=1000000.0" in result.stderr
    parents, children = sweep_runs(tracking_uri, "isolation")
    by_lr = {c.data.params["trainer.learning_rate"]: c.info.status for c in children}
    assert by_lr == {"0.01": "FINISHED", "1000000.0": "FAILED", "0.02": "FINISHED"}  # ...after the others ran
    assert parents[0].info.status == "FAILED" and parents[0].data.metrics["jobs_failed"] == 1


@pytest.mark.slow  # starts src.run in a process of its own
def test_an_invalid_sweep_value_fails_that_job_before_any_run(synthetic_cifar, tracking_uri, tmp_path):
    result = run_cli("-m", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
                     "tracking.experiment=invalid", f"hydra.sweep.dir={tmp_path / 'sweep'}", *TINY,
                     "model.dropout=0.3,1.5")
    assert result.returncode != 0
    assert "model.dropout=1.5" in result.stderr and "[0, 1)" in result.stderr
    parents, children = sweep_runs(tracking_uri, "invalid")
    assert [c.data.params["model.dropout"] for c in children] == ["0.3"]
    assert children[0].info.status == "FINISHED"
    assert parents[0].info.status == "FAILED" and parents[0].data.metrics["jobs_failed"] == 1
