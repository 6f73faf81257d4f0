"""Check an imported model against stock transformers models built from the very same source tensors.

The importer renames, sometimes casts, and re-writes every tensor, and it
writes a config whose sizes it inferred. If any of that is wrong, the
imported model still loads and talks nonsense. So after writing:

1. a stock ``Qwen2ForCausalLM`` is built from the source's LLM tensors and
   the imported model's language model must give the same next-token logits
   on a fixed prompt (max |diff| within a tolerance for the dtype);
2. a stock ``SiglipVisionModel`` from the source's (or ``--vision``'s) tensors
   must give the same hidden states, at the layer OmniCT reads, on a fixed image;
3. the projector must map fixed slice and volume inputs to finite LLM-width tokens.

Each stock model is built, used and dropped before the next, so peak memory
is one model at a time. What no test can show without the authors' code is
listed by :func:`unverifiable`, with the value omnict uses and its source.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch

VERIFY_PROMPT = "Findings: the lungs are clear. There is no pleural effusion. Impression:"
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


@dataclass(frozen=True)
class Check:
    """One verification: its name, whether it passed, and what was measured."""

    name: str
    passed: bool
    detail: str


def verify_import(model_dir, tokenizer, plan, read_llm: Callable, read_vision: Callable) -> list[Check]:
    """Run the three checks of the module notes on the imported directory ``model_dir``.

    ``plan`` carries ``text_config``, ``vision_config``, ``dtype`` and ``vision_feature_layer``;
    ``read_llm()`` / ``read_vision()`` return the source tensors under stock Qwen2 / SigLIP names.
    """
    from omnict_cli.model.modeling_omnict import OmniCTForConditionalGeneration

    prompt_ids = _prompt_ids(tokenizer, plan.text_config.vocab_size)
    pixels = _fixed_image(plan.vision_config.image_size, plan.dtype)
    stock_logits = _stock_logits(plan, read_llm(), prompt_ids)
    stock_features = _stock_features(plan, read_vision(), pixels)
    with quiet_transformers():
        model = OmniCTForConditionalGeneration.from_pretrained(model_dir, dtype=plan.dtype, local_files_only=True)
    model.eval()
    with torch.inference_mode():
        logits = model.language_model(input_ids=prompt_ids).logits[0, -1].float()
        hidden = model.spatial_encoder.vision_tower(pixel_values=pixels, output_hidden_states=True).hidden_states
        features = hidden[plan.vision_feature_layer].float()
        checks = [
            _equal("LLM next-token logits vs stock Qwen2ForCausalLM", stock_logits, logits, plan.dtype),
            _equal("vision features vs stock SiglipVisionModel", stock_features, features, plan.dtype),
            _projector_check(model, plan),
        ]
    del model
    gc.collect()
    return checks


@contextmanager
def quiet_transformers():
    """No progress bars or notes from transformers while loading: the importer prints its own lines."""
    from transformers.utils import logging

    from omnict_cli.ui import library_progress_bars_silenced

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        with library_progress_bars_silenced():
            yield
    finally:
        logging.set_verbosity(verbosity)


def _prompt_ids(tokenizer, vocab_size: int) -> torch.Tensor:
    ids = [i for i in tokenizer(VERIFY_PROMPT)["input_ids"] if i < vocab_size] or [0]
    return torch.tensor([ids])


def _fixed_image(side: int, dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(1, 3, side, side, generator=generator) * 2 - 1).to(dtype)


def _stock_logits(plan, state_dict: dict, prompt_ids) -> torch.Tensor:
    from transformers import Qwen2ForCausalLM

    model = _stock_model(Qwen2ForCausalLM, plan.text_config, state_dict)
    with torch.inference_mode():
        logits = model(input_ids=prompt_ids).logits[0, -1].float()
    del model, state_dict
    gc.collect()
    return logits


def _stock_features(plan, state_dict: dict, pixels) -> torch.Tensor:
    from transformers import SiglipVisionModel

    model = _stock_model(SiglipVisionModel, plan.vision_config, state_dict)
    with torch.inference_mode():
        features = model(pixel_values=pixels, output_hidden_states=True).hidden_states[plan.vision_feature_layer]
    del model, state_dict
    gc.collect()
    return features.float()


def _stock_model(model_class, config, state_dict: dict):
    """The stock class with exactly these tensors (built on the meta device: no time spent on random init)."""
    with torch.device("meta"):
        model = model_class(config)
    model.load_state_dict(state_dict, strict=False, assign=True)
    left = [name for name, p in model.named_parameters() if p.is_meta]
    if left and getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
        left = [name for name, p in model.named_parameters() if p.is_meta]
    if left:
        raise RuntimeError(f"the stock {model_class.__name__} lacks {left[:5]}")
    for module in model.modules():  # non-persistent buffers (rotary frequencies, position ids) from their code
        meta = [name for name, buffer in module.named_buffers(recurse=False) if buffer.is_meta]
        if meta:
            fresh = type(module)(config)  # rotary embedding and SigLIP embeddings take the model's config
            for name in meta:
                module.register_buffer(name, getattr(fresh, name), persistent=False)
    return (
        model.eval()
    )  # the tensors come in the import's dtype; float32 buffers stay float32, as from_pretrained keeps them


def _equal(name: str, expected: torch.Tensor, actual: torch.Tensor, dtype) -> Check:
    tolerance = TOLERANCE.get(dtype, 1e-2)
    if expected.shape != actual.shape:
        return Check(name, False, f"shapes differ: {tuple(expected.shape)} vs {tuple(actual.shape)}")
    difference = (expected - actual).abs().max().item()
    passed = difference <= tolerance and torch.isfinite(actual).all().item()
    return Check(name, passed, f"max |diff| {difference:.3g} (tolerance {tolerance:g} for {str(dtype)[6:]})")


def _projector_check(model, plan) -> Check:
    config = model.config
    generator = torch.Generator().manual_seed(1)
    projector = model.spatial_encoder.multi_modal_projector
    widths = []
    for kind in ("slice", "volume"):
        tokens = torch.randn(4, config.projector_input_dim(kind), generator=generator).to(plan.dtype)
        output = projector(tokens, kind)
        if not torch.isfinite(output).all() or output.shape[-1] != config.text_config.hidden_size:
            return Check(
                "projector output",
                False,
                f"{kind}: shape {tuple(output.shape)}, finite {bool(torch.isfinite(output).all())}",
            )
        widths.append(f"{kind} [{config.projector_input_dim(kind)}] -> [{output.shape[-1]}]")
    return Check("projector output finite, LLM width", True, ", ".join(widths))


def unverifiable(config) -> list[str]:
    """What only the authors' code could confirm: the value omnict uses and where it comes from in the paper."""
    from omnict_cli.model.modeling_omnict import SINUSOID_BASE

    return [
        f"units per {config.volume_size[0]}-slice volume: {config.units_per_volume} of {config.slices_per_unit} "
        "slices each (Sec. 2.1 VSC, unit i = slices 3i-2..3i; Appendix E resamples to 32 slices)",
        f"organ tokens: {config.num_organ_tokens('slice', 1)} per slice ({config.ose_slice_grid}x"
        f"{config.ose_slice_grid} pool), {config.num_organ_tokens('volume', config.units_per_volume)} per volume "
        f"({config.units_per_volume} units x {config.ose_volume_grid}x{config.ose_volume_grid}) (Table 13: "
        "m_2D = 81, m_3D = 90 is the chosen setting)",
        f"positional encoding: sinusoids of base {SINUSOID_BASE:g}, sines then cosines, over unit depth, token "
        "row and token column (Eq. 2 names sinusoidal codes but not their frequencies or order)",
        f"positional width split d_z, d_y, d_x = {config.tpe_depth_dim}, {config.tpe_row_dim}, {config.tpe_col_dim}"
        f" (the checkpoint shows only the sum {config.tpe_dim}; Eq. 2 concatenates the three)",
        f"token unshuffle order inside a folded token: row offset, column offset, channel (Eq. 3, m = "
        f"{config.volume_unshuffle} for volumes, {config.slice_unshuffle} for slices as Sec. 4.3's counts imply)",
        f"vision features from hidden layer {config.vision_feature_layer} of SigLIP (LLaVA's convention; "
        "the paper does not say)",
        f"projector activation {config.projector_hidden_act} (Eq. 4)",
    ]
