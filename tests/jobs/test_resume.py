"""A resumed study's inputs and records checked before any training (src/jobs/resume.py,
src/jobs/state.py), through the real command line: data changed since its start, a run
deleted in MLflow behind its back, a tuner state file cut short. docs/faults.md lists each."""
from __future__ import annotations

import pytest

from helpers.cifar import make_synthetic_cifar
from helpers.commands import run_here
from helpers.studies import TRIALS, one_line, roles, runs_of, study

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
