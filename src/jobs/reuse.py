"""Reuse, not retrain: a confirmation run whose recipe the store already holds, finished.

A confirmation run's recipe is everything that sets its numbers: the resolved configuration
(model, trainer with its resolved precision, data split, seed, epochs), the weights it is
scored with (its best validation epoch, by the study's objective), a digest of every image of
its splits, and the machine's CPU (float32 results differ between CPU kinds: 0.6904 on a Zen 4,
0.6860 on a Zen 3). Its SHA-256 is the run's tag `recipe`. Before training one, the study looks
for a FINISHED confirmation run of the same recipe in any experiment of the store (the baseline
configuration's seeds are the same in every study that shares a trainer setting); if there is
one, a child run of this study takes its params, metric histories and test predictions, tagged
`reused_from` with the source's run id, so the study's run list stays complete. MLflow has no
run copy; this is the few lines it takes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
import weakref
from typing import Dict, Optional

import mlflow
from mlflow.entities import Metric

from src.config import Config, machine
from src.config.schema import is_hyperparameter
from src.core import data as data_module
from src.jobs import resume
from src.tracking.runs import flatten, tracked_run

log = logging.getLogger(__name__)
RECIPE_TAG, REUSED_FROM = "recipe", "reused_from"
WEIGHTS = "best validation epoch"
_DIGESTS: Dict[int, str] = {}  # id(splits) -> data digest: once per process, not per run


def recipe(run_cfg: Config, splits: data_module.Splits, objective: str) -> str:
    if id(splits) not in _DIGESTS:
        _DIGESTS[id(splits)] = resume.data_digest(splits)
        # Forgotten with the splits: a later object given the same id must not inherit this digest.
        weakref.finalize(splits, _DIGESTS.pop, id(splits), None)
    # Where the data is cached changes no number.
    config = {key: value for key, value in flatten(dataclasses.asdict(run_cfg)).items()
              if is_hyperparameter(key) and not key.startswith("data.cache")}
    config.update({"weights": WEIGHTS, "objective": objective, "data": _DIGESTS[id(splits)],
                   "machine": machine.describe()})
    return hashlib.sha256(json.dumps(sorted(config.items())).encode()).hexdigest()


def find(client, digest: str):
    """The earliest FINISHED confirmation run of this recipe in the store, or None."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(experiments, f"tags.{RECIPE_TAG} = '{digest}' and attributes.status = 'FINISHED' "
                               "and tags.study_role = 'confirm'", order_by=["attributes.start_time ASC"],
                               max_results=50)
    originals = [run for run in found if REUSED_FROM not in run.data.tags]
    return (originals or found or [None])[0]


def copy_run(client, source, run_name: str, tags: Dict[str, str], parent_run_id: Optional[str]) -> str:
    """A child run of the active study holding `source`'s params, metric histories and test
    predictions; returns its id."""
    origin = source.data.tags.get(REUSED_FROM, source.info.run_id)
    with tracked_run(run_name, {**tags, REUSED_FROM: origin}, nested=True, parent_run_id=parent_run_id) as run:
        mlflow.log_params(source.data.params)
        metrics = [Metric(key, point.value, point.timestamp, point.step)
                   for key in source.data.metrics for point in client.get_metric_history(source.info.run_id, key)]
        for start in range(0, len(metrics), 1000):  # MLflow's batch limit
            client.log_batch(run.info.run_id, metrics=metrics[start:start + 1000])
        with tempfile.TemporaryDirectory() as folder:
            for item in client.list_artifacts(source.info.run_id, "predictions"):
                mlflow.log_artifact(client.download_artifacts(source.info.run_id, item.path, folder), "predictions")
    return run.info.run_id
