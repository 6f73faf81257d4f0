"""CT-RATE-style reports and VQA from phantom Findings: provenance, truthfulness, variety, row format."""

from __future__ import annotations

import json
import string

import numpy as np
import pytest

from omnict_cli.labels import CTRATE_ABNORMALITIES
from omnict_cli.phantom.findings import Finding
from omnict_cli.phantom.reports import (
    CLASS_ORGAN,
    IMAGE_TOKENS,
    NEGATIVE_TEMPLATES,
    NO_ABNORMALITY_OPTION,
    ORGAN_TOKENS,
    POSITIVE_TEMPLATES,
    REPORT_QUESTION,
    QAPair,
    chat_row,
    format_mm,
    make_qa,
    report_row,
    write_report,
)
from omnict_cli.segmentation.organ_groups import ORGAN_GROUPS

LUNG_LOCATIONS = (
    "right upper lobe",
    "superior segment of the right lower lobe",
    "left lower lobe",
    "lingula",
    "middle lobe",
    "left upper lobe",
)
SIZED = {
    "Lung nodule",
    "Lymphadenopathy",
    "Pleural effusion",
    "Pericardial effusion",
    "Hiatal hernia",
    "Consolidation",
    "Atelectasis",
    "Lung opacity",
}
LUNG = {
    "Emphysema",
    "Atelectasis",
    "Lung nodule",
    "Lung opacity",
    "Pulmonary fibrotic sequela",
    "Mosaic attenuation pattern",
    "Peribronchial thickening",
    "Consolidation",
    "Bronchiectasis",
    "Interlobular septal thickening",
}


def random_finding(label: str, rng: np.random.Generator) -> Finding:
    """A hand-built Finding of any class, with the fields a drawing of that class would give."""
    side = location = size = severity = None
    count = 1
    if label in LUNG:
        side = str(rng.choice(["right", "left", "bilateral", None]))  # type: ignore[arg-type]
        side = None if side == "None" else side
        if side in ("right", "left") and rng.random() < 0.6:
            location = str(rng.choice([loc for loc in LUNG_LOCATIONS if side in loc] or [f"{side} lower lobe"]))
    elif label == "Pleural effusion":
        side = str(rng.choice(["right", "left", "bilateral"]))
    elif label == "Medical material" and rng.random() < 0.5:
        location = "right internal jugular vein"
    elif label == "Lymphadenopathy":
        location = str(rng.choice(["subcarinal region", "right hilum", "prevascular space"]))
    if label in SIZED and rng.random() < 0.7:
        size = float(rng.choice([3, 7, 8, 11, 12.5, 18, 25]))
    if label in ("Lung nodule", "Lymphadenopathy") and rng.random() < 0.4:
        count = int(rng.integers(2, 14))
    if rng.random() < 0.5:
        severity = str(rng.choice(["mild", "moderate", "severe"]))
    return Finding(
        label, CLASS_ORGAN[label], side=side, location=location, size_mm=size, count=count, severity=severity
    )


def random_findings(seed: int) -> list[Finding]:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 8))
    labels = [CTRATE_ABNORMALITIES[i] for i in rng.choice(len(CTRATE_ABNORMALITIES), k, replace=False)]
    return [random_finding(label, rng) for label in labels]


CASES = [random_findings(seed) for seed in range(60)]
EVERY_CLASS = [random_finding(label, np.random.default_rng(i)) for i, label in enumerate(CTRATE_ABNORMALITIES)]


def test_banks_are_large_and_cover_exactly_the_18_classes():
    assert set(POSITIVE_TEMPLATES) == set(NEGATIVE_TEMPLATES) == set(CTRATE_ABNORMALITIES)
    assert all(len(bank) >= 6 for bank in POSITIVE_TEMPLATES.values())
    assert all(len(bank) >= 3 for bank in NEGATIVE_TEMPLATES.values())


def test_report_is_deterministic_per_seed():
    findings = CASES[3]
    a, b = write_report(findings, np.random.default_rng(7)), write_report(findings, np.random.default_rng(7))
    assert a == b
    assert make_qa(findings, np.random.default_rng(7)) == make_qa(findings, np.random.default_rng(7))


@pytest.mark.parametrize("findings", CASES + [EVERY_CLASS], ids=lambda f: ",".join(x.label[:6] for x in f))
def test_report_states_exactly_the_present_classes(findings):
    present = {f.label for f in findings}
    for seed in range(3):
        report = write_report(findings, np.random.default_rng(seed))
        stated_pos = {name for s in report.sentences for name in s.positive}
        stated_neg = {name for s in report.sentences for name in s.negative}
        assert stated_pos == present
        assert not stated_neg & present
        assert stated_pos | stated_neg <= set(CTRATE_ABNORMALITIES)
        for sentence in report.sentences:
            section_text = report.findings if sentence.section == "findings" else report.impression
            assert sentence.text in section_text
        text = report.findings.lower()
        for finding in findings:
            if finding.size_mm is not None:
                assert format_mm(finding.size_mm) in text
            if finding.label in LUNG and finding.location:
                assert finding.location.lower() in text
            if finding.label in LUNG | {"Pleural effusion"} and finding.side in ("right", "left"):
                assert finding.side in text
            if finding.side == "bilateral" and finding.label in LUNG | {"Pleural effusion"}:
                assert "both" in text or "bilateral" in text


def test_each_finding_has_its_own_positive_sentence():
    findings = [
        Finding("Lung nodule", "lungs", "right", "right upper lobe", 7),
        Finding("Lung nodule", "lungs", "left", "left lower lobe", 12),
    ]
    report = write_report(findings, np.random.default_rng(0))
    body = [s for s in report.sentences if s.section == "findings" and s.positive]
    assert len(body) == 2
    assert "7 mm" in report.findings and "12 mm" in report.findings
    assert "right upper lobe" in report.findings and "left lower lobe" in report.findings


def test_normal_study_says_normal_and_states_no_positive():
    for seed in range(20):
        report = write_report([], np.random.default_rng(seed))
        assert not any(s.positive for s in report.sentences)
        impression = report.impression.lower()
        assert "no " in impression or "normal" in impression
        assert report.findings.startswith(("Trachea", "The trachea", "Both main"))


def test_phrasing_varies_across_seeds():
    findings = [
        Finding("Lung nodule", "lungs", "right", "superior segment of the right lower lobe", 7),
        Finding("Cardiomegaly", "heart", severity="mild"),
    ]
    texts = {write_report(findings, np.random.default_rng(seed)).findings for seed in range(50)}
    assert len(texts) >= 10
    nodule_sentences = set()
    for seed in range(50):
        report = write_report(findings, np.random.default_rng(seed))
        nodule_sentences |= {s.text for s in report.sentences if "Lung nodule" in s.positive}
    assert len(nodule_sentences) >= 6


def test_sentences_read_cleanly():
    for findings in CASES:
        report = write_report(findings, np.random.default_rng(1))
        for sentence in report.sentences:
            text = sentence.text
            assert text[0].isupper() and text.endswith(".")
            assert "  " not in text and " ." not in text and " ," not in text and "{" not in text
            assert " a 8" not in text.lower() and " a 11" not in text.lower() and "a 18 " not in text.lower()


# ----------------------------------------------------------------------- QA


def _by_kind(pairs, kind):
    return [p for p in pairs if p.kind == kind]


@pytest.mark.parametrize("modality", ["3d", "2d"])
def test_qa_answers_agree_with_the_findings(modality):
    for findings in CASES + [EVERY_CLASS, []]:
        present = {f.label for f in findings}
        once = {f.label: f for f in findings if sum(g.label == f.label for g in findings) == 1}
        pairs = make_qa(findings, np.random.default_rng(5), modality=modality)
        for pair in pairs:
            assert pair.kind in ("yes_no", "multiple_choice", "short_answer", "organ")
            assert pair.organ is None or pair.organ in ORGAN_GROUPS
            assert pair.label is None or pair.label in CTRATE_ABNORMALITIES
            medium_words = ("this slice", "this image") if modality == "2d" else ("this scan",)
            assert any(word in pair.question for word in medium_words)
            if modality == "2d":
                assert "this scan" not in pair.question
        yes_no = _by_kind(pairs, "yes_no")
        assert yes_no
        for pair in yes_no:
            assert pair.answer == ("Yes" if pair.label in present else "No")
        n_yes = sum(p.answer == "Yes" for p in yes_no)
        if present and len(present) < 18:
            assert n_yes == len(yes_no) - n_yes
        for pair in _by_kind(pairs, "multiple_choice"):
            letter, _, option = pair.answer.partition(". ")
            assert option in pair.options
            assert string.ascii_uppercase.index(letter) == pair.options.index(option)
            assert pair.answer in pair.question.splitlines()
            correct = [o for o in pair.options if o in present or (o == NO_ABNORMALITY_OPTION and not present)]
            assert correct == [option]
            assert all(o in CTRATE_ABNORMALITIES or o == NO_ABNORMALITY_OPTION for o in pair.options)
            assert len(pair.options) >= 2
        for pair in _by_kind(pairs, "short_answer"):
            finding = once[pair.label]
            assert pair.organ == finding.organ
            q = pair.question
            if q.startswith("On which side"):
                assert pair.answer.lower() == finding.side
            elif q.startswith("Where"):
                assert pair.answer == finding.location
            elif q.startswith("How many"):
                assert int(pair.answer) == finding.count
            elif q.startswith("How severe"):
                assert pair.answer.lower() == finding.severity
            else:
                assert pair.answer == format_mm(finding.size_mm)
        organ_pairs = _by_kind(pairs, "organ")
        assert len(organ_pairs) == len(findings)
        for pair, finding in zip(organ_pairs, findings):
            assert pair.organ == finding.organ and pair.label == finding.label
            assert pair.answer.startswith(finding.label)


def test_short_answers_cover_the_fields_a_finding_has():
    finding = Finding("Lung nodule", "lungs", "right", "right upper lobe", 7.5, count=3, severity="mild")
    pairs = _by_kind(make_qa([finding], np.random.default_rng(0)), "short_answer")
    assert {p.answer for p in pairs} == {"Right", "right upper lobe", "3", "7.5 mm"}
    graded = Finding("Consolidation", "lungs", "left", "left lower lobe", 30, severity="severe")
    answers = {p.answer for p in _by_kind(make_qa([graded], np.random.default_rng(0)), "short_answer")}
    assert answers == {"Left", "left lower lobe", "30 mm", "Severe"}
    bare = Finding("Emphysema", "lungs")
    assert _by_kind(make_qa([bare], np.random.default_rng(0)), "short_answer") == []


def test_normal_study_multiple_choice_answers_no_abnormality():
    pairs = make_qa([], np.random.default_rng(2))
    (mc,) = _by_kind(pairs, "multiple_choice")
    assert mc.answer.endswith(NO_ABNORMALITY_OPTION)
    assert all(p.answer == "No" for p in _by_kind(pairs, "yes_no"))


# ----------------------------------------------------------------------- rows


def test_chat_row_3d_format_is_the_authors():
    pair = QAPair("Is there a pleural effusion?", "Yes", "yes_no", "lungs", label="Pleural effusion")
    row = chat_row(pair, "/data/case_001.nii.gz")
    assert row["messages"] == [
        {
            "role": "user",
            "content": "<|image3d_start|><|image3d|><|image3d_end|>\n"
            "<|organ_start|><|mask3d|><|organ_end|>\nIs there a pleural effusion?",
        },
        {"role": "assistant", "content": "Yes"},
    ]
    assert row["image"] == "/data/case_001.nii.gz" and row["organ"] == "lungs"
    assert json.loads(json.dumps(row)) == row
    bare = chat_row(pair, "x.nii.gz", with_organ=False)
    assert bare["messages"][0]["content"] == "<|image3d_start|><|image3d|><|image3d_end|>\nIs there a pleural effusion?"


def test_chat_row_2d_format_and_organless_pair():
    pair = QAPair("Which?\nA. X\nB. Y", "B. Y", "multiple_choice", None, ("X", "Y"))
    row = chat_row(pair, "slice.png", modality="2d")
    assert row["messages"][0]["content"] == (
        "<|image2d_start|><|image2d|><|image2d_end|>\n<|organ_start|><|mask2d|><|organ_end|>\nWhich?\nA. X\nB. Y"
    )
    assert "organ" not in row
    assert IMAGE_TOKENS["2d"] == "<|image2d_start|><|image2d|><|image2d_end|>"
    assert ORGAN_TOKENS["3d"] == "<|organ_start|><|mask3d|><|organ_end|>"
    with pytest.raises(ValueError):
        chat_row(pair, "x", modality="4d")


def test_report_row_format():
    report = write_report(CASES[0], np.random.default_rng(0))
    row = report_row(report, "/data/case.nii.gz")
    assert REPORT_QUESTION == "Can you describe the CT image?"
    assert row["messages"][0] == {
        "role": "user",
        "content": "<|image3d_start|><|image3d|><|image3d_end|>\nCan you describe the CT image?",
    }
    assert row["messages"][1] == {
        "role": "assistant",
        "content": f"Findings: {report.findings}\nImpression: {report.impression}",
    }
    assert row["image"] == "/data/case.nii.gz"
    assert json.loads(json.dumps(row)) == row
    row2d = report_row(report, "s.png", modality="2d")
    assert row2d["messages"][0]["content"].startswith("<|image2d_start|><|image2d|><|image2d_end|>\n")
    all_rows = [chat_row(p, "a.nii.gz") for p in make_qa(CASES[0], np.random.default_rng(0))]
    json.dumps(all_rows)


def test_drawing_details_stay_out_of_the_text():
    """Fields the drawing code fills for its own use (a heart's width, its place "heart") are not reported."""
    findings = [
        Finding("Cardiomegaly", "heart", location="heart", size_mm=151.2, severity="mild"),
        Finding("Lymphadenopathy", "others", "right", "right hilar, subcarinal", 21.7, count=2),
        Finding("Emphysema", "lungs", "right", "right upper lobe", count=102),
    ]
    for seed in range(10):
        report = write_report(findings, np.random.default_rng(seed))
        assert "151.2" not in report.findings + report.impression
        assert "in the heart" not in report.findings + report.impression
        assert "21.7 mm" in report.findings
        assert "right hilar and subcarinal regions" in report.findings
    pairs = make_qa(findings, np.random.default_rng(0))
    short = _by_kind(pairs, "short_answer")
    assert not [
        p
        for p in short
        if p.label == "Cardiomegaly" and p.question.startswith(("Where", "What is the size", "How large"))
    ]
    assert not [p for p in short if p.label == "Emphysema" and p.question.startswith("How many")]
    assert [p.answer for p in short if p.label == "Lymphadenopathy" and p.question.startswith("How many")] == ["2"]
