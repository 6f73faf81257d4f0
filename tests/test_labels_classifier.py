"""The report classifier: it learns the labels, survives save/load exactly, refuses damaged or foreign
files (without ever running code from them), and ``omnict labels train|predict`` work on CT-RATE files."""

from __future__ import annotations

import base64
import csv
import gzip
import json
import pickle

import numpy as np
import pytest
from click.testing import CliRunner

from omnict_cli.cli import main
from omnict_cli.labels.classes import CTRATE_ABNORMALITIES
from omnict_cli.labels.classifier import (
    ClassifierConfig,
    ClassifierFileError,
    ReportClassifier,
    _payload_hash,
    fit_platt,
)
from omnict_cli.labels.corpus import training_corpus
from omnict_cli.labels.ctrate_io import LabelledReport, report_text, write_labels, write_reports

N_TRAIN = 160


def texts_and_labels(reports):
    texts = [report_text(report) for report in reports]
    labels = np.array([[report.labels[name] for name in CTRATE_ABNORMALITIES] for report in reports])
    return texts, labels


@pytest.fixture(scope="module")
def corpus():
    return texts_and_labels(training_corpus(N_TRAIN, seed=0))


@pytest.fixture(scope="module")
def unseen():
    return texts_and_labels(training_corpus(60, seed=5))


@pytest.fixture(scope="module")
def model(corpus):
    texts, labels = corpus
    return ReportClassifier(ClassifierConfig(word_max_features=2000, char_max_features=3000)).fit(
        texts, labels, corpus_name="test corpus"
    )


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    return model.save(tmp_path_factory.mktemp("model") / "labeler.json")


# --------------------------------------------------------------------------
# Learning
# --------------------------------------------------------------------------


def test_probabilities_are_calibrated_shape_and_predict_unseen_reports(model, unseen):
    texts, labels = unseen
    probabilities = model.predict_proba(texts)
    assert probabilities.shape == (len(texts), 18)
    assert ((probabilities > 0) & (probabilities < 1)).all()
    predicted = model.predict(texts)
    assert set(np.unique(predicted)) <= {0, 1}
    agreement = (predicted == labels).mean()
    assert agreement > 0.9, f"only {agreement:.1%} of unseen labels right"


def test_metadata_records_training(model):
    assert model.metadata["n_reports"] == N_TRAIN
    assert model.metadata["corpus"] == "test corpus"
    assert sum(model.metadata["class_counts"].values()) > 0
    assert model.metadata["constant_classes"] == []


def test_class_without_positives_becomes_constant_predictor(corpus):
    texts, labels = corpus[0][:80], corpus[1][:80].copy()
    column = CTRATE_ABNORMALITIES.index("Hiatal hernia")
    labels[:, column] = 0
    model = ReportClassifier(
        ClassifierConfig(word_max_features=500, char_max_features=500, use_rule_features=False)
    ).fit(texts, labels)
    probabilities = model.predict_proba(["There is a large hiatal hernia.", "Normal chest CT."])
    assert np.allclose(probabilities[:, column], 1 / (80 + 2))
    assert model.metadata["constant_classes"] == ["Hiatal hernia"]


def test_platt_scaling_recovers_a_known_sigmoid():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=20000)
    targets = (rng.random(20000) < 1 / (1 + np.exp(-(2.0 * scores - 1.0)))).astype(int)
    a, b = fit_platt(scores, targets)
    assert a == pytest.approx(2.0, abs=0.1)
    assert b == pytest.approx(-1.0, abs=0.1)


def test_labels_must_be_binary_and_match_texts(corpus):
    texts, labels = corpus
    with pytest.raises(ValueError, match="shape"):
        ReportClassifier().fit(texts, labels[:10])
    with pytest.raises(ValueError, match="0 or 1"):
        ReportClassifier().fit(texts, labels * 2)


# --------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------


def test_load_of_save_gives_identical_probabilities(model, saved, unseen, tmp_path):
    texts, _ = unseen
    expected = model.predict_proba(texts)
    assert np.array_equal(ReportClassifier.load(saved).predict_proba(texts), expected)
    compressed = model.save(tmp_path / "labeler.json.gz")
    assert compressed.read_bytes()[:2] == b"\x1f\x8b"
    assert compressed.stat().st_size < saved.stat().st_size
    assert np.array_equal(ReportClassifier.load(compressed).predict_proba(texts), expected)


def test_file_holds_vocabularies_parameters_and_metadata_as_plain_json(saved):
    document = json.loads(saved.read_text())
    assert document["format"] == "omnict-report-classifier" and document["version"] == 2
    payload = document["payload"]
    word, char = payload["vectorizers"]["word"], payload["vectorizers"]["char"]
    assert word["params"]["analyzer"] == "word" and word["params"]["ngram_range"] == [1, 2]
    assert char["params"]["analyzer"] == "char_wb" and char["params"]["ngram_range"] == [3, 5]
    assert word["params"]["sublinear_tf"] is True and word["params"]["norm"] == "l2"
    assert word["params"]["token_pattern"] == "words-of-2-or-more-characters"  # a name, never a regex
    assert "effusion" in word["terms"]
    assert payload["linear"]["coef"]["shape"] == [18, len(word["terms"]) + len(char["terms"]) + 54]
    assert payload["metadata"]["n_reports"] == N_TRAIN
    assert document["sha256"] == _payload_hash(payload)


def _rewrite(path, edit, *, rehash=True):
    """Apply ``edit`` to the parsed file and write it back (with a valid checksum unless rehash is False)."""
    document = json.loads(path.read_text())
    edit(document)
    if rehash:
        document["sha256"] = _payload_hash(document["payload"])
    path.write_text(json.dumps(document))


def _set_array(entry, values):
    entry["base64"] = base64.b64encode(np.asarray(values, dtype="<f8").tobytes()).decode()


@pytest.mark.parametrize(
    "edit, rehash, message",
    [
        (lambda d: d.update(sha256="0" * 64), False, "checksum"),
        (lambda d: d["payload"]["metadata"].update(n_reports=1), False, "checksum"),
        (lambda d: d.update(format="something-else"), True, "format"),
        (lambda d: d.update(version=99), True, "version 99"),
        (lambda d: _set_array(d["payload"]["linear"]["intercept"], [np.nan] * 18), True, "non-finite"),
        (lambda d: _set_array(d["payload"]["calibration"]["a"], [np.inf] * 18), True, "non-finite"),
        (lambda d: d["payload"]["linear"]["coef"].update(shape=[17, 3]), True, "shape"),
        (lambda d: d["payload"]["vectorizers"]["word"]["terms"].pop(), True, "shape"),
        (lambda d: d["payload"]["vectorizers"]["char"]["params"].update(analyzer="char"), True, "analyzer 'char'"),
        (lambda d: d["payload"]["vectorizers"]["word"]["params"].update(token_pattern="(("), True, "token_pattern"),
        (
            lambda d: d["payload"]["vectorizers"]["word"]["params"].update(token_pattern=r"(a+)+$"),
            True,
            "not one of the named patterns",
        ),
        (
            lambda d: d["payload"]["vectorizers"]["word"]["params"].update(token_pattern=["x"]),
            True,
            "not one of the named patterns",
        ),
        (lambda d: d.update(payload=[1, 2]), True, "no payload object"),
    ],
)
def test_damaged_files_are_refused_naming_the_file(saved, tmp_path, edit, rehash, message):
    damaged = tmp_path / "damaged.json"
    damaged.write_bytes(saved.read_bytes())
    _rewrite(damaged, edit, rehash=rehash)
    with pytest.raises(ClassifierFileError, match=message) as caught:
        ReportClassifier.load(damaged)
    assert str(damaged) in str(caught.value)


def _as_version_1(document, word_pattern):
    """The document as omnict's version 1 wrote it: the token pattern as a regular expression."""
    document["version"] = 1
    for entry in document["payload"]["vectorizers"].values():
        entry["params"]["token_pattern"] = r"(?u)\b\w\w+\b"
    document["payload"]["vectorizers"]["word"]["params"]["token_pattern"] = word_pattern


def test_version_1_files_load_only_with_a_known_token_pattern(saved, unseen, tmp_path):
    texts, _ = unseen
    old = tmp_path / "v1.json"
    old.write_bytes(saved.read_bytes())
    _rewrite(old, lambda d: _as_version_1(d, r"(?u)\b\w\w+\b"))
    assert np.array_equal(
        ReportClassifier.load(old).predict_proba(texts), ReportClassifier.load(saved).predict_proba(texts)
    )
    _rewrite(old, lambda d: _as_version_1(d, r"(?u)\b(\w+\s?)+\b"))  # catastrophic on long words
    with pytest.raises(ClassifierFileError, match="is not one of the named patterns") as caught:
        ReportClassifier.load(old)
    assert str(old) in str(caught.value)


def test_a_huge_report_is_truncated_with_a_warning_not_gigabytes(model, caplog):
    import resource

    text = "Minimal pleural effusion on the right. " * 200_000  # 7.8 MB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with caplog.at_level("WARNING", logger="omnict_cli.labels.report_size"):
        probabilities = model.predict_proba([text])
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert probabilities[0, CTRATE_ABNORMALITIES.index("Pleural effusion")] > 0.5
    assert "7,800,000 characters is longer than the labeler's limit of 1,048,576" in caplog.text
    assert grown_mb < 600, f"predict grew the process by {grown_mb:.0f} MB"


def test_non_finite_json_literal_is_refused(saved, tmp_path):
    damaged = tmp_path / "nan.json"
    damaged.write_text(saved.read_text().replace('"n_reports":160', '"n_reports":NaN'))
    with pytest.raises(ClassifierFileError, match="non-finite number NaN"):
        ReportClassifier.load(damaged)


class _Tripwire:
    """Unpickling this would create a file: proof that load never unpickles."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("name", ["model.json", "model.json.gz"])
def test_pickle_renamed_to_json_is_refused_and_never_run(tmp_path, name):
    marker = tmp_path / "code_ran"
    data = pickle.dumps(_Tripwire(marker))
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(ClassifierFileError, match="not a classifier file") as caught:
        ReportClassifier.load(path)
    assert str(path) in str(caught.value)
    assert not marker.exists()


def test_other_json_and_missing_files_are_refused(tmp_path):
    other = tmp_path / "config.json"
    other.write_text('{"model_type": "bert"}')
    with pytest.raises(ClassifierFileError, match="not a classifier file"):
        ReportClassifier.load(other)
    with pytest.raises(ClassifierFileError, match="not found"):
        ReportClassifier.load(tmp_path / "absent.json")


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _write_ctrate_files(folder, reports):
    """CT-RATE-format reports and labels CSVs, with one extra name on each side."""
    named = [LabelledReport(f"train_{i}_a_1.nii.gz", r.findings, r.impression, r.labels) for i, r in enumerate(reports)]
    write_reports(
        folder / "train_reports.csv", named + [LabelledReport("only_report_a_1.nii.gz", "No pleural effusion.", "")]
    )
    labels = {r.volume_name: r.labels for r in named}
    labels["only_labels_a_1.nii.gz"] = named[0].labels
    write_labels(folder / "train_labels.csv", labels)


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    _write_ctrate_files(folder, training_corpus(120, seed=3))
    result = CliRunner().invoke(
        main,
        [
            "labels",
            "train",
            "--reports",
            str(folder / "train_reports.csv"),
            "--labels",
            str(folder / "train_labels.csv"),
            "--out",
            str(folder / "model.json.gz"),
        ],
    )
    return folder, result


def test_labels_train_on_ctrate_files_reports_unmatched_names(cli_model):
    folder, result = cli_model
    assert result.exit_code == 0, result.output
    assert "only_report_a_1.nii.gz" in result.output and "only_labels_a_1.nii.gz" in result.output
    assert "trained on 120 reports" in result.output
    model = ReportClassifier.load(folder / "model.json.gz")
    assert model.metadata["n_reports"] == 120 and model.metadata["corpus"] == "train_reports.csv"


def _read_csv(path):
    with open(path, newline="") as stream:
        return list(csv.reader(stream))


def test_labels_predict_writes_ctrate_label_csv(cli_model, tmp_path):
    folder, _ = cli_model
    records = [
        {
            "study_id": "scan_a",
            "findings": "A 7 mm solid nodule is seen in the right upper lobe. No pleural effusion.",
            "impression": "Lung nodule.",
            "status": "ok",
        },
        {
            "study_id": "scan_b",
            "report": "Findings: Bilateral pleural effusion is present.\nImpression: Bilateral pleural effusion.",
        },
        {"study_id": "scan_c", "status": "error", "error": {"type": "StudyLoadError", "message": "x"}},
    ]
    source = tmp_path / "generated.jsonl"
    source.write_text("\n".join(json.dumps(record) for record in records) + "\n")
    out = tmp_path / "labels.csv"
    result = CliRunner().invoke(
        main, ["labels", "predict", str(source), "--out", str(out), "--model", str(folder / "model.json.gz")]
    )
    assert result.exit_code == 0, result.output
    rows = _read_csv(out)
    assert rows[0] == ["VolumeName", *CTRATE_ABNORMALITIES]
    by_name = {row[0]: dict(zip(CTRATE_ABNORMALITIES, row[1:])) for row in rows[1:]}
    assert set(by_name) == {"scan_a", "scan_b"}
    assert by_name["scan_a"]["Lung nodule"] == "1" and by_name["scan_a"]["Pleural effusion"] == "0"
    assert by_name["scan_b"]["Pleural effusion"] == "1" and by_name["scan_b"]["Lung nodule"] == "0"
    assert "scan_c" in result.output and "error" in result.output


def test_labels_predict_explain_shows_sentence_and_rule(tmp_path):
    source = tmp_path / "reports.csv"
    write_reports(
        source,
        [LabelledReport("case_1.nii.gz", "Mild cardiomegaly is noted. No pericardial effusion.", "Cardiomegaly.")],
    )
    result = CliRunner().invoke(
        main, ["labels", "predict", str(source), "--out", str(tmp_path / "out.csv"), "--method", "rules", "--explain"]
    )
    assert result.exit_code == 0, result.output
    assert "case_1.nii.gz: 1 positive" in result.output
    assert "Cardiomegaly [findings]: Mild [[cardiomegaly]] is noted." in result.output
    explained = [line for line in result.output.splitlines() if line.startswith("  ")]
    assert explained and all(line.startswith("  Cardiomegaly [") for line in explained)


def test_labels_predict_refuses_a_bad_model_file(tmp_path):
    source = tmp_path / "reports.csv"
    write_reports(source, [LabelledReport("case_1.nii.gz", "Normal.", "")])
    bad = tmp_path / "bad.json"
    bad.write_bytes(pickle.dumps({"a": 1}))
    result = CliRunner().invoke(
        main, ["labels", "predict", str(source), "--out", str(tmp_path / "out.csv"), "--model", str(bad)]
    )
    assert result.exit_code != 0
    assert str(bad) in result.output and "not a classifier file" in result.output
    assert not (tmp_path / "out.csv").exists()
