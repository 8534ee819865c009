"""Signals and interrupts: what a dropped interrupt prints."""
from __future__ import annotations

from src.config import register

register()


def test_an_interrupt_dropped_in_a_finalizer_prints_no_traceback(monkeypatch):
    """Python reports a KeyboardInterrupt raised inside a finalizer ("Exception ignored in")
    through sys.unraisablehook; once a signal was received, check() raises it again after
    the batch, so the hook stays quiet about it, and passes anything else on."""
    import signal
    import types

    from src.core import interrupt

    passed_on = []
    monkeypatch.setattr(interrupt, "_previous_unraisablehook", passed_on.append)
    dropped = types.SimpleNamespace(exc_value=KeyboardInterrupt("received signal 2"))
    other = types.SimpleNamespace(exc_value=ValueError("a real finalizer error"))
    monkeypatch.setattr(interrupt, "_received", signal.SIGINT)
    interrupt._skip_dropped_interrupt(dropped)
    interrupt._skip_dropped_interrupt(other)
    assert passed_on == [other]
    monkeypatch.setattr(interrupt, "_received", None)  # a KeyboardInterrupt no signal of ours explains
    interrupt._skip_dropped_interrupt(dropped)
    assert passed_on == [other, dropped]
