"""``omnict review``: a thin command over :func:`omnict_cli.review.build_review`."""

from __future__ import annotations

import os

import click

from omnict_cli.cli.main import main


def _default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2) - 1))


@main.command()
@click.argument("findings", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The HTML page to write.")
@click.option(
    "--references",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Reference reports (CT-RATE reports CSV or JSONL): adds the scores and reference labels.",
)
@click.option(
    "--reference-labels",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="CT-RATE label CSV of the references (default: label the reference texts).",
)
@click.option(
    "--studies",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="The folder the run was given (record 'input' paths are relative to it; nothing outside it is "
    "opened); default: each record's 'root', then the findings file's folder.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Mask cache the run used (default $OMNICT_CACHE_DIR or ~/.cache/omnict/masks).",
)
@click.option(
    "--page-size",
    type=click.IntRange(min=1),
    default=None,
    help="Studies per page: OUT becomes an index linking OUT-001.html, OUT-002.html, ...",
)
# 160 is review.thumbnails.DEFAULT_MAX_PIXELS, written out so `omnict --help` needs no numpy (a test checks they agree)
@click.option(
    "--thumbnail-size",
    type=click.IntRange(min=32, max=1024),
    default=160,
    show_default=True,
    help="Longest side of each view in pixels (page size grows with its square).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=_default_workers(),
    show_default=True,
    help="Processes making the views (0: in this one).",
)
@click.option(
    "--per-study",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="An 'omnict score --per-study' CSV: each study's text scores are shown under its report.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def review(
    findings,
    out,
    references,
    reference_labels,
    studies,
    cache_dir,
    page_size,
    thumbnail_size,
    workers,
    per_study,
    quiet,
):
    """Write a self-contained HTML page to review FINDINGS ('omnict report'
    JSONL): per study, axial / coronal / sagittal views through the organ the
    model pooled (lung and soft-tissue windows, organ outline from the mask
    cache), the findings and impression, and the 18 CT-RATE labels, generated
    vs reference; at the top the run summary and, with --references, the
    numbers 'omnict score' prints. Images are inlined: the page works offline.

    \b
    Examples:
      omnict review findings.jsonl --out review.html --studies ./studies
      omnict review findings.jsonl --out review.html --references reports.csv --reference-labels labels.csv
      omnict review findings.jsonl --out review.html --page-size 200      # review.html indexes the pages
    """
    from rich.markup import escape

    from omnict_cli.atomic import check_destination
    from omnict_cli.errors import OmnictError
    from omnict_cli.review import ReviewOptions, build_review
    from omnict_cli.review.build import PAGE_LIMIT_BYTES
    from omnict_cli.ui import progress, stderr_console

    options = ReviewOptions(
        references=references,
        reference_labels=reference_labels,
        studies=studies,
        cache_dir=cache_dir,
        page_size=page_size,
        workers=workers,
        max_pixels=thumbnail_size,
        per_study=per_study,
    )
    console = stderr_console()
    try:
        check_destination(out)
        with progress(disable=quiet) as bar:
            task = bar.add_task("review", total=None)
            result = build_review(
                findings, out, options, on_study=lambda done, total: bar.update(task, completed=done, total=total)
            )
    except OmnictError as error:
        raise click.ClickException(error.one_line()) from error
    for warning in result.warnings:
        console.print(f"[yellow]warning[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    if result.image_problems:
        console.print(
            f"[yellow]warning[/yellow] {len(result.image_problems)} studies have image warnings on the "
            f"page, e.g. {escape(result.image_problems[0])}",
            highlight=False,
            soft_wrap=True,
        )
    for page in result.pages:
        if page.size_bytes > PAGE_LIMIT_BYTES:
            console.print(
                f"[yellow]warning[/yellow] {escape(str(page.path))} is {page.size_bytes / 1e6:.0f} MB; "
                "browsers struggle with such pages: use --page-size or a smaller --thumbnail-size",
                highlight=False,
                soft_wrap=True,
            )
    per_study = result.image_bytes / max(result.studies, 1)
    total = sum(page.size_bytes for page in result.pages)
    console.print(
        f"wrote {escape(str(out))}"
        + (f" and {len(result.pages) - 1} pages" if page_size else "")
        + f": {result.studies} studies, {total / 1e6:.1f} MB, {per_study / 1e3:.0f} kB of images "
        "per study",
        highlight=False,
    )
