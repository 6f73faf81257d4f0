"""``omnict score --per-study FILE.csv``: one row per scored study, for finding the worst cases.

Corpus scores say how good a generator is; a researcher who wants to know
*where* it fails sorts this table: by ``disagreements`` (how many of the 18
CT-RATE labels the generated report gets wrong), by a text score, or by one
class's generated and reference columns. Columns:

``study`` (the reference's name), ``prediction`` (the prediction's name),
``status`` (ok, failed or empty: a failed or empty prediction is scored as an
empty report), ``disagreements``, ``false_positives`` and ``false_negatives``
(class names joined by "; "), then the protocol's per-study text scores, then
``generated: <class>`` and ``reference: <class>`` (0/1) for the 18 classes.

The file is written in one step (:mod:`omnict_cli.atomic`) with every cell
neutralised (:mod:`omnict_cli.csv_safe`), and an existing file is replaced
only when it is provably one of these tables (its header is this header) or
the user says ``--overwrite``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from omnict_cli.errors import OutputError
from omnict_cli.labels.classes import CTRATE_ABNORMALITIES

LEADING_COLUMNS = ("study", "prediction", "status", "disagreements", "false_positives", "false_negatives")
LABEL_COLUMNS = tuple(f"{side}: {label}" for label in CTRATE_ABNORMALITIES for side in ("generated", "reference"))
SCORE_DECIMALS = 6


def omnict_per_study_text(hypotheses: list[str], references: list[str]) -> dict[str, np.ndarray]:
    """Per-study text scores of the default protocol: sentence BLEU-4, ROUGE-L F1, METEOR, and CIDEr-D if it can.

    Sentence BLEU-4 is smoothed (NLTK's method1, :func:`omnict_cli.metrics.text.sentence_bleu`),
    since one report rarely shares a 4-gram with its reference everywhere.
    """
    from omnict_cli.metrics.coco_text import cider_d, coco_available
    from omnict_cli.metrics.text import meteor, rouge_l, sentence_bleu, tokenize

    scores = {
        "bleu4": np.array([sentence_bleu(h, r)["bleu4"] for h, r in zip(hypotheses, references)]),
        "rouge_l": np.array([rouge_l(h, r)["f1"] for h, r in zip(hypotheses, references)]),
        "meteor": np.array([meteor(h, r) for h, r in zip(hypotheses, references)]),
    }
    if coco_available():
        scores["cider_d"] = cider_d(
            [" ".join(tokenize(text)) for text in hypotheses], [" ".join(tokenize(text)) for text in references]
        )[1]
    return scores


def per_study_rows(pairs, text_scores: dict[str, np.ndarray]) -> list[list]:
    """The table (header first) for :class:`~omnict_cli.metrics.report_pairs.ReportPairs` and per-study scores."""
    header = [*LEADING_COLUMNS, *text_scores, *LABEL_COLUMNS]
    failed, empty = set(pairs.failed), set(pairs.empty)
    rows = [header]
    for row, (prediction, reference) in enumerate(pairs.join.matched):
        truth, predicted = pairs.truth[row], pairs.predicted[row]
        false_positives = [label for i, label in enumerate(CTRATE_ABNORMALITIES) if predicted[i] and not truth[i]]
        false_negatives = [label for i, label in enumerate(CTRATE_ABNORMALITIES) if truth[i] and not predicted[i]]
        status = "failed" if prediction in failed else "empty" if prediction in empty else "ok"
        labels = [int(value) for i in range(len(CTRATE_ABNORMALITIES)) for value in (predicted[i], truth[i])]
        rows.append(
            [
                reference,
                prediction,
                status,
                len(false_positives) + len(false_negatives),
                "; ".join(false_positives),
                "; ".join(false_negatives),
                *(round(float(values[row]), SCORE_DECIMALS) for values in text_scores.values()),
                *labels,
            ]
        )
    return rows


def is_per_study_file(path: str | Path) -> bool:
    """Whether an existing file is one of these tables: its first row starts with :data:`LEADING_COLUMNS`
    and ends with :data:`LABEL_COLUMNS`."""
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            header = next(csv.reader(stream), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return (
        tuple(header[: len(LEADING_COLUMNS)]) == LEADING_COLUMNS
        and tuple(header[-len(LABEL_COLUMNS) :]) == LABEL_COLUMNS
    )


def check_per_study_destination(path: str | Path, overwrite: bool) -> None:
    """Refuse (OutputError) to replace an existing file that is not a per-study table, unless ``overwrite``."""
    from omnict_cli.atomic import check_destination

    check_destination(path)
    if Path(path).exists() and not overwrite and not is_per_study_file(path):
        raise OutputError(
            "exists and is not a per-study table omnict wrote; not replaced",
            path=path,
            hint="Choose another file name, or pass --overwrite to replace it",
        )


def write_per_study(path: str | Path, rows: list[list]) -> None:
    """Write the table in one step, every cell neutralised; a failed write is one OutputError line."""
    from omnict_cli.atomic import output_error, write_text_atomically
    from omnict_cli.csv_safe import csv_text

    try:
        write_text_atomically(path, csv_text(rows))
    except OSError as error:
        raise output_error(path, error) from error


__all__ = [
    "LABEL_COLUMNS",
    "LEADING_COLUMNS",
    "check_per_study_destination",
    "is_per_study_file",
    "omnict_per_study_text",
    "per_study_rows",
    "write_per_study",
]
