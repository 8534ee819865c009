"""`tuner.launcher=ray`: a study's keras-tuner workers as Ray tasks on a Ray cluster
(a head started with `ray start --head` on 127.0.0.1, as a cluster's node would be),
the chief with the launcher, every trial in the one study run on the team's tracking
server (PostgreSQL behind `mlflow server` with basic auth: conftest's `mlflow_server`).
One worker is killed with SIGKILL mid-trial: Ray runs it again (max_retries) and the
study finishes with every trial once."""
from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_workers import KILL, check_killed_trial_rerun_once, kill_one_worker, study_runs

from helpers.commands import run_cli
from helpers.sweeps import TINY_STUDY, processes_using, stop

pytestmark = [
    pytest.mark.slow,  # starts a Ray cluster's processes
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed (pip install -e '.[ray]')"),
]
EXPERIMENT = "ray_study"


@pytest.fixture
def ray_head():
    """Starts a one-node Ray cluster on 127.0.0.1 with the given environment (what its
    workers inherit, as on a real node); returns its address. Stops only its own processes
    (`ray stop` would stop every Ray instance on the machine)."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must stay under 107 characters

    def start(env: dict) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        subprocess.run([str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}",
                        "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false",
                        "--disable-usage-stats", f"--temp-dir={temp}"],
                       env=env, check=True, capture_output=True, text=True, timeout=180)
        return f"127.0.0.1:{port}"

    try:
        yield start
    finally:
        stop(processes_using(temp))
        shutil.rmtree(temp, ignore_errors=True)


def test_two_ray_workers_run_one_study_on_the_server_and_survive_a_killed_worker(ray_head, mlflow_server,
                                                                                  synthetic_cifar, tmp_path,
                                                                                  monkeypatch):
    uri = mlflow_server.uri
    for name, value in mlflow_server.env.items():  # for this test's own MLflow client
        monkeypatch.setenv(name, value)
    # Ray's token authentication, with this cluster's own token (not the user's ~/.ray/auth_token)
    ray_auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    node_env = {**os.environ, **mlflow_server.env, **ray_auth, **kill_one_worker(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    address = ray_head(node_env)
    args = [a for a in TINY_STUDY if a != "+experiment=tune_random"]
    result = run_cli("+experiment=tune_random", f"tracking.experiment={EXPERIMENT}", *args, *KILL,
                     f"data.dir={synthetic_cifar}", f"tracking.uri={uri}", f"tuner.directory={tmp_path / 'tuner'}",
                     "tuner.launcher=ray", f"tuner.ray_address={address}", env={**mlflow_server.env, **ray_auth},
                     timeout=500)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr  # the study's log records, and Ray's relay of its workers' output
    assert "workers tuner0, tuner1 on Ray" in output, output[-3000:]
    killed = check_killed_trial_rerun_once(uri, tmp_path, EXPERIMENT)
    assert f"[study {killed.data.tags['tuner_worker']}] replaces a worker" in output
    _, _, trials = study_runs(uri, EXPERIMENT)
    assert {t.data.tags["tuner_worker"] for t in trials} == {"tuner0", "tuner1"}
    assert {t.data.params["trainer.intra_op_threads"] for t in trials if "trainer.intra_op_threads" in t.data.params} \
        == {"1"}  # tuner.worker_cpus=1: one TensorFlow thread in each 1-CPU Ray task
