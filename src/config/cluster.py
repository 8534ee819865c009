"""Where a study's keras-tuner processes run: the keys of `tuner` that place the
chief and the workers, and their checks.

keras-tuner's distributed mode has one chief (the oracle, serving trials over
gRPC) and workers that ask it for trials. `tuner.role` says which part this
command plays: `all` (the default: the whole study, with `tuner.workers`
workers started by this command on this machine or, with
`tuner.launcher=ray`, on a Ray cluster), `chief` or `worker` (one part each,
started by a scheduler such as SLURM on different nodes). Checked with the
rest of the config, before any data is read or TensorFlow is imported.
"""
from __future__ import annotations

import importlib.util
import ipaddress
import re
from enum import Enum
from typing import Tuple

from src.config.errors import fail as _fail


class TunerRole(str, Enum):
    all = "all"        # this command runs the whole study (and starts its own workers, if any)
    chief = "chief"    # only the oracle and the study's MLflow run; workers come from elsewhere
    worker = "worker"  # only trials, handed out by the chief at tuner.chief_address


class TunerLauncher(str, Enum):
    local = "local"  # worker processes on this machine
    ray = "ray"      # one Ray task per worker on a Ray cluster (the chief stays here)


# keras-tuner takes any tuner id containing "chief" for the chief (keras_tuner.src.distribute.utils).
_WORKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?")


def valid_host(host: str) -> bool:
    """A host name or an IPv4/IPv6 address (without brackets)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST.fullmatch(host)) and not host.replace(".", "").isdigit()


def parse_address(address: str, key: str = "tuner.chief_address") -> Tuple[str, int]:
    """'host:port' (IPv6 as '[::1]:port') -> (host, port); a one-line ConfigError otherwise."""
    allowed = "host:port with a port in 1-65535, e.g. node001:7777 or [::1]:7777"
    if key == "tuner.ray_address":
        allowed = "local, auto, host:port (the head's GCS, e.g. head-host:6379) or ray://host:port"
    host, sep, port = str(address).strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:  # an IPv6 address without brackets: its last group would be read as the port
        _fail(key, address, allowed)
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535 or not host or not valid_host(host):
        _fail(key, address, allowed)
    return host, int(port)


def check(tuner) -> None:
    """The role, launcher and address keys of a TunerConfig, alone and together."""
    role, launcher = TunerRole(tuner.role), TunerLauncher(tuner.launcher)
    if tuner.chief_address is not None:
        parse_address(tuner.chief_address)
    if not valid_host(tuner.bind_host):
        _fail("tuner.bind_host", tuner.bind_host,
              "a host name or IP address the chief listens on: 127.0.0.1 (this machine only), "
              "0.0.0.0 (every interface) or one interface's address")
    if tuner.worker_cpus < 1:
        _fail("tuner.worker_cpus", tuner.worker_cpus, "an integer >= 1 (CPU cores per worker)")
    if tuner.worker_gpus not in (None, 0, 1):
        _fail("tuner.worker_gpus", tuner.worker_gpus, "null (one each where GPUs are present), 0 or 1")
    if tuner.worker_restarts < 0:
        _fail("tuner.worker_restarts", tuner.worker_restarts,
              "an integer >= 0 (times each worker killed by a signal is replaced)")
    if tuner.budget_minutes is not None and distributed(tuner):
        # the chief's oracle hands out the trials, and it has no budget: one line, not a budget ignored
        _fail("tuner.budget_minutes", tuner.budget_minutes, "null in a parallel study (tuner.workers > 1, a "
              "tuner.role or tuner.launcher=ray), where no budget is applied yet; or tuner.workers=1")
    if role is not TunerRole.all:
        if tuner.chief_address is None:
            _fail("tuner.chief_address", None, f"host:port with tuner.role={role.value}: the address "
                  "the chief listens on (its port) and the workers connect to")
        if launcher is not TunerLauncher.local:
            _fail("tuner.launcher", launcher.value, f"local with tuner.role={role.value}: "
                  "a Ray study is started whole, with tuner.role=all")
        if tuner.workers != 1:
            _fail("tuner.workers", tuner.workers, f"1 with tuner.role={role.value}: a chief or a worker "
                  "started by hand is one process; start one command per worker")
    if role is TunerRole.worker:
        if tuner.worker_id is None or not _WORKER_ID.fullmatch(tuner.worker_id) or "chief" in tuner.worker_id:
            _fail("tuner.worker_id", tuner.worker_id, "a name unique in the study with tuner.role=worker "
                  "(letters, digits, _ . -, without 'chief'), e.g. tuner$SLURM_PROCID")
        if tuner.overwrite:
            _fail("tuner.overwrite", True, "false with tuner.role=worker: only the chief may clear the study's state")
    elif tuner.worker_id is not None:
        _fail("tuner.worker_id", tuner.worker_id, "null unless tuner.role=worker (the launcher names its workers)")
    if launcher is TunerLauncher.ray:
        if importlib.util.find_spec("ray") is None:
            _fail("tuner.launcher", launcher.value, "local: Ray is not installed (pip install -e '.[ray]')")
        if tuner.ray_address not in ("local", "auto"):
            parse_address(tuner.ray_address.split("://", 1)[-1] if tuner.ray_address.startswith("ray://")
                          else tuner.ray_address, key="tuner.ray_address")
    elif tuner.ray_address != "local":
        _fail("tuner.ray_address", tuner.ray_address, "local (the default) unless tuner.launcher=ray")


def distributed(tuner) -> bool:
    """Whether the study runs keras-tuner's chief/worker protocol (else all in this process)."""
    return (tuner.workers > 1 or TunerRole(tuner.role) is not TunerRole.all
            or TunerLauncher(tuner.launcher) is TunerLauncher.ray)
