"""Generated reports paired with their references and labelled: what every report protocol scores.

``omnict score`` has two protocols for reports (omnict's own, and the VLM3D
challenge's in :mod:`omnict_cli.metrics.vlm3d`) and writes a per-study CSV
(:mod:`omnict_cli.metrics.per_study`); all three start from the same
:class:`ReportPairs`, built here once: the files read, the studies joined by
:func:`omnict_cli.metrics.score_files.join_studies` (its module docstring has
the rules), both sides labelled with the 18 CT-RATE classes (or the
references' labels read from a CT-RATE label CSV). So the protocols can differ
only in how they score, never in which studies or which labels they see.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnict_cli.metrics.score_files import (
    ScoreOptions,
    ScoringError,
    join_studies,
    label_texts,
    read_generated_reports,
    reference_label_matrix,
)


@dataclass
class ReportPairs:
    """The scored studies, in reference-file order: names, texts and [studies, 18] label matrices."""

    join: object
    """:class:`~omnict_cli.metrics.score_files.StudyJoin` of the two files."""
    hypotheses: list[str]
    """Generated texts ("Findings: ...\\nImpression: ..."; empty for a failed or empty prediction)."""
    reference_texts: list[str]
    truth: np.ndarray
    predicted: np.ndarray
    truth_source: str
    """Where the reference labels come from, for the table title."""
    failed: list[str]
    """Matched predictions with status "error" (scored as empty reports)."""
    empty: list[str]
    """Matched predictions with no text (scored as empty reports)."""

    @property
    def prediction_names(self) -> list[str]:
        return [predicted for predicted, _ in self.join.matched]

    @property
    def reference_names(self) -> list[str]:
        return [reference for _, reference in self.join.matched]


def pair_reports(
    predictions_path: str | Path, references_path: str | Path, options: ScoreOptions = ScoreOptions()
) -> ReportPairs:
    """Read, join and label generated and reference reports (see the module docstring)."""
    from omnict_cli.labels.ctrate_io import read_reports, report_text

    generated = read_generated_reports(predictions_path)
    references = {report.volume_name: report_text(report) for report in read_reports(references_path)}
    join = join_studies(
        [*generated.texts, *generated.failed],
        list(references),
        prediction_source=predictions_path,
        reference_source=references_path,
    )
    if not join.matched:
        raise ScoringError(
            "no study is in both files, nothing to score",
            path=predictions_path,
            hint=" ".join(join.summary_lines(str(predictions_path), str(references_path))),
        )
    hypotheses = [generated.texts.get(predicted, "") for predicted, _ in join.matched]
    reference_texts = [references[reference] for _, reference in join.matched]
    reference_names = [reference for _, reference in join.matched]
    if options.reference_labels is not None:
        truth = reference_label_matrix(Path(options.reference_labels), reference_names)
        truth_source = str(options.reference_labels)
    else:
        truth = label_texts(reference_texts, options.method, options.model, convention=options.convention)
        truth_source = f"{options.method} labels of the reference texts"
    predicted = label_texts(hypotheses, options.method, options.model, convention=options.convention)
    failed = set(generated.failed)
    return ReportPairs(
        join=join,
        hypotheses=hypotheses,
        reference_texts=reference_texts,
        truth=truth,
        predicted=predicted,
        truth_source=truth_source,
        failed=[name for name, _ in join.matched if name in failed],
        empty=[name for (name, _), text in zip(join.matched, hypotheses) if not text.strip() and name not in failed],
    )


__all__ = ["ReportPairs", "pair_reports"]
