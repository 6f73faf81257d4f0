"""How long does one normal phantom take? draw_anatomy + finish_image, one core.

Times 10 cases at 32x384x384 (9.4 x 0.9 x 0.9 mm, the size the model sees)
and 2 at 300x512x512 (1.5 x 0.7 x 0.7 mm, a realistic thin-slice scan),
with torch, BLAS and scipy limited to one thread, and prints seconds per
case for drawing, finishing and both.

Run: ``python benchmarks/phantom.py`` (about half a minute).
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import time

import numpy as np
import torch

from omnict_cli.phantom.anatomy import draw_anatomy, finish_image

CASES = (((32, 384, 384), (9.4, 0.9, 0.9), 10), ((300, 512, 512), (1.5, 0.7, 0.7), 2))


def time_cases(size, spacing, count):
    """Per-case (draw, finish) seconds for seeds 0..count-1."""
    timings = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        start = time.perf_counter()
        anatomy = draw_anatomy(rng, size, spacing)
        drawn = time.perf_counter()
        finish_image(rng, anatomy.hu, anatomy.spacing)
        timings.append((drawn - start, time.perf_counter() - drawn))
    return np.array(timings)


def main():
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print("| size | spacing mm | cases | draw s/case | finish s/case | total s/case (min-max) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size, spacing, count in CASES:
        t = time_cases(size, spacing, count)
        total = t.sum(axis=1)
        print(f"| {'x'.join(map(str, size))} | {spacing} | {count} | {t[:, 0].mean():.3f} | "
              f"{t[:, 1].mean():.3f} | {total.mean():.3f} ({total.min():.3f}-{total.max():.3f}) |")


if __name__ == "__main__":
    main()
