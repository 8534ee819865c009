"""Parallel keras-tuner workers on this machine: `tuner.workers=N` (N >= 2).

keras-tuner's distributed mode runs the tuner in N + 1 processes: a chief
(`KERASTUNER_TUNER_ID=chief`) that only serves the oracle over gRPC, and
workers (`tuner0`, `tuner1`, ...) that ask it for trials, train them and
report back. The launching process (`python -m src.run ...`, see
`jobs.study.run_study`) keeps the study's MLflow parent run open and starts the
chief and the workers as `python -m src.jobs.workers <launch.json>` on
127.0.0.1 and a free port. `<state dir>/launch/launch.json` tells them the
parent run id, the tracking store and the config (`launch/config.yaml`:
the study's config with one TensorFlow thread per worker unless set); each
worker opens its trials' child runs under that parent.

The search is over when every worker has exited 0 (a worker leaves its
search loop only when the oracle answers STOPPED). The chief is idle then
(it saved its state at every trial's end) and is stopped; the launcher
reloads the tuner state from the directory and goes on as a single-process
study does. A process that exits non-zero fails the study at once, with the
tail of its log (`<state dir>/logs/<id>.log`). On any error, Ctrl-C or
SIGTERM every child is terminated (then killed) and trial runs left RUNNING
are closed KILLED; children also stop by themselves if the launcher dies.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

from omegaconf import OmegaConf

from src.config import Config, ProjectError, validate
from src.config.paths import PROJECT_ROOT
from src.core import interrupt
from src.jobs import state
from src.jobs import tuner as tuner_module

CHIEF = "chief"
HOST = "127.0.0.1"
POLL_SECONDS = 0.5
STOP_SECONDS = 30  # a child gets this long to end its trial run after SIGTERM, then SIGKILL
CHIEF_DONE_GRACE = 15  # workers still starting when the oracle has finished have nothing to do
READY_SECONDS = 600  # a worker waits at most this long for the others before searching
IDLE_SECONDS = 1.0  # a worker's pause when the oracle has no trial for it yet
THREAD_KEYS = ("intra_op_threads", "inter_op_threads")
log = logging.getLogger("src.jobs.study")


class WorkerFailed(ProjectError):
    """The chief or a worker of a parallel study exited with an error."""


def worker_ids(count: int) -> List[str]:
    return [f"tuner{index}" for index in range(count)]


def worker_config(cfg: Config, overrides: Optional[list] = None) -> Config:
    """What the chief and the workers run: one TensorFlow thread each where the
    config says 0 (TensorFlow's default: every core) and the command line does
    not set it, and never tuner.overwrite (the launcher has cleared the state)."""
    given = {item.lstrip("+~").split("=", 1)[0] for item in overrides or []}
    threads = {key: 1 for key in THREAD_KEYS
               if getattr(cfg.trainer, key) == 0 and f"trainer.{key}" not in given}
    return dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, **threads),
                               tuner=dataclasses.replace(cfg.tuner, overwrite=False))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


RECORD_MARK = "\x1e"  # starts a line that carries one log record as JSON


class RecordLines(logging.Formatter):
    """In a chief or worker: each log record as one JSON line on stdout, which the
    launcher turns back into a record (TensorFlow's own output stays plain text)."""

    def format(self, record: logging.LogRecord) -> str:
        return RECORD_MARK + json.dumps({"name": record.name, "levelno": record.levelno,
                                         "msg": record.getMessage()})


def send_records_to_launcher() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(RecordLines())
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("src").setLevel(logging.INFO)


class Child:
    """One chief or worker process. Its output goes to its log file; its log
    records are also handled here, by this process's logging, as the role's."""

    def __init__(self, role: str, launch_file: Path, env: Dict[str, str], log_path: Path):
        self.role, self.log_path = role, log_path
        self.tail: collections.deque = collections.deque(maxlen=25)
        self.log = log_path.open("a", encoding="utf-8")
        self.log.write(f"\n===== {role} started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        self.log.flush()
        self.process = subprocess.Popen([sys.executable, "-m", "src.jobs.workers", str(launch_file)],
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

    def failure(self, code: int) -> str:
        self.relay.join(timeout=5)  # read what it printed last
        who = "the oracle process (chief)" if self.role == CHIEF else f"worker {self.role}"
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        lines = [line for line in self.tail if line.strip()][-15:]
        return (f"{who} of the parallel study {how}; the study stops. Last lines of its log "
                f"{self.log_path}:\n  " + "\n  ".join(lines))

    def close(self) -> None:
        self.relay.join(timeout=5)
        self.log.close()


def wait_for_search(children: Dict[str, Child], workers: List[str]) -> None:
    """Returns when every worker has exited 0; raises WorkerFailed as soon as a process fails."""
    chief_done: Optional[float] = None
    while True:
        codes = {role: child.process.poll() for role, child in children.items()}
        for role, code in codes.items():
            if code not in (None, 0):
                interrupt.check()  # it was our own Ctrl-C/SIGTERM: the study ends KILLED
                raise WorkerFailed(children[role].failure(code))
        if all(codes[role] == 0 for role in workers):
            return
        if codes[CHIEF] == 0:  # the oracle saw every trial end; whoever is left never got one
            chief_done = chief_done or time.monotonic()
            if time.monotonic() - chief_done > CHIEF_DONE_GRACE:
                return
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


def close_orphan_trials(uri: str, experiment_id: str, parent_run_id: str) -> None:
    """Trial runs of stopped workers that could not end themselves (SIGKILL) end KILLED."""
    from mlflow import MlflowClient

    from src.tracking.store import child_runs

    client = MlflowClient(uri)
    for run in child_runs(client, experiment_id, parent_run_id, status="RUNNING"):
        client.set_terminated(run.info.run_id, "KILLED")


def search(cfg: Config, hypermodel, directory: Path, study_tags: Dict[str, str], parent_run_id: str,
           uri: str, experiment_id: str, overrides: Optional[list] = None):
    """Run the study's search in a chief and `tuner.workers` worker processes; returns
    a tuner reloaded from the finished state (in this process, no oracle server)."""
    if cfg.tuner.overwrite:
        shutil.rmtree(directory, ignore_errors=True)
    state.save_state_config(cfg, directory)
    launch_dir, log_dir = directory / "launch", directory / "logs"
    shutil.rmtree(launch_dir, ignore_errors=True)
    launch_dir.mkdir(parents=True)
    log_dir.mkdir(exist_ok=True)
    child_cfg = worker_config(cfg, overrides)
    OmegaConf.save(OmegaConf.structured(child_cfg), launch_dir / "config.yaml")
    workers, port = worker_ids(cfg.tuner.workers), free_port()
    launch_file = launch_dir / "launch.json"
    launch_file.write_text(json.dumps({
        "launcher_pid": os.getpid(), "config": str(launch_dir / "config.yaml"), "directory": str(directory),
        "parent_run_id": parent_run_id, "tracking_uri": uri, "experiment_id": experiment_id,
        "study_tags": study_tags, "workers": workers}, indent=2))
    env = {key: value for key, value in os.environ.items() if key not in ("MLFLOW_RUN_ID",)}
    env.update(KERASTUNER_ORACLE_IP=HOST, KERASTUNER_ORACLE_PORT=str(port), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])))
    threads = child_cfg.trainer.intra_op_threads or "all"
    log.info("oracle on %s:%s, workers %s (%s TensorFlow thread(s) each); their logs in %s",
             HOST, port, ", ".join(workers), threads, log_dir)

    children: Dict[str, Child] = {}
    finished = False
    try:
        for role in [CHIEF, *workers]:
            children[role] = Child(role, launch_file, {**env, "KERASTUNER_TUNER_ID": role},
                                   log_dir / f"{role}.log")
        wait_for_search(children, workers)
        finished = True
    finally:
        stopped = stop(children)
        if not finished or set(stopped) - {CHIEF}:
            try:
                close_orphan_trials(uri, experiment_id, parent_run_id)
            except Exception as err:  # never hide the error that stopped the study
                log.error("could not close the stopped workers' trial runs: %s", err)
    final_cfg = dataclasses.replace(cfg, tuner=dataclasses.replace(cfg.tuner, overwrite=False))
    return tuner_module.make_tuner(final_cfg, hypermodel, directory, study_tags)


# ---- inside a chief or worker process: python -m src.jobs.workers <launch.json> ----

def _exit_with_launcher(launcher_pid: int) -> None:
    """If the launcher dies without stopping us (SIGKILL), stop as on SIGTERM."""
    def watch() -> None:
        while os.getppid() == launcher_pid:
            time.sleep(2)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(STOP_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


def _wait_for_workers(launch_dir: Path, role: str, workers: List[str]) -> None:
    """Start searching together, so that a worker whose TensorFlow starts a little
    late still gets trials."""
    (launch_dir / f"{role}.ready").touch()
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline and not all((launch_dir / f"{w}.ready").exists() for w in workers):
        time.sleep(0.2)


def _pause_when_idle(client) -> None:
    """keras-tuner's search loop asks again at once when the oracle answers IDLE
    (Hyperband waiting for a round to finish, Grid for the last trials): pause
    instead, so that a waiting worker does not keep a core busy."""
    create_trial = client.create_trial

    def create_trial_or_pause(tuner_id):
        trial = create_trial(tuner_id)
        if trial.status == "IDLE":
            time.sleep(IDLE_SECONDS)
        return trial

    client.create_trial = create_trial_or_pause


def child_main(launch_file: str) -> None:
    send_records_to_launcher()
    interrupt.install()
    launch = json.loads(Path(launch_file).read_text())
    _exit_with_launcher(launch["launcher_pid"])
    role = os.environ["KERASTUNER_TUNER_ID"]
    cfg = validate(OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(launch["config"])))

    import keras
    import mlflow

    from src.core import data as data_module
    from src.core import train

    keras.utils.set_random_seed(cfg.seed)
    train.set_threads(cfg.trainer)
    directory = Path(launch["directory"])
    if role == CHIEF:  # serves the oracle until every worker has been told to stop
        tuner = tuner_module.make_tuner(cfg, tuner_module.CifarHyperModel(cfg, None), directory,
                                        launch["study_tags"])
        tuner.search(verbose=1)
        return
    splits = data_module.load(cfg.data, cfg.seed)
    mlflow.set_tracking_uri(launch["tracking_uri"])
    mlflow.set_experiment(experiment_id=launch["experiment_id"])
    tuner = tuner_module.make_tuner(cfg, tuner_module.CifarHyperModel(cfg, splits), directory,
                                    launch["study_tags"], parent_run_id=launch["parent_run_id"])
    _pause_when_idle(tuner.oracle)
    _wait_for_workers(Path(launch_file).parent, role, launch["workers"])
    tuner.search(verbose=1)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        child_main(sys.argv[1])
    except KeyboardInterrupt:
        sys.exit(130)
