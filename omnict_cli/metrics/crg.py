"""The CRG score: the VLM3D challenge's ranking figure for the 18 CT-RATE labels of generated reports.

Abnormalities are rare: in a CT-RATE set most of the 18 x N label cells are
negative, so a generator that says "normal" to everything gets a high
accuracy, and F1 ignores the true negatives altogether. CRG (Hamamci et al.,
"CRG Score: a distribution-aware clinical metric for radiology report
generation", 2025) weighs a found positive and a missed positive by how rare
positives are, and lets a false positive cost one:

* X = 18 x number of studies (every label cell), A = reference positives;
* r = (X - A) / (2A): the reward for a true positive and the cost of a false negative;
* U = (X - A) / 2: the score of a generator that is right everywhere, halved;
* s = r TP - r FN - FP (TP, FN, FP summed over all classes and studies);
* CRG = U / (2U - s).

A perfect labelling has s = rA = U, so CRG = 1; a report that says nothing
(TP = 0, FN = A, FP = 0) has s = -U and CRG = 1/3. CRG is not defined (NaN)
when the references have no positive (r divides by A = 0) or when every cell
is positive (U = 0 and nothing to weigh).
"""

from __future__ import annotations

import numpy as np

from omnict_cli.metrics.classification import check_label_matrices


def crg_from_counts(tp, fn, fp, cells) -> np.ndarray:
    """CRG from summed counts and the number of label cells X (arrays of one shape, or scalars).

    A = TP + FN (every reference positive is either found or missed).
    """
    tp, fn, fp, cells = (np.asarray(value, dtype=np.float64) for value in (tp, fn, fp, cells))
    positives = tp + fn
    defined = (positives > 0) & (cells > positives)
    safe_positives = np.where(defined, positives, 1.0)
    reward = (cells - positives) / (2 * safe_positives)
    best = (cells - positives) / 2
    weighted = reward * tp - reward * fn - fp
    denominator = 2 * best - weighted
    return np.where(defined & (denominator > 0), best / np.where(denominator > 0, denominator, 1.0), np.nan)


def crg_score(y_true, y_pred) -> float:
    """CRG of [studies, classes] 0/1 reference and predicted label matrices (see the module docstring)."""
    truth, predicted = check_label_matrices(y_true, y_pred)
    tp = int((truth & predicted).sum())
    fn = int((truth & ~predicted).sum())
    fp = int((~truth & predicted).sum())
    return float(crg_from_counts(tp, fn, fp, truth.size))


__all__ = ["crg_from_counts", "crg_score"]
