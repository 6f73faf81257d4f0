"""Does the demo model read the image? Reports and yes/no answers on held-out phantoms, and the Table 14 test.

Why: a small model trained on templated phantom reports can write fluent
reports from the text prior alone. Only a comparison against image-free
baselines, and against the same model fed the wrong image (paper Table 14:
images swapped between cases, or replaced by noise), shows that its answers
come from the pixels.

What it does, with the product's own commands:

1. ``omnict demo-data``-style phantoms from a seed no training set used
   (:data:`EVAL_SEED`; the recipe uses ``omnict_cli.training.demo.TRAIN_SEEDS``);
2. four image conditions under the same study names: ``right`` (the case's own
   volume), ``swapped`` (the volume of the case ``n/2`` places further on),
   ``noise`` (uniform noise over the [-1000, 1000] HU window) and ``blank``
   (air, -1000 HU everywhere: the model's own image-free output);
3. per condition ``omnict report`` then ``omnict score`` against the true
   references and label file (macro / per-class F1; the bundled labeler reads
   the generated text), and ``omnict ask --batch`` on yes/no questions balanced
   50/50, scored with ``omnict score`` (closed-question accuracy);
4. reports on the phantoms' 2D slices (PNG; labels from ``slices/labels.csv``), right
   and swapped between slices;
5. the prior-only baselines: answering every class at its training prevalence
   (expected F1 ``2pq/(p+q)`` for training rate p and test rate q), the majority
   answer (never a finding: F1 0), and any constant yes/no answer (50%).

Usage::

    python benchmarks/demo_model_eval.py                       # models/omnict-demo, 50 cases
    python benchmarks/demo_model_eval.py --cases 100 --json results.json
    python benchmarks/demo_model_eval.py --size 64 256 256 --spacing 5 1.4 1.4   # demo-data's default size
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jsonlines
import nibabel as nib
import numpy as np

from omnict_cli.labels import CTRATE_ABNORMALITIES
from omnict_cli.phantom.abnormalities import DEFAULT_PREVALENCE
from omnict_cli.phantom.generate import PhantomConfig
from omnict_cli.phantom.writer import write_phantom_set
from omnict_cli.training.demo import PHANTOM_SIZE, PHANTOM_SPACING, TRAIN_SEEDS

EVAL_SEED = 2027
CONDITIONS = ("right", "swapped", "noise", "blank")
REPO = Path(__file__).resolve().parents[1]


def write_condition(phantoms: Path, condition: str, out_dir: Path) -> Path:
    """A folder of volumes named like the phantoms', holding the images of ``condition``."""
    if condition == "right":
        return phantoms / "volumes"
    names = sorted(path.name for path in (phantoms / "volumes").glob("*.nii.gz"))
    folder = out_dir / condition / "volumes"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([EVAL_SEED, CONDITIONS.index(condition)])
    for index, name in enumerate(names):
        source = name if condition != "swapped" else swap_partner(names, index)
        image = nib.load(phantoms / "volumes" / source)
        if condition == "noise":
            voxels = rng.uniform(-1000, 1000, image.shape).astype(np.int16)
        elif condition == "blank":
            voxels = np.full(image.shape, -1000, dtype=np.int16)
        else:
            voxels = np.asarray(image.dataobj)
        nib.save(nib.Nifti1Image(voxels, image.affine, image.header), folder / name)
    return folder


def swap_partner(names: list[str], index: int) -> str:
    """The name n/2 places after ``names[index]`` (wrapping): whose image a study gets when swapped."""
    return names[(index + len(names) // 2) % len(names)]


def balanced_yes_no_rows(phantoms: Path, seed: int) -> list[dict]:
    """The volume yes/no rows of the phantoms' ``qa.jsonl``, cut to as many "Yes" as "No" answers."""
    with jsonlines.open(phantoms / "qa.jsonl") as reader:
        rows = list(reader.iter(type=dict, skip_empty=True))
    closed = [
        row for row in rows if row["image"].startswith("volumes/") and row["messages"][1]["content"] in ("Yes", "No")
    ]
    by_answer = {answer: [row for row in closed if row["messages"][1]["content"] == answer] for answer in ("Yes", "No")}
    keep = min(len(group) for group in by_answer.values())
    rng = np.random.default_rng(seed)
    chosen = [row for group in by_answer.values() for row in rng.permutation(np.array(group, dtype=object))[:keep]]
    return sorted(chosen, key=lambda row: (row["image"], row["messages"][0]["content"]))


def omnict(*args: str) -> None:
    """Run one omnict command (the installed CLI, as a user would); stop with its output if it fails."""
    command = [sys.executable, "-m", "omnict_cli", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")


def run_condition(
    condition: str, volumes: Path, phantoms: Path, questions: list[dict], work: Path, common: list[str]
) -> dict:
    """Reports and yes/no answers for one image condition, scored; returns the two score JSONs."""
    folder = work / condition
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    omnict("report", str(volumes), "--out", str(folder / "reports.jsonl"), "--overwrite", *common)
    omnict(
        "score",
        str(folder / "reports.jsonl"),
        "--references",
        str(phantoms / "references.csv"),
        "--reference-labels",
        str(phantoms / "labels.csv"),
        "--bootstrap",
        "200",
        "--json",
        str(folder / "report_scores.json"),
    )
    rows = [{**row, "image": str(volumes / Path(row["image"]).name)} for row in questions]
    (folder / "yes_no.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    omnict(
        "ask",
        "--batch",
        str(folder / "yes_no.jsonl"),
        "--out",
        str(folder / "answers.jsonl"),
        "--overwrite",
        "--max-new-tokens",
        "4",
        *common,
    )
    omnict(
        "score",
        str(folder / "answers.jsonl"),
        "--references",
        str(folder / "yes_no.jsonl"),
        "--bootstrap",
        "200",
        "--json",
        str(folder / "answer_scores.json"),
    )
    return {
        "reports": json.loads((folder / "report_scores.json").read_text()),
        "answers": json.loads((folder / "answer_scores.json").read_text()),
        "seconds": round(time.perf_counter() - started, 1),
    }


def slice_reports(phantoms: Path, work: Path, common: list[str]) -> dict:
    """Reports on the phantoms' 2D slices (PNG), right and swapped, scored against ``slices/labels.csv``.

    The references are the slices' structured reports (the demo model's report style); the
    labels come from the label file either way. Swapped: each slice gets the PNG n/2 slices on.
    """
    import csv
    import shutil

    from omnict_cli.labels.ctrate_io import split_sections
    from omnict_cli.training.structured_reports import present_classes, structured_report

    with open(phantoms / "slices" / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    references = work / "slices" / "references.csv"
    references.parent.mkdir(parents=True, exist_ok=True)
    with open(references, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["VolumeName", "Findings_EN", "Impressions_EN"])
        for row in rows:
            writer.writerow([row["VolumeName"], *split_sections(structured_report(present_classes(row)))])
    names = [row["VolumeName"] for row in rows]
    results = {"slices": len(names), "classes": drawn_classes(phantoms / "slices")}
    for condition in ("right", "swapped"):
        folder = work / "slices" / condition
        images = folder / "images"
        images.mkdir(parents=True, exist_ok=True)
        for index, name in enumerate(names):
            source = name if condition == "right" else swap_partner(names, index)
            shutil.copyfile(phantoms / "slices" / source, images / name)
        omnict("report", str(images), "--out", str(folder / "reports.jsonl"), "--overwrite", *common)
        omnict(
            "score",
            str(folder / "reports.jsonl"),
            "--references",
            str(references),
            "--reference-labels",
            str(phantoms / "slices" / "labels.csv"),
            "--bootstrap",
            "200",
            "--json",
            str(folder / "report_scores.json"),
        )
        scores = json.loads((folder / "report_scores.json").read_text())
        results[condition] = macro_over(scores["per_class"], results["classes"])
    return results


def drawn_classes(phantoms: Path) -> dict[str, float]:
    """Class -> test prevalence, for the classes with at least one positive case (``phantoms/labels.csv``)."""
    import csv

    with open(phantoms / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rates = {name: sum(int(row[name]) for row in rows) / len(rows) for name in CTRATE_ABNORMALITIES}
    return {name: rate for name, rate in rates.items() if rate > 0}


def macro_over(per_class: list[dict], classes) -> float:
    """Mean F1 over ``classes`` (a drawn class the model never names counts as 0)."""
    f1 = {row["label"]: row["f1"] for row in per_class}
    return float(np.mean([f1.get(name) or 0.0 for name in classes]))


def prior_f1(classes: dict[str, float]) -> dict[str, float]:
    """Expected F1 of naming each class at random at its training prevalence p, on a test rate q."""
    return {name: 2 * DEFAULT_PREVALENCE[name] * q / (DEFAULT_PREVALENCE[name] + q) for name, q in classes.items()}


def print_tables(results: dict, classes: dict[str, float]) -> None:
    priors = prior_f1(classes)
    print(
        f"\nheld-out phantoms: seed {results['seed']} (training seeds {list(TRAIN_SEEDS)}), "
        f"{results['cases']} cases, {results['yes_no_questions']} yes/no questions (50% yes)\n"
    )
    print("| image given | report macro F1 (drawn classes) | yes/no accuracy |")
    print("| --- | --- | --- |")
    for condition in CONDITIONS:
        entry = results["conditions"][condition]
        closed = entry["answers"]["closed"] or {}
        print(f"| {condition} | {entry['macro_f1_drawn']:.3f} | {closed.get('accuracy', float('nan')):.1%} |")
    print(f"| prior: training prevalence | {np.mean(list(priors.values())):.3f} | 50.0% (any constant answer) |")
    print("| prior: majority (no finding) | 0.000 | 50.0% |")
    if "slice_reports" in results:
        slices = results["slice_reports"]
        print(
            f"\n2D slices ({slices['slices']} PNGs, one per case with a finding): report macro F1 "
            f"{slices['right']:.3f} with the right slice, {slices['swapped']:.3f} swapped"
        )
    print("\n| class | test positives | F1 right image | F1 swapped | F1 noise | F1 blank | prior F1 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    tables = {c: {row["label"]: row for row in results["conditions"][c]["reports"]["per_class"]} for c in CONDITIONS}
    for name, rate in classes.items():
        cells = [f"{(tables[c].get(name, {}).get('f1') or 0.0):.2f}" for c in CONDITIONS]
        print(f"| {name} | {round(rate * results['cases'])} | {' | '.join(cells)} | {priors[name]:.2f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "omnict-demo")
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--size", type=int, nargs=3, default=PHANTOM_SIZE, metavar=("D", "H", "W"))
    parser.add_argument("--spacing", type=float, nargs=3, default=PHANTOM_SPACING, metavar=("SZ", "SY", "SX"))
    parser.add_argument("--work", type=Path, default=None, help="Keep the phantoms, outputs and scores here.")
    parser.add_argument("--json", type=Path, default=None, help="Write every number to this file.")
    args = parser.parse_args(argv)
    if args.seed in TRAIN_SEEDS:
        parser.error(f"seed {args.seed} is a training seed; choose another")
    work = args.work or Path(tempfile.mkdtemp(prefix="omnict-demo-eval-"))
    phantoms = work / "phantoms"
    if not (phantoms / "qa.jsonl").is_file():
        config = PhantomConfig(size=tuple(args.size), spacing=tuple(args.spacing))
        write_phantom_set(phantoms, args.cases, args.seed, config)
    questions = balanced_yes_no_rows(phantoms, args.seed)
    common = [
        "--model",
        str(args.model),
        "--segmenter",
        "builtin",
        "--cache-dir",
        str(work / "masks"),
        "--workers",
        "0",
        "--quiet",
    ]
    classes = drawn_classes(phantoms)
    results = {
        "model": str(args.model),
        "seed": args.seed,
        "cases": args.cases,
        "size": list(args.size),
        "spacing": list(args.spacing),
        "yes_no_questions": len(questions),
        "drawn_classes": classes,
        "cpu_load_1min_at_start": os.getloadavg()[0],
        "conditions": {},
    }
    for condition in CONDITIONS:
        volumes = write_condition(phantoms, condition, work)
        entry = run_condition(condition, volumes, phantoms, questions, work, common)
        entry["macro_f1_drawn"] = macro_over(entry["reports"]["per_class"], classes)
        results["conditions"][condition] = entry
        print(f"{condition}: done in {entry['seconds']:.0f} s", file=sys.stderr)
    results["prior_f1"] = prior_f1(classes)
    if (phantoms / "slices" / "labels.csv").is_file():
        results["slice_reports"] = slice_reports(phantoms, work, common)
    print_tables(results, classes)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(f"\noutputs and scores kept in {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
