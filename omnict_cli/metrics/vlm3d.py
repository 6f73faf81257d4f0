"""``omnict score --protocol vlm3d``: the VLM3D challenge's scores, computed the challenge's way.

The VLM3D challenge (MICCAI 2025, report generation on CT-RATE) ranks
generated reports with three groups of figures; a number omnict prints under
this protocol is meant to equal the challenge's on the same files:

* **Text**, by ``pycocoevalcap`` 1.2 itself (:mod:`omnict_cli.metrics.coco_text`):
  BLEU-1..4 and their mean, ROUGE-L, CIDEr(-D) and METEOR. The generated text
  is cleaned first as the challenge does (:func:`clean_generated`: line breaks
  become spaces, " . " becomes ".", double and single quotes and underscores
  are dropped); a reference only loses its line breaks (METEOR's Java
  scorer reads one text per line). No other tokenisation: the scorers split
  at spaces as they do by themselves. A study's text is its report as the
  file gives it: the challenge JSON's ``report``, or findings and impression
  joined by a space (omnict JSONL, CT-RATE CSV; no "Findings:" headers).
* **Classification** of the 18 CT-RATE labels (labelled from the texts, or
  the references' labels from a CT-RATE label CSV): per class precision,
  recall, F1 and accuracy; macro = the plain mean over all 18 classes with an
  undefined value (0/0) counted as 0, as scikit-learn's ``zero_division=0``
  does; micro pools the counts of all classes.
* **CRG** (:mod:`omnict_cli.metrics.crg`), the challenge's ranking figure.

Every figure gets a percentile bootstrap 95% interval over studies
(:mod:`omnict_cli.metrics.bootstrap`, the same resamples for all figures).
Corpus BLEU is recomputed from each resample's pooled n-gram counts; ROUGE-L,
CIDEr-D and METEOR are means of per-study scores, so their intervals are
those of the mean (a study's CIDEr-D keeps the IDF of the whole scored set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from omnict_cli.labels.classes import CTRATE_ABNORMALITIES
from omnict_cli.metrics.bootstrap import percentile_interval, resample_counts
from omnict_cli.metrics.coco_text import bleu_from_counts, coco_scores
from omnict_cli.metrics.crg import crg_from_counts
from omnict_cli.metrics.score_files import ScoreOptions, joined_counts, nan_to_none

DROPPED_FROM_GENERATED = "\"'_"
"""Characters the challenge's clean-up deletes from generated reports: quotes and underscores."""
CONFIDENCE = 0.95


def clean_generated(text: str) -> str:
    """A generated report as the challenge cleans it before scoring (see the module docstring)."""
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ").replace(" . ", ".")
    return text.translate({ord(character): None for character in DROPPED_FROM_GENERATED})


def clean_reference(text: str) -> str:
    """A reference report with its line breaks turned into spaces (METEOR reads one text per line)."""
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def protocol_texts(path: str | Path) -> dict[str, str]:
    """``{study name: report text}`` of a reports file, as this protocol scores it (module docstring)."""
    from omnict_cli.labels.challenge_json import challenge_entries
    from omnict_cli.labels.ctrate_io import read_reports

    try:
        entries = challenge_entries(Path(path).read_text(encoding="utf-8-sig"), path)
    except (OSError, UnicodeDecodeError):
        entries = None  # read_reports below says what is wrong with the file
    if entries is not None:
        return {name: report for _, name, report in entries}
    return {
        report.volume_name: " ".join(part for part in (report.findings, report.impression) if part)
        for report in read_reports(path)
    }


# --------------------------------------------------------------------------
# Classification, the challenge's way
# --------------------------------------------------------------------------


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's ``zero_division=0``)."""
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)


def _per_class_scores(tp, fp, fn, tn) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and accuracy of count arrays of any one shape, 0 where undefined."""
    tp, fp, fn, tn = (np.asarray(value, dtype=np.float64) for value in (tp, fp, fn, tn))
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
    }


def _averages(tp, fp, fn, tn) -> dict[str, np.ndarray]:
    """macro_* (plain mean of the per-class scores over the last axis) and micro_* (scores of pooled counts)."""
    counts = [np.asarray(value, dtype=np.float64) for value in (tp, fp, fn, tn)]
    macro = {f"macro_{name}": values.mean(axis=-1) for name, values in _per_class_scores(*counts).items()}
    micro = {f"micro_{name}": values for name, values in _per_class_scores(*(c.sum(axis=-1) for c in counts)).items()}
    return macro | micro


def _label_counts(truth: np.ndarray, predicted: np.ndarray) -> list[np.ndarray]:
    """[studies, classes] 0/1 indicators of TP, FP, FN, TN (float, ready for resample-weighted sums)."""
    truth, predicted = truth.astype(bool), predicted.astype(bool)
    return [
        (truth & predicted).astype(np.float64),
        (~truth & predicted).astype(np.float64),
        (truth & ~predicted).astype(np.float64),
        (~truth & ~predicted).astype(np.float64),
    ]


def classification_figures(truth, predicted) -> tuple[list[dict], dict[str, float]]:
    """Per-class rows (label, counts, precision, recall, F1, accuracy) and the macro / micro / CRG figures."""
    tp, fp, fn, tn = (indicator.sum(axis=0) for indicator in _label_counts(np.asarray(truth), np.asarray(predicted)))
    scores = _per_class_scores(tp, fp, fn, tn)
    rows = [
        {
            "label": label,
            "tp": int(tp[i]),
            "fp": int(fp[i]),
            "fn": int(fn[i]),
            "tn": int(tn[i]),
            "support": int(tp[i] + fn[i]),
            **{name: float(scores[name][i]) for name in ("precision", "recall", "f1", "accuracy")},
        }
        for i, label in enumerate(CTRATE_ABNORMALITIES)
    ]
    figures = {name: float(value) for name, value in _averages(tp, fp, fn, tn).items()}
    figures["crg"] = float(crg_from_counts(tp.sum(), fn.sum(), fp.sum(), np.asarray(truth).size))
    return rows, figures


def _classification_resamples(truth, predicted, counts: np.ndarray) -> dict[str, np.ndarray]:
    """The macro / micro / CRG figures of each resample (``counts``: [resamples, studies] draw counts)."""
    tp, fp, fn, tn = (counts @ indicator for indicator in _label_counts(truth, predicted))
    figures = _averages(tp, fp, fn, tn)
    cells = counts.sum(axis=1) * truth.shape[1]
    figures["crg"] = crg_from_counts(tp.sum(axis=1), fn.sum(axis=1), fp.sum(axis=1), cells)
    return figures


# --------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------


@dataclass
class Vlm3dScores:
    """Everything ``omnict score --protocol vlm3d`` reports (see :meth:`to_dict` for the JSON)."""

    predictions: str
    references: str
    method: str
    convention: str
    reference_labels_source: str
    join: object
    failed: list[str]
    empty: list[str]
    per_class: list[dict]
    figures: dict[str, float]
    """macro_* and micro_* precision / recall / F1 / accuracy, and crg."""
    text: dict[str, float]
    """bleu1..bleu4, bleu_mean, rouge_l, cider_d and (with Java) meteor."""
    intervals: dict[str, tuple[float, float]]
    """A 95% bootstrap interval for every name in ``figures`` and ``text``."""
    bootstrap: int
    per_study_text: dict[str, np.ndarray] = field(default_factory=dict)
    """Per-study text scores (for ``--per-study``)."""
    notes: list[str] = field(default_factory=list)
    pairs: object = None
    """The :class:`~omnict_cli.metrics.report_pairs.ReportPairs` scored (for ``--per-study``)."""

    protocol = "vlm3d"

    @property
    def n_scored(self) -> int:
        return len(self.join.matched)

    def to_dict(self) -> dict:
        """Plain JSON-ready data; a figure that is not defined (CRG with no reference positive) is null."""
        data = {
            "mode": "reports",
            "protocol": self.protocol,
            "predictions": self.predictions,
            "references": self.references,
            "method": self.method,
            "convention": self.convention,
            "reference_labels": self.reference_labels_source,
            **joined_counts(self.join, self.failed, self.empty),
            "per_class": self.per_class,
            "classification": self.figures,
            "text": self.text,
            "ci95": {name: list(interval) for name, interval in self.intervals.items()},
            "bootstrap_resamples": self.bootstrap,
            "notes": self.notes,
        }
        return nan_to_none(data)


def bootstrap_intervals(
    truth, predicted, text_per_study: dict[str, np.ndarray], bleu_counts: np.ndarray, n_resamples: int, seed: int
) -> dict[str, tuple[float, float]]:
    """95% intervals of every classification and text figure over the same study resamples."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    collected: dict[str, list[np.ndarray]] = {}
    for counts in resample_counts(truth.shape[0], n_resamples, seed):
        figures = _classification_resamples(truth, predicted, counts)
        bleu = bleu_from_counts(counts @ bleu_counts)
        for order in range(bleu.shape[1]):
            figures[f"bleu{order + 1}"] = bleu[:, order]
        figures["bleu_mean"] = bleu.mean(axis=1)
        for name, values in text_per_study.items():
            if not name.startswith("bleu"):
                figures[name] = counts @ values / truth.shape[0]
        for name, values in figures.items():
            collected.setdefault(name, []).append(values)
    return {name: percentile_interval(np.concatenate(values), CONFIDENCE) for name, values in collected.items()}


def score_vlm3d(
    predictions_path: str | Path,
    references_path: str | Path,
    options: ScoreOptions = ScoreOptions(),
    *,
    meteor: bool = True,
) -> Vlm3dScores:
    """Score generated reports the VLM3D challenge's way (module docstring); ``meteor=False`` skips METEOR."""
    from omnict_cli.metrics.report_pairs import pair_reports

    pairs = pair_reports(predictions_path, references_path, options)
    generated, references = protocol_texts(predictions_path), protocol_texts(references_path)
    hypotheses = [clean_generated(generated.get(name, "")) for name in pairs.prediction_names]
    reference_texts = [clean_reference(references[name]) for name in pairs.reference_names]
    text = coco_scores(hypotheses, reference_texts, meteor=meteor)
    per_class, figures = classification_figures(pairs.truth, pairs.predicted)
    intervals = bootstrap_intervals(
        pairs.truth, pairs.predicted, text.per_study, text.bleu_counts, options.bootstrap, options.seed
    )
    return Vlm3dScores(
        predictions=str(predictions_path),
        references=str(references_path),
        method=options.method,
        convention=options.convention,
        reference_labels_source=pairs.truth_source,
        join=pairs.join,
        failed=pairs.failed,
        empty=pairs.empty,
        per_class=per_class,
        figures=figures,
        text=text.corpus,
        intervals=intervals,
        bootstrap=options.bootstrap,
        per_study_text=text.per_study,
        notes=text.notes,
        pairs=pairs,
    )


def submission_reports(predictions_path: str | Path, pairs) -> dict[str, str]:
    """``{reference name: generated text}`` of the scored studies, for the challenge's JSON layout.

    Named as the references name them (CT-RATE's ``VolumeName``, which the
    challenge's ``input_image_name`` is); a failed prediction is an empty report.
    """
    generated = protocol_texts(predictions_path)
    return {reference: generated.get(prediction, "") for prediction, reference in pairs.join.matched}


__all__ = [
    "Vlm3dScores",
    "bootstrap_intervals",
    "classification_figures",
    "clean_generated",
    "clean_reference",
    "protocol_texts",
    "score_vlm3d",
    "submission_reports",
]
