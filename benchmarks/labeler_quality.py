"""How well do omnict's report labelers read the 18 CT-RATE classes from text?

Scores the rule labeler (``omnict_cli.labels.rules``) and, when the bundled
classifier (``omnict_cli.labels.classifier``) is installed, the classifier
too, against the hand-labelled held-out set in ``benchmarks/data`` (written
by ``make_heldout.py`` apart from the training corpus, see its README).
Prints per-class precision / recall / F1 with support, then macro and micro
F1. The bar for the rule labeler is macro F1 >= 0.90. A class with no
reference positive and no prediction (possible in the parts of the set)
prints "n/a" and is left out of the macro mean (see
``omnict_cli.metrics.classification``).

Run: ``python benchmarks/labeler_quality.py`` (a few seconds);
``--errors`` also prints every wrong label with its report sentence(s).
``--convention clinical`` reads lymph nodes the clinical way (enlarged or
pathological only). The held-out labels were written before issue 24 and
mark small nodes ("subcentimetric lymph nodes, not pathologically enlarged")
negative, i.e. the clinical way: under the default CT-RATE convention those
reports count as false positives of Lymphadenopathy by design, and the other
17 classes are what compares across conventions.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from omnict_cli.labels.classes import CTRATE_ABNORMALITIES
from omnict_cli.labels.ctrate_io import read_labels, read_reports, report_text
from omnict_cli.labels.rules import label_report
from omnict_cli.metrics import classification_report

DATA = Path(__file__).resolve().parent / "data"
REPORTS = DATA / "heldout_reports.csv"
LABELS = DATA / "heldout_labels.csv"
RULES_BAR = 0.90


def load_heldout(reports_path: Path = REPORTS, labels_path: Path = LABELS):
    """Held-out reports and their [n, 18] reference label matrix, in report-file order."""
    reports = read_reports(reports_path)
    labels = read_labels(labels_path)
    missing = [report.volume_name for report in reports if report.volume_name not in labels]
    if missing:
        raise SystemExit(f"{labels_path}: no labels for {len(missing)} reports, e.g. {missing[0]}")
    truth = np.array([[labels[r.volume_name][c] for c in CTRATE_ABNORMALITIES] for r in reports], dtype=int)
    return reports, truth


def rule_predictions(reports, convention: str = "ctrate") -> np.ndarray:
    """[n, 18] 0/1 labels of the rule labeler (uncertain counts as 0)."""
    rows = []
    for report in reports:
        vector = label_report(report.findings, report.impression, convention=convention).vector()
        rows.append([vector[c] for c in CTRATE_ABNORMALITIES])
    return np.array(rows, dtype=int)


def classifier_predictions(reports, convention: str = "ctrate") -> np.ndarray | None:
    """[n, 18] labels of the bundled classifier, or None when it is not installed (imported lazily)."""
    try:
        from omnict_cli.labels.classifier import BUNDLED_MODEL, default_classifier
    except ImportError:
        return None
    if not BUNDLED_MODEL.exists():
        return None
    from omnict_cli.labels.labeler import label_reports

    texts = [report_text(report) for report in reports]
    return np.asarray(label_reports(texts, "classifier", model=default_classifier(), convention=convention), dtype=int)


def score_text(value: float, width: int = 0) -> str:
    """A score with three decimals, or "n/a" when it is not defined (NaN), right-aligned to ``width``."""
    return f"{'n/a' if math.isnan(value) else f'{value:.3f}':>{width}s}"


def print_table(name: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    """Print one labeler's per-class table; return its macro F1."""
    scores = classification_report(truth, predicted, list(CTRATE_ABNORMALITIES))
    print(f"\n{name} ({scores.n_samples} reports)")
    print(f"{'class':36s} {'support':>7s} {'prec':>6s} {'recall':>6s} {'F1':>6s}   tp  fp  fn")
    for row in scores.per_class:
        print(
            f"{row.label:36s} {row.support:7d} {score_text(row.precision, 6)} {score_text(row.recall, 6)} "
            f"{score_text(row.f1, 6)} {row.tp:4d}{row.fp:4d}{row.fn:4d}"
        )
    for average in ("macro", "micro"):
        values = (getattr(scores, f"{average}_{measure}") for measure in ("precision", "recall", "f1"))
        print(f"{average:36s} {'':7s} " + " ".join(score_text(value, 6) for value in values))
    return scores.macro_f1


PARTS = (
    ("a", "written before issue 12; seen while fixing general rule gaps"),
    ("b", "written before issue 12; never used to change the rules"),
    ("c", "written after the rules learned CT-RATE's conventions (issue 12)"),
)
"""The parts of the held-out set, told apart by their names (see benchmarks/data/README.md)."""


def print_parts(reports, truth: np.ndarray, predicted: np.ndarray) -> None:
    """Macro/micro F1 of each part of the set, and of the parts written before issue 12 together."""
    before = [i for i, r in enumerate(reports) if r.volume_name.startswith(("heldout_a_", "heldout_b_"))]
    if before:
        scores = classification_report(truth[before], predicted[before], list(CTRATE_ABNORMALITIES))
        print(
            f"  parts a+b ({len(before)} reports, written before issue 12): macro F1 "
            f"{score_text(scores.macro_f1)}, micro F1 {score_text(scores.micro_f1)}"
        )
    for part, meaning in PARTS:
        rows = [i for i, r in enumerate(reports) if r.volume_name.startswith(f"heldout_{part}_")]
        if rows:
            scores = classification_report(truth[rows], predicted[rows], list(CTRATE_ABNORMALITIES))
            print(
                f"  part {part} ({len(rows)} reports, {meaning}): macro F1 {score_text(scores.macro_f1)}, "
                f"micro F1 {score_text(scores.micro_f1)}"
            )


def print_errors(reports, truth: np.ndarray, predicted: np.ndarray, convention: str = "ctrate") -> None:
    """Every wrong rule label, with the mentions (or the report) behind it."""
    for i, report in enumerate(reports):
        wrong = [j for j in range(len(CTRATE_ABNORMALITIES)) if truth[i, j] != predicted[i, j]]
        if not wrong:
            continue
        result = label_report(report.findings, report.impression, convention=convention)
        for j in wrong:
            label = CTRATE_ABNORMALITIES[j]
            kind = "false positive" if predicted[i, j] else "false negative"
            print(f"{report.volume_name}: {label}: {kind}")
            for mention in result.mentions:
                if mention.label == label:
                    print(f"    {mention.state:9s} cue={mention.cue!r:22s} {mention.sentence}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--errors", action="store_true", help="print every wrong rule label")
    parser.add_argument(
        "--convention", choices=("ctrate", "clinical"), default="ctrate", help="how lymph nodes are read"
    )
    args = parser.parse_args()
    reports, truth = load_heldout()
    print(f"lymph-node convention: {args.convention}")
    rules = rule_predictions(reports, args.convention)
    macro = print_table("Rule labeler", truth, rules)
    print(
        f"rule labeler macro F1 {score_text(macro)} (bar {RULES_BAR:.2f}: {'met' if macro >= RULES_BAR else 'NOT met'})"
    )
    print_parts(reports, truth, rules)
    classifier = classifier_predictions(reports, args.convention)
    if classifier is None:
        print("\nBundled classifier not installed: skipped.")
    else:
        print_table("Bundled classifier", truth, classifier)
        print_parts(reports, truth, classifier)
    if args.errors:
        print()
        print_errors(reports, truth, rules, args.convention)


if __name__ == "__main__":
    main()
