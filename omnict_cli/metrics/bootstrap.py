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
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from omnict_cli.errors import OmnictError
from omnict_cli.metrics.classification import check_label_matrices, mean_over_defined, precision_recall_f1


def resample_indices(n: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """[n_resamples, n] study indices drawn with replacement, reproducible by ``seed``."""
    if n < 1:
        raise OmnictError("cannot bootstrap a score over 0 studies")
    if n_resamples < 1:
        raise OmnictError(f"n_resamples must be at least 1, got {n_resamples}")
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of the resampled values, undefined (NaN) resamples dropped."""
    if not 0.0 < confidence < 1.0:
        raise OmnictError(f"confidence must be between 0 and 1, got {confidence}")
    defined = values[~np.isnan(values)]
    if defined.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(defined, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_ci(statistic: Callable[[np.ndarray], float], n: int, n_resamples: int = 1000,
                 confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """(low, high) percentile interval of ``statistic(indices)`` over resampled study indices.

    ``statistic`` receives an int array of n indices (with repeats) and
    returns the score of those studies; it is called ``n_resamples`` times.
    A NaN score marks a resample where the statistic is not defined; such
    resamples are left out of the percentiles.
    """
    indices = resample_indices(n, n_resamples, seed)
    values = np.array([statistic(row) for row in indices], dtype=np.float64)
    return _percentile_interval(values, confidence)


def _resample_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """[n_resamples, n] how often each study is drawn, from the same indices as :func:`resample_indices`."""
    indices = resample_indices(n, n_resamples, seed)
    offsets = indices + np.arange(n_resamples)[:, None] * n
    return np.bincount(offsets.ravel(), minlength=n_resamples * n).reshape(n_resamples, n).astype(np.float64)


def macro_f1_ci(y_true, y_pred, n_resamples: int = 1000, confidence: float = 0.95,
                seed: int = 0) -> tuple[float, float]:
    """Interval of the macro F1 of :func:`~omnict_cli.metrics.classification.classification_report`.

    Vectorised: per-study tp / fp / fn indicators are summed with the
    resample counts as weights, so 1000 resamples of 3000 studies x 18
    classes are one matrix product. Each resample's macro F1 averages the
    classes defined in it; resamples with no defined class are dropped (see
    the module docstring).
    """
    truth, predicted = check_label_matrices(y_true, y_pred)
    counts = _resample_counts(truth.shape[0], n_resamples, seed)
    tp = counts @ (truth & predicted).astype(np.float64)
    fp = counts @ (~truth & predicted).astype(np.float64)
    fn = counts @ (truth & ~predicted).astype(np.float64)
    _, _, f1 = precision_recall_f1(tp, fp, fn)
    return _percentile_interval(mean_over_defined(f1, axis=1), confidence)


def accuracy_ci(correct, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Interval of the accuracy (mean of a 0/1 or bool per-question array); also fine for per-row scores."""
    values = np.asarray(correct, dtype=np.float64)
    if values.ndim != 1:
        raise OmnictError(f"per-question outcomes must be a 1-D array, got shape {values.shape}")
    counts = _resample_counts(values.shape[0], n_resamples, seed)
    return _percentile_interval(counts @ values / values.shape[0], confidence)
