"""Full-size OmniCT on one GPU: studies/s, generated tokens/s and peak memory at batch 1, 8, 16 (bf16).

Builds a random-weight OmniCT with the real shapes, so400m-patch14-384 +
Qwen2.5-3B (no downloads), feeds 32x384x384 volumes (10 units x 81 image
tokens + 90 organ tokens per study) and generates exactly 256 new tokens per
study with SDPA attention. Then, unless ``--skip-device-map``, it saves the
model and reloads it with ``device_map="auto"`` capped so it must span the
GPU and the CPU (as a 7B model on a small card would), and checks that the
next-token logits match the single-GPU model.

Needs only torch, transformers and accelerate (no network); run it from the
repository root:

    python benchmarks/gpu_check.py [--json results.json]
    python benchmarks/gpu_check.py --small   # a tiny model on the CPU, to check the script itself
    python benchmarks/gpu_check.py --model Alibaba-DAMO-Academy/OmniCT-3B --skip-train

``--model`` times a real model instead of the random 3B one: an omnict
directory, a hub id, or a release checkpoint (imported on first use into
omnict's cache, as ``omnict report --model`` does). The inputs stay
synthetic (random pixels and text, exactly ``--new-tokens`` generated), so
the numbers compare with the random model's; the training step always uses
the synthetic 3B shapes.

Then (unless ``--skip-pipeline``) the whole ``report`` engine runs over 64
phantoms at 32x384x384 with this model at each batch size (studies/s, GPU idle
fraction; ``benchmarks/gpu_pipeline_check.py``), and (unless ``--skip-train``)
one stage-2 training step of the same shapes in bf16, without and with
gradient checkpointing (``benchmarks/gpu_train_step.py``).

Designed to finish in about 5 minutes on one H100/H200.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.synthetic_model import full_size_config, random_model, small_config, synthetic_batch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="tiny model on the CPU (checks the script)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--skip-device-map", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true", help="skip the whole report engine on phantoms")
    parser.add_argument("--pipeline-studies", type=int, default=64)
    parser.add_argument("--skip-train", action="store_true", help="skip the stage-2 training step")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--model",
        metavar="DIR|ORG/NAME[@REV]",
        help="time this model (omnict directory, hub id or release checkpoint) instead of random weights",
    )
    args = parser.parse_args()
    device = "cpu" if args.small else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device; use --small to check the script on a CPU")
    dtype = torch.float32 if args.small else torch.bfloat16
    results = {"environment": environment(device)}
    print(json.dumps(results["environment"]))

    start = time.perf_counter()
    processor = None  # random weights: the pipeline check makes a word tokenizer
    if args.model:
        model, processor, results["model"] = load_model(args.model, device, dtype)
        config = model.config
    else:
        config = small_config() if args.small else full_size_config()
        model = random_model(config, device, dtype)
    results["build_s"] = round(time.perf_counter() - start, 1)
    results["parameters_b"] = round(sum(p.numel() for p in model.parameters()) / 1e9, 3)
    results["attention"] = model.language_model.config._attn_implementation
    print(
        f"built {results['parameters_b']}B parameters in {results['build_s']} s, attention "
        f"{results['attention']}, prompt {synthetic_batch(config, 1)['input_ids'].shape[1]} tokens per study"
    )

    results["batches"] = [measure(model, config, b, args.new_tokens, device, dtype) for b in args.batches]
    if not args.skip_device_map:
        results["device_map"] = check_device_map(model, config, device, dtype, small=args.small)
    if not args.skip_pipeline:
        from benchmarks.gpu_pipeline_check import run_pipeline_check

        size = (32, 378, 378) if args.small else (32, 384, 384)  # the model's own grid
        studies = min(args.pipeline_studies, 8) if args.small else args.pipeline_studies
        results["pipeline"] = run_pipeline_check(
            model,
            config,
            device,
            batches=args.batches,
            studies=studies,
            new_tokens=args.new_tokens,
            size=size,
            processor=processor,
        )
    if not args.skip_train:
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
        from benchmarks.gpu_train_step import run_train_step_check

        results["train_step"] = run_train_step_check(args)
    results["total_s"] = round(time.perf_counter() - start, 1)
    print(f"total {results['total_s']} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def load_model(value: str, device: str, dtype):
    """The model and processor ``omnict report --model VALUE`` would run, on ``device`` in ``dtype``, and where
    they came from; exits in one line when there is no such model."""
    from omnict_cli.errors import OmnictError
    from omnict_cli.model import OmniCTForConditionalGeneration, OmniCTProcessor
    from omnict_cli.run.engine import resolve_model

    try:
        source = resolve_model(value)
    except OmnictError as error:
        sys.exit(error.one_line())
    model = OmniCTForConditionalGeneration.from_pretrained(
        source.path, dtype=dtype, local_files_only=True, use_safetensors=True
    )
    model.generation_config.eos_token_id = None  # every study generates exactly --new-tokens
    processor = OmniCTProcessor.from_pretrained(source.path)
    return model.to(device).eval(), processor, {"source": source.to_dict(), "path": str(source.path)}


def environment(device: str) -> dict:
    import accelerate
    import transformers

    info = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "device": device,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(model, config, batch_size: int, new_tokens: int, device: str, dtype) -> dict:
    """Prefill (encode + prompt) time and a full 256-token generation for one batch size."""
    batch = synthetic_batch(config, batch_size, device=device, dtype=dtype)
    settings = dict(
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0
    )
    with torch.inference_mode():
        model.generate(**batch, **dict(settings, max_new_tokens=2, min_new_tokens=2))  # warm-up
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        synchronize(device)
        start = time.perf_counter()
        model(**batch, logits_to_keep=1)
        synchronize(device)
        prefill_s = time.perf_counter() - start
        start = time.perf_counter()
        generated = model.generate(**batch, **settings)
        synchronize(device)
        generate_s = time.perf_counter() - start
    produced = generated.shape[1] - batch["input_ids"].shape[1]
    assert produced == new_tokens, f"generated {produced} tokens, expected {new_tokens}"
    row = {
        "batch": batch_size,
        "prefill_s": round(prefill_s, 3),
        "generate_s": round(generate_s, 2),
        "studies_per_s": round(batch_size / generate_s, 3),
        "generated_tokens_per_s": round(batch_size * new_tokens / generate_s, 1),
    }
    if device == "cuda":
        row["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(row))
    return row


def check_device_map(model, config, device: str, dtype, small: bool) -> dict:
    """Reload with ``device_map="auto"`` split across devices; next-token logits must match."""
    batch = synthetic_batch(config, 1, device=device, dtype=dtype)
    with torch.inference_mode():
        reference = model(**batch, logits_to_keep=1).logits.float().cpu()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        model.save_pretrained(folder)
        saved_s = time.perf_counter() - start
        # A cap below the model's size forces a split: GPU + CPU here, CPU + disk with --small.
        max_memory = {"cpu": "300KB"} if small else {0: "3GiB", "cpu": "200GiB"}
        split = (
            type(model)
            .from_pretrained(
                folder,
                device_map="auto",
                max_memory=max_memory,
                dtype=dtype,
                offload_folder=str(Path(folder) / "offload"),
            )
            .eval()
        )
        devices = sorted({str(d) for d in split.hf_device_map.values()})
        with torch.inference_mode():
            logits = split(**batch, logits_to_keep=1).logits.float().cpu()
        del split
    difference = (logits - reference).abs().max().item()
    same_token = bool(torch.equal(logits.argmax(-1), reference.argmax(-1)))
    result = {
        "devices": devices,
        "save_s": round(saved_s, 1),
        "max_abs_logit_difference": round(difference, 4),
        "same_next_token": same_token,
    }
    print(json.dumps({"device_map": result}))
    return result


if __name__ == "__main__":
    main()
