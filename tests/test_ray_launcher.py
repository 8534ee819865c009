"""`+launcher=ray`: a Hydra multirun as Ray tasks on a local Ray instance,
grouped under one MLflow sweep parent like the other launchers."""
from __future__ import annotations

import importlib.util
import shutil
import tempfile
import time

import psutil
import pytest
from test_sweep import TINY, sweep_runs

from helpers import run_cli

RAY_MISSING = (importlib.util.find_spec("ray") is None
               or importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None)
pytestmark = [
    pytest.mark.slow,  # starts a Ray cluster's processes
    pytest.mark.skipif(RAY_MISSING, reason="ray / hydra-ray-launcher not installed (pip install -e '.[ray]')"),
]


def processes_using(path: str) -> list:
    """Ray's own processes (raylet, gcs_server, workers) name its temp dir on their command line."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(path in arg for arg in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def stop(processes: list) -> None:
    for proc in processes:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(processes, timeout=10)


def test_four_job_multirun_on_a_local_ray_instance(synthetic_cifar, tracking_uri, tmp_path):
    ray_multirun(synthetic_cifar, tracking_uri, tmp_path)


def ray_multirun(synthetic_cifar, tracking_uri, tmp_path):
    """A four-job sweep on a local Ray instance, checked; also run against the
    PostgreSQL-backed server (tests/test_tracking_server.py)."""
    # A short temp dir of its own: Ray's unix socket paths must stay under 107
    # characters, and it tells Ray's processes apart from any others here.
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    sweep_dir = tmp_path / "sweep"
    try:
        result = run_cli("-m", "+launcher=ray", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
                         "tracking.experiment=ray", f"hydra.sweep.dir={sweep_dir}", *TINY, "seed=1,2,3,4",
                         # a local instance bound to loopback, without the dashboard
                         "hydra.launcher.ray.init.address=null",
                         "+hydra.launcher.ray.init._node_ip_address=127.0.0.1",
                         "+hydra.launcher.ray.init.include_dashboard=false",
                         f"+hydra.launcher.ray.init._temp_dir={ray_tmp}",
                         timeout=400)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Started a local Ray instance" in result.stderr + result.stdout

        parents, children = sweep_runs(tracking_uri, "ray")
        assert len(parents) == 1 and len(children) == 4
        parent = parents[0]
        assert parent.info.status == "FINISHED" and parent.data.metrics["jobs_finished"] == 4
        assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
        assert {c.info.status for c in children} == {"FINISHED"}
        assert sorted(c.info.run_name for c in children) == [f"f8-16_d0.5_e1_s{seed}" for seed in (1, 2, 3, 4)]
        assert {c.data.params["trainer.intra_op_threads"] for c in children} == {"1"}

        # The driver shut its Ray instance down on exit: nothing of it is left running.
        deadline = time.monotonic() + 15
        while processes_using(ray_tmp) and time.monotonic() < deadline:
            time.sleep(0.5)
        leftovers = processes_using(ray_tmp)
        assert not leftovers, [" ".join(p.cmdline()[:3]) for p in leftovers]
    finally:
        stop(processes_using(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)
