"""`+launcher=ray`: a Hydra multirun as Ray tasks on a local Ray instance,
grouped under one MLflow sweep parent like the other launchers."""
from __future__ import annotations

import pytest

from helpers.sweeps import RAY_MISSING, ray_multirun

pytestmark = [
    pytest.mark.slow,  # starts a Ray cluster's processes
    pytest.mark.skipif(RAY_MISSING, reason="ray / hydra-ray-launcher not installed (pip install -e '.[ray]')"),
]






def test_four_job_multirun_on_a_local_ray_instance(synthetic_cifar, tracking_uri, tmp_path):
    ray_multirun(synthetic_cifar, tracking_uri, tmp_path)


