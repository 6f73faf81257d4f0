"""Forward and generate throughput of a small OmniCT on the CPU at batch 1, 4 and 8.

What it shows: whether batching studies pays off end to end (SigLIP units,
token unshuffle, OSE pooling, prompt prefill, KV-cached decoding) with the
real token layout of a 32-slice volume (10 units x 81 image tokens + 90 organ
tokens). The model is small (SigLIP 64 wide, 378 px; Qwen2 128 wide), so the
ratios speak about the pipeline's per-study overheads and batching, not about GPU kernels:
benchmarks/gpu_check.py measures the full-size model on a GPU.

    python benchmarks/model_cpu.py [--new-tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.synthetic_model import random_model, small_config, synthetic_batch, timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    config = small_config()
    model = random_model(config)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(
        f"small OmniCT, {params:.1f}M parameters, {torch.get_num_threads()} threads; "
        f"prompt {synthetic_batch(config, 1)['input_ids'].shape[1]} tokens per volume"
    )
    settings = dict(
        max_new_tokens=args.new_tokens,
        min_new_tokens=args.new_tokens,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
    )
    rows = []
    with torch.inference_mode():
        model.generate(**synthetic_batch(config, 1), **dict(settings, max_new_tokens=2, min_new_tokens=2))  # warm
        for batch_size in args.batches:
            batch = synthetic_batch(config, batch_size)
            forward_s = timed(lambda: model(**batch, logits_to_keep=1), repeats=args.repeats)  # noqa: B023 (called now)
            generate_s = timed(lambda: model.generate(**batch, **settings), repeats=args.repeats)  # noqa: B023 (called now)
            rows.append(
                (batch_size, batch_size / forward_s, batch_size / generate_s, batch_size * args.new_tokens / generate_s)
            )
    base_forward, base_generate = rows[0][1], rows[0][2]
    print(
        f"{'batch':>5} {'forward studies/s':>18} {'x batch 1':>9} {'generate studies/s':>19} {'x batch 1':>9} "
        f"{'new tokens/s':>12}"
    )
    for batch_size, forward, generate, tokens in rows:
        print(
            f"{batch_size:>5} {forward:>18.2f} {forward / base_forward:>9.2f} {generate:>19.2f} "
            f"{generate / base_generate:>9.2f} {tokens:>12.1f}"
        )


if __name__ == "__main__":
    main()
