"""Where a study's processes run: the chief's address and the role keys, checked with the config
(src/config/cluster.py)."""
from __future__ import annotations

import re

import pytest

from src.config import ConfigError, register
from src.jobs import state

from helpers.configs import study_config

register()


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
