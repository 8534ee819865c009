"""Opening a job (src/jobs/job.py): what every run and study needs before its MLflow run exists."""
from __future__ import annotations

import pytest

from src.core import memory
from src.jobs import job
from src.tracking import owner

from helpers.configs import composed
from helpers.stores import all_runs


def _study(synthetic_cifar, tracking_uri, tmp_path, *extra):
    return composed("+experiment=tune_random", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
                    f"tuner.directory={tmp_path / 'tuner'}", "data.cache=false", *extra)


def test_a_study_is_opened_with_its_data_and_store_and_owned_until_released(synthetic_cifar, tracking_uri, tmp_path):
    cfg = _study(synthetic_cifar, tracking_uri, tmp_path)
    opened = job.open_job(cfg)
    try:
        assert not opened.resuming and opened.uri == tracking_uri and opened.experiment_id
        assert len(opened.splits.x_train) + len(opened.splits.x_val) == 200  # the synthetic training batches
        with pytest.raises(owner.Busy, match=f"study {cfg.tuner.project_name} is running"):
            job.open_job(cfg)  # a second command on the same study, while the first holds it
    finally:
        opened.release()
    job.open_job(cfg).release()  # free again once released
    assert all_runs(tracking_uri) == []  # opening creates no run


def test_a_configuration_too_big_is_refused_before_any_run_and_releases_the_study(synthetic_cifar, tracking_uri,
                                                                                  tmp_path):
    cfg = _study(synthetic_cifar, tracking_uri, tmp_path, "model.filters=[8192,16384,32768]")
    with pytest.raises(memory.MemoryBudgetError, match="model.filters"):
        job.open_job(cfg)
    job.open_job(_study(synthetic_cifar, tracking_uri, tmp_path)).release()  # the refusal released its lock
    assert all_runs(tracking_uri) == []
