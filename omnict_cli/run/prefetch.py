"""Prepare studies ahead of the model in worker processes, with a bounded window so memory stays flat.

Loading, preprocessing and segmenting a CT take seconds of CPU; the model
takes its own seconds on the GPU. :class:`StudyPrefetcher` keeps at most
``depth`` studies submitted or finished-but-not-taken, so a 10,000-study
folder uses the memory of ``depth`` studies, and yields results in the
order the studies were given (resume and shard merges rely on that order).

Workers come from :func:`omnict_cli.worker_pool.worker_pool`: spawned,
deaf to Ctrl-C (the main process finishes the record it is writing), and
ending themselves when the main process is gone, even by SIGKILL. A worker that dies
(out of memory, a crash in a native reader) breaks the pool: the pool is
restarted, the unfinished studies are resubmitted, and a study that breaks a
fresh pool a second time becomes an error of its own.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from omnict_cli.run.study_inputs import PreparedStudy, PrepareSetup, prepare_study
from omnict_cli.worker_pool import worker_pool

_WORKER_SETUP: PrepareSetup | None = None


class WorkerDied(RuntimeError):
    """The worker process preparing a study ended abruptly, twice."""


def _init_worker(setup: PrepareSetup) -> None:
    global _WORKER_SETUP
    import torch

    torch.set_num_threads(1)  # workers are many; the model process keeps the cores it was given
    _WORKER_SETUP = setup


def _prepare_in_worker(study) -> PreparedStudy:
    return prepare_study(study, _WORKER_SETUP)


class StudyPrefetcher:
    """Yields ``(study, PreparedStudy or the exception it raised)`` in input order.

    Args:
        setup: how studies are prepared (sent once to each worker).
        workers: worker processes; 0 prepares in this process, one study at a time.
        depth: studies in flight or waiting at most (>= workers).
    """

    def __init__(self, setup: PrepareSetup, workers: int, depth: int | None = None):
        self.setup = setup
        self.workers = max(0, int(workers))
        self.depth = max(depth or 2 * self.workers + 2, self.workers, 1)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> StudyPrefetcher:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Cancel the studies not started and wait for the pool's threads and workers to end.

        Waiting (for at most the studies the workers are preparing) is what
        keeps exit clean: after ``shutdown(wait=False)`` the pool's manager
        thread is still closing its wake-up pipe when the interpreter exits,
        and ``concurrent.futures``' exit hook (``_python_exit``) writes to that
        pipe without the pool's lock (its own comment says so), so now and then
        a run ended with an ``OSError: [Errno 9] Bad file descriptor`` traceback.
        """
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=True, cancel_futures=True)

    def prepared(self, studies):
        """Iterate over ``studies`` prepared; never raises for a bad study."""
        if self.workers == 0:
            for study in studies:
                yield study, _prepare_here(study, self.setup)
            return
        yield from self._prepared_in_workers(iter(studies))

    def _prepared_in_workers(self, studies):
        pending: deque = deque()
        broken_before: set[str] = set()
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.depth:
                study = next(studies, None)
                if study is None:
                    exhausted = True
                    break
                pending.append([study, self._submit(study)])
            if not pending:
                return
            study, future = pending[0]
            try:
                result = future.result()
            except BrokenProcessPool:
                if study.study_id in broken_before:
                    result = WorkerDied(
                        f"{study.input}: the worker process loading it died twice (out of "
                        "memory, or a crash in a file reader); check the file or give the "
                        "workers more memory"
                    )
                else:
                    broken_before.add(study.study_id)
                    self._restart(pending)
                    continue
            except Exception as error:  # the study's own failure, raised in the worker
                result = error
            pending.popleft()
            yield study, result

    def _submit(self, study):
        if self._pool is None:
            self._pool = worker_pool(self.workers, _init_worker, (self.setup,))
        return self._pool.submit(_prepare_in_worker, study)

    def _restart(self, pending: deque) -> None:
        """A fresh pool; every study the broken pool did not finish is submitted again, in order."""
        self.close()
        for entry in pending:
            future = entry[1]
            if not future.done() or future.cancelled() or isinstance(future.exception(), BrokenProcessPool):
                entry[1] = self._submit(entry[0])


def _prepare_here(study, setup: PrepareSetup):
    try:
        return prepare_study(study, setup)
    except Exception as error:
        return error
