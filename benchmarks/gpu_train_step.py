"""A stage-2 training step of full-size OmniCT (so400m-patch14-384 + Qwen2.5-3B) in bf16: time and peak memory.

What ``omnict train --stage sft`` does per optimizer step on a GPU, with
random weights of the real shapes (no downloads): the projector and the LLM
train, the vision tower is frozen; float32 master weights with bf16 autocast
(accelerate's ``mixed_precision="bf16"``), AdamW, clipping at 1.0, the loss
on answer tokens only (the trainer's own :func:`answer_loss_sum`). A study is
a 32x384x384 volume (10 units x 81 image tokens + 90 organ tokens) plus a
question and a 256-token answer. Measured twice: without and with gradient
checkpointing (``--gradient-checkpointing``).

``benchmarks/gpu_check.py`` calls :func:`run_train_step_check` when a GPU is
lent; alone:

    python benchmarks/gpu_train_step.py [--batch 1] [--json out.json]
    python benchmarks/gpu_train_step.py --small   # a tiny model on the CPU, to check the script itself
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.synthetic_model import full_size_config, random_model, small_config, synthetic_batch  # noqa: E402
from omnict_cli.model.processing_omnict import special_tokens  # noqa: E402
from omnict_cli.training.optim import build_optimizer, set_trainable  # noqa: E402
from omnict_cli.training.trainer import answer_loss_sum, enable_activation_checkpointing  # noqa: E402

DEFAULTS = {"small": False, "train_batch": 1, "answer_tokens": 256, "train_steps": 3}
"""Attributes :func:`run_train_step_check` reads from ``args`` (any namespace; missing ones take these values)."""


def run_train_step_check(args) -> dict:
    """Time stage-2 steps without and with gradient checkpointing; returns a JSON-ready dict.

    ``args`` may be gpu_check's namespace: ``small``, ``train_batch``, ``answer_tokens`` and
    ``train_steps`` are read when present (see :data:`DEFAULTS`).
    """
    settings = {name: getattr(args, name, default) for name, default in DEFAULTS.items()}
    device = "cpu" if settings["small"] else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device; use --small to check the script on a CPU")
    config = small_config() if settings["small"] else full_size_config()
    results = {
        "model": "small (CPU check)" if settings["small"] else "so400m + Qwen2.5-3B",
        "precision": "fp32" if device == "cpu" else "bf16 autocast, fp32 master weights + AdamW",
        **{k: settings[k] for k in ("train_batch", "answer_tokens", "train_steps")},
        "runs": [],
    }
    for checkpointing in (False, True):
        run = measure_steps(config, device, settings, checkpointing)
        if device == "cuda":
            torch.cuda.empty_cache()  # the first run's model is gone: give its memory back before the second
        print(json.dumps({"train_step": run}))
        results["runs"].append(run)
    plain, recomputed = results["runs"]
    results["checkpointing_time_ratio"] = round(recomputed["step_s"] / plain["step_s"], 2)
    if "peak_gpu_memory_gib" in plain:
        results["checkpointing_memory_ratio"] = round(
            recomputed["peak_gpu_memory_gib"] / plain["peak_gpu_memory_gib"], 2
        )
    return results


def training_batch(config, batch_size: int, answer_tokens: int, device: str, seed: int = 0) -> dict:
    """A synthetic volume batch with ``answer_tokens`` random answer ids appended and labelled."""
    batch = synthetic_batch(config, batch_size, device=device, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    # ordinary text ids only: the 10 prompt tokens follow the text vocabulary, and a placeholder id in
    # the answer would break the model's placeholder count check
    first_prompt_id = config.slice_image_token_id - special_tokens().index("<|image2d|>")
    answers = torch.randint(0, min(first_prompt_id, 150000), (batch_size, answer_tokens), generator=generator).to(
        device
    )
    prompt = batch["input_ids"]
    batch["input_ids"] = torch.cat([prompt, answers], dim=1)
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    batch["labels"] = torch.cat([torch.full_like(prompt, -100), answers], dim=1)
    return batch


def measure_steps(config, device: str, settings: dict, checkpointing: bool) -> dict:
    """Build the model, take one warm-up step, then time ``train_steps`` steps; median time, peak memory."""
    start = time.perf_counter()
    model = random_model(config, device, torch.float32).train()
    named = set_trainable(model, "sft", train_vision=False)
    if checkpointing:
        enable_activation_checkpointing(model)
    optimizer = build_optimizer(named, 5e-5, 0.0)
    parameters = [p for _, p in named]
    batch = training_batch(config, settings["train_batch"], settings["answer_tokens"], device)
    answer_tokens = int((batch["labels"][:, 1:] != -100).sum())
    built_s = time.perf_counter() - start

    def step() -> float:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = answer_loss_sum(model, batch, device) / answer_tokens
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    step()  # warm-up: kernels chosen, AdamW state allocated
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for _ in range(settings["train_steps"]):
        started = time.perf_counter()
        losses.append(step())
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    tokens = batch["input_ids"].numel()
    run = {
        "gradient_checkpointing": checkpointing,
        "build_s": round(built_s, 1),
        "trainable_parameters_b": round(sum(p.numel() for p in parameters) / 1e9, 3),
        "tokens_per_study": batch["input_ids"].shape[1],
        "step_s": round(statistics.median(times), 3),
        "tokens_per_s": round(tokens / statistics.median(times), 1),
        "studies_per_s": round(settings["train_batch"] / statistics.median(times), 3),
        "losses": [round(value, 4) for value in losses],
    }
    if device == "cuda":
        run["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return run  # model and optimizer go with this frame; the caller empties the CUDA cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="tiny model on the CPU (checks the script)")
    parser.add_argument(
        "--batch", dest="train_batch", type=int, default=DEFAULTS["train_batch"], help="studies per step"
    )
    parser.add_argument("--answer-tokens", type=int, default=DEFAULTS["answer_tokens"])
    parser.add_argument(
        "--steps",
        dest="train_steps",
        type=int,
        default=DEFAULTS["train_steps"],
        help="timed steps after one warm-up step",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    try:
        results = run_train_step_check(args)
    except RuntimeError as error:
        sys.exit(str(error))
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
