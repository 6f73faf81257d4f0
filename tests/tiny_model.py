"""A tiny OmniCT model directory built in code (no downloads), for pipeline tests.

SigLIP 32 wide x 2 layers at 42 px and a Qwen2 32 wide x 2 layers with a
word-level tokenizer, composed by ``build_model_dir`` as ``omnict build-model``
does; random weights, so its text is noise but deterministic.
"""

from __future__ import annotations

from pathlib import Path

from omnict_cli.model.build import build_model_dir
from tests.test_model_build import save_llm, save_siglip


def make_tiny_model_dir(root: Path, name: str = "tiny-omnict") -> Path:
    """Build (once per ``root``) and return ``root / name``."""
    out = Path(root) / name
    if (out / "config.json").exists():
        return out
    components = Path(root) / f"{name}-components"
    vision, llm = save_siglip(components / "siglip"), save_llm(components / "qwen")
    import torch

    torch.manual_seed(1234)
    build_model_dir(vision, llm, out, dtype="float32", volume_unshuffle_factor=3)
    return out
