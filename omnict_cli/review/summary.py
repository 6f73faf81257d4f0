"""The run summary at the top of a review page: counts, timing, model identity and, with references, scores.

The scores are not recomputed here: they are :func:`omnict_cli.metrics.score_files.score_reports`'
result, the object ``omnict score`` prints, so the page and the command show
the same numbers. A scoring problem (no study in both files, an unreadable
reference file) is a warning on the page, not a failed page.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from omnict_cli.run.records import STATUS_ERROR, STATUS_OK, STATUS_SKIPPED


@dataclass
class RunSummary:
    """What the top of the page says about the run as a whole."""

    counts: dict[str, int]
    """Records per status: ok, error, skipped (and any other status found)."""
    timing_s: dict[str, float]
    """Seconds summed over records per stage (load, segment, model)."""
    models: list[str]
    """Distinct ``name (revision)`` lines; more than one means the file mixes runs."""
    scores: object | None = None
    """:class:`omnict_cli.metrics.score_files.ReportScores` when references were given and scoring worked."""
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def model_line(record: dict) -> str | None:
    """``"omnict-demo (sha256:5fdf8360dddf)"``: the record's model name and a short revision."""
    model = record.get("model")
    if not isinstance(model, dict) or not model.get("name"):
        return None
    revision = str(model.get("revision") or "")
    short = revision[:19] if revision.startswith("sha256:") else revision[:12]
    return f"{model['name']} ({short})" if short else str(model["name"])


def summarize_run(records: list[dict]) -> RunSummary:
    """Counts, summed stage timing and model identities of the records (no scores)."""
    counts = Counter({STATUS_OK: 0, STATUS_ERROR: 0, STATUS_SKIPPED: 0})
    counts.update(str(record.get("status", "unknown")) for record in records)
    timing: dict[str, float] = {}
    for record in records:
        for stage, seconds in (record.get("timing_s") or {}).items():
            if isinstance(seconds, (int, float)):
                timing[stage] = timing.get(stage, 0.0) + float(seconds)
    models = list(dict.fromkeys(line for line in map(model_line, records) if line))
    return RunSummary(counts=dict(counts), timing_s=timing, models=models)


def add_scores(
    summary: RunSummary,
    findings: str | Path,
    references: str | Path,
    reference_labels: str | Path | None,
    method: str = "classifier",
) -> None:
    """Score the findings as ``omnict score`` does and keep the result (or a warning) on the summary."""
    from omnict_cli.errors import OmnictError
    from omnict_cli.metrics.score_files import ScoreOptions, score_reports

    options = ScoreOptions(method=method, reference_labels=reference_labels)
    try:
        summary.scores = score_reports(findings, references, options)
    except OmnictError as error:
        summary.warnings.append(f"no scores: {error.one_line()}")
        return
    join = summary.scores.join
    summary.warnings.extend(join.summary_lines(str(findings), str(references)))
