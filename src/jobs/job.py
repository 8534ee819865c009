"""Opening a job: what every run and study needs before its MLflow run exists.

Light on purpose (no TensorFlow): a study that another process is running, a
stale study state, a broken dataset, a configuration too big for memory or an
unusable store is reported in seconds, before TensorFlow is imported or a run
is created.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from src.config import Config
from src.config.cluster import TunerRole
from src.core import data as data_module
from src.core import memory
from src.jobs import resume, state
from src.jobs.distributed import roles
from src.tracking import owner, reconcile, store


@dataclass
class OpenedJob:
    splits: data_module.Splits
    uri: str
    experiment_id: str
    resuming: bool = False  # a study with saved state to continue
    lock: Optional[owner.OwnerLock] = None  # a study's ownership, held until the command ends

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def owner_lock_path(cfg: Config) -> Path:
    """Beside the study's state directory, not in it: tuner.overwrite=true deletes that."""
    return Path(cfg.tuner.directory).expanduser().resolve() / f"{cfg.tuner.project_name}.lock"


def open_job(cfg: Config) -> OpenedJob:
    """A study's ownership first (a study another live process runs is refused), then the saved
    study state, a Ray cluster that answers, the data, room to train, and the store, with the
    runs of processes that died on this host closed. The caller releases the job when done."""
    owns_study = cfg.tuner is not None and TunerRole(cfg.tuner.role) is not TunerRole.worker
    lock = owner.OwnerLock(owner_lock_path(cfg), f"study {cfg.tuner.project_name}").acquire() if owns_study else None
    try:
        resuming = state.check_resumable(cfg, state.state_dir(cfg)) if cfg.tuner is not None else False
        if cfg.tuner is not None and cfg.tuner.launcher == "ray":
            roles.check_ray_reachable(cfg.tuner.ray_address)
        if owns_study:  # the store before the data: a study running on another host is refused at once
            uri, experiment_id = _open_store(cfg)
            owner.check_study_run(store.client(uri), experiment_id, cfg.tuner.project_name)
            if resuming:  # its tuner state and its runs agree (none deleted behind its back)
                resume.check_records(store.client(uri), uri, experiment_id, cfg, state.state_dir(cfg))
        splits = data_module.load(cfg.data, cfg.seed)
        if resuming and owns_study:  # before any training: the data it started on
            study_run = store.find_study_run(store.client(uri), experiment_id, cfg.tuner.project_name)
            if study_run is not None:
                resume.check_same_data(store.client(uri), cfg, splits, study_run)
        # Refuse a configuration that would not fit before a run exists, rather than be OOM-killed mid-epoch.
        memory.check_fits(cfg.model, cfg.trainer, images=len(splits.x_train) + len(splits.x_val))
        if not owns_study:
            uri, experiment_id = _open_store(cfg)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return OpenedJob(splits, uri, experiment_id, resuming, lock)


def _open_store(cfg: Config):
    uri = store.resolve_uri(cfg.tracking.uri)
    experiment_id = store.ensure_experiment(uri, cfg.tracking.experiment)
    reconcile.close_orphans(store.client(uri))
    return uri, experiment_id
