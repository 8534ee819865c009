"""Shared by the sweep, Ray, distributed and team-server tests: tiny runs and studies,
a sweep's runs in the store, Ray's processes, and a four-job sweep on a local Ray instance."""
from __future__ import annotations

import importlib.util
import shutil
import tempfile
import time

import psutil

from src.tracking import store

from helpers.commands import run_cli

TINY = ("trainer.epochs=1", "trainer.batch_size=32", "tracking.log_model=false", "trainer.verbose=0",
        "model.filters=[8,16]", "model.dense_units=[16]")


TINY_STUDY = ("+experiment=tune_random", "tuner.confirm.seeds=0", "trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=[16]",
              "tuner/search_space=width_dropout_epochs",
              "tuner.search_space.epochs.min=1", "tuner.search_space.epochs.max=2",
              "tuner.search_space.epochs.step=1", "tuner.max_trials=4", "tracking.log_model=false",
              "tuner.workers=2")


def sweep_runs(uri, experiment):
    client = store.client(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


RAY_MISSING = (importlib.util.find_spec("ray") is None
               or importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None)


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
