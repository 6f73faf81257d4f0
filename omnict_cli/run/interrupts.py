"""Ctrl-C that never lands in the middle of a write.

Inside :func:`deferred_interrupts`, SIGINT raises ``KeyboardInterrupt`` at
once, except while a :func:`critical` section runs (writing a record): then
it is remembered and raised when the section ends. So Ctrl-C stops a long
generation promptly, yet the findings file only ever holds whole records.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_state = {"depth": 0, "pending": False, "installed": False}


def _handler(signum, frame):
    if _state["depth"]:
        _state["pending"] = True
        return
    raise KeyboardInterrupt


@contextlib.contextmanager
def deferred_interrupts():
    """Install the deferring SIGINT handler (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread() or _state["installed"]:
        yield
        return
    previous = signal.signal(signal.SIGINT, _handler)
    _state.update(installed=True, pending=False, depth=0)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _state["installed"] = False


@contextlib.contextmanager
def critical():
    """Hold back Ctrl-C until the enclosed block (one record write) is done."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0 and _state["pending"]:
            _state["pending"] = False
            raise KeyboardInterrupt
