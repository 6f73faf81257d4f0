"""How long each omnict command takes to start, against a bare ``import torch, transformers``.

Every command runs in a fresh subprocess on the bundled examples, so its
wall time is the start-up (imports, reading the model's identity) plus the
little work the tiny examples need; ``ask`` on one study is there to show
where its time goes (the model, once loaded). Target (issue 22): each of
``--help``, ``inspect``, ``score``, ``labels``, ``review`` and a rerun of
``report`` with nothing left to do under 1.5 s. The baseline is measured in
the same run, so the ratio holds across machines.

    python benchmarks/startup.py              # median of 5 runs each
    python benchmarks/startup.py --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
PHANTOMS = EXAMPLES / "phantoms"
TARGET_S = 1.5


def omnict(*args: str) -> list[str]:
    return [sys.executable, "-m", "omnict_cli", *args]


def commands(work: Path) -> list[tuple[str, list[str]]]:
    """(name, argv) in the order printed; ``work`` holds a findings file already complete."""
    findings = work / "findings.jsonl"
    return [
        ('python -c "import torch, transformers"', [sys.executable, "-c", "import torch, transformers"]),
        ("omnict --help", omnict("--help")),
        ("omnict inspect examples", omnict("inspect", str(EXAMPLES))),
        (
            "omnict score (phantom references)",
            omnict("score", str(findings), "--references", str(PHANTOMS / "references.csv")),
        ),
        (
            "omnict labels predict (12 reports)",
            omnict("labels", "predict", str(PHANTOMS / "references.csv"), "--out", str(work / "labels.csv")),
        ),
        ("omnict review", omnict("review", str(findings), "--out", str(work / "review.html"))),
        (
            "omnict report, rerun, nothing to do",
            omnict("report", str(PHANTOMS / "volumes"), "--out", str(findings), "--quiet"),
        ),
        (
            "omnict ask (one study, demo model)",
            omnict("ask", str(PHANTOMS / "volumes" / "case_0002.nii.gz"), "Is the heart enlarged?", "--quiet"),
        ),
    ]


def timed(argv: list[str], cwd: Path, environment: dict) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode not in (0, 1):  # score/review may exit 1 on a partial join; that is still a start
        raise SystemExit(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per command; the median is printed")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        environment = {key: value for key, value in os.environ.items() if key != "OMNICT_MODEL"}
        environment["OMNICT_CACHE_DIR"] = str(work / "cache")
        # the findings the rerun, score and review read: the demo model on the bundled phantom volumes
        setup = omnict("report", str(PHANTOMS / "volumes"), "--out", str(work / "findings.jsonl"), "--quiet")
        subprocess.run(setup, cwd=work, env=environment, check=True, capture_output=True)
        rows = []
        for name, argv in commands(work):
            seconds = statistics.median(timed(argv, work, environment) for _ in range(options.runs))
            rows.append((name, seconds))
        baseline = rows[0][1]
        print(f"median of {options.runs} runs each, {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}\n")
        print("| command | seconds | / import torch, transformers | under 1.5 s |")
        print("| --- | --- | --- | --- |")
        for name, seconds in rows:
            verdict = "" if name.startswith(("python", "omnict ask")) else ("yes" if seconds < TARGET_S else "no")
            print(f"| `{name}` | {seconds:.2f} | {seconds / baseline:.2f} | {verdict} |")


if __name__ == "__main__":
    main()
