"""Percentile bootstrap confidence intervals over studies.

A score on a few hundred studies is uncertain; resampling the studies with
replacement (Efron & Tibshirani 1993, percentile method) shows how much.
Each resample draws n study indices with replacement from the n studies,
recomputes the statistic on them, and the interval is the (1 - c) / 2 and
(1 + c) / 2 percentiles (numpy's linear interpolation) of the resampled
values. The same seed gives the same indices in every function here, so
``macro_f1_ci`` and ``bootstrap_ci`` with a macro-F1 statistic agree exactly.

A resample whose statistic is NaN (not defined) is dropped before the
percentiles are taken: for macro F1 that is a resample in which no class has
a reference positive or a prediction (e.g. a few normal studies drawn again
and again), so there is nothing to score. Within a resample, macro F1 is
the mean over the classes defined *in that resample*, the same convention as
:func:`~omnict_cli.metrics.classification.classification_report`. When every
resample is undefined the interval is (NaN, NaN).

Resamples are capped at :data:`MAX_RESAMPLES` (100,000; more is refused with
a clear error: the percentiles of a 95 % interval move by well under 0.001
between 10,000 and 100,000 resamples) and drawn in blocks of at most
:data:`BLOCK_ELEMENTS` indices, so memory stays a few tens of MB however many
resamples and studies there are (10 million resamples once took 15 GB).
Blocks draw from one generator in order, so the indices are the same as one
draw of all of them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from omnict_cli.errors import OmnictError
from omnict_cli.metrics.classification import check_label_matrices, mean_over_defined, precision_recall_f1

MAX_RESAMPLES = 100_000
"""The most bootstrap resamples omnict draws (see the module docstring)."""

BLOCK_ELEMENTS = 1 << 22
"""Study indices drawn per block (4 Mi int64 = 32 MB): bounds the memory of any resample count."""


def check_resample_count(n_resamples: int) -> None:
    """Refuse a resample count below 1 or above :data:`MAX_RESAMPLES` with a one-line error."""
    if n_resamples < 1:
        raise OmnictError(f"n_resamples must be at least 1, got {n_resamples}")
    if n_resamples > MAX_RESAMPLES:
        raise OmnictError(
            f"{n_resamples:,} bootstrap resamples is more than the cap of {MAX_RESAMPLES:,}",
            hint="Use --bootstrap 10000 or fewer: 1,000 already gives a stable 95% interval.",
        )


def resample_blocks(n: int, n_resamples: int = 1000, seed: int = 0):
    """Yield [rows, n] blocks of study indices drawn with replacement, all ``n_resamples`` rows in order.

    The same ``seed`` gives the same rows whatever the block size.
    """
    if n < 1:
        raise OmnictError("cannot bootstrap a score over 0 studies")
    check_resample_count(n_resamples)
    generator = np.random.default_rng(seed)
    rows_per_block = max(1, BLOCK_ELEMENTS // n)
    for first in range(0, n_resamples, rows_per_block):
        yield generator.integers(0, n, size=(min(rows_per_block, n_resamples - first), n))


def resample_indices(n: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """[n_resamples, n] study indices drawn with replacement, reproducible by ``seed`` (all in memory)."""
    return np.vstack(list(resample_blocks(n, n_resamples, seed)))


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of the resampled values, undefined (NaN) resamples dropped."""
    if not 0.0 < confidence < 1.0:
        raise OmnictError(f"confidence must be between 0 and 1, got {confidence}")
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(defined, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float], n: int, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """(low, high) percentile interval of ``statistic(indices)`` over resampled study indices.

    ``statistic`` receives an int array of n indices (with repeats) and
    returns the score of those studies; it is called ``n_resamples`` times.
    A NaN score marks a resample where the statistic is not defined; such
    resamples are left out of the percentiles.
    """
    values = np.array(
        [statistic(row) for block in resample_blocks(n, n_resamples, seed) for row in block], dtype=np.float64
    )
    return percentile_interval(values, confidence)


def resample_counts(n: int, n_resamples: int, seed: int):
    """Yield [rows, n] blocks: how often each study is drawn, from the same indices as :func:`resample_blocks`."""
    for indices in resample_blocks(n, n_resamples, seed):
        rows = indices.shape[0]
        offsets = indices + np.arange(rows)[:, None] * n
        yield np.bincount(offsets.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)


def macro_f1_ci(
    y_true, y_pred, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Interval of the macro F1 of :func:`~omnict_cli.metrics.classification.classification_report`.

    Vectorised: per-study tp / fp / fn indicators are summed with the
    resample counts as weights, so 1000 resamples of 3000 studies x 18
    classes are one matrix product. Each resample's macro F1 averages the
    classes defined in it; resamples with no defined class are dropped (see
    the module docstring).
    """
    truth, predicted = check_label_matrices(y_true, y_pred)
    indicators = [
        (truth & predicted).astype(np.float64),
        (~truth & predicted).astype(np.float64),
        (truth & ~predicted).astype(np.float64),
    ]
    macro = []
    for counts in resample_counts(truth.shape[0], n_resamples, seed):
        _, _, f1 = precision_recall_f1(*(counts @ indicator for indicator in indicators))
        macro.append(mean_over_defined(f1, axis=1))
    return percentile_interval(np.concatenate(macro), confidence)


def accuracy_ci(correct, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Interval of the accuracy (mean of a 0/1 or bool per-question array); also fine for per-row scores."""
    values = np.asarray(correct, dtype=np.float64)
    if values.ndim != 1:
        raise OmnictError(f"per-question outcomes must be a 1-D array, got shape {values.shape}")
    means = [counts @ values / values.shape[0] for counts in resample_counts(values.shape[0], n_resamples, seed)]
    return percentile_interval(np.concatenate(means), confidence)
