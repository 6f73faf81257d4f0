"""``omnict build-model``: compose an untrained OmniCT directory from local component checkpoints."""

from __future__ import annotations

import click

from omnict_cli.cli.main import main


@main.command("build-model")
@click.option(
    "--vision",
    "vision_dir",
    required=True,
    metavar="DIR|ORG/NAME[@REV]",
    help="SigLIP checkpoint: a directory or a hub id, e.g. google/siglip-so400m-patch14-384.",
)
@click.option(
    "--llm",
    "llm_dir",
    required=True,
    metavar="DIR|ORG/NAME[@REV]",
    help="Causal-LM checkpoint with its tokenizer: a directory or a hub id, e.g. Qwen/Qwen2.5-3B-Instruct.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory to write (config.json, *.safetensors, tokenizer).",
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default="bfloat16",
    show_default=True,
    help="Weight dtype of the written model.",
)
@click.option(
    "--volume-unshuffle",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="m of the m x m token unshuffle for volumes (Eq. 3): 3 gives 81 tokens per unit.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def build_model(vision_dir, llm_dir, out_dir, dtype, volume_unshuffle, overwrite):
    """Compose an untrained OmniCT from a SigLIP encoder and an LLM.

    Adds the prompt's special tokens to the LLM's tokenizer, grows its
    embeddings if needed, initialises the hybrid projector and writes a
    model directory every other command loads. Weights are read from
    safetensors only. A hub id is fetched into the Hugging Face cache
    (config, tokenizer and safetensors files only); with HF_HUB_OFFLINE=1
    it is read from the cache alone.

    \b
    Examples:
      omnict build-model --vision google/siglip-so400m-patch14-384 \\
          --llm Qwen/Qwen2.5-3B-Instruct --out ./omnict-3b-untrained
      omnict build-model --vision ./siglip-so400m-patch14-384 \\
          --llm ./Qwen2.5-3B-Instruct --out ./omnict-3b-untrained
    """
    from omnict_cli.errors import OmnictError
    from omnict_cli.model.build import build_model_dir
    from omnict_cli.model.sources import resolve_pretrained
    from omnict_cli.ui import stderr_console

    console = stderr_console()
    with console.status("building OmniCT from its components"):
        try:
            vision, llm = resolve_pretrained(vision_dir), resolve_pretrained(llm_dir)
            summary = build_model_dir(
                vision.path, llm.path, out_dir, dtype=dtype, overwrite=overwrite, volume_unshuffle=volume_unshuffle
            )
        except OmnictError as error:
            raise click.ClickException(error.one_line()) from error
    click.echo(
        f"wrote {summary.out_dir} ({summary.dtype}): vision {_millions(summary.vision_params)}, "
        f"language model {_millions(summary.language_params)}, projector "
        f"{_millions(summary.projector_params)} parameters; {summary.added_tokens} prompt tokens added, "
        f"vocabulary {summary.vocab_size}"
    )


def _millions(count: int) -> str:
    return f"{count / 1e6:,.2f}M"
