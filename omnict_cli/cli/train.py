"""``omnict train`` (one stage of OmniCT training) and ``omnict train-rows`` (report rows from a CT-RATE layout).

Thin commands over ``omnict_cli.training``; the library (torch, transformers,
accelerate) is imported inside each command so ``omnict --help`` stays instant.
"""

from __future__ import annotations

import sys

import click

from omnict_cli.cli.main import main

EXIT_INTERRUPTED = 130

STAGES = ("pretrain", "sft")
SEGMENTERS = ("builtin", "auto", "totalsegmentator", "none")
"""Same as ``omnict_cli.training.config`` (not imported here: keeps ``--help`` instant)."""


@main.command()
@click.option(
    "--stage",
    type=click.Choice(STAGES),
    required=True,
    help="pretrain = stage 1 (projector only, lr 2e-4, 2 epochs); sft = stage 2 (projector + LLM, lr 5e-5, 1 epoch).",
)
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help='JSONL chat rows ({"messages": [...], "image": ...}), e.g. demo-data\'s qa.jsonl.',
)
@click.option(
    "--model",
    "model_dir",
    metavar="DIR|ORG/NAME[@REV]",
    required=True,
    help="Model to start from: an OmniCT directory (build-model output or a stage-1 result), a Hugging Face "
    "hub id, or a release checkpoint directory (imported on first use; see docs/weights.md).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    required=True,
    help="Output: final model, checkpoints/step-N/, metrics.jsonl, training.json.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Default: 2 for pretrain, 1 for sft.")
@click.option(
    "--lr",
    "learning_rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Peak learning rate. Default: 2e-4 for pretrain, 5e-5 for sft.",
)
@click.option(
    "--batch-size",
    "per_device_batch_size",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Rows per forward pass on each process.",
)
@click.option(
    "--grad-accum",
    "gradient_accumulation",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Passes per optimizer step; global batch = batch size x processes x this (paper: 256).",
)
@click.option(
    "--max-length",
    type=click.IntRange(min=16),
    default=2048,
    show_default=True,
    help="Tokens per row; answers are cut to fit, prompts never.",
)
@click.option("--warmup-ratio", type=click.FloatRange(0, 1, max_open=True), default=0.03, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--train-vision", is_flag=True, help="Also train the vision encoder (small encoders from scratch).")
@click.option("--seed", type=int, default=0, show_default=True, help="Data order and random states.")
@click.option(
    "--save-every",
    "save_every_steps",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Checkpoint every N optimizer steps; 0 = at the end of each epoch only.",
)
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out (same step, same next batch).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after N optimizer steps.")
@click.option(
    "--segmenter",
    type=click.Choice(SEGMENTERS),
    default="builtin",
    show_default=True,
    help="Organ masks for OSE; none = pool the whole image.",
)
@click.option(
    "--cache-dir",
    "mask_cache_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Mask cache folder (default as 'omnict segment').",
)
@click.option(
    "--tensor-cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Preprocessed-study cache (default: 'tensors' beside the mask cache).",
)
@click.option(
    "--num-workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Worker processes reading the tensor cache.",
)
@click.option(
    "--log-every",
    "log_every_steps",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Write a metrics.jsonl line every N steps.",
)
@click.option("--gradient-checkpointing", is_flag=True, help="Recompute activations: less memory, slower steps.")
@click.option(
    "--mixed-precision",
    type=click.Choice(["auto", "no", "bf16", "fp16"]),
    default="auto",
    show_default=True,
    help="auto = bf16 on a GPU that has it, fp32 on CPU.",
)
@click.option(
    "--keep-checkpoints",
    type=click.IntRange(min=1),
    default=None,
    help="Keep only the newest N checkpoints (default: all).",
)
@click.option("--allow-non-ct", is_flag=True, help="Load MR/PET/other DICOM series instead of leaving them out.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(model_dir, out_dir, mask_cache_dir, quiet, **options):
    """Train OmniCT on JSONL chat rows: one stage of the paper's two (Table 6).

    AdamW, warmup 3% then cosine decay, loss on the answer tokens only, bf16
    on GPU and fp32 on CPU. Runs the same under `accelerate launch` on several
    GPUs or nodes (configs/ holds DDP, DeepSpeed and FSDP settings). Studies
    are preprocessed and segmented once and kept in the tensor cache.

    \b
    Examples:
      omnict train --stage pretrain --data qa.jsonl --model ./omnict-3b --out ./stage1
      omnict train --stage sft --data qa.jsonl --model ./stage1 --out ./stage2 --grad-accum 64
      omnict train --stage sft --data qa.jsonl --model ./stage1 --out ./stage2 --resume
      accelerate launch --config_file configs/ddp.yaml -m omnict_cli train --stage sft ...
    """
    from pathlib import Path

    from omnict_cli.errors import OmnictError
    from omnict_cli.run.engine import resolve_model
    from omnict_cli.training.config import TrainConfig, TrainConfigError
    from omnict_cli.training.trainer import TrainInterrupted
    from omnict_cli.training.trainer import train as run_training
    from omnict_cli.ui import stderr_console

    console = stderr_console()
    try:
        source = resolve_model(model_dir, echo=lambda text: console.print(text, highlight=False, markup=False))
    except OmnictError as error:
        raise click.ClickException(error.one_line()) from error
    try:
        config = TrainConfig(model=source.path, out=Path(out_dir), mask_cache_dir=mask_cache_dir, **options)
    except TrainConfigError as error:
        raise click.BadParameter(str(error)) from error
    try:
        result = run_training(config, progress=not quiet)
    except OmnictError as error:
        raise click.ClickException(error.one_line()) from error
    except TrainInterrupted as stopped:
        _say_interrupted(console, stopped)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:  # while the data was prepared: the tensor cache keeps what was done
        console.print("interrupted before the first step; run the same command again to start", highlight=False)
        sys.exit(EXIT_INTERRUPTED)
    if not result.main_process:
        return
    loss = "-" if result.final_loss is None else f"{result.final_loss:.4f}"
    left_out = f"; {len(result.problems)} rows or studies left out" if result.problems else ""
    console.print(
        f"trained {result.steps} steps ({result.epochs:g} epochs) on {result.rows} rows, "
        f"final loss {loss}{left_out}; model in {result.out_dir}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _say_interrupted(console, stopped) -> None:
    """Where the run stopped and the command that continues it (this command with --resume)."""
    import shlex

    saved = f"checkpoint {stopped.checkpoint}" if stopped.checkpoint else "no step finished, nothing saved"
    arguments = sys.argv[1:] + ([] if "--resume" in sys.argv[1:] else ["--resume"])
    console.print(
        f"interrupted after step {stopped.step} of {stopped.total_steps}; {saved}. Resume with:",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    console.print(f"  omnict {shlex.join(arguments)}", highlight=False, markup=False, soft_wrap=True)


@main.command("train-rows")
@click.option(
    "--reports",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Reports CSV (VolumeName, Findings_EN, Impressions_EN), as CT-RATE ships it.",
)
@click.option(
    "--volumes",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder holding the volumes named in --reports (searched recursively).",
)
@click.option(
    "--phantoms",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="A demo-data folder (references.csv + volumes/) instead of --reports/--volumes.",
)
@click.option("--out", "out_file", type=click.Path(dir_okay=False), required=True, help="JSONL rows to write.")
def train_rows(reports, volumes, phantoms, out_file):
    """Write report-generation training rows (question "Can you describe the
    CT image?", answer "Findings: ...\\nImpression: ...") for a CT-RATE style
    layout or a demo-data set. A missing volume or empty report is one line
    and the other studies are written.

    \b
    Examples:
      omnict train-rows --reports train_reports.csv --volumes ./dataset/train --out reports.jsonl
      omnict train-rows --phantoms ./phantoms --out reports.jsonl
    """
    from omnict_cli.errors import OmnictError
    from omnict_cli.training.rows import phantom_report_rows, report_rows, write_rows
    from omnict_cli.ui import stderr_console

    if (phantoms is None) == (reports is None or volumes is None):
        raise click.UsageError("give --reports and --volumes, or --phantoms")
    try:
        read = phantom_report_rows(phantoms) if phantoms else report_rows(reports, volumes)
    except OmnictError as error:
        raise click.ClickException(error.one_line()) from error
    console = stderr_console()
    for problem in read.problems:
        console.print(problem, highlight=False, markup=False, soft_wrap=True)
    if not read.rows:
        raise click.ClickException("no study had both a volume and a report; nothing written")
    write_rows(out_file, read.rows)
    console.print(
        f"wrote {len(read.rows)} report rows to {out_file}"
        + (f"; {len(read.problems)} studies left out" if read.problems else ""),
        highlight=False,
        markup=False,
    )
