"""Inside one chief or worker process, without starting one: its log lines for the
launcher, the pause when the oracle has no trial yet, the refusal of a worker whose
config is not the study's, and closing the trial runs a dead worker with the same id left
(moved here from test_roles.py). The processes themselves: test_workers.py."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from src.config import ConfigError
from src.jobs.distributed import worker_process
from src.tracking import store
from src.tracking.runs import flatten, process_tags

from helpers.configs import study_config


def test_a_log_record_becomes_one_marked_json_line_with_its_arguments_applied():
    record = logging.LogRecord("src.jobs.study", logging.WARNING, __file__, 1,
                               "closed %d runs of %s", (2, "tuner1\nnext"), None)
    line = worker_process.RecordLines().format(record)
    assert line.startswith(worker_process.RECORD_MARK) and "\n" not in line
    assert json.loads(line[len(worker_process.RECORD_MARK):]) == {
        "name": "src.jobs.study", "levelno": logging.WARNING, "msg": "closed 2 runs of tuner1\nnext"}


def test_a_worker_pauses_after_an_idle_answer_only_and_gets_the_trial_unchanged(monkeypatch):
    answers = [SimpleNamespace(status="IDLE"), SimpleNamespace(status="RUNNING")]
    asked, slept = [], []

    def create_trial(tuner_id):
        asked.append(tuner_id)
        return answers[len(asked) - 1]

    oracle = SimpleNamespace(create_trial=create_trial)
    monkeypatch.setattr(worker_process.time, "sleep", slept.append)
    worker_process._pause_when_idle(oracle)
    assert oracle.create_trial("tuner1") is answers[0]
    assert slept == [worker_process.IDLE_SECONDS]
    assert oracle.create_trial("tuner1") is answers[1]
    assert slept == [worker_process.IDLE_SECONDS]  # no pause when the oracle hands out a trial
    assert asked == ["tuner1", "tuner1"]


def test_a_worker_with_another_config_than_the_study_is_refused_naming_the_key(tmp_path):
    from types import SimpleNamespace

    from src.jobs.distributed.worker_process import check_same_study

    study = study_config(tmp_path, "tuner.role=chief", "tuner.chief_address=n:1")
    params = flatten(OmegaConf.to_container(OmegaConf.structured(study), enum_to_str=True))
    parent = SimpleNamespace(data=SimpleNamespace(params=params), info=SimpleNamespace(run_id="abc"))
    worker = ("tuner.role=worker", "tuner.chief_address=n:1", "tuner.worker_id=w1")
    check_same_study(study_config(tmp_path, *worker, "trainer.verbose=0", "tuner.worker_cpus=4"), parent)
    with pytest.raises(ConfigError, match=r"^model\.dropout='0\.3' is not allowed: expected '0\.5', the value of "
                                          r"study run abc"):
        check_same_study(study_config(tmp_path, *worker, "model.dropout=0.3"), parent)


def test_a_replacement_worker_closes_its_predecessors_trial_runs_only(tmp_path):

    import psutil

    from src.jobs.distributed.worker_process import close_predecessor_trials

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = store.client(uri)
    experiment = client.create_experiment("study")
    parent = client.create_run(experiment, tags={"study_role": "parent"}).info.run_id
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    start = f"{psutil.Process().create_time():.3f}"

    def trial(worker, pid, process_start, host=socket.gethostname()):
        return client.create_run(experiment, tags={"mlflow.parentRunId": parent, "study_role": "trial",
                                                    "trial_id": "1", "tuner_worker": worker, "host": host,
                                                    "pid": str(pid), "process_start": process_start}).info.run_id

    mine, other = trial("tuner1", dead.pid, start), trial("tuner0", dead.pid, start)
    remote = trial("tuner2", 1, "0", host="another-node")  # a lost node's run: its pid means nothing here
    assert close_predecessor_trials(client, experiment, parent, "tuner1") == [mine]
    assert client.get_run(mine).info.status == "FAILED"
    assert "died in this trial" in client.get_run(mine).data.tags["closed_because"]
    assert client.get_run(other).info.status == "RUNNING"
    assert close_predecessor_trials(client, experiment, parent, "tuner2") == [remote]
    alive = trial("tuner0", os.getpid(), process_tags()["process_start"])
    with pytest.raises(ConfigError, match=r"tuner\.worker_id='tuner0' is not allowed: process \d+ on this host"):
        close_predecessor_trials(client, experiment, parent, "tuner0")
    assert client.get_run(alive).info.status == "RUNNING"
