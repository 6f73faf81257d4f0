"""``omnict segment`` and ``omnict cache``: filling the cache for a folder, --out geometry, bad files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

from omnict_cli.cli import main
from omnict_cli.phantom.generate import PhantomConfig
from omnict_cli.phantom.writer import write_phantom_set
from omnict_cli.segmentation import segmenter_choice
from omnict_cli.segmentation.base import Segmenter
from omnict_cli.segmentation.cache import MaskCache
from omnict_cli.segmentation.run import RunTotals, segment_studies
from omnict_cli.studies.discover import discover_studies

REPO = Path(__file__).resolve().parents[1]
TINY = PhantomConfig(size=(24, 96, 96), spacing=(8.0, 3.0, 3.0))


class CountingDouble(Segmenter):
    """Elementwise test double (1 = HU > -500, 2 = HU > 300), so every output voxel can be checked
    against the input voxel it must overlay; counts its calls."""

    name = "double"
    version = "1"

    def __init__(self):
        self.calls = 0

    @property
    def vocabulary(self) -> dict[int, str]:
        return {1: "body", 2: "bone"}

    def segment(self, volume) -> np.ndarray:
        self.calls += 1
        return expected_labels(volume.voxels)


def expected_labels(hu: np.ndarray) -> np.ndarray:
    labels = (hu > -500).astype(np.uint8)
    labels[hu > 300] = 2
    return labels


@pytest.fixture(scope="module")
def phantom_volumes(tmp_path_factory) -> Path:
    """Three tiny phantom CTs (RAS NIfTI) in ``volumes/``."""
    out_dir = tmp_path_factory.mktemp("phantoms")
    write_phantom_set(out_dir, 3, 7, TINY)
    return out_dir / "volumes"


@pytest.fixture
def studies_dir(phantom_volumes, tmp_path) -> Path:
    folder = tmp_path / "studies"
    shutil.copytree(phantom_volumes, folder)
    return folder


@pytest.fixture
def double(monkeypatch) -> CountingDouble:
    """Make every ``--segmenter`` choice return one counting test double."""
    segmenter = CountingDouble()
    monkeypatch.setattr(
        segmenter_choice, "make_segmenter", lambda name, fast=False, device="auto", notify=None: segmenter
    )
    return segmenter


def summary_row(output: str) -> dict[str, float]:
    """The numbers of the summary table: studies, segmented, from cache, skipped, failed, seconds."""
    rows = re.findall(r"│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*([\d.]+)\s*│", output)
    assert len(rows) == 1, output
    names = ("studies", "segmented", "from cache", "skipped", "failed", "seconds")
    return {name: float(value) for name, value in zip(names, rows[0])}


def run_segment(*args: str):
    return CliRunner().invoke(main, ["segment", *args])


def test_second_run_takes_every_mask_from_the_cache(studies_dir, tmp_path, double):
    cache_dir = str(tmp_path / "cache")
    first = run_segment(str(studies_dir), "--cache-dir", cache_dir)
    assert first.exit_code == 0, first.output
    assert summary_row(first.stdout) | {"seconds": 0} == {
        "studies": 3,
        "segmented": 3,
        "from cache": 0,
        "skipped": 0,
        "failed": 0,
        "seconds": 0,
    }
    second = run_segment(str(studies_dir), "--cache-dir", cache_dir)
    assert second.exit_code == 0, second.output
    assert summary_row(second.stdout)["from cache"] == 3 and summary_row(second.stdout)["segmented"] == 0
    assert double.calls == 3
    assert MaskCache(cache_dir).info().segmenters["double"].entries == 3


def test_library_run_reports_per_study_results(studies_dir, tmp_path):
    segmenter, cache = CountingDouble(), MaskCache(tmp_path / "cache")
    studies = discover_studies(studies_dir)
    first = segment_studies(studies, segmenter, cache)
    second = segment_studies(studies, segmenter, cache)
    assert [r.study_id for r in first] == ["case_0001.nii.gz", "case_0002.nii.gz", "case_0003.nii.gz"]
    assert [(r.status, r.cached) for r in first] == [("ok", False)] * 3
    assert [(r.status, r.cached) for r in second] == [("ok", True)] * 3
    assert segmenter.calls == 3
    assert RunTotals.of(first + second).__dict__ | {"seconds": 0} == {
        "studies": 6,
        "segmented": 3,
        "from_cache": 3,
        "skipped": 0,
        "failed": 0,
        "seconds": 0,
    }


def _reoriented_copy(source: Path, target: Path, axcodes: tuple[str, str, str]) -> Path:
    image = nib.load(source)
    transform = ornt_transform(io_orientation(image.affine), axcodes2ornt(axcodes))
    reoriented = image.as_reoriented(transform)
    assert nib.aff2axcodes(reoriented.affine) == axcodes
    target.parent.mkdir(parents=True, exist_ok=True)
    nib.save(reoriented, target)
    return target


def _assert_overlays(label_path: Path, input_path: Path) -> None:
    """Same affine as the input, and each label voxel is the label of the input voxel at the same index."""
    labels, source = nib.load(label_path), nib.load(input_path)
    assert np.allclose(labels.affine, source.affine, atol=1e-5)
    assert labels.shape == source.shape and labels.get_data_dtype() == np.uint8
    assert np.array_equal(np.asanyarray(labels.dataobj), expected_labels(np.asanyarray(source.dataobj)))


def test_out_label_maps_overlay_inputs_in_their_own_orientation(phantom_volumes, tmp_path, double):
    studies = tmp_path / "studies"
    lps = _reoriented_copy(phantom_volumes / "case_0001.nii.gz", studies / "chest" / "lps.nii.gz", ("L", "P", "S"))
    asr = _reoriented_copy(phantom_volumes / "case_0002.nii.gz", studies / "asr.nii.gz", ("A", "S", "R"))
    out = tmp_path / "out"
    result = run_segment(str(studies), "--out", str(out), "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    _assert_overlays(out / "chest" / "lps.nii.gz", lps)  # study id "chest/lps.nii.gz" -> a subfolder
    _assert_overlays(out / "asr.nii.gz", asr)
    assert not list(out.rglob("*.nii.gz.nii.gz"))
    assert json.loads((out / "labels.json").read_text()) == {
        "segmenter": "double 1",
        "labels": {"0": "background", "1": "body", "2": "bone"},
    }
    assert not list(out.rglob("*.tmp"))


def test_out_overlays_a_real_ct_stored_as_asr(testdata, tmp_path, double):
    studies = tmp_path / "studies"
    asr = _reoriented_copy(testdata / "ct_chest_small.nii.gz", studies / "real_asr.nii.gz", ("A", "S", "R"))
    result = run_segment(str(studies), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    _assert_overlays(tmp_path / "out" / "real_asr.nii.gz", asr)


def test_out_names_a_nrrd_beside_its_nifti_copy_apart(tmp_path, double):
    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(REPO / "examples" / "ct_chest_small.nii.gz", studies / "ct.nii.gz")
    shutil.copy(REPO / "examples" / "ct_chest_small.nrrd", studies / "ct.nrrd")
    out = tmp_path / "out"
    result = run_segment(str(studies), "--out", str(out), "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in out.iterdir()) == ["ct.nii.gz", "ct.nrrd.nii.gz", "labels.json"]
    _assert_overlays(out / "ct.nii.gz", studies / "ct.nii.gz")


def test_a_bad_file_gets_one_error_line_and_the_others_are_done(studies_dir, tmp_path, double):
    (studies_dir / "broken.nii.gz").write_bytes(b"this is not a NIfTI file")
    result = run_segment(str(studies_dir), "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(error_lines) == 1 and "broken.nii.gz" in error_lines[0]
    assert summary_row(result.stdout) | {"seconds": 0} == {
        "studies": 4,
        "segmented": 3,
        "from cache": 0,
        "skipped": 0,
        "failed": 1,
        "seconds": 0,
    }
    assert double.calls == 3


def test_a_corrupt_cache_entry_is_reported_and_segmented_again(studies_dir, tmp_path, double):
    cache_dir = tmp_path / "cache"
    assert run_segment(str(studies_dir), "--cache-dir", str(cache_dir)).exit_code == 0
    entry = min(cache_dir.rglob("*.nii.gz"))
    entry.write_bytes(entry.read_bytes()[:100])
    result = run_segment(str(studies_dir), "--cache-dir", str(cache_dir))
    assert result.exit_code == 0
    assert summary_row(result.stdout)["segmented"] == 1 and summary_row(result.stdout)["from cache"] == 2
    warnings = [line for line in result.stderr.splitlines() if "corrupt" in line]
    assert len(warnings) == 1 and entry.name in result.stderr.replace("\n", "")


def test_builtin_segmenter_fills_the_cache(studies_dir, tmp_path):
    pytest.importorskip("omnict_cli.segmentation.builtin", reason="the built-in segmenter is not in this tree yet")
    cache_dir = str(tmp_path / "cache")
    first = run_segment(str(studies_dir), "--segmenter", "builtin", "--cache-dir", cache_dir)
    assert first.exit_code == 0, first.output
    assert summary_row(first.stdout)["segmented"] == 3
    second = run_segment(str(studies_dir), "--segmenter", "builtin", "--cache-dir", cache_dir)
    assert summary_row(second.stdout)["from cache"] == 3 and summary_row(second.stdout)["segmented"] == 0
    assert list(MaskCache(cache_dir).info().segmenters) == ["builtin"]


def test_totalsegmentator_without_weights_fails_or_falls_back_naming_its_home(monkeypatch, tmp_path, studies_dir):
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "no_totalseg_here"))
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    refused = run_segment(str(studies_dir), "--segmenter", "totalsegmentator", "--cache-dir", str(tmp_path / "c"))
    assert refused.exit_code == 1 and "TOTALSEG_HOME_DIR" in refused.stderr
    assert not (tmp_path / "c").exists()
    pytest.importorskip("omnict_cli.segmentation.builtin", reason="the built-in segmenter is not in this tree yet")
    notices = []
    segmenter = segmenter_choice.make_segmenter("auto", notify=notices.append)
    assert segmenter.name == "builtin"
    assert len(notices) == 1 and "TOTALSEG_HOME_DIR" in notices[0] and "\n" not in notices[0]


def test_segment_refuses_an_unknown_device(studies_dir):
    result = run_segment(str(studies_dir), "--device", "tpu")
    assert result.exit_code == 2 and "'tpu' is not a device" in result.output


def test_cli_segmenter_choices_match_the_library():
    from omnict_cli.cli.segment import SEGMENTER_CHOICES

    assert SEGMENTER_CHOICES == segmenter_choice.SEGMENTER_CHOICES


def test_cache_info_and_clear(studies_dir, tmp_path, double):
    cache_dir = str(tmp_path / "cache")
    empty = CliRunner().invoke(main, ["cache", "info", "--cache-dir", cache_dir])
    assert empty.exit_code == 0 and "0 entries" in empty.output
    assert run_segment(str(studies_dir), "--cache-dir", cache_dir).exit_code == 0

    info = CliRunner().invoke(main, ["cache", "info", "--cache-dir", cache_dir])
    assert info.exit_code == 0 and f"mask cache {cache_dir}: 3 entries" in info.output
    assert re.search(r"double\s*│\s*3\s*│", info.output)
    declined = CliRunner().invoke(main, ["cache", "clear", "--cache-dir", cache_dir], input="n\n")
    assert declined.exit_code == 1 and MaskCache(cache_dir).info().entries == 3
    cleared = CliRunner().invoke(main, ["cache", "clear", "--cache-dir", cache_dir, "--yes"])
    assert cleared.exit_code == 0 and "removed 3 cached masks" in cleared.output
    assert MaskCache(cache_dir).info().entries == 0


def test_cache_dir_defaults_to_omnict_cache_dir(monkeypatch, tmp_path, studies_dir, double):
    monkeypatch.setenv("OMNICT_CACHE_DIR", str(tmp_path / "from_env"))
    assert run_segment(str(studies_dir)).exit_code == 0
    info = CliRunner().invoke(main, ["cache", "info"])
    assert f"mask cache {tmp_path / 'from_env'}: 3 entries" in info.output


def test_out_for_a_dicom_series_lies_on_the_grid_totalsegmentator_uses(testdata, tmp_path, double):
    from omnict_cli.studies.load import load_path

    out = tmp_path / "out"
    result = run_segment(str(testdata / "dicom_series"), "--out", str(out), "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    written = nib.load(out / "dicom_series.nii.gz")
    reference = nib.load(testdata / "dicom_series_totalseg.nii.gz")  # TotalSegmentator's own output grid
    index_map = np.linalg.inv(reference.affine) @ written.affine
    assert np.allclose(index_map, np.round(index_map), atol=1e-3)  # same voxel centres, axes permuted/flipped
    permutation = np.abs(np.round(index_map[:3, :3])).astype(int)
    assert sorted(permutation @ np.array(written.shape)) == sorted(reference.shape)
    corners = np.array(
        [
            [i, j, k, 1]
            for i in (0, written.shape[0] - 1)
            for j in (0, written.shape[1] - 1)
            for k in (0, written.shape[2] - 1)
        ]
    ).T
    mapped = np.round(index_map @ corners)[:3]
    assert mapped.min() == 0 and np.array_equal(mapped.max(axis=1), np.array(reference.shape) - 1)

    # every written voxel holds the label of the loaded CT voxel at the same world position
    volume = load_path(testdata / "dicom_series")
    to_canonical = np.round(np.linalg.inv(volume.affine) @ written.affine).astype(int)
    file_index = np.indices(written.shape).reshape(3, -1)
    z, y, x = to_canonical[:3, :3] @ file_index + to_canonical[:3, 3:]
    labels = np.asanyarray(written.dataobj).reshape(-1)
    assert np.array_equal(labels, expected_labels(volume.voxels[z, y, x]))
    assert 0 < labels.mean() < 1  # body and air both present: a flipped map would not match


def test_label_maps_from_an_earlier_run_inside_the_folder_are_not_segmented(studies_dir, tmp_path, double):
    cache_dir = str(tmp_path / "cache")
    out = studies_dir / "masks"
    assert run_segment(str(studies_dir), "--out", str(out), "--cache-dir", cache_dir).exit_code == 0
    again = run_segment(str(studies_dir), "--out", str(out), "--cache-dir", cache_dir)
    assert again.exit_code == 0 and "skipped 3 files inside the --out folder" in again.stderr
    assert summary_row(again.stdout)["studies"] == 3 and double.calls == 3


def test_an_unwritable_out_file_fails_that_study_with_a_clear_line(studies_dir, tmp_path, double):
    out = tmp_path / "out"
    (out / "case_0002.nii.gz").mkdir(parents=True)  # a folder where the label map should go
    result = run_segment(str(studies_dir), "--out", str(out), "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert "case_0002.nii.gz: cannot write the label map" in line
    assert (out / "case_0001.nii.gz").is_file() and (out / "case_0003.nii.gz").is_file()


def test_an_out_folder_that_cannot_be_created_stops_before_any_work(studies_dir, tmp_path, double):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_segment(str(studies_dir), "--out", str(blocker / "masks"), "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 1 and "cannot write the output folder" in result.stderr
    assert double.calls == 0


def test_pictures_without_hu_are_skipped_not_failed(tmp_path):
    """A PNG slice has grey values, not HU: nothing to segment by density, but not an error either."""
    from PIL import Image

    folder = tmp_path / "studies"
    folder.mkdir()
    Image.fromarray(np.full((32, 32), 128, dtype=np.uint8)).save(folder / "slice.png")
    result = CliRunner().invoke(
        main, ["segment", str(folder), "--segmenter", "builtin", "--cache-dir", str(tmp_path / "cache")]
    )
    assert result.exit_code == 0, result.output
    assert "skipped" in result.stderr and "slice.png" in result.stderr and "not HU" in result.stderr
    assert "error" not in result.stderr


def test_cache_info_also_shows_the_training_tensor_cache_beside_the_masks(tmp_path):
    from omnict_cli.training.tensor_cache import ENTRY_SUFFIX

    masks = tmp_path / "omnict" / "masks"
    masks.mkdir(parents=True)
    entry = tmp_path / "omnict" / "tensors" / "ab" / f"{'ab' * 32}{ENTRY_SUFFIX}"
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b"x" * 3072)
    result = CliRunner().invoke(main, ["cache", "info", "--cache-dir", str(masks)])
    assert result.exit_code == 0, result.output
    assert f"training tensor cache {entry.parents[1]}: 3.0 KiB" in result.output
