"""What each stage trains, the AdamW optimizer and the warmup + cosine learning-rate schedule (Table 6).

Stage 1 (``pretrain``) trains only the hybrid projector (W_s, W_v, W_share);
stage 2 (``sft``) the projector and the whole language model; ``train_vision``
adds the SigLIP tower (the paper keeps it frozen; a small encoder trained from
scratch needs it). Everything else gets ``requires_grad=False``, so it has no
gradients, no optimizer state and stays bitwise unchanged.

The schedule is a plain function of the step, so a checkpoint needs only the
step number to restore it (no pickled scheduler object).
"""

from __future__ import annotations

import math

import torch

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def trainable_modules(model, stage: str, train_vision: bool) -> dict:
    """Name -> module of what ``stage`` trains in an ``OmniCTForConditionalGeneration``."""
    modules = {"spatial_encoder.multi_modal_projector": model.spatial_encoder.multi_modal_projector}
    if stage == "sft":
        modules["language_model"] = model.language_model
    if train_vision:
        modules["spatial_encoder.vision_tower"] = model.spatial_encoder.vision_tower
    return modules


def set_trainable(model, stage: str, train_vision: bool) -> list[tuple[str, torch.nn.Parameter]]:
    """Freeze everything, unfreeze what the stage trains; returns the trainable ``(name, parameter)`` pairs."""
    model.requires_grad_(False)
    for module in trainable_modules(model, stage, train_vision).values():
        module.requires_grad_(True)
    return [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]


def build_optimizer(named_parameters, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; weight decay (if any) on matrices only, never biases or norms."""
    decay = [p for _, p in named_parameters if p.ndim >= 2]
    no_decay = [p for _, p in named_parameters if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=learning_rate, betas=ADAM_BETAS, eps=ADAM_EPS)


def optimizer_parameter_names(named_parameters) -> list[str]:
    """Parameter names in the order :func:`build_optimizer` numbers them (for saving its state by name)."""
    return [name for name, p in named_parameters if p.ndim >= 2] + [name for name, p in named_parameters if p.ndim < 2]


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """Steps of linear warmup: ``ceil(ratio x total)``, as the HF Trainer counts them."""
    return math.ceil(total_steps * warmup_ratio)


def learning_rate_at(step: int, total_steps: int, peak: float, warmup_ratio: float) -> float:
    """The learning rate of optimizer step ``step`` (0-based): linear warmup to ``peak``, then cosine to 0.

    Warmup starts at ``peak / warmup`` rather than 0, so no step is wasted at a zero rate.
    """
    warmup = warmup_steps(total_steps, warmup_ratio)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
