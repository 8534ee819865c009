"""Opening a job: what every run and study needs before its MLflow run exists.

Light on purpose (no TensorFlow): a stale study state, a broken dataset, a
configuration too big for memory or an unusable store is reported in seconds,
before TensorFlow is imported or a run is created.
"""
from __future__ import annotations

from dataclasses import dataclass

from src.config import Config
from src.core import data as data_module
from src.core import memory
from src.jobs import state
from src.jobs.distributed import roles
from src.tracking import reconcile, store


@dataclass
class OpenedJob:
    splits: data_module.Splits
    uri: str
    experiment_id: str
    resuming: bool = False  # a study with saved state to continue


def open_job(cfg: Config) -> OpenedJob:
    """The saved study state (checked first), a Ray cluster that answers, the data, room
    to train, and the store, with the runs of processes that died on this host closed."""
    resuming = state.check_resumable(cfg, state.state_dir(cfg)) if cfg.tuner is not None else False
    if cfg.tuner is not None and cfg.tuner.launcher == "ray":
        roles.check_ray_reachable(cfg.tuner.ray_address)
    splits = data_module.load(cfg.data, cfg.seed)
    # Refuse a configuration that would not fit before a run exists, rather than be OOM-killed mid-epoch.
    memory.check_fits(cfg.model, cfg.trainer, images=len(splits.x_train) + len(splits.x_val))
    uri = store.resolve_uri(cfg.tracking.uri)
    experiment_id = store.ensure_experiment(uri, cfg.tracking.experiment)
    reconcile.close_orphans(store.client(uri))
    return OpenedJob(splits, uri, experiment_id, resuming)
