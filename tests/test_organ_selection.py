"""Question -> organ mask for OSE, on phantom label maps, and through the processor into the model."""

import numpy as np
import pytest
import torch

from omnict_cli.phantom.generate import PhantomConfig, generate_case
from omnict_cli.segmentation.classes import BUILTIN_EXTRA_CLASSES, TOTALSEG_TOTAL_CLASSES
from omnict_cli.segmentation.organ_selection import select_organs

BUILTIN = {16: "trachea", **BUILTIN_EXTRA_CLASSES}


@pytest.fixture(scope="module")
def labels():
    return generate_case(3, 0, PhantomConfig(size=(32, 96, 96), spacing=(10.0, 3.5, 3.5))).labels


def test_a_heart_question_selects_exactly_the_heart_voxels(labels):
    selection = select_organs(labels, TOTALSEG_TOTAL_CLASSES, "ask", "Is there cardiomegaly?")
    assert selection.groups == ("heart",)
    assert np.array_equal(selection.mask, np.isin(labels, [51, 61]))
    assert selection.mask.any() and not selection.fallback


def test_a_lung_question_selects_the_five_lobes(labels):
    selection = select_organs(labels, TOTALSEG_TOTAL_CLASSES, "ask", "Are there nodules in the lungs?")
    assert selection.groups == ("lungs",)
    assert set(np.unique(labels[selection.mask])) == {10, 11, 12, 13, 14}


def test_report_on_a_chest_scan_uses_lungs_heart_and_vessels(labels):
    selection = select_organs(labels, TOTALSEG_TOTAL_CLASSES, "report")
    assert selection.groups == ("lungs", "heart", "vessels")
    assert {10, 51, 52} <= set(np.unique(labels[selection.mask]))
    assert not np.isin(labels[selection.mask], [5, 1]).any()  # no liver, no spleen


def test_organ_option_wins_over_the_question(labels):
    selection = select_organs(labels, TOTALSEG_TOTAL_CLASSES, "ask", "Is there cardiomegaly?", override="liver")
    assert selection.groups == ("liver",)
    assert np.array_equal(selection.mask, labels == 5)


def test_builtin_labels_use_the_coarse_stand_ins(labels):
    coarse = np.zeros_like(labels)
    coarse[np.isin(labels, [10, 11])] = 201
    coarse[np.isin(labels, [12, 13, 14])] = 202
    coarse[labels == 51] = 204
    lungs = select_organs(coarse, BUILTIN, "ask", "Is there emphysema?")
    assert np.array_equal(lungs.mask, np.isin(coarse, [201, 202]))
    heart = select_organs(coarse, BUILTIN, "ask", "Is there pericardial effusion?")
    assert np.array_equal(heart.mask, coarse == 204)


def _builtin_like(labels):
    """The phantom's label map as the built-in segmenter would draw it: lungs, mediastinum, no abdominal classes."""
    coarse = np.zeros_like(labels)
    coarse[np.isin(labels, [10, 11])] = 201
    coarse[np.isin(labels, [12, 13, 14])] = 202
    coarse[labels == 51] = 204
    return coarse


def test_an_organ_the_builtin_segmenter_has_no_class_for_pools_the_whole_volume_and_says_why(labels):
    selection = select_organs(_builtin_like(labels), BUILTIN, "ask", "Is there ascites?", segmenter="builtin 2")
    assert selection.mask is None and selection.groups == () and selection.fallback  # not the lungs
    expected = "the built-in segmenter has no liver, spleen, kidneys, pancreas, stomach, bowel classes; "
    expected += "install TotalSegmentator for abdominal organs; using the whole volume"
    assert selection.warning == expected
    assert expected in selection.reason and "scan shows none" not in selection.reason


def test_a_question_naming_a_segmented_and_an_unsegmented_organ_keeps_the_one_it_has(labels):
    selection = select_organs(
        _builtin_like(labels), BUILTIN, "ask", "Is the liver or the heart enlarged?", segmenter="builtin 2"
    )
    assert selection.groups == ("heart",) and selection.mask is not None and selection.mask.any()
    assert selection.warning.startswith("the built-in segmenter has no liver class;")
    assert selection.warning.endswith("using heart")


def test_totalsegmentator_labels_route_ascites_to_the_abdomen_without_a_warning(labels):
    selection = select_organs(labels, TOTALSEG_TOTAL_CLASSES, "ask", "Is there ascites?", segmenter="totalsegmentator")
    assert "liver" in selection.groups and selection.warning is None


def test_an_organ_not_in_the_label_map_gives_an_empty_mask_and_says_so(labels):
    selection = select_organs(labels, TOTALSEG_TOTAL_CLASSES, "ask", "Is the prostate enlarged?", override="prostate")
    assert selection.is_empty
    assert "whole image" in selection.reason


def test_no_organ_at_all_means_no_mask():
    empty = np.zeros((4, 8, 8), dtype=np.uint8)
    selection = select_organs(empty, TOTALSEG_TOTAL_CLASSES, "report")
    assert selection.mask is None and selection.groups == () and selection.fallback


def test_the_selected_mask_feeds_the_model_and_changes_its_organ_tokens():
    from tests.test_model_generation import build
    from tests.test_model_processing import study

    model, processor = build()
    grid = np.zeros((6, 42, 42), dtype=np.uint8)  # the tiny model's preprocessed grid
    grid[0:3, 0:14, 0:14] = 51
    grid[3:6, 28:42, 28:42] = 5
    heart = select_organs(grid, TOTALSEG_TOTAL_CLASSES, "ask", "Is there cardiomegaly?")
    liver = select_organs(grid, TOTALSEG_TOTAL_CLASSES, "ask", "Is the liver enlarged?")
    outputs = []
    for selection in (heart, liver):
        batch = processor(["is the liver enlarged ?"], [study("volume", 2)], organ_masks=[selection.mask])
        with torch.no_grad():
            outputs.append(model(**batch))
    assert [o.organ_status[0][0] for o in outputs] == ["ok", "ok"]
    assert not torch.allclose(outputs[0].logits, outputs[1].logits)
