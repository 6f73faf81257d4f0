"""Worker process pools that the main process controls and that never outlive it.

Used by ``report``/``ask`` (studies prepared ahead of the model,
:mod:`omnict_cli.run.prefetch`) and ``review`` (images rendered,
:mod:`omnict_cli.review.image_pool`). Every pool here:

- starts its workers with ``spawn`` (forking a process that has loaded torch
  and started its thread pools can deadlock);
- makes them ignore Ctrl-C, so the main process decides how to stop (it
  finishes the record or page it is writing). They do not ignore SIGTERM:
  the pool itself ends a broken pool's workers with it;
- makes them end themselves when the main process is gone, even by SIGKILL:
  otherwise they would block forever writing a result nobody reads, holding
  memory (and GPU memory, with TotalSegmentator in them).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

PARENT_CHECK_SECONDS = 0.5
"""How often a worker checks that the process that started it is still alive."""

EXIT_PARENT_GONE = 1


def worker_pool(workers: int, initializer=None, initargs: tuple = ()) -> ProcessPoolExecutor:
    """A ``spawn`` pool of ``workers`` processes set up as the module notes say, then by ``initializer``."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(), initializer, initargs),
    )


def _init_worker(parent_pid: int, initializer, initargs: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


def exit_with_parent(parent_pid: int) -> None:
    """End this process within ``PARENT_CHECK_SECONDS`` of its parent's death, whatever it is doing.

    When the parent dies the worker is re-parented, so ``os.getppid()``
    changes; a daemon thread watches for that and calls ``os._exit`` (no
    cleanup: the queues it would flush have no reader). ``os._exit`` also
    ends a worker blocked in a queue write, which nothing else could.
    Linux's ``PR_SET_PDEATHSIG`` is not used: it fires when the *thread*
    that started the worker ends, not the process, which would kill healthy
    workers of a pool started from a short-lived thread.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(EXIT_PARENT_GONE)

    threading.Thread(target=watch, name="omnict-parent-watch", daemon=True).start()
