"""The ``omnict`` command line: thin commands over the library.

Each command parses options, calls one library function and prints.
Heavy modules (numpy, torch, nibabel) are imported inside the commands so
``omnict --help`` and ``omnict --version`` stay instant.
"""

from __future__ import annotations

import json
import sys

import click

from omnict_cli import __version__

EXIT_USAGE = 2
EXIT_SOME_FAILED = 1
"""Exit code of a command that ran but could not do some studies (``inspect``, ``segment``)."""


def _load_options(function):
    """Options shared by every command that loads studies."""
    function = click.option(
        "--allow-non-ct", is_flag=True, help="Load MR/PET/other DICOM series instead of refusing them."
    )(function)
    function = click.option(
        "--max-voxels",
        type=click.IntRange(min=1),
        default=None,
        help="Refuse studies with more voxels (default 1024^3, about 2 GiB as int16).",
    )(function)
    function = click.option(
        "--max-bytes",
        type=click.IntRange(min=1),
        default=None,
        help="Refuse studies whose voxels, decoded plus a float32 working copy, would take more "
        "bytes (default 6 GiB: 1024^3 int16 voxels). Checked from the header, before reading.",
    )(function)
    return function


def _make_load_options(allow_non_ct: bool, max_voxels: int | None, max_bytes: int | None = None):
    from omnict_cli.studies.readers.base import DEFAULT_MAX_BYTES, DEFAULT_MAX_VOXELS, LoadOptions

    return LoadOptions(
        allow_non_ct=allow_non_ct,
        max_voxels=max_voxels or DEFAULT_MAX_VOXELS,
        max_bytes=max_bytes or DEFAULT_MAX_BYTES,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="omnict")
def main():
    """omnict: CT scans in, radiology findings out (OmniCT, ICLR 2026).

    \b
    Example:
      omnict inspect ./studies
    """


@main.command()
@click.argument("path", type=click.Path(exists=True, file_okay=True, dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list for scripts instead of a table.")
@_load_options
def inspect(path, as_json, allow_non_ct, max_voxels, max_bytes):
    """List the studies found under PATH: kind, format, shape, spacing,
    orientation found in the file, HU range, and any warning or error.

    Bad files never stop the walk: each gets one line saying what is wrong.
    Exit code 0 when every study loads (warnings included), 1 when some
    failed (like omnict segment), 2 for a usage error.

    \b
    Examples:
      omnict inspect examples
      omnict inspect ./studies --json > studies.json
    """
    from omnict_cli.errors import OmnictError
    from omnict_cli.studies.discover import discover_studies
    from omnict_cli.studies.inspection import summarize_study
    from omnict_cli.ui import progress, stderr_console, studies_table

    options = _make_load_options(allow_non_ct, max_voxels, max_bytes)
    try:
        studies = discover_studies(path)
    except OmnictError as error:
        raise click.ClickException(error.one_line()) from error
    summaries = []
    with progress(disable=as_json or len(studies) < 2) as bar:
        task = bar.add_task("inspecting", total=len(studies))
        for study in studies:
            summaries.append(summarize_study(study, options))
            bar.advance(task)
    failed = [s for s in summaries if s.status == "error"]
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in summaries], indent=2))
        sys.exit(EXIT_SOME_FAILED if failed else 0)
    from rich.console import Console
    from rich.markup import escape

    # piped or captured output has no terminal width; 80 columns would fold every cell
    Console(width=None if sys.stdout.isatty() else 160).print(studies_table(summaries))
    warned = sum(s.status == "warning" for s in summaries)
    console = stderr_console()
    for summary in failed:
        console.print(f"[red]error[/red] {escape(summary.error)}", highlight=False, soft_wrap=True)
    console.print(
        f"{len(summaries)} studies: {len(summaries) - len(failed) - warned} ok, "
        f"{warned} with warnings, {len(failed)} failed",
        highlight=False,
    )
    if failed:
        sys.exit(EXIT_SOME_FAILED)


@main.command("demo-data")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--n", "count", type=click.IntRange(min=1), default=10, show_default=True, help="Number of cases.")
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Same seed, same cases (a whole number, 0 or more).",
)
@click.option(
    "--size",
    nargs=3,
    type=click.IntRange(min=8),
    default=None,
    metavar="D H W",
    help="Voxels per volume, canonical [z, y, x] (default 64 256 256).",
)
@click.option(
    "--spacing",
    nargs=3,
    type=click.FloatRange(min=0.01),
    default=None,
    metavar="SZ SY SX",
    help="Voxel size in mm (default 5 1.4 1.4).",
)
@click.option("--realistic", is_flag=True, help="512x512x300 voxels at 0.7x0.7x1.5 mm, for benchmarks.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["nifti", "dicom", "png"]),
    default="nifti",
    show_default=True,
    help="Volumes as NIfTI or DICOM series; png writes a 2D slice set only.",
)
@click.option(
    "--prevalence",
    "prevalence_items",
    multiple=True,
    metavar="CLASS=P",
    help='Probability a case has a CT-RATE class, e.g. --prevalence "Lung nodule=0.9" (repeatable).',
)
@click.option("--overwrite", is_flag=True, help="Write into OUT_DIR even if it already holds files.")
def demo_data(out_dir, count, seed, size, spacing, realistic, fmt, prevalence_items, overwrite):
    """Generate synthetic chest CT phantoms with exact organ masks, CT-RATE
    labels, reference reports and VQA (deterministic per seed).

    \b
    Examples:
      omnict demo-data ./phantoms --n 20 --seed 1
      omnict demo-data ./phantoms_dicom --n 5 --format dicom
      omnict demo-data ./big --n 2 --realistic
    """
    from pathlib import Path

    from omnict_cli.atomic import check_destination, output_error
    from omnict_cli.errors import OmnictError
    from omnict_cli.phantom.generate import REALISTIC_SIZE, REALISTIC_SPACING, PhantomConfig
    from omnict_cli.phantom.writer import write_phantom_set
    from omnict_cli.ui import progress, stderr_console

    target = Path(out_dir)
    try:
        check_destination(target, folder=True)
    except OmnictError as error:
        raise click.ClickException(error.one_line()) from error
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise click.ClickException(
            f"{target}: folder is not empty; pass --overwrite to write into it (files of the same name are replaced)"
        )
    defaults = PhantomConfig()
    if realistic:
        size, spacing = size or REALISTIC_SIZE, spacing or REALISTIC_SPACING
    try:
        config = PhantomConfig(
            size=tuple(size or defaults.size),
            spacing=tuple(spacing or defaults.spacing),
            prevalence=_parse_prevalence(prevalence_items),
        )
    except ValueError as error:
        raise click.BadParameter(str(error)) from error
    try:
        with progress() as bar:
            task = bar.add_task("generating phantoms", total=count)
            summary = write_phantom_set(target, count, seed, config, fmt, on_case=lambda _: bar.advance(task))
    except OSError as error:  # disk full, folder removed meanwhile: cases written so far stay complete
        raise click.ClickException(output_error(error.filename or target, error).one_line()) from error
    except OmnictError as error:  # a case that cannot be drawn on this grid
        raise click.ClickException(error.one_line()) from error
    positives = ", ".join(f"{name} {n}" for name, n in summary.positives.items() if n)
    stderr_console().print(
        f"wrote {summary.cases} cases, {summary.slices} slices and {summary.qa_rows} QA rows "
        f"to {target}; positives: {positives or 'none'}",
        highlight=False,
    )


def _parse_prevalence(items) -> dict | None:
    """``("Lung nodule=0.9", ...)`` -> ``{"Lung nodule": 0.9}``; unnamed classes keep their defaults."""
    from omnict_cli.labels import CTRATE_ABNORMALITIES

    prevalence = {}
    for item in items:
        name, _, value = item.rpartition("=")
        name = name.strip()
        if name not in CTRATE_ABNORMALITIES:
            raise click.BadParameter(
                f"{name!r} is not a CT-RATE class; one of: {', '.join(CTRATE_ABNORMALITIES)}", param_hint="--prevalence"
            )
        try:
            probability = float(value)
        except ValueError:
            probability = -1.0
        if not 0.0 <= probability <= 1.0:
            raise click.BadParameter(
                f"{item!r}: the probability must be a number from 0 to 1", param_hint="--prevalence"
            )
        prevalence[name] = probability
    return prevalence or None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
