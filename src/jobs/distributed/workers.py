"""A study's search in keras-tuner's distributed mode, launched from the study's
own command (`jobs.study.run_study`), which keeps the MLflow parent run open.

keras-tuner runs a chief (`KERASTUNER_TUNER_ID=chief`) that only serves the
oracle over gRPC, and workers (`tuner0`, `tuner1`, ...) that ask it for trials,
train them and report back. The chief is always a child process of this
command, listening on `tuner.bind_host` (127.0.0.1 by default) at the port of
`tuner.chief_address` or a free one. The workers are:

- `tuner.role=all`, `tuner.launcher=local`, `tuner.workers=N`: N child processes here;
- `tuner.launcher=ray`: N Ray tasks on a Ray cluster (src/jobs/distributed/ray_workers.py);
- `tuner.role=chief`: none; workers started elsewhere with `tuner.role=worker` join.

`<state dir>/launch/launch.json` tells the children the parent run id, the
tracking store and the config (one TensorFlow thread per worker unless set,
roles.worker_config). The search is over when every worker has exited 0 (a
worker leaves its search loop only when the oracle answers STOPPED), or, for a
chief started alone, when the chief exits 0 (keras-tuner stops it once every
worker it has seen was told to stop). The launcher then reloads the tuner state
from the directory and goes on as a single-process study does.

A worker killed by a signal (SIGKILL, the out-of-memory killer) is replaced by
a process with the same tuner id, up to `tuner.worker_restarts` times each
(roles.after_exit says why); a process that exits with an error, or the chief
dying, fails the study at once with the tail of its log (`<state dir>/logs/<id>.log`).
On any error, Ctrl-C or SIGTERM every child is terminated (then killed) and
trial runs left RUNNING are closed KILLED; children also stop by themselves if
the launcher dies.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

from omegaconf import OmegaConf

from src.config import Config
from src.config.cluster import TunerLauncher, TunerRole
from src.config.paths import PROJECT_ROOT
from src.core import interrupt
from src.jobs import state
from src.jobs import tuner as tuner_module
from src.jobs.distributed import roles
from src.jobs.distributed.roles import CHIEF, Exit, WorkerFailed, worker_config, worker_ids
from src.jobs.distributed.worker_process import RECORD_MARK, STOP_SECONDS
from src.tracking.reconcile import close_run
from src.tracking.store import child_runs
from src.tracking.store import client as store_client

POLL_SECONDS = 0.5
CHIEF_DONE_GRACE = 15  # workers still starting when the oracle has finished have nothing to do
log = logging.getLogger(__name__)


class Child:
    """One chief or worker process. Its output goes to its log file; its log
    records are also handled here, by this process's logging, as the role's."""

    def __init__(self, role: str, launch_file: Path, env: Dict[str, str], log_path: Path, restarts: int = 0):
        self.role, self.log_path, self.env, self.restarts_left = role, log_path, env, restarts
        self.tail: collections.deque = collections.deque(maxlen=25)
        self.log = log_path.open("a", encoding="utf-8")
        self.log.write(f"\n===== {role} started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        self.log.flush()
        self.process = subprocess.Popen([sys.executable, "-m", "src.jobs.distributed.worker_process", str(launch_file)],
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True, errors="replace")
        self.relay = threading.Thread(target=self._relay, name=f"relay-{role}", daemon=True)
        self.relay.start()

    def _relay(self) -> None:
        for line in self.process.stdout:
            if line.startswith(RECORD_MARK):
                fields = json.loads(line[len(RECORD_MARK):])
                record = logging.makeLogRecord({**fields, "levelname": logging.getLevelName(fields["levelno"])})
                logging.getLogger(fields["name"]).handle(record)
                line = f"{record.levelname} {record.name}: {fields['msg']}\n"
            self.log.write(line)
            self.log.flush()
            self.tail.append(line.rstrip())

    def last_lines(self) -> str:
        self.relay.join(timeout=5)  # read what it printed last
        return "\n  ".join([line for line in self.tail if line.strip()][-15:])

    def failure(self, code: int, why: str = "the study stops") -> str:
        who = "the oracle process (chief)" if self.role == CHIEF else f"worker {self.role}"
        return (f"{who} of the parallel study {roles.describe_exit(code)}; {why}. Last lines of its log "
                f"{self.log_path}:\n  " + self.last_lines())

    def replacement(self, launch_file: Path) -> "Child":
        self.close()
        return Child(self.role, launch_file, self.env, self.log_path, self.restarts_left - 1)

    def close(self) -> None:
        self.relay.join(timeout=5)
        if not self.log.closed:
            self.log.close()


def check_chief(chief: Child) -> bool:
    """Raise if the chief died; True once it has exited 0 (the search is over)."""
    code = chief.process.poll()
    if code not in (None, 0):
        interrupt.check()  # it was our own Ctrl-C/SIGTERM: the study ends KILLED
        raise WorkerFailed(chief.failure(code))
    return code == 0


def wait_for_search(children: Dict[str, Child], workers: List[str], launch_file: Path) -> None:
    """Returns when every worker has exited 0, replacing those killed by a signal while they
    have restarts left; raises WorkerFailed as soon as a process fails for good."""
    chief_done: Optional[float] = None
    while True:
        for role in workers:
            child = children[role]
            code = child.process.poll()
            decision = roles.after_exit(role, code, child.restarts_left)
            if decision in (Exit.replace, Exit.fail):
                interrupt.check()  # our own Ctrl-C/SIGTERM reached the children too: the study ends KILLED
            if decision is Exit.replace:
                log.warning("worker %s %s (its log: %s); a new %s takes over its trial (%d restart(s) left)",
                            role, roles.describe_exit(code), child.log_path, role, child.restarts_left - 1)
                children[role] = child.replacement(launch_file)
            elif decision is Exit.fail:
                why = "the study stops" if code > 0 else "it has no restarts left (tuner.worker_restarts); the study stops"
                raise WorkerFailed(child.failure(code, why))
        if all(children[w].process.poll() == 0 for w in workers):
            return
        if check_chief(children[CHIEF]):  # the oracle saw every trial end; whoever is left never got one
            chief_done = chief_done or time.monotonic()
            if time.monotonic() - chief_done > CHIEF_DONE_GRACE:
                return
        time.sleep(POLL_SECONDS)


def wait_for_chief(chief: Child) -> None:
    """tuner.role=chief: the chief exits 0 once every worker it has seen was told to stop."""
    while not check_chief(chief):
        time.sleep(POLL_SECONDS)


def stop(children: Dict[str, Child]) -> List[str]:
    """SIGTERM every child still running (it ends its trial run KILLED), SIGKILL after
    STOP_SECONDS; returns the roles that had to be stopped."""
    alive = [child for child in children.values() if child.process.poll() is None]
    for child in alive:
        child.process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    try:
        for child in alive:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
    except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
        for child in alive:
            child.process.kill()
        raise
    finally:
        for child in alive:
            if child.process.poll() is None:
                child.process.kill()
            child.process.wait()
        for child in children.values():
            child.close()
    return [child.role for child in alive]


def close_orphan_trials(uri: str, experiment_id: str, parent_run_id: str, finished: bool) -> None:
    """Trial runs whose process could not end them (SIGKILL, a lost node) are closed: when the
    study stops, KILLED with it; when its search has finished, FAILED, as every trial they
    stood for has ended in keras-tuner (a worker that never came back, a chief restarted)."""
    client = store_client(uri)
    for run in child_runs(client, experiment_id, parent_run_id, status="RUNNING", role="trial" if finished else None):
        if finished:
            close_run(client, run, f"the study's search finished without it: its worker "
                                   f"{run.data.tags.get('tuner_worker')} on {run.data.tags.get('host')} is gone")
        else:
            client.set_terminated(run.info.run_id, "KILLED")


def child_env(extra: Dict[str, str]) -> Dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("MLFLOW_RUN_ID",)}
    env.update(PYTHONUNBUFFERED="1", **extra,
               PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])))
    return env


def search(cfg: Config, hypermodel, directory: Path, study_tags: Dict[str, str], parent_run_id: str,
           uri: str, experiment_id: str, overrides: Optional[list] = None):
    """Run the study's search in a chief and its workers (see the module's docstring);
    returns a tuner reloaded from the finished state (in this process, no oracle server)."""
    if cfg.tuner.overwrite:
        shutil.rmtree(directory, ignore_errors=True)
    state.save_state_config(cfg, directory)
    final_cfg = dataclasses.replace(cfg, tuner=dataclasses.replace(cfg.tuner, overwrite=False))
    if not cfg.tuner.overwrite and (directory / "oracle.json").is_file():
        tuner = tuner_module.make_tuner(final_cfg, hypermodel, directory, study_tags)
        if search_is_over(tuner.oracle):
            log.info("the search had ended (%d of %d trials done): no chief or worker started",
                     len(tuner.oracle.trials), tuner.oracle.max_trials)
            return tuner
    launch_dir, log_dir = directory / "launch", directory / "logs"
    shutil.rmtree(launch_dir, ignore_errors=True)
    launch_dir.mkdir(parents=True)
    log_dir.mkdir(exist_ok=True)
    child_cfg = roles.with_absolute_paths(worker_config(cfg, overrides), directory)
    role, launcher = TunerRole(cfg.tuner.role), TunerLauncher(cfg.tuner.launcher)
    workers = worker_ids(cfg.tuner.workers) if role is TunerRole.all else []
    bind, port = cfg.tuner.bind_host, roles.chief_port(cfg)
    launch = {"launcher_pid": os.getpid(), "config": OmegaConf.to_yaml(OmegaConf.structured(child_cfg)),
              "directory": str(directory), "parent_run_id": parent_run_id, "tracking_uri": uri,
              "experiment_id": experiment_id, "study_tags": study_tags, "workers": workers}
    launch_file = launch_dir / "launch.json"
    launch_file.write_text(json.dumps(launch, indent=2))

    children: Dict[str, Child] = {}
    finished = False
    try:
        # The oracle needs no GPU: leave them all to the workers.
        children[CHIEF] = Child(CHIEF, launch_file, child_env({**roles.oracle_env(bind, port, CHIEF),
                                                               "CUDA_VISIBLE_DEVICES": ""}), log_dir / "chief.log")
        if role is TunerRole.chief:
            log.info("chief listening on %s:%s; start workers with tuner.role=worker tuner.chief_address=%s "
                     "tuner.worker_id=<unique name>; the chief's log is in %s", bind, port,
                     cfg.tuner.chief_address, log_dir)
            wait_for_chief(children[CHIEF])
        elif launcher is TunerLauncher.ray:
            from src.jobs.distributed import ray_workers  # deferred: ray, optional; only tuner.launcher=ray

            ray_workers.run_workers(cfg, child_cfg, launch, port, lambda: check_chief(children[CHIEF]))
        else:
            start_local_workers(children, workers, child_cfg, launch_file, bind, port, log_dir)
            wait_for_search(children, workers, launch_file)
        finished = True
    finally:
        stop(children)
        try:
            close_orphan_trials(uri, experiment_id, parent_run_id, finished)
        except Exception as err:  # never hide the error that stopped the study
            log.error("could not close the stopped workers' trial runs: %s", err)
    return tuner_module.make_tuner(final_cfg, hypermodel, directory, study_tags)


def search_is_over(oracle) -> bool:
    """Whether a reloaded oracle would answer STOPPED to every worker: all of its
    max_trials trials created and ended (keras-tuner's own stop condition, with no
    trial left RUNNING to retry). A resumed study then needs no oracle server and no
    worker (each a process importing TensorFlow). Hyperband (no max_trials) and a grid stopped early by an
    exhausted space still go through them; their oracle stops them at once."""
    ended = {"COMPLETED", "FAILED", "INVALID"}
    return bool(oracle.max_trials) and len(oracle.trials) >= oracle.max_trials and all(
        trial.status in ended for trial in oracle.trials.values())


def start_local_workers(children: Dict[str, Child], workers: List[str], child_cfg: Config, launch_file: Path,
                        bind: str, port: int, log_dir: Path) -> None:
    host, gpus = roles.local_connect_host(bind), roles.visible_gpus()
    for index, role in enumerate(workers):
        env = child_env({**roles.oracle_env(host, port, role), **roles.gpu_env(index, gpus, child_cfg.tuner.worker_gpus)})
        children[role] = Child(role, launch_file, env, log_dir / f"{role}.log", child_cfg.tuner.worker_restarts)
    gpu_note = f", GPUs {', '.join(gpus)} shared round-robin" if gpus and child_cfg.tuner.worker_gpus != 0 else ""
    log.info("oracle on %s:%s, workers %s (%s TensorFlow thread(s) each%s); their logs in %s",
             bind, port, ", ".join(workers), child_cfg.trainer.intra_op_threads or "all", gpu_note, log_dir)

