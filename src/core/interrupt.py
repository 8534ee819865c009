"""Ctrl-C and SIGTERM end a run KILLED, reliably.

Python raises KeyboardInterrupt wherever the main thread happens to be, and
drops it ("Exception ignored in ...") when that is a finalizer or a weakref
callback, as happens during TensorFlow's garbage collection. So the signal is
also remembered, and training checks for it after every batch. Inside training
(`raised_at_checks`) it is raised only there: raised anywhere, it can land in
TensorFlow's own Python code halfway through building a C++ object.
"""
from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from typing import Callable, Dict, List, Optional

_received: Optional[int] = None
_deferred = False
_checks_only = False  # raised at check() only (raised_at_checks)
_first_only = False  # later signals are remembered, not raised (install(first_only=True))
_on_first: List[Callable[[int], None]] = []  # run once, at the first signal, before it is raised


def _on_signal(signum, frame):
    global _received
    first = _received is None
    if first or not _first_only:
        _received = signum
    if not first and _first_only:
        return
    if first:
        for hook in list(_on_first):
            hook(signum)
    if not _deferred and not _checks_only:
        raise KeyboardInterrupt(f"received signal {signum}")


def _skip_dropped_interrupt(unraisable) -> None:
    """sys.unraisablehook: Python prints "Exception ignored in ..." and a traceback
    when the KeyboardInterrupt lands in a finalizer; `check()` raises it again after
    the batch, so that one is not news. Anything else goes to the hook before."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _received is not None:
        return
    _previous_unraisablehook(unraisable)


_previous_unraisablehook = sys.unraisablehook


def install(first_only: bool = False) -> None:
    """SIGINT and SIGTERM (a scheduler, `kill`) both raise KeyboardInterrupt.

    `first_only`: a second signal is not raised. A job of a multirun can get the same
    stop twice (Ctrl-C reaches the terminal's whole process group, and the launcher
    forwards it too); raised again, it would cut short the first one's ending of the
    run, which would then stay RUNNING."""
    global _previous_unraisablehook, _first_only
    _first_only = _first_only or first_only
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


def on_first_signal(hook: Callable[[int], None]) -> None:
    """Run `hook(signum)` once, at the first SIGINT/SIGTERM, before KeyboardInterrupt is
    raised: a multirun's launcher stops its jobs there, before joblib, on the
    KeyboardInterrupt, kills its worker processes with SIGKILL."""
    if hook not in _on_first:
        _on_first.append(hook)


def remove_hook(hook: Callable[[int], None]) -> None:
    if hook in _on_first:
        _on_first.remove(hook)


def reset() -> None:
    """Forget signals, hooks and modes (a test that ran a command in its own process)."""
    global _received, _deferred, _first_only, _checks_only
    _received, _deferred, _first_only, _checks_only = None, False, False, False
    _on_first.clear()
    _failpoint_hits.clear()


def check() -> None:
    """Raise again if a signal arrived and its first KeyboardInterrupt was lost."""
    if _received is not None and not _deferred:
        raise KeyboardInterrupt(f"received signal {_received}")


@contextmanager
def raised_at_checks():
    """Inside, a signal is remembered and raised at the next `check()` (training checks after
    every batch), not wherever the main thread is. Raised inside TensorFlow's Python code
    while it builds a dataset iterator, a KeyboardInterrupt left it half-made: a stopped
    sweep's job aborted with glibc's `free(): invalid next size` (tests/jobs/test_sweep_stop.py,
    about 1 run in 20 under load). Leaving normally raises a signal that came meanwhile."""
    global _checks_only
    before, _checks_only = _checks_only, True
    try:
        yield
    finally:
        _checks_only = before
    check()


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
