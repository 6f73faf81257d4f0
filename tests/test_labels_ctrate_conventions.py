"""The labelers follow CT-RATE's own label conventions (issue 12 item 5).

Sentences here are written for this test (not taken from the held-out set or
the training corpus). Each case names the class the convention is about and
the 0/1 label CT-RATE's labels give it; the rule labeler and the bundled
classifier must both agree.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from omnict_cli.labels.classes import CTRATE_ABNORMALITIES
from omnict_cli.labels.classifier import BUNDLED_MODEL
from omnict_cli.labels.labeler import label_reports
from omnict_cli.labels.rules import label_report

LAP, CM, ATE, FIB, NOD, OPA, CON, PLE = (
    "Lymphadenopathy",
    "Cardiomegaly",
    "Atelectasis",
    "Pulmonary fibrotic sequela",
    "Lung nodule",
    "Lung opacity",
    "Consolidation",
    "Pleural effusion",
)

CASES = [
    # lymph nodes affirmed at a station with a size or a count are positive, even when small
    ("Lymph nodes with a short axis of up to 6 mm are present in the subcarinal region.", {LAP: 1}),
    ("In the prevascular area, several lymph nodes were detected.", {LAP: 1}),
    ("Lymph nodes reaching 7x4 mm were observed in the right hilar region.", {LAP: 1}),
    ("Numerous lymph nodes are seen in both axillae.", {LAP: 1}),
    ("An 8 mm lymph node is seen in the lower paratracheal station.", {LAP: 1}),
    ("No lymph node of pathological size was seen in the mediastinum.", {LAP: 0}),
    # affirmed nodes count whatever their size (issue 24; the clinical reading: tests/test_labels_lymph_convention.py)
    ("Lymph nodes below 1 cm in short axis are seen in the mediastinum.", {LAP: 1}),
    # cardiomegaly: CTO (cardiothoracic ratio) increased in favour of the heart; heart larger than normal
    ("CTO is increased in favor of the heart.", {CM: 1}),
    ("The heart looks larger than normal.", {CM: 1}),
    ("CTO is normal.", {CM: 0}),
    # fibroatelectasis and its kin are fibrotic sequelae, not atelectasis
    ("Fibroatelectasis is seen in the anterior segment of the right upper lobe.", {FIB: 1, ATE: 0}),
    ("Fibroatelectatic sequela changes are seen at the left lung base.", {FIB: 1, ATE: 0}),
    ("There are band atelectasis-sequelae in the lingula.", {FIB: 1, ATE: 0}),
    ("Plate atelectasis is seen in the lingula.", {ATE: 1, FIB: 0}),
    # nodular patterns that are no lung nodules
    ("Nodular infiltration areas are seen in the left lower lobe.", {NOD: 0, OPA: 1}),
    ("A reticulonodular pattern is seen in both lower lobes.", {NOD: 0}),
    ("Acinonodular ground glass densities are seen in the right upper lobe.", {NOD: 0, OPA: 1}),
    ("Nodular consolidation areas are seen in the right middle lobe.", {NOD: 0, CON: 1}),
    ("A 12 mm nodular lesion is seen in the subcutaneous fat of the back.", {NOD: 0}),
    ("A nodular lesion of 2 cm is seen in the left renal upper pole.", {NOD: 0}),
    ("A 6 mm solid nodule is seen in the left lower lobe.", {NOD: 1}),
    # effusion without the word pleural
    ("There is effusion in the left hemithorax.", {PLE: 1}),
    ("Effusions in both lungs are observed.", {PLE: 1}),
    ("A smear-like effusion is seen on the right.", {PLE: 1}),
    ("No effusion was seen in either hemithorax.", {PLE: 0}),
]


@pytest.mark.parametrize("sentence, expected", CASES)
def test_rule_labeler_follows_the_convention(sentence, expected):
    vector = label_report(sentence).vector()
    assert {label: vector[label] for label in expected} == expected


@pytest.mark.skipif(not BUNDLED_MODEL.exists(), reason="bundled classifier not installed")
def test_bundled_classifier_follows_the_conventions():
    texts = [f"Findings: Trachea and both main bronchi are open. {sentence}" for sentence, _ in CASES]
    predicted = label_reports(texts, method="classifier")
    wrong = [
        (sentence, label, int(predicted[row, CTRATE_ABNORMALITIES.index(label)]))
        for row, (sentence, expected) in enumerate(CASES)
        for label, value in expected.items()
        if predicted[row, CTRATE_ABNORMALITIES.index(label)] != value
    ]
    assert not wrong, wrong


def test_training_corpus_does_not_depend_on_the_phantom_package():
    code = (
        "import sys; import omnict_cli.labels.corpus as c; c.training_corpus(5); "
        "print(sorted(m for m in sys.modules if m.startswith('omnict_cli.phantom')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
