"""How long does one phantom case take on one core?

A whole case, as ``omnict demo-data`` makes it: ``draw_anatomy``, then
``draw_abnormalities`` (default prevalence, and all 18 classes forced as
the worst case), ``finish_image`` (blur + noise), and the report and QA.
Times 10 cases at 32x384x384 (9.4 x 0.9 x 0.9 mm, the size the model
sees) and 2 at 300x512x512 (1.5 x 0.7 x 0.7 mm, a realistic thin-slice
scan), with torch, BLAS and scipy limited to one thread, and prints
seconds per case for each stage and in total.

Run: ``python benchmarks/phantom.py`` (about half a minute).
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import time

import numpy as np
import torch

from omnict_cli.labels import CTRATE_ABNORMALITIES
from omnict_cli.phantom.abnormalities import draw_abnormalities
from omnict_cli.phantom.anatomy import draw_anatomy, finish_image
from omnict_cli.phantom.reports import make_qa, write_report

CASES = (((32, 384, 384), (9.4, 0.9, 0.9), 10), ((300, 512, 512), (1.5, 0.7, 0.7), 2))


def time_cases(size, spacing, count, force=()):
    """Per-case (anatomy, abnormalities, finish, text) seconds for seeds 0..count-1."""
    timings = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        marks = [time.perf_counter()]
        anatomy = draw_anatomy(rng, size, spacing)
        marks.append(time.perf_counter())
        findings = draw_abnormalities(rng, anatomy, force=force)
        marks.append(time.perf_counter())
        finish_image(rng, anatomy.hu, anatomy.spacing)
        marks.append(time.perf_counter())
        write_report(findings, rng)
        make_qa(findings, rng)
        marks.append(time.perf_counter())
        timings.append(np.diff(marks))
    return np.array(timings)


def main():
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(
        "| size | spacing mm | abnormalities | cases | anatomy | abnormalities | finish | text | "
        "total s/case (min-max) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for size, spacing, count in CASES:
        for label, force in (("default prevalence", ()), ("all 18 forced", CTRATE_ABNORMALITIES)):
            t = time_cases(size, spacing, count, force)
            total = t.sum(axis=1)
            stages = " | ".join(f"{v:.3f}" for v in t.mean(axis=0))
            print(
                f"| {'x'.join(map(str, size))} | {spacing} | {label} | {count} | {stages} | "
                f"{total.mean():.3f} ({total.min():.3f}-{total.max():.3f}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
