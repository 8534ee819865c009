"""Inside one keras-tuner process of a distributed study: the chief, which only
serves the oracle over gRPC, or a worker, which asks it for trials and runs each
as a child run of the study's MLflow run.

A process gets here three ways: started by the launcher on this machine
(`python -m src.jobs.distributed.worker_process <launch.json>`, src/jobs/distributed/workers.py), as a
Ray task (src/jobs/distributed/ray_workers.py), or by hand / by a scheduler as
`python -m src.run ... tuner.role=worker` (`run_worker`). Every worker first
closes the trial runs its own tuner id left RUNNING: those of a process that
died with that id (which it replaces), since keras-tuner hands the new process
the same trial to run again.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import grpc
import keras
import mlflow
from keras_tuner.src.distribute import oracle_chief
from omegaconf import OmegaConf

from src.config import Config, ConfigError, ProjectError, validate
from src.config.cluster import parse_address
from src.config.schema import is_hyperparameter
from src.core import data as data_module
from src.core import interrupt, train
from src.jobs import tuner as tuner_module
from src.jobs.distributed import roles
from src.jobs.state import state_dir
from src.tracking import reconcile
from src.tracking.runs import flatten
from src.tracking.store import child_runs, find_study_run
from src.tracking.store import client as store_client

STOP_SECONDS = 30  # a child gets this long to end its trial run after SIGTERM, then SIGKILL
IDLE_SECONDS = 1.0  # a worker's pause when the oracle has no trial for it yet
RECORD_MARK = "\x1e"  # starts a line that carries one log record as JSON
log = logging.getLogger(__name__)


class RecordLines(logging.Formatter):
    """In a chief or worker: each log record as one JSON line on stdout, which the
    launcher turns back into a record (TensorFlow's own output stays plain text)."""

    def format(self, record: logging.LogRecord) -> str:
        return RECORD_MARK + json.dumps({"name": record.name, "levelno": record.levelno,
                                         "msg": record.getMessage()})


def log_to(stream, formatter: logging.Formatter) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("src").setLevel(logging.INFO)


def load_config(text: str) -> Config:
    return validate(OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(text)))


def prepare_process(cfg: Config) -> None:
    """Seed and size TensorFlow's thread pools (before TensorFlow runs an op)."""
    keras.utils.set_random_seed(cfg.seed)
    train.set_threads(cfg.trainer)


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


class _PromptChiefPoll:
    """Stands in for the `time` module of keras-tuner's oracle_chief. Once the search is
    over, its chief checks only every 20 s whether its last workers are gone
    (`start_server`; keras-tuner PR #983 would make it longer), so a chief started by
    hand or by a scheduler ended up to 20 s after its last worker. Here it checks every
    second: the same condition (keras-tuner's `exit_chief`), looked at sooner."""

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, 1.0))


def close_predecessor_trials(client, experiment_id: str, parent_run_id: str, tuner_id: str) -> List[str]:
    """Close (FAILED) the study's trial runs still RUNNING under this tuner id: a process
    with this id that died (SIGKILL, a lost node) could not end them. Refused if that
    process is alive on this host: two workers must not share an id."""
    closed = []
    for run in child_runs(client, experiment_id, parent_run_id, status="RUNNING", role="trial"):
        tags = run.data.tags
        if tags.get("tuner_worker") != tuner_id:
            continue
        here = tags.get("host") == socket.gethostname()
        if here and reconcile.process_alive(tags.get("pid", ""), tags.get("process_start", "0")):
            raise ConfigError(f"tuner.worker_id={tuner_id!r} is not allowed: process {tags['pid']} on this host "
                              f"is running trial {tags.get('trial_id')} of this study under that id; "
                              "expected an id no running worker has")
        reconcile.close_run(client, run, f"its worker {tuner_id} (process {tags.get('pid')} on {tags.get('host')}) "
                                         f"died in this trial; a new worker {tuner_id} runs it again")
        closed.append(run.info.run_id)
    return closed


def work(cfg: Config, splits, study_tags: Dict[str, str], parent_run_id: Optional[str], tuner_id: str,
         wait_for_others: Optional[Callable[[], None]] = None, find_parent: Optional[Callable[..., str]] = None):
    """Run trials until the oracle says STOPPED. The tuner id and the chief's address are
    already in the environment (roles.oracle_env); the MLflow store and experiment set."""
    tuner = tuner_module.make_tuner(cfg, tuner_module.CifarHyperModel(cfg, splits), state_dir(cfg), study_tags,
                                    parent_run_id=parent_run_id)
    _pause_when_idle(tuner.oracle)
    if find_parent is not None:  # started by hand: the study run exists once the chief answers
        tuner.parent_run_id = find_parent(tuner.oracle)
    client = mlflow.MlflowClient()
    experiment_id = client.get_run(tuner.parent_run_id).info.experiment_id
    for run_id in close_predecessor_trials(client, experiment_id, tuner.parent_run_id, tuner_id):
        log.warning("[study %s] replaces a worker %s that died: closed its trial run %s, whose trial it runs again",
                    tuner_id, tuner_id, run_id)
    if wait_for_others is not None:
        wait_for_others()
    tuner.search(verbose=0)  # as study.search


# ---- started by the launcher on this machine: python -m src.jobs.distributed.worker_process <launch.json> ----

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
    late still gets trials (a replacement finds the others ready)."""
    (launch_dir / f"{role}.ready").touch()
    deadline = time.monotonic() + roles.READY_SECONDS
    while time.monotonic() < deadline and not all((launch_dir / f"{w}.ready").exists() for w in workers):
        time.sleep(0.2)


def child_main(launch_file: str) -> None:
    log_to(sys.stdout, RecordLines())
    interrupt.install()
    launch = json.loads(Path(launch_file).read_text())
    _exit_with_launcher(launch["launcher_pid"])
    role = os.environ["KERASTUNER_TUNER_ID"]
    cfg = load_config(launch["config"])
    prepare_process(cfg)
    if role == roles.CHIEF:  # serves the oracle until every worker has been told to stop
        oracle_chief.time = _PromptChiefPoll
        tuner = tuner_module.make_tuner(cfg, tuner_module.CifarHyperModel(cfg, None), state_dir(cfg),
                                        launch["study_tags"])
        tuner.search(verbose=0)  # as study.search
        return
    splits = data_module.load(cfg.data, cfg.seed)
    mlflow.set_tracking_uri(launch["tracking_uri"])
    mlflow.set_experiment(experiment_id=launch["experiment_id"])
    work(cfg, splits, launch["study_tags"], launch["parent_run_id"], role,
         wait_for_others=lambda: _wait_for_workers(Path(launch_file).parent, role, launch["workers"]))


# ---- started by hand or by a scheduler: python -m src.run ... tuner.role=worker ----

def check_same_study(cfg: Config, parent) -> None:
    """A worker started by hand has its own command line: refuse one whose config differs
    from the study's (the params of its MLflow run) in anything a trial computes with."""
    logged = parent.data.params
    mine = flatten(OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True))
    differs = sorted(key for key, value in mine.items()
                     if is_hyperparameter(key) and key in logged and logged[key] != value)
    if differs:
        key = differs[0]
        raise ConfigError(f"{key}={mine[key]!r} is not allowed: expected {logged[key]!r}, the value of study run "
                          f"{parent.info.run_id} (a worker takes the chief's config; differing keys: "
                          f"{', '.join(differs)})")


def run_worker(cfg: Config, job, config_yaml: str, overrides: Optional[list] = None, **ignored) -> None:
    """`tuner.role=worker`: trials of the study whose chief is at tuner.chief_address,
    each a child of the study's MLflow run (found by its tags once the chief answers)."""
    cfg = roles.worker_config(cfg, overrides)
    host, port = parse_address(cfg.tuner.chief_address)
    os.environ.update(roles.oracle_env(host, port, cfg.tuner.worker_id))
    prepare_process(cfg)
    client, project = store_client(job.uri), cfg.tuner.project_name

    def find_parent(oracle) -> str:
        try:
            oracle.get_space()  # keras-tuner's client waits for the chief to answer (up to an hour)
        except grpc.RpcError as err:
            raise ProjectError(f"the chief at tuner.chief_address={cfg.tuner.chief_address} did not answer "
                               f"({err.code().name}): start it (tuner.role=chief) and check the address") from None
        run_id = find_study_run(client, job.experiment_id, project)
        parent = client.get_run(run_id) if run_id else None
        if parent is None or parent.info.status != "RUNNING":
            raise ProjectError(f"the chief at tuner.chief_address={cfg.tuner.chief_address} answers, but experiment "
                               f"'{cfg.tracking.experiment}' in {job.uri} has no running study run tagged "
                               f"study={project}: give the worker the chief's tracking.uri, tracking.experiment "
                               "and tuner.project_name")
        check_same_study(cfg, parent)
        log.info("[study %s] joined study run %s (chief at %s)", cfg.tuner.worker_id, run_id, cfg.tuner.chief_address)
        return run_id

    log.info("[study %s] waiting for the chief at %s", cfg.tuner.worker_id, cfg.tuner.chief_address)
    mlflow.set_experiment(experiment_id=job.experiment_id)
    study_tags = {"study": project}
    work(cfg, job.splits, study_tags, None, cfg.tuner.worker_id, find_parent=find_parent)
    log.info("[study %s] the chief has no more trials: done", cfg.tuner.worker_id)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        child_main(sys.argv[1])
    except KeyboardInterrupt:
        sys.exit(130)
