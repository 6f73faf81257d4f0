"""The 18 CT-RATE labels of each study on the page: generated (from its report) and reference (when given).

Both sides are made the way ``omnict score`` makes them, so a disagreement
marked on a study is one of the false positives or negatives counted in the
summary chart: generated labels come from the labeler run over the record's
"Findings: ... Impression: ..." text (an error or empty record is all
negative), reference labels from ``--reference-labels`` (a CT-RATE label
CSV) or else from the same labeler run over the ``--references`` texts.
A study is joined to its reference by :func:`omnict_cli.metrics.score_files.study_key`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omnict_cli.labels.classes import CTRATE_ABNORMALITIES


@dataclass
class StudyLabels:
    """Generated labels per study id, and reference labels per study key (the join of ``omnict score``)."""

    generated: dict[str, dict[str, int]] = field(default_factory=dict)
    reference: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    """Why reference labels are missing (a file that cannot be read), one line each."""


def record_text(record: dict) -> str:
    """The record's report as the labeler and ``omnict score`` read it; "" for a failed or empty record."""
    from omnict_cli.labels.ctrate_io import LabelledReport, report_text

    if record.get("status") != "ok":
        return ""
    report = LabelledReport(
        volume_name=str(record.get("study_id", "")),
        findings=str(record.get("findings") or ""),
        impression=str(record.get("impression") or ""),
    )
    return report_text(report)


def _label_texts(texts: list[str], method: str) -> list[dict[str, int]]:
    """Labels of each text as ``{class: 0/1}``, made by ``omnict score``'s own labelling."""
    from omnict_cli.metrics.score_files import label_texts

    return [{name: int(value) for name, value in zip(CTRATE_ABNORMALITIES, row)} for row in label_texts(texts, method)]


def study_labels(
    records: list[dict],
    method: str = "classifier",
    references: str | Path | None = None,
    reference_labels: str | Path | None = None,
) -> StudyLabels:
    """Generated labels of every report record, and reference labels from the files given."""
    from omnict_cli.errors import OmnictError
    from omnict_cli.metrics.score_files import study_key

    reports = [record for record in records if "answer" not in record]
    result = StudyLabels()
    for record, labels in zip(reports, _label_texts([record_text(record) for record in reports], method)):
        result.generated[str(record.get("study_id", ""))] = labels
    try:
        if reference_labels is not None:
            from omnict_cli.labels.ctrate_io import read_labels

            result.reference = {study_key(name): labels for name, labels in read_labels(reference_labels).items()}
        elif references is not None:
            from omnict_cli.labels.ctrate_io import read_reports, report_text

            named = read_reports(references)
            texts = [report_text(report) for report in named]
            result.reference = {
                study_key(report.volume_name): labels for report, labels in zip(named, _label_texts(texts, method))
            }
    except OmnictError as error:
        result.warnings.append(f"reference labels: {error.one_line()}")
    return result
