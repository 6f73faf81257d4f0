"""The built-in threshold segmenter: lung Dice against TotalSegmentator and phantoms, sides, edge cases."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import axcodes2ornt

from omnict_cli.phantom.generate import PhantomConfig, generate_case
from omnict_cli.segmentation.base import LABEL_DTYPE, check_label_map
from omnict_cli.segmentation.builtin import BuiltinSegmenter, SegmentationInputError
from omnict_cli.segmentation.metrics import dice
from omnict_cli.studies.load import load_path
from omnict_cli.studies.volume import Volume, canonical_affine, canonicalize

TRACHEA, BODY, LUNG_LEFT, LUNG_RIGHT, BONE, MEDIASTINUM = 16, 200, 201, 202, 203, 204
LEFT_LOBES, RIGHT_LOBES = (10, 11), (12, 13, 14)
SMALL_PHANTOM = PhantomConfig(size=(48, 160, 160), spacing=(6.0, 2.2, 2.2))


def make_volume(hu: np.ndarray, spacing, kind: str = "volume", affine=None) -> Volume:
    return Volume(
        voxels=hu,
        affine=canonical_affine(spacing) if affine is None else affine,
        kind=kind,
        source_format="npy",
        source_ornt=axcodes2ornt(("S", "P", "L")),
        source_shape=hu.shape,
    )


def lungs_of(labels: np.ndarray):
    """(left, right) reference lung masks from TotalSegmentator lobe ids."""
    return np.isin(labels, LEFT_LOBES), np.isin(labels, RIGHT_LOBES)


@pytest.fixture(scope="module")
def segmenter() -> BuiltinSegmenter:
    return BuiltinSegmenter()


@pytest.fixture(scope="module")
def phantoms():
    return [generate_case(seed, 0, SMALL_PHANTOM) for seed in range(3)]


@pytest.fixture(scope="module")
def phantom_outputs(phantoms, segmenter):
    return [segmenter.segment(make_volume(case.hu, case.spacing)) for case in phantoms]


def load_real(testdata, image: str, reference: str):
    """A real CT and TotalSegmentator's label map brought to the same canonical grid."""
    volume = load_path(testdata / image)
    label_file = nib.load(testdata / reference)
    labels, affine = canonicalize(np.asarray(label_file.dataobj), label_file.affine)
    assert labels.shape == volume.voxels.shape
    np.testing.assert_allclose(affine, volume.affine, atol=1e-3)
    return volume, labels


@pytest.mark.parametrize(
    "image, reference",
    [("ct_chest_small.nii.gz", "ct_chest_small_totalseg.nii.gz"), ("dicom_series", "dicom_series_totalseg.nii.gz")],
)
def test_real_ct_lungs_match_totalsegmentator(testdata, segmenter, image, reference):
    volume, reference_labels = load_real(testdata, image, reference)
    labels = segmenter.segment(volume)
    left, right = lungs_of(reference_labels)
    assert dice(labels == LUNG_LEFT, left) >= 0.90
    assert dice(labels == LUNG_RIGHT, right) >= 0.90
    assert dice(np.isin(labels, (LUNG_LEFT, LUNG_RIGHT)), left | right) >= 0.90
    # The DICOM series is upper abdomen only: no lung in the reference, and none may be found in its gas.
    assert (labels == LUNG_LEFT).any() == left.any() and (labels == LUNG_RIGHT).any() == right.any()


def test_real_lung_bases_are_not_swapped(testdata, segmenter):
    volume, _ = load_real(testdata, "ct_chest_small.nii.gz", "ct_chest_small_totalseg.nii.gz")
    labels = segmenter.segment(volume)
    x_left = np.nonzero(labels == LUNG_LEFT)[2].mean()
    x_right = np.nonzero(labels == LUNG_RIGHT)[2].mean()
    assert x_left > x_right  # canonical x runs toward the patient's left


def test_real_abdomen_crop_has_no_lungs_and_no_trachea(testdata, segmenter):
    volume = load_path(testdata / "ct_chest_small.nii.gz")
    abdomen = np.ascontiguousarray(volume.hu[:18])  # below the lung bases, with colon and stomach gas
    assert (abdomen < -950).sum() > 1000
    labels = segmenter.segment(make_volume(abdomen, volume.spacing))
    assert not np.isin(labels, (LUNG_LEFT, LUNG_RIGHT, TRACHEA)).any()
    assert (labels == BODY).sum() > 0.3 * labels.size


def test_phantom_lungs_match_and_keep_their_sides(phantoms, phantom_outputs):
    for case, labels in zip(phantoms, phantom_outputs):
        left, right = lungs_of(case.labels)
        assert dice(labels == LUNG_LEFT, left) >= 0.9, case.case_id
        assert dice(labels == LUNG_RIGHT, right) >= 0.9, case.case_id
        assert np.nonzero(labels == LUNG_LEFT)[2].mean() > np.nonzero(labels == LUNG_RIGHT)[2].mean()


def test_phantom_trachea_runs_down_between_the_lungs_from_the_top(phantoms, phantom_outputs):
    for case, labels in zip(phantoms, phantom_outputs):
        z, _, x = np.nonzero(labels == TRACHEA)
        lung_z = np.nonzero(np.isin(labels, (LUNG_LEFT, LUNG_RIGHT)))[0]
        assert z.max() >= lung_z.max()  # reaches the top of the lungs (or above)
        assert z.min() > np.percentile(lung_z, 25)  # stays in the upper chest
        assert np.nonzero(labels == LUNG_RIGHT)[2].mean() < x.mean() < np.nonzero(labels == LUNG_LEFT)[2].mean()
        # It overlaps the phantom's airway lumen (its label also covers the wall).
        lumen = (case.labels == TRACHEA) & (case.hu < -400)
        assert (labels[lumen] == TRACHEA).mean() > 0.8


def test_phantom_bone_and_mediastinum_are_where_they_belong(phantoms, phantom_outputs):
    case, labels = phantoms[0], phantom_outputs[0]
    vertebrae = np.isin(case.labels, range(27, 45))
    assert (labels[vertebrae] == BONE).mean() > 0.9
    heart = case.labels == 51
    assert (labels[heart] == MEDIASTINUM).mean() > 0.5
    # Only lung lesions touching the mediastinum (nodules, consolidation) may be taken into it.
    assert (labels[np.isin(case.labels, LEFT_LOBES + RIGHT_LOBES)] == MEDIASTINUM).mean() < 0.02


def test_output_fits_the_segmenter_contract(phantoms, phantom_outputs, segmenter):
    case, labels = phantoms[0], phantom_outputs[0]
    volume = make_volume(case.hu, case.spacing)
    checked = check_label_map(labels, volume, segmenter)
    assert checked.dtype == LABEL_DTYPE and checked.shape == case.hu.shape
    assert set(np.unique(labels).tolist()) == {0, TRACHEA, BODY, LUNG_LEFT, LUNG_RIGHT, BONE, MEDIASTINUM}
    assert segmenter.describe() == "builtin 2"


def test_no_lungs_means_no_lung_or_trachea_labels(phantoms, segmenter):
    case = phantoms[1]
    hu = case.hu.copy()
    hu[np.isin(case.labels, LEFT_LOBES + RIGHT_LOBES)] = 40  # lungs replaced by soft tissue; stomach gas stays
    assert (hu[case.labels == 6] < -950).any()
    labels = segmenter.segment(make_volume(hu, case.spacing))
    assert not np.isin(labels, (LUNG_LEFT, LUNG_RIGHT, TRACHEA, MEDIASTINUM)).any()


def test_axial_slice_is_segmented_on_its_own(phantoms, segmenter):
    case = phantoms[0]
    z = 30
    labels = segmenter.segment(make_volume(case.hu[z : z + 1].copy(), case.spacing, kind="slice"))
    assert labels.shape == (1, 160, 160)
    left, right = lungs_of(case.labels[z : z + 1])
    assert dice(labels == LUNG_LEFT, left) >= 0.9
    assert dice(labels == LUNG_RIGHT, right) >= 0.9


def test_coronal_slice_gets_body_and_bone_only(phantoms, segmenter):
    case = phantoms[0]
    coronal = np.ascontiguousarray(case.hu[::-1, 80, :])[None]  # rows superior -> inferior, columns right -> left
    sz, sy, sx = case.spacing
    affine = np.array([[0.0, 0.0, -sx, 0.0], [-sy, 0.0, 0.0, 0.0], [0.0, -sz, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    labels = segmenter.segment(make_volume(coronal, case.spacing, kind="slice", affine=affine))
    assert set(np.unique(labels).tolist()) <= {0, BODY, BONE}
    assert (labels == BODY).sum() > 0.2 * labels.size


def test_float_input_and_anisotropic_voxels(segmenter):
    case = generate_case(4, 0, PhantomConfig(size=(90, 100, 120), spacing=(3.0, 3.6, 2.4)))
    labels = segmenter.segment(make_volume(case.hu.astype(np.float32), case.spacing))
    left, right = lungs_of(case.labels)
    assert dice(labels == LUNG_LEFT, left) >= 0.9
    assert dice(labels == LUNG_RIGHT, right) >= 0.9


def lungs_touch_the_in_plane_edges(labels: np.ndarray, edges: tuple[str, ...]) -> bool:
    """True when both reference lungs reach each named edge ("left"/"right" columns, "front"/"back" rows)."""
    lungs = np.isin(labels, LEFT_LOBES + RIGHT_LOBES)
    rows = {"left": lungs[:, :, 0], "right": lungs[:, :, -1], "front": lungs[:, 0, :], "back": lungs[:, -1, :]}
    return all(rows[edge].any() for edge in edges)


def test_cropped_phantom_lungs_touching_every_edge_are_still_lungs(phantoms, segmenter):
    for case in phantoms:
        _, y, x = np.nonzero(np.isin(case.labels, LEFT_LOBES + RIGHT_LOBES))
        crop = (slice(None), slice(y.min() + 8, y.max() - 8), slice(x.min() + 6, x.max() - 5))
        hu, reference = np.ascontiguousarray(case.hu[crop]), case.labels[crop]
        assert lungs_touch_the_in_plane_edges(reference, ("left", "right", "front", "back"))
        assert not (hu[:, [0, -1], :] < -950).any() and not (hu[:, :, [0, -1]] < -950).any()  # no outside air
        labels = segmenter.segment(make_volume(hu, case.spacing))
        left, right = lungs_of(reference)
        assert dice(labels == LUNG_LEFT, left) >= 0.95, case.case_id
        assert dice(labels == LUNG_RIGHT, right) >= 0.95, case.case_id
        assert (labels[case.labels[crop] == 51] == MEDIASTINUM).mean() > 0.5  # the heart is between them


@pytest.mark.parametrize("lung_shift_hu", [0, -80])
def test_real_ct_cropped_so_the_lungs_touch_the_edges(testdata, segmenter, lung_shift_hu):
    """Also with the (dense, median -776 HU) lung bases made as dark as a lung in deep inspiration."""
    volume, reference_labels = load_real(testdata, "ct_chest_small.nii.gz", "ct_chest_small_totalseg.nii.gz")
    hu = volume.hu.astype(np.float32)
    hu[np.isin(reference_labels, LEFT_LOBES + RIGHT_LOBES)] += lung_shift_hu
    crop = (slice(None), slice(20, 82), slice(24, 104))  # cuts both lungs at the sides and at the back
    reference = reference_labels[crop]
    assert lungs_touch_the_in_plane_edges(reference, ("left", "right", "back"))
    labels = segmenter.segment(make_volume(np.ascontiguousarray(hu[crop]), volume.spacing))
    left, right = lungs_of(reference)
    assert dice(labels == LUNG_LEFT, left) >= 0.93
    assert dice(labels == LUNG_RIGHT, right) >= 0.93


def test_real_ct_cropped_at_the_sides_keeps_the_foam_pad_out_of_the_lungs(testdata, segmenter):
    volume, reference_labels = load_real(testdata, "ct_chest_small.nii.gz", "ct_chest_small_totalseg.nii.gz")
    crop = (slice(None), slice(None), slice(22, 106))  # the foam pad under the back (about -955 HU) reaches both sides
    pad = np.zeros(volume.hu.shape, dtype=bool)
    pad[:, 93:, :] = (volume.hu[:, 93:, :] > -990) & (volume.hu[:, 93:, :] < -900)
    labels = segmenter.segment(make_volume(np.ascontiguousarray(volume.hu[crop]), volume.spacing))
    assert pad[crop].sum() > 1000 and not labels[pad[crop]].any()
    left, right = lungs_of(reference_labels[crop])
    assert dice(np.isin(labels, (LUNG_LEFT, LUNG_RIGHT)), left | right) >= 0.9


def test_cropped_synthetic_chest_keeps_a_foam_pad_out_of_the_lungs(segmenter):
    hu, spacing, body, table = synthetic_chest(table_gap_mm=10)
    y_mm = np.arange(body.shape[0])[:, None] * spacing[1]
    pad = (y_mm > 140) & (y_mm < 260) & ~body  # everything between the back and the table top
    hu[:, pad] = np.random.default_rng(0).normal(-955, 15, size=(hu.shape[0], int(pad.sum())))  # foam, noisy
    crop = (slice(None), slice(0, 177), slice(60, 180))  # x 90-270 mm cuts both lungs; ends in the table plate
    labels = segmenter.segment(make_volume(np.ascontiguousarray(hu[crop]), spacing))
    assert not labels[:, pad[crop[1:]]].any()
    lungs = hu[crop] == -850
    assert lungs[:, :, 0].any() and lungs[:, :, -1].any()
    assert (labels[lungs & (np.arange(120) < 60)] == LUNG_RIGHT).all()
    assert (labels[lungs & (np.arange(120) >= 60)] == LUNG_LEFT).all()


def test_air_in_a_crop_corner_joined_to_a_cut_lung_is_not_lung(segmenter):
    hu, spacing, _, _ = synthetic_chest(table_gap_mm=10)
    hu = np.ascontiguousarray(hu[:, 40:150, 60:180])  # inside the body: the lungs reach the left and right edges
    lung = hu == -850
    hu[:, :10, :16] = -1000  # air in the top-left corner, joined to the right lung (a cut in the chest wall)
    assert lung[:, 10, :16].any()
    labels = segmenter.segment(make_volume(hu, spacing))
    assert (labels[:, :10, :16] == 0).mean() > 0.6  # most of it: the lung edge band is re-decided by HU, air passes
    assert (labels[lung & (np.arange(120) < 60)] == LUNG_RIGHT).mean() > 0.99


def test_touching_lungs_are_split_at_their_narrowing(phantoms, segmenter):
    case = phantoms[2]
    left, right = lungs_of(case.labels)
    hu = case.hu.copy()
    for z in range(20, 40):  # aerated bridge in front of the heart joins the lungs
        front = np.nonzero((left | right)[z])[0].min()
        hu[z, front : front + 6, 60:100] = -850
    labels = segmenter.segment(make_volume(hu, case.spacing))
    assert dice(labels == LUNG_LEFT, left) >= 0.9
    assert dice(labels == LUNG_RIGHT, right) >= 0.9


def synthetic_chest(table_gap_mm: float):
    """An elliptical 40 HU body with two -850 HU lungs in air and a 300 HU table plate below its back."""
    spacing = (5.0, 1.5, 1.5)
    y = np.arange(200)[:, None] * spacing[1]
    x = np.arange(240)[None, :] * spacing[2]
    body = ((y - 140) / 110) ** 2 + ((x - 180) / 160) ** 2 <= 1
    lungs = [((y - 140) / 70) ** 2 + ((x - cx) / 50) ** 2 <= 1 for cx in (110, 250)]
    table = np.broadcast_to((y >= 250 + table_gap_mm) & (y < 254 + table_gap_mm), body.shape)
    plane = np.full(body.shape, -1000, dtype=np.int16)
    plane[body] = 40
    for lung in lungs:
        plane[lung] = -850
    plane[table] = 300
    return np.repeat(plane[None], 20, axis=0), spacing, body, table


def test_table_and_outside_air_are_not_body(segmenter):
    hu, spacing, body, table = synthetic_chest(table_gap_mm=10)
    labels = segmenter.segment(make_volume(hu, spacing))
    assert not labels[:, table].any()
    assert not labels[:, ~body].any()
    assert (labels[:, body] > 0).all()
    # Left lung at larger x (patient's left), right lung at smaller x.
    assert (labels[:, 93, 167] == LUNG_LEFT).all() and (
        labels[:, 93, 73] == LUNG_RIGHT
    ).all()  # centres at x 250, 110 mm


def test_table_touching_the_back_stays_mostly_unlabelled(segmenter):
    hu, spacing, _, table = synthetic_chest(table_gap_mm=0)
    labels = segmenter.segment(make_volume(hu, spacing))
    assert (labels[:, table] == 0).mean() > 0.7


def test_display_images_are_refused_with_a_clear_message(segmenter):
    volume = make_volume(np.full((1, 32, 32), 0.5, dtype=np.float32), (1.0, 1.0, 1.0), kind="slice")
    volume.intensity = "display"
    volume.source_format = "png"
    with pytest.raises(SegmentationInputError, match="needs Hounsfield units.*png"):
        segmenter.segment(volume)
    with pytest.raises(ValueError):
        segmenter.segment(volume)


def test_all_air_gives_an_empty_label_map(segmenter):
    labels = segmenter.segment(make_volume(np.full((6, 40, 40), -1000, dtype=np.int16), (2.0, 2.0, 2.0)))
    assert labels.shape == (6, 40, 40) and not labels.any()


def test_dice_scores_overlap():
    a = np.zeros((4, 4), dtype=bool)
    a[:2] = True
    b = np.zeros((4, 4), dtype=bool)
    b[1:3] = True
    assert dice(a, a) == 1.0
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, ~a) == 0.0
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    with pytest.raises(ValueError, match="different shapes"):
        dice(a, b[:3])
