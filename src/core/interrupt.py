"""Ctrl-C and SIGTERM end a run KILLED, reliably.

Python raises KeyboardInterrupt wherever the main thread happens to be, and
drops it ("Exception ignored in ...") when that is a finalizer or a weakref
callback, as happens during TensorFlow's garbage collection. So the signal is
also remembered, and training checks for it after every batch.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Dict, Optional

_received: Optional[int] = None
_deferred = False


def _on_signal(signum, frame):
    global _received
    _received = signum
    if not _deferred:
        raise KeyboardInterrupt(f"received signal {signum}")


def _skip_dropped_interrupt(unraisable) -> None:
    """sys.unraisablehook: Python prints "Exception ignored in ..." and a traceback
    when the KeyboardInterrupt lands in a finalizer; `check()` raises it again after
    the batch, so that one is not news. Anything else goes to the hook before."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _received is not None:
        return
    _previous_unraisablehook(unraisable)


_previous_unraisablehook = sys.unraisablehook


def install() -> None:
    """SIGINT and SIGTERM (a scheduler, `kill`) both raise KeyboardInterrupt."""
    global _previous_unraisablehook
    try:
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
    except ValueError:  # not the main thread (some launchers): keep the defaults
        return
    if sys.unraisablehook is not _skip_dropped_interrupt:
        _previous_unraisablehook, sys.unraisablehook = sys.unraisablehook, _skip_dropped_interrupt


def received() -> Optional[int]:
    """The signal that interrupted this process, if one did."""
    return _received


def check() -> None:
    """Raise again if a signal arrived and its first KeyboardInterrupt was lost."""
    if _received is not None and not _deferred:
        raise KeyboardInterrupt(f"received signal {_received}")


_failpoint_hits: Dict[str, int] = {}


def failpoint(name: str) -> None:
    """A test hook for hard kills at exact moments: with CIFAR_FAILPOINT=<name>[:<n>]
    in the environment, the n-th time (default the first) this process passes
    `name`, it kills itself with SIGKILL, as the out-of-memory killer would.
    With CIFAR_FAILPOINT_ONCE=<file> as well, only the first of the processes
    sharing that environment to get there is killed (it creates the file), so
    that a worker started to replace it is not killed at the same point again.
    Without CIFAR_FAILPOINT it does nothing."""
    spec = os.environ.get("CIFAR_FAILPOINT")
    if not spec:
        return
    wanted, _, count = spec.partition(":")
    if wanted == name:
        _failpoint_hits[name] = _failpoint_hits.get(name, 0) + 1
        if _failpoint_hits[name] >= int(count or 1) and _first_to_fire(os.environ.get("CIFAR_FAILPOINT_ONCE")):
            os.kill(os.getpid(), signal.SIGKILL)


def _first_to_fire(marker: Optional[str]) -> bool:
    if not marker:
        return True
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # atomic across processes
        return True
    except FileExistsError:
        return False


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
