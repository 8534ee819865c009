"""The one base class of the project's expected errors.

Each is a bad value, a missing or damaged file, or a store that cannot be
used: `src.run` reports any of them as one line naming what to change, where
an unexpected exception keeps its traceback.
"""
from __future__ import annotations


class ProjectError(RuntimeError):
    """An expected failure, reported to the user as a one-line message."""


class ConfigError(ProjectError, ValueError):
    """A config value is outside what the project accepts."""


def fail(key: str, value, allowed: str) -> None:
    """The one wording of a refused value: the key, the value, what is allowed."""
    raise ConfigError(f"{key}={value!r} is not allowed: expected {allowed}")
