"""Make the views of many studies in worker processes, in record order, with a bounded window.

A 1,000-study page re-reads 1,000 scans: seconds of CPU each, and no
shared state, so they spread over processes, from
:func:`omnict_cli.worker_pool.worker_pool` like ``report``'s (spawned, deaf to
Ctrl-C, gone when the main process is gone, even by SIGKILL). At most ``2 * workers + 2`` studies are in
flight, so memory stays flat however long the run.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures.process import BrokenProcessPool

from omnict_cli.review.study_images import ImageSettings, StudyImages, study_images
from omnict_cli.worker_pool import worker_pool

_WORKER_SETTINGS: ImageSettings | None = None


def _init_worker(settings: ImageSettings) -> None:
    global _WORKER_SETTINGS
    _WORKER_SETTINGS = settings


def _images_in_worker(record: dict) -> StudyImages:
    return study_images(record, _WORKER_SETTINGS)


def started_images(records: list[dict], settings: ImageSettings, workers: int):
    """:func:`images_in_order` with its workers already at work, so they render while the caller labels.

    Returns the generator after its first step (worker processes started, the
    first window of studies submitted); close it (``contextlib.closing``) to stop them.
    """
    images = images_in_order(records, settings, workers)
    next(images)
    return images


def images_in_order(records: list[dict], settings: ImageSettings, workers: int):
    """Yield None once the work has started, then ``StudyImages`` for each record, in order.

    0 workers renders in this process (nothing starts before the first study is asked for).
    """
    if workers <= 0:
        yield None
        for record in records:
            yield _images_or_warning(record, settings)
        return
    depth = 2 * workers + 2
    pending: deque = deque()
    remaining = iter(records)
    with worker_pool(workers, _init_worker, (settings,)) as pool:
        while len(pending) < depth and (record := next(remaining, None)) is not None:
            pending.append((record, pool.submit(_images_in_worker, record)))
        yield None  # started: the workers render while the caller does its own work
        while True:
            while len(pending) < depth and (record := next(remaining, None)) is not None:
                pending.append((record, pool.submit(_images_in_worker, record)))
            if not pending:
                return
            record, future = pending.popleft()
            try:
                yield future.result()
            except BrokenProcessPool:
                break  # a worker died (out of memory, a native crash): the pool is gone
            except Exception as error:  # the study's own failure, raised in the worker
                yield _failed(record, error)
    # the study that broke the pool gets one warning; the rest are made here, one by one
    yield _failed(record, RuntimeError("the worker process making its images died"))
    for record, _ in pending:
        yield _images_or_warning(record, settings)
    for record in remaining:
        yield _images_or_warning(record, settings)


def _images_or_warning(record: dict, settings: ImageSettings) -> StudyImages:
    """The study's views made here; a failure is the study's warning, as it is when a worker raises."""
    try:
        return study_images(record, settings)
    except Exception as error:  # one odd record (a path the OS refuses, ...) must not stop the page
        return _failed(record, error)


def _failed(record: dict, error: BaseException) -> StudyImages:
    return StudyImages(
        warnings=[f"{record.get('input')}: making the images failed ({type(error).__name__}: {error}); no images"]
    )
