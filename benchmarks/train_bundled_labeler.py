"""Train the report classifier bundled with omnict, reproducibly.

Trains :class:`~omnict_cli.labels.classifier.ReportClassifier` (default
:class:`~omnict_cli.labels.classifier.ClassifierConfig`) on
``training_corpus(N_REPORTS, seed=0)``, the project's CT-RATE-style corpus,
and writes ``omnict_cli/labels/data/ctrate_classifier.json.gz``. The same
corpus, config and library versions give the same probabilities; only the
``trained_at`` date in the metadata changes between runs.

It then prints the training time, the file size and, as a sanity check
(not the quality table: that is ``benchmarks/labeler_quality.py`` on the
held-out set), macro/micro F1 on fresh corpus reports (seed 1) that were
not trained on.

Run: ``python benchmarks/train_bundled_labeler.py`` (about a minute on one core).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from omnict_cli.labels.classes import CTRATE_ABNORMALITIES
from omnict_cli.labels.classifier import BUNDLED_MODEL, ClassifierConfig, ReportClassifier
from omnict_cli.labels.corpus import training_corpus
from omnict_cli.labels.ctrate_io import report_text
from omnict_cli.metrics import classification_report

N_REPORTS = 2000
CORPUS_SEED = 0
CHECK_REPORTS = 500
CHECK_SEED = 1


def texts_and_labels(reports) -> tuple[list[str], np.ndarray]:
    """Whole report texts and their [n, 18] 0/1 labels in CT-RATE order."""
    texts = [report_text(report) for report in reports]
    labels = np.array([[report.labels[name] for name in CTRATE_ABNORMALITIES] for report in reports])
    return texts, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BUNDLED_MODEL, help="where to write the classifier")
    parser.add_argument("--n", type=int, default=N_REPORTS, help="training reports")
    arguments = parser.parse_args()

    texts, labels = texts_and_labels(training_corpus(arguments.n, seed=CORPUS_SEED))
    started = time.perf_counter()
    model = ReportClassifier(ClassifierConfig()).fit(
        texts, labels, corpus_name=f"omnict training_corpus(n={arguments.n}, seed={CORPUS_SEED})"
    )
    seconds = time.perf_counter() - started
    model.save(arguments.out)
    print(
        f"trained on {arguments.n} reports in {seconds:.1f} s; wrote {arguments.out} "
        f"({arguments.out.stat().st_size / 1e6:.2f} MB)"
    )

    check_texts, check_labels = texts_and_labels(training_corpus(CHECK_REPORTS, seed=CHECK_SEED))
    reloaded = ReportClassifier.load(arguments.out)
    probabilities = reloaded.predict_proba(check_texts)
    assert np.array_equal(probabilities, model.predict_proba(check_texts)), "reloaded model differs"
    report = classification_report(check_labels, (probabilities >= 0.5).astype(int), list(CTRATE_ABNORMALITIES))
    print(
        f"sanity check on {CHECK_REPORTS} unseen corpus reports (seed {CHECK_SEED}): "
        f"macro F1 {report.macro_f1:.3f}, micro F1 {report.micro_f1:.3f}"
    )


if __name__ == "__main__":
    main()
