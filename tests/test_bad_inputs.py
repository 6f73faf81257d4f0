"""Bad input never stops a run: one clear line per unreadable study, the walk goes on.

The corpus is written by ``tests/badinputs.py`` (our own NIfTI and DICOM
writers, no downloads). Every case is checked where the user sees it:
``discover_studies`` + ``summarize_study`` (what ``omnict inspect`` prints),
and, for the repairs, the loaded voxel values themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from badinputs import (
    DICOM_SPACING,
    DUPLICATE_Z,
    GANTRY_TILT_DEGREES,
    HUGE_NIFTI_SHAPE,
    NIFTI_SPACING,
    UNEVEN_Z,
    build_bad_corpus,
    canonical_to_nifti,
    dicom_case_volume,
    dicom_test_volume,
    insert_raw_element,
    phantom_hu,
    set_raw_value,
    write_dicom_series,
    write_nifti,
)
from click.testing import CliRunner

from omnict_cli.cli import main
from omnict_cli.studies.discover import discover_studies
from omnict_cli.studies.inspection import summarize_study
from omnict_cli.studies.load import load_study
from omnict_cli.studies.readers.base import DEFAULT_MAX_VOXELS, LoadOptions

EXPECTED_IDS = {
    "dicom_blank_uid#series3",
    "dicom_blank_uid#series4",
    "dicom_duplicates",
    "dicom_gantry_tilt",
    "dicom_missing_slice",
    "dicom_mr",
    "dicom_no_pixels/structures.dcm",
    "dicom_two_series#series1",
    "dicom_two_series#series2",
    "dicom_uneven",
    "dicom_valid",
    "dicom_zero_byte/empty.dcm",
    "four_d.nii.gz",
    "loop/inside.nii.gz",
    "loop/parent",
    "nan_inf.nii.gz",
    "one_slice.nii.gz",
    "random_bytes.nii.gz",
    "scaled_0_1.nii.gz",
    "too_large.nii.gz",
    "truncated.nii.gz",
    "truncated_header.nii.gz",
    "unreadable.nii.gz",
    "valid_control.nii.gz",
    "zero_byte.nii.gz",
}
"""One entry per study: each case once, two per mixed-series folder, the loop reported once."""

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_corpus")
    cases = build_bad_corpus(root)
    cases["_root"] = root
    return cases


@pytest.fixture(scope="module")
def studies(corpus):
    found = discover_studies(corpus["_root"])
    return {study.study_id: study for study in found}


@pytest.fixture(scope="module")
def summaries(studies):
    return {study_id: summarize_study(study) for study_id, study in studies.items()}


def _error(summaries, study_id):
    summary = summaries[study_id]
    assert summary.status == "error", (study_id, summary)
    assert "\n" not in summary.error
    return summary.error


def _warning(summaries, study_id, expected):
    summary = summaries[study_id]
    assert summary.status == "warning", (study_id, summary)
    matching = [w for w in summary.warnings if expected in w]
    assert len(matching) == 1, (expected, summary.warnings)
    return summary


# --------------------------------------------------------------------------- the walk


def test_one_study_per_case_and_the_walk_finishes(studies):
    assert set(studies) == EXPECTED_IDS


def test_valid_nifti_control_loads_cleanly(summaries, studies):
    summary = summaries["valid_control.nii.gz"]
    assert summary.status == "ok" and summary.warnings == [] and summary.error is None
    assert summary.kind == "volume"
    assert summary.spacing == [NIFTI_SPACING[2], NIFTI_SPACING[1], NIFTI_SPACING[0]]
    volume = load_study(studies["valid_control.nii.gz"])
    np.testing.assert_array_equal(volume.voxels, phantom_hu())


def test_valid_dicom_control_loads_exactly(summaries, studies):
    summary = summaries["dicom_valid"]
    assert summary.status == "ok" and summary.warnings == []
    volume = load_study(studies["dicom_valid"])
    assert volume.spacing == pytest.approx(DICOM_SPACING)
    assert volume.voxels.dtype == np.int16
    np.testing.assert_array_equal(volume.voxels, dicom_case_volume("valid_dicom"))


# --------------------------------------------------------------------------- errors: one line, file + what + what to do


@pytest.mark.parametrize(
    "case, study_id, what, todo",
    [
        ("zero_byte", "zero_byte.nii.gz", "empty file (0 bytes)", "Re-export it or remove it"),
        ("zero_byte_dicom", "dicom_zero_byte/empty.dcm", "empty file (0 bytes)", "Re-export it or remove it"),
        ("truncated", "truncated.nii.gz", "cannot read NIfTI data", "truncated; re-export or re-download"),
        (
            "truncated_header",
            "truncated_header.nii.gz",
            "file ends inside its NIfTI header (200 of 348 bytes)",
            "the file is truncated",
        ),
        ("random_bytes", "random_bytes.nii.gz", "not a NIfTI file", "Check the file is really NIfTI"),
        (
            "no_pixels",
            "dicom_no_pixels/structures.dcm",
            "no pixel data (RT Structure Set Storage)",
            "It is not an image",
        ),
        ("mr", "dicom_mr", "modality is MR, not CT", "pass --allow-non-ct"),
        ("too_large", "too_large.nii.gz", "over the limit", "Pass --max-voxels"),
    ],
)
def test_unreadable_study_gives_one_clear_line(corpus, summaries, case, study_id, what, todo):
    error = _error(summaries, study_id)
    path = corpus[case]
    named = path if path.is_file() else next(p for p in sorted(path.iterdir()))
    assert error.startswith(f"{named}: "), error
    assert what in error and todo in error
    assert "unexpected" not in error and "please report" not in error


def test_truncated_gzip_names_the_cut(summaries):
    assert "EOFError" in _error(summaries, "truncated.nii.gz")


def test_random_bytes_named_nii_gz_is_not_a_gzip_error(summaries):
    # The name says gzip, the bytes do not: the line says it is not NIfTI.
    assert "Gzip" not in _error(summaries, "random_bytes.nii.gz")


def test_plain_nifti_misnamed_gz_still_loads(tmp_path):
    plain = write_nifti(tmp_path / "plain.nii", canonical_to_nifti(phantom_hu()))
    misnamed = plain.rename(tmp_path / "plain.nii.gz")
    summary = summarize_study(discover_studies(misnamed)[0])
    assert summary.status == "warning"
    assert summary.warnings == ["file is named .gz but is not gzip-compressed: read as plain NIfTI"]


# --------------------------------------------------------------------------- warnings, with the repaired values


def test_4d_nifti_uses_the_first_volume(summaries, studies):
    _warning(summaries, "four_d.nii.gz", "first volume")
    volume = load_study(studies["four_d.nii.gz"])
    np.testing.assert_array_equal(volume.voxels, phantom_hu())  # volumes 2 and 3 are +/-100 HU


def test_nan_and_inf_voxels_are_repaired_and_counted(summaries, studies):
    summary = _warning(summaries, "nan_inf.nii.gz", "NaN")
    assert summary.warnings[0].startswith("4 NaN/infinite voxels replaced")
    volume = load_study(studies["nan_inf.nii.gz"])
    assert np.isfinite(volume.voxels).all()
    phantom = phantom_hu()
    assert volume.voxels[3, 5, 6] == volume.voxels[4, 7, 8] == -1000.0  # NaN -> air
    finite = np.ones(phantom.shape, bool)
    for z, y, x in [(3, 5, 6), (4, 7, 8), (5, 9, 10), (6, 11, 12)]:
        finite[z, y, x] = False
    assert volume.voxels[5, 9, 10] == phantom[finite].max()  # +inf -> finite max
    assert volume.voxels[6, 11, 12] == phantom[finite].min()  # -inf -> finite min
    np.testing.assert_array_equal(volume.voxels[finite], phantom[finite])


def test_image_scaled_to_0_1_is_flagged_not_ct_hu(summaries):
    summary = _warning(summaries, "scaled_0_1.nii.gz", "not CT HU")
    assert 0.0 <= summary.hu_range[0] and summary.hu_range[1] <= 1.0


def test_one_slice_volume_is_a_slice(summaries, studies):
    summary = _warning(summaries, "one_slice.nii.gz", "1-slice volume")
    assert summary.kind == "slice" and summary.shape == [1, 32, 32]
    np.testing.assert_array_equal(load_study(studies["one_slice.nii.gz"]).voxels, phantom_hu()[7:8])


def test_missing_dicom_slice_is_interpolated_on_the_true_grid(summaries, studies):
    summary = _warning(summaries, "dicom_missing_slice", "missing slice")
    complete = dicom_case_volume("missing_slice")
    assert summary.shape[0] == len(complete) == 12
    volume = load_study(studies["dicom_missing_slice"])
    assert volume.spacing == pytest.approx(DICOM_SPACING)
    assert volume.voxels.dtype == np.int16
    # The gap is filled with the mean of its neighbours (even HU: exact in int16) ...
    np.testing.assert_array_equal(volume.voxels[5], (complete[4].astype(int) + complete[6]) // 2)
    # ... and every slice that was there is untouched and in place.
    np.testing.assert_array_equal(np.delete(volume.voxels, 5, axis=0), np.delete(complete, 5, axis=0))
    assert volume.affine[2, 3] == pytest.approx(0.0) and volume.affine[2, 0] == pytest.approx(DICOM_SPACING[0])


def test_uneven_spacing_is_resampled_to_a_regular_grid(summaries, studies):
    summary = _warning(summaries, "dicom_uneven", "uneven")
    written = dicom_case_volume("uneven")
    volume = load_study(studies["dicom_uneven"])
    step = DICOM_SPACING[0]
    count = int(round((UNEVEN_Z[-1] - UNEVEN_Z[0]) / step)) + 1
    assert summary.shape[0] == count
    # The affine describes the grid the voxels were resampled to.
    assert volume.spacing == pytest.approx((step, DICOM_SPACING[1], DICOM_SPACING[2]))
    assert volume.affine[2, 0] == pytest.approx(step)
    along = np.asarray(UNEVEN_Z)
    for k in range(count - 1):  # the last grid point (20 mm) lies past the last slice (19.5 mm)
        z = k * step
        upper = min(int(np.searchsorted(along, z, side="left")), len(along) - 1)
        upper = max(upper, 1)
        lower = upper - 1
        t = (z - along[lower]) / (along[upper] - along[lower])
        expected = (1 - t) * written[lower] + t * written[upper]
        np.testing.assert_allclose(volume.voxels[k], expected, atol=0.5)


def test_gantry_tilt_is_reported_once_and_the_affine_keeps_true_positions(summaries, studies):
    summary = _warning(summaries, "dicom_gantry_tilt", "gantry tilt")
    assert f"{GANTRY_TILT_DEGREES:.1f} degrees" in summary.warnings[0]
    assert not any("oblique" in w for w in summary.warnings), summary.warnings
    volume = load_study(studies["dicom_gantry_tilt"])
    np.testing.assert_array_equal(volume.voxels, dicom_case_volume("gantry_tilt"))
    shear = np.tan(np.radians(GANTRY_TILT_DEGREES))
    for k in (0, 4, 9):  # voxel (k, 0, 0) is slice k's ImagePositionPatient, LPS -> RAS
        z = k * DICOM_SPACING[0]
        np.testing.assert_allclose(volume.affine @ [k, 0, 0, 1], [0.0, -z * shear, z, 1.0], atol=1e-4)  # DS: 6 digits


def test_duplicate_slice_positions_are_dropped(summaries, studies):
    summary = _warning(summaries, "dicom_duplicates", "duplicate")
    assert "2 slice(s)" in summary.warnings[0]
    volume = load_study(studies["dicom_duplicates"])
    assert volume.spacing == pytest.approx(DICOM_SPACING)
    keep = [0, 1, 2, 4, 5, 6, 8, 9]  # the first file at each repeated position stays
    assert len(keep) == len(set(DUPLICATE_Z))
    np.testing.assert_array_equal(volume.voxels, dicom_case_volume("duplicates")[keep])


@pytest.mark.parametrize(
    "study_id, case",
    [
        ("dicom_two_series#series1", "two_series_1"),
        ("dicom_two_series#series2", "two_series_2"),
        ("dicom_blank_uid#series3", "blank_uid_3"),  # blank SeriesInstanceUID: split by SeriesNumber
        ("dicom_blank_uid#series4", "blank_uid_4"),
    ],
)
def test_series_mixed_in_one_folder_are_separate_studies(studies, summaries, study_id, case):
    expected = dicom_case_volume(case)
    assert len(studies[study_id].paths) == len(expected)
    assert summaries[study_id].status != "error"
    assert summaries[study_id].shape == list(expected.shape)
    np.testing.assert_array_equal(load_study(studies[study_id]).voxels, expected)


def test_mr_series_loads_when_non_ct_is_allowed(studies):
    summary = summarize_study(studies["dicom_mr"], LoadOptions(allow_non_ct=True))
    assert summary.status == "warning" and summary.kind == "volume"
    # One warning, about the modality; not a misleading "rescale intercept missing".
    assert summary.warnings == [
        "modality is MR, loaded because non-CT was allowed: values are MR intensities, not CT HU"
    ]
    volume = load_study(studies["dicom_mr"], LoadOptions(allow_non_ct=True))
    np.testing.assert_array_equal(volume.voxels, dicom_case_volume("mr"))


# --------------------------------------------------------------------------- size limit


def test_default_limit_refuses_a_huge_header_without_reading_data(corpus):
    path = corpus["too_large"]
    assert path.stat().st_size < 1024  # a header claiming 4 Gi voxels, no data at all
    assert np.prod(HUGE_NIFTI_SHAPE) > DEFAULT_MAX_VOXELS
    started = time.perf_counter()
    summary = summarize_study(discover_studies(path)[0])
    assert time.perf_counter() - started < 2.0
    assert summary.status == "error"
    assert "2048x2048x1024 = 4,294,967,296 voxels is over the limit of 1,073,741,824" in summary.error
    assert "--max-voxels" in summary.error
    assert "cannot read" not in summary.error  # the size, not a decode error


@pytest.mark.parametrize("study_id, voxels", [("valid_control.nii.gz", 16 * 32 * 32), ("dicom_valid", 12 * 16 * 16)])
def test_a_smaller_limit_refuses_with_the_option_to_raise_it(studies, study_id, voxels):
    summary = summarize_study(studies[study_id], LoadOptions(max_voxels=voxels - 1))
    assert summary.status == "error"
    assert f"{voxels:,} voxels is over the limit of {voxels - 1:,}" in summary.error
    assert "--max-voxels" in summary.error
    assert summarize_study(studies[study_id], LoadOptions(max_voxels=voxels)).status == "ok"


def test_oversized_dicom_series_is_refused_before_pixels_are_read(studies, monkeypatch):
    import omnict_cli.studies.readers.dicom as dicom_reader

    def no_pixel_reads(paths):
        raise AssertionError("pixel data was read before the size check")

    monkeypatch.setattr(dicom_reader, "_read_datasets", no_pixel_reads)
    summary = summarize_study(studies["dicom_valid"], LoadOptions(max_voxels=100))
    assert summary.status == "error" and "over the limit" in summary.error
    summary = summarize_study(studies["dicom_mr"])
    assert summary.status == "error" and "--allow-non-ct" in summary.error


# --------------------------------------------------------------------------- permissions


@pytest.mark.skipif(AS_ROOT, reason="root reads files whatever their mode")
def test_unreadable_file_and_folder_with_real_permissions(tmp_path):
    locked = write_nifti(tmp_path / "locked.nii.gz", canonical_to_nifti(phantom_hu()))
    write_nifti(tmp_path / "fine.nii.gz", canonical_to_nifti(phantom_hu()))
    folder = tmp_path / "locked_folder"
    write_nifti(folder / "inside.nii.gz", canonical_to_nifti(phantom_hu()))
    os.chmod(locked, 0)
    os.chmod(folder, 0)
    try:
        found = {s.study_id: summarize_study(s) for s in discover_studies(tmp_path)}
    finally:
        os.chmod(folder, 0o755)
        os.chmod(locked, 0o644)
    assert found["fine.nii.gz"].status == "ok"
    assert found["locked.nii.gz"].error.startswith(f"{locked}: permission denied")
    assert "chmod" in found["locked.nii.gz"].error
    assert found["locked_folder"].error.startswith(f"{folder}: cannot list folder")


def test_permission_denied_nifti_says_so(corpus, studies, monkeypatch):
    import omnict_cli.studies.readers.nifti as nifti_reader

    def denied(path, warnings):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(nifti_reader, "_open", denied)
    summary = summarize_study(studies["valid_control.nii.gz"])
    assert summary.status == "error"
    assert summary.error == (
        f"{corpus['valid_nifti']}: permission denied: cannot read the file. Make the file "
        "readable for this user (chmod/chown), or run as a user who may read it"
    )


def test_permission_denied_dicom_slice_is_named_and_the_series_still_loads(tmp_path, monkeypatch):
    import omnict_cli.studies.readers.dicom_fields as dicom_reader

    volume = dicom_case_volume("valid_dicom")
    paths = write_dicom_series(tmp_path / "series", volume)
    locked = paths[4]
    real_dcmread = dicom_reader.pydicom.dcmread

    def dcmread(path, *args, **kwargs):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_dcmread(path, *args, **kwargs)

    monkeypatch.setattr(dicom_reader.pydicom, "dcmread", dcmread)
    found = {s.study_id: summarize_study(s) for s in discover_studies(tmp_path)}
    assert set(found) == {"series", "series/slice0004.dcm"}
    assert found["series/slice0004.dcm"].error.startswith(f"{locked}: permission denied")
    assert "damaged" not in found["series/slice0004.dcm"].error
    assert found["series"].shape == list(volume.shape)
    assert any("missing slice" in w for w in found["series"].warnings)


def test_unreadable_file_without_a_suffix_is_reported_not_skipped(tmp_path, monkeypatch):
    import omnict_cli.studies.readers.dicom as dicom_reader

    target = tmp_path / "IM0001"
    target.write_bytes(b"\0" * 200)

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(dicom_reader, "has_dicom_preamble", denied)
    (study,) = discover_studies(tmp_path)
    summary = summarize_study(study)
    assert summary.error.startswith(f"{target}: permission denied")


def _write_one(folder: Path, fmt: str) -> Path:
    phantom = phantom_hu()
    if fmt == "nifti":
        return write_nifti(folder / "scan.nii.gz", canonical_to_nifti(phantom))
    if fmt == "dicom":
        return write_dicom_series(folder, phantom[:1])[0]
    if fmt == "npy":
        np.save(folder / "scan.npy", phantom)
        return folder / "scan.npy"
    if fmt == "nrrd":
        import SimpleITK as sitk

        sitk.WriteImage(sitk.GetImageFromArray(phantom), str(folder / "scan.nrrd"))
        return folder / "scan.nrrd"
    from PIL import Image

    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(folder / "scan.png")
    return folder / "scan.png"


@pytest.mark.parametrize("fmt", ["nifti", "dicom", "npy", "nrrd", "png"])
def test_permission_denied_is_named_for_every_format(tmp_path, monkeypatch, fmt):
    import builtins

    target = _write_one(tmp_path, fmt)
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file) == target:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    (study,) = discover_studies(tmp_path)
    summary = summarize_study(study)
    assert summary.status == "error"
    assert summary.error.startswith(f"{target}: permission denied"), summary.error
    assert "chmod" in summary.error and "damaged" not in summary.error


def test_corpus_unreadable_file(corpus, summaries):
    summary = summaries["unreadable.nii.gz"]
    if AS_ROOT:  # mode 000 does not stop root: it loads like the control
        assert summary.status == "ok"
    else:
        assert summary.error.startswith(f"{corpus['unreadable']}: permission denied")


# --------------------------------------------------------------------------- symlink loops


def _discover_with_deadline(path, seconds=20.0):
    """discover_studies in a thread, so a loop fails the test instead of hanging it."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("studies", discover_studies(path)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "discovery did not terminate (symlink loop followed forever?)"
    return result["studies"]


@pytest.mark.parametrize("start", ["top", "studies"])
def test_symlink_loop_is_reported_once_and_real_studies_found(tmp_path, start):
    """A link back up (``up -> ..``) is reported once and never followed: the walk stays inside what was named."""
    top = tmp_path / "top"
    write_nifti(top / "studies" / "scan.nii.gz", canonical_to_nifti(phantom_hu()))
    write_nifti(top / "other.nii.gz", canonical_to_nifti(phantom_hu()))
    (top / "studies" / "up").symlink_to("..", target_is_directory=True)
    root = top if start == "top" else top / "studies"
    found = _discover_with_deadline(root)
    loops = [s for s in found if s.problem and "contains it" in s.problem]
    assert len(loops) == 1
    summary = summarize_study(loops[0])
    assert summary.status == "error" and "not followed" in summary.error
    loaded = sorted(s.study_id for s in found if not s.problem)
    # From inside, the link would lead up into the parent tree: other.nii.gz is not the user's to read.
    assert loaded == (["other.nii.gz", "studies/scan.nii.gz"] if start == "top" else ["scan.nii.gz"])
    for study in found:
        if not study.problem:
            assert summarize_study(study).status == "ok"


def test_link_to_itself_terminates(tmp_path):
    write_nifti(tmp_path / "scan.nii.gz", canonical_to_nifti(phantom_hu()))
    (tmp_path / "self").symlink_to(".", target_is_directory=True)
    found = _discover_with_deadline(tmp_path)
    assert sorted(s.study_id for s in found) == ["scan.nii.gz", "self"]
    assert "contains it" in next(s for s in found if s.study_id == "self").problem


# --------------------------------------------------------------------------- the whole corpus in one command


def _check_inspect_json(records, corpus):
    assert isinstance(records, list)
    by_id = {r["study_id"]: r for r in records}
    assert len(records) == len(by_id) == len(EXPECTED_IDS)
    assert set(by_id) == EXPECTED_IDS
    assert by_id["valid_control.nii.gz"]["status"] == "ok"
    assert by_id["dicom_valid"]["status"] == "ok"
    for record in records:
        assert record["status"] in ("ok", "warning", "error")
        if record["status"] == "error":
            assert record["error"] and "\n" not in record["error"]
            assert str(corpus["_root"]) in record["error"]  # names the file
            assert "unexpected" not in record["error"]


def test_inspect_json_walks_the_whole_corpus(corpus):
    result = CliRunner().invoke(main, ["inspect", str(corpus["_root"]), "--json"])
    assert result.exit_code == 1, result.output  # studies failed
    _check_inspect_json(json.loads(result.stdout), corpus)


def test_inspect_table_prints_one_line_per_failed_study(corpus, summaries):
    result = CliRunner().invoke(main, ["inspect", str(corpus["_root"])])
    assert result.exit_code == 1, result.output  # studies failed
    failed = [s for s in summaries.values() if s.status == "error"]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error ")]
    assert sorted(lines) == sorted(f"error {s.error}" for s in failed)
    assert f"{len(summaries)} studies:" in result.stderr
    assert f"{len(failed)} failed" in result.stderr


def test_inspect_json_as_a_real_process(corpus):
    completed = subprocess.run(
        [sys.executable, "-m", "omnict_cli", "inspect", str(corpus["_root"]), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 1, completed.stderr  # studies failed, none crashed
    assert "Traceback" not in completed.stderr
    _check_inspect_json(json.loads(completed.stdout), corpus)


# --------------------------------------------------------------------------- damaged DICOM headers (issue 12)


def _series_with(tmp_path, damage, slices: int = 6, **options):
    """A 6-slice series with ``damage(paths)`` applied; returns {study id: summary} of its folder."""
    folder = tmp_path / "series"
    paths = write_dicom_series(folder, dicom_test_volume(slices), **options)
    damage(paths)
    return {study.study_id: summarize_study(study) for study in discover_studies(tmp_path)}, paths


def _cut(length):
    def cut(paths):
        paths[2].write_bytes(paths[2].read_bytes()[:length])

    return cut


def _unknown_vr(paths):
    data = paths[2].read_bytes()
    at = data.find(b"\x28\x00\x11\x00US")  # Columns
    paths[2].write_bytes(data[: at + 4] + b"ZZ" + data[at + 6 :])


@pytest.mark.parametrize(
    "damage, problem",
    [
        (_cut(154), "cannot read DICOM"),
        (_cut(142), "cannot read DICOM"),
        (_unknown_vr, "header field Columns cannot be read (NotImplementedError: Unknown Value Representation 'ZZ'"),
        (
            lambda paths: insert_raw_element(paths[2], "NumberOfFrames", b"IS", b"abcdef"),
            "header field NumberOfFrames is 'abcdef', not a number",
        ),
        (
            lambda paths: set_raw_value(paths[2], "Columns", b"\x10\x00\x10\x00"),
            "header field Columns has 2 values ('16\\\\16'), expected 1",
        ),
    ],
)
def test_a_damaged_slice_is_its_own_error_line_and_the_series_loads_without_it(tmp_path, damage, problem):
    """The issue's reproductions: each crashed inspect with a traceback before."""
    found, paths = _series_with(tmp_path, damage)
    broken = found.pop("series/slice0002.dcm")
    assert broken.status == "error" and broken.error.startswith(f"{paths[2]}: {problem}"), broken.error
    assert "re-export the series, or remove the file" in broken.error
    assert list(found) == ["series"]
    series = found["series"]
    assert series.shape == [6, 16, 16]  # the gap is filled, as for a missing slice
    assert any("1 missing slice(s)" in warning for warning in series.warnings)


def test_a_slice_with_damaged_pixel_data_is_left_out_with_a_warning(tmp_path):
    def cut_pixels(paths):
        paths[3].write_bytes(paths[3].read_bytes()[:-100])

    found, paths = _series_with(tmp_path, cut_pixels)
    assert list(found) == ["series"]
    warnings = found["series"].warnings
    assert any(w.startswith("left out slice0003.dcm: cannot decode pixel data") for w in warnings), warnings
    assert found["series"].shape == [6, 16, 16]


def test_identical_series_in_two_folders_stay_two_studies(tmp_path):
    volume = dicom_case_volume("valid_dicom")
    intact = write_dicom_series(tmp_path / "copy_a", volume, series_uid="1.2.3.4")
    damaged = write_dicom_series(tmp_path / "copy_b", volume, series_uid="1.2.3.4")
    set_raw_value(damaged[4], "RescaleSlope", b"0")
    found = {study.study_id: summarize_study(study) for study in discover_studies(tmp_path)}
    assert sorted(found) == ["copy_a", "copy_b"]
    assert found["copy_a"].status == "ok" and found["copy_a"].shape == list(volume.shape)
    assert found["copy_b"].status == "error"
    assert len(intact) == len(damaged)


@pytest.mark.parametrize(
    "keyword, value, problem",
    [
        ("RescaleSlope", b"0", "RescaleSlope is 0: every voxel would have the same value"),
        ("RescaleSlope", b"abc", "header field RescaleSlope is 'abc', not a number"),
        ("RescaleIntercept", b"x", "header field RescaleIntercept is 'x', not a number"),
        ("RescaleIntercept", b"nan", "header field RescaleIntercept is 'nan', not a finite number"),
        ("PixelSpacing", b"nan\\nan", "header field PixelSpacing is 'nan', not a finite number"),
        ("PixelSpacing", b"0\\0.7", "PixelSpacing is 0\\0.7: pixel sizes must be positive"),
    ],
)
def test_a_bad_rescale_or_pixel_size_fails_the_series_naming_the_slice(tmp_path, keyword, value, problem):
    found, paths = _series_with(tmp_path, lambda paths: set_raw_value(paths[3], keyword, value))
    (summary,) = found.values()
    assert summary.status == "error"
    assert summary.error.startswith(f"{paths[3]}: {problem}"), summary.error
    assert "re-export" in summary.error and "unexpected" not in summary.error


@pytest.mark.parametrize(
    "orientation, problem",
    [
        ((0, 0, 0, 0, 1, 0), "ImageOrientationPatient 0\\0\\0\\0\\1\\0 has a zero direction"),
        ((1, 0, 0, 1, 0, 0), "row and column directions are 0.0 degrees apart, not perpendicular"),
        ((1, 0, 0, 0.5, 0.5, 0), "row and column directions are 45.0 degrees apart"),
    ],
)
def test_an_unusable_orientation_is_a_clear_error(tmp_path, orientation, problem):
    found, paths = _series_with(
        tmp_path, lambda paths: None, orientation=orientation, positions=[(0.0, 0.0, 2.5 * k) for k in range(6)]
    )
    (summary,) = found.values()
    assert summary.status == "error" and problem in summary.error, summary.error
    assert summary.error.startswith(str(paths[0]))


def test_text_in_slice_thickness_of_a_lone_slice_is_warned_not_fatal(tmp_path):
    found, paths = _series_with(tmp_path, lambda paths: set_raw_value(paths[0], "SliceThickness", b"thick"), slices=1)
    (summary,) = found.values()
    assert summary.status == "warning" and summary.kind == "slice"
    assert "header field SliceThickness is 'thick', not a number: slice thickness assumed 1 mm" in summary.warnings


def test_pixel_spacing_that_varies_between_slices_is_warned(tmp_path):
    def resize_one(paths):
        set_raw_value(paths[3], "PixelSpacing", b"0.9\\0.9")

    found, _ = _series_with(tmp_path, resize_one)
    summary = found["series"]
    assert summary.spacing[1:] == [0.7, 0.7]  # the first slice's
    assert any(w.startswith("PixelSpacing differs between slices (rows 0.7 to 0.9 mm") for w in summary.warnings)
    found, _ = _series_with(
        tmp_path / "noise", lambda paths: set_raw_value(paths[3], "PixelSpacing", b"0.7001\\0.7001")
    )
    assert not any("PixelSpacing" in w for w in found["series"].warnings)  # export rounding is not news


def test_an_oversized_picture_is_one_clear_line(tmp_path, monkeypatch):
    from PIL import Image

    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # stands in for a 20000x20000 picture
    (study,) = discover_studies(tmp_path)
    summary = summarize_study(study)
    assert summary.error.startswith(f"{tmp_path / 'huge.png'}: picture is over Pillow's decompression-bomb limit")
    assert "downscale" in summary.error
