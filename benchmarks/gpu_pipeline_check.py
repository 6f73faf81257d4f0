"""The whole ``report`` engine on a GPU: studies/s at several batch sizes and how long the GPU waits for data.

Called by ``benchmarks/gpu_check.py`` (one script per lent GPU) with the model
it already built: a folder of phantoms at 32x384x384 (the paper's grid, so
preprocessing is a real resample) goes through prefetching workers, built-in
segmentation (no cache: every study segmented), batched generation and the
record writer, exactly as ``omnict report`` runs. The GPU idle fraction is
1 - (time inside ``generate``) / (wall time): the share of the run the model
waited for studies to be loaded, preprocessed and segmented.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.pipeline_model import word_tokenizer  # noqa: E402
from benchmarks.synthetic_model import _first_prompt_id  # noqa: E402
from omnict_cli.model import OmniCTProcessor  # noqa: E402
from omnict_cli.phantom.generate import PhantomConfig  # noqa: E402
from omnict_cli.phantom.writer import write_phantom_set  # noqa: E402
from omnict_cli.run.engine import Engine, GenerationSettings, ModelIdentity  # noqa: E402
from omnict_cli.run.pipeline import Pipeline, RunSettings, report_jobs, run_to_file  # noqa: E402
from omnict_cli.run.study_inputs import PrepareSetup  # noqa: E402
from omnict_cli.segmentation.builtin import BuiltinSegmenter  # noqa: E402
from omnict_cli.studies.discover import discover_studies  # noqa: E402


class TimedEngine(Engine):
    """An Engine that adds up the seconds spent in ``generate``."""

    generate_seconds = 0.0

    def generate(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return super().generate(*args, **kwargs)
        finally:
            self.generate_seconds += time.perf_counter() - started


def phantom_folder(root: Path, count: int, size=(32, 384, 384), distinct: int = 8) -> Path:
    """``count`` studies under ``root/studies``: ``distinct`` phantoms linked under new names."""
    write_phantom_set(root / "set", min(distinct, count), 9, PhantomConfig(size=size, spacing=(10.0, 0.9, 0.9)))
    folder = root / "studies"
    folder.mkdir()
    for index in range(count):
        source = root / "set" / "volumes" / f"case_{index % min(distinct, count) + 1:04d}.nii.gz"
        (folder / f"study_{index:04d}.nii.gz").symlink_to(source)
    return folder


def run_pipeline_check(
    model,
    config,
    device: str,
    batches=(1, 8, 16),
    studies: int = 64,
    new_tokens: int = 256,
    size=(32, 384, 384),
    workers: int | None = None,
    processor=None,
) -> dict:
    """Run ``report``'s engine over ``studies`` phantoms at each batch size; returns rates and idle fractions.

    ``processor`` is the model's own (a real model's tokenizer); by default a word tokenizer for random weights.
    """
    workers = workers if workers is not None else max(1, min(8, (os.cpu_count() or 2) - 2))
    processor = processor or OmniCTProcessor(word_tokenizer(_first_prompt_id(config)), config)
    tokenizer = processor.tokenizer
    model.generation_config.eos_token_id = None  # random weights: every study gets exactly new_tokens
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    engine = TimedEngine(model, processor, ModelIdentity("random-weights", "sha256:none"), device)
    setup = PrepareSetup(preprocess=config.preprocess_config(), segmenter=BuiltinSegmenter())
    results = {"studies": studies, "size": list(size), "workers": workers, "new_tokens": new_tokens, "runs": []}
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        folder = phantom_folder(Path(scratch), studies, size)
        results["phantoms_s"] = round(time.perf_counter() - started, 1)
        jobs = report_jobs(discover_studies(folder))
        for batch in batches:
            engine.generate_seconds = 0.0
            settings = RunSettings(
                batch_size=batch, workers=workers, generation=GenerationSettings(max_new_tokens=new_tokens)
            )
            started = time.perf_counter()
            outcome = run_to_file(Pipeline(engine, setup, settings), jobs, Path(scratch) / f"b{batch}.jsonl")
            wall = time.perf_counter() - started
            run = {
                "batch": batch,
                "ok": outcome.counts.ok,
                "failed": outcome.counts.failed,
                "wall_s": round(wall, 1),
                "studies_per_s": round(outcome.counts.ok / wall, 3),
                "generate_s": round(engine.generate_seconds, 1),
                "gpu_idle_fraction": round(1 - engine.generate_seconds / wall, 3),
            }
            print(
                f"report engine batch {batch}: {run['studies_per_s']} studies/s, GPU idle "
                f"{run['gpu_idle_fraction']:.0%} ({run['ok']} ok, {run['failed']} failed)",
                flush=True,
            )
            results["runs"].append(run)
    return results
