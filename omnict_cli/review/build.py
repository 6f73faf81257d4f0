"""``build_review``: a findings file in, one or more static HTML review pages out.

The steps, each in its own module: read the records (the last record per
study wins, as a resumed run means), summarize the run and score it against
references (:mod:`.summary`, reusing ``omnict score``'s library), label every
report (:mod:`.labels`), render each ok study's views in worker processes
(:mod:`.image_pool`, :mod:`.study_images`, :mod:`.thumbnails`), and write the
blocks into pages (:mod:`.blocks`, :mod:`.page`).
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from omnict_cli.review.thumbnails import DEFAULT_MAX_PIXELS

PAGE_LIMIT_BYTES = 100 * 10**6
"""A page larger than this is hard on browsers and mail; the command suggests --page-size."""


@dataclass(frozen=True)
class ReviewOptions:
    """Everything ``omnict review`` can be told besides the findings file and the output."""

    references: str | Path | None = None
    reference_labels: str | Path | None = None
    studies: str | Path | None = None
    """Folder the record ``input`` paths are relative to; None: each record's ``root``, then the findings' folder."""
    cache_dir: str | Path | None = None
    page_size: int | None = None
    workers: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    method: str = "classifier"
    per_study: str | Path | None = None
    """An ``omnict score --per-study`` table whose text scores each study block shows."""


@dataclass
class ReviewResult:
    """What was written and what the run-level checks said."""

    pages: list = field(default_factory=list)
    """:class:`omnict_cli.review.page.PageFile` per file written, the index (or the single page) last."""
    studies: int = 0
    image_bytes: int = 0
    """PNG bytes of all views (before base64), to judge bytes per study."""
    warnings: list[str] = field(default_factory=list)
    image_problems: list[str] = field(default_factory=list)
    """The first image warning of each study that has one (scan not found, mask not cached, ...)."""


def read_findings(path: str | Path) -> tuple[list[dict], list[str]]:
    """The records of a findings file, the last one per study (a retried study's new record wins), and warnings.

    Each record's fields are checked against the schema (:func:`~omnict_cli.review.record_fields.shown_record`):
    a field of the wrong type is left out with a warning on its study's block.

    A torn last line (a run still writing, or killed, or not a findings file
    at all) is left out with a warning, and the file is not changed; any other
    bad line is an OmnictError naming it.
    """
    from omnict_cli.errors import OmnictError
    from omnict_cli.review.record_fields import shown_record
    from omnict_cli.run.records import read_records

    try:
        existing = read_records(path)
    except OmnictError as error:  # its hint speaks of resuming a run; here only the file matters
        raise OmnictError(
            error.message, path=path, hint="Give the JSONL file 'omnict report' or 'omnict ask' wrote"
        ) from error
    warnings = []
    if existing.cut_bytes:
        warnings.append(
            f"{path}: the last {existing.cut_bytes} bytes are not a complete line (a run still "
            "writing, a cut file, or not a findings file) and were left out"
        )
    return [shown_record(record) for record in existing.by_id().values()], warnings


def study_roots(findings: Path, studies: str | Path | None) -> tuple[Path, ...]:
    """Where inputs are looked up: the folder the user named, else the findings file's folder (never elsewhere)."""
    if studies is not None:
        return (Path(studies),)
    return (findings.resolve().parent,)


def _summary_and_labels(records: list[dict], findings: Path, options: ReviewOptions):
    """The run summary (scored when references are given) and every study's labels.

    Answers (``omnict ask`` records) have no report to label: their page shows
    the question and answer, and points to ``omnict score`` for VQA scores.
    """
    from omnict_cli.review.labels import StudyLabels, study_labels
    from omnict_cli.review.summary import add_scores, summarize_run

    summary = summarize_run(records)
    if any("answer" in record for record in records):
        if options.references is not None:
            summary.warnings.append("these are answers (omnict ask): run omnict score for their VQA scores")
        return summary, StudyLabels()
    if options.references is not None:
        add_scores(summary, findings, options.references, options.reference_labels, options.method)
    labels = study_labels(records, options.method, options.references, options.reference_labels)
    summary.warnings.extend(labels.warnings)
    return summary, labels


def build_review(
    findings: str | Path, out: str | Path, options: ReviewOptions = ReviewOptions(), on_study=None
) -> ReviewResult:
    """Write the review page(s) of ``findings`` to ``out``; ``on_study(done, total)`` follows progress.

    Raises OmnictError (one line) only for a findings file that cannot be read
    or an output that cannot be written; every per-study problem is a warning
    on that study's block.
    """
    from omnict_cli.review.blocks import labels_for, study_block, summary_html
    from omnict_cli.review.image_pool import started_images
    from omnict_cli.review.page import PageSet
    from omnict_cli.review.study_images import ImageSettings

    findings, out = Path(findings), Path(out)
    if out.exists() and out.resolve() == findings.resolve():
        from omnict_cli.errors import OutputError

        raise OutputError(
            "is the findings file itself; the page would replace it", path=out, hint="Give --out a .html name"
        )
    records, read_warnings = read_findings(findings)
    settings = ImageSettings(
        study_roots(findings, options.studies),
        None if options.cache_dir is None else Path(options.cache_dir),
        options.max_pixels,
        record_roots=options.studies is None,
    )
    with_images = [record for record in records if record.get("status") == "ok"]
    # the workers render while this process labels and scores; closing(): an error or Ctrl-C stops them now
    with closing(started_images(with_images, settings, options.workers)) as images:
        summary, labels = _summary_and_labels(records, findings, options)
        summary.warnings[:0] = read_warnings
        per_study = None
        if options.per_study is not None:
            from omnict_cli.review.per_study_scores import read_per_study_scores

            per_study = read_per_study_scores(options.per_study)
            summary.warnings.extend(per_study.warnings)
        pages = PageSet(out, f"omnict review: {findings.name}", summary_html(summary, findings.name), options.page_size)
        result = ReviewResult(studies=len(records), warnings=list(summary.warnings))
        with_reference = options.references is not None or options.reference_labels is not None
        for index, record in enumerate(records):
            study_images = next(images) if record.get("status") == "ok" else None
            if study_images is not None:
                result.image_bytes += sum(len(view.png) for view in study_images.views)
                result.image_problems.extend(study_images.warnings[:1])
            generated, reference = labels_for(record, labels)
            study_id = str(record.get("study_id", ""))
            text_scores = per_study.scores_of(study_id) if per_study is not None else None
            pages.add(
                study_id, study_block(index, record, study_images, generated, reference, with_reference, text_scores)
            )
            if on_study is not None:
                on_study(index + 1, len(records))
    result.pages = pages.finish()
    return result
