"""``omnict score``: reports and VQA answers against references, with the join, missing studies,
failed predictions, JSON output and the paper's metrics checked on the phantom examples."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from omnict_cli.cli import main
from omnict_cli.labels.classes import CTRATE_ABNORMALITIES
from omnict_cli.metrics.score_files import (
    ScoreOptions,
    ScoringError,
    infer_kind,
    join_studies,
    options_in_question,
    read_reference_questions,
    score_answers,
    score_reports,
    study_key,
)

PHANTOMS = Path(__file__).resolve().parents[1] / "examples" / "phantoms"
REFERENCES = PHANTOMS / "references.csv"
LABELS = PHANTOMS / "labels.csv"
QA = PHANTOMS / "qa.jsonl"
FAST = ScoreOptions(method="rules", bootstrap=200)


def reference_rows():
    with open(REFERENCES, newline="") as stream:
        return list(csv.DictReader(stream))


def label_rows():
    with open(LABELS, newline="") as stream:
        return {row["VolumeName"]: row for row in csv.DictReader(stream)}


def strict_json(text):
    """Parse JSON the way non-Python readers do: a bare NaN / Infinity token is an error."""

    def reject(token):
        raise ValueError(f"not valid JSON: {token}")

    return json.loads(text, parse_constant=reject)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def generated_records(rows, study_prefix="volumes/"):
    """``omnict report``-style records carrying the reference texts (a perfect generator)."""
    return [
        {
            "study_id": study_prefix + row["VolumeName"].removesuffix(".nii.gz"),
            "findings": row["Findings_EN"],
            "impression": row["Impressions_EN"],
            "status": "ok",
        }
        for row in rows
    ]


# --------------------------------------------------------------------------
# Join
# --------------------------------------------------------------------------


def test_study_key_joins_bare_names_file_names_and_paths():
    assert study_key("case_0001") == study_key("case_0001.nii.gz") == study_key("data/volumes/case_0001.nii.gz")
    assert study_key("C:\\scans\\case_0001.nrrd") == "case_0001"
    assert study_key("valid_1_a_1.nii.gz") != study_key("valid_1_a_2.nii.gz")


def test_join_lists_unmatched_names_on_both_sides():
    join = join_studies(
        ["x/case_1", "x/case_2", "x/extra"],
        ["case_1.nii.gz", "case_2.nii.gz", "case_3.nii.gz"],
        prediction_source="p.jsonl",
        reference_source="r.csv",
    )
    assert join.matched == [("x/case_1", "case_1.nii.gz"), ("x/case_2", "case_2.nii.gz")]
    assert join.no_prediction == ["case_3.nii.gz"] and join.no_reference == ["x/extra"]
    lines = join.summary_lines("p.jsonl", "r.csv")
    assert any(
        "1 reference studies have no prediction in p.jsonl" in line and "case_3.nii.gz" in line for line in lines
    )
    assert any("1 predicted studies have no reference in r.csv" in line and "x/extra" in line for line in lines)


def test_two_references_with_one_key_are_an_error():
    with pytest.raises(ScoringError, match="same study") as caught:
        join_studies(["a/case_1"], ["case_1", "x/case_1.nii.gz"], prediction_source="p.jsonl", reference_source="r.csv")
    assert "r.csv" in str(caught.value)


def test_predictions_sharing_a_key_without_a_reference_are_only_left_out():
    # the README's own run: the real CT as .nii.gz and .nrrd, phantoms with references
    join = join_studies(
        ["ct_chest_small.nii.gz", "ct_chest_small.nrrd", "phantoms/volumes/case_0002.nii.gz"],
        ["case_0002"],
        prediction_source="p.jsonl",
        reference_source="r.csv",
    )
    assert join.matched == [("phantoms/volumes/case_0002.nii.gz", "case_0002")]
    assert join.no_reference == ["ct_chest_small.nii.gz", "ct_chest_small.nrrd"] and join.ambiguous == []


def test_a_reference_several_predictions_share_takes_the_one_with_its_full_name():
    join = join_studies(
        ["volumes/case_1.nii.gz", "slices/case_1.png"],
        ["case_1.nii.gz"],
        prediction_source="p.jsonl",
        reference_source="r.csv",
    )
    assert join.matched == [("volumes/case_1.nii.gz", "case_1.nii.gz")] and join.ambiguous == []


def test_a_reference_no_prediction_names_fully_is_left_out_as_ambiguous_alone():
    join = join_studies(
        ["a/case_1.nii.gz", "b/case_1.nrrd", "case_2.nii.gz"],
        ["case_1", "case_2"],
        prediction_source="p.jsonl",
        reference_source="r.csv",
    )
    assert join.matched == [("case_2.nii.gz", "case_2")]
    assert join.ambiguous == ["case_1 (a/case_1.nii.gz / b/case_1.nrrd)"] and join.no_prediction == []
    line = next(line for line in join.summary_lines("p.jsonl", "r.csv") if "several" in line)
    assert line.startswith("1 reference studies match several predictions in p.jsonl") and "b/case_1.nrrd" in line


# --------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------


def test_references_against_themselves_score_perfectly_with_the_bundled_classifier(tmp_path):
    generated = write_jsonl(tmp_path / "generated.jsonl", generated_records(reference_rows()))
    result = score_reports(generated, REFERENCES, ScoreOptions(bootstrap=200))
    report = result.classification
    supported = [scores for scores in report.per_class if scores.support]
    assert supported and all(scores.f1 == 1.0 for scores in supported)
    # the 4 phantom studies leave classes with nothing to score: not defined, not a perfect 1.0
    unsupported = [scores for scores in report.per_class if not scores.support]
    assert unsupported and all(math.isnan(scores.f1) and scores.fp == 0 for scores in unsupported)
    assert report.undefined_labels == [scores.label for scores in unsupported]
    assert report.macro_f1 == 1.0 and report.micro_f1 == 1.0
    assert result.text_scores["bleu4"] == pytest.approx(1.0) and result.text_scores["rouge_l"] == pytest.approx(1.0)
    assert result.macro_f1_ci == (1.0, 1.0)


def test_rule_labels_of_the_phantom_reports_match_their_label_file(tmp_path):
    generated = write_jsonl(tmp_path / "generated.jsonl", generated_records(reference_rows()))
    result = score_reports(generated, REFERENCES, ScoreOptions(method="rules", reference_labels=LABELS, bootstrap=200))
    expected_support = {name: sum(int(row[name]) for row in label_rows().values()) for name in CTRATE_ABNORMALITIES}
    assert {s.label: s.support for s in result.classification.per_class} == expected_support
    assert all(s.f1 == 1.0 for s in result.classification.per_class if s.support)


def test_missing_failed_and_empty_predictions_are_reported_and_scored_as_empty(tmp_path):
    rows = reference_rows()
    records = generated_records(rows[:3])
    records[1] = {
        "study_id": records[1]["study_id"],
        "status": "error",
        "error": {"type": "StudyLoadError", "message": "unreadable"},
    }
    records[2]["findings"] = records[2]["impression"] = ""
    records.append(
        {"study_id": "volumes/case_0042", "findings": "No pleural effusion.", "impression": "", "status": "ok"}
    )
    generated = write_jsonl(tmp_path / "generated.jsonl", records)
    result = score_reports(generated, REFERENCES, ScoreOptions(method="rules", reference_labels=LABELS, bootstrap=200))
    assert result.n_scored == 3
    assert result.failed == ["volumes/case_0002"] and result.empty == ["volumes/case_0003"]
    assert result.join.no_prediction == ["case_0004.nii.gz"] and result.join.no_reference == ["volumes/case_0042"]
    labels = label_rows()
    # the failed and the empty study predict nothing: each of their positives is a false negative
    expected_fn = {
        name: int(labels["case_0002.nii.gz"][name]) + int(labels["case_0003.nii.gz"][name])
        for name in CTRATE_ABNORMALITIES
    }
    assert {s.label: s.fn for s in result.classification.per_class} == expected_fn
    assert all(s.fp == 0 for s in result.classification.per_class)


def test_a_retried_study_counts_its_report_not_its_earlier_error(tmp_path):
    records = generated_records(reference_rows())
    retried = [{"study_id": records[0]["study_id"], "status": "error", "error": {"message": "timeout"}}, *records]
    generated = write_jsonl(tmp_path / "generated.jsonl", retried)
    result = score_reports(generated, REFERENCES, ScoreOptions(method="rules", reference_labels=LABELS, bootstrap=50))
    assert result.failed == [] and result.n_scored == 4 and result.classification.micro_f1 == 1.0


def test_skipped_records_of_a_report_run_are_left_out_not_refused(tmp_path):
    """`omnict report` records label maps found beside the scans as "skipped" with no text:
    they are not studies, so scoring leaves them out instead of stopping at them."""
    records = generated_records(reference_rows())
    skipped = {"study_id": "labels/case_0001", "status": "skipped", "skipped": "an organ label map"}
    generated = write_jsonl(tmp_path / "generated.jsonl", [*records, skipped])
    result = score_reports(generated, REFERENCES, ScoreOptions(method="rules", reference_labels=LABELS, bootstrap=50))
    assert result.n_scored == 4 and result.failed == [] and result.join.no_reference == []
    assert result.classification.micro_f1 == 1.0


def test_reference_labels_must_cover_the_scored_studies(tmp_path):
    generated = write_jsonl(tmp_path / "generated.jsonl", generated_records(reference_rows()))
    partial = tmp_path / "labels.csv"
    lines = LABELS.read_text().splitlines()
    partial.write_text("\n".join(lines[:3]) + "\n")
    with pytest.raises(ScoringError, match="2 scored reference studies have no labels") as caught:
        score_reports(generated, REFERENCES, ScoreOptions(method="rules", reference_labels=partial))
    assert "case_0003.nii.gz" in str(caught.value) and str(partial) in str(caught.value)


def test_nothing_in_common_is_an_error(tmp_path):
    generated = write_jsonl(tmp_path / "generated.jsonl", [{"study_id": "other", "findings": "Normal."}])
    with pytest.raises(ScoringError, match="no study is in both files"):
        score_reports(generated, REFERENCES, FAST)


def test_score_command_prints_table_16_and_writes_json(tmp_path):
    rows = reference_rows()
    records = generated_records(rows[:3])
    records[0]["findings"] = "There is no pleural effusion. No emphysema."  # drops case_0001's positives
    records[0]["impression"] = ""
    generated = write_jsonl(tmp_path / "generated.jsonl", records)
    out = tmp_path / "scores" / "scores.json"
    result = CliRunner().invoke(
        main,
        [
            "score",
            str(generated),
            "--references",
            str(REFERENCES),
            "--reference-labels",
            str(LABELS),
            "--method",
            "rules",
            "--bootstrap",
            "200",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    for text in (
        "Lung nodule",
        "macro",
        "micro",
        "bleu4",
        "rouge_l",
        "meteor",
        "95% bootstrap CI",
        "1 reference studies have no prediction",
        "case_0004.nii.gz",
    ):
        assert text in result.output
    data = strict_json(out.read_text())
    assert data["mode"] == "reports" and data["n_scored"] == 3 and data["no_prediction"] == ["case_0004.nii.gz"]
    nothing_to_score = [row for row in data["per_class"] if row["tp"] + row["fp"] + row["fn"] == 0]
    assert nothing_to_score and all(row["precision"] is row["recall"] is row["f1"] is None for row in nothing_to_score)
    assert "n/a" in result.output
    assert (
        f"n/a: no reference positives and no predictions; left out of the macro average "
        f"({len(nothing_to_score)} of 18 classes)"
    ) in result.output
    assert [row["label"] for row in data["per_class"]] == list(CTRATE_ABNORMALITIES)
    emphysema = next(row for row in data["per_class"] if row["label"] == "Emphysema")
    assert (emphysema["tp"], emphysema["fn"], emphysema["support"]) == (0, 1, 1)
    low, high = data["macro_f1_ci95"]
    assert low <= data["macro"]["f1"] < 1.0 and high <= 1.0
    assert f"{100 * data['macro']['f1']:.1f}" in result.output
    assert list(out.parent.iterdir()) == [out]


def test_score_command_reports_a_bad_predictions_file(tmp_path):
    bad = tmp_path / "generated.jsonl"
    bad.write_text('{"study_id": "case_0001", "findings": "ok"}\nnot json\n')
    result = CliRunner().invoke(main, ["score", str(bad), "--references", str(REFERENCES), "--method", "rules"])
    assert result.exit_code != 0
    assert str(bad) in result.output and "line 2" in result.output


# --------------------------------------------------------------------------
# VQA
# --------------------------------------------------------------------------


def test_phantom_chat_rows_are_read_as_references_with_inferred_kinds():
    rows = read_reference_questions(QA)
    assert len(rows) == len(QA.read_text().splitlines())
    assert {row.kind for row in rows} == {"closed", "choice", "open"}
    choice = next(row for row in rows if row.kind == "choice")
    assert len(choice.options) == 4 and choice.options[0].startswith("A. ")
    assert all("<|" not in row.question for row in rows)
    assert infer_kind("Yes", []) == "closed" and infer_kind("Right", []) == "open"
    assert options_in_question("Which?\nA. Emphysema\nB) Atelectasis") == ["A. Emphysema", "B) Atelectasis"]


def _answers_for(references, wrong: set[int], skip: set[int], failed: set[int]):
    """``omnict ask``-style records answering the reference questions, some wrongly."""
    records = []
    for index, row in enumerate(references):
        if index in skip:
            continue
        record = {
            "study_id": "volumes/" + study_key(row.study),
            "task": "ask",
            "prompt": row.question,
            "answer": row.answer,
            "status": "ok",
        }
        if index in wrong:
            record["answer"] = {
                "closed": "No" if row.answer.lower().startswith("yes") else "Yes",
                "choice": "Z",
                "open": "unrelated words",
            }[row.kind]
        if index in failed:
            record = {
                "study_id": record["study_id"],
                "prompt": row.question,
                "status": "error",
                "error": {"type": "RuntimeError", "message": "out of memory"},
            }
        records.append(record)
    return records


def test_vqa_accuracy_by_kind_with_missing_and_failed_answers(tmp_path):
    references = read_reference_questions(QA)
    by_kind = {kind: [i for i, row in enumerate(references) if row.kind == kind] for kind in ("closed", "choice")}
    wrong = {by_kind["closed"][0], by_kind["choice"][0]}
    failed = {by_kind["closed"][1]}
    skipped = {by_kind["closed"][2]}
    answers = write_jsonl(tmp_path / "answers.jsonl", _answers_for(references, wrong, skipped, failed))
    result = score_answers(answers, QA, FAST)
    closed, choice = result.scores.closed, result.scores.choice
    assert closed.n_total == len(by_kind["closed"]) - 1 and closed.n_correct == closed.n_total - 2
    assert choice.n_total == len(by_kind["choice"]) and choice.n_correct == choice.n_total - 1
    assert result.scores.open.token_f1 == pytest.approx(1.0)
    assert len(result.failed) == 1 and len(result.join.no_prediction) == 1
    assert result.join.no_prediction[0].startswith("volumes/case_")
    low, high = result.intervals["closed"]
    assert low <= closed.accuracy <= high


def test_question_asked_twice_of_one_study_pairs_in_file_order(tmp_path):
    references = write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {"image": "case_1.nii.gz", "question": "Which finding is present?", "answer": "Emphysema"},
            {"image": "case_1.nii.gz", "question": "Which finding is present?", "answer": "Atelectasis"},
        ],
    )
    answers = write_jsonl(
        tmp_path / "answers.jsonl",
        [
            {"study_id": "case_1", "question": "Which finding is present?", "answer": "Emphysema"},
            {"study_id": "case_1", "question": "which finding is  present?", "answer": "Atelectasis"},
        ],
    )
    result = score_answers(answers, references, FAST)
    assert result.scores.open.n_total == 2 and result.scores.open.exact_match == 1.0


def test_score_command_switches_to_vqa_for_answer_records(tmp_path):
    references = read_reference_questions(QA)
    answers = write_jsonl(tmp_path / "answers.jsonl", _answers_for(references, set(), set(), set()))
    out = tmp_path / "vqa.json"
    result = CliRunner().invoke(
        main, ["score", str(answers), "--references", str(QA), "--bootstrap", "100", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "closed" in result.output and "choice" in result.output and "token F1" in result.output
    data = json.loads(out.read_text())
    assert data["mode"] == "vqa" and data["closed"]["accuracy"] == 1.0 and data["choice"]["accuracy"] == 1.0
    assert data["n_scored"] == len(references) and data["n_no_prediction"] == 0


def test_scoring_a_ctrate_csv_of_generated_reports():
    result = CliRunner().invoke(
        main,
        [
            "score",
            str(REFERENCES),
            "--references",
            str(REFERENCES),
            "--reference-labels",
            str(LABELS),
            "--method",
            "rules",
            "--bootstrap",
            "50",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "4 studies" in result.output
    assert "macro F1 100.0 (95% bootstrap CI 100.0-100.0, 50 resamples)" in result.output
    supported = {name for name in CTRATE_ABNORMALITIES if any(int(row[name]) for row in label_rows().values())}
    rows = {
        name: line
        for line in result.output.splitlines()
        for name in CTRATE_ABNORMALITIES
        if line.startswith(f"│ {name} ")
    }
    assert len(rows) == 18
    # n/a in precision, recall and F1 exactly for the classes no phantom study has (the rules predict none)
    assert {name for name, line in rows.items() if line.count("n/a") == 3} == set(CTRATE_ABNORMALITIES) - supported
    assert all("n/a" not in rows[name] for name in supported)
    assert f"left out of the macro average ({18 - len(supported)} of 18 classes)" in result.output


def test_nothing_to_score_prints_n_a_and_writes_null_json(tmp_path):
    # every reference and every prediction is normal: no class is defined, so no macro / micro value either
    normal = tmp_path / "labels.csv"
    rows = [",".join(["VolumeName", *CTRATE_ABNORMALITIES])]
    rows += [",".join([name, *["0"] * len(CTRATE_ABNORMALITIES)]) for name in label_rows()]
    normal.write_text("\n".join(rows) + "\n")
    generated = write_jsonl(
        tmp_path / "generated.jsonl",
        [
            {"study_id": study_key(name), "findings": "Normal chest CT.", "impression": "", "status": "ok"}
            for name in label_rows()
        ],
    )
    out = tmp_path / "scores.json"
    result = CliRunner().invoke(
        main,
        [
            "score",
            str(generated),
            "--references",
            str(REFERENCES),
            "--reference-labels",
            str(normal),
            "--method",
            "rules",
            "--bootstrap",
            "20",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "macro F1 n/a (95% bootstrap CI n/a, 20 resamples)" in result.output
    assert "(18 of 18 classes)" in result.output and not re.search(r"\bnan\b", result.output, re.IGNORECASE)
    data = strict_json(out.read_text())
    assert data["macro"] == data["micro"] == {"precision": None, "recall": None, "f1": None}
    assert data["macro_f1_ci95"] == [None, None]
    assert all(row["f1"] is None and row["tn"] == 4 for row in data["per_class"])


def test_report_scores_dict_passes_strict_json_encoding(tmp_path):
    generated = write_jsonl(tmp_path / "generated.jsonl", generated_records(reference_rows()))
    result = score_reports(generated, REFERENCES, ScoreOptions(method="rules", reference_labels=LABELS, bootstrap=20))
    data = result.to_dict()
    json.dumps(data, allow_nan=False)  # raises ValueError on any NaN left in
    undefined = set(result.classification.undefined_labels)
    assert undefined and all((row["f1"] is None) == (row["label"] in undefined) for row in data["per_class"])
    assert data["macro"]["f1"] == 1.0
