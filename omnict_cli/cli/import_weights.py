"""``omnict import-weights``: convert the authors' released OmniCT checkpoint into an omnict model directory."""

from __future__ import annotations

import sys

import click

from omnict_cli.cli.main import EXIT_USAGE, main


@main.command("import-weights")
@click.argument("source")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Model directory to create.")
@click.option(
    "--vision",
    default=None,
    help="SigLIP directory or hub id for the vision tower when SOURCE has none "
    "[default: google/siglip-so400m-patch14-384].",
)
@click.option(
    "--key-map",
    "key_map",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help='JSON regex renames applied to SOURCE\'s tensor names first, e.g. {"^backbone\\\\.": "model."}; '
    "an empty replacement drops a tensor.",
)
@click.option("--dry-run", is_flag=True, help="Print where every tensor would go and what was inferred; write nothing.")
@click.option("--no-verify", is_flag=True, help="Skip the comparison with stock Qwen2/SigLIP and the example ask.")
def import_weights(source, out_dir, vision, key_map, dry_run, no_verify):
    """Import the released OmniCT weights in SOURCE (a directory or hub id) into --out.

    Reads safetensors only (never a pickle, never code from SOURCE), places every
    tensor (LLM and SigLIP by name, the projector by shape), prints the table and
    what it inferred, checks the result against stock Qwen2 and SigLIP built from
    the same tensors and runs one ask on a bundled example before --out appears.
    Exit code 0 when imported, 2 when refused (one line per reason).

    \b
    Examples:
      omnict import-weights ./OmniCT-3B --out ./omnict-3b
      omnict import-weights ./OmniCT-3B --out ./omnict-3b --vision ./siglip-so400m-patch14-384
      omnict import-weights ./custom-release --out x --dry-run --key-map renames.json
    """
    from omnict_cli.model.release_import import ImportRefused, import_release
    from omnict_cli.ui import library_progress_bars_silenced, stderr_console

    console = stderr_console()
    checks = []
    if not (dry_run or no_verify):
        from omnict_cli.run.import_check import ask_on_example

        checks = [ask_on_example]
    try:
        with library_progress_bars_silenced():  # the table and the checks are this command's output
            import_release(
                source,
                out_dir,
                vision=vision,
                key_map=key_map,
                dry_run=dry_run,
                verify=not no_verify,
                echo=click.echo,
                extra_checks=checks,
            )
    except ImportRefused as error:
        where = f"{error.path}: " if error.path else ""
        for reason in error.reasons:
            console.print(f"refused: {where}{reason}", highlight=False, markup=False, soft_wrap=True)
        if error.hint:
            console.print(error.hint, highlight=False, markup=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)
