"""Who runs what in a distributed study, as pure decisions: the workers' ids and
configs, the chief's address, each worker's GPU, and what to do when a worker
process ends. No processes are started here (src/jobs/distributed/workers.py: on this
machine; src/jobs/distributed/ray_workers.py: on Ray; src/jobs/distributed/worker_process.py: inside one).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
from enum import Enum
from pathlib import Path
from typing import Dict, List, Optional

from src.config import Config, ProjectError
from src.config.cluster import parse_address

CHIEF = "chief"
THREAD_KEYS = ("intra_op_threads", "inter_op_threads")
LOOPBACK = "127.0.0.1"
WILDCARDS = ("0.0.0.0", "::")
READY_SECONDS = 600  # a worker waits at most this long for the others before searching


def worker_ids(count: int) -> List[str]:
    return [f"tuner{index}" for index in range(count)]


def worker_config(cfg: Config, overrides: Optional[list] = None) -> Config:
    """What a worker (and the chief) runs: `tuner.worker_cpus` intra-op threads and one
    inter-op thread where the config says 0 (TensorFlow's default: every core) and the
    command line does not set them, so that workers x threads match the cores; never
    tuner.overwrite (the launcher or the chief has cleared the state once)."""
    given = {item.lstrip("+~").split("=", 1)[0] for item in overrides or []}
    wanted = {"intra_op_threads": cfg.tuner.worker_cpus, "inter_op_threads": 1}
    threads = {key: wanted[key] for key in THREAD_KEYS
               if getattr(cfg.trainer, key) == 0 and f"trainer.{key}" not in given}
    return dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, **threads),
                               tuner=dataclasses.replace(cfg.tuner, overwrite=False))


def with_absolute_paths(cfg: Config, directory: Path) -> Config:
    """The dataset and the state directory as absolute paths: a Ray worker does not run in
    the launcher's working directory."""
    data_dir = str(Path(cfg.data.dir).expanduser().resolve()) if cfg.data.dir else None
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, dir=data_dir),
                               tuner=dataclasses.replace(cfg.tuner, directory=str(directory.parent)))


class WorkerFailed(ProjectError):
    """The chief or a worker of a parallel study exited with an error. Here, beside the
    decisions, so that both launchers (workers.py, ray_workers.py) raise it without
    importing each other."""


class RayUnavailable(ProjectError):
    """The Ray cluster at tuner.ray_address cannot be joined."""


def check_ray_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a Ray cluster that does not answer, before the study's run is opened:
    ray.init retries an unreachable address for minutes."""
    if address in ("local", "auto"):
        return
    host, port = parse_address(address.split("://", 1)[-1], key="tuner.ray_address")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        raise RayUnavailable(f"tuner.ray_address={address} is not reachable ({err}); start the cluster "
                             "(ray start --head) or point tuner.ray_address elsewhere") from None


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def chief_port(cfg: Config) -> int:
    """The port of tuner.chief_address, else a free one (workers started here are told it)."""
    if cfg.tuner.chief_address:
        return parse_address(cfg.tuner.chief_address)[1]
    return free_port(cfg.tuner.bind_host)


def local_connect_host(bind_host: str) -> str:
    """Where a worker on the chief's own machine reaches it."""
    return LOOPBACK if bind_host in WILDCARDS or bind_host == "localhost" else bind_host


def oracle_env(host: str, port: int, tuner_id: str) -> Dict[str, str]:
    """keras-tuner's own distribution variables (keras_tuner.src.distribute), which it
    joins as f"{ip}:{port}" for gRPC: an IPv6 address needs its brackets."""
    ip = f"[{host}]" if ":" in host else host
    return {"KERASTUNER_ORACLE_IP": ip, "KERASTUNER_ORACLE_PORT": str(port), "KERASTUNER_TUNER_ID": tuner_id}


def visible_gpus() -> List[str]:
    """The GPUs this machine lets us use: CUDA_VISIBLE_DEVICES if set (empty = none),
    else what nvidia-smi lists; none without it. Read without TensorFlow, which would
    claim the GPUs in this process."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listed.splitlines() if line.strip()]


def gpu_env(index: int, gpus: List[str], wanted: Optional[int]) -> Dict[str, str]:
    """One GPU per worker where there are GPUs (round-robin when workers outnumber them,
    each then allocating memory as it goes, not all at once); none with tuner.worker_gpus=0."""
    if wanted == 0 or not gpus:
        return {"CUDA_VISIBLE_DEVICES": ""} if wanted == 0 else {}
    return {"CUDA_VISIBLE_DEVICES": gpus[index % len(gpus)], "TF_FORCE_GPU_ALLOW_GROWTH": "true"}


class Exit(str, Enum):
    running = "running"
    done = "done"        # exited 0
    replace = "replace"  # killed by a signal: start another process with the same tuner id
    fail = "fail"        # the study stops


def after_exit(role: str, code: Optional[int], restarts_left: int) -> Exit:
    """A worker killed by a signal (SIGKILL, the out-of-memory killer) is replaced while it
    has restarts left: keras-tuner hands the new process, which has the same tuner id, the
    trial its predecessor was running (Oracle.create_trial returns a tuner id's ongoing
    trial), so the trial is re-run, not lost. A worker that exits with an error code raised
    an error of its own, which another process would only raise again, and the chief holds
    the oracle: either fails the study."""
    if code is None:
        return Exit.running
    if code == 0:
        return Exit.done
    if role != CHIEF and code < 0 and restarts_left > 0:
        return Exit.replace
    return Exit.fail


def describe_exit(code: int) -> str:
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
