"""Every setting of one training run, with the paper's stage defaults (Table 6).

One :class:`TrainConfig` is all :func:`omnict_cli.training.trainer.train` takes.
``None`` for ``epochs`` or ``learning_rate`` means the stage default:

============  ===================  ===========  ======
stage         trains               lr           epochs
============  ===================  ===========  ======
``pretrain``  hybrid projector     2e-4         2
``sft``       projector + LLM      5e-5         1
============  ===================  ===========  ======

AdamW, weight decay 0, warmup ratio 0.03 then cosine decay, max length 2048;
the paper's global batch of 256 is ``per_device_batch_size x processes x
gradient_accumulation``. No torch import here, so the CLI can validate options
before loading anything heavy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

STAGES = ("pretrain", "sft")
SEGMENTERS = ("builtin", "auto", "totalsegmentator", "none")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")

STAGE_LEARNING_RATE = {"pretrain": 2e-4, "sft": 5e-5}
STAGE_EPOCHS = {"pretrain": 2, "sft": 1}


class TrainConfigError(ValueError):
    """A setting no run could honour (raised by :class:`TrainConfig` itself)."""


@dataclass
class TrainConfig:
    """One training run.

    Attributes:
        stage: ``"pretrain"`` (stage 1: projector only) or ``"sft"`` (stage 2: projector + LLM).
        data: JSONL file of chat rows (``{"messages": [...], "image": ...}``).
        model: OmniCT model directory to start from (``build-model`` output or a stage-1 result).
        out: output directory: final model, ``checkpoints/step-<N>/``, ``metrics.jsonl``.
        epochs: passes over the data; None = stage default (2 pretrain, 1 sft).
        learning_rate: peak AdamW learning rate; None = stage default (2e-4 pretrain, 5e-5 sft).
        per_device_batch_size: rows per forward pass on each process.
        gradient_accumulation: forward passes per optimizer step.
        max_length: tokens per row; answers are cut to fit, prompts never.
        warmup_ratio: share of the optimizer steps with a linear warmup, then cosine decay to 0.
        weight_decay: AdamW weight decay (matrices only; biases and norms never decay).
        train_vision: also train the vision tower (for small encoders trained from scratch).
        seed: seeds the data order, the RNGs and nothing else.
        save_every_steps: checkpoint every N optimizer steps; 0 = at the end of each epoch only.
        resume: continue from the last checkpoint in ``out/checkpoints`` (same step, same next batch).
        max_steps: stop after this many optimizer steps (the schedule spans them); None = all epochs.
        tensor_cache_dir: where preprocessed studies are kept; None = beside the mask cache.
        mask_cache_dir: organ mask cache; None = the mask cache default (``$OMNICT_CACHE_DIR``, ...).
        segmenter: organ masks from ``builtin``, ``auto``, ``totalsegmentator``, or ``none`` (whole image).
        num_workers: DataLoader worker processes reading the tensor cache.
        log_every_steps: write a ``metrics.jsonl`` line every N optimizer steps.
        max_grad_norm: gradient clipping (LLaVA's and the HF Trainer's 1.0); 0 disables it.
        gradient_checkpointing: recompute activations in the backward pass (less memory, ~30% slower).
        mixed_precision: ``auto`` (bf16 on a GPU that has it, fp32 on CPU), ``no``, ``bf16`` or ``fp16``.
        keep_checkpoints: keep only the newest N checkpoints; None keeps all.
        allow_non_ct: load MR/PET DICOM series instead of leaving their rows out.
    """

    stage: str
    data: Path
    model: Path
    out: Path
    epochs: int | None = None
    learning_rate: float | None = None
    per_device_batch_size: int = 1
    gradient_accumulation: int = 1
    max_length: int = 2048
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    train_vision: bool = False
    seed: int = 0
    save_every_steps: int = 0
    resume: bool = False
    max_steps: int | None = None
    tensor_cache_dir: Path | None = None
    mask_cache_dir: Path | None = None
    segmenter: str = "builtin"
    num_workers: int = 0
    log_every_steps: int = 1
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"
    keep_checkpoints: int | None = None
    allow_non_ct: bool = False

    def __post_init__(self):
        for name in ("data", "model", "out", "tensor_cache_dir", "mask_cache_dir"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value).expanduser())
        self._check_choices()
        self._check_numbers()

    def _check_choices(self) -> None:
        for name, allowed in (("stage", STAGES), ("segmenter", SEGMENTERS), ("mixed_precision", MIXED_PRECISION)):
            if getattr(self, name) not in allowed:
                raise TrainConfigError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")

    def _check_numbers(self) -> None:
        at_least = {
            "per_device_batch_size": 1,
            "gradient_accumulation": 1,
            "max_length": 16,
            "log_every_steps": 1,
            "save_every_steps": 0,
            "num_workers": 0,
        }
        optional_at_least = {"epochs": 1, "max_steps": 1, "keep_checkpoints": 1}
        for name, low in list(at_least.items()) + list(optional_at_least.items()):
            value = getattr(self, name)
            if value is None and name in optional_at_least:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise TrainConfigError(f"{name} must be a whole number >= {low}; got {value!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise TrainConfigError(f"learning_rate must be > 0; got {self.learning_rate!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise TrainConfigError(f"warmup_ratio must be in [0, 1); got {self.warmup_ratio!r}")
        for name in ("weight_decay", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise TrainConfigError(f"{name} must be >= 0; got {getattr(self, name)!r}")

    @property
    def resolved_epochs(self) -> int:
        """``epochs``, or the stage default (2 for pretrain, 1 for sft)."""
        return self.epochs if self.epochs is not None else STAGE_EPOCHS[self.stage]

    @property
    def resolved_learning_rate(self) -> float:
        """``learning_rate``, or the stage default (2e-4 for pretrain, 5e-5 for sft)."""
        return self.learning_rate if self.learning_rate is not None else STAGE_LEARNING_RATE[self.stage]

    def to_dict(self) -> dict:
        """JSON-ready values (paths as strings), stage defaults filled in; saved with every checkpoint."""
        values = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            values[item.name] = str(value) if isinstance(value, Path) else value
        values["epochs"] = self.resolved_epochs
        values["learning_rate"] = self.resolved_learning_rate
        return values


RESUME_MUST_MATCH = (
    "stage",
    "data",
    "per_device_batch_size",
    "gradient_accumulation",
    "max_length",
    "seed",
    "epochs",
    "max_steps",
    "learning_rate",
    "warmup_ratio",
    "weight_decay",
    "train_vision",
    "segmenter",
)
"""Settings a resumed run must share with its checkpoint, or the data order or schedule would differ."""


def resume_mismatches(config: TrainConfig, saved: dict) -> list[str]:
    """``"name: saved -> now"`` for each setting in :data:`RESUME_MUST_MATCH` that changed."""
    now = config.to_dict()
    return [
        f"{name}: {saved.get(name)!r} -> {now[name]!r}" for name in RESUME_MUST_MATCH if saved.get(name) != now[name]
    ]
