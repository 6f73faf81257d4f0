"""CT-RATE's lymph-node convention (the default) and the stricter clinical reading (issue 24).

CT-RATE's labels mark Lymphadenopathy present whenever a report affirms lymph
nodes, whatever their size; only their absence is negative. ``--convention
clinical`` counts enlarged or pathological nodes only. The sentences below were
written for this issue (none is taken from CT-RATE's reports).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from omnict_cli.labels.classes import CTRATE_ABNORMALITIES
from omnict_cli.labels.classifier import BUNDLED_MODEL
from omnict_cli.labels.labeler import explain, label_reports
from omnict_cli.labels.rules import AFFIRMED_NODE_RULE, CONVENTIONS, label_report

LAP = "Lymphadenopathy"
LAP_COLUMN = CTRATE_ABNORMALITIES.index(LAP)

# (sentence, CT-RATE convention, clinical reading)
CASES = [
    # nodes affirmed, small or of no stated size: CT-RATE counts them, a clinician does not
    ("Millimetric lymph nodes are noted in the prevascular space.", 1, 0),
    ("Lymph nodes not reaching pathological size are present at the aortopulmonary window.", 1, 0),
    ("A few small lymph nodes lie in the right paratracheal region.", 1, 0),
    ("Subcentimetric hilar lymph nodes were seen bilaterally.", 1, 0),
    ("The lymph nodes in the subcarinal region were not enlarged.", 1, 0),
    ("Calcified lymph nodes sit in the left hilum.", 1, 0),
    # enlarged or pathological nodes: positive in both readings
    ("An enlarged lymph node of 14 mm is seen at the subcarinal station.", 1, 1),
    ("Pathologically enlarged lymph nodes fill the right hilum.", 1, 1),
    ("Mediastinal lymphadenopathy is present.", 1, 1),
    ("Bulky axillary nodes are noted on the left.", 1, 1),
    ("A 15 mm subcarinal node appears enlarged.", 1, 1),  # "node" without "lymph", at a station
    ("A 6 mm prevascular node is seen.", 1, 0),
    # absence: negative in both readings
    ("No lymph node was seen in the mediastinum.", 0, 0),
    ("No pathological LAP in the mediastinal or hilar stations.", 0, 0),
    ("There is no lymphadenopathy.", 0, 0),
    ("No lymph nodes of pathological size or appearance were found in either axilla.", 0, 0),
    ("Enlarged lymph nodes were not identified.", 0, 0),
    # hedged or stated normal: negative in both readings
    ("A lymph node in the prevascular area is possible.", 0, 0),
    ("Mediastinal lymph nodes are within normal limits.", 0, 0),
]


@pytest.mark.parametrize("sentence, ctrate, clinical", CASES)
def test_the_rules_read_lymph_nodes_by_the_chosen_convention(sentence, ctrate, clinical):
    assert label_report(sentence).vector()[LAP] == ctrate
    assert label_report(sentence, convention="ctrate").vector()[LAP] == ctrate
    assert label_report(sentence, convention="clinical").vector()[LAP] == clinical


@pytest.mark.parametrize("method", ["rules", "classifier"])
def test_both_labeling_methods_follow_the_convention_for_lymph_nodes(method):
    if method == "classifier" and not BUNDLED_MODEL.exists():
        pytest.skip("bundled classifier not installed")
    texts = [f"Findings: Trachea and both main bronchi are open. {sentence}" for sentence, _, _ in CASES]
    for convention, column in (("ctrate", 1), ("clinical", 2)):
        labels = label_reports(texts, method, convention=convention)[:, LAP_COLUMN]
        assert labels.tolist() == [case[column] for case in CASES], convention


def test_the_other_classes_do_not_depend_on_the_convention():
    text = (
        "Findings: Millimetric lymph nodes in the mediastinum. Mild emphysema in both upper lobes. "
        "A 5 mm nodule in the right lower lobe. Coronary artery calcification."
    )
    ctrate, clinical = (label_report(text, convention=name).vector() for name in CONVENTIONS)
    assert ctrate[LAP] == 1 and clinical[LAP] == 0
    assert {k: v for k, v in ctrate.items() if k != LAP} == {k: v for k, v in clinical.items() if k != LAP}


def test_an_unknown_convention_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown labelling convention 'radiology'; use one of ctrate, clinical"):
        label_report("No effusion.", convention="radiology")


def test_explain_names_the_sentence_and_the_convention_behind_a_small_node():
    sentence = "Lymph nodes not reaching pathological size are present at the aortopulmonary window."
    (positives,) = explain([sentence], "rules")
    (lymph,) = [positive for positive in positives if positive.label == LAP]
    assert lymph.lines() == [
        f"{LAP} [findings]: [[Lymph nodes]] not reaching pathological size are present at the aortopulmonary "
        f"window. (term 'Lymph nodes'; {AFFIRMED_NODE_RULE})"
    ]
    (clinical,) = explain([sentence], "rules", convention="clinical")
    assert LAP not in [positive.label for positive in clinical]


def test_labels_predict_takes_the_convention_and_explains_the_sentence(tmp_path):
    reports = tmp_path / "reports.csv"
    reports.write_text(
        "VolumeName,Findings_EN,Impressions_EN\n"
        "case_1.nii.gz,Millimetric lymph nodes are noted in the prevascular space.,Normal study.\n"
    )

    def predict(*extra):
        out = tmp_path / "labels.csv"
        command = [sys.executable, "-m", "omnict_cli", "labels", "predict", str(reports), "--out", str(out)]
        result = subprocess.run([*command, "--method", "rules", *extra], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        header, row = out.read_text().splitlines()
        return dict(zip(header.split(","), row.split(",")))[LAP], result.stdout

    default, explained = predict("--explain")
    assert default == "1"
    assert "[[lymph nodes]] are noted in the prevascular space" in explained
    assert AFFIRMED_NODE_RULE in explained
    clinical, explained = predict("--convention", "clinical", "--explain")
    assert clinical == "0" and LAP not in explained


def test_report_label_convention_reaches_the_labels_of_each_record():
    from omnict_cli.run.pipeline import Pipeline, RunSettings

    text = "Findings: Millimetric lymph nodes are noted in the prevascular space."
    for convention, expected in (("ctrate", 1), ("clinical", 0)):
        settings = RunSettings(add_labels=True, label_convention=convention)
        (labels,) = Pipeline(engine=None, setup=None, settings=settings)._labels([text])
        assert labels[LAP] == expected, convention
    help_text = subprocess.run(
        [sys.executable, "-m", "omnict_cli", "report", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--label-convention [ctrate|clinical]" in help_text
