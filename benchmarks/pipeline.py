"""The report pipeline on a folder of phantoms: overlap of loading and the model, batching, flat memory.

Prints, for one folder of N phantoms and a small random-weight model
(``benchmarks/pipeline_model.py``; 27x27 patches per unit as so400m, 2 narrow
layers), all measured in this process:

(a) overlap: the wall time of the whole pipeline (``run_to_file``) against
    the two halves run alone on the same studies: preparation alone (load +
    preprocess + built-in segmentation, through the same prefetching workers)
    and the model alone (``Engine.generate`` on inputs prepared beforehand).
    Target: pipeline <= 1.25 x max(preparation, model).
(b) batching: studies/s of the model and of the pipeline at batch 8 against batch 1.
(c) memory: peak resident memory of a whole run (main process, and the largest
    worker) over 100 studies against 10, each run in a fresh subprocess.

The mask cache is off (every study segmented), so each run does the same work.

    python benchmarks/pipeline.py                 # 32 phantoms 64x256x256, 32 new tokens
    python benchmarks/pipeline.py --studies 8 --skip-memory   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.pipeline_model import write_model_dir  # noqa: E402
from benchmarks.synthetic_model import small_config  # noqa: E402
from omnict_cli.phantom.generate import PhantomConfig  # noqa: E402
from omnict_cli.phantom.writer import write_phantom_set  # noqa: E402
from omnict_cli.run.engine import Engine, GenerationSettings  # noqa: E402
from omnict_cli.run.pipeline import Pipeline, RunSettings, report_jobs, run_to_file  # noqa: E402
from omnict_cli.run.prefetch import StudyPrefetcher  # noqa: E402
from omnict_cli.run.study_inputs import PrepareSetup, organ_selection_for  # noqa: E402
from omnict_cli.segmentation.builtin import BuiltinSegmenter  # noqa: E402
from omnict_cli.studies.discover import discover_studies  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=32)
    parser.add_argument("--size", type=int, nargs=3, default=[64, 256, 256], metavar=("D", "H", "W"))
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-run", nargs=3, metavar=("FOLDER", "MODEL", "COUNT"), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.memory_run:
        return memory_run(Path(args.memory_run[0]), Path(args.memory_run[1]), int(args.memory_run[2]), args)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model_dir = write_model_dir(small_config(), scratch / "model")
        folder = make_folder(scratch / "phantoms", args.studies, tuple(args.size))
        results = {
            "cpu_count": os.cpu_count(),
            "studies": args.studies,
            "size": args.size,
            "new_tokens": args.new_tokens,
            "workers": args.workers,
        }
        results.update(overlap_and_batching(folder, model_dir, args))
        if not args.skip_memory:
            results["memory"] = {n: measure_memory(folder, model_dir, n, args) for n in (10, 100)}
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def make_folder(root: Path, count: int, size) -> Path:
    """``count`` phantoms as NIfTI under ``root/volumes`` (a few distinct ones, linked under new names)."""
    distinct = min(count, 8)
    write_phantom_set(root / "set", distinct, 5, PhantomConfig(size=size, spacing=(5.0, 1.4, 1.4)))
    volumes = root / "volumes"
    volumes.mkdir(parents=True)
    for index in range(count):
        source = root / "set" / "volumes" / f"case_{index % distinct + 1:04d}.nii.gz"
        (volumes / f"study_{index:04d}.nii.gz").symlink_to(source)
    return volumes


def overlap_and_batching(folder: Path, model_dir: Path, args) -> dict:
    engine = Engine.load(model_dir, device="cpu", dtype="float32")
    setup = PrepareSetup(preprocess=engine.preprocess_config, segmenter=BuiltinSegmenter())
    studies = discover_studies(folder)
    prepare_seconds, prepared = time_preparation(setup, studies, args.workers)
    out = {"prepare_alone_s": prepare_seconds}
    generation = GenerationSettings(max_new_tokens=args.new_tokens)
    for batch in (1, 8):
        out[f"model_alone_batch{batch}_s"] = time_model(engine, prepared, batch, generation)
        out[f"pipeline_batch{batch}_s"] = time_pipeline(engine, setup, studies, batch, args.workers, generation)
    for batch in (1, 8):
        slowest_half = max(out["prepare_alone_s"], out[f"model_alone_batch{batch}_s"])
        out[f"overlap_ratio_batch{batch}"] = out[f"pipeline_batch{batch}_s"] / slowest_half
    n = len(studies)
    out["model_studies_per_s"] = {b: n / out[f"model_alone_batch{b}_s"] for b in (1, 8)}
    out["pipeline_studies_per_s"] = {b: n / out[f"pipeline_batch{b}_s"] for b in (1, 8)}
    return out


def time_preparation(setup, studies, workers: int):
    started = time.perf_counter()
    with StudyPrefetcher(setup, workers) as prefetch:
        prepared = [result for _, result in prefetch.prepared(studies)]
    return time.perf_counter() - started, prepared


def time_model(engine, prepared, batch: int, generation) -> float:
    selections = [organ_selection_for(p, "report").mask for p in prepared]
    question = ["Can you describe the CT image?"] * batch
    started = time.perf_counter()
    for start in range(0, len(prepared), batch):
        chunk = slice(start, start + batch)
        inputs = [p.model_input for p in prepared[chunk]]
        engine.generate(question[: len(inputs)], inputs, selections[chunk], generation)
    return time.perf_counter() - started


def time_pipeline(engine, setup, studies, batch: int, workers: int, generation) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        pipeline = Pipeline(engine, setup, RunSettings(batch_size=batch, workers=workers, generation=generation))
        started = time.perf_counter()
        result = run_to_file(pipeline, report_jobs(studies), Path(scratch) / "findings.jsonl")
        seconds = time.perf_counter() - started
    if result.counts.ok != len(studies):
        raise RuntimeError(f"only {result.counts.ok} of {len(studies)} studies succeeded")
    return seconds


def measure_memory(folder: Path, model_dir: Path, count: int, args) -> dict:
    """Peak RSS of a fresh process running ``count`` studies (folder entries repeated under new names)."""
    command = [
        sys.executable,
        __file__,
        "--memory-run",
        str(folder),
        str(model_dir),
        str(count),
        "--workers",
        str(args.workers),
        "--new-tokens",
        "4",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_run(folder: Path, model_dir: Path, count: int, args) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        studies_folder = Path(scratch) / "studies"
        studies_folder.mkdir()
        sources = sorted(folder.iterdir())
        for index in range(count):
            (studies_folder / f"s{index:05d}.nii.gz").symlink_to(sources[index % len(sources)].resolve())
        engine = Engine.load(model_dir, device="cpu", dtype="float32")
        setup = PrepareSetup(preprocess=engine.preprocess_config, segmenter=BuiltinSegmenter())
        settings = RunSettings(
            batch_size=8, workers=args.workers, generation=GenerationSettings(max_new_tokens=args.new_tokens)
        )
        run_to_file(
            Pipeline(engine, setup, settings),
            report_jobs(discover_studies(studies_folder)),
            Path(scratch) / "findings.jsonl",
        )
    main_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    worker_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "studies": count,
                "main_peak_mib": round(main_kib / 1024, 1),
                "largest_worker_peak_mib": round(worker_kib / 1024, 1),
            }
        )
    )


def print_table(results: dict) -> None:
    print(
        f"{results['studies']} phantoms {'x'.join(map(str, results['size']))}, {results['new_tokens']} new tokens, "
        f"{results['workers']} workers, {results['cpu_count']} CPUs"
    )
    print(f"  preparation alone           {results['prepare_alone_s']:7.1f} s")
    for batch in (1, 8):
        print(
            f"  batch {batch}: model alone {results[f'model_alone_batch{batch}_s']:7.1f} s, "
            f"pipeline {results[f'pipeline_batch{batch}_s']:7.1f} s, "
            f"pipeline / max(halves) = {results[f'overlap_ratio_batch{batch}']:.2f} (target <= 1.25)"
        )
    model_rates, pipeline_rates = results["model_studies_per_s"], results["pipeline_studies_per_s"]
    print(
        f"  batch 8 vs 1: model {model_rates[8] / model_rates[1]:.2f}x, pipeline "
        f"{pipeline_rates[8] / pipeline_rates[1]:.2f}x studies/s"
    )
    if "memory" in results:
        low, high = results["memory"][10], results["memory"][100]
        print(
            f"  peak memory main process: 10 studies {low['main_peak_mib']} MiB, 100 studies "
            f"{high['main_peak_mib']} MiB ({high['main_peak_mib'] / low['main_peak_mib']:.2f}x); largest worker "
            f"{low['largest_worker_peak_mib']} -> {high['largest_worker_peak_mib']} MiB"
        )


if __name__ == "__main__":
    main()
