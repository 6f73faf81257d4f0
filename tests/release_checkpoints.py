"""Tiny release-style OmniCT checkpoints written in code, for the importer's tests (and anyone else's).

The authors' released checkpoints are LLaVA-style: a Qwen2 causal LM whose
tensor names sit under some prefix, an optional SigLIP vision tower, and the
paper's Eq. 4 projector (slice expert W_s, volume expert W_v with an m^2 times
wider input, shared output W_share) under names nobody outside the authors
knows. :func:`write_release_checkpoint` writes one such directory with random
weights, real transformers classes and tiny widths, in one of three naming
styles, so tests can import it without downloading anything.

Sizes: Qwen2 32 wide x 2 layers over the demo model's tokenizer (1502
tokens, the prompt tokens included); SigLIP 24 wide x 2 layers at 32 px with
8 px patches (4 x 4 patches); positional width 12 (4 + 4 + 4); volume
unshuffle m = 2, so W_s reads 36 features and W_v 144.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_SOURCE = REPO / "models" / "omnict-demo"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")

VISION_WIDTH = 24
POSITIONAL_WIDTH = 12  # d_z + d_y + d_x
VOLUME_UNSHUFFLE = 2  # m
SLICE_INPUT = VISION_WIDTH + POSITIONAL_WIDTH  # (d_v + d_pos) * 1^2
VOLUME_INPUT = SLICE_INPUT * VOLUME_UNSHUFFLE**2
VISION = dict(
    hidden_size=VISION_WIDTH,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    patch_size=8,
    image_size=32,
)

# Per naming style: where the LLM's Qwen2 names sit, where SigLIP's ``vision_model.*`` sits, the projector's
# three layers (slice expert, volume expert, shared output) and its hidden width, and the config's shape.
STYLES = {
    "mm_projector": dict(  # LLaVA(-NeXT) training code: Qwen2 names as they are, projector inside ``model.``
        llm=lambda name: name,
        vision_prefix="model.vision_tower.vision_tower.vision_model.",  # as transformers 4.x saved SigLIP
        projector=("model.mm_projector.slice_mlp.0", "model.mm_projector.volume_mlp.0", "model.mm_projector.out.2"),
        projector_hidden=40,
        tie=False,
        config="flat",
    ),
    "multi_modal_projector": dict(  # transformers' LlavaForConditionalGeneration (4.52+ names)
        llm=lambda name: name if name.startswith("lm_head") else "model.language_model." + name.removeprefix("model."),
        vision_prefix="model.vision_tower.",  # as transformers 5 saves SigLIP
        projector=(
            "model.multi_modal_projector.linear_slice",
            "model.multi_modal_projector.linear_volume",
            "model.multi_modal_projector.linear_2",
        ),
        projector_hidden=32,  # equal to the LLM width, so W_s, W_v and W_share all have 32 rows
        tie=True,
        config="nested",
    ),
    "projector": dict(  # custom code: the LLM under ``llm.``, the projector named after the paper
        llm=lambda name: "llm." + name,
        vision_prefix="vision_tower.vision_model.",
        projector=("projector.slice_expert", "projector.volume_expert", "projector.shared"),
        projector_hidden=48,
        tie=False,
        config="flat",
    ),
}


def llm_config(style: str = "mm_projector") -> Qwen2Config:
    """The tiny Qwen2 config of ``style`` (the styles differ in tied embeddings)."""
    return Qwen2Config(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1502,
        max_position_embeddings=512,
        tie_word_embeddings=STYLES[style]["tie"],
    )


def release_llm(style: str = "mm_projector", dtype: torch.dtype = torch.float32) -> Qwen2ForCausalLM:
    """The stock Qwen2 whose weights :func:`write_release_checkpoint` writes (same seed, same weights)."""
    torch.manual_seed(21)
    return Qwen2ForCausalLM(llm_config(style)).to(dtype).eval()


def release_vision(dtype: torch.dtype = torch.float32) -> SiglipVisionModel:
    """The stock SigLIP vision model (pooling head included, as SigLIP ships) written with ``with_vision``."""
    torch.manual_seed(22)
    return SiglipVisionModel(SiglipVisionConfig(**VISION)).to(dtype).eval()


def release_projector(style: str, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Eq. 4's six tensors under ``style``'s names: W_s [h, 36], W_v [h, 144], W_share [32, h] and biases."""
    generator = torch.Generator().manual_seed(23)
    hidden = STYLES[style]["projector_hidden"]
    slice_name, volume_name, shared_name = STYLES[style]["projector"]
    shapes = {slice_name: (hidden, SLICE_INPUT), volume_name: (hidden, VOLUME_INPUT), shared_name: (32, hidden)}
    tensors = {}
    for name, (rows, columns) in shapes.items():
        tensors[f"{name}.weight"] = (torch.randn(rows, columns, generator=generator) * 0.05).to(dtype)
        tensors[f"{name}.bias"] = (torch.randn(rows, generator=generator) * 0.01).to(dtype)
    return tensors


def release_tensors(style: str, dtype: torch.dtype, with_vision: bool) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint under its release-style name."""
    spec = STYLES[style]
    tensors = {}
    for name, tensor in release_llm(style, dtype).state_dict().items():
        if name == "lm_head.weight" and spec["tie"]:
            continue  # a tied head is saved once, as the embedding
        tensors[spec["llm"](name)] = tensor.contiguous()
    if with_vision:
        for name, tensor in release_vision(dtype).state_dict().items():
            tensors[spec["vision_prefix"] + name] = tensor.contiguous()
    tensors.update(release_projector(style, dtype))
    return tensors


def release_config(style: str, with_vision: bool) -> dict:
    """A config.json of the kind LLaVA-style code writes: Qwen2 keys at the top level, or nested."""
    text = llm_config(style).to_dict()
    extras = {
        "mm_vision_tower": "google/siglip-so400m-patch14-384",
        "mm_projector_type": "moe_mlp2x_gelu",
        "mm_hidden_size": VISION_WIDTH,
        "mm_vision_select_layer": -2,
    }
    if STYLES[style]["config"] == "nested":
        config = {"model_type": "omnict_llava", "architectures": ["OmniCTLlavaForConditionalGeneration"]}
        config["text_config"] = text
        if with_vision:
            config["vision_config"] = {"model_type": "siglip_vision_model", **VISION}
        return config
    return {**text, "architectures": ["OmniCTQwen2ForCausalLM"], "model_type": "omnict_qwen2", **extras}


def write_release_checkpoint(
    folder, style: str = "mm_projector", shards: int = 1, dtype: torch.dtype = torch.float32, with_vision: bool = False
) -> Path:
    """Write a release-style checkpoint into ``folder`` (created) and return it.

    Args:
        folder: the directory to write (config.json, safetensors, tokenizer files).
        style: "mm_projector", "multi_modal_projector" or "projector" (see ``STYLES``).
        shards: 1 writes ``model.safetensors``; more writes ``model-0000k-of-0000n.safetensors`` and the index.
        dtype: dtype of every tensor (float32 or bfloat16).
        with_vision: include a SigLIP vision tower; without it the importer needs ``--vision``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = release_tensors(style, dtype, with_vision)
    _write_weights(folder, tensors, shards)
    (folder / "config.json").write_text(json.dumps(release_config(style, with_vision), indent=2), encoding="utf-8")
    for name in TOKENIZER_FILES:
        shutil.copy(TOKENIZER_SOURCE / name, folder / name)
    return folder


def write_siglip_dir(folder, dtype: torch.dtype = torch.float32) -> Path:
    """A stock SigLIP vision model directory (what ``--vision`` points at) with :func:`release_vision`'s weights."""
    folder = Path(folder)
    release_vision(dtype).save_pretrained(folder)
    return folder


def _write_weights(folder: Path, tensors: dict, shards: int) -> None:
    names = list(tensors)
    if shards == 1:
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
        return
    groups = [names[index::shards] for index in range(shards)]
    weight_map = {}
    for number, group in enumerate(groups, start=1):
        file_name = f"model-{number:05d}-of-{shards:05d}.safetensors"
        save_file({name: tensors[name] for name in group}, folder / file_name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(group, file_name))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
