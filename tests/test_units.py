"""Fast in-process tests of the pure logic: the leaderboard, resume checks,
worker configuration, and config inheritance (each group's YAML agrees with
its schema; tuner files hold only their kind and budget; experiments only
what they change)."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.analysis import compare
from src.config import ConfigError, register, validate
from src.config import schema as schema_module
from src.jobs import state
from src.tracking import store

from helpers import CONF_DIR

register()


def composed(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return validate(compose(config_name="config", overrides=list(overrides)))


# ---- the leaderboard -------------------------------------------------------

def frame(rows):
    return pd.DataFrame(rows, columns=["run_name", "status", "trial_id", "best_val_accuracy"])


def test_leaderboard_ranks_finished_runs_best_first():
    board = compare.leaderboard(frame([("a", "FINISHED", "0", 0.5), ("b", "FAILED", "1", 0.9),
                                       ("c", "FINISHED", "2", 0.7)]))
    assert list(board["run_name"]) == ["c", "a", "b"]


def test_leaderboard_counts_a_retried_trial_once_by_its_finished_run():
    board = compare.leaderboard(frame([("t1 first try", "FAILED", "1", 0.8), ("t1 again", "FINISHED", "1", 0.6),
                                       ("t2", "FINISHED", "2", 0.5)]))
    assert list(board["run_name"]) == ["t1 again", "t2"]


def test_leaderboard_sorts_a_loss_ascending():
    rows = pd.DataFrame({"run_name": ["a", "b"], "status": ["FINISHED"] * 2, "trial_id": ["0", "1"],
                         "best_val_loss": [0.9, 0.3]})
    assert list(compare.leaderboard(rows, "best_val_loss")["run_name"]) == ["b", "a"]


# ---- resume checks -----------------------------------------------------------

def study_config(tmp_path, *overrides):
    return composed("+experiment=tune_random", f"tuner.directory={tmp_path}", *overrides)


def test_a_fresh_study_does_not_resume(tmp_path):
    cfg = study_config(tmp_path)
    assert state.check_resumable(cfg, state.state_dir(cfg)) is False


def test_saved_state_resumes_with_the_same_config_or_other_execution_settings(tmp_path):
    cfg = study_config(tmp_path)
    directory = state.state_dir(cfg)
    state.save_state_config(cfg, directory)
    (directory / "oracle.json").write_text("{}")
    assert state.check_resumable(cfg, directory) is True
    # Threads, workers, verbosity and tracking do not change what a study computes.
    other = study_config(tmp_path, "tuner.workers=2", "trainer.verbose=0", "trainer.intra_op_threads=1",
                         "tracking.run_name=again")
    assert state.check_resumable(other, directory) is True


def test_saved_state_from_another_config_is_refused_naming_the_difference(tmp_path):
    cfg = study_config(tmp_path)
    directory = state.state_dir(cfg)
    state.save_state_config(cfg, directory)
    (directory / "oracle.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"differs in model\.dense_units.*tuner\.overwrite=true"):
        state.check_resumable(study_config(tmp_path, "model.dense_units=[64]"), directory)
    assert state.check_resumable(study_config(tmp_path, "model.dense_units=[64]", "tuner.overwrite=true"),
                                 directory) is False


# ---- worker configuration ------------------------------------------------------

def test_workers_get_one_thread_each_unless_the_command_line_says_otherwise(tmp_path):
    from src.jobs.distributed import roles

    cfg = study_config(tmp_path, "tuner.workers=2", "tuner.overwrite=true")
    child = roles.worker_config(cfg, overrides=["tuner.workers=2"])
    assert (child.trainer.intra_op_threads, child.trainer.inter_op_threads) == (1, 1)
    assert child.tuner.overwrite is False  # the launcher has cleared the state once
    given = study_config(tmp_path, "tuner.workers=2", "trainer.intra_op_threads=4")
    child = roles.worker_config(given, overrides=["trainer.intra_op_threads=4"])
    assert (child.trainer.intra_op_threads, child.trainer.inter_op_threads) == (4, 1)
    # tuner.worker_cpus sizes each worker (its Ray num_cpus too) where the threads are not set
    wide = study_config(tmp_path, "tuner.workers=2", "tuner.worker_cpus=4")
    assert roles.worker_config(wide, overrides=[]).trainer.intra_op_threads == 4
    assert roles.worker_ids(3) == ["tuner0", "tuner1", "tuner2"]


def test_workers_are_told_absolute_paths_as_they_may_run_elsewhere(tmp_path, monkeypatch):
    from pathlib import Path

    from src.jobs.distributed import roles

    monkeypatch.chdir(tmp_path)
    cfg = composed("+experiment=tune_random", "data.dir=data/cifar", "tuner.directory=out/tuner")
    child = roles.with_absolute_paths(cfg, Path("out/tuner/tune_random").resolve())
    assert child.data.dir == str(tmp_path / "data" / "cifar") and child.tuner.directory == str(tmp_path / "out" / "tuner")
    assert state.state_dir(child) == tmp_path / "out" / "tuner" / "tune_random"


# ---- placing the chief and the workers (tuner.role, tuner.chief_address, ...) ----

@pytest.mark.parametrize("address, expected", [("node001:7777", ("node001", 7777)), ("10.0.0.5:1", ("10.0.0.5", 1)),
                                               ("[::1]:65535", ("::1", 65535)), (" chief.cluster.local:80 ",
                                                                                  ("chief.cluster.local", 80))])
def test_a_chief_address_is_host_and_port(address, expected):
    from src.config.cluster import parse_address

    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["node001", "node001:", ":7777", "node001:0", "node001:65536", "node001:http",
                                     "::1:7777", "no such host:7777", "node001:7777:1"])
def test_a_bad_chief_address_is_refused_naming_it(address):
    from src.config.cluster import parse_address

    with pytest.raises(ConfigError, match=rf"^tuner\.chief_address={re.escape(repr(address))} is not allowed: "
                                          r"expected host:port with a port in 1-65535"):
        parse_address(address)


ROLE_ERRORS = {
    "a worker without the chief's address": (["tuner.role=worker", "tuner.worker_id=a"],
                                             r"tuner\.chief_address=None is not allowed: expected host:port with "
                                             r"tuner\.role=worker"),
    "a chief without an address to listen on": (["tuner.role=chief"], r"tuner\.chief_address=None .*tuner\.role=chief"),
    "a bad address": (["tuner.role=worker", "tuner.chief_address=node1", "tuner.worker_id=a"],
                      r"tuner\.chief_address='node1' is not allowed"),
    "a worker without an id": (["tuner.role=worker", "tuner.chief_address=node1:7777"],
                               r"tuner\.worker_id=None is not allowed: expected a name unique in the study"),
    "a worker id keras-tuner takes for the chief": (["tuner.role=worker", "tuner.chief_address=n:1",
                                                    "tuner.worker_id=mychief"], r"tuner\.worker_id='mychief'"),
    "an id without tuner.role=worker": (["tuner.worker_id=a"], r"tuner\.worker_id='a' .*unless tuner\.role=worker"),
    "a worker that would clear the state": (["tuner.role=worker", "tuner.chief_address=n:1", "tuner.worker_id=a",
                                             "tuner.overwrite=true"], r"tuner\.overwrite=True .*only the chief"),
    "a chief with workers of its own": (["tuner.role=chief", "tuner.chief_address=n:1", "tuner.workers=2"],
                                        r"tuner\.workers=2 is not allowed: expected 1 with tuner\.role=chief"),
    "a worker on Ray": (["tuner.role=worker", "tuner.chief_address=n:1", "tuner.worker_id=a", "tuner.launcher=ray"],
                        r"tuner\.launcher='ray' is not allowed: expected local with tuner\.role=worker"),
    "a Ray address without Ray": (["tuner.ray_address=auto"], r"tuner\.ray_address='auto' .*tuner\.launcher=ray"),
    "a Ray address that is no address": (["tuner.launcher=ray", "tuner.ray_address=head"],
                                         r"tuner\.ray_address='head' is not allowed: expected local, auto, host:port"),
    "a bind address with a space": (["tuner.bind_host=my host"], r"tuner\.bind_host='my host' is not allowed"),
    "a bind address with a port": (["tuner.bind_host=node1:7777"], r"tuner\.bind_host='node1:7777'"),
    "negative restarts": (["tuner.worker_restarts=-1"], r"tuner\.worker_restarts=-1 is not allowed"),
    "two GPUs per worker": (["tuner.worker_gpus=2"], r"tuner\.worker_gpus=2 is not allowed: expected null"),
}


@pytest.mark.parametrize("overrides, message", list(ROLE_ERRORS.values()), ids=list(ROLE_ERRORS))
def test_role_keys_are_checked_with_the_config_in_one_line(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        study_config(tmp_path, *overrides)
    assert "\n" not in str(error.value)


def test_valid_role_settings_pass_and_do_not_count_as_hyperparameters(tmp_path):
    from src.config import cluster
    from src.config.schema import is_hyperparameter

    worker = study_config(tmp_path, "tuner.role=worker", "tuner.chief_address=node001:7777", "tuner.worker_id=tuner3")
    chief = study_config(tmp_path, "tuner.role=chief", "tuner.chief_address=node001:7777", "tuner.bind_host=0.0.0.0")
    assert cluster.distributed(worker.tuner) and cluster.distributed(chief.tuner)
    assert not cluster.distributed(study_config(tmp_path).tuner)  # the default: one process
    for key in ("role", "chief_address", "bind_host", "worker_id", "worker_cpus", "worker_gpus", "launcher",
                "ray_address", "worker_restarts"):
        assert not is_hyperparameter(f"tuner.{key}"), key
    # so a study may be resumed by a chief, or by the one-command launcher, alike
    directory = state.state_dir(chief)
    state.save_state_config(study_config(tmp_path), directory)
    (directory / "oracle.json").write_text("{}")
    assert state.check_resumable(chief, directory) is True


def test_a_ray_cluster_that_does_not_answer_is_refused_at_once(tmp_path):
    import socket

    from src.jobs.distributed import roles

    for address in ("auto", "ray://head:10001", "10.0.0.5:6379"):  # the forms Ray takes
        assert study_config(tmp_path, "tuner.launcher=ray", f"tuner.ray_address={address}").tuner.ray_address == address
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(roles.RayUnavailable, match=rf"^tuner\.ray_address=127\.0\.0\.1:{port} is not reachable"):
        roles.check_ray_reachable(f"127.0.0.1:{port}", timeout=2)


def test_a_worker_killed_by_a_signal_is_replaced_while_it_has_restarts():
    from src.jobs.distributed.roles import Exit, after_exit

    assert after_exit("tuner0", None, 3) is Exit.running
    assert after_exit("tuner0", 0, 0) is Exit.done
    assert after_exit("tuner0", -9, 1) is Exit.replace      # SIGKILL, the out-of-memory killer
    assert after_exit("tuner0", -9, 0) is Exit.fail         # tuner.worker_restarts spent
    assert after_exit("tuner0", 1, 3) is Exit.fail          # its own error: a new process would raise it again
    assert after_exit("chief", -9, 3) is Exit.fail          # the oracle cannot be replaced mid-study


def test_each_worker_takes_one_gpu_where_there_are_gpus(monkeypatch):
    from src.jobs.distributed import roles

    assert [roles.gpu_env(i, ["0", "1"], None)["CUDA_VISIBLE_DEVICES"] for i in range(3)] == ["0", "1", "0"]
    assert roles.gpu_env(0, ["3"], None)["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"  # sharers allocate as they go
    assert roles.gpu_env(1, [], None) == {}  # no GPU: nothing to say
    assert roles.gpu_env(1, ["0"], 0) == {"CUDA_VISIBLE_DEVICES": ""}  # tuner.worker_gpus=0: CPU only
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert roles.visible_gpus() == ["2", "5"]  # a scheduler's allocation is respected
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert roles.visible_gpus() == []


def test_workers_reach_the_chief_through_keras_tuners_variables():
    from src.jobs.distributed import roles

    assert roles.oracle_env("10.0.0.5", 7777, "tuner1") == {
        "KERASTUNER_ORACLE_IP": "10.0.0.5", "KERASTUNER_ORACLE_PORT": "7777", "KERASTUNER_TUNER_ID": "tuner1"}
    assert roles.oracle_env("::1", 7777, "chief")["KERASTUNER_ORACLE_IP"] == "[::1]"  # keras-tuner joins ip:port
    assert roles.local_connect_host("0.0.0.0") == "127.0.0.1" and roles.local_connect_host("10.0.0.5") == "10.0.0.5"


def test_a_worker_with_another_config_than_the_study_is_refused_naming_the_key(tmp_path):
    from types import SimpleNamespace

    from src.jobs.distributed.worker_process import check_same_study
    from src.tracking.runs import flatten

    study = study_config(tmp_path, "tuner.role=chief", "tuner.chief_address=n:1")
    params = flatten(OmegaConf.to_container(OmegaConf.structured(study), enum_to_str=True))
    parent = SimpleNamespace(data=SimpleNamespace(params=params), info=SimpleNamespace(run_id="abc"))
    worker = ("tuner.role=worker", "tuner.chief_address=n:1", "tuner.worker_id=w1")
    check_same_study(study_config(tmp_path, *worker, "trainer.verbose=0", "tuner.worker_cpus=4"), parent)
    with pytest.raises(ConfigError, match=r"^model\.dropout='0\.3' is not allowed: expected '0\.5', the value of "
                                          r"study run abc"):
        check_same_study(study_config(tmp_path, *worker, "model.dropout=0.3"), parent)


def test_a_failpoint_with_a_marker_fires_in_the_first_process_only(tmp_path, monkeypatch):
    from src.core import interrupt

    killed = []
    monkeypatch.setattr(interrupt.os, "kill", lambda pid, sig: killed.append(sig))
    monkeypatch.setenv("CIFAR_FAILPOINT", "train_batch:2")
    monkeypatch.setenv("CIFAR_FAILPOINT_ONCE", str(tmp_path / "fired"))
    monkeypatch.setattr(interrupt, "_failpoint_hits", {})
    interrupt.failpoint("train_batch")
    assert killed == []
    interrupt.failpoint("train_batch")
    assert len(killed) == 1 and (tmp_path / "fired").exists()
    monkeypatch.setattr(interrupt, "_failpoint_hits", {})  # a replacement process, same environment
    for _ in range(3):
        interrupt.failpoint("train_batch")
    assert len(killed) == 1


def test_a_replacement_worker_closes_its_predecessors_trial_runs_only(tmp_path):
    import socket

    import psutil

    from src.jobs.distributed.worker_process import close_predecessor_trials
    from src.tracking.runs import process_tags

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


# ---- config inheritance ----------------------------------------------------------

SCHEMAS = {"model/cnn.yaml": schema_module.ModelConfig, "trainer/default.yaml": schema_module.TrainerConfig,
           "tracking/mlflow.yaml": schema_module.TrackingConfig, "data/cifar10.yaml": schema_module.DataConfig}


@pytest.mark.parametrize("path", list(SCHEMAS))
def test_group_yaml_agrees_with_its_schema_defaults(path):
    """A group file may spell out the schema's defaults for readers; it must not contradict them
    (values read from the environment apart)."""
    values = yaml.safe_load((CONF_DIR / path).read_text())
    defaults = dataclasses.asdict(SCHEMAS[path]())
    for key, value in values.items():
        if isinstance(value, str) and value.startswith("${oc.env:"):
            continue
        expected = defaults[key]
        assert value == getattr(expected, "value", expected), (path, key)


def test_tuner_files_hold_only_their_kind_and_budget():
    budget = {"defaults", "kind", "max_trials", "max_epochs", "factor", "hyperband_iterations"}
    for path in (CONF_DIR / "tuner").glob("*.yaml"):
        keys = set(yaml.safe_load(path.read_text()))
        assert keys <= budget, (path.name, keys - budget)
        assert "base_tuner" in yaml.safe_load(path.read_text())["defaults"]


def test_experiments_hold_only_what_they_change():
    """No experiment sets a key to the value it already has without it."""
    base = composed()
    defaults = {k: v for entry in yaml.safe_load((CONF_DIR / "config.yaml").read_text())["defaults"]
                if isinstance(entry, dict) for k, v in entry.items()}
    for path in (CONF_DIR / "experiment").glob("*.yaml"):
        text = yaml.safe_load(path.read_text())
        for group in ("data", "model", "trainer"):
            for key, value in (text.get(group) or {}).items():
                current = getattr(getattr(base, group), key)
                assert value != getattr(current, "value", current), (path.name, f"{group}.{key}")
        for entry in text.get("defaults", []):  # a group override picks an option other than the default
            for key, option in (entry.items() if isinstance(entry, dict) else []):
                group = key.removeprefix("override /")
                assert option != defaults.get(group), (path.name, entry)


# ---- the search space ------------------------------------------------------------

def test_search_space_declares_each_entry_and_maps_it_to_its_config_key():
    import keras_tuner

    from src.config import search_space

    cfg = composed("+experiment=tune_random")
    hp = keras_tuner.HyperParameters()
    values = search_space.declare(hp, cfg.tuner.search_space)
    assert set(values) == {spec.key for spec in cfg.tuner.search_space.values()}
    assert set(hp.values) == set(cfg.tuner.search_space)
    trial_cfg = search_space.apply(cfg, values)
    applied = OmegaConf.structured(trial_cfg)
    for key, value in values.items():  # e.g. model.filters.0: one conv block's filters
        assert OmegaConf.select(applied, key) == value
    assert search_space.config_values({**hp.values, "tuner/epochs": 3}, cfg.tuner.search_space) == values


def test_applying_a_value_re_runs_the_schema_checks():
    from src.config import search_space

    cfg = composed("+experiment=tune_random")
    with pytest.raises(ConfigError, match=r"model\.dropout=1\.5 is not allowed"):
        search_space.apply(cfg, {"model.dropout": 1.5})
    assert cfg.model.dropout == 0.5  # the base config is untouched


def test_a_range_that_reaches_an_invalid_value_is_refused_before_any_trial():
    with pytest.raises(ConfigError, match=r"tuner\.search_space\.dropout can take 1\.2"):
        composed("+experiment=tune_random", "tuner.search_space.dropout.max=1.2")


def test_the_card_space_on_a_model_with_fewer_blocks_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"tuner\.search_space\.filters3\.key='model\.filters\.2' is not allowed with "
                       r"model\.filters=\[8, 16\]: it sets entry 2 of a list of 2"):
        composed("+experiment=tune_hyperband", "model.filters=[8,16]")


def test_hyperband_may_not_tune_the_epochs_it_sets_itself():
    with pytest.raises(ConfigError, match="Hyperband sets the epochs itself"):
        composed("+experiment=tune_hyperband", "tuner/search_space=filters_dropout_epochs")


# ---- the plan --------------------------------------------------------------------

def test_hyperband_plan_follows_keras_tuners_schedule():
    from src.jobs import plan

    rounds = plan.hyperband_rounds(max_epochs=20, factor=3, iterations=1)
    assert [(r.bracket, r.round, r.trials, r.epochs) for r in rounds] == [
        (2, 0, 12, 3), (2, 1, 4, 4), (2, 2, 2, 13), (1, 0, 6, 7), (1, 1, 2, 13), (0, 0, 4, 20)]
    card = plan.plan(composed("+experiment=tune_hyperband"))
    assert (card.trials, card.search_epochs) == (30, 226)  # the ~226 epochs the README quotes
    assert (card.confirm_runs, card.confirm_epochs) == (12, 12 * 20)  # (top 3 + baseline) x 3 seeds x 20


def test_plan_of_a_random_search_counts_the_middle_of_its_epochs_range():
    from src.jobs import plan

    the_plan = plan.plan(composed("+experiment=tune_random", "tuner.max_trials=7", "tuner.confirm.seeds=0"))
    assert (the_plan.trials, the_plan.search_epochs, the_plan.confirm_epochs) == (7, 7 * 13, 0)  # 5..20 -> 12.5


def test_progress_counts_trials_and_projects_the_remaining_epochs():
    from src.jobs import plan

    progress = plan.Progress(composed("+experiment=tune_hyperband", "tuner.workers=2"))
    progress.started -= 60  # one minute for the 6 epochs below
    line = progress.line(2, 6, 6, {"tuner/bracket": 2, "tuner/round": 0})
    # 220 epochs remain at 10 s each, shared by 2 workers: 1,100 s.
    assert line == "trial 2 of 30 (bracket 2, round 0), search ETA 18 min"


def test_a_search_is_over_when_every_one_of_its_max_trials_has_ended():
    from types import SimpleNamespace

    from src.jobs.distributed.workers import search_is_over

    def oracle(max_trials, *statuses):
        return SimpleNamespace(max_trials=max_trials,
                               trials={str(i): SimpleNamespace(status=s) for i, s in enumerate(statuses)})

    assert search_is_over(oracle(2, "COMPLETED", "FAILED"))
    assert not search_is_over(oracle(3, "COMPLETED", "FAILED"))  # a trial still to create
    assert not search_is_over(oracle(2, "COMPLETED", "RUNNING"))  # killed mid-trial: it runs again
    assert not search_is_over(oracle(None, "COMPLETED"))  # Hyperband: its brackets decide


def test_an_interrupt_dropped_in_a_finalizer_prints_no_traceback(monkeypatch):
    """Python reports a KeyboardInterrupt raised inside a finalizer ("Exception ignored in")
    through sys.unraisablehook; once a signal was received, check() raises it again after
    the batch, so the hook stays quiet about it, and passes anything else on."""
    import signal
    import types

    from src.core import interrupt

    passed_on = []
    monkeypatch.setattr(interrupt, "_previous_unraisablehook", passed_on.append)
    dropped = types.SimpleNamespace(exc_value=KeyboardInterrupt("received signal 2"))
    other = types.SimpleNamespace(exc_value=ValueError("a real finalizer error"))
    monkeypatch.setattr(interrupt, "_received", signal.SIGINT)
    interrupt._skip_dropped_interrupt(dropped)
    interrupt._skip_dropped_interrupt(other)
    assert passed_on == [other]
    monkeypatch.setattr(interrupt, "_received", None)  # a KeyboardInterrupt no signal of ours explains
    interrupt._skip_dropped_interrupt(dropped)
    assert passed_on == [other, dropped]
