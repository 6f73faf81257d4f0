"""Preprocessing as the paper: window, resample, scale, 3-slice units, label maps."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from omnict_cli.studies.preprocess import (
    PreprocessConfig,
    compose_units,
    linear_resize_weights,
    preprocess_volume,
    resample_labels,
    resample_linear,
)
from omnict_cli.studies.volume import INTENSITY_DISPLAY, Volume, canonical_affine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "research"))
import nodule_aliasing  # noqa: E402  (the benchmark's own measurement)


def make_volume(voxels, spacing=(1.5, 0.7, 0.7), kind="volume", intensity="hu"):
    from nibabel.orientations import axcodes2ornt

    return Volume(
        voxels=voxels,
        affine=canonical_affine(spacing),
        kind=kind,
        source_format="npy",
        source_ornt=axcodes2ornt(("S", "P", "L")),
        source_shape=voxels.shape,
        intensity=intensity,
    )


def test_volume_becomes_ten_three_slice_units_in_siglip_range():
    hu = np.random.default_rng(0).integers(-3000, 3000, size=(60, 50, 40)).astype(np.int16)
    result = preprocess_volume(make_volume(hu))
    assert result.units.shape == (10, 3, 384, 384)
    assert result.units.dtype == np.float32
    assert result.units.min() >= -1.0 and result.units.max() <= 1.0
    assert result.kind == "volume"


@pytest.mark.parametrize("hu, expected", [(500, 0.5), (-1000, -1.0), (-3024, -1.0), (3000, 1.0), (0, 0.0)])
def test_hu_window_maps_to_hu_over_1000(hu, expected):
    result = preprocess_volume(make_volume(np.full((20, 16, 16), hu, dtype=np.int16)))
    np.testing.assert_allclose(result.units, expected, atol=1e-6)


def test_units_stack_consecutive_slices_as_channels_and_drop_the_remainder():
    config = PreprocessConfig(volume_size=(32, 8, 8))
    hu = np.broadcast_to(np.arange(32, dtype=np.float32)[:, None, None] * 10.0, (32, 8, 8)).copy()
    units = preprocess_volume(make_volume(hu), config).units
    assert units.shape == (10, 3, 8, 8)
    for unit in range(10):
        for channel in range(3):
            np.testing.assert_allclose(units[unit, channel], (3 * unit + channel) * 10.0 / 1000.0, atol=1e-6)
    # slices 30 and 31 do not fill a unit: dropped, as N_s = floor(32 / 3)
    assert compose_units(np.zeros((32, 2, 2)), 3).shape[0] == 10


def test_sizes_come_from_the_config():
    config = PreprocessConfig(volume_size=(12, 16, 20), slice_size=(24, 28), slices_per_unit=4)
    assert config.units_per_volume == 3
    assert preprocess_volume(make_volume(np.zeros((40, 30, 30), np.int16)), config).units.shape == (3, 4, 16, 20)
    slice_result = preprocess_volume(make_volume(np.zeros((1, 30, 30), np.int16), kind="slice"), config)
    assert slice_result.units.shape == (1, 3, 24, 28)


def test_slice_is_copied_into_three_channels_of_one_unit():
    grey = np.linspace(0.0, 1.0, 64 * 48, dtype=np.float32).reshape(1, 64, 48)
    result = preprocess_volume(make_volume(grey, kind="slice", intensity=INTENSITY_DISPLAY))
    assert result.units.shape == (1, 3, 384, 384)
    np.testing.assert_array_equal(result.units[0, 0], result.units[0, 1])
    np.testing.assert_array_equal(result.units[0, 0], result.units[0, 2])
    # display grey [0, 1] -> [-1, 1]
    assert result.units.min() == pytest.approx(-1.0, abs=0.02) and result.units.max() == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("n_in, n_out", [(300, 32), (20, 32), (7, 3), (33, 32), (5, 5)])
def test_resampling_matches_torch_linear_interpolation(n_in, n_out, antialias):
    """Our banded slice-axis kernel is exactly torch's (PIL's) linear/anti-aliased kernel."""
    values = np.random.default_rng(1).normal(size=(n_in, 6, 5)).astype(np.float32)
    ours = resample_linear(values, (n_out, 6, 5), antialias=antialias)
    reference = F.interpolate(
        torch.from_numpy(values).reshape(1, 1, n_in, 30),
        size=(n_out, 30),
        mode="bilinear",
        antialias=antialias,
        align_corners=False,
    )
    np.testing.assert_allclose(ours, reference.reshape(n_out, 6, 5).numpy(), atol=1e-5)


def test_without_antialias_it_is_plain_trilinear():
    values = np.random.default_rng(2).normal(size=(90, 40, 36)).astype(np.float32)
    ours = resample_linear(values, (32, 24, 20), antialias=False)
    reference = F.interpolate(
        torch.from_numpy(values)[None, None], size=(32, 24, 20), mode="trilinear", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_resize_weights_are_normalised_and_cover_every_input_when_shrinking():
    first, weights = linear_resize_weights(300, 32, antialias=True)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    covered = np.zeros(300, bool)
    for index, start in enumerate(first):
        covered[start : start + weights.shape[1]] |= weights[index] > 0
    assert covered.all(), "anti-aliasing must let every input slice reach some output"
    first, weights = linear_resize_weights(300, 32, antialias=False)
    covered = np.zeros(300, bool)
    for index, start in enumerate(first):
        covered[start : start + weights.shape[1]] |= weights[index] > 0
    assert covered.sum() <= 64, "plain linear reads at most two slices per output"


def test_clipping_happens_before_resampling_so_metal_does_not_bleed():
    hu = np.full((64, 8, 8), 40, dtype=np.int16)
    hu[32] = 20000  # one slice of metal far above the window
    grid = resample_linear(hu, (8, 8, 8), clip=(-1000.0, 1000.0))
    assert grid.max() <= 1000.0
    assert grid.max() < 400.0  # one clipped slice among eight, not 20000 HU smeared around


def test_label_maps_use_nearest_neighbour_and_stay_aligned():
    hu = np.full((60, 40, 40), -900, dtype=np.int16)
    labels = np.zeros((60, 40, 40), dtype=np.uint8)
    hu[8:50, 4:34, 10:36] = 60  # off-centre, so a flipped axis would miss it
    labels[8:50, 4:34, 10:36] = 5
    labels[0:6, 0:4, 0:4] = 117
    result = preprocess_volume(make_volume(hu), PreprocessConfig(volume_size=(30, 20, 20)), label_map=labels)
    assert result.label_map.shape == (30, 20, 20)
    assert set(np.unique(result.label_map)) == {0, 5, 117}, "ids must never blend"
    grid_hu = result.units.reshape(30, 20, 20) * 1000.0
    assert np.median(grid_hu[result.label_map == 5]) > 50.0
    assert np.median(grid_hu[result.label_map == 0]) < -800.0


def test_label_map_on_another_grid_is_refused():
    with pytest.raises(ValueError, match="does not match"):
        preprocess_volume(make_volume(np.zeros((10, 10, 10), np.int16)), label_map=np.zeros((10, 10, 9), np.uint8))


def test_nearest_label_resampling_indices():
    labels = np.arange(6, dtype=np.int16).reshape(6, 1, 1)
    # output centres (i + 0.5) * 2 fall on inputs 1, 3, 5 (centre-aligned, like the linear kernel)
    assert resample_labels(labels, (3, 1, 1)).ravel().tolist() == [1, 3, 5]
    assert resample_labels(labels, (12, 1, 1)).ravel().tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


@pytest.mark.parametrize(
    "bad",
    [dict(hu_window=(1000, -1000)), dict(volume_size=(32, 0, 384)), dict(slice_size=(384,)), dict(slices_per_unit=0)],
)
def test_invalid_config_is_refused(bad):
    with pytest.raises(ValueError):
        PreprocessConfig(**bad)


def test_grid_spacing_reports_resampled_voxel_size():
    result = preprocess_volume(make_volume(np.zeros((300, 512, 512), np.int16), spacing=(1.5, 0.7, 0.7)))
    np.testing.assert_allclose(result.grid_spacing, (300 * 1.5 / 32, 512 * 0.7 / 384, 512 * 0.7 / 384))


def test_five_mm_nodule_survives_300_to_32_slices_only_with_antialiasing():
    """The reason for the interpolation choice (see omnict_cli/studies/preprocess.py)."""
    ours = nodule_aliasing.sweep(antialias=True, steps=8)
    plain = nodule_aliasing.sweep(antialias=False, steps=8)
    assert ours.min() > 100.0, "the anti-aliased kernel keeps the nodule visible at every position"
    assert plain.min() < 20.0, "plain trilinear loses it between sample points"


def test_package_exports_the_function_not_the_module():
    """`from omnict_cli import preprocess_volume` must give the function even after the
    submodule omnict_cli.studies.preprocess has been imported."""
    import omnict_cli
    import omnict_cli.studies.preprocess  # noqa: F401
    from omnict_cli import preprocess_volume as exported

    assert callable(exported) and exported is omnict_cli.studies.preprocess.preprocess_volume
