"""Discovery: what becomes a study, with which id, from a realistic folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from omnict_cli import discover_studies, load_study
from omnict_cli.errors import StudyLoadError


@pytest.fixture()
def mixed_folder(tmp_path, testdata):
    """A folder as users have them: nested NIfTI, a DICOM series without extensions, pictures, clutter."""
    (tmp_path / "chest").mkdir()
    shutil.copy(testdata / "ct_chest_small.nii.gz", tmp_path / "chest" / "case_001.nii.gz")
    series = tmp_path / "pacs" / "patient_x" / "ct"
    series.mkdir(parents=True)
    for index, path in enumerate(sorted((testdata / "dicom_series").iterdir())):
        shutil.copy(path, series / f"IM{index:04d}")  # no extension, as PACS exports name them
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "slice.png")
    np.save(tmp_path / "array.npy", np.zeros((4, 5, 6), np.int16))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".DS_Store").write_bytes(b"\0" * 10)
    (tmp_path / "chest" / "README").write_text("no preamble, not DICOM")
    return tmp_path


def test_each_kind_of_input_becomes_one_study_with_a_stable_id(mixed_folder):
    studies = {s.study_id: s for s in discover_studies(mixed_folder)}
    assert set(studies) == {"chest/case_001.nii.gz", "pacs/patient_x/ct", "slice.png", "array.npy"}
    assert studies["chest/case_001.nii.gz"].format == "nifti"
    assert studies["pacs/patient_x/ct"].format == "dicom" and len(studies["pacs/patient_x/ct"].paths) == 20
    assert studies["pacs/patient_x/ct"].input == "pacs/patient_x/ct"
    assert studies["slice.png"].format == "png" and studies["array.npy"].format == "npy"
    # the same folder discovered again gives the same ids in the same order
    assert [s.study_id for s in discover_studies(mixed_folder)] == sorted(studies)


def test_dicom_series_loads_the_same_without_file_extensions(mixed_folder, testdata):
    study = next(s for s in discover_studies(mixed_folder) if s.format == "dicom")
    from omnict_cli import load_path

    np.testing.assert_array_equal(load_study(study).voxels, load_path(testdata / "dicom_series").voxels)


def test_two_series_in_one_folder_are_split_by_series_uid(tmp_path, testdata):
    files = sorted((testdata / "dicom_series").iterdir())
    for index, path in enumerate(files):
        dataset = pydicom.dcmread(path)
        half = index % 2  # interleave two "series" in one folder, 10 slices each
        dataset.SeriesInstanceUID = f"1.2.826.0.1.3680043.8.498.{half + 1}"
        dataset.SeriesNumber = half + 3
        dataset.save_as(tmp_path / f"{index:03d}.dcm")
    studies = discover_studies(tmp_path)
    assert [s.study_id for s in studies] == [f"{tmp_path.name}#series3", f"{tmp_path.name}#series4"]
    volumes = [load_study(s) for s in studies]
    assert [v.shape[0] for v in volumes] == [10, 10]
    assert [v.spacing[0] for v in volumes] == pytest.approx([4.0, 4.0])


def test_a_single_file_path_is_one_study(testdata):
    (study,) = discover_studies(testdata / "ct_chest_small.nii.gz")
    assert study.study_id == "ct_chest_small.nii.gz" and study.format == "nifti"


def test_single_dicom_file_is_a_slice_in_hu(testdata):
    path = sorted((testdata / "dicom_series").iterdir())[5]
    volume = load_study(discover_studies(path)[0])
    assert volume.kind == "slice" and volume.shape == (1, 512, 512)
    assert volume.intensity == "hu" and volume.voxels.min() >= -1024


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(StudyLoadError, match="no such file"):
        discover_studies(tmp_path / "absent")


def test_unsupported_single_file_is_reported_not_raised(tmp_path):
    (tmp_path / "report.docx").write_bytes(b"PK\x03\x04")
    (study,) = discover_studies(tmp_path / "report.docx")
    assert "not a supported image format" in study.problem


def test_single_frame_dicoms_in_one_folder_are_named_by_file(tmp_path, testdata):
    for index, path in enumerate(sorted((testdata / "dicom_series").iterdir())[:2]):
        dataset = pydicom.dcmread(path)
        dataset.SeriesInstanceUID = f"1.2.826.0.1.3680043.8.498.{index + 10}"
        dataset.ImagePositionPatient = [0, 0, 0]  # each file alone: a slice, not a series
        dataset.save_as(tmp_path / f"slice_{index}.dcm")
    assert [s.study_id for s in discover_studies(tmp_path)] == ["slice_0.dcm", "slice_1.dcm"]


# --------------------------------------------------------------------------- special files, links, copies (issue 12)


def _small_series(folder, slices: int = 4, **options):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from badinputs import dicom_test_volume, write_dicom_series

    return write_dicom_series(folder, dicom_test_volume(slices), **options)


def test_fifo_and_socket_are_reported_without_being_opened(tmp_path):
    import os
    import socket
    import threading

    from omnict_cli.studies.inspection import summarize_study

    _small_series(tmp_path / "series")
    os.mkfifo(tmp_path / "series" / "pipe")  # opening it would wait for a writer forever
    os.mkfifo(tmp_path / "pipe.nii.gz")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "daemon.sock"))
    try:
        result = {}
        walker = threading.Thread(
            target=lambda: result.update({s.study_id: summarize_study(s) for s in discover_studies(tmp_path)}),
            daemon=True,
        )
        walker.start()
        walker.join(timeout=30)
        assert not walker.is_alive(), "the walk hangs on a named pipe"
    finally:
        server.close()
    assert sorted(result) == ["daemon.sock", "pipe.nii.gz", "series", "series/pipe"]
    assert result["series"].status != "error" and result["series"].shape == [4, 16, 16]
    assert result["series/pipe"].error == (
        f"{tmp_path / 'series' / 'pipe'}: a named pipe (FIFO), not a regular "
        "file: skipped without opening it. Only regular files are read; remove "
        "it from the folder or ignore this line"
    )
    assert "a socket, not a regular file" in result["daemon.sock"].error
    (fifo_root,) = discover_studies(tmp_path / "pipe.nii.gz")  # given directly, still not opened
    assert "named pipe" in fifo_root.problem


def test_a_pseudonymous_symlink_keeps_its_own_name_as_the_study_id(tmp_path):
    import numpy as np_

    real = tmp_path / "archive" / "MRN123456"
    _small_series(real)
    np_.save(tmp_path / "archive" / "MRN654321.npy", np_.zeros((4, 5, 6), np_.int16))
    exposed = tmp_path / "exposed"
    exposed.mkdir()
    (exposed / "pseudo_017").symlink_to(real, target_is_directory=True)
    (exposed / "pseudo_018.npy").symlink_to(tmp_path / "archive" / "MRN654321.npy")
    assert [s.study_id for s in discover_studies(exposed / "pseudo_017")] == ["pseudo_017"]
    assert [s.study_id for s in discover_studies(exposed / "pseudo_018.npy")] == ["pseudo_018.npy"]
    found = discover_studies(exposed)
    assert [s.study_id for s in found] == ["pseudo_017", "pseudo_018.npy"]
    assert "MRN" not in " ".join(s.input for s in found)
    assert load_study(discover_studies(exposed / "pseudo_017")[0]).shape == (4, 16, 16)


def test_adding_a_file_with_the_same_stem_renames_no_existing_study(tmp_path):
    import nibabel

    image = nibabel.Nifti1Image(np.zeros((6, 5, 4), np.int16), np.eye(4))
    nibabel.save(image, tmp_path / "case.nii.gz")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "scan.png")
    before = {s.study_id: s.input for s in discover_studies(tmp_path)}
    nibabel.save(image, tmp_path / "case.nii")
    np.save(tmp_path / "scan.npy", np.zeros((4, 5, 6), np.int16))
    after = {s.study_id: s.input for s in discover_studies(tmp_path)}
    assert before == {"case.nii.gz": "case.nii.gz", "scan.png": "scan.png"}
    assert after == {**before, "case.nii": "case.nii", "scan.npy": "scan.npy"}


def test_copies_of_one_series_in_two_folders_are_two_studies(tmp_path):
    import shutil as shutil_

    _small_series(tmp_path / "site_a" / "ct")
    shutil_.copytree(tmp_path / "site_a", tmp_path / "site_b")  # same SeriesInstanceUID
    found = discover_studies(tmp_path)
    assert [s.study_id for s in found] == ["site_a/ct", "site_b/ct"]
    assert [len(s.paths) for s in found] == [4, 4]


@pytest.mark.parametrize("name", ["gone.npy", "gone.nii.gz", "gone.png", "gone.nrrd", "gone.dcm"])
def test_a_file_removed_after_the_walk_is_one_line(tmp_path, name):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from badinputs import canonical_to_nifti, dicom_test_volume, write_dicom_series, write_nifti

    from omnict_cli.studies.inspection import summarize_study

    volume = dicom_test_volume(4)
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, volume)
    elif name.endswith(".nii.gz"):
        write_nifti(path, canonical_to_nifti(volume))
    elif name.endswith(".png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    elif name.endswith(".nrrd"):
        import SimpleITK as sitk

        sitk.WriteImage(sitk.GetImageFromArray(volume), str(path))
    else:
        write_dicom_series(tmp_path, volume[:1], prefix="gone")[0].rename(path)
    (study,) = discover_studies(tmp_path)
    path.unlink()
    summary = summarize_study(study)
    assert summary.error == (
        f"{path}: the file is gone (removed or moved after the folder was walked). Run again when the folder is stable"
    )


def test_a_slice_removed_after_the_walk_is_left_out_of_its_series(tmp_path):
    from omnict_cli.studies.inspection import summarize_study

    paths = _small_series(tmp_path / "series", slices=4)
    (study,) = discover_studies(tmp_path)
    paths[1].unlink()
    summary = summarize_study(study)
    assert summary.shape == [4, 16, 16]  # the gap filled, even with 2 steps of 5 and 2.5 mm left
    assert "left out slice0001.dcm: the file is gone (removed after the folder was walked)" in summary.warnings


def test_ask_batch_rows_name_a_study_as_report_does_and_score_joins_both_to_one_reference():
    from omnict_cli.metrics.score_files import study_key
    from omnict_cli.run.questions import study_for_image

    examples = Path(__file__).resolve().parents[1] / "examples"
    by_report = {s.paths[0]: s.study_id for s in discover_studies(examples / "phantoms")}
    row_image = "volumes/case_0002.nii.gz"  # as examples/phantoms/qa.jsonl names it
    asked = study_for_image(examples / "phantoms", row_image)
    assert asked.study_id == by_report[examples / "phantoms" / row_image] == row_image
    assert study_key(asked.study_id) == study_key("case_0002.nii.gz") == study_key("case_0002")


def test_a_record_names_the_folder_the_run_was_given_and_the_input_under_it(tmp_path, testdata, monkeypatch):
    from omnict_cli.run.records import study_location

    shutil.copytree(testdata / "dicom_series", tmp_path / "run" / "pacs" / "ct")
    shutil.copy(testdata / "ct_chest_small.nii.gz", tmp_path / "run" / "chest.nii.gz")
    monkeypatch.chdir(tmp_path)  # the user typed a relative folder
    found = {study.study_id: study_location(study) for study in discover_studies("run")}
    assert found == {
        "chest.nii.gz": (str(tmp_path / "run"), "chest.nii.gz"),
        "pacs/ct": (str(tmp_path / "run"), "pacs/ct"),
    }
    (single,) = discover_studies("run/chest.nii.gz")
    assert study_location(single) == (str(tmp_path / "run"), "chest.nii.gz")
    (series,) = discover_studies("run/pacs/ct")  # a series folder given alone: its parent is the root
    assert study_location(series) == (str(tmp_path / "run" / "pacs"), "ct")
