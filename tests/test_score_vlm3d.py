"""``omnict score --protocol vlm3d``: the VLM3D challenge's figures, checked against pycocoevalcap and
scikit-learn run here in the test, CRG against a worked example, the challenge's JSON layout, the
per-study CSV, and where omnict's own text metrics equal pycocoevalcap's (issue 24)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pycocoevalcap", reason="pycocoevalcap is in the [eval] and [dev] extras")

from pycocoevalcap.bleu.bleu import Bleu  # noqa: E402
from pycocoevalcap.cider.cider import Cider  # noqa: E402
from pycocoevalcap.rouge.rouge import Rouge  # noqa: E402
from sklearn.metrics import accuracy_score, precision_recall_fscore_support  # noqa: E402

from omnict_cli.labels.classes import CTRATE_ABNORMALITIES  # noqa: E402
from omnict_cli.labels.labeler import label_reports  # noqa: E402
from omnict_cli.metrics import bleu, rouge_l_corpus, tokenize  # noqa: E402
from omnict_cli.metrics.coco_text import bleu_counts, bleu_from_counts, java_missing_reason  # noqa: E402
from omnict_cli.metrics.crg import crg_from_counts, crg_score  # noqa: E402
from omnict_cli.metrics.score_files import ScoreOptions, ScoringError, score  # noqa: E402
from omnict_cli.metrics.vlm3d import score_vlm3d  # noqa: E402

# A fixed corpus: CT-RATE-style references, their labels, and generated reports with everything the
# challenge's clean-up touches (a line break, " . ", quotes, underscores), a failed and an empty one.
REFERENCES = {
    "valid_1_a_1.nii.gz": (
        "Trachea and both main bronchi are open. Mild pleural effusion on the right. Heart size is normal.",
        "Right pleural effusion.",
    ),
    "valid_2_a_1.nii.gz": (
        "Millimetric lymph nodes in the mediastinum. Emphysematous changes in both upper lobes.",
        "Emphysema.",
    ),
    "valid_3_a_1.nii.gz": ("A 6 mm nodule in the right lower lobe. Coronary artery calcifications.", "Lung nodule."),
    "valid_4_a_1.nii.gz": ("Cardiomegaly. Pericardial effusion. Bilateral pleural effusion.", "Heart failure."),
    "valid_5_a_1.nii.gz": ("Consolidation in the left lower lobe with air bronchograms.", "Pneumonia."),
    "valid_6_a_1.nii.gz": ("No abnormality in the thorax.", ""),
}
POSITIVES = {
    "valid_1_a_1.nii.gz": ["Pleural effusion"],
    "valid_2_a_1.nii.gz": ["Lymphadenopathy", "Emphysema"],
    "valid_3_a_1.nii.gz": ["Lung nodule", "Coronary artery wall calcification"],
    "valid_4_a_1.nii.gz": ["Cardiomegaly", "Pericardial effusion", "Pleural effusion"],
    "valid_5_a_1.nii.gz": ["Consolidation"],
    "valid_6_a_1.nii.gz": [],
}
GENERATED = {
    "valid_1_a_1": "Trachea and both main bronchi are open . Pleural effusion on the right.\nHeart size is normal.",
    "valid_2_a_1": 'Emphysema in both "upper" lobes. No lymph node in pathological size.',
    "valid_3_a_1": "A nodule in the right_lower_lobe. Coronary artery calcifications.",
    "valid_4_a_1": "Cardiomegaly with pericardial effusion.\r\nNo pleural effusion.",
    "valid_5_a_1": None,  # failed
    "valid_6_a_1": "",  # empty
}


def challenge_clean(text: str) -> str:
    """The challenge's clean-up of a generated report, written out here independently of omnict."""
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ").replace(" . ", ".")
    return text.replace('"', "").replace("'", "").replace("_", "")


@pytest.fixture()
def corpus(tmp_path):
    references = tmp_path / "valid_reports.csv"
    with open(references, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["VolumeName", "Findings_EN", "Impressions_EN"])
        for name, (findings, impression) in REFERENCES.items():
            writer.writerow([name, findings, impression])
    labels = tmp_path / "valid_labels.csv"
    with open(labels, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["VolumeName", *CTRATE_ABNORMALITIES])
        for name, positives in POSITIVES.items():
            writer.writerow([name, *(int(label in positives) for label in CTRATE_ABNORMALITIES)])
    findings = tmp_path / "generated.jsonl"
    with open(findings, "w") as stream:
        for name, text in GENERATED.items():
            record = {"study_id": name, "status": "ok", "findings": text, "impression": ""}
            if text is None:
                record = {"study_id": name, "status": "error", "error": {"type": "X", "message": "x"}}
            stream.write(json.dumps(record) + "\n")
    submission = tmp_path / "submission.json"
    entries = [{"input_image_name": f"{name}.nii.gz", "report": text or ""} for name, text in GENERATED.items()]
    submission.write_text(json.dumps({"generated_reports": entries}, indent=2))
    return {"references": references, "labels": labels, "findings": findings, "submission": submission}


def expected_figures(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """The challenge's classification figures by scikit-learn, class by class, macro = plain mean of 18."""
    per_class = [
        precision_recall_fscore_support(truth[:, i], predicted[:, i], average="binary", zero_division=0)[:3]
        for i in range(truth.shape[1])
    ]
    accuracy = [accuracy_score(truth[:, i], predicted[:, i]) for i in range(truth.shape[1])]
    micro = precision_recall_fscore_support(truth, predicted, average="micro", zero_division=0)[:3]
    return {
        "macro_precision": float(np.mean([p for p, _, _ in per_class])),
        "macro_recall": float(np.mean([r for _, r, _ in per_class])),
        "macro_f1": float(np.mean([f for _, _, f in per_class])),
        "macro_accuracy": float(np.mean(accuracy)),
        "micro_precision": micro[0],
        "micro_recall": micro[1],
        "micro_f1": micro[2],
        "micro_accuracy": accuracy_score(truth.ravel(), predicted.ravel()),
    }


def expected_text(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """pycocoevalcap's own scorers on the cleaned texts."""
    gts = {i: [text] for i, text in enumerate(references)}
    res = {i: [text] for i, text in enumerate(hypotheses)}
    bleu_scores, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {
        **{f"bleu{n + 1}": bleu_scores[n] for n in range(4)},
        "bleu_mean": float(np.mean(bleu_scores)),
        "rouge_l": Rouge().compute_score(gts, res)[0],
        "cider_d": Cider().compute_score(gts, res)[0],
    }


def test_the_protocol_equals_pycocoevalcap_and_scikit_learn_on_a_fixed_corpus(corpus):
    options = ScoreOptions(method="rules", reference_labels=corpus["labels"], bootstrap=200)
    result = score_vlm3d(corpus["findings"], corpus["references"], options, meteor=False)

    names = list(REFERENCES)
    hypotheses = [challenge_clean(GENERATED[name.removesuffix(".nii.gz")] or "") for name in names]
    references = [" ".join(part for part in REFERENCES[name] if part) for name in names]
    for name, value in expected_text(hypotheses, references).items():
        assert result.text[name] == pytest.approx(value, abs=1e-9), name

    truth = np.array([[int(label in POSITIVES[name]) for label in CTRATE_ABNORMALITIES] for name in names])
    # the generated side is labelled from the generated text; a failed or empty report is all negative
    generated = [f"Findings: {GENERATED[name.removesuffix('.nii.gz')] or ''}" for name in names]
    predicted = label_reports(generated, "rules")
    predicted[[4, 5]] = 0
    assert (result.pairs.predicted == predicted).all()
    for name, value in expected_figures(truth, predicted).items():
        assert result.figures[name] == pytest.approx(value, abs=1e-12), name
    assert result.figures["crg"] == pytest.approx(crg_score(truth, predicted), abs=1e-12)
    assert result.failed == ["valid_5_a_1"] and result.empty == ["valid_6_a_1"]
    # every figure, classification and text, has a bootstrap interval
    assert set(result.intervals) == set(result.figures) | set(result.text)
    assert all(0.0 <= low <= high for low, high in result.intervals.values())


def test_a_peer_submission_in_the_challenge_layout_scores_like_the_same_reports_in_jsonl(corpus):
    options = ScoreOptions(method="rules", reference_labels=corpus["labels"], bootstrap=50)
    from_json = score_vlm3d(corpus["submission"], corpus["references"], options, meteor=False)
    from_jsonl = score_vlm3d(corpus["findings"], corpus["references"], options, meteor=False)
    assert from_json.text == pytest.approx(from_jsonl.text, abs=1e-12)
    # the failed record is an empty report in the submission, so the labels agree too
    assert from_json.figures == pytest.approx(from_jsonl.figures, abs=1e-12)


def test_a_bad_challenge_entry_is_one_line_naming_the_file_and_entry(tmp_path, corpus):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"generated_reports": [{"input_image_name": "a.nii.gz", "report": "x"}, {"report": 1}]}))
    with pytest.raises(Exception, match=r"bad\.json: entry 2 of 'generated_reports' needs"):
        score(bad, corpus["references"], ScoreOptions(method="rules", protocol="vlm3d"))


def test_crg_by_hand():
    # 2 studies x 18 classes: X = 36 cells. References: 4 positives (A = 4).
    truth = np.zeros((2, 18), dtype=int)
    truth[0, [0, 1]] = 1
    truth[1, [2, 3]] = 1
    predicted = np.zeros((2, 18), dtype=int)
    predicted[0, [0, 1]] = 1  # 2 true positives
    predicted[1, 2] = 1  # 1 true positive; class 3 missed: 1 false negative
    predicted[1, [10, 11]] = 1  # 2 false positives
    # r = (X - A) / (2A) = 32 / 8 = 4;  U = (X - A) / 2 = 16
    # s = r TP - r FN - FP = 4 * 3 - 4 * 1 - 2 = 6;  CRG = U / (2U - s) = 16 / (32 - 6) = 16 / 26
    assert crg_score(truth, predicted) == pytest.approx(16 / 26, abs=1e-15)
    # perfect: s = rA = U, CRG = U / U = 1; silent: s = -rA = -U, CRG = U / 3U = 1/3
    assert crg_score(truth, truth) == pytest.approx(1.0)
    assert crg_score(truth, np.zeros_like(truth)) == pytest.approx(1 / 3)
    # no reference positive: r divides by zero, CRG is not defined
    assert math.isnan(crg_score(np.zeros_like(truth), predicted))
    assert float(crg_from_counts(3, 1, 2, 36)) == pytest.approx(16 / 26)


def test_bleu_pooled_from_cooked_counts_equals_pycocoevalcap():
    hypotheses = ["no pleural effusion . heart normal", "mild emphysema in both lungs", "", "a nodule"]
    references = ["there is no pleural effusion . heart size normal", "emphysema in both upper lobes", "x", "nodule"]
    gts = {i: [text] for i, text in enumerate(references)}
    res = {i: [text] for i, text in enumerate(hypotheses)}
    expected, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert bleu_from_counts(bleu_counts(hypotheses, references).sum(axis=0)) == pytest.approx(expected, abs=1e-12)


TEXT_PAIRS = [
    (
        "Mild pleural effusion on the right, 12 mm. Heart size is normal.",
        "Right pleural effusion; heart size is normal.",
    ),
    ("Emphysematous changes in both upper lobes.", "Emphysematous changes are seen in both upper lobes."),
    ("No consolidation.", "Consolidation in the left lower lobe with air bronchograms."),
]
"""Every n-gram order up to 4 has a match somewhere in this corpus (see the zero-match test below)."""


def test_omnict_bleu_and_rouge_equal_pycocoevalcap_on_the_same_tokens():
    hypotheses, references = [h for h, _ in TEXT_PAIRS], [r for _, r in TEXT_PAIRS]
    gts = {i: [" ".join(tokenize(text))] for i, text in enumerate(references)}
    res = {i: [" ".join(tokenize(text))] for i, text in enumerate(hypotheses)}
    coco_bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    ours = bleu(hypotheses, references)
    # pycocoevalcap adds 1e-15 / 1e-9 to every count to avoid 0/0: equal to about 1e-9
    assert [ours[f"bleu{n}"] for n in range(1, 5)] == pytest.approx(coco_bleu, abs=1e-8)
    coco_rouge, _ = Rouge().compute_score(gts, res)
    assert rouge_l_corpus(hypotheses, references, measure="f_beta", beta=1.2) == pytest.approx(coco_rouge, abs=1e-12)
    # omnict's default ROUGE-L is the F1 (beta 1): not pycocoevalcap's
    assert rouge_l_corpus(hypotheses, references) != pytest.approx(coco_rouge, abs=1e-4)


def test_where_bleu_differs_an_order_with_no_match_is_zero_for_omnict_and_tiny_for_pycocoevalcap():
    hypothesis, reference = "no consolidation .", "consolidation in the left lower lobe ."
    coco_bleu, _ = Bleu(4).compute_score({0: [reference]}, {0: [hypothesis]}, verbose=0)
    ours = bleu([hypothesis], [reference])
    assert ours["bleu3"] == 0.0 and 0.0 < coco_bleu[2] < 1e-4  # (0 + 1e-15) / (1 + 1e-9), to the power 1/3


def test_the_default_protocol_adds_cider_d_from_pycocoevalcap(corpus):
    result = score(corpus["findings"], corpus["references"], ScoreOptions(method="rules", bootstrap=20))
    pairs = result.pairs
    gts = {i: [" ".join(tokenize(text))] for i, text in enumerate(pairs.reference_texts)}
    res = {i: [" ".join(tokenize(text))] for i, text in enumerate(pairs.hypotheses)}
    assert result.text_scores["cider_d"] == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-12)
    assert result.notes == []


def _score_command(*arguments, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "omnict_cli", "score", *map(str, arguments)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )


def test_without_pycocoevalcap_the_default_protocol_says_so_in_one_line(corpus, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    # a module that refuses to import stands in for an install without pycocoevalcap
    (blocker / "pycocoevalcap.py").write_text("raise ImportError('not installed here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}
    result = _score_command(
        corpus["findings"], "--references", corpus["references"], "--method", "rules", "--bootstrap", "20", env=env
    )
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if "CIDEr-D" in line]
    assert len(notices) == 1 and "pycocoevalcap is not installed" in notices[0]
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(java_missing_reason() is not None, reason="METEOR needs a Java runtime")
def test_the_command_scores_a_submission_with_meteor_and_writes_json(corpus, tmp_path):
    from pycocoevalcap.meteor.meteor import Meteor

    out = tmp_path / "scores.json"
    result = _score_command(
        *(corpus["submission"], "--references", corpus["references"], "--reference-labels", corpus["labels"]),
        *("--protocol", "vlm3d", "--method", "rules", "--bootstrap", "50", "--json", out),
    )
    assert result.returncode == 0, result.stderr
    assert "CRG" in result.stdout and "METEOR" in result.stdout
    data = json.loads(out.read_text())
    assert data["protocol"] == "vlm3d" and data["n_scored"] == 6
    names = list(REFERENCES)
    gts = {i: [" ".join(part for part in REFERENCES[name] if part)] for i, name in enumerate(names)}
    res = {i: [challenge_clean(GENERATED[name.removesuffix(".nii.gz")] or "")] for i, name in enumerate(names)}
    scorer = Meteor()
    expected, _ = scorer.compute_score(gts, res)
    del scorer
    assert data["text"]["meteor"] == pytest.approx(expected, abs=1e-9)
    assert set(data["ci95"]) == set(data["classification"]) | set(data["text"])
    assert all(low <= high for low, high in data["ci95"].values())


def test_without_java_meteor_is_skipped_with_one_warning(corpus, tmp_path):
    python_only = tmp_path / "bin"
    python_only.mkdir()
    (python_only / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(python_only)}
    result = _score_command(
        *(corpus["findings"], "--references", corpus["references"], "--protocol", "vlm3d"),
        *("--method", "rules", "--bootstrap", "20"),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "METEOR" in line]
    assert warnings == ["warning METEOR skipped: no Java runtime on PATH (METEOR runs meteor-1.5.jar)"]
    assert "BLEU-4" in result.stdout and "METEOR" not in result.stdout


def test_per_study_csv_lists_labels_disagreements_and_scores(corpus, tmp_path):
    table = tmp_path / "studies.csv"
    result = _score_command(
        *(corpus["findings"], "--references", corpus["references"], "--reference-labels", corpus["labels"]),
        *("--method", "rules", "--bootstrap", "20", "--per-study", table),
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(table.open()))
    assert [row["study"] for row in rows] == list(REFERENCES)
    by_study = {row["study"]: row for row in rows}
    failed = by_study["valid_5_a_1.nii.gz"]
    assert failed["status"] == "failed" and failed["false_negatives"] == "Consolidation"
    assert failed["disagreements"] == "1" and failed["generated: Consolidation"] == "0"
    assert failed["reference: Consolidation"] == "1"
    # "No pleural effusion" in the generated report: a miss of one of three positives
    assert "Pleural effusion" in by_study["valid_4_a_1.nii.gz"]["false_negatives"].split("; ")
    assert by_study["valid_6_a_1.nii.gz"]["status"] == "empty"
    assert float(by_study["valid_1_a_1.nii.gz"]["rouge_l"]) > float(failed["rouge_l"]) == 0.0
    assert {"bleu4", "rouge_l", "meteor", "cider_d"} <= set(rows[0])


def test_per_study_csv_neutralises_cells_and_never_replaces_a_file_it_did_not_write(tmp_path):
    references = tmp_path / "refs.csv"
    references.write_text("VolumeName,Findings_EN,Impressions_EN\n=cmd.nii.gz,Cardiomegaly.,\n")
    findings = tmp_path / "run.jsonl"
    findings.write_text(json.dumps({"study_id": "=cmd", "findings": "Cardiomegaly.", "status": "ok"}) + "\n")
    table = tmp_path / "notes.csv"
    table.write_text("my own notes\n")
    arguments = (findings, "--references", references, "--method", "rules", "--bootstrap", "10", "--per-study", table)
    refused = _score_command(*arguments)
    assert refused.returncode != 0
    assert "notes.csv: exists and is not a per-study table omnict wrote; not replaced" in refused.stderr
    assert table.read_text() == "my own notes\n"
    assert _score_command(*arguments, "--overwrite").returncode == 0
    (row,) = list(csv.DictReader(table.open()))
    assert row["study"] == "'=cmd.nii.gz" and row["prediction"] == "'=cmd"
    # a table omnict wrote is replaced without --overwrite
    assert _score_command(*arguments).returncode == 0


def test_export_challenge_writes_the_layout_that_scores_the_same(corpus, tmp_path):
    exported = tmp_path / "submission.json"
    options = ("--method", "rules", "--bootstrap", "20")  # either protocol exports; omnict's needs no Java
    result = _score_command(
        corpus["findings"], "--references", corpus["references"], *options, "--export-challenge", exported
    )
    assert result.returncode == 0, result.stderr
    entries = json.loads(exported.read_text())["generated_reports"]
    assert [entry["input_image_name"] for entry in entries] == list(REFERENCES)
    assert entries[0]["report"] == GENERATED["valid_1_a_1"].replace("\n", " ")  # findings as omnict tidies them
    assert entries[4]["report"] == ""  # the failed study
    score_options = ScoreOptions(method="rules", reference_labels=corpus["labels"], bootstrap=20)
    again = score_vlm3d(exported, corpus["references"], score_options, meteor=False)
    first = score_vlm3d(corpus["findings"], corpus["references"], score_options, meteor=False)
    assert again.text == pytest.approx(first.text, abs=1e-12)


def test_vlm3d_refuses_vqa_answers(tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"study_id": "a", "question": "Is there an effusion?", "answer": "Yes"}) + "\n")
    with pytest.raises(ScoringError, match="the vlm3d protocol scores generated reports"):
        score(answers, answers, ScoreOptions(protocol="vlm3d"))


def test_the_command_choices_match_the_library():
    from omnict_cli.cli.score import PROTOCOL_CHOICES
    from omnict_cli.metrics.score_files import PROTOCOLS

    assert PROTOCOL_CHOICES == PROTOCOLS  # the conventions: tests/test_cli.py


def test_the_docs_reproduce_command_names_real_options():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    assert "omnict score submission.json --references valid_reports.csv" in docs
    assert "--protocol vlm3d" in docs and "--reference-labels" in docs


def test_a_java_that_dies_skips_meteor_with_a_note_instead_of_hanging(tmp_path, monkeypatch):
    from omnict_cli.metrics.coco_text import coco_scores

    java = tmp_path / "java"
    java.write_text('#!/bin/sh\nif [ "$1" = "-version" ]; then exit 0; fi\nexit 1\n')  # starts, then dies on the jar
    java.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    result = coco_scores(["no pleural effusion"], ["no effusion"])
    assert "meteor" not in result.corpus and "rouge_l" in result.corpus
    assert len(result.notes) == 1 and result.notes[0].startswith("METEOR skipped: meteor-1.5.jar stopped")
