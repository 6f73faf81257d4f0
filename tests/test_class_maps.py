"""Our copies of the class vocabularies match their sources."""

from __future__ import annotations

import pytest

from omnict_cli.labels import CTRATE_ABNORMALITIES
from omnict_cli.segmentation.classes import TOTALSEG_TOTAL_CLASSES, TOTALSEG_TOTAL_IDS


def test_totalsegmentator_copy_matches_the_package_when_installed():
    map_to_binary = pytest.importorskip("totalsegmentator.map_to_binary")
    assert TOTALSEG_TOTAL_CLASSES == map_to_binary.class_map["total"]


def test_totalsegmentator_copy_is_complete_and_invertible():
    assert sorted(TOTALSEG_TOTAL_CLASSES) == list(range(1, 118))
    assert TOTALSEG_TOTAL_IDS["lung_upper_lobe_left"] == 10 and TOTALSEG_TOTAL_IDS["aorta"] == 52
    assert TOTALSEG_TOTAL_IDS["liver"] == 5 and TOTALSEG_TOTAL_IDS["heart"] == 51


def test_ctrate_classes_in_ctrate_column_order():
    assert len(CTRATE_ABNORMALITIES) == 18 == len(set(CTRATE_ABNORMALITIES))
    assert CTRATE_ABNORMALITIES[0] == "Medical material"
    assert CTRATE_ABNORMALITIES[9] == "Lung nodule"
    assert CTRATE_ABNORMALITIES[-1] == "Interlobular septal thickening"
