"""A trial's rare cases, at the seam where keras-tuner starts it (src/jobs/trial_seams.py).
The kill and memory cases run whole studies: tests/jobs/test_study_kills.py (a trial finished
in MLflow before keras-tuner saved it) and tests/core/test_memory.py (a trial too big)."""
from __future__ import annotations

import errno

import keras_tuner
import pytest

from src.jobs import trial_seams


def test_a_full_disk_stops_the_search_rather_than_failing_every_trial():
    with pytest.raises(keras_tuner.errors.FatalError, match="No space left"):
        with trial_seams.full_disk_stops_the_search():
            try:
                raise OSError(errno.ENOSPC, "No space left on device", "/tmp/x")
            except OSError as err:
                raise RuntimeError("logging the model failed") from err  # the cause is found in the chain


def test_any_other_error_stays_the_trials_own():
    with pytest.raises(ValueError, match="a bad trial"):  # keras-tuner records it FAILED and goes on
        with trial_seams.full_disk_stops_the_search():
            raise ValueError("a bad trial")


def test_a_trials_run_name_says_its_values_and_its_rounds_epochs():
    assert trial_seams.trial_name("0007", {"dropout": 0.25, "filters2": 64}) == "trial 0007 dropout=0.25 filters2=64"
    assert trial_seams.trial_name("0012", {"dropout": 0.1, "tuner/epochs": 7, "tuner/initial_epoch": 3,
                                           "tuner/bracket": 1}) == "trial 0012 dropout=0.1 epochs=3-7"
