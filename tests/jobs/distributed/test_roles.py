"""Worker configuration and placing the chief and the workers: threads, paths, addresses, roles, restarts, GPUs."""
from __future__ import annotations

import pytest

from src.config import register
from src.jobs import state

from helpers.configs import composed, study_config

register()


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


def test_a_failpoint_with_a_marker_fires_in_the_first_process_only(tmp_path, monkeypatch):
    from src.core import interrupt

    killed = []
    monkeypatch.setattr(interrupt.os, "kill", lambda pid, sig: killed.append(sig))
    monkeypatch.setenv("CIFAR_FAILPOINT", "train_batch:2")
    monkeypatch.setenv("CIFAR_FAILPOINT_ONCE", str(tmp_path / "fired"))
    interrupt.reset()
    interrupt.failpoint("train_batch")
    assert killed == []
    interrupt.failpoint("train_batch")
    assert len(killed) == 1 and (tmp_path / "fired").exists()
    interrupt.reset()  # a replacement process, same environment
    for _ in range(3):
        interrupt.failpoint("train_batch")
    assert len(killed) == 1
    interrupt.reset()


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
