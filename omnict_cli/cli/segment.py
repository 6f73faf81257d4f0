"""``omnict segment`` (fill the organ-mask cache for a folder) and ``omnict cache info|clear``.

Thin commands over ``omnict_cli.segmentation.run`` and
``omnict_cli.segmentation.cache``; the library is imported inside each
command so ``omnict --help`` stays instant.
"""

from __future__ import annotations

import re
import sys

import click

from omnict_cli.cli.main import EXIT_SOME_FAILED, _load_options, _make_load_options, main

SEGMENTER_CHOICES = ("auto", "totalsegmentator", "builtin")
"""Same as ``omnict_cli.segmentation.segmenter_choice.SEGMENTER_CHOICES`` (not imported: it pulls in numpy)."""

_DEVICE_PATTERN = re.compile(r"auto|cpu|gpu|cuda|(gpu|cuda):\d+|mps")
_CACHE_DIR_HELP = (
    "Mask cache folder (default $OMNICT_CACHE_DIR, else $XDG_CACHE_HOME/omnict/masks or ~/.cache/omnict/masks)."
)


def _check_device(context, parameter, value: str) -> str:
    value = value.strip().lower()
    if not _DEVICE_PATTERN.fullmatch(value):
        raise click.BadParameter(f"{value!r} is not a device; use auto, cpu, gpu, cuda:N (or gpu:N, mps)")
    return value


@main.command()
@click.argument("path", type=click.Path(exists=True, file_okay=True, dir_okay=True))
@click.option(
    "--segmenter",
    "segmenter_name",
    type=click.Choice(SEGMENTER_CHOICES),
    default="auto",
    show_default=True,
    help="auto = TotalSegmentator when installed with weights, else the built-in threshold segmenter.",
)
@click.option("--fast", is_flag=True, help="TotalSegmentator's 3 mm model: faster, coarser (its own cache entries).")
@click.option(
    "--device",
    default="auto",
    show_default=True,
    callback=_check_device,
    help="Where TotalSegmentator runs: auto, cpu, gpu or cuda:N. Does not change the masks.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Also write <study_id>.nii.gz label maps (no doubled suffix) that overlay each input, plus labels.json.",
)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help=_CACHE_DIR_HELP)
@_load_options
def segment(path, segmenter_name, fast, device, out_dir, cache_dir, allow_non_ct, max_voxels, max_bytes):
    """Make organ label maps for every study under PATH and keep them in the
    mask cache, so later runs (on this or another machine sharing the cache)
    skip segmentation. Studies already in the cache are not segmented again.

    Exit code 0 when every study is done, 1 when some failed (one error
    line each; the others still run). PNG/JPEG pictures carry no HU and are
    skipped, not failed: the model pools the whole image for them.

    \b
    Examples:
      omnict segment ./studies
      omnict segment ./studies --segmenter builtin --out ./masks
      omnict segment ./studies --cache-dir /shared/omnict-masks --device cuda:1
    """
    from rich.markup import escape

    from omnict_cli.errors import OmnictError
    from omnict_cli.segmentation.cache import MaskCache
    from omnict_cli.segmentation.run import segment_studies
    from omnict_cli.segmentation.segmenter_choice import make_segmenter
    from omnict_cli.studies.discover import discover_studies
    from omnict_cli.ui import progress, stderr_console

    console = stderr_console()
    try:
        studies = discover_studies(path)
        segmenter = make_segmenter(
            segmenter_name,
            fast=fast,
            device=device,
            notify=lambda text: console.print(
                f"[yellow]notice[/yellow] {escape(text)}", highlight=False, soft_wrap=True
            ),
        )
    except OmnictError as error:
        raise click.ClickException(error.one_line()) from error
    if out_dir is not None:
        studies = _outside(studies, out_dir, console)
    cache = MaskCache(cache_dir)
    with progress(disable=len(studies) < 2) as bar:
        task = bar.add_task(f"segmenting ({segmenter.describe()})", total=len(studies))
        try:
            results = segment_studies(
                studies,
                segmenter,
                cache,
                out_dir,
                _make_load_options(allow_non_ct, max_voxels, max_bytes),
                on_study=lambda _: bar.advance(task),
            )
        except OmnictError as error:  # labels.json could not be written: nothing else would be either
            raise click.ClickException(error.one_line()) from error
    _report(results, segmenter, cache, console)
    if any(result.status == "error" for result in results):
        sys.exit(EXIT_SOME_FAILED)


def _outside(studies, out_dir, console) -> list:
    """Leave out studies inside ``--out``: label maps written by an earlier run are not scans to segment."""
    from pathlib import Path

    out = Path(out_dir).resolve()
    kept = [study for study in studies if not study.paths[0].resolve().is_relative_to(out)]
    if len(kept) < len(studies):
        console.print(
            f"skipped {len(studies) - len(kept)} files inside the --out folder {out_dir} "
            "(label maps of an earlier run)",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    return kept


def _report(results, segmenter, cache, console) -> None:
    """Warnings and error lines on stderr, then the summary table on stdout."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from omnict_cli.segmentation.run import RunTotals

    for result in results:
        for warning in result.warnings:
            console.print(
                f"[yellow]warning[/yellow] {escape(result.study_id)}: {escape(warning)}",
                highlight=False,
                soft_wrap=True,
            )
    for result in results:
        if result.status == "skipped":
            console.print(f"[dim]skipped[/dim] {escape(result.note or '')}", highlight=False, soft_wrap=True)
    for result in results:
        if result.status == "error":
            console.print(f"[red]error[/red] {escape(result.error or '')}", highlight=False, soft_wrap=True)
    totals = RunTotals.of(results)
    table = Table(title=f"segment: {escape(segmenter.describe())}, cache {escape(str(cache.root))}")
    for name in ("studies", "segmented", "from cache", "skipped", "failed", "seconds"):
        table.add_column(name, justify="right")
    table.add_row(
        str(totals.studies),
        str(totals.segmented),
        str(totals.from_cache),
        str(totals.skipped),
        f"[red]{totals.failed}[/red]" if totals.failed else "0",
        f"{totals.seconds:.1f}",
    )
    # captured output has no terminal width; keep the title on one line there
    Console(width=None if sys.stdout.isatty() else 160).print(table)


@main.group("cache")
def cache_group():
    """Look at or empty the organ-mask cache that omnict segment fills.

    \b
    Examples:
      omnict cache info
      omnict cache clear --yes
    """


@cache_group.command("info")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help=_CACHE_DIR_HELP)
def cache_info(cache_dir):
    """Where the cache is, how many masks it holds and their size, per segmenter."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from omnict_cli.segmentation.cache import MaskCache
    from omnict_cli.training.tensor_cache import cache_size_bytes, default_tensor_cache_root

    info = MaskCache(cache_dir).info()
    click.echo(f"mask cache {info.root}: {info.entries} entries, {_size_text(info.size_bytes)}")
    tensors = default_tensor_cache_root(cache_dir)
    if tensors.is_dir():  # filled by `omnict train`; `cache clear` leaves it alone
        click.echo(
            f"training tensor cache {tensors}: {_size_text(cache_size_bytes(tensors))} "
            "(not touched by `cache clear`; delete the folder to free it)"
        )
    if not info.segmenters:
        return
    table = Table(show_header=True)
    for name in ("segmenter", "entries", "size"):
        table.add_column(name, justify="left" if name == "segmenter" else "right")
    for name, usage in sorted(info.segmenters.items()):
        table.add_row(escape(name), str(usage.entries), _size_text(usage.size_bytes))
    Console(width=None if sys.stdout.isatty() else 160).print(table)


@cache_group.command("clear")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help=_CACHE_DIR_HELP)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def cache_clear(cache_dir, yes):
    """Remove every cached mask (only the cache's own files; other files in the folder stay)."""
    from omnict_cli.segmentation.cache import MaskCache

    cache = MaskCache(cache_dir)
    info = cache.info()
    if info.entries == 0:
        click.echo(f"mask cache {info.root} is already empty")
        return
    if not yes:
        click.confirm(
            f"Remove {info.entries} cached masks ({_size_text(info.size_bytes)}) from {info.root}?", abort=True
        )
    try:
        removed = cache.clear()
    except OSError as error:
        raise click.ClickException(f"{info.root}: cannot remove cache files ({error.strerror or error})") from error
    click.echo(f"removed {removed.entries} cached masks ({_size_text(removed.size_bytes)}) from {info.root}")


def _size_text(size_bytes: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    size = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
