"""``omnict train-demo``: rebuild the bundled demo model (``models/omnict-demo/``) from nothing.

A thin command over :func:`omnict_cli.training.demo.train_demo`; torch and
transformers are imported inside it so ``omnict --help`` stays instant.
"""

from __future__ import annotations

import sys

import click

from omnict_cli.cli.main import main


@main.command("train-demo")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seeds the weights' initialisation and the data order (the phantom seeds are fixed).",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Phantoms, rows, components, both stages and caches (default: OUT_DIR.work); a rerun reuses what is there.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for torch (default: torch's choice); 1 is faster on a machine others load.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT_DIR if it exists.")
# the names of omnict_cli.training.demo.RECIPES, written out so `omnict --help` needs no torch (a test checks them)
@click.option(
    "--recipe",
    "recipe_name",
    type=click.Choice(["shipped", "reading-experiment", "first-demo"]),
    default="shipped",
    show_default=True,
    help="'shipped' made models/omnict-demo; 'first-demo' and 'reading-experiment' are earlier attempts "
    "that did not read the image, kept to reproduce docs/demo-model.md.",
)
def train_demo(out_dir, seed, work_dir, threads, overwrite, recipe_name):
    """Train the small demo OmniCT on synthetic phantoms: BPE tokenizer, a
    SigLIP-style encoder and a Qwen2 decoder from scratch, stage 1 and stage 2
    with 'omnict train' (about 22 minutes on an idle 2-core machine).

    \b
    Examples:
      omnict train-demo ./omnict-demo
      omnict train-demo models/omnict-demo --overwrite --seed 0
      omnict train-demo ./attempt --recipe reading-experiment --threads 2
    """
    from dataclasses import replace
    from pathlib import Path

    from omnict_cli.errors import OmnictError
    from omnict_cli.training.config import TrainConfigError
    from omnict_cli.training.demo import RECIPES
    from omnict_cli.training.demo import train_demo as run_recipe
    from omnict_cli.training.trainer import TrainInterrupted
    from omnict_cli.ui import stderr_console

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    target = Path(out_dir)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise click.ClickException(f"{target}: folder is not empty; pass --overwrite to replace the model in it")
    console = stderr_console()
    try:
        summary = run_recipe(
            target,
            replace(RECIPES[recipe_name], seed=seed),
            work_dir=work_dir,
            notify=lambda text: console.print(text, highlight=False, markup=False),
        )
    except (OmnictError, TrainConfigError) as error:
        message = error.one_line() if isinstance(error, OmnictError) else str(error)
        raise click.ClickException(message) from error
    except (TrainInterrupted, KeyboardInterrupt) as stopped:
        where = (
            f" after step {stopped.step} (checkpoint {stopped.checkpoint})"
            if isinstance(stopped, TrainInterrupted)
            else ""
        )
        console.print(
            f"interrupted{where}; no model written to {target} yet: run the same command again to continue "
            "from its work folder",
            highlight=False,
            markup=False,
        )
        sys.exit(130)
    steps = ", ".join(
        f"{stage} {info['steps']} steps (final loss {info['final_loss']:.3f})" for stage, info in summary.stages.items()
    )
    click.echo(f"wrote {summary.out_dir}: {steps}; {summary.timing_s['total'] / 60:.1f} min in all")
