"""The one base class of the project's expected errors.

Each is a bad value, a missing or damaged file, or a store that cannot be
used: `src.run` reports any of them as one line naming what to change, where
an unexpected exception keeps its traceback.
"""
from __future__ import annotations

import os


class ProjectError(RuntimeError):
    """An expected failure, reported to the user as a one-line message."""


class ConfigError(ProjectError, ValueError):
    """A config value is outside what the project accepts."""


def fail(key: str, value, allowed: str) -> None:
    """The one wording of a refused value: the key, the value, what is allowed."""
    raise ConfigError(f"{key}={value!r} is not allowed: expected {allowed}")


# A report's quick-look knobs (src/analysis/noise_floor.py, src/analysis/fanova.py), read from the
# environment; `src.run` checks them with the config, before any training (`check_report_counts`).
REPORT_COUNTS = ("REPORT_RESAMPLES", "REPORT_PERMUTATIONS_FACTOR", "REPORT_FANOVA_TREES")


def env_count(name: str, default: int) -> int:
    """A count from the environment variable `name`: an integer >= 1, or `default` when unset."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    if not raw.strip().isdigit() or int(raw) < 1:
        fail(name, raw, "an integer >= 1")
    return int(raw)


def check_report_counts() -> None:
    """Refuses a bad REPORT_* count now rather than when the study's report imports it."""
    for name in REPORT_COUNTS:
        env_count(name, 1)
