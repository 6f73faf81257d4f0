"""TotalSegmentator backend: canonical masks on the study's grid, offline errors, no usage statistics.

TotalSegmentator is not installed for these tests. The one call into it,
``_run_totalsegmentator``, is replaced by a fake that checks the NIfTI image
it is handed and answers with TotalSegmentator's REAL output for that CT
(``../shared/testdata/*_totalseg.nii.gz``), moved into the orientation and
grid of the image it received, as TotalSegmentator does. The assertions are
on what a user sees: organ HU values and sides in omnict's canonical layout.
"""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
from nibabel import orientations as nio
from nibabel.orientations import axcodes2ornt

from omnict_cli.errors import OmnictError
from omnict_cli.segmentation import totalseg
from omnict_cli.segmentation.base import LABEL_DTYPE
from omnict_cli.segmentation.classes import TOTALSEG_TOTAL_IDS
from omnict_cli.segmentation.totalseg import (
    HOME_ENV,
    TOTAL_WEIGHT_FOLDERS,
    USAGE_STATS_ENV,
    WEIGHTS_ENV,
    SegmenterUnavailable,
    TotalSegmentatorSegmenter,
    disable_usage_stats,
    totalseg_device,
    totalsegmentator_status,
)
from omnict_cli.studies.load import load_path
from omnict_cli.studies.volume import Volume, canonical_affine

LEFT_LOBES = (TOTALSEG_TOTAL_IDS["lung_upper_lobe_left"], TOTALSEG_TOTAL_IDS["lung_lower_lobe_left"])
RIGHT_LOBES = (
    TOTALSEG_TOTAL_IDS["lung_upper_lobe_right"],
    TOTALSEG_TOTAL_IDS["lung_middle_lobe_right"],
    TOTALSEG_TOTAL_IDS["lung_lower_lobe_right"],
)
LIVER, SPLEEN, AORTA = TOTALSEG_TOTAL_IDS["liver"], TOTALSEG_TOTAL_IDS["spleen"], TOTALSEG_TOTAL_IDS["aorta"]


# ---------------------------------------------------------------- helpers


def install_weights(home, fast=False):
    """Lay out the weights folders TotalSegmentator would download, each with its checkpoint file."""
    for folder in TOTAL_WEIGHT_FOLDERS[fast]:
        fold = home / "nnunet" / "results" / folder / "nnUNetTrainer__nnUNetPlans__3d_fullres" / "fold_0"
        fold.mkdir(parents=True)
        (fold / "checkpoint_final.pth").write_bytes(b"weights")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A TotalSegmentator home with the ``total`` weights, and the package reported as installed (2.18.0)."""
    monkeypatch.delenv(HOME_ENV, raising=False)
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(USAGE_STATS_ENV, raising=False)
    monkeypatch.setattr(totalseg, "_installed_version", lambda: "2.18.0")
    home = tmp_path / "totalseg_home"
    install_weights(home)
    return home


class FakeTotalSegmentator:
    """Stands in for ``_run_totalsegmentator``: checks its input, answers with a real TotalSegmentator output."""

    def __init__(self, reference_path, expected_volume, home):
        self.reference = nib.load(reference_path)
        self.expected_volume = expected_volume
        self.home = home
        self.calls = []

    def __call__(self, image, *, fast, device, quiet):
        self.calls.append({"fast": fast, "device": device, "quiet": quiet})
        assert isinstance(image, nib.Nifti1Image)
        assert image.shape == self.expected_volume.shape
        assert np.allclose(image.affine, self.expected_volume.affine)
        assert np.array_equal(np.asanyarray(image.dataobj), self.expected_volume.hu)
        assert os.environ[HOME_ENV] == str(self.home)
        config = json.loads((self.home / "config.json").read_text())
        assert config["send_usage_stats"] is False, "usage statistics must be off before TotalSegmentator runs"
        return self.in_grid_of(image)

    def in_grid_of(self, image):
        """The reference label map flipped/transposed into ``image``'s orientation, as TotalSegmentator returns it."""
        transform = nio.ornt_transform(nio.io_orientation(self.reference.affine), nio.io_orientation(image.affine))
        labels = self.reference.as_reoriented(transform)
        assert labels.shape == image.shape and np.allclose(labels.affine, image.affine, atol=1e-3), (
            "the reference label map does not cover the CT it was handed"
        )
        return nib.Nifti1Image(np.asanyarray(labels.dataobj).astype(np.uint8), labels.affine)


def segment_with_reference(volume, reference_path, home, monkeypatch, **options):
    fake = FakeTotalSegmentator(reference_path, volume, home)
    monkeypatch.setattr(totalseg, "_run_totalsegmentator", fake)
    labels = TotalSegmentatorSegmenter(home_dir=home, device="cpu", **options).segment(volume)
    assert len(fake.calls) == 1
    return labels, fake


def median_hu(volume, labels, ids):
    return float(np.median(volume.hu[np.isin(labels, ids)]))


def mean_index(labels, ids, axis):
    """Mean canonical index of a structure along axis 0 (z, up), 1 (y, back) or 2 (x, to the patient's left)."""
    return float(np.nonzero(np.isin(labels, ids))[axis].mean())


def resave(path, axcodes, folder):
    """The NIfTI at ``path`` re-saved in ``folder`` with its voxels stored in another orientation (same world)."""
    image = nib.load(path)
    transform = nio.ornt_transform(nio.io_orientation(image.affine), axcodes2ornt(axcodes))
    out = folder / f"{path.name.split('.')[0]}_{''.join(axcodes)}.nii.gz"
    nib.save(image.as_reoriented(transform), out)
    return out


def canonical_volume(hu, spacing=(2.0, 1.0, 1.0)):
    return Volume(
        voxels=hu,
        affine=canonical_affine(spacing),
        kind="volume",
        source_format="npy",
        source_ornt=axcodes2ornt(("S", "P", "L")),
        source_shape=hu.shape,
    )


# ---------------------------------------------------------------- anatomy on real CT


def test_chest_nifti_gives_canonical_lungs_liver_and_spleen(testdata, home, monkeypatch):
    volume = load_path(testdata / "ct_chest_small.nii.gz")
    labels, fake = segment_with_reference(volume, testdata / "ct_chest_small_totalseg.nii.gz", home, monkeypatch)

    assert labels.dtype == LABEL_DTYPE and labels.shape == volume.shape == (30, 101, 122)
    assert median_hu(volume, labels, LEFT_LOBES + RIGHT_LOBES) < -500
    # canonical x runs from the patient's right to left
    assert mean_index(labels, LEFT_LOBES, 2) > mean_index(labels, RIGHT_LOBES, 2) + 20
    assert mean_index(labels, SPLEEN, 2) > mean_index(labels, LIVER, 2) + 20
    # canonical z runs upwards: this scan's lung bases sit above the middle of the liver
    assert mean_index(labels, LEFT_LOBES + RIGHT_LOBES, 0) > mean_index(labels, LIVER, 0) + 5
    assert fake.calls == [{"fast": False, "device": "cpu", "quiet": True}]


@pytest.mark.parametrize("axcodes", [("L", "P", "S"), ("A", "S", "R"), ("P", "I", "L")])
def test_non_ras_nifti_gives_the_same_canonical_masks(testdata, home, monkeypatch, tmp_path, axcodes):
    reference_path = testdata / "ct_chest_small_totalseg.nii.gz"
    ras_volume = load_path(testdata / "ct_chest_small.nii.gz")
    ras_labels, _ = segment_with_reference(ras_volume, reference_path, home, monkeypatch)

    volume = load_path(resave(testdata / "ct_chest_small.nii.gz", axcodes, tmp_path))
    assert volume.source_axcodes == axcodes
    labels, _ = segment_with_reference(volume, reference_path, home, monkeypatch)

    assert np.array_equal(labels, ras_labels)
    assert mean_index(labels, LEFT_LOBES, 2) > mean_index(labels, RIGHT_LOBES, 2)
    # back in the file's own voxel order the mask lines up with TotalSegmentator's output re-saved the same way
    reference_in_file_order = nib.load(resave(reference_path, axcodes, tmp_path))
    assert np.array_equal(volume.to_source_layout(labels), np.asanyarray(reference_in_file_order.dataobj))


def test_answer_in_another_orientation_is_mapped_back_to_canonical(testdata, home, monkeypatch):
    """Any TotalSegmentator answer on the same world grid lands on the canonical grid, whatever its voxel order."""
    volume = load_path(testdata / "ct_chest_small.nii.gz")
    expected, fake = segment_with_reference(volume, testdata / "ct_chest_small_totalseg.nii.gz", home, monkeypatch)
    as_stored = nib.Nifti1Image(np.asanyarray(fake.reference.dataobj), fake.reference.affine)  # RAS, [x, y, z]
    monkeypatch.setattr(totalseg, "_run_totalsegmentator", lambda image, **_: as_stored)
    labels = TotalSegmentatorSegmenter(home_dir=home, device="cpu").segment(volume)
    assert as_stored.shape == (122, 101, 30) and np.array_equal(labels, expected)


def test_dicom_series_gives_contrast_aorta_and_liver(testdata, home, monkeypatch):
    volume = load_path(testdata / "dicom_series")
    install_weights(home, fast=True)
    labels, fake = segment_with_reference(
        volume, testdata / "dicom_series_totalseg.nii.gz", home, monkeypatch, fast=True
    )

    assert labels.shape == volume.shape == (20, 512, 512)
    assert median_hu(volume, labels, [AORTA]) > 120
    assert 80 <= median_hu(volume, labels, [LIVER]) <= 110
    assert mean_index(labels, SPLEEN, 2) > mean_index(labels, LIVER, 2) + 100
    assert mean_index(labels, AORTA, 1) > mean_index(labels, TOTALSEG_TOTAL_IDS["costal_cartilages"], 1)
    assert fake.calls[0]["fast"] is True


def test_output_on_another_grid_is_refused(home, monkeypatch):
    volume = canonical_volume(np.full((4, 6, 8), -1000, dtype=np.int16))
    wrong = nib.Nifti1Image(np.zeros((4, 6, 7), dtype=np.uint8), volume.affine)
    monkeypatch.setattr(totalseg, "_run_totalsegmentator", lambda image, **_: wrong)
    with pytest.raises(ValueError, match=r"another grid .*shape \(4, 6, 7\).*\(4, 6, 8\)"):
        TotalSegmentatorSegmenter(home_dir=home, device="cpu").segment(volume)


def test_slices_and_display_images_are_refused_before_running(home, monkeypatch):
    monkeypatch.setattr(totalseg, "_run_totalsegmentator", pytest.fail)
    segmenter = TotalSegmentatorSegmenter(home_dir=home, device="cpu")
    slice_volume = canonical_volume(np.zeros((1, 8, 8), dtype=np.int16))
    slice_volume.kind = "slice"
    with pytest.raises(SegmenterUnavailable, match="3D volumes"):
        segmenter.segment(slice_volume)
    picture = canonical_volume(np.zeros((4, 8, 8), dtype=np.float32))
    picture.intensity, picture.source_format = "display", "png"
    with pytest.raises(SegmenterUnavailable, match="png image holds display grey values"):
        segmenter.segment(picture)


# ---------------------------------------------------------------- weights and offline use


def test_status_reports_missing_weights_with_offline_advice(home, tmp_path):
    assert totalsegmentator_status(home_dir=home)[0] is True
    available, message = totalsegmentator_status(fast=True, home_dir=home)
    assert available is False
    assert "Dataset297_TotalSegmentator_total_3mm_1559subj" in message
    assert HOME_ENV in message and str(home) in message
    assert "totalseg_download_weights -t total_fast" in message
    assert "machine with internet" in message


def test_half_copied_weights_count_as_missing(home):
    checkpoint = next((home / "nnunet" / "results" / TOTAL_WEIGHT_FOLDERS[False][2]).rglob("checkpoint_final.pth"))
    checkpoint.unlink()
    available, message = totalsegmentator_status(home_dir=home)
    assert available is False and TOTAL_WEIGHT_FOLDERS[False][2] in message
    assert TOTAL_WEIGHT_FOLDERS[False][0] not in message


def test_weights_path_env_and_home_env_are_honoured(home, tmp_path, monkeypatch):
    elsewhere = tmp_path / "shared_weights"
    install_weights(elsewhere, fast=True)
    monkeypatch.setenv(WEIGHTS_ENV, str(elsewhere / "nnunet" / "results"))
    assert totalsegmentator_status(fast=True)[0] is True
    assert totalsegmentator_status(fast=False)[0] is False
    monkeypatch.delenv(WEIGHTS_ENV)
    monkeypatch.setenv(HOME_ENV, str(home))
    assert totalsegmentator_status(fast=False) == (True, totalsegmentator_status(home_dir=home)[1])


def test_missing_package_is_reported_without_importing_it(home, monkeypatch):
    monkeypatch.setattr(totalseg, "_installed_version", lambda: None)
    available, message = totalsegmentator_status(home_dir=home)
    assert available is False and "not installed" in message and ".[seg]" in message
    segmenter = TotalSegmentatorSegmenter(home_dir=home, device="cpu")  # constructing is fine
    with pytest.raises(SegmenterUnavailable, match="not installed"):
        segmenter.describe()
    with pytest.raises(SegmenterUnavailable, match="not installed"):
        segmenter.segment(canonical_volume(np.zeros((4, 8, 8), dtype=np.int16)))


def test_missing_weights_without_download_permission_never_calls_totalsegmentator(tmp_path, home, monkeypatch):
    monkeypatch.setattr(totalseg, "_run_totalsegmentator", pytest.fail)
    empty_home = tmp_path / "empty_home"
    with pytest.raises(SegmenterUnavailable) as raised:
        TotalSegmentatorSegmenter(home_dir=empty_home, device="cpu").segment(
            canonical_volume(np.zeros((4, 8, 8), dtype=np.int16))
        )
    assert HOME_ENV in str(raised.value) and "totalseg_download_weights -t total" in str(raised.value)


class RequestsConnectionError(OSError):
    """Stands in for ``requests.exceptions.ConnectionError`` (an IOError/OSError subclass, as all of
    requests' errors are), which TotalSegmentator's downloader raises offline; requests itself is
    not an omnict dependency."""


@pytest.mark.parametrize(
    "network_error", [ConnectionError("Network is unreachable"), RequestsConnectionError("Max retries exceeded")]
)
def test_offline_download_failure_says_what_to_do(tmp_path, home, monkeypatch, network_error):
    def offline(image, **_):
        raise network_error

    monkeypatch.setattr(totalseg, "_run_totalsegmentator", offline)
    empty_home = tmp_path / "empty_home"
    segmenter = TotalSegmentatorSegmenter(home_dir=empty_home, device="cpu", allow_download=True)
    with pytest.raises(SegmenterUnavailable) as raised:
        segmenter.segment(canonical_volume(np.zeros((4, 8, 8), dtype=np.int16)))
    message = str(raised.value)
    assert "could not download its weights" in message and str(network_error) in message
    assert HOME_ENV in message and "machine with internet" in message
    assert raised.value.__cause__ is network_error


def test_os_errors_with_weights_present_are_not_blamed_on_the_network(home, monkeypatch):
    def disk_full(image, **_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(totalseg, "_run_totalsegmentator", disk_full)
    with pytest.raises(OSError, match="No space left") as raised:
        TotalSegmentatorSegmenter(home_dir=home, device="cpu", allow_download=True).segment(
            canonical_volume(np.zeros((4, 8, 8), dtype=np.int16))
        )
    assert not isinstance(raised.value, SegmenterUnavailable)


def test_home_dir_environment_is_restored_after_the_call(home, monkeypatch):
    monkeypatch.setenv(HOME_ENV, "/somewhere/else")
    seen = {}

    def record(image, **_):
        seen["home"] = os.environ[HOME_ENV]
        return nib.Nifti1Image(np.zeros(image.shape, dtype=np.uint8), image.affine)

    monkeypatch.setattr(totalseg, "_run_totalsegmentator", record)
    labels = TotalSegmentatorSegmenter(home_dir=home, device="cpu").segment(
        canonical_volume(np.zeros((4, 8, 8), dtype=np.int16))
    )
    assert seen["home"] == str(home) and os.environ[HOME_ENV] == "/somewhere/else"
    assert labels.shape == (4, 8, 8) and not labels.any()


# ---------------------------------------------------------------- usage statistics


def test_new_config_has_usage_stats_off(home):
    config = json.loads(disable_usage_stats(home).read_text())
    assert config["send_usage_stats"] is False
    assert config["prediction_counter"] == 0 and config["totalseg_id"].startswith("totalseg_")


def test_existing_config_keeps_its_other_keys(home):
    (home / "config.json").write_text(
        json.dumps(
            {"totalseg_id": "totalseg_ABC", "send_usage_stats": True, "prediction_counter": 7, "license_number": "x"}
        )
    )
    disable_usage_stats(home)
    assert json.loads((home / "config.json").read_text()) == {
        "totalseg_id": "totalseg_ABC",
        "send_usage_stats": False,
        "prediction_counter": 7,
        "license_number": "x",
    }


def test_config_write_is_atomic(home, monkeypatch):
    original = json.dumps({"totalseg_id": "totalseg_ABC", "send_usage_stats": True, "prediction_counter": 3})
    (home / "config.json").write_text(original)

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(totalseg.os, "replace", crash)
    with pytest.raises(SegmenterUnavailable, match="cannot write TotalSegmentator's config"):
        disable_usage_stats(home)
    assert (home / "config.json").read_text() == original
    assert sorted(p.name for p in home.iterdir()) == ["config.json", "nnunet"]


def test_opted_in_user_config_is_left_alone(home, monkeypatch):
    monkeypatch.setenv(USAGE_STATS_ENV, "1")
    (home / "config.json").write_text(json.dumps({"totalseg_id": "t", "send_usage_stats": True}))
    monkeypatch.setattr(
        totalseg,
        "_run_totalsegmentator",
        lambda image, **_: nib.Nifti1Image(np.zeros(image.shape, np.uint8), image.affine),
    )
    TotalSegmentatorSegmenter(home_dir=home, device="cpu").segment(canonical_volume(np.zeros((4, 8, 8), np.int16)))
    assert json.loads((home / "config.json").read_text())["send_usage_stats"] is True


def test_broken_config_is_named_in_the_error(home):
    (home / "config.json").write_text("{not json")
    with pytest.raises(SegmenterUnavailable) as raised:
        disable_usage_stats(home)
    assert str(home / "config.json") in str(raised.value) and "delete the file" in str(raised.value)


# ---------------------------------------------------------------- identity and devices


def test_version_options_and_describe(home):
    segmenter = TotalSegmentatorSegmenter(fast=True, device="cuda:1", home_dir=home)
    assert segmenter.version == "2.18.0"
    assert segmenter.options() == {"fast": True}
    assert segmenter.describe() == "totalsegmentator 2.18.0 fast"
    assert TotalSegmentatorSegmenter(device="cpu").describe() == "totalsegmentator 2.18.0"
    assert len(segmenter.vocabulary) == 117 and segmenter.vocabulary[52] == "aorta"


@pytest.mark.parametrize(
    "given, expected",
    [("cpu", "cpu"), ("gpu", "gpu"), ("GPU:2", "gpu:2"), ("cuda", "gpu"), ("cuda:1", "gpu:1"), ("mps", "mps")],
)
def test_device_names_map_to_totalsegmentator_ones(given, expected):
    assert totalseg_device(given) == expected


def test_auto_device_follows_cuda_availability(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert totalseg_device("auto") == "gpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert TotalSegmentatorSegmenter().device == "cpu"


@pytest.mark.parametrize("bad", ["tpu", "gpu:", "cuda:x", "gpu:1:2"])
def test_unknown_device_is_a_clear_error(bad):
    with pytest.raises(OmnictError, match="unknown device .* Use auto, cpu, gpu"):
        TotalSegmentatorSegmenter(device=bad)


def test_weight_folder_names_match_installed_totalsegmentator():
    config = pytest.importorskip("totalsegmentator.map_tasks_config")
    total = config.TASK_CONFIGS["total"]["sub_modes"]
    for fast, mode in ((False, "default"), (True, "fast")):
        task_ids = total[mode]["task_id"]
        task_ids = task_ids if isinstance(task_ids, list) else [task_ids]
        names = tuple(config.TASK_ID_WEIGHTS_CONFIGS[task_id]["foldername"] for task_id in task_ids)
        assert names == TOTAL_WEIGHT_FOLDERS[fast]
