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
    interrupt.reset()
    interrupt.defer()
    interrupt._on_signal(signal.SIGINT, None)  # as if SIGINT arrived (deferred: recorded, not raised)
    interrupt._skip_dropped_interrupt(dropped)
    interrupt._skip_dropped_interrupt(other)
    assert passed_on == [other]
    interrupt.reset()  # a KeyboardInterrupt no signal of ours explains
    interrupt._skip_dropped_interrupt(dropped)
    assert passed_on == [other, dropped]
    interrupt.reset()
