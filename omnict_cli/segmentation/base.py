"""The segmenter interface: a canonical Volume in, a label map on the same grid out.

Every segmenter (TotalSegmentator, the built-in threshold segmenter, a test
double) implements :class:`Segmenter`. Its ``name``, ``version`` and
``options`` go into the mask cache key and into each output record
(``describe()``), so a cached mask is only reused by the segmenter and
settings that made it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

LABEL_DTYPE = np.uint8
"""Label maps are uint8: TotalSegmentator ids 1..117, built-in extras 200..254, 0 = background."""


class Segmenter(ABC):
    """Makes organ label maps for canonical volumes.

    Subclasses set ``name`` and ``version`` and implement :meth:`segment`
    and :attr:`vocabulary`. ``options()`` lists every setting that changes
    the output (e.g. ``{"fast": True}``); settings that do not (device,
    threads) stay out of it so caches are shared across machines.
    """

    name: str = "segmenter"
    version: str = "0"

    @property
    @abstractmethod
    def vocabulary(self) -> dict[int, str]:
        """Label id -> structure name for every id this segmenter can output."""

    @abstractmethod
    def segment(self, volume) -> np.ndarray:
        """Label map for ``volume`` (an ``omnict_cli.studies.volume.Volume``).

        Returns a ``LABEL_DTYPE`` array with exactly ``volume.voxels.shape``,
        in the same canonical ``[z, y, x]`` layout; 0 is background.
        """

    def options(self) -> dict:
        """Settings that change the output; part of the cache key."""
        return {}

    def describe(self) -> str:
        """One line for records and logs, e.g. ``"totalsegmentator 2.18.0 fast"``."""
        flags = " ".join(
            key if value is True else f"{key}={value}"
            for key, value in sorted(self.options().items())
            if value not in (False, None)
        )
        return " ".join(part for part in (self.name, self.version, flags) if part)


def check_label_map(labels: np.ndarray, volume, segmenter: Segmenter) -> np.ndarray:
    """Validate a segmenter's output against its volume; returns it as ``LABEL_DTYPE``.

    Raises ValueError naming the segmenter when the shape differs from the
    volume's or an id is outside the segmenter's vocabulary.
    """
    labels = np.asarray(labels)
    if labels.shape != volume.voxels.shape:
        raise ValueError(
            f"{segmenter.describe()}: label map shape {labels.shape} does not match the volume's {volume.voxels.shape}"
        )
    unknown = sorted(set(present_labels(labels).tolist()) - set(segmenter.vocabulary) - {0})
    if unknown:
        raise ValueError(f"{segmenter.describe()}: label ids {unknown[:10]} are not in its vocabulary")
    return labels.astype(LABEL_DTYPE, copy=False)


def present_labels(labels: np.ndarray) -> np.ndarray:
    """The distinct values of a label map, sorted.

    Counting is ~10x faster than ``np.unique``'s sort on a 512x512x300 map
    for the small non-negative ids label maps hold; other values fall back to sorting.
    """
    if labels.size and labels.dtype.kind in "ui":
        low, high = int(labels.min()), int(labels.max())
        if low >= 0 and high < 2**16:
            return np.flatnonzero(np.bincount(labels.ravel(), minlength=high + 1))
    return np.unique(labels)
