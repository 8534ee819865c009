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


def test_inside_training_a_signal_is_raised_at_the_next_check_not_where_it_lands():
    """raised_at_checks: a real SIGTERM inside it is remembered, not raised where the main
    thread is (which could be TensorFlow's own code building a C++ object); the next check()
    raises it, and so does leaving the block normally."""
    import os
    import signal

    import pytest

    from src.core import interrupt

    before = signal.getsignal(signal.SIGTERM)
    interrupt.reset()
    interrupt.install()
    try:
        with pytest.raises(KeyboardInterrupt, match="received signal 15"):
            with interrupt.raised_at_checks():
                os.kill(os.getpid(), signal.SIGTERM)  # handled at the next bytecode: recorded only
                landed_quietly = True
                interrupt.check()
        assert landed_quietly and interrupt.received() == signal.SIGTERM
        interrupt.reset()
        with pytest.raises(KeyboardInterrupt):  # no check inside: raised on leaving
            with interrupt.raised_at_checks():
                os.kill(os.getpid(), signal.SIGTERM)
                landed_quietly_again = True
        assert landed_quietly_again
        interrupt.reset()
        with pytest.raises(KeyboardInterrupt):  # outside it, raised where it lands, as before
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
        interrupt.reset()
    finally:
        interrupt.reset()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, before)
