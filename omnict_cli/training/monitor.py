"""What a run shows and keeps while it trains: ``metrics.jsonl`` and the rich progress bar.

``metrics.jsonl`` gets one JSON object per logged optimizer step, flushed as
it is written, so a plot (or ``tail -f``) follows a run live and a killed run
keeps every step it logged::

    {"step": 12, "epoch": 0.375, "loss": 2.31, "lr": 0.0002, "step_s": 1.29, "tokens_per_s": 1830.4,
     "studies_per_s": 3.1, "elapsed_s": 41.2, "rows": [17, 3, 88, 40]}

``loss`` is the step's mean cross-entropy per answer token over the global
batch; ``lr`` the rate the step used; ``tokens_per_s`` counts every token of
the step's rows (prompt, image and organ tokens too) over all processes;
``studies_per_s`` is rows per second; ``rows`` are the line numbers (in the
rows file) the step trained on. On
resume, lines after the checkpoint's step are dropped first, so the file
never holds a step twice.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonlines
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from omnict_cli.atomic import write_text_atomically
from omnict_cli.ui import silence_library_progress_bars, stderr_console

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends step records to ``<out>/metrics.jsonl`` (main process only)."""

    def __init__(self, out_dir: Path, enabled: bool = True):
        self.path = Path(out_dir) / METRICS_FILE
        self.enabled = enabled

    def keep_until(self, step: int) -> None:
        """Drop records of steps after ``step`` (a resumed run redoes them)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().split("\n"):
            try:
                if line.strip() and jsonlines.Reader([line]).read(type=dict).get("step", 0) <= step:
                    kept.append(line)
            except jsonlines.InvalidLineError:
                continue  # a line cut short by a kill
        write_text_atomically(self.path, "".join(f"{line}\n" for line in kept))

    def start_fresh(self) -> None:
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as stream:
                stream.write(json.dumps(record) + "\n")
                stream.flush()


class TrainProgress:
    """A rich bar on stderr: steps done, loss, tokens/s and time left."""

    def __init__(self, total_steps: int, done: int, enabled: bool = True):
        self.bar = Progress(
            TextColumn("training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} tok/s"),
            TimeRemainingColumn(),
            console=stderr_console(),
            disable=not enabled,
        )
        self.task = self.bar.add_task("training", total=total_steps, completed=done, loss="-", speed="-")

    def __enter__(self) -> TrainProgress:
        self._restore_library_bars = silence_library_progress_bars()
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()
        self._restore_library_bars()

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        self.bar.update(self.task, completed=step, loss=f"{loss:.4f}", speed=f"{tokens_per_s:,.0f}")

    def note(self, text: str) -> None:
        """A line above the bar (checkpoints, problems)."""
        self.bar.console.print(text, highlight=False, markup=False)
