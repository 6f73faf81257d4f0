"""HTML of the parts of a review page: one block per study, and the run summary.

Every value goes in through :mod:`.html_values` (strings escaped, numbers
formatted), after :mod:`.record_fields` has checked the record's types;
images are PNG data URIs. Each study block carries what the filters need as data
attributes: ``data-status``, and the indices (0-17, CT-RATE order) of the
positive generated labels (``data-gen``), reference labels (``data-ref``)
and disagreeing labels (``data-dis``). Study ids only: no patient identifier
is ever in a record, and nothing else about the patient is shown.
"""

from __future__ import annotations

import math

from omnict_cli.labels.classes import CTRATE_ABNORMALITIES
from omnict_cli.metrics.score_files import study_key
from omnict_cli.review.charts import class_scores_svg
from omnict_cli.review.html_values import number, text
from omnict_cli.review.study_images import StudyImages
from omnict_cli.review.summary import RunSummary


def _indices(labels: dict[str, int] | None) -> list[int]:
    return [] if labels is None else [i for i, name in enumerate(CTRATE_ABNORMALITIES) if labels.get(name)]


def labels_table(generated: dict[str, int] | None, reference: dict[str, int] | None, with_reference: bool) -> str:
    """The 18 classes with the generated (and reference) label; disagreeing rows get class "disagree".

    ``with_reference``: references were given, so the column is there even
    for a study they do not cover (its cells show "?").
    """
    header = "<tr><th>class</th><th>generated</th>" + ("<th>reference</th>" if with_reference else "") + "</tr>"
    rows = [header]
    for name in CTRATE_ABNORMALITIES:
        cells = [_label_cell(generated, name)]
        disagree = False
        if with_reference:
            cells.append(_label_cell(reference, name))
            disagree = None not in (generated, reference) and bool(generated.get(name)) != bool(reference.get(name))
        row_class = ' class="disagree"' if disagree else ""
        rows.append(f"<tr{row_class}><td>{text(name)}</td>{''.join(cells)}</tr>")
    return f'<table class="labels">{"".join(rows)}</table>'


def _label_cell(labels: dict[str, int] | None, name: str) -> str:
    if labels is None:
        return '<td class="unknown">?</td>'
    return '<td class="pos">yes</td>' if labels.get(name) else '<td class="neg">no</td>'


def _views_html(images: StudyImages) -> str:
    figures = []
    for view in images.views:
        caption = f"{text(view.plane)} &middot; {text(view.window)}"
        figures.append(
            f'<figure><img class="view" src="{text(view.data_uri())}" width="{number(view.width)}" '
            f'height="{number(view.height)}" alt="{text(view.plane)}, {text(view.window)} window">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    return f'<div class="views">{"".join(figures)}</div>' if figures else ""


def _text_html(record: dict) -> str:
    if "answer" in record:
        pairs = (("Question", record.get("question")), ("Answer", record.get("answer")))
    else:
        pairs = (("Findings", record.get("findings")), ("Impression", record.get("impression")))
    return "".join(f"<h3>{title}</h3><p>{text(value or '')}</p>" for title, value in pairs)


def _facts_html(record: dict) -> str:
    """One line of what the run recorded: input kind, shape, spacing, organs pooled, segmenter, timing."""
    facts = [text(record.get(key)) for key in ("kind", "format") if record.get(key)]
    if record.get("shape"):
        facts.append("shape " + "x".join(number(n) for n in record["shape"]))
    if record.get("spacing"):
        facts.append("spacing " + "x".join(number(s) for s in record["spacing"]) + " mm")
    if "organs" in record:
        organs = ", ".join(record.get("organs") or []) or "whole image"
        facts.append(f"organs pooled: {text(organs)} ({text(record.get('organ_reason', ''))})")
    if record.get("segmenter"):
        facts.append(f"segmenter {text(record['segmenter'])}")
    timing = record.get("timing_s") or {}
    if timing:
        facts.append("seconds " + ", ".join(f"{text(k)} {number(v)}" for k, v in timing.items()))
    return f'<p class="facts">{" &middot; ".join(facts)}</p>'


def study_block(
    index: int,
    record: dict,
    images: StudyImages | None,
    generated: dict[str, int] | None,
    reference: dict[str, int] | None,
    with_reference: bool,
    text_scores: dict[str, float] | None = None,
) -> str:
    """The ``<article>`` of one study; error and skipped records show their message and no images.

    ``text_scores``: the study's row of an ``omnict score --per-study`` table, shown under its report.
    """
    status = str(record.get("status", "unknown"))
    gen, ref = _indices(generated), _indices(reference)
    disagree = sorted(set(gen) ^ set(ref)) if reference is not None and generated is not None else []
    attributes = (
        f'id="study-{number(index)}" data-status="{text(status)}" data-gen="{" ".join(map(number, gen))}" '
        f'data-ref="{" ".join(map(number, ref))}" data-dis="{" ".join(map(number, disagree))}"'
    )
    parts = [
        f'<article class="study" {attributes}>',
        f'<h2>{text(record.get("study_id", "?"))} <span class="status {text(status)}">'
        f"{text(status)}</span>"
        + (f' <span class="badge">{number(len(disagree))} disagreements</span>' if disagree else "")
        + "</h2>",
    ]
    if status == "error":
        message = (record.get("error") or {}).get("message", "no message")
        parts.append(f'<p class="message">{text(message)}</p>')
    elif status == "skipped":
        parts.append(f'<p class="message">{text(record.get("note", "skipped"))}</p>')
    else:
        if images is not None:
            parts.append(_views_html(images))
        table = labels_table(generated, reference, with_reference) if "answer" not in record else ""
        parts.append(f'<div class="body"><div class="report">{_text_html(record)}</div>{table}</div>')
    if text_scores:
        scores = " &middot; ".join(f"{text(name)} {number(value, '.3f')}" for name, value in text_scores.items())
        parts.append(f'<p class="text-scores">text scores (omnict score --per-study): {scores}</p>')
    warnings = list(record.get("warnings") or []) + (images.warnings if images is not None else [])
    if warnings:
        parts.append('<ul class="warnings">' + "".join(f"<li>{text(w)}</li>" for w in warnings) + "</ul>")
    parts.append(_facts_html(record))
    parts.append("</article>")
    return "\n".join(parts)


def labels_for(record: dict, labels) -> tuple[dict | None, dict | None]:
    """``(generated, reference)`` labels of a record from :class:`omnict_cli.review.labels.StudyLabels`."""
    study_id = str(record.get("study_id", ""))
    return labels.generated.get(study_id), labels.reference.get(study_key(study_id))


def _percent(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else number(100 * value, ".1f")


def _scores_html(scores) -> str:
    """The chart and the text numbers ``omnict score`` prints (macro/micro, CI, text scores, counts)."""
    report = scores.classification
    low, high = scores.macro_f1_ci
    interval = "n/a" if math.isnan(low) or math.isnan(high) else f"{_percent(low)}-{_percent(high)}"
    rows = "".join(
        f"<tr><td>{text(s.label)}</td><td>{_percent(s.precision)}</td><td>{_percent(s.recall)}</td>"
        f"<td>{_percent(s.f1)}</td><td>{number(s.support)}</td><td>{number(s.tp)}</td><td>{number(s.fp)}</td><td>{number(s.fn)}</td></tr>"
        for s in report.per_class
    )
    averages = "".join(
        f'<tr class="avg"><td>{name}</td><td>{_percent(p)}</td><td>{_percent(r)}</td>'
        f"<td>{_percent(f)}</td><td></td><td></td><td></td><td></td></tr>"
        for name, p, r, f in (
            ("macro", report.macro_precision, report.macro_recall, report.macro_f1),
            ("micro", report.micro_precision, report.micro_recall, report.micro_f1),
        )
    )
    text_scores = ", ".join(f"{text(name)} {_percent(value)}" for name, value in scores.text_scores.items())
    return (
        f"<h2>CT-RATE abnormality labels ({number(scores.n_scored)} studies, {text(scores.method)}; references: "
        f"{text(scores.reference_labels_source)})</h2>"
        f'<div class="scores">{class_scores_svg(report.per_class)}'
        '<table class="metrics"><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>'
        f"<th>support</th><th>TP</th><th>FP</th><th>FN</th></tr>{rows}{averages}</table></div>"
        f"<p>macro F1 {_percent(report.macro_f1)} (95% bootstrap CI {interval}, {number(scores.bootstrap)} resamples)"
        f"; failed predictions scored as empty: {number(len(scores.failed))}; empty: {number(len(scores.empty))}</p>"
        f"<p>Text scores (x100): {text_scores}</p>"
    )


def summary_html(summary: RunSummary, findings_name: str) -> str:
    """Counts, timing, model identity, scores (when any) and run-level warnings."""
    counts = " &middot; ".join(
        f'<span class="status {text(k)}">{text(k)}</span> {number(v)}' for k, v in summary.counts.items()
    )
    timing = (
        ", ".join(f"{text(stage)} {number(seconds, '.1f')} s" for stage, seconds in summary.timing_s.items()) or "none"
    )
    models = "; ".join(text(model) for model in summary.models) or "not recorded"
    parts = [
        f'<section class="summary"><h1>omnict review: {text(findings_name)}</h1>',
        f"<p>{number(summary.total)} studies: {counts}</p>",
        f"<p>Time summed over studies: {timing}</p>",
        f"<p>Model: {models}</p>",
    ]
    if len(summary.models) > 1:
        parts.append('<p class="warn">this file mixes records of several models</p>')
    if summary.scores is not None:
        parts.append(_scores_html(summary.scores))
    if summary.warnings:
        parts.append('<ul class="warnings">' + "".join(f"<li>{text(w)}</li>" for w in summary.warnings) + "</ul>")
    parts.append("</section>")
    return "\n".join(parts)
