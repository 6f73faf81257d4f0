"""The same scan gives the same canonical array whatever its file says about orientation.

Canonical layout: ``voxels[z, y, x]`` with z inferior->superior, y
anterior->posterior, x patient right->left (axis codes S, P, L). Tests use
real CT from ../shared/testdata re-saved in other orientations and formats,
and check TotalSegmentator label maps land on the right tissue voxel for
voxel: a flipped axis breaks those numbers (shown by the negative controls).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from nibabel import orientations as nio

from omnict_cli import discover_studies, load_path, load_study

ORIENTATIONS = [
    ("R", "A", "S"),
    ("L", "P", "S"),
    ("L", "A", "S"),
    ("A", "S", "R"),
    ("S", "R", "A"),
    ("P", "I", "L"),
    ("I", "L", "P"),
    ("R", "P", "I"),
]
LUNG_LOBES = [10, 11, 12, 13, 14]
AORTA, LIVER = 52, 5


def resave(path, out, axcodes):
    """Write ``path``'s image with its voxel axes along ``axcodes`` (same anatomy)."""
    image = nib.load(path)
    transform = nio.ornt_transform(nio.io_orientation(image.affine), nio.axcodes2ornt(axcodes))
    data = nio.apply_orientation(np.asanyarray(image.dataobj), transform)
    affine = image.affine @ nio.inv_ornt_aff(transform, image.shape)
    new = nib.Nifti1Image(data, affine)
    new.set_data_dtype(image.get_data_dtype())
    nib.save(new, out)
    return out


def marker_volume():
    """A 3D array with distinct markers; which file axis is which is decided by the affine."""
    data = np.full((20, 24, 28), -1000, dtype=np.int16)
    data[1, 2, 3] = 1000
    data[18, 5, 25] = 500
    data[10, 20, 1] = -200
    return data


@pytest.mark.parametrize("axcodes", ORIENTATIONS)
def test_synthetic_markers_land_on_the_same_canonical_voxel(tmp_path, axcodes):
    reference = nib.Nifti1Image(marker_volume(), np.diag([0.8, 0.9, 2.5, 1.0]))
    nib.save(reference, tmp_path / "ref.nii.gz")
    expected = load_path(tmp_path / "ref.nii.gz")
    # RAS file: index (i, j, k) = (x to the right, y to anterior, z to superior)
    # canonical [z, y, x] = (k, 23 - j, 19 - i): marker (1, 2, 3) sits at [3, 21, 18]
    assert expected.voxels[3, 21, 18] == 1000
    assert expected.axcodes == ("S", "P", "L")
    moved = load_path(resave(tmp_path / "ref.nii.gz", tmp_path / "moved.nii.gz", axcodes))
    assert moved.source_axcodes == axcodes
    np.testing.assert_array_equal(moved.voxels, expected.voxels)
    np.testing.assert_allclose(moved.affine, expected.affine, atol=1e-4)
    assert moved.spacing == pytest.approx((2.5, 0.9, 0.8))


@pytest.mark.parametrize("axcodes", ORIENTATIONS)
def test_real_ct_resaved_in_any_orientation_loads_identically(testdata, tmp_path, axcodes):
    original = load_path(testdata / "ct_chest_small.nii.gz")
    moved = load_path(resave(testdata / "ct_chest_small.nii.gz", tmp_path / "ct.nii.gz", axcodes))
    np.testing.assert_array_equal(moved.voxels, original.voxels)
    np.testing.assert_allclose(moved.affine, original.affine, atol=1e-4)
    # the file layout can be recovered (results can be written back in the input's geometry)
    np.testing.assert_array_equal(moved.to_source_layout(moved.voxels), nib.load(tmp_path / "ct.nii.gz").dataobj)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd"])
def test_itk_formats_give_the_same_array_as_nifti(testdata, tmp_path, suffix):
    original = load_path(testdata / "ct_chest_small.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(testdata / "ct_chest_small.nii.gz")), str(tmp_path / f"ct{suffix}"))
    other = load_path(tmp_path / f"ct{suffix}")
    assert other.source_format == suffix.lstrip(".")
    np.testing.assert_array_equal(other.voxels, original.voxels)
    np.testing.assert_allclose(other.affine, original.affine, atol=1e-3)


def test_itk_permuted_direction_loads_identically(testdata, tmp_path):
    image = sitk.ReadImage(str(testdata / "ct_chest_small.nii.gz"))
    permuted = sitk.PermuteAxes(sitk.Flip(image, [True, False, True]), [2, 0, 1])
    sitk.WriteImage(permuted, str(tmp_path / "permuted.nrrd"))
    np.testing.assert_array_equal(
        load_path(tmp_path / "permuted.nrrd").voxels, load_path(testdata / "ct_chest_small.nii.gz").voxels
    )


def _load_pair(folder, ct_name, labels_name):
    studies = {s.study_id: s for s in discover_studies(folder)}
    ct, labels = load_study(studies[ct_name]), load_study(studies[labels_name])
    assert ct.shape == labels.shape, "CT and label map must share a grid"
    np.testing.assert_allclose(ct.affine, labels.affine, atol=1e-3)
    return ct.voxels, labels.voxels


def test_label_maps_are_flagged_as_not_ct(testdata):
    studies = {s.study_id: s for s in discover_studies(testdata)}
    assert any("label map" in w for w in load_study(studies["ct_chest_small_totalseg.nii.gz"]).warnings)
    assert any("label map" in w for w in load_study(studies["dicom_series_totalseg.nii.gz"]).warnings)
    assert load_study(studies["ct_chest_small.nii.gz"]).warnings == []
    assert load_study(studies["dicom_series"]).warnings == []


def test_lung_lobes_sit_on_air_filled_lung(testdata):
    hu, labels = _load_pair(testdata, "ct_chest_small.nii.gz", "ct_chest_small_totalseg.nii.gz")
    lungs = np.isin(labels, LUNG_LOBES)
    assert lungs.sum() > 1000
    assert np.median(hu[lungs]) < -500
    for lobe in LUNG_LOBES:
        if (labels == lobe).any():
            assert np.median(hu[labels == lobe]) < -500, f"lobe {lobe}"


def test_dicom_aorta_and_liver_sit_on_their_tissue(testdata):
    hu, labels = _load_pair(testdata, "dicom_series", "dicom_series_totalseg.nii.gz")
    assert np.median(hu[labels == AORTA]) > 120
    assert 80 < np.median(hu[labels == LIVER]) < 110


def test_label_map_in_another_orientation_still_overlays(testdata, tmp_path):
    """CT stays RAS; its label map is re-saved in LPS and PIR: both must still overlay."""
    for axcodes in [("L", "P", "S"), ("P", "I", "R")]:
        labels = load_path(resave(testdata / "ct_chest_small_totalseg.nii.gz", tmp_path / "seg.nii.gz", axcodes))
        hu = load_path(testdata / "ct_chest_small.nii.gz").voxels
        assert np.median(hu[np.isin(labels.voxels, LUNG_LOBES)]) < -500


@pytest.mark.parametrize("axis", [1, 2])
def test_negative_control_a_flipped_axis_breaks_the_overlay(testdata, axis):
    """The overlay numbers do catch orientation bugs: flip y or x and they fail.

    (The series is only 40 mm tall, so a z flip keeps aorta and liver on
    themselves; the anatomy test below catches z flips.)"""
    hu, labels = _load_pair(testdata, "dicom_series", "dicom_series_totalseg.nii.gz")
    flipped = np.flip(labels, axis=axis)
    aorta_ok = np.median(hu[flipped == AORTA]) > 120
    liver_ok = 80 < np.median(hu[flipped == LIVER]) < 110
    assert not (aorta_ok and liver_ok)


def _centroid(labels, ids):
    return np.argwhere(np.isin(labels, ids)).mean(axis=0)  # (z, y, x)


@pytest.mark.parametrize("name", ["ct_chest_small_totalseg.nii.gz", "dicom_series_totalseg.nii.gz"])
def test_canonical_axes_point_the_right_anatomical_way(testdata, name):
    """z grows to superior, y to posterior, x to the patient's left, in real anatomy."""
    studies = {s.study_id: s for s in discover_studies(testdata)}
    labels = load_study(studies[name]).voxels
    spleen, liver, aorta, spinal_cord = 1, 5, 52, 79
    assert _centroid(labels, [liver])[2] < _centroid(labels, [spleen])[2], "liver on the patient's right (low x)"
    assert _centroid(labels, [spinal_cord])[1] > _centroid(labels, [aorta])[1], "spinal cord behind the aorta"
    if np.isin(labels, LUNG_LOBES).any():
        kidneys = [2, 3]
        assert _centroid(labels, LUNG_LOBES)[0] > _centroid(labels, kidneys)[0], "lungs above the kidneys"
        left_lobes, right_lobes = [10, 11], [12, 13, 14]
        assert _centroid(labels, left_lobes)[2] > _centroid(labels, right_lobes)[2]


def test_dicom_series_geometry_from_positions_not_slice_thickness(testdata):
    volume = load_path(testdata / "dicom_series")
    assert volume.source_format == "dicom" and volume.kind == "volume"
    assert volume.file_axcodes == ("L", "P", "S"), "(column, row, slice) of an axial series in LPS terms"
    assert volume.shape == (20, 512, 512)
    assert volume.spacing == pytest.approx((2.0, 0.9765625, 0.9765625))
    assert volume.meta["slice_thickness_mm"] in ("3", 3, 3.0)
    # RescaleIntercept -1024 applied once: air outside the body near -1000, not -2048 or +1000
    assert -1100 < np.median(volume.voxels[:, :20, :20]) < -900
    assert volume.voxels.dtype == np.int16


def test_dicom_metadata_has_no_patient_identifiers(testdata):
    volume = load_path(testdata / "dicom_series")
    text = repr(volume.meta).lower()
    for forbidden in ("patient", "birth", "accession", "institution", "basel", "petersgraben", "2022", "uid"):
        assert forbidden not in text.replace("patient_position", "")


def test_coronal_single_slice_is_shown_superior_up_right_on_the_left(tmp_path):
    data = np.full((30, 1, 20), -1000, dtype=np.int16)  # RAS file: x (to right), y (one slice), z (to superior)
    data[28, 0, 18] = 700  # i = 28: near the patient's right side; k = 18: near the top
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "coronal.nii.gz")
    volume = load_path(tmp_path / "coronal.nii.gz")
    assert volume.kind == "slice" and volume.shape == (1, 20, 30)
    # rows run superior->inferior, columns patient right->left
    assert volume.voxels[0, 20 - 1 - 18, 30 - 1 - 28] == 700


DICOM_LAYOUTS = {
    # ImageOrientationPatient (LPS row cosine, column cosine) -> where (k, r, c) point
    "axial": ((1, 0, 0, 0, 1, 0), ("S", "P", "L")),
    "axial, columns towards the patient right": ((-1, 0, 0, 0, 1, 0), ("I", "P", "R")),
    "coronal": ((1, 0, 0, 0, 0, -1), ("P", "I", "L")),
    "sagittal": ((0, 1, 0, 0, 0, -1), ("R", "I", "P")),
}


@pytest.mark.parametrize("layout", sorted(DICOM_LAYOUTS))
def test_real_ct_written_as_dicom_in_any_plane_loads_identically(testdata, tmp_path, layout):
    """The real NIfTI CT written as a DICOM series (our writer, any ImageOrientationPatient,
    shuffled InstanceNumbers) loads to the same array and affine as the NIfTI."""
    from badinputs import write_dicom_series

    from omnict_cli.studies.volume import canonicalize

    original = load_path(testdata / "ct_chest_small.nii.gz")
    orientation, axcodes = DICOM_LAYOUTS[layout]
    array, affine = canonicalize(original.voxels, original.affine, axcodes)
    origin_lps = np.diag([-1, -1, 1]) @ affine[:3, 3]
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    shuffled = np.random.default_rng(0).permutation(array.shape[0]) + 1
    write_dicom_series(
        tmp_path / "series",
        array,
        spacing=tuple(spacing),
        orientation=orientation,
        origin=tuple(origin_lps),
        instance_numbers=shuffled,
        slice_thickness=5.0,
    )
    loaded = load_path(tmp_path / "series")
    assert loaded.source_axcodes == axcodes
    np.testing.assert_array_equal(loaded.voxels, original.voxels)
    np.testing.assert_allclose(loaded.affine, original.affine, atol=1e-3)


# --------------------------------------------------------------------------- damaged NIfTI geometry (issue 12)

VOXEL_MM = (0.8, 0.8, 2.0)
"""(x, y, z) voxel size of the raw NIfTI cases; canonical spacing (z, y, x) is therefore (2.0, 0.8, 0.8)."""


def _raw_case(tmp_path, name, **fields):
    from badinputs import canonical_to_nifti, phantom_hu, write_raw_nifti

    from omnict_cli.studies.inspection import summarize_study

    path = write_raw_nifti(tmp_path / f"{name}.nii", canonical_to_nifti(phantom_hu()), **fields)
    (study,) = discover_studies(path)
    return path, summarize_study(study)


AFFINE = np.diag([*VOXEL_MM, 1.0])


@pytest.mark.parametrize(
    "fields, warning",
    [
        (dict(sform=AFFINE, pixdim=0), "pixdim 0x0x0 is not a voxel size: used the sform's 0.8x0.8x2 mm"),
        (dict(sform=AFFINE, qform=AFFINE, pixdim=0), "pixdim 0x0x0 is not a voxel size: used the sform's 0.8x0.8x2 mm"),
    ],
)
def test_pixdim_zero_takes_the_voxel_size_from_the_sform_and_says_so(tmp_path, fields, warning):
    _, summary = _raw_case(tmp_path, "pixdim0", **fields)
    assert summary.status == "warning" and summary.spacing == [2.0, 0.8, 0.8]
    assert warning in summary.warnings, summary.warnings


def test_pixdim_zero_with_a_qform_uses_the_sform_rows_even_when_their_code_is_0(tmp_path):
    from badinputs import canonical_to_nifti, phantom_hu, write_raw_nifti

    path = write_raw_nifti(tmp_path / "qform.nii", canonical_to_nifti(phantom_hu()), qform=AFFINE, pixdim=0)
    data = bytearray(path.read_bytes())
    header = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(bytes(data[:348])), check=False)
    header["srow_x"], header["srow_y"], header["srow_z"] = AFFINE[0], AFFINE[1], AFFINE[2]  # code stays 0
    path.write_bytes(header.binaryblock + bytes(data[348:]))
    (study,) = discover_studies(path)
    volume = load_study(study)
    assert volume.spacing == pytest.approx((2.0, 0.8, 0.8))
    assert any("the qform took the voxel size 0.8x0.8x2 mm from the sform rows" in w for w in volume.warnings)


def test_pixdim_zero_without_any_size_is_assumed_1_mm_and_warned(tmp_path):
    _, summary = _raw_case(tmp_path, "unknown_size", qform=AFFINE, pixdim=0)
    assert summary.status == "warning" and summary.spacing == [1.0, 1.0, 1.0]
    assert any("no sform gives one: assumed 1 mm" in w for w in summary.warnings)


@pytest.mark.parametrize(
    "sform, problem",
    [
        (np.diag([np.nan, 1.0, 1.0, 1.0]), "the sform has NaN or infinite entries"),
        (np.diag([np.inf, 1.0, 1.0, 1.0]), "the sform has NaN or infinite entries"),
        (np.diag([1.0, 0.0, 1.0, 1.0]), "the sform gives voxel axis 1 zero length"),
        (np.array([[1.0, 1.0, 0, 0], [0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]]), "the sform is singular"),
    ],
)
def test_nan_inf_or_singular_affines_are_clear_errors(tmp_path, sform, problem):
    path, summary = _raw_case(tmp_path, "bad_affine", sform=sform)
    assert summary.status == "error"
    assert summary.error.startswith(f"{path}: no usable voxel geometry: {problem}"), summary.error
    assert "re-export" in summary.error and "unexpected" not in summary.error


def test_a_bad_sform_falls_back_to_a_good_qform_with_a_warning(tmp_path):
    _, summary = _raw_case(tmp_path, "qform_rescue", sform=np.diag([np.nan, 1.0, 1.0, 1.0]), qform=AFFINE)
    assert summary.spacing == [2.0, 0.8, 0.8]
    assert "the sform has NaN or infinite entries: used the qform" in summary.warnings


def test_itk_image_with_a_singular_or_nan_geometry_is_a_clear_error(tmp_path):
    from omnict_cli.studies.inspection import summarize_study

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16)), str(tmp_path / "scan.nrrd"))
    text = (tmp_path / "scan.nrrd").read_bytes()
    assert b"space directions: (1,0,0) (0,1,0) (0,0,1)" in text
    (tmp_path / "scan.nrrd").unlink()
    damaged = {
        "flat": b"space directions: (1,0,0) (1,0,0) (0,0,1)",
        "nan": b"space directions: (nan,0,0) (0,1,0) (0,0,1)",
    }
    for name, directions in damaged.items():
        (tmp_path / f"{name}.nrrd").write_bytes(text.replace(b"space directions: (1,0,0) (0,1,0) (0,0,1)", directions))
    summaries = {study.study_id: summarize_study(study) for study in discover_studies(tmp_path)}
    assert set(summaries) == {f"{name}.nrrd" for name in damaged}
    for name, summary in summaries.items():
        assert summary.status == "error", (name, summary)
        assert summary.error.startswith(str(tmp_path / name)) and "unexpected" not in summary.error
    assert "Bad direction, determinant is 0" in summaries["flat.nrrd"].error  # ITK's reason, not a matrix row
