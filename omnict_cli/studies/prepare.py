"""Load and preprocess one study in one pass: what the report pipeline and training call.

``load_and_preprocess`` returns the canonical :class:`Volume` (needed at
full resolution for organ masks) and the encoder-ready :class:`ModelInput`,
exactly as ``preprocess_volume(load_study(study))`` would. For a gzip
NIfTI stored slice after slice (axial CT as scanners and dcm2niix write it:
the file's third axis runs inferior-superior), gzip decoding runs in a
background thread while this thread resamples the slices already decoded,
so the decode, the slowest step, hides most of the resampling. Other inputs
take the plain path. Decoding releases the GIL (python-isal), so the two
threads really run at once on two cores.
"""

from __future__ import annotations

import contextlib
import queue
import threading

import numpy as np
import torch
from nibabel import orientations as nio

from omnict_cli.studies.discover import Study
from omnict_cli.studies.load import LoadOptions, load_study
from omnict_cli.studies.preprocess import (
    ModelInput,
    PreprocessConfig,
    SliceAxisResampler,
    preprocess_volume,
    scale_to_unit_range,
    volume_model_input,
)
from omnict_cli.studies.volume import CANONICAL_AXCODES, Volume, canonicalize

_DONE = object()


def load_and_preprocess(
    study: Study, config: PreprocessConfig = PreprocessConfig(), options: LoadOptions = LoadOptions()
) -> tuple[Volume, ModelInput]:
    """Load ``study`` and preprocess it; raises StudyLoadError like ``load_study``."""
    if study.format == "nifti" and study.paths[0].name.lower().endswith(".gz"):
        return _streamed(study, config, options)
    volume = load_study(study, options)
    return volume, preprocess_volume(volume, config)


def _streamed(study: Study, config: PreprocessConfig, options: LoadOptions):
    """Decode in a worker thread; resample finished slices here as they arrive."""
    progress_queue: queue.Queue = queue.Queue()
    outcome: dict = {}

    def decode():
        try:
            outcome["volume"] = load_study(study, options, on_planes=progress_queue.put)
        except BaseException as error:  # handed to the caller's thread, raised there
            outcome["error"] = error
        finally:
            progress_queue.put(_DONE)

    worker = threading.Thread(target=decode, name=f"decode {study.study_id}", daemon=True)
    worker.start()
    consumer = _SliceConsumer(config)
    try:
        with _one_torch_thread():  # leave the other core to the decoder while both run
            while (progress := progress_queue.get()) is not _DONE:
                consumer.take(progress)
    finally:
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    volume = outcome["volume"]
    if consumer.resampler is None or not consumer.complete(volume):
        return volume, preprocess_volume(volume, config)
    grid = scale_to_unit_range(consumer.resampler.finish(), volume, config)
    return volume, volume_model_input(volume, grid, config)


_THREAD_LIMIT_LOCK = threading.Lock()
_thread_limit_state = {"depth": 0, "saved": 1}


@contextlib.contextmanager
def _one_torch_thread():
    """Run torch single-threaded inside; safe when several loads overlap.

    torch's thread count is process-wide: the first entrant saves it, the
    last one out restores it, so concurrent callers (a prefetching
    pipeline) cannot leave it at 1.
    """
    with _THREAD_LIMIT_LOCK:
        if _thread_limit_state["depth"] == 0:
            _thread_limit_state["saved"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _thread_limit_state["depth"] += 1
    try:
        yield
    finally:
        with _THREAD_LIMIT_LOCK:
            _thread_limit_state["depth"] -= 1
            if _thread_limit_state["depth"] == 0:
                torch.set_num_threads(_thread_limit_state["saved"])


class _SliceConsumer:
    """Feeds decoded planes to a SliceAxisResampler when the file layout allows it.

    Streaming applies when the stored values are HU already (no NIfTI
    scaling), integral (no NaN repair to wait for), 3D, and the file's
    third axis is the canonical slice axis; otherwise it stays idle and
    the caller falls back to the plain path.
    """

    def __init__(self, config: PreprocessConfig):
        self.config = config
        self.resampler: SliceAxisResampler | None = None
        self.canonical: np.ndarray | None = None
        self.reversed = False
        self.planes_used = 0
        self.undecided = True

    def take(self, progress) -> None:
        if self.undecided:
            self._start(progress)
        if self.resampler is None or progress.planes <= self.planes_used:
            return
        first, last = self.planes_used, progress.planes
        depth = self.canonical.shape[0]
        start, stop = (depth - last, depth - first) if self.reversed else (first, last)
        self.resampler.add(start, self.canonical[start:stop])
        self.planes_used = last

    def complete(self, volume: Volume) -> bool:
        """True when every plane went through and the loaded volume has the streamed grid."""
        return self.planes_used == self.canonical.shape[0] and volume.shape == self.canonical.shape

    def _start(self, progress) -> None:
        self.undecided = False
        array = progress.array
        if progress.scaled or array.ndim != 3 or min(array.shape) < 2 or array.dtype.kind not in "iu":
            return
        slice_axis, direction = nio.io_orientation(progress.affine)[2]
        if int(slice_axis) != 2:  # the file's third axis is not inferior-superior
            return
        self.canonical, _ = canonicalize(array, progress.affine, CANONICAL_AXCODES)
        self.reversed = direction < 0
        low, high = self.config.hu_window
        self.resampler = SliceAxisResampler(
            self.canonical.shape, self.config.volume_size, clip=(low, high), antialias=self.config.antialias
        )
