"""The per-study text scores of ``omnict score --per-study`` shown on each study's review block.

``omnict review --per-study studies.csv`` puts each study's text scores (the
columns between the disagreement columns and the 18 label pairs: BLEU-4,
ROUGE-L, METEOR, CIDEr-D under omnict's protocol; pycocoevalcap's under
vlm3d) under its report, so the worst cases a researcher found by sorting
the CSV can be looked at with their images. Rows are matched to records by
the ``prediction`` column (the record's study id) through the same join key
as ``omnict score``. A file that is not such a table, or a cell that is not
a number, is one warning on the page; the page is written all the same.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from omnict_cli.csv_safe import plain_cell
from omnict_cli.metrics.per_study import LABEL_COLUMNS, LEADING_COLUMNS
from omnict_cli.metrics.score_files import study_key


@dataclass
class PerStudyScores:
    """Text scores per study key, in the table's column order, and what could not be read."""

    by_study: dict[str, dict[str, float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def scores_of(self, study_id: str) -> dict[str, float] | None:
        return self.by_study.get(study_key(study_id))


def read_per_study_scores(path: str | Path) -> PerStudyScores:
    """The text-score columns of a ``--per-study`` table; problems become warnings naming the file."""
    result = PerStudyScores()
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            rows = list(csv.reader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        result.warnings.append(f"{path}: per-study scores not read ({error})")
        return result
    header = rows[0] if rows else []
    if (
        tuple(header[: len(LEADING_COLUMNS)]) != LEADING_COLUMNS
        or tuple(header[-len(LABEL_COLUMNS) :]) != LABEL_COLUMNS
    ):
        result.warnings.append(f"{path}: not an 'omnict score --per-study' table (its header differs); not shown")
        return result
    names = header[len(LEADING_COLUMNS) : len(header) - len(LABEL_COLUMNS)]
    prediction = LEADING_COLUMNS.index("prediction")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            result.warnings.append(f"{path}: line {line} has {len(row)} cells, the header {len(header)}; skipped")
            continue
        try:
            scores = {name: float(row[len(LEADING_COLUMNS) + i]) for i, name in enumerate(names)}
        except ValueError:
            result.warnings.append(f"{path}: line {line} has a text score that is not a number; skipped")
            continue
        result.by_study[study_key(plain_cell(row[prediction]))] = scores
    return result


__all__ = ["PerStudyScores", "read_per_study_scores"]
