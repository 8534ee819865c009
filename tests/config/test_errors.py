"""The project's error wording (src/config/errors.py), and the report's counts from the
environment: a bad one is one line naming the variable, before any training."""
from __future__ import annotations

import pytest

from src.config.errors import ConfigError, env_count

from helpers.commands import run_here
from helpers.studies import runs_of


def test_a_count_from_the_environment_is_an_integer_of_at_least_one(monkeypatch):
    monkeypatch.delenv("REPORT_RESAMPLES", raising=False)
    assert env_count("REPORT_RESAMPLES", 200) == 200
    monkeypatch.setenv("REPORT_RESAMPLES", "20")
    assert env_count("REPORT_RESAMPLES", 200) == 20
    for bad in ("ten", "0", "-3", "2.5", ""):
        monkeypatch.setenv("REPORT_RESAMPLES", bad)
        with pytest.raises(ConfigError, match=f"^REPORT_RESAMPLES={bad!r} is not allowed: expected an integer >= 1$"):
            env_count("REPORT_RESAMPLES", 200)


def test_a_bad_report_count_is_refused_before_the_study_trains(synthetic_cifar, tracking_uri, tmp_path):
    """The study's report reads these counts at its end; the command refuses them at its start,
    by its own check rather than by whichever import happens to read them first (here the
    modules are imported already, so only that check can refuse)."""
    from src.analysis import fanova, noise_floor  # noqa: F401
    result = run_here("+experiment=tune_random", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
                      f"tuner.directory={tmp_path / 'tuner'}", env={"REPORT_PERMUTATIONS_FACTOR": "ten"})
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "REPORT_PERMUTATIONS_FACTOR='ten' is not allowed: expected an integer >= 1" in result.stderr
    assert runs_of(tracking_uri)[1] == []  # nothing started, so nothing is left RUNNING
