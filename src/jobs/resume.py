"""What a resumed study checks before it trains: its two records agree, and its data is the
data it started on.

The tuner's state (`<tuner.directory>/<project>/`) and the MLflow store are two records
of one study: a run deleted in the UI, or a store that is not the study's, would leave
the study's answer built on part of its trials. And a study resumed on other data
would mix two datasets in one answer. Each is refused in one line naming the run,
file or digest and the way on. Light (no TensorFlow), run by src/jobs/job.py.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from mlflow.data.digest_utils import compute_numpy_digest
from mlflow.entities import ViewType

from src.config import Config
from src.core import data as data_module
from src.jobs.state import RESTART, StudyStateError

log = logging.getLogger(__name__)
DATA_DIGEST_TAG = "data_sha256"  # on a study's parent run, at its start: every array of its splits
SPLITS = {"cifar10-train": ("x_train", "y_train"), "cifar10-validation": ("x_val", "y_val"),
          "cifar10-test": ("x_test", "y_test")}


def data_digest(splits: data_module.Splits) -> str:
    """SHA-256 over every image and label of the splits (~0.5 s for CIFAR-10). MLflow's own
    dataset digest reads only the first 10,000 values of each array (about 3 images)."""
    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        array = getattr(splits, name)
        digest.update(f"{name}{array.shape}{array.dtype}".encode())
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))  # no copy when already contiguous
    return digest.hexdigest()


def study_runs(client, experiment_id: str, project: str) -> list:
    """The study's parent runs, newest first, deleted ones included."""
    return client.search_runs([experiment_id], f"tags.study = '{project}' and tags.study_role = 'parent'",
                              run_view_type=ViewType.ALL, order_by=["attributes.start_time DESC"])


def restore_hint(uri: str, run_id: str) -> str:
    return f"restore it (MLFLOW_TRACKING_URI={uri} mlflow runs restore --run-id {run_id}, or the UI's trash)"


def completed_trials(directory: Path) -> Dict[str, Path]:
    """trial id -> its trial.json, for the trials keras-tuner holds as COMPLETED."""
    done = {}
    for path in sorted(directory.glob("trial_*/trial.json")):
        trial = json.loads(path.read_text())  # readable: state.check_state_files came first
        if trial.get("status") == "COMPLETED":
            done[str(trial["trial_id"])] = path
    return done


def check_records(client, uri: str, experiment_id: str, cfg: Config, directory: Path) -> None:
    """The study's parent run and every trial keras-tuner completed have their runs in MLflow,
    not deleted; else one line naming the run (and how to restore it) or the trial."""
    project, done = cfg.tuner.project_name, completed_trials(directory)
    parents = study_runs(client, experiment_id, project)
    if parents and parents[0].info.lifecycle_stage == "deleted":
        raise StudyStateError(f"study {project}'s run {parents[0].info.run_id} was deleted in MLflow, but its tuner "
                              f"state in {directory} goes on: {restore_hint(uri, parents[0].info.run_id)}, or {RESTART}")
    if not done:
        return  # nothing the study's answer would miss: a new parent run may take over
    if not parents:
        raise StudyStateError(f"study {project} has {len(done)} finished trial(s) in its tuner state in {directory}, "
                              f"but the store {uri} has no run of it (another store, or one replaced): point "
                              f"tracking.uri at the study's store, or {RESTART}")
    trials = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parents[0].info.run_id}' "
                                "and tags.study_role = 'trial'", run_view_type=ViewType.ALL, max_results=50000)
    for trial_id, path in done.items():
        runs = [run for run in trials if run.data.tags.get("trial_id") == trial_id]
        if any(run.info.lifecycle_stage == "active" for run in runs):
            continue
        if runs:
            raise StudyStateError(f"run {runs[-1].info.run_id} (trial {trial_id} of study {project}) was deleted in "
                                  f"MLflow, but the tuner state counts its trial ({path}): without it the study's "
                                  f"answer would leave it out; {restore_hint(uri, runs[-1].info.run_id)}, or {RESTART}")
        raise StudyStateError(f"trial {trial_id} of study {project} is finished in its tuner state ({path}) but has no "
                              f"run in MLflow (deleted for good?): the study's answer would leave it out; {RESTART}")


def check_same_data(client, cfg: Config, splits: data_module.Splits, run_id: str) -> None:
    """The data a resumed study trains on is the data it started on (its parent run's
    `data_sha256`, else MLflow's dataset digests for studies from before that tag)."""
    run = client.get_run(run_id)
    recorded = run.data.tags.get(DATA_DIGEST_TAG)
    if recorded:
        changed = [("data", recorded, data_digest(splits))]
    else:
        changed = [(name, old, new) for name, old, new in _mlflow_digests(run, splits)]
    changed = [(name, old, new) for name, old, new in changed if old != new]
    if changed:
        name, old, new = changed[0]
        raise StudyStateError(
            f"study {cfg.tuner.project_name} started on other data: {name} digest {old[:12]} at its start (run "
            f"{run_id}), {new[:12]} now (data.dir={cfg.data.dir}); a study resumes only on the data it started on: "
            "to study this data pick another tuner.project_name, or pass tuner.overwrite=true to start afresh")


def _mlflow_digests(run, splits: data_module.Splits) -> List[tuple]:
    """(dataset name, digest logged at the start, MLflow's digest of the same split now)."""
    found = []
    for dataset_input in run.inputs.dataset_inputs:
        arrays: Optional[tuple] = SPLITS.get(dataset_input.dataset.name)
        if arrays is None:
            continue
        images, labels = (getattr(splits, name) for name in arrays)
        found.append((dataset_input.dataset.name, dataset_input.dataset.digest,
                      compute_numpy_digest(images, labels.argmax(axis=1))))
    return found
