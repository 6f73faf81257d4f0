"""Ctrl-C and SIGTERM that never land in the middle of a write.

Inside :func:`deferred_interrupts`, SIGINT raises ``KeyboardInterrupt`` at
once, except while a :func:`critical` section runs (writing a record): then
it is remembered and raised when the section ends. So Ctrl-C stops a long
generation promptly, yet the findings file only ever holds whole records.
SIGTERM (what ``kill``, a batch scheduler or a container stop sends) is
handled the same way but raises :class:`Terminated`, a ``KeyboardInterrupt``
that lets the command exit with 143 (128 + 15, the shell's code for SIGTERM)
instead of 130.
"""

from __future__ import annotations

import contextlib
import signal
import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop like Ctrl-C, but report the signal it was."""


_STOPS = {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: Terminated}
"""The signals handled, and what each raises once no write is in progress."""

_state = {"depth": 0, "pending": None, "installed": False}


def _handler(signum, frame):
    stop = _STOPS[signum]
    if _state["depth"]:
        if _state["pending"] is None or stop is Terminated:  # a SIGTERM is not downgraded by a later Ctrl-C
            _state["pending"] = stop
        return
    raise stop


@contextlib.contextmanager
def deferred_interrupts():
    """Install the deferring SIGINT and SIGTERM handlers (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread() or _state["installed"]:
        yield
        return
    previous = {signum: signal.signal(signum, _handler) for signum in _STOPS}
    _state.update(installed=True, pending=None, depth=0)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _state["installed"] = False


@contextlib.contextmanager
def critical():
    """Hold back Ctrl-C and SIGTERM until the enclosed block (one record write) is done."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0 and _state["pending"] is not None:
            stop, _state["pending"] = _state["pending"], None
            raise stop
