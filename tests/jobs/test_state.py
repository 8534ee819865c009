"""Resume checks: a study's saved keras-tuner state and whether a run may resume it."""
from __future__ import annotations

import errno
import json
import os

import pytest

from src.config import ConfigError, register
from src.jobs import state

from helpers.configs import study_config

register()


# ---- resume checks -----------------------------------------------------------


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


def test_the_tuners_state_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """keras-tuner's save_json, as the project installs it: a write that fails midway (the
    disk fills, or a kill) leaves the old file as it was and no temporary file behind."""
    from keras_tuner.src import utils

    from src.jobs import state

    monkeypatch.setattr(utils, "save_json", utils.save_json)  # put back whatever was there
    state.save_tuner_json_atomically()
    path = tmp_path / "oracle.json"
    utils.save_json(str(path), {"trials": 1})
    assert json.loads(path.read_text()) == {"trials": 1} and oct(path.stat().st_mode & 0o777) == "0o644"

    def full(_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        utils.save_json(str(path), {"trials": 2, "padding": "x" * 100_000})
    assert json.loads(path.read_text()) == {"trials": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["oracle.json"]
