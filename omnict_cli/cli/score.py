"""``omnict score``: generated reports (or VQA answers) against references, as tables or JSON.

A thin command over ``omnict_cli.metrics.score_files``; the tables follow the paper's
Table 16 (per-class precision / recall / F1 with macro and micro averages),
then the text scores and the bootstrap interval. A score that is not defined
(NaN: a class with no reference positive and no prediction) prints as "n/a"
with a footnote, and is null in the JSON.
"""

from __future__ import annotations

import math

import click

from omnict_cli.cli.label_options import convention_option
from omnict_cli.cli.main import main

METHOD_CHOICES = ("classifier", "rules")
"""Same as ``omnict_cli.labels.labeler.METHODS`` (not imported: it pulls in numpy)."""
PROTOCOL_CHOICES = ("omnict", "vlm3d")
"""Same as ``omnict_cli.metrics.score_files.PROTOCOLS``."""
"""Same as ``omnict_cli.labels.rules.CONVENTIONS`` (a test checks both pairs agree)."""
NOT_DEFINED = "n/a"
"""How a score that is not defined (NaN) prints."""


@main.command()
@click.argument("predictions_path", metavar="FINDINGS", type=click.Path(dir_okay=False))
@click.option(
    "--references",
    "references_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Reference reports (CT-RATE reports CSV or JSONL) or, for answers, reference QA JSONL.",
)
@click.option(
    "--reference-labels",
    type=click.Path(dir_okay=False),
    default=None,
    help="CT-RATE label CSV of the references (default: label the reference texts).",
)
@click.option(
    "--method",
    type=click.Choice(METHOD_CHOICES),
    default="classifier",
    show_default=True,
    help="How report texts are labelled.",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Classifier file for --method classifier (default: the bundled one).",
)
@click.option(
    "--protocol",
    type=click.Choice(PROTOCOL_CHOICES),
    default="omnict",
    show_default=True,
    help="omnict = omnict's own scores; vlm3d = the VLM3D challenge's (pycocoevalcap text scores, "
    "18-label P/R/F1/accuracy, CRG). See docs/metrics.md.",
)
@convention_option()
@click.option(
    "--per-study",
    "per_study_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write one CSV row per scored study: its 18 labels on both sides, disagreements, text scores.",
)
@click.option(
    "--export-challenge",
    "challenge_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the scored generated reports in the VLM3D challenge's JSON layout.",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace a --per-study or --export-challenge file that omnict did not write."
)
@click.option(
    "--bertscore-model",
    type=click.Path(file_okay=False),
    default=None,
    help="Local encoder folder (safetensors) to add BERTScore.",
)
# max is metrics.bootstrap.MAX_RESAMPLES, written out so `omnict --help` needs no numpy (a test checks they agree)
@click.option(
    "--bootstrap",
    "n_resamples",
    type=click.IntRange(min=1, max=100_000),
    default=1000,
    show_default=True,
    help="Bootstrap resamples for the 95% intervals.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write every number (and the missing names) to this JSON file.",
)
def score(
    predictions_path,
    references_path,
    reference_labels,
    method,
    model_path,
    protocol,
    convention,
    per_study_path,
    challenge_path,
    overwrite,
    bertscore_model,
    n_resamples,
    seed,
    json_path,
):
    """Score FINDINGS ('omnict report' JSONL or a CT-RATE reports CSV)
    against reference reports: 18-class CT-RATE label precision / recall / F1
    (paper Table 16), BLEU-1..4, ROUGE-L, METEOR, CIDEr-D, optional BERTScore, and a
    bootstrap 95% interval of macro F1. When FINDINGS holds answers
    ('omnict ask' records), scores VQA instead: closed and multiple-choice
    accuracy, open-answer token F1 / BLEU / ROUGE-L.

    Studies are joined by name (file name without folder and extension).
    Missing studies on either side are listed, never dropped silently;
    failed or empty predictions are scored as empty reports.

    With --protocol vlm3d the figures are the VLM3D challenge's: BLEU-1..4,
    their mean, ROUGE-L, CIDEr and METEOR by pycocoevalcap (METEOR needs
    Java), per-class precision / recall / F1 / accuracy with macro over all
    18 classes, and CRG, each with a bootstrap 95% interval. FINDINGS may
    also be a challenge submission JSON ({"generated_reports": [...]}).

    \b
    Examples:
      omnict score generated.jsonl --references valid_reports.csv --reference-labels valid_labels.csv
      omnict score submission.json --references valid_reports.csv --reference-labels valid_labels.csv --protocol vlm3d
      omnict score generated.jsonl --references valid_reports.csv --per-study studies.csv
      omnict score answers.jsonl --references qa.jsonl --json scores.json
    """
    from omnict_cli.atomic import check_destination
    from omnict_cli.errors import OmnictError
    from omnict_cli.metrics.score_files import ScoreOptions
    from omnict_cli.metrics.score_files import score as run_scoring
    from omnict_cli.ui import stderr_console

    options = ScoreOptions(
        method=method,
        model=model_path,
        reference_labels=reference_labels,
        convention=convention,
        protocol=protocol,
        bertscore_model=bertscore_model,
        bootstrap=n_resamples,
        seed=seed,
    )
    try:
        if json_path:
            check_destination(json_path)
        _check_extra_outputs(per_study_path, challenge_path, overwrite)
        result = run_scoring(predictions_path, references_path, options)
        if json_path:
            _write_json(json_path, result.to_dict())
        written = _write_extra_outputs(result, predictions_path, per_study_path, challenge_path)
    except OmnictError as error:
        raise click.ClickException(error.one_line()) from error
    _print_result(result)
    console = stderr_console()
    for line in _missing_lines(result, predictions_path, references_path) + getattr(result, "notes", []):
        console.print("[yellow]warning[/yellow] " + _escape(line), highlight=False, soft_wrap=True)
    for path in ([json_path] if json_path else []) + written:
        console.print(f"wrote {_escape(str(path))}", highlight=False)


def _check_extra_outputs(per_study_path, challenge_path, overwrite: bool) -> None:
    """Refuse, before any work, a --per-study or --export-challenge file omnict may not replace."""
    from omnict_cli.atomic import check_destination
    from omnict_cli.errors import OutputError

    if per_study_path:
        from omnict_cli.metrics.per_study import check_per_study_destination

        check_per_study_destination(per_study_path, overwrite)
    if challenge_path:
        from pathlib import Path

        from omnict_cli.labels.challenge_json import is_our_challenge_file

        check_destination(challenge_path)
        if Path(challenge_path).exists() and not overwrite and not is_our_challenge_file(challenge_path):
            raise OutputError(
                "exists and is not a challenge reports file omnict wrote; not replaced",
                path=challenge_path,
                hint="Choose another file name, or pass --overwrite to replace it",
            )


def _write_extra_outputs(result, predictions_path, per_study_path, challenge_path) -> list[str]:
    """Write the --per-study table and the --export-challenge JSON of a reports result; returns the paths written."""
    from omnict_cli.errors import OmnictError

    if (per_study_path or challenge_path) and getattr(result, "pairs", None) is None:
        raise OmnictError("--per-study and --export-challenge need generated reports, not VQA answers")
    written = []
    if per_study_path:
        from omnict_cli.metrics.per_study import omnict_per_study_text, per_study_rows, write_per_study

        pairs = result.pairs
        if result.protocol == "vlm3d":
            text = result.per_study_text
        else:
            text = omnict_per_study_text(pairs.hypotheses, pairs.reference_texts)
        write_per_study(per_study_path, per_study_rows(pairs, text))
        written.append(per_study_path)
    if challenge_path:
        from omnict_cli.atomic import output_error
        from omnict_cli.labels.challenge_json import write_challenge_json
        from omnict_cli.metrics.vlm3d import submission_reports

        try:
            write_challenge_json(challenge_path, submission_reports(predictions_path, result.pairs))
        except OSError as error:
            raise output_error(challenge_path, error) from error
        written.append(challenge_path)
    return written


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _write_json(path, data: dict) -> None:
    """Write ``data`` as indented JSON to ``path`` in one step (see :mod:`omnict_cli.atomic`);
    a failed write is an OutputError (one line).

    ``allow_nan=False``: the scores come with NaN already turned into null
    (``to_dict``), and a NaN that slipped through must fail here rather than
    write a file that strict JSON readers reject.
    """
    import json

    from omnict_cli.atomic import output_error, write_text_atomically

    try:
        write_text_atomically(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
    except OSError as error:
        raise output_error(path, error) from error


def _missing_lines(result, predictions_path, references_path) -> list[str]:
    from omnict_cli.metrics.score_files import first_names

    lines = result.join.summary_lines(str(predictions_path), str(references_path))
    what = "answers" if hasattr(result, "scores") else "reports"
    if result.failed:
        lines.append(
            f'{len(result.failed)} predictions failed (status "error") and are scored as empty {what}: '
            f"{first_names(result.failed)}"
        )
    if result.empty:
        lines.append(
            f"{len(result.empty)} predictions are empty and are scored as empty {what}: {first_names(result.empty)}"
        )
    return lines


def _console():
    import sys

    from rich.console import Console

    # piped or captured output has no terminal width; 80 columns would fold every cell
    return Console(width=None if sys.stdout.isatty() else 120)


def _print_result(result) -> None:
    if hasattr(result, "scores"):
        _print_vqa(result)
    elif result.protocol == "vlm3d":
        from omnict_cli.cli.score_vlm3d import print_vlm3d

        print_vlm3d(result, _console())
    else:
        _print_reports(result)


def _percent(value: float) -> str:
    """A score in [0, 1] as a percentage with one decimal, or "n/a" when it is not defined (NaN)."""
    return NOT_DEFINED if math.isnan(value) else f"{100 * value:.1f}"


def _interval(low: float, high: float) -> str:
    """ "97.9-99.1", or "n/a" when no resample had anything to score."""
    return NOT_DEFINED if math.isnan(low) or math.isnan(high) else f"{_percent(low)}-{_percent(high)}"


def _not_defined_footnote(report) -> str | None:
    """The line explaining "n/a" under the class table, or None when every class has something to score."""
    undefined = report.undefined_labels
    if not undefined:
        return None
    return (
        f"{NOT_DEFINED}: no reference positives and no predictions; left out of the macro average "
        f"({len(undefined)} of {len(report.per_class)} classes)"
    )


def _print_reports(result) -> None:
    """Table 16 layout: one row per class, then macro and micro; then text scores and the interval."""
    from rich.table import Table

    report = result.classification
    table = Table(
        title=f"CT-RATE abnormality labels ({result.n_scored} studies, {result.method}; "
        f"references: {result.reference_labels_source})",
        title_justify="left",
    )
    for column in ("class", "precision", "recall", "F1", "support", "TP", "FP", "FN"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for scores in report.per_class:
        # a class absent from both sides has nothing to score (n/a); dim it so the eye skips it
        table.add_row(
            scores.label,
            _percent(scores.precision),
            _percent(scores.recall),
            _percent(scores.f1),
            str(scores.support),
            str(scores.tp),
            str(scores.fp),
            str(scores.fn),
            style=None if scores.defined else "dim",
        )
    table.add_section()
    table.add_row(
        "macro",
        _percent(report.macro_precision),
        _percent(report.macro_recall),
        _percent(report.macro_f1),
        "",
        "",
        "",
        "",
        style="bold",
    )
    table.add_row(
        "micro",
        _percent(report.micro_precision),
        _percent(report.micro_recall),
        _percent(report.micro_f1),
        "",
        "",
        "",
        "",
    )
    console = _console()
    console.print(table)
    footnote = _not_defined_footnote(report)
    if footnote:
        console.print(footnote, highlight=False, style="dim")
    console.print(
        f"macro F1 {_percent(report.macro_f1)} (95% bootstrap CI {_interval(*result.macro_f1_ci)}, "
        f"{result.bootstrap} resamples)",
        highlight=False,
    )
    text = Table(title="Text scores (x100)", title_justify="left")
    for name in result.text_scores:
        text.add_column(name, justify="right")
    text.add_row(*(_percent(value) for value in result.text_scores.values()))
    console.print(text)


def _print_vqa(result) -> None:
    from rich.table import Table

    table = Table(title=f"VQA ({len(result.join.matched)} questions)", title_justify="left")
    for column in ("kind", "questions", "score", "value", "95% CI"):
        table.add_column(column, justify="left" if column in ("kind", "score") else "right")
    for kind in ("closed", "choice"):
        accuracy = getattr(result.scores, kind)
        if accuracy is not None:
            table.add_row(
                kind, str(accuracy.n_total), "accuracy", _percent(accuracy.accuracy), _interval(*result.intervals[kind])
            )
    open_scores = result.scores.open
    if open_scores is not None:
        table.add_row(
            "open",
            str(open_scores.n_total),
            "token F1",
            _percent(open_scores.token_f1),
            _interval(*result.intervals["open"]),
        )
        for name in ("bleu1", "bleu4", "rouge_l", "meteor", "exact_match"):
            table.add_row("", "", name, _percent(getattr(open_scores, name)), "")
    _console().print(table)
