"""``omnict report`` and ``omnict ask``: thin commands over :mod:`omnict_cli.run.pipeline`.

Exit codes (both commands): 0 every study ok (or skipped), 1 some studies
failed (their records say why), 2 usage error, no model, or an output that
cannot be written, 130 interrupted with Ctrl-C, 143 stopped by SIGTERM (the
records written so far are whole; rerun the same command to resume).
"""

from __future__ import annotations

import os
import sys

import click

from omnict_cli.cli.label_options import convention_option
from omnict_cli.cli.main import _load_options, _make_load_options, main

EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
"""128 + SIGTERM (15), what a shell reports for a process SIGTERM ended; a scheduler can tell it from a failure."""
SEGMENTER_CHOICES = ("auto", "totalsegmentator", "builtin", "none")


def _default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def _run_options(function):
    """Options shared by ``report`` and ``ask``: the model, the device, generation, segmentation."""
    options = [
        click.option(
            "--model",
            "model_dir",
            default=None,
            metavar="DIR|ORG/NAME[@REV]",
            help="OmniCT model directory, Hugging Face hub id, or a release checkpoint directory (imported on "
            "first use into omnict's cache; see docs/weights.md). Default: $OMNICT_MODEL, else the bundled demo model.",
        ),
        click.option(
            "--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, ... (auto: a GPU if any)."
        ),
        click.option(
            "--dtype",
            type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
            default="auto",
            show_default=True,
            help="auto: bfloat16 on a GPU, float32 on the CPU.",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=4,
            show_default=True,
            help="Studies per generate() call (halved automatically on GPU out-of-memory).",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=0),
            default=_default_workers(),
            show_default=True,
            help="Processes loading, preprocessing and segmenting ahead of the model (0: in this one).",
        ),
        click.option(
            "--organ",
            default=None,
            help="Organ group for OSE (e.g. lungs, heart); default: routed "
            "from the question, or the scan's default organs.",
        ),
        click.option(
            "--max-new-tokens",
            type=click.IntRange(min=1),
            default=512,
            show_default=True,
            help="Generation stops at the end-of-turn token or here (phantom reports reach ~280 tokens).",
        ),
        click.option(
            "--num-beams",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="1 = greedy decoding; more = beam search.",
        ),
        click.option(
            "--max-question-chars",
            type=click.IntRange(min=1),
            default=2000,
            show_default=True,
            help="A longer question or --prompt is an error record naming the limit (chat tokens are removed first).",
        ),
        click.option(
            "--segmenter",
            "segmenter_name",
            type=click.Choice(SEGMENTER_CHOICES),
            default="auto",
            show_default=True,
            help="Organ masks: TotalSegmentator when installed with weights, else "
            "built-in; none = pool the whole image.",
        ),
        click.option(
            "--cache-dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Mask cache (default $OMNICT_CACHE_DIR or ~/.cache/omnict/masks).",
        ),
        click.option("--quiet", is_flag=True, help="No progress bar or summary table; errors still go to stderr."),
    ]
    for option in reversed(options):
        function = option(function)
    return _load_options(function)


def _file_options(function):
    """Options of runs that write a findings file: resume, retry, shards."""
    options = [
        click.option(
            "--resume/--overwrite",
            default=True,
            show_default=True,
            help="Resume: skip studies already in --out. Overwrite: start --out over.",
        ),
        click.option("--retry-errors", is_flag=True, help="Redo only the studies whose records are errors."),
        click.option(
            "--shard",
            default=None,
            metavar="I/N",
            help="Run shard I of N (0-based), e.g. a SLURM array task: --shard $SLURM_ARRAY_TASK_ID/8. "
            "Under `accelerate launch` shards are set from the ranks.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@main.command()
@click.argument("studies", type=click.Path(exists=True, file_okay=True, dir_okay=True))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Findings file (JSONL), appended to.")
@click.option(
    "--prompt", default=None, help='The report question (default: the authors\' "Can you describe the CT image?").'
)
@click.option(
    "--label",
    "add_labels",
    is_flag=True,
    help="Add the 18 CT-RATE abnormality labels of each generated report (bundled labeler).",
)
@convention_option("--label-convention", "--label reads lymph nodes")
@_file_options
@_run_options
def report(studies, out, prompt, add_labels, resume, retry_errors, shard, **run_options):
    """Write radiology findings for every study under STUDIES (a folder,
    recursively, or one file): one JSON record per study in OUT.

    A killed run resumes where it stopped when the same command is run
    again; bad studies become error records and the run goes on.

    \b
    Examples:
      omnict report examples --out findings.jsonl
      omnict report ./studies --out findings.jsonl --batch-size 8 --label
      omnict report ./studies --out findings.jsonl --shard 0/4      # SLURM array task 0 of 4
      accelerate launch -m omnict_cli report ./studies --out findings.jsonl
    """
    from omnict_cli.run.pipeline import report_jobs
    from omnict_cli.studies.discover import discover_studies

    run = _RunContext(run_options, quiet=run_options["quiet"])
    run.check_output(out)
    found = run.call(discover_studies, studies)
    jobs = report_jobs(found, prompt=prompt, organ=run_options["organ"])
    run.execute(
        jobs,
        out,
        overwrite=not resume,
        retry_errors=retry_errors,
        shard_text=shard,
        add_labels=add_labels,
        what="studies",
    )


@main.command()
@click.argument("scan", required=False, type=click.Path(exists=True, file_okay=True, dir_okay=True))
@click.argument("question", required=False)
@click.option(
    "--batch",
    "rows_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help='JSONL question rows (authors\' chat rows or {"image", "question"}); needs --out.',
)
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Answers file (JSONL) for --batch.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record, not just the answer.")
@_file_options
@_run_options
def ask(scan, question, rows_path, out, as_json, resume, retry_errors, shard, **run_options):
    """Answer QUESTION about SCAN, or every question of a --batch file.

    The organ whose tokens OSE adds is routed from the question ("Is there
    ascites?" -> abdominal organs) unless --organ is given; the record says
    which organ was used and why.

    \b
    Examples:
      omnict ask scan.nii.gz "Is there a pleural effusion?"
      omnict ask scan.nii.gz "Is the heart enlarged?" --json
      omnict ask --batch examples/phantoms/qa.jsonl --out answers.jsonl
      omnict score answers.jsonl --references examples/phantoms/qa.jsonl
    """
    run = _RunContext(run_options, quiet=run_options["quiet"] or not rows_path)
    if rows_path:
        if scan or question or not out:
            raise click.UsageError("--batch ROWS takes no SCAN/QUESTION and needs --out ANSWERS.jsonl")
        from omnict_cli.run.questions import read_question_rows

        run.check_output(out)
        jobs, problems = run.call(read_question_rows, rows_path, run_options["organ"])
        run.execute(
            jobs,
            out,
            overwrite=not resume,
            retry_errors=retry_errors,
            shard_text=shard,
            extra_records=[p.to_record() for p in problems],
            what="questions",
        )
        return
    if not scan or not question:
        raise click.UsageError("give SCAN and QUESTION, or --batch ROWS --out ANSWERS")
    run.ask_one(scan, question, as_json)


class _UsageFailure(click.ClickException):
    """A problem with the options, the model or the output: one line, exit code 2."""

    exit_code = EXIT_USAGE


class _RunContext:
    """What ``report`` and ``ask`` share: option handling, model loading, progress, summary, exit code."""

    def __init__(self, run_options: dict, quiet: bool):
        from omnict_cli.ui import stderr_console

        self.options = run_options
        self.quiet = quiet
        self.console = stderr_console()

    def call(self, function, *args):
        """Call a library function; an OmnictError becomes one line and exit code 2."""
        from omnict_cli.errors import OmnictError

        try:
            return function(*args)
        except OmnictError as error:
            raise _UsageFailure(error.one_line()) from error

    def check_output(self, out) -> None:
        from omnict_cli.run.findings_file import check_out_path

        self.call(check_out_path, out)

    def pipeline(self, add_labels: bool, on_record=None):
        """Resolve the model and build the pipeline; the model and segmenter load when a study needs them.

        Loading prints the model's one line on stderr; a rerun with nothing left to do loads neither.
        """
        from omnict_cli.run.demo_notice import model_notices
        from omnict_cli.run.engine import GenerationSettings, resolve_model
        from omnict_cli.run.engine_on_demand import EngineOnDemand
        from omnict_cli.run.pipeline import Pipeline, RunSettings

        opts = self.options

        def say(text: str) -> None:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

        source = self.call(resolve_model, opts["model_dir"], say)  # a directory, hub id or release checkpoint
        engine = EngineOnDemand(
            source.path,
            opts["device"],
            opts["dtype"],
            source,
            on_load=lambda loaded: opts["quiet"] or say(f"{loaded.describe()} ({source.description})"),
        )

        def setup():
            from omnict_cli.run.study_inputs import PrepareSetup

            return PrepareSetup(
                preprocess=engine.preprocess_config,
                segmenter=self._segmenter(),
                mask_cache=self._mask_cache(),
                load_options=_make_load_options(opts["allow_non_ct"], opts["max_voxels"], opts["max_bytes"]),
            )

        notices = model_notices(source.path)
        if not opts["quiet"]:
            for notice in notices:  # once per command; every record carries it too
                self.console.print(f"[yellow]{notice}[/yellow]", highlight=False, soft_wrap=True)
        settings = RunSettings(
            label_convention=opts.get("label_convention", "ctrate"),
            batch_size=opts["batch_size"],
            workers=opts["workers"],
            add_labels=add_labels,
            max_question_chars=opts["max_question_chars"],
            generation=GenerationSettings(opts["max_new_tokens"], opts["num_beams"]),
            model_notices=notices,
        )
        return Pipeline(engine, setup, settings, on_record=on_record)

    def _segmenter(self):
        if self.options["segmenter_name"] == "none":
            return None
        from omnict_cli.segmentation.segmenter_choice import make_segmenter

        return self.call(
            make_segmenter,
            self.options["segmenter_name"],
            False,
            "auto",
            self._notify,
        )

    def _notify(self, text: str) -> None:
        """One line on stderr, never wrapped (the segmenter's fallback notice); nothing with --quiet."""
        if not self.options["quiet"]:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def _mask_cache(self):
        if self.options["segmenter_name"] == "none":
            return None
        from omnict_cli.segmentation.cache import MaskCache

        return MaskCache(self.options["cache_dir"])

    def execute(
        self,
        jobs,
        out,
        overwrite: bool,
        retry_errors: bool,
        shard_text,
        what: str,
        add_labels: bool = False,
        extra_records=(),
    ) -> None:
        """Run jobs into ``out`` with a progress bar; print the summary; exit with the documented code."""
        from omnict_cli.errors import OmnictError
        from omnict_cli.run.pipeline import run_to_file
        from omnict_cli.run.records import OutputError
        from omnict_cli.run.sharding import distributed_shard, parse_shard

        shard = self.call(parse_shard, shard_text) if shard_text is not None else distributed_shard()
        display = _RunDisplay(self.console, what, disabled=self.quiet)
        pipeline = self.pipeline(add_labels, on_record=display.update)
        try:
            with display:
                result = run_to_file(
                    pipeline,
                    jobs,
                    out,
                    overwrite=overwrite,
                    retry_errors=retry_errors,
                    shard=shard,
                    extra_records=list(extra_records),
                )
        except (OutputError, OmnictError) as error:  # an unwritable file; a model or segmenter that cannot load
            self.console.print(f"[red]error[/red] {_escape(error.one_line())}", highlight=False, soft_wrap=True)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt as stop:
            from omnict_cli.run.interrupts import Terminated

            terminated = isinstance(stop, Terminated)
            self.console.print(
                f"{'terminated (SIGTERM)' if terminated else 'interrupted'}: {pipeline.counts.processed} {what} "
                "written this run, every record whole; run the same command again to resume",
                highlight=False,
                soft_wrap=True,  # one line, whatever the terminal's width: scripts and logs grep it
            )
            sys.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
        for note in result.notes:
            self.console.print(note, highlight=False, markup=False)
        failed = _print_summary(self.console, result, what, self.quiet)
        sys.exit(EXIT_SOME_FAILED if failed else 0)

    def ask_one(self, scan, question, as_json: bool) -> None:
        """One question about one scan: print the answer (or the record); exit 1 when it failed."""
        import json

        from omnict_cli.run.pipeline import Job
        from omnict_cli.run.questions import study_for_image

        study = self.call(study_for_image, os.getcwd(), scan)
        collected = _CollectingWriter()
        pipeline = self.pipeline(add_labels=False)
        pipeline.settings.workers = 0
        job = Job(f"{study.study_id}::1", study, "ask", question, self.options["organ"], "1")
        self.call(pipeline.run, [job], collected)
        record = collected.records[0]
        if as_json:
            click.echo(json.dumps(record, indent=2))
        elif record["status"] == "ok":
            click.echo(record["answer"])
            self._print_answer_notes(record, pipeline.settings.model_notices)
        if record["status"] == "error":
            self.console.print(f"[red]error[/red] {_escape(record['error']['message'])}", highlight=False)
            sys.exit(EXIT_SOME_FAILED)
        if record["status"] == "skipped":
            self.console.print(_escape(record["note"]), highlight=False)

    def _print_answer_notes(self, record: dict, notices) -> None:
        """Under the answer, on stderr: P(Yes)/P(No) of a closed question, the organ used and the warnings."""
        if self.options["quiet"]:
            return
        probabilities = record.get("answer_probabilities")
        if probabilities:
            self.console.print(
                ", ".join(f"P({word}) {value:.3f}" for word, value in probabilities.items()), highlight=False
            )
        self.console.print(f"organ tokens: {_escape(record['organ_reason'])}", highlight=False, soft_wrap=True)
        for warning in record["warnings"]:
            if warning not in notices and warning not in record["organ_reason"]:  # not said already
                self.console.print(f"[yellow]warning[/yellow] {_escape(warning)}", highlight=False, soft_wrap=True)


class _CollectingWriter:
    """Keeps records in memory (a single ``ask`` prints instead of writing a file)."""

    def __init__(self):
        self.records: list[dict] = []

    def write(self, record: dict) -> None:
        self.records.append(record)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class _RunDisplay:
    """A rich progress bar: done / failed / masks from cache, rate and ETA."""

    def __init__(self, console, what: str, disabled: bool):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.what = what
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=disabled,
            transient=False,
        )
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc_info):
        self.progress.__exit__(*exc_info)

    def update(self, record: dict, counts) -> None:
        if self.task is None:
            self.task = self.progress.add_task(self.what, total=counts.total - counts.already_done, status="")
        rate = counts.processed / max(counts.elapsed, 1e-9)
        status = (
            f"ok {counts.ok} failed {counts.failed} skipped {counts.skipped} "
            f"masks cached {counts.masks_from_cache} {rate:.2f}/s"
        )
        self.progress.update(self.task, completed=counts.processed, status=status)


def _print_summary(console, result, what: str, quiet: bool) -> int:
    """The summary table (unless quiet) and one line per failure; returns how many failed in the file."""
    from rich.table import Table

    counts = result.counts
    for message in counts.failures:
        console.print(f"[red]error[/red] {_escape(message)}", highlight=False, soft_wrap=True)
    if not quiet:
        table = Table(title=f"{what}: {result.written_to}")
        for column in ("found", "done before", "ok", "failed", "skipped", "masks from cache", "seconds", f"{what}/s"):
            table.add_column(column, justify="right")
        rate = counts.processed / counts.seconds if counts.seconds else 0.0
        table.add_row(
            str(counts.total),
            str(counts.already_done),
            str(counts.ok),
            str(counts.failed),
            str(counts.skipped),
            str(counts.masks_from_cache),
            f"{counts.seconds:.1f}",
            f"{rate:.2f}",
        )
        console.print(table)
        if result.merged is not None:
            console.print(
                f"merged {result.merged} records from every shard into {result.out}", highlight=False, markup=False
            )
    return result.errors_in_file
