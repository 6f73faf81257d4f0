"""How much does the mask cache save, and what does the built-in segmenter cost?

1. Writes 20 phantom CTs (64x256x256 at 5 x 1.4 x 1.4 mm, the demo-data
   default) as NIfTI, then runs ``segment_studies`` (the library behind
   ``omnict segment``) over them twice with the built-in segmenter and a fresh
   temporary cache. Prints the segmentation step (key + cache lookup, plus
   segmenting and storing on a miss) of each run, their ratio (target: the
   second run at least 20x faster), and the whole runs including loading.
2. Times the built-in segmenter (two calls), the cache key (sha256 of the voxels) and a
   cache hit on one realistic 300x512x512 phantom (1.5 x 0.7 x 0.7 mm).

Run: ``python benchmarks/segment_cache.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from nibabel.orientations import axcodes2ornt

from omnict_cli.phantom.generate import PhantomConfig, generate_case
from omnict_cli.phantom.writer import write_phantom_set
from omnict_cli.segmentation.builtin import BuiltinSegmenter
from omnict_cli.segmentation.cache import MaskCache, cache_key
from omnict_cli.segmentation.run import segment_studies
from omnict_cli.studies.discover import discover_studies
from omnict_cli.studies.volume import Volume, canonical_affine

FOLDER_CASES = 20
FOLDER_CONFIG = PhantomConfig(size=(64, 256, 256), spacing=(5.0, 1.4, 1.4))
REALISTIC_CONFIG = PhantomConfig(size=(300, 512, 512), spacing=(1.5, 0.7, 0.7))


def time_folder_runs(work_dir: Path) -> None:
    """Two runs of the segmentation step over a folder of phantoms, one cache."""
    write_phantom_set(work_dir / "phantoms", FOLDER_CASES, 0, FOLDER_CONFIG)
    studies = discover_studies(work_dir / "phantoms" / "volumes")
    segmenter, cache = BuiltinSegmenter(), MaskCache(work_dir / "cache")
    runs = []
    for _ in range(2):
        started = time.perf_counter()
        results = segment_studies(studies, segmenter, cache)
        runs.append((results, time.perf_counter() - started))
    (first, first_wall), (second, second_wall) = runs
    assert all(r.status == "ok" for r in first + second), [r.error for r in first + second if r.error]
    assert not any(r.cached for r in first) and all(r.cached for r in second)
    first_step = sum(r.segment_seconds for r in first)
    second_step = sum(r.segment_seconds for r in second)
    size = "x".join(map(str, FOLDER_CONFIG.size))
    print(f"{len(studies)} phantoms {size}, built-in segmenter, fresh cache in {cache.root}")
    print(f"  segmentation step, 1st run (segment + store): {first_step:7.2f} s")
    print(f"  segmentation step, 2nd run (from cache):      {second_step:7.2f} s")
    print(f"  ratio 1st / 2nd: {first_step / second_step:.1f}x (target >= 20x)")
    print(
        f"  whole runs incl. loading the NIfTIs: {first_wall:.2f} s then {second_wall:.2f} s "
        f"({first_wall / second_wall:.1f}x)"
    )
    info = cache.info()
    print(f"  cache: {info.entries} entries, {info.size_bytes / 2**20:.1f} MiB")


def time_realistic_volume(work_dir: Path) -> None:
    """The built-in segmenter, the key and a cache hit on one 300x512x512 volume."""
    case = generate_case(0, 1, REALISTIC_CONFIG)
    volume = Volume(
        voxels=case.hu,
        affine=canonical_affine(case.spacing),
        kind="volume",
        source_format="npy",
        source_ornt=axcodes2ornt(("S", "P", "L")),
        source_shape=case.hu.shape,
    )
    segmenter, cache = BuiltinSegmenter(), MaskCache(work_dir / "realistic_cache")
    timings = {}
    for attempt in (1, 2):  # twice: the first call also pays for imports and a cold cache
        started = time.perf_counter()
        labels = segmenter.segment(volume)
        timings[f"built-in segmenter, call {attempt}"] = time.perf_counter() - started
    started = time.perf_counter()
    cache_key(volume, segmenter)
    timings["cache key (sha256 of 157 MB)"] = time.perf_counter() - started
    started = time.perf_counter()
    cache.put(volume, segmenter, labels)
    timings["store (compress + fsync)"] = time.perf_counter() - started
    started = time.perf_counter()
    _, hit, _ = cache.get_or_compute(volume, segmenter)
    timings["cache hit (key + read + verify)"] = time.perf_counter() - started
    assert hit
    size = "x".join(map(str, REALISTIC_CONFIG.size))
    print(f"one {size} phantom ({' x '.join(map(str, REALISTIC_CONFIG.spacing))} mm):")
    for name, seconds in timings.items():
        print(f"  {name:34s} {seconds:6.2f} s")


def main():
    print(f"{os.cpu_count()} CPU cores (shared machine: numbers vary with load)")
    with tempfile.TemporaryDirectory(prefix="omnict-bench-") as work_dir:
        time_folder_runs(Path(work_dir))
        time_realistic_volume(Path(work_dir))


if __name__ == "__main__":
    main()
