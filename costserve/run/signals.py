"""TERM, INT and HUP stop a driver the way `costserve cancel` does: one resumable line and a recorded stopped state.

A driver under `stop_on_signals()` turns the first of these signals into `Signalled` (a RunStopped,
reason "signal"), which takes the same path as every other stop: the fleet is torn down, the
results so far are written, the stop is recorded for `status` and `runs`, and the last line
names `costserve resume RUN`. Inside the live loop (`deferred()`) the signal is only noted and
the loop raises it at its next poll (`raise_pending()`), so a poll's writes to the run store are
never cut in half. A second signal while the driver is already stopping is ignored: the
teardown it would interrupt is what leaves nothing running.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from costserve.errors import Signalled

STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Signals:
    """What the handler knows: whether the live loop defers the stop, the signal it deferred, whether one was raised."""

    def __init__(self) -> None:
        self.deferring = 0
        self.pending: Signalled | None = None
        self.raised = False


_state = _Signals()


def _handle(signum: int, _frame: FrameType | None) -> None:
    if _state.raised or _state.pending is not None:
        return  # already stopping: let the teardown finish
    stop = Signalled(signal.Signals(signum).name, signum)
    if _state.deferring:
        _state.pending = stop
        return
    _state.raised = True
    raise stop


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While open, TERM, INT and HUP raise Signalled in this (the main) thread; the previous handlers come back after.
    Outside the main thread (where Python cannot install handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _handle) for sig in STOPPING_SIGNALS}
    _state.pending, _state.raised = None, False
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def deferred(raise_after: bool = True) -> Iterator[None]:
    """While open, a stopping signal is noted rather than raised; `raise_pending()` raises it where it is safe, and
    so does the end of the block (unless not `raise_after`: a teardown, after which the run ends anyway)."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
    if raise_after:
        raise_pending()  # the block ended without reaching its next poll (it finished): the stop happens here


def raise_pending() -> None:
    """Raise the Signalled a signal left while deferred, if one did."""
    if (stop := _state.pending) is not None:
        _state.pending, _state.raised = None, True
        raise stop
