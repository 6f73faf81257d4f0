"""Time and peak memory of ``omnict import-weights`` on a 3B-shape release, against load-everything-and-save.

The script writes a synthetic release-style checkpoint of OmniCT-3B's shape
(Qwen2.5-3B's LLM under LLaVA names, the Eq. 4 projector with m = 3 and a
positional width of 192, random bf16 weights, about 6.2 GB in two shards)
and a SigLIP-so400m vision-model directory (random float32, 1.7 GB, as the
hub ships it), then runs, each in a fresh child process:

- ``import``: ``import_release(release, out, vision=siglip, verify=False)``, the
  library call behind ``omnict import-weights --no-verify``;
- ``baseline``: ``safetensors.torch.load_file`` on every file, the vision
  tensors cast to bf16, one ``save_file`` of everything (fsynced, as the
  importer fsyncs).

Peak memory is each child's ``ru_maxrss`` from ``os.wait4``; time is the
child's wall time, Python start and imports included. Targets (issue 21):
import peak memory <= 0.25x the baseline's, time <= 1.5x. Every file is
deleted at the end unless ``--keep``.

Usage: ``python benchmarks/import_weights.py [--workdir /tmp/omnict-import-bench] [--runs 1] [--keep]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: `benchmarks` and `omnict_cli` from this checkout
NEEDED_BYTES = 30 * 1000**3  # release 6.2 GB + SigLIP 1.7 GB + two outputs of 7 GB, with room to spare
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
POSITIONAL_WIDTH = 192  # OmniCTConfig's default 64 + 64 + 64
VOLUME_UNSHUFFLE = 3


def write_release(folder: Path, layers: int) -> None:
    """The 3B-shape release: Qwen2 names as LLaVA saves them, projector under ``model.mm_projector``."""
    import torch

    from benchmarks.synthetic_model import QWEN25_3B_TEXT
    from omnict_cli.model.configuration_omnict import SO400M_VISION_DEFAULTS
    from omnict_cli.model.safetensors_writer import write_model_files

    text = {**QWEN25_3B_TEXT, "num_hidden_layers": layers}
    hidden, inner, kv = text["hidden_size"], text["intermediate_size"], 2 * 128
    slice_input = SO400M_VISION_DEFAULTS["hidden_size"] + POSITIONAL_WIDTH
    shapes = {"model.embed_tokens.weight": (text["vocab_size"], hidden)}
    for layer in range(text["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        for name, shape in {
            "self_attn.q_proj.weight": (hidden, hidden),
            "self_attn.q_proj.bias": (hidden,),
            "self_attn.k_proj.weight": (kv, hidden),
            "self_attn.k_proj.bias": (kv,),
            "self_attn.v_proj.weight": (kv, hidden),
            "self_attn.v_proj.bias": (kv,),
            "self_attn.o_proj.weight": (hidden, hidden),
            "mlp.gate_proj.weight": (inner, hidden),
            "mlp.up_proj.weight": (inner, hidden),
            "mlp.down_proj.weight": (hidden, inner),
            "input_layernorm.weight": (hidden,),
            "post_attention_layernorm.weight": (hidden,),
        }.items():
            shapes[prefix + name] = shape
    shapes["model.norm.weight"] = (hidden,)
    for name, shape in {
        "model.mm_projector.slice.0": (hidden, slice_input),
        "model.mm_projector.volume.0": (hidden, slice_input * VOLUME_UNSHUFFLE**2),
        "model.mm_projector.shared.2": (hidden, hidden),
    }.items():
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = shape, shape[:1]
    folder.mkdir(parents=True)
    write_model_files(folder, [_random(name, shape, torch.bfloat16) for name, shape in shapes.items()])
    config = {**text, "architectures": ["OmniCTQwen2ForCausalLM"], "model_type": "omnict_qwen2"}
    config.update(rope_theta=1e6, mm_vision_tower="google/siglip-so400m-patch14-384", mm_vision_select_layer=-2)
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    for name in TOKENIZER_FILES:  # a small tokenizer with the prompt tokens; ids fit the 151936 rows
        shutil.copy(REPO / "models" / "omnict-demo" / name, folder / name)


def write_siglip(folder: Path) -> None:
    """A SigLIP-so400m vision model directory, float32 as google ships it (names as transformers 4.x wrote them)."""
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from omnict_cli.model.configuration_omnict import SO400M_VISION_DEFAULTS
    from omnict_cli.model.safetensors_writer import write_model_files

    config = SiglipVisionConfig(**SO400M_VISION_DEFAULTS)
    with torch.device("meta"):
        shapes = {name: tuple(t.shape) for name, t in SiglipVisionModel(config).state_dict().items()}
    folder.mkdir(parents=True)
    tensors = [_random(f"vision_model.{name}", shape, torch.float32) for name, shape in shapes.items()]
    write_model_files(folder, tensors)
    config.save_pretrained(folder)


def _random(name: str, shape: tuple, dtype):
    """A tensor to write whose random bytes are made only when written (memory stays at one tensor)."""
    import math

    import torch

    from omnict_cli.model.safetensors_writer import TensorToWrite

    code = {torch.bfloat16: "BF16", torch.float32: "F32"}[dtype]
    nbytes = math.prod(shape) * (2 if dtype == torch.bfloat16 else 4)

    def write(stream):
        tensor = (torch.randn(shape, dtype=torch.float32) * 0.02).to(dtype)
        stream.write(tensor.reshape(-1).view(torch.uint8).numpy().data)

    return TensorToWrite(name, code, shape, nbytes, write)


# ---- the two children -----------------------------------------------------------------------------


def child_import(release: Path, siglip: Path, out: Path) -> None:
    from omnict_cli.model.release_import import import_release

    import_release(release, out, vision=siglip, verify=False, echo=lambda line: None)


def child_import_verified(release: Path, siglip: Path, out: Path) -> None:
    """The import with its stock-model comparisons (``omnict import-weights`` without the example ask)."""
    from omnict_cli.model.release_import import import_release

    report = import_release(release, out, vision=siglip, verify=True, echo=lambda line: None)
    for check in report.checks:
        print(f"  {check.name}: {'ok' if check.passed else 'FAILED'}, {check.detail}")


def child_baseline(release: Path, siglip: Path, out: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    tensors = {}
    for path in sorted(release.glob("*.safetensors")):
        tensors.update(load_file(path))
    for path in sorted(siglip.glob("*.safetensors")):
        tensors.update({f"vision.{k}": v.to(torch.bfloat16) for k, v in load_file(path).items()})
    out.mkdir()
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    with open(out / "model.safetensors", "rb") as stream:
        os.fsync(stream.fileno())


def run_child(method: str, release: Path, siglip: Path, out: Path) -> tuple[float, int]:
    """``(wall seconds, peak RSS bytes)`` of one method in a fresh process."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, __file__, "--child", method, str(release), str(siglip), str(out)]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{method} failed with status {status}")
    shutil.rmtree(out, ignore_errors=True)
    return seconds, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/omnict-import-bench"))
    parser.add_argument("--runs", type=int, default=1, help="runs of each method, taking turns")
    parser.add_argument("--layers", type=int, default=36, help="LLM layers (36 is Qwen2.5-3B; fewer for a quick try)")
    parser.add_argument("--verify", action="store_true", help="also time one import with its verification (info)")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic checkpoints for another run")
    parser.add_argument("--child", nargs=4, metavar=("METHOD", "RELEASE", "SIGLIP", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, *paths = args.child
        if method == "write":
            write_release(Path(paths[0]), int(paths[2]))
            write_siglip(Path(paths[1]))
        else:
            children = {"import": child_import, "baseline": child_baseline, "import-verified": child_import_verified}
            children[method](*map(Path, paths))
        return
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(work).free
    if free < NEEDED_BYTES and not (work / "release").exists():
        raise SystemExit(f"{work}: {free / 1e9:.1f} GB free, the benchmark needs {NEEDED_BYTES / 1e9:.0f} GB")
    try:
        _measure(work, args.runs, args.layers)
        if args.verify:
            seconds, peak = run_child("import-verified", work / "release", work / "siglip", work / "out-verified")
            print(f"import with verification (info): {seconds:.1f} s, peak RSS {peak / 1e9:.2f} GB")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _measure(work: Path, runs: int, layers: int) -> None:
    release, siglip = work / "release", work / "siglip"
    if not release.exists():
        # In a child: a forked process starts with its parent's peak RSS as its own (Linux keeps the
        # high-water mark across exec), so this process must stay small for the children's peaks to be theirs.
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--child", "write", str(release), str(siglip), str(layers)], check=True
        )
        print(f"wrote the synthetic checkpoints in {time.perf_counter() - started:.0f} s")
    for folder in (release, siglip):
        size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
        print(f"{folder}: {size / 1e9:.2f} GB of safetensors")
    results = {"import": [], "baseline": []}
    for _ in range(runs):
        for method in results:
            results[method].append(run_child(method, release, siglip, work / f"out-{method}"))
            seconds, peak = results[method][-1]
            print(f"{method}: {seconds:.1f} s, peak RSS {peak / 1e9:.2f} GB")
    best = {method: (min(s for s, _ in runs_), max(p for _, p in runs_)) for method, runs_ in results.items()}
    time_ratio = best["import"][0] / best["baseline"][0]
    memory_ratio = best["import"][1] / best["baseline"][1]
    print(f"time import / baseline: {time_ratio:.2f}x (target <= 1.5x): {'PASS' if time_ratio <= 1.5 else 'FAIL'}")
    print(
        f"peak memory import / baseline: {memory_ratio:.3f}x (target <= 0.25x): {'PASS' if memory_ratio <= 0.25 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
