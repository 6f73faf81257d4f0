"""rich helpers shared by commands: progress bars on stderr, result tables."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table


def stderr_console() -> Console:
    return Console(stderr=True)


def progress(disable: bool = False) -> Progress:
    """A progress bar on stderr, so stdout stays clean for results."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
        disable=disable,
        transient=True,
    )


def silence_library_progress_bars():
    """Turn off transformers' and huggingface_hub's own tqdm bars; returns the function that turns them back.

    Why: ``save_pretrained`` draws "Writing model shards" (and loading "Loading weights") on every
    call, cutting through omnict's own bars and lines and filling logs, even under ``--quiet``.
    """
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    hub_was_on = not are_progress_bars_disabled()
    transformers_was_on = transformers_logging.is_progress_bar_enabled()
    disable_progress_bars()
    transformers_logging.disable_progress_bar()

    def restore() -> None:
        if hub_was_on:
            enable_progress_bars()
        if transformers_was_on:
            transformers_logging.enable_progress_bar()

    return restore


@contextmanager
def library_progress_bars_silenced():
    """:func:`silence_library_progress_bars` for the length of a ``with`` block."""
    restore = silence_library_progress_bars()
    try:
        yield
    finally:
        restore()


def studies_table(summaries) -> Table:
    """The ``omnict inspect`` table."""
    table = Table(title="studies", show_lines=False)
    for name in ("study", "kind", "format", "shape", "spacing mm", "orientation", "HU range", "status"):
        table.add_column(name, overflow="fold")
    for s in summaries:
        shape = "x".join(map(str, s.shape)) if s.shape else "-"
        spacing = "x".join(f"{v:.4g}" for v in s.spacing) if s.spacing else "-"
        value_range = f"{s.hu_range[0]:g}..{s.hu_range[1]:g}" if s.hu_range else "-"
        if s.intensity == "display":
            value_range += " (grey)"
        if s.status == "error":
            status = "[red]error[/red]: " + escape(s.error or "")
        elif s.warnings:
            status = "[yellow]warning[/yellow]: " + escape("; ".join(s.warnings))
        else:
            status = "[green]ok[/green]"
        table.add_row(
            escape(s.study_id), s.kind or "-", s.format, shape, spacing, s.orientation or "-", value_range, status
        )
    return table
