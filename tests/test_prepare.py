"""load_and_preprocess: the overlapped decode+resample path gives exactly the plain result."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import torch

from omnict_cli import discover_studies, load_study, preprocess_volume
from omnict_cli.errors import StudyLoadError
from omnict_cli.studies.prepare import _SliceConsumer, load_and_preprocess
from omnict_cli.studies.preprocess import PreprocessConfig

CONFIG = PreprocessConfig(volume_size=(12, 40, 48))


def body_phantom(shape=(70, 60, 50)) -> np.ndarray:
    """``[x, y, z]`` int16 HU: air, an off-centre soft-tissue block, a bright rod (asymmetric on purpose)."""
    hu = np.full(shape, -1000, dtype=np.int16)
    hu[10:55, 8:50, 5:45] = 40
    hu[15:25, 30:40, :] = 900
    hu[40:50, 12:20, 30:44] = -850
    return hu


def write(path, data, affine, slope=None, inter=None):
    image = nib.Nifti1Image(data, affine)
    image.set_data_dtype(data.dtype)
    if slope is not None:
        image.header.set_slope_inter(slope, inter)
    nib.save(image, path)
    return discover_studies(path)[0]


def plain(study, config=CONFIG):
    return preprocess_volume(load_study(study), config)


def streamed_slices(monkeypatch):
    """Count the planes the streaming consumer resampled, to know which path ran."""
    used = []
    original = _SliceConsumer.take

    def take(self, progress):
        original(self, progress)
        used.append(self.planes_used)

    monkeypatch.setattr(_SliceConsumer, "take", take)
    return used


@pytest.mark.parametrize(
    "affine",
    [
        np.diag([0.8, 0.9, 2.0, 1.0]),  # RAS: third axis to superior
        np.diag([-0.8, -0.9, -2.0, 1.0]),
    ],
)  # LPI: third axis to inferior
def test_streamed_result_is_identical_to_load_then_preprocess(tmp_path, monkeypatch, affine):
    study = write(tmp_path / "ct.nii.gz", body_phantom(), affine)
    used = streamed_slices(monkeypatch)
    volume, model_input = load_and_preprocess(study, CONFIG)
    assert used and used[-1] == 50, "the overlapped path consumed every slice"
    expected = plain(study)
    np.testing.assert_array_equal(model_input.units, expected.units)
    np.testing.assert_array_equal(volume.voxels, load_study(study).voxels)
    assert model_input.grid_spacing == expected.grid_spacing


@pytest.mark.parametrize("case", ["slice axis first on disk", "scaled", "float"])
def test_other_layouts_fall_back_to_the_plain_path_with_the_same_result(tmp_path, monkeypatch, case):
    data, affine, scaling = body_phantom(), np.diag([0.8, 0.9, 2.0, 1.0]), {}
    if case == "slice axis first on disk":
        data, affine = np.ascontiguousarray(data.transpose(2, 0, 1)), affine[:, [2, 0, 1, 3]]
    elif case == "scaled":
        data, scaling = (data + 1024).astype(np.uint16), dict(slope=1.0, inter=-1024.0)
    else:
        data = data.astype(np.float32) + 0.25
    study = write(tmp_path / "ct.nii.gz", data, affine, **scaling)
    used = streamed_slices(monkeypatch)
    _, model_input = load_and_preprocess(study, CONFIG)
    assert not any(used), "this layout cannot stream"
    np.testing.assert_array_equal(model_input.units, plain(study).units)


def test_real_ct_through_both_paths(testdata):
    (study,) = discover_studies(testdata / "ct_chest_small.nii.gz")
    volume, model_input = load_and_preprocess(study)
    assert model_input.units.shape == (10, 3, 384, 384)
    np.testing.assert_array_equal(model_input.units, plain(study, PreprocessConfig()).units)


def test_decode_errors_reach_the_caller_and_threads_are_restored(tmp_path):
    study = write(tmp_path / "ct.nii.gz", body_phantom(), np.eye(4))
    blob = gzip.decompress(study.paths[0].read_bytes())
    study.paths[0].write_bytes(gzip.compress(blob[: len(blob) // 2]))
    threads = torch.get_num_threads()
    with pytest.raises(StudyLoadError, match="ends early"):
        load_and_preprocess(study, CONFIG)
    assert torch.get_num_threads() == threads


def test_non_nifti_studies_take_the_plain_path(testdata):
    (study,) = discover_studies(testdata / "dicom_series")
    _, model_input = load_and_preprocess(study, CONFIG)
    np.testing.assert_array_equal(model_input.units, plain(study).units)


def test_concurrent_loads_give_identical_results_and_restore_torch_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    studies = [
        write(tmp_path / f"ct{i}.nii.gz", np.roll(body_phantom(), 3 * i, axis=0), np.diag([0.8, 0.9, 2.0, 1.0]))
        for i in range(4)
    ]
    threads = torch.get_num_threads()
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda study: load_and_preprocess(study, CONFIG)[1], studies))
    assert torch.get_num_threads() == threads
    for study, result in zip(studies, results):
        np.testing.assert_array_equal(result.units, plain(study).units)
