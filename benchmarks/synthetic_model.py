"""Random-weight OmniCT models and synthetic batches for the model benchmarks (no downloads, no tokenizer).

Timing a model needs its shapes, not its training: the full-size build is the
so400m-patch14-384 encoder (OmniCTConfig's default) with Qwen2.5-3B's text
config written out below, and prompts are token ids laid out exactly as
OmniCTProcessor lays them out (text, image placeholders, organ placeholders,
question), so the model's own placeholder count check guards the layout.
"""

from __future__ import annotations

import time

import torch

from omnict_cli.model import OmniCTConfig, OmniCTForConditionalGeneration
from omnict_cli.model.processing_omnict import PLACEHOLDER_ID_FIELDS, special_tokens

QWEN25_3B_TEXT = dict(
    model_type="qwen2",
    hidden_size=2048,
    intermediate_size=11008,
    num_hidden_layers=36,
    num_attention_heads=16,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=32768,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    hidden_act="silu",
    bos_token_id=151643,
    eos_token_id=151645,
)
"""Qwen/Qwen2.5-3B-Instruct's config.json (architecture fields; rope base 1e6 set below)."""

QWEN25_TOKENIZER_SIZE = 151665
"""Tokens in Qwen2.5's tokenizer; the 10 OmniCT prompt tokens get the ids after it (spare rows exist)."""

SMALL_VISION = dict(
    model_type="siglip_vision_model",
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    patch_size=14,
    image_size=378,
)
SMALL_TEXT = dict(
    model_type="qwen2",
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=512,
)
SMALL_SIZES = dict(volume_size=(32, 378, 378), slice_size=(378, 378), tpe_depth_dim=16, tpe_row_dim=16, tpe_col_dim=16)


def prompt_token_ids(first_id: int) -> dict[str, int]:
    """Token -> id of the 10 prompt tokens when they are added from ``first_id`` on, in tokenizer order."""
    return {token: first_id + i for i, token in enumerate(special_tokens())}


def placeholder_fields(first_id: int) -> dict[str, int]:
    """The OmniCTConfig placeholder-id fields for prompt tokens added from ``first_id`` on."""
    ids = prompt_token_ids(first_id)
    return {field: ids[token] for token, field in PLACEHOLDER_ID_FIELDS.items()}


def full_size_config() -> OmniCTConfig:
    """so400m-patch14-384 + Qwen2.5-3B, 32x384x384 volumes, SDPA attention."""
    config = OmniCTConfig(text_config=dict(QWEN25_3B_TEXT), **placeholder_fields(QWEN25_TOKENIZER_SIZE))
    _set_rope_base(config.text_config, 1_000_000.0)
    return config


def small_config() -> OmniCTConfig:
    """A narrow, 2-layer model with the paper's token layout: 27x27 patches per unit (378 px; so400m has
    384 px with 14 px patches, also 27), so a volume is 10 units x 81 tokens + 90 organ tokens."""
    ids = placeholder_fields(SMALL_TEXT["vocab_size"] - len(special_tokens()))
    return OmniCTConfig(vision_config=SMALL_VISION, text_config=SMALL_TEXT, **ids, **SMALL_SIZES)


def _set_rope_base(text_config, base: float) -> None:
    """RoPE base 1e6 as Qwen2.5; transformers 5 keeps it in ``rope_parameters`` (older: ``rope_theta``)."""
    parameters = getattr(text_config, "rope_parameters", None)
    if isinstance(parameters, dict):
        parameters["rope_theta"] = base
    else:
        text_config.rope_theta = base


def random_model(config: OmniCTConfig, device: str = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0):
    """An OmniCT with random weights, built directly on ``device`` in ``dtype``, in eval mode."""
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = OmniCTForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    return model.to(device=device, dtype=dtype).eval()


def synthetic_batch(
    config: OmniCTConfig,
    batch_size: int,
    kind: str = "volume",
    question_tokens: int = 24,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> dict:
    """Model inputs for ``batch_size`` studies of one kind, as the processor would build them.

    Every row: 8 chat-template tokens, the image block, a newline, the organ block, the question.
    All rows have the same length (no padding), as in a batch of same-kind studies.
    """
    generator = torch.Generator().manual_seed(seed)
    # Placeholders from the config itself: an imported model's tokenizer may hold them in another order.
    placeholders = {token: getattr(config, field) for token, field in PLACEHOLDER_ID_FIELDS.items()}
    ids = {**prompt_token_ids(_first_prompt_id(config)), **placeholders}
    units = config.units_per_volume if kind == "volume" else 1
    image, organ = ("<|image3d|>", "<|mask3d|>") if kind == "volume" else ("<|image2d|>", "<|mask2d|>")
    start, end = (
        ("<|image3d_start|>", "<|image3d_end|>") if kind == "volume" else ("<|image2d_start|>", "<|image2d_end|>")
    )
    text_ids = min(_first_prompt_id(config), 150000)

    def words(n):
        return torch.randint(0, text_ids, (n,), generator=generator).tolist()

    row = (
        words(8)
        + [ids[start]]
        + [ids[image]] * config.num_image_tokens(kind, units)
        + [ids[end]]
        + words(1)
        + [ids["<|organ_start|>"]]
        + [ids[organ]] * config.num_organ_tokens(kind, units)
        + [ids["<|organ_end|>"]]
        + words(question_tokens)
    )
    input_ids = torch.tensor([row] * batch_size, device=device)
    side = config.vision_config.image_size
    pixels = torch.rand((batch_size * units, 3, side, side), generator=generator) * 2 - 1
    return dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        pixel_values=pixels.to(device=device, dtype=dtype),
        num_units=torch.full((batch_size,), units, dtype=torch.long),
        image_kinds=[kind] * batch_size,
    )


def _first_prompt_id(config: OmniCTConfig) -> int:
    """The id of the first prompt token, recovered from a placeholder's id and its place in the order."""
    return config.slice_image_token_id - special_tokens().index("<|image2d|>")


def timed(function, synchronize=None, repeats: int = 1) -> float:
    """Best wall time of ``repeats`` calls, in seconds (synchronizing an accelerator around each)."""
    best = float("inf")
    for _ in range(repeats):
        if synchronize:
            synchronize()
        start = time.perf_counter()
        function()
        if synchronize:
            synchronize()
        best = min(best, time.perf_counter() - start)
    return best
