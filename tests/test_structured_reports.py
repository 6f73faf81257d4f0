"""Structured reports: the demo model's report target names exactly the present classes, in CT-RATE order."""

import csv
import json

import numpy as np
import pytest

from omnict_cli.labels import CTRATE_ABNORMALITIES
from omnict_cli.labels.ctrate_io import split_sections
from omnict_cli.labels.labeler import label_reports
from omnict_cli.phantom.generate import PhantomConfig
from omnict_cli.phantom.writer import write_phantom_set
from omnict_cli.training.rows import read_rows
from omnict_cli.training.structured_reports import (
    FINDING_SENTENCES,
    NORMAL_FINDINGS,
    NORMAL_IMPRESSION,
    present_classes,
    structured_report,
    structured_report_rows,
)


def test_every_class_sentence_is_read_as_that_class_and_no_other():
    """What `omnict score` reads from the model's report is what the report was meant to say."""
    texts = [structured_report([name]) for name in CTRATE_ABNORMALITIES]
    labels = np.asarray(label_reports(texts))
    assert (labels == np.eye(len(CTRATE_ABNORMALITIES), dtype=int)).all()
    findings_only = np.asarray(label_reports([FINDING_SENTENCES[name] for name in CTRATE_ABNORMALITIES]))
    assert (findings_only == np.eye(len(CTRATE_ABNORMALITIES), dtype=int)).all()


def test_all_and_none():
    everything = np.asarray(label_reports([structured_report(CTRATE_ABNORMALITIES)]))[0]
    assert everything.tolist() == [1] * len(CTRATE_ABNORMALITIES)
    normal = structured_report([])
    assert normal == f"Findings: {NORMAL_FINDINGS}\nImpression: {NORMAL_IMPRESSION}"
    assert np.asarray(label_reports([normal]))[0].sum() == 0


def test_classes_come_in_ctrate_order_whatever_the_input_order():
    report = structured_report(["Pleural effusion", "Cardiomegaly", "Lung nodule"])
    findings, impression = split_sections(report)
    assert findings == "The heart is enlarged. Nodules are seen in the lungs. Pleural effusion is present."
    assert impression == "Cardiomegaly. Lung nodule. Pleural effusion."


def test_unknown_class_is_named():
    with pytest.raises(ValueError, match="Pneumothorax"):
        structured_report(["Cardiomegaly", "Pneumothorax"])


def test_present_classes_reads_a_labels_row():
    row = {"VolumeName": "a.nii.gz", **{name: "0" for name in CTRATE_ABNORMALITIES}}
    row.update({"Emphysema": "1", "Cardiomegaly": " 1"})
    assert present_classes(row) == ["Cardiomegaly", "Emphysema"]


def test_rows_of_a_phantom_set_match_its_labels_and_read_back(tmp_path):
    folder = tmp_path / "phantoms"
    write_phantom_set(folder, 3, 5, PhantomConfig(size=(24, 96, 96), spacing=(8.0, 3.0, 3.0)))
    question = "<|image3d_start|><|image3d|><|image3d_end|>\nCan you describe the CT image?"
    rows = structured_report_rows(folder / "labels.csv", folder / "volumes", question)
    with open(folder / "labels.csv", newline="") as handle:
        truth = list(csv.DictReader(handle))
    assert len(rows) == len(truth) == 3
    for row, record in zip(rows, truth):
        assert row["image"] == str((folder / "volumes" / record["VolumeName"]).resolve())
        answer = row["messages"][1]["content"]
        assert answer == structured_report(present_classes(record))
        read = np.asarray(label_reports([answer]))[0]
        assert read.tolist() == [int(record[name]) for name in CTRATE_ABNORMALITIES]
    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    read_back = read_rows(rows_file)
    assert not read_back.problems and len(read_back.rows) == 3
    assert read_back.rows[0].question == "Can you describe the CT image?"
