"""`tuner.launcher=ray`: a study's keras-tuner workers as Ray tasks on a Ray
cluster's nodes; the chief (the oracle) stays with the launching command
(src/jobs/distributed/workers.py), and every trial is a child of its one MLflow study run.

Ray does the placing, with its own APIs: `ray.init(address=tuner.ray_address)`,
a placement group of one bundle per worker (`tuner.worker_cpus` CPUs and, where
the cluster has GPUs, one GPU each; strategy SPREAD, so workers go to different
nodes where they can) so that all the workers start together or the study stops
with a clear error, and one task per worker in its own process (`max_calls=1`:
TensorFlow's thread pools are fixed per process). Ray sets each task's
CUDA_VISIBLE_DEVICES to the GPU it assigned. A worker whose process dies
(SIGKILL, the out-of-memory killer, a lost node) is re-run by Ray
(`max_retries=tuner.worker_restarts`) under the same tuner id, which keras-tuner
answers with the trial the dead process was running; an exception in a worker is
not retried and fails the study. Ray forwards the workers' output to this
command's console and keeps it in its logs on each node.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import time
from typing import Callable, Dict, List

# Before Ray reads it (at import): its log deduplication would merge the workers' trial lines
# ("[study tuner0] trial 3 ... [repeated 2x across cluster]"), each of which is news.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import mlflow  # noqa: E402
import ray  # noqa: E402
from ray.util.placement_group import placement_group, remove_placement_group  # noqa: E402
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy  # noqa: E402

from src.config import Config, ConfigError  # noqa: E402
from src.config.cluster import parse_address  # noqa: E402
from src.core import data as data_module  # noqa: E402
from src.core import interrupt  # noqa: E402
from src.jobs.distributed import roles  # noqa: E402

POLL_SECONDS = 0.5
PLACEMENT_SECONDS = 120  # for the cluster to find room for every worker at once
CHIEF_DONE_GRACE = 15
log = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class StartLine:
    """The workers start searching together: keras-tuner gives trials to whoever asks first,
    and a worker whose process Ray started a little later would find none left in a short
    study. A worker re-run after a crash finds the line already crossed."""

    def __init__(self, workers: List[str]):
        self.waiting = set(workers)

    def arrive(self, worker: str) -> bool:
        self.waiting.discard(worker)
        return not self.waiting


def wait_at(start_line, tuner_id: str) -> None:
    deadline = time.monotonic() + roles.READY_SECONDS
    while not ray.get(start_line.arrive.remote(tuner_id)) and time.monotonic() < deadline:
        time.sleep(0.2)


def worker_task(launch: Dict, tuner_id: str, host: str, port: int, start_line) -> Dict[str, str]:
    """One keras-tuner worker, inside its Ray task's process."""
    os.environ.update(roles.oracle_env(host, port, tuner_id))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from src.jobs.distributed import worker_process  # deferred: TensorFlow reads its log level, set above, once

    worker_process.log_to(sys.stderr, logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    cfg = worker_process.load_config(launch["config"])
    worker_process.prepare_process(cfg)
    splits = data_module.load(cfg.data, cfg.seed)
    mlflow.set_tracking_uri(launch["tracking_uri"])
    mlflow.set_experiment(experiment_id=launch["experiment_id"])
    worker_process.work(cfg, splits, launch["study_tags"], launch["parent_run_id"], tuner_id,
                        wait_for_others=lambda: wait_at(start_line, tuner_id))
    return {"host": socket.gethostname(), "gpus": os.environ.get("CUDA_VISIBLE_DEVICES", "")}


def chief_host(cfg: Config) -> str:
    """The address Ray's workers connect to: tuner.chief_address's host, else the bind address
    (this node's address as Ray knows it when the chief binds every interface)."""
    if cfg.tuner.chief_address:
        return parse_address(cfg.tuner.chief_address)[0]
    if cfg.tuner.bind_host in roles.WILDCARDS:
        return ray.util.get_node_ip_address()
    return roles.local_connect_host(cfg.tuner.bind_host)


def check_reachable(cfg: Config, host: str) -> None:
    """A chief on the loopback interface is out of reach of every other node."""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        return
    here = {ray.util.get_node_ip_address(), "127.0.0.1"}
    others = sorted({node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]} - here)
    if others:
        raise ConfigError(f"tuner.bind_host={cfg.tuner.bind_host!r} is not allowed: expected an address that the Ray "
                          f"cluster's other nodes ({', '.join(others)}) can reach, e.g. tuner.bind_host=0.0.0.0")


def place(cfg: Config, child_cfg: Config):
    """A placement group with one bundle per worker; returns it and each worker's GPU count."""
    gpus = cfg.tuner.worker_gpus
    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    cpus = max(cfg.tuner.worker_cpus, child_cfg.trainer.intra_op_threads)
    bundle = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    group = placement_group([bundle] * cfg.tuner.workers, strategy="SPREAD")
    ready, _ = ray.wait([group.ready()], timeout=PLACEMENT_SECONDS)
    if not ready:
        remove_placement_group(group)
        have = {key: ray.cluster_resources().get(key, 0) for key in ("CPU", "GPU")}
        raise ConfigError(f"tuner.workers={cfg.tuner.workers} is not allowed on this Ray cluster: expected workers x "
                          f"{bundle} to fit at once within {PLACEMENT_SECONDS} s, and the cluster has {have}; "
                          "lower tuner.workers or tuner.worker_cpus, or set tuner.worker_gpus=0")
    return group, cpus, gpus


def run_workers(cfg: Config, child_cfg: Config, launch: Dict, port: int, chief_finished: Callable[[], bool]) -> None:
    """Connect to Ray, run the workers, and return when they have all finished (or the chief
    has, and the rest never got a trial); WorkerFailed as soon as one fails for good."""
    try:
        ray.init(address=cfg.tuner.ray_address, include_dashboard=False if cfg.tuner.ray_address == "local" else None)
    except (ConnectionError, RuntimeError, ValueError) as err:  # not an OSError of the tracking store's
        first = (str(err).strip() or type(err).__name__).splitlines()[0]
        raise roles.RayUnavailable(f"cannot join the Ray cluster at tuner.ray_address={cfg.tuner.ray_address} ({first}); "
                             "check the address, and for a cluster with token authentication (Ray's default) set "
                             "RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN or ~/.ray/auth_token)") from None
    interrupt.install()  # ray.init replaces this process's SIGTERM handler
    refs: Dict[ray.ObjectRef, str] = {}
    group = None
    try:
        host = chief_host(cfg)
        check_reachable(cfg, host)
        group, cpus, gpus = place(cfg, child_cfg)
        task, start_line = ray.remote(max_calls=1)(worker_task), StartLine.remote(launch["workers"])
        for index, tuner_id in enumerate(launch["workers"]):
            refs[task.options(name=f"keras-tuner {tuner_id}", num_cpus=cpus, num_gpus=gpus,
                              max_retries=cfg.tuner.worker_restarts, retry_exceptions=False,
                              scheduling_strategy=PlacementGroupSchedulingStrategy(group, index)
                              ).remote(launch, tuner_id, host, port, start_line)] = tuner_id
        log.info("oracle on %s:%s; workers %s on Ray (%s), %d CPU(s) and %d GPU(s) each",
                 host, port, ", ".join(launch["workers"]), ray.get_runtime_context().gcs_address, cpus, gpus)
        wait(refs, chief_finished, roles.WorkerFailed)
    finally:
        stop(list(refs))
        if group is not None:
            remove_placement_group(group)
        ray.shutdown()


def wait(refs: Dict, chief_finished: Callable[[], bool], failed: type) -> None:
    pending: List = list(refs)
    chief_done = None
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
        for ref in done:
            try:
                where = ray.get(ref)
            except ray.exceptions.RayError as err:
                interrupt.check()
                lines = [line for line in str(err).splitlines() if line.strip()][-12:]
                raise failed(f"worker {refs[ref]} of the parallel study failed on Ray "
                             f"({type(err).__name__}); the study stops:\n  " + "\n  ".join(lines)) from None
            log.info("worker %s on %s is done (GPUs: %s)", refs[ref], where["host"], where["gpus"] or "none")
        if pending and chief_finished():  # the oracle saw every trial end; whoever is left never got one
            chief_done = chief_done or time.monotonic()
            if time.monotonic() - chief_done > CHIEF_DONE_GRACE:
                return


def stop(refs: List) -> None:
    """Cancel unfinished workers: KeyboardInterrupt first (their trial runs end KILLED),
    then, after 30 s, Ray kills their processes."""
    pending = ray.wait(refs, num_returns=len(refs), timeout=0)[1] if refs else []
    for ref in pending:
        ray.cancel(ref)
    if pending:
        pending = ray.wait(pending, num_returns=len(pending), timeout=30)[1]
        for ref in pending:
            ray.cancel(ref, force=True)
