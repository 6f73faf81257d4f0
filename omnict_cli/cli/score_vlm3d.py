"""The tables ``omnict score --protocol vlm3d`` prints: the challenge's figures, each with its 95% interval.

Values print as the challenge's leaderboard shows them, as fractions with
four decimals (CIDEr as it comes, on its 0-10 scale), so a printed number can
be compared with the challenge's to the last digit shown; the JSON (``--json``)
has every digit.
"""

from __future__ import annotations

import math

from rich.table import Table

NOT_DEFINED = "n/a"

TEXT_NAMES = {
    "bleu1": "BLEU-1",
    "bleu2": "BLEU-2",
    "bleu3": "BLEU-3",
    "bleu4": "BLEU-4",
    "bleu_mean": "BLEU mean",
    "rouge_l": "ROUGE-L",
    "meteor": "METEOR",
    "cider_d": "CIDEr",
}
CLASSIFICATION_NAMES = ("precision", "recall", "f1", "accuracy")


def _value(value: float) -> str:
    return NOT_DEFINED if value is None or math.isnan(value) else f"{value:.4f}"


def _interval(result, name: str) -> str:
    low, high = result.intervals.get(name, (math.nan, math.nan))
    return NOT_DEFINED if math.isnan(low) or math.isnan(high) else f"{low:.4f}-{high:.4f}"


def print_vlm3d(result, console) -> None:
    """Per-class table, the macro / micro / CRG summary, then the text scores (all with 95% intervals)."""
    classes = Table(
        title=f"VLM3D protocol: CT-RATE abnormality labels ({result.n_scored} studies, {result.method}, "
        f"{result.convention} lymph-node convention; references: {result.reference_labels_source})",
        title_justify="left",
    )
    for column in ("class", "precision", "recall", "F1", "accuracy", "support", "TP", "FP", "FN"):
        classes.add_column(column, justify="left" if column == "class" else "right")
    for row in result.per_class:
        classes.add_row(
            row["label"],
            *(_value(row[name]) for name in CLASSIFICATION_NAMES),
            *(str(row[name]) for name in ("support", "tp", "fp", "fn")),
        )
    console.print(classes)
    summary = Table(title="Classification (macro: plain mean over the 18 classes)", title_justify="left")
    for column in ("figure", "value", "95% CI"):
        summary.add_column(column, justify="left" if column == "figure" else "right")
    for average in ("macro", "micro"):
        for name in CLASSIFICATION_NAMES:
            key = f"{average}_{name}"
            summary.add_row(f"{average} {name}", _value(result.figures[key]), _interval(result, key))
    summary.add_row("CRG", _value(result.figures["crg"]), _interval(result, "crg"), style="bold")
    console.print(summary)
    text = Table(title="Text scores (pycocoevalcap)", title_justify="left")
    for column in ("score", "value", "95% CI"):
        text.add_column(column, justify="left" if column == "score" else "right")
    for key, name in TEXT_NAMES.items():
        if key in result.text:
            text.add_row(name, _value(result.text[key]), _interval(result, key))
    console.print(text)


__all__ = ["print_vlm3d"]
