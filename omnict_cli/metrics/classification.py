"""Per-class precision / recall / F1 for multi-label abnormality predictions.

Report generation is scored the way the paper's Table 16 does it: a labeler
turns each generated report and each reference report into the 18 CT-RATE
0/1 labels, and the two label matrices are compared class by class. This
module does the comparison; it knows nothing about reports or labelers.

Conventions (the same as ``sklearn.metrics.precision_recall_fscore_support``
with ``zero_division=0`` wherever a class has any positive label or any
positive prediction, and with ``zero_division=np.nan`` for a class that has
neither):

* precision = tp / (tp + fp), recall = tp / (tp + fn),
  F1 = 2 tp / (2 tp + fp + fn) (equal to 2PR / (P + R) when both exist);
* a class predicted for no study has precision 0; a class present in no
  reference has recall 0 as soon as it is predicted anywhere;
* a class that is absent from every reference AND never predicted (tp = fp =
  fn = 0) has precision, recall and F1 **NaN** ("not defined"): nothing was
  there to find and nothing was claimed, so the data say nothing about how
  well the class is read. Scoring it 1.0 would inflate macro scores on small
  sets where several classes never occur; scoring it 0 would punish a
  correct silence;
* macro scores are the unweighted mean of the per-class scores over the
  classes where the score is defined (``np.nanmean``; NaN when no class is
  defined). So macro F1 is the mean of per-class F1, NOT the F1 of macro P
  and R — Table 16's F1 is below both its P and R, which only the mean of
  per-class F1 allows — and identical label matrices score macro F1 1.0;
* micro scores pool tp / fp / fn over all classes, with the same rules (NaN
  only when tp + fp + fn = 0 over every class).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omnict_cli.errors import OmnictError


@dataclass(frozen=True)
class ClassScores:
    """Counts and scores of one abnormality class over all studies."""

    label: str
    tp: int
    fp: int
    fn: int
    tn: int
    support: int
    """Number of studies whose reference has this class (tp + fn)."""
    precision: float
    recall: float
    f1: float
    """NaN (like precision and recall) when the class is neither present nor predicted (tp = fp = fn = 0)."""

    @property
    def defined(self) -> bool:
        """Whether the class has anything to score: a reference positive or a prediction."""
        return self.tp + self.fp + self.fn > 0


@dataclass(frozen=True)
class ClassificationReport:
    """Per-class scores plus macro and micro averages (see module docstring)."""

    per_class: list[ClassScores]
    macro_precision: float
    macro_recall: float
    macro_f1: float
    micro_precision: float
    micro_recall: float
    micro_f1: float
    n_samples: int

    @property
    def undefined_labels(self) -> list[str]:
        """Classes with no reference positive and no prediction: NaN scores, left out of the macro means."""
        return [scores.label for scores in self.per_class if not scores.defined]


def precision_recall_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 from count arrays of any (matching) shape.

    Vectorised so the bootstrap can score thousands of resamples at once with
    exactly the conventions of :func:`classification_report`.
    """
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    nothing_there = (tp + fp + fn) == 0
    precision = _divide_or(tp, tp + fp, fallback=0.0)
    recall = _divide_or(tp, tp + fn, fallback=0.0)
    f1 = _divide_or(2 * tp, 2 * tp + fp + fn, fallback=0.0)
    # A class that is neither present nor predicted has nothing to score: not defined.
    precision = np.where(nothing_there, np.nan, precision)
    recall = np.where(nothing_there, np.nan, recall)
    f1 = np.where(nothing_there, np.nan, f1)
    return precision, recall, f1


def mean_over_defined(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean along ``axis`` ignoring NaN (undefined classes); NaN where no value is defined.

    The same numbers as ``np.nanmean`` without its "Mean of empty slice"
    warning, because an all-undefined row is an expected outcome here (e.g.
    a bootstrap resample of studies that have no findings and no predictions).
    """
    values = np.asarray(values, dtype=np.float64)
    defined = ~np.isnan(values)
    count = defined.sum(axis=axis)
    total = np.where(defined, values, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _divide_or(numerator: np.ndarray, denominator: np.ndarray, fallback: float) -> np.ndarray:
    """numerator / denominator, with ``fallback`` where the denominator is 0."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, fallback)


def check_label_matrices(y_true, y_pred, labels: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate two [n_studies, n_classes] 0/1 matrices and return them as bool arrays.

    Raised errors say which matrix is wrong and how, because these usually
    come from label files a user produced.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    for name, matrix in (("reference labels", y_true), ("predicted labels", y_pred)):
        if matrix.ndim != 2:
            raise OmnictError(f"{name} must be a [studies, classes] matrix, got shape {matrix.shape}")
        if matrix.size and not np.isin(matrix, (0, 1)).all():
            raise OmnictError(f"{name} must contain only 0 and 1")
    if y_true.shape != y_pred.shape:
        raise OmnictError(
            f"reference labels have shape {y_true.shape} but predicted labels have shape {y_pred.shape}",
            hint="Both must list the same studies and the same classes in the same order.",
        )
    if y_true.shape[0] == 0:
        raise OmnictError("no studies to score: the label matrices have 0 rows")
    if labels is not None and len(labels) != y_true.shape[1]:
        raise OmnictError(f"{len(labels)} label names given for {y_true.shape[1]} label columns")
    return y_true.astype(bool), y_pred.astype(bool)


def classification_report(y_true, y_pred, labels: list[str]) -> ClassificationReport:
    """Compare reference and predicted 0/1 label matrices ([n_studies, n_classes]).

    Returns per-class counts and scores in the order of ``labels`` plus macro
    and micro averages; the zero-division rules (0, or NaN for a class with
    nothing to score) are in the module docstring.
    """
    truth, predicted = check_label_matrices(y_true, y_pred, labels)
    tp = (truth & predicted).sum(axis=0)
    fp = (~truth & predicted).sum(axis=0)
    fn = (truth & ~predicted).sum(axis=0)
    tn = (~truth & ~predicted).sum(axis=0)
    precision, recall, f1 = precision_recall_f1(tp, fp, fn)
    per_class = [
        ClassScores(
            label=label,
            tp=int(tp[i]),
            fp=int(fp[i]),
            fn=int(fn[i]),
            tn=int(tn[i]),
            support=int(tp[i] + fn[i]),
            precision=float(precision[i]),
            recall=float(recall[i]),
            f1=float(f1[i]),
        )
        for i, label in enumerate(labels)
    ]
    micro_p, micro_r, micro_f1 = precision_recall_f1(tp.sum(), fp.sum(), fn.sum())
    return ClassificationReport(
        per_class=per_class,
        macro_precision=float(mean_over_defined(precision)),
        macro_recall=float(mean_over_defined(recall)),
        macro_f1=float(mean_over_defined(f1)),
        micro_precision=float(micro_p),
        micro_recall=float(micro_r),
        micro_f1=float(micro_f1),
        n_samples=int(truth.shape[0]),
    )
