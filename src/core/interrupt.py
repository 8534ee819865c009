"""Ctrl-C and SIGTERM end a run KILLED, reliably.

Python raises KeyboardInterrupt wherever the main thread happens to be, and
drops it ("Exception ignored in ...") when that is a finalizer or a weakref
callback, as happens during TensorFlow's garbage collection. So the signal is
also remembered, and training checks for it after every batch.
"""
from __future__ import annotations

import signal
from typing import Optional

_received: Optional[int] = None
_deferred = False


def _on_signal(signum, frame):
    global _received
    _received = signum
    if not _deferred:
        raise KeyboardInterrupt(f"received signal {signum}")


def install() -> None:
    """SIGINT and SIGTERM (a scheduler, `kill`) both raise KeyboardInterrupt."""
    try:
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
    except ValueError:  # not the main thread (some launchers): keep the defaults
        pass


def check() -> None:
    """Raise again if a signal arrived and its first KeyboardInterrupt was lost."""
    if _received is not None and not _deferred:
        raise KeyboardInterrupt(f"received signal {_received}")


def defer() -> None:
    """Hold Ctrl-C/SIGTERM until `undefer()`: for steps that two stores must
    both record or neither (a trial's MLflow run ending FINISHED, then
    keras-tuner saving the trial as completed)."""
    global _deferred
    _deferred = True


def undefer() -> None:
    """End `defer()`; a signal that arrived meanwhile is raised now."""
    global _deferred
    _deferred = False
    check()
