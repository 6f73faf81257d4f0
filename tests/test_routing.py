"""Organ groups -> label ids, scan coverage, ``--organ`` parsing and question -> organ routing."""

from __future__ import annotations

import numpy as np
import pytest

from omnict_cli.labels import CTRATE_ABNORMALITIES
from omnict_cli.model.organ_pooling import organ_ids_mask
from omnict_cli.phantom.generate import PhantomConfig, generate_case
from omnict_cli.phantom.reports import CLASS_ORGAN, QUESTION_TERMS
from omnict_cli.segmentation.classes import BUILTIN_EXTRA_CLASSES, TOTALSEG_TOTAL_CLASSES
from omnict_cli.segmentation.organ_groups import ORGAN_GROUPS
from omnict_cli.segmentation.organs import (
    ORGAN_GROUP_LABELS,
    STRUCTURE_GROUP,
    TOTALSEG_GROUP_STRUCTURES,
    OrganOptionError,
    coverage,
    organ_label_ids,
    parse_organ_option,
    scan_regions,
    structure_group,
)
from omnict_cli.segmentation.routing import (
    Route,
    default_report_organs,
    organs_for_task,
    route_question,
)

BUILTIN_VOCABULARY = {16: "trachea", **BUILTIN_EXTRA_CLASSES}
"""What the built-in segmenter outputs: its coarse classes plus TotalSegmentator's trachea id."""
ABDOMEN = ("liver", "spleen", "kidneys", "pancreas", "stomach", "bowel")
CHEST = ("lungs", "heart", "vessels")

QUESTION_CASES = [
    # CT-RATE style
    ("Is there a lung nodule in this scan?", ("lungs",)),
    ("Does this scan show a mass in the lung?", ("lungs",)),
    ("Is there emphysema?", ("lungs",)),
    ("Are there ground-glass opacities?", ("lungs",)),
    ("Is consolidation present in the right lower lobe?", ("lungs",)),
    ("Is there atelectasis at the lung bases?", ("lungs",)),
    ("Is there bronchiectasis?", ("lungs",)),
    ("Is there a pleural effusion?", ("lungs",)),
    ("Is a mosaic attenuation pattern seen?", ("lungs",)),
    ("Is there interlobular septal thickening?", ("lungs",)),
    ("Is there septal thickening?", ("lungs",)),
    ("Is peribronchial thickening present?", ("lungs",)),
    ("Are there fibrotic sequelae?", ("lungs",)),
    ("Is there a pneumothorax?", ("lungs",)),
    ("Is there cardiomegaly?", ("heart",)),
    ("Is the heart enlarged?", ("heart",)),
    ("Is there a pericardial effusion?", ("heart",)),
    ("Is there coronary artery calcification?", ("heart",)),
    ("Is there a pacemaker?", ("heart",)),
    ("Is there arterial wall calcification?", ("vessels",)),
    ("Is there an aortic aneurysm?", ("vessels",)),
    ("What is the diameter of the ascending aorta?", ("vessels",)),
    ("Is there a pulmonary embolism?", ("lungs", "vessels")),
    ("Is the portal vein patent?", ("vessels",)),
    ("Is there an aortic stent?", ("vessels",)),
    ("Is there a hiatal hernia?", ("stomach", "esophagus")),
    ("Is there a hiatus hernia?", ("stomach", "esophagus")),
    ("Is there esophageal wall thickening?", ("esophagus",)),
    ("Is the oesophagus dilated?", ("esophagus",)),
    ("Is there tracheal narrowing?", ("trachea",)),
    ("Is there mediastinal lymphadenopathy?", ("heart", "esophagus", "trachea", "vessels", "others")),
    ("Are there enlarged lymph nodes?", ("others",)),
    ("Is there medical material?", ("heart", "vessels", "others")),
    ("Are sternotomy wires present?", ("others",)),
    # abdomen
    ("Is the liver enlarged?", ("liver",)),
    ("Is there hepatomegaly?", ("liver",)),
    ("Is there hepatic steatosis?", ("liver",)),
    ("Does the patient have a fatty liver?", ("liver",)),
    ("Is there splenomegaly?", ("spleen",)),
    ("Is there hepatosplenomegaly?", ("liver", "spleen")),
    ("Is there hydronephrosis?", ("kidneys",)),
    ("Is there a renal cyst?", ("kidneys",)),
    ("Is there a kidney stone?", ("kidneys",)),
    ("Is the left kidney normal?", ("kidneys",)),
    ("Is there pancreatitis?", ("pancreas",)),
    ("Is there gastric wall thickening?", ("stomach",)),
    ("Is there a bowel obstruction?", ("bowel",)),
    ("Is there diverticulitis?", ("bowel",)),
    ("Is there ascites?", ABDOMEN),
    ("Is there free fluid in the abdomen?", ABDOMEN),
    ("Is the gallbladder distended?", ("others",)),
    ("Is there a thyroid nodule?", ("others",)),
    ("Is there an adrenal mass?", ("others",)),
    # spine and bones
    ("Is there a vertebral fracture?", ("spine",)),
    ("Is there scoliosis?", ("spine",)),
    ("Are there degenerative changes in the spine?", ("spine",)),
    ("Is the T12 vertebral body collapsed?", ("spine",)),
    ("Is there a rib fracture?", ("others",)),
    ("Is there a fracture?", ("spine", "others")),
    # plurals, capitals, punctuation, negation
    ("ARE THE LUNGS CLEAR???", ("lungs",)),
    ("Are the kidneys normal in size", ("kidneys",)),
    ("Any nodules?", ("lungs",)),
    ("Is there no effusion?", ("lungs", "heart")),
    ("Is there no pleural effusion?", ("lungs",)),
    ("Does the liver show no lesion...", ("liver",)),
    ("Is there a nodule in the right lung?", ("lungs",)),
    ("Is there a nodule in the left lung?", ("lungs",)),
    # several organs
    ("Are the liver and spleen normal?", ("liver", "spleen")),
    ("Compare the heart and the lungs.", ("lungs", "heart")),
    ("Is the renal artery stenosed?", ("kidneys", "vessels")),
    ("Is there calcification?", ("heart", "vessels")),
    ("Is there any abnormality in the abdomen?", ABDOMEN),
    ("Is the chest normal?", CHEST),
    ("Is there abdominal aortic aneurysm?", ("vessels",)),
]

WHOLE_IMAGE_QUESTIONS = [
    "Which organ is abnormal?",
    "Describe the image.",
    "Can you describe the CT image?",
    "What abnormality is seen in this scan?",
    "Is there a mass?",
]

CTRATE_EXPECTED = {
    "Medical material": ("heart", "vessels", "others"),
    "Arterial wall calcification": ("vessels",),
    "Cardiomegaly": ("heart",),
    "Pericardial effusion": ("heart",),
    "Coronary artery wall calcification": ("heart",),
    "Hiatal hernia": ("stomach", "esophagus"),
    "Lymphadenopathy": ("others",),
    "Pleural effusion": ("lungs",),
}


@pytest.fixture(scope="module")
def phantom_labels() -> np.ndarray:
    return generate_case(0, 0, PhantomConfig(size=(32, 96, 96), spacing=(10.0, 3.5, 3.5))).labels


def to_builtin(labels: np.ndarray) -> np.ndarray:
    """A built-in-style label map made from a TotalSegmentator one (coarse classes, same places)."""
    out = np.where(labels > 0, 200, 0).astype(np.uint8)
    group = {i: STRUCTURE_GROUP[name] for i, name in TOTALSEG_TOTAL_CLASSES.items()}
    for label_id in np.unique(labels[labels > 0]).tolist():
        name, where = TOTALSEG_TOTAL_CLASSES[label_id], labels == label_id
        if group[label_id] == "lungs":
            out[where] = 201 if name.endswith("left") else 202
        elif group[label_id] in ("heart", "vessels", "esophagus"):
            out[where] = 204
        elif group[label_id] in ("spine", "others") and name not in ("autochthon_left", "autochthon_right"):
            out[where] = 203
        elif name == "trachea":
            out[where] = 16
    return out


# ---- routing -------------------------------------------------------------------------


@pytest.mark.parametrize(("question", "expected"), QUESTION_CASES)
def test_question_routes_to_expected_groups(question, expected):
    route = route_question(question)
    assert route.groups == tuple(g for g in ORGAN_GROUPS if g in expected)
    assert not route.fallback
    assert "->" in route.reason


def test_there_are_at_least_sixty_cases():
    assert len(QUESTION_CASES) >= 60


@pytest.mark.parametrize("question", WHOLE_IMAGE_QUESTIONS)
def test_general_questions_fall_back(question):
    route = route_question(question)
    assert route == Route((), route.reason, True)
    assert "whole image" in route.reason
    with_chest = route_question(question, {"lungs": 5000, "heart": 900, "vessels": 200, "spine": 300})
    assert with_chest.groups == CHEST and with_chest.fallback


@pytest.mark.parametrize("name", CTRATE_ABNORMALITIES)
def test_every_ctrate_class_routes_where_the_phantom_tags_it(name):
    expected = CTRATE_EXPECTED.get(name, ("lungs",))
    wordings = [name, *QUESTION_TERMS[name], f"Is there {name.lower()} in this scan?"]
    for wording in wordings:
        route = route_question(wording)
        assert set(route.groups) == set(expected), wording
        assert CLASS_ORGAN[name] in route.groups


def test_phantom_qa_questions_route_to_their_tagged_organ():
    checked = 0
    for index in range(6):
        case = generate_case(7, index, PhantomConfig(size=(24, 64, 64), spacing=(12.0, 5.0, 5.0)))
        for pair in case.qa:
            if pair.organ is not None:
                assert pair.organ in route_question(pair.question).groups, pair.question
                checked += 1
    assert checked > 50


def test_multiple_choice_stem_wins_over_options():
    question = "Which abnormality is present in the lungs in this scan?\nA. Cardiomegaly\nB. Consolidation"
    assert route_question(question).groups == ("lungs",)
    no_organ_stem = "Which abnormality is present in this scan?\nA. Lymphadenopathy\nB. Hiatal hernia"
    route = route_question(no_organ_stem)
    assert route.groups == ("stomach", "esophagus", "others")
    assert route.reason.startswith("answer options")


def test_every_totalsegmentator_structure_name_routes_to_its_group():
    for name, group in STRUCTURE_GROUP.items():
        plain = " ".join(word for word in name.split("_") if word not in ("left", "right") and not word.isdigit())
        assert route_question(f"Is the {plain} normal?").groups == (group,), name


def test_available_filters_groups_and_says_what_was_dropped():
    route = route_question("Are the liver and lungs normal?", {"lungs", "heart"})
    assert route.groups == ("lungs",)
    assert not route.fallback
    assert "not in the scan: liver" in route.reason


def test_question_about_an_organ_the_scan_lacks_falls_back_to_defaults():
    chest = {"lungs": 30000, "heart": 4000, "vessels": 1500, "liver": 300}
    route = route_question("Is there pancreatitis?", chest)
    assert route.groups == CHEST
    assert route.fallback
    assert "pancreas" in route.reason and "default organs" in route.reason
    nothing_known = route_question("Is there pancreatitis?", {"spine"})
    assert (nothing_known.groups, nothing_known.fallback) == ((), True)
    assert "whole image" in nothing_known.reason


# ---- defaults and task routing -------------------------------------------------------


def test_default_report_organs_by_region():
    chest_ct = {"lungs": 30000, "heart": 4000, "vessels": 1500, "liver": 3900, "spleen": 300, "stomach": 1500}
    abdomen_ct = {
        "lungs": 2500,
        "heart": 300,
        "vessels": 900,
        "liver": 9000,
        "spleen": 900,
        "kidneys": 1500,
        "pancreas": 400,
        "stomach": 1200,
        "bowel": 8000,
    }
    both = {**abdomen_ct, "lungs": 30000, "heart": 4000}
    assert default_report_organs(chest_ct) == CHEST
    assert default_report_organs(abdomen_ct) == ABDOMEN
    assert default_report_organs(both) == CHEST
    assert default_report_organs({"spine": 500, "others": 900}) == ()
    assert default_report_organs(set()) == ()
    assert default_report_organs({"liver", "kidneys"}) == ("liver", "kidneys")
    assert default_report_organs({"liver", "lungs"}) == ("lungs",)  # names only: any voxel counts
    assert scan_regions(abdomen_ct) == ("abdomen",)
    assert scan_regions(both) == ("chest", "abdomen")


def test_organs_for_task_precedence():
    chest = {"lungs": 30000, "heart": 4000, "vessels": 1500}
    assert organs_for_task("report", available=chest) == Route(CHEST, "report: chest CT default organs", False)
    assert organs_for_task("report").groups == () and organs_for_task("report").fallback
    assert organs_for_task("ask", "Is there cardiomegaly?", available=chest).groups == ("heart",)
    override = organs_for_task("ask", "Is there cardiomegaly?", override="Liver, kidney-left", available=chest)
    assert override.groups == ("liver", "kidney_left")
    assert override.reason == "--organ liver,kidney_left (not in the scan: liver)"
    assert organs_for_task("report", override=["spine"]).groups == ("spine",)
    with pytest.raises(ValueError, match="needs a question"):
        organs_for_task("ask", "  ")
    with pytest.raises(ValueError, match="unknown task 'caption'"):
        organs_for_task("caption", "Is the heart normal?")


# ---- organ vocabulary -----------------------------------------------------------------


def test_every_totalsegmentator_id_is_in_exactly_one_group():
    assert tuple(TOTALSEG_GROUP_STRUCTURES) == ORGAN_GROUPS
    membership = {
        label_id: [g for g in ORGAN_GROUPS if label_id in ORGAN_GROUP_LABELS[g]] for label_id in TOTALSEG_TOTAL_CLASSES
    }
    assert len(membership) == 117
    assert {label_id: len(groups) for label_id, groups in membership.items()} == dict.fromkeys(membership, 1)
    listed = [name for names in TOTALSEG_GROUP_STRUCTURES.values() for name in names]
    assert sorted(listed) == sorted(TOTALSEG_TOTAL_CLASSES.values())
    assert structure_group("kidney_cyst_left") == "kidneys"
    assert structure_group("vertebrae_C1") == "spine"
    with pytest.raises(ValueError, match="unknown TotalSegmentator structure 'lung'"):
        structure_group("lung")


def test_organ_label_ids_with_both_vocabularies():
    assert organ_label_ids(["lungs"], TOTALSEG_TOTAL_CLASSES) == [10, 11, 12, 13, 14]
    assert organ_label_ids(["lungs"], BUILTIN_VOCABULARY) == [201, 202]
    assert organ_label_ids(["heart"], TOTALSEG_TOTAL_CLASSES) == [51, 61]
    assert organ_label_ids(["heart"], BUILTIN_VOCABULARY) == [204]
    assert organ_label_ids(["trachea"], BUILTIN_VOCABULARY) == [16]
    assert organ_label_ids(["liver", "spleen"], BUILTIN_VOCABULARY) == []
    assert organ_label_ids(["kidneys"], TOTALSEG_TOTAL_CLASSES) == [2, 3, 23, 24]
    assert organ_label_ids(["kidney_left", "liver"], TOTALSEG_TOTAL_CLASSES) == [3, 5]
    assert organ_label_ids(["bowel", "esophagus"], TOTALSEG_TOTAL_CLASSES) == [15, 18, 19, 20]
    assert organ_label_ids(["spine"], TOTALSEG_TOTAL_CLASSES) == list(range(25, 51)) + [79]
    assert organ_label_ids(["vessels", "heart", "esophagus"], BUILTIN_VOCABULARY) == [204]
    assert 200 not in organ_label_ids(ORGAN_GROUPS, BUILTIN_VOCABULARY)
    assert organ_label_ids([], TOTALSEG_TOTAL_CLASSES) == []
    other_tool = {5: "heart"}  # same id, another meaning: never pooled as the liver
    assert organ_label_ids(["liver"], other_tool) == []
    with pytest.raises(ValueError, match="unknown organ group or structure 'lung'"):
        organ_label_ids(["lung"], TOTALSEG_TOTAL_CLASSES)


def test_label_ids_feed_organ_ids_mask(phantom_labels):
    ids = organ_label_ids(route_question("Is there a pulmonary nodule?").groups, TOTALSEG_TOTAL_CLASSES)
    mask = organ_ids_mask(phantom_labels, ids).numpy()
    assert mask.sum() == np.isin(phantom_labels, [10, 11, 12, 13, 14]).sum() > 0


def test_coverage_of_a_phantom_chest_ct(phantom_labels):
    counts = coverage(phantom_labels, TOTALSEG_TOTAL_CLASSES)
    assert list(counts) == [g for g in ORGAN_GROUPS if g in counts]
    assert counts["lungs"] == int(np.isin(phantom_labels, [10, 11, 12, 13, 14]).sum())
    assert counts["heart"] == int((phantom_labels == 51).sum())
    assert {"lungs", "heart", "vessels", "trachea", "esophagus", "spine", "liver"} <= set(counts)
    assert "bowel" not in counts and "pancreas" not in counts
    assert scan_regions(counts) == ("chest",)
    assert default_report_organs(counts) == CHEST
    assert set(coverage(phantom_labels, TOTALSEG_TOTAL_CLASSES, min_voxels=1000)) == {
        g for g, n in counts.items() if n >= 1000
    }


def test_real_abdominal_ct_with_lung_bases_gets_abdominal_defaults(testdata):
    import nibabel as nib

    labels = np.asarray(nib.load(testdata / "ct_chest_small_totalseg.nii.gz").dataobj)
    counts = coverage(labels, TOTALSEG_TOTAL_CLASSES)
    assert "lungs" in counts and counts["lungs"] < counts["liver"]
    assert scan_regions(counts) == ("abdomen",)
    assert default_report_organs(counts) == ABDOMEN
    assert default_report_organs(set(counts)) == ("lungs", "vessels")  # names alone: the lung bases decide
    assert route_question("Is there a lung nodule?", counts).groups == ("lungs",)


def test_coverage_with_the_builtin_vocabulary(phantom_labels):
    builtin = to_builtin(phantom_labels)
    counts = coverage(builtin, BUILTIN_VOCABULARY)
    assert set(counts) == {"lungs", "heart", "esophagus", "trachea", "vessels", "spine", "others"}
    assert counts["heart"] == counts["vessels"] == int((builtin == 204).sum())
    assert counts["lungs"] == int(np.isin(phantom_labels, [10, 11, 12, 13, 14]).sum())
    assert default_report_organs(counts) == CHEST
    route = route_question("Is the liver enlarged?", counts)
    assert route.fallback and route.groups == CHEST


def test_coverage_rejects_bad_label_maps():
    with pytest.raises(ValueError, match="integer label ids"):
        coverage(np.zeros((2, 2), np.float32), TOTALSEG_TOTAL_CLASSES)
    with pytest.raises(ValueError, match=r"ids \[201\] that are not in"):
        coverage(np.array([[0, 201]], np.uint8), TOTALSEG_TOTAL_CLASSES)
    with pytest.raises(ValueError, match="negative"):
        coverage(np.array([-1, 5]), TOTALSEG_TOTAL_CLASSES)
    assert coverage(np.zeros((3, 3), np.uint8), TOTALSEG_TOTAL_CLASSES) == {}


# ---- --organ --------------------------------------------------------------------------


def test_parse_organ_option_accepts_groups_and_structures():
    assert parse_organ_option("lungs,heart") == ["lungs", "heart"]
    assert parse_organ_option(" Lungs , HEART, lungs,") == ["lungs", "heart"]
    assert parse_organ_option("kidney-left,Vertebrae l1,LIVER") == ["kidney_left", "vertebrae_L1", "liver"]
    assert parse_organ_option("kidney_left, portal vein and splenic vein") == [
        "kidney_left",
        "portal_vein_and_splenic_vein",
    ]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("lungs,livr", "'livr'"),
        ("kidney", "'kidney'"),
        ("brain_stem", "'brain_stem'"),
        (" , ", "names no organ"),
    ],
)
def test_parse_organ_option_errors_name_the_value_and_the_choices(text, shown):
    with pytest.raises(OrganOptionError) as info:
        parse_organ_option(text)
    message = str(info.value)
    assert shown in message
    assert "lungs, heart, liver" in message
    assert isinstance(info.value, ValueError)


def test_parse_organ_option_suggests_close_names():
    with pytest.raises(OrganOptionError, match="Did you mean liver"):
        parse_organ_option("livr")
    with pytest.raises(OrganOptionError, match="kidney_left"):
        parse_organ_option("kidney_lft")


def test_segmentation_package_loads_without_the_phantom_package():
    """Synthetic data is a user of the library: organ groups and routing come from segmentation's own vocabulary."""
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, sys, omnict_cli.segmentation as s\n"
        "for m in pkgutil.iter_modules(s.__path__): importlib.import_module('omnict_cli.segmentation.' + m.name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('omnict_cli.phantom')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    from omnict_cli.phantom.findings import ORGAN_GROUPS as phantom_groups

    assert phantom_groups is ORGAN_GROUPS  # phantom findings are tagged with the same names
