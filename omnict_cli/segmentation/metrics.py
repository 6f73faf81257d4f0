"""Overlap scores for comparing a label map with a reference (tests and benchmarks).

Kept apart from any segmenter so the built-in segmenter's tests and the
segmentation benchmark score masks the same way.
"""

from __future__ import annotations

import numpy as np


def dice(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Dice overlap ``2|A & B| / (|A| + |B|)`` of two boolean masks on the same grid.

    Two empty masks agree perfectly and score 1.0 (a segmenter that finds
    no lung where the reference has none is right). Raises ValueError when
    the shapes differ, since a silent broadcast would give a meaningless score.
    """
    a = np.asarray(mask_a, dtype=bool)
    b = np.asarray(mask_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"dice: masks have different shapes {a.shape} and {b.shape}")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total
