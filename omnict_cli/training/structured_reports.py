"""Reports written from a study's 18 CT-RATE labels, one fixed sentence per present class, in a fixed order.

Why: the demo model's decoder is small and trained from scratch, and it
learns to read the image only when each answer token it is taught depends
on the image directly. In the phantoms' own reports every class is
mentioned, in random order, as present or absent: the token that says
"present" depends on which class the sentence is about AND on the image
together, and a small decoder learns that combination too slowly to ever
leave the text prior (docs/demo-model.md, "The decoder, not the encoder,
is what fails"). Here a report names only the present classes, always in
CT-RATE order: the next class named is the first present one after the last
named, which is a sum of "what the image shows" and "where the list is",
and the decoder learns it in a few hundred steps (from perfect features,
macro F1 0.99 against 0.18 with swapped images).

The sentences are plain and each names its class in words the bundled
labeler reads (``tests/test_structured_reports.py`` checks every one).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path

from omnict_cli.labels import CTRATE_ABNORMALITIES

FINDING_SENTENCES = {
    "Medical material": "Medical material is seen.",
    "Arterial wall calcification": "Atherosclerotic calcification is seen in the aortic wall.",
    "Cardiomegaly": "The heart is enlarged.",
    "Pericardial effusion": "Pericardial effusion is present.",
    "Coronary artery wall calcification": "Coronary artery wall calcification is seen.",
    "Hiatal hernia": "A hiatal hernia is seen.",
    "Lymphadenopathy": "Enlarged mediastinal lymph nodes are seen.",
    "Emphysema": "Emphysema is seen in the lungs.",
    "Atelectasis": "Atelectasis is seen in the lower lobes.",
    "Lung nodule": "Nodules are seen in the lungs.",
    "Lung opacity": "Ground-glass opacity is seen in the lung.",
    "Pulmonary fibrotic sequela": "Fibrotic sequelae are seen in the lungs.",
    "Pleural effusion": "Pleural effusion is present.",
    "Mosaic attenuation pattern": "A mosaic attenuation pattern is seen in the lungs.",
    "Peribronchial thickening": "Peribronchial thickening is seen.",
    "Consolidation": "Consolidation is seen in the lung.",
    "Bronchiectasis": "Bronchiectasis is seen in the lower lobes.",
    "Interlobular septal thickening": "Interlobular septal thickening is seen.",
}
"""The one Findings sentence per class (CT-RATE order is the order of :data:`CTRATE_ABNORMALITIES`)."""

NORMAL_FINDINGS = "No abnormality is seen in the thorax."
NORMAL_IMPRESSION = "No acute pathology was detected."


def structured_report(present: Iterable[str]) -> str:
    """``"Findings: ...\\nImpression: ..."`` naming exactly the classes in ``present``, in CT-RATE order.

    The Impression repeats the class names; a study with no class gets the
    normal sentences. An unknown class name is a ``ValueError`` naming it.
    """
    present = set(present)
    unknown = sorted(present - set(CTRATE_ABNORMALITIES))
    if unknown:
        raise ValueError(f"not CT-RATE classes: {', '.join(unknown)}")
    ordered = [name for name in CTRATE_ABNORMALITIES if name in present]
    if not ordered:
        return f"Findings: {NORMAL_FINDINGS}\nImpression: {NORMAL_IMPRESSION}"
    findings = " ".join(FINDING_SENTENCES[name] for name in ordered)
    impression = " ".join(f"{name}." for name in ordered)
    return f"Findings: {findings}\nImpression: {impression}"


def present_classes(label_row: Mapping[str, str]) -> list[str]:
    """The classes marked ``1`` in one ``labels.csv`` row (``VolumeName`` + the 18 classes as 0/1)."""
    return [name for name in CTRATE_ABNORMALITIES if str(label_row.get(name, "0")).strip() == "1"]


def structured_report_rows(labels_csv, image_dir, question: str) -> list[dict]:
    """One training row per image a ``labels.csv`` names: ``question`` -> its structured report.

    ``labels_csv`` has ``VolumeName`` + the 18 classes as 0/1 (a ``demo-data`` folder's
    ``labels.csv`` for its volumes, ``slices/labels.csv`` for its slices); each name is
    looked up in ``image_dir``. Image paths are absolute.
    """
    image_dir = Path(image_dir).resolve()
    rows = []
    with open(labels_csv, newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            rows.append(
                {
                    "messages": [
                        {"role": "user", "content": question},
                        {"role": "assistant", "content": structured_report(present_classes(record))},
                    ],
                    "image": str(image_dir / record["VolumeName"]),
                }
            )
    return rows
