"""Organ-level Semantic Enhancement: organ masks -> token coverage -> a fixed count of pooled organ tokens."""

import numpy as np
import pytest
import torch

from omnict_cli.model.organ_pooling import organ_ids_mask, organ_mask_to_token_grid, pool_organ_tokens
from omnict_cli.segmentation.classes import TOTALSEG_TOTAL_IDS
from tests.test_model_config import tiny_config


@pytest.fixture(scope="module")
def config():
    return tiny_config()  # ose_slice_grid 9, ose_volume_grid 3


def random_tokens(units: int, side: int, width: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(units, side, side, width, generator=torch.Generator().manual_seed(seed))


def spot(units: int, side: int, cells) -> torch.Tensor:
    coverage = torch.zeros(units, side, side)
    for cell in cells:
        coverage[cell] = 1.0
    return coverage


@pytest.mark.parametrize(
    "kind, units, side", [("slice", 1, 27), ("volume", 10, 9), ("volume", 4, 9), ("slice", 3, 27), ("volume", 2, 2)]
)
def test_organ_token_count_is_fixed_and_matches_the_config(config, kind, units, side):
    tokens = random_tokens(units, side)
    coverage = spot(units, side, [(0, 1, 1), (0, 1, 0)] + [(i, 0, 0) for i in range(units)])
    result = pool_organ_tokens(tokens, coverage, kind, config)
    assert result.status == "ok"
    assert result.tokens.shape == (config.num_organ_tokens(kind, units), 4)
    assert config.num_organ_tokens("slice", 1) == 81 and config.num_organ_tokens("volume", 10) == 90


@pytest.mark.parametrize("cells", [[(0, 5, 7), (0, 5, 8)], [(0, 5, 7), (0, 6, 8)]], ids=["adjacent", "diagonal"])
def test_two_token_organ_is_magnified_to_the_whole_grid(config, cells):
    tokens = random_tokens(1, 27)
    result = pool_organ_tokens(tokens, spot(1, 27, cells), "slice", config)
    organ = torch.stack([tokens[cell] for cell in cells])
    assert result.tokens.shape == (81, 4)
    matches = (result.tokens[:, None, :] == organ[None]).all(-1)  # [81, 2]
    assert matches.any(1).all()  # every output is exactly one of the two organ tokens
    assert matches.any(0).all()  # and both of them are used


def test_background_never_leaks_into_organ_tokens(config):
    tokens = torch.full((10, 9, 9, 4), 1e6)
    coverage = torch.zeros(10, 9, 9)
    coverage[3:6, 2:5, 1:7] = torch.rand(3, 3, 6, generator=torch.Generator().manual_seed(1)) + 0.01
    coverage[4, 3, 3] = 0  # a hole inside the organ
    tokens[coverage > 0] = torch.rand(int((coverage > 0).sum()), 4)
    result = pool_organ_tokens(tokens, coverage, "volume", config)
    assert result.tokens.shape == (90, 4)
    assert result.tokens.abs().max() <= 1.0


def test_large_constant_organ_pools_to_the_constant(config):
    tokens = torch.full((1, 27, 27, 4), 2.5)
    result = pool_organ_tokens(tokens, torch.ones(1, 27, 27), "slice", config)
    assert torch.allclose(result.tokens, torch.full((81, 4), 2.5))


def test_masked_pooling_weights_by_coverage():
    config = tiny_config(ose_slice_grid=1)  # one output cell pools the whole box
    tokens = torch.zeros(1, 3, 3, 1)
    tokens[0, 0, 0], tokens[0, 0, 1], tokens[0, 2, 2] = 1.0, 4.0, 100.0
    coverage = torch.zeros(1, 3, 3)
    coverage[0, 0, 0], coverage[0, 0, 1] = 0.25, 0.75  # background token (2, 2) has weight 0
    result = pool_organ_tokens(tokens, coverage, "slice", config)
    assert torch.allclose(result.tokens, torch.tensor([[(0.25 * 1 + 0.75 * 4) / (0.25 + 0.75)]]))


def test_compression_averages_each_cell_of_the_box():
    config = tiny_config(ose_slice_grid=2)
    tokens = torch.arange(16.0).reshape(1, 4, 4, 1)
    result = pool_organ_tokens(tokens, torch.ones(1, 4, 4), "slice", config)
    expected = torch.tensor([[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]).float().mean(1)
    assert torch.allclose(result.tokens[:, 0], expected)


def test_volume_units_without_the_organ_repeat_the_nearest_present_unit(config):
    tokens = random_tokens(5, 9)
    coverage = spot(5, 9, [(1, 4, 4), (3, 2, 2), (3, 6, 6)])
    pooled = pool_organ_tokens(tokens, coverage, "volume", config).tokens.reshape(5, 9, 4)
    assert torch.equal(pooled[0], pooled[1]) and torch.equal(pooled[2], pooled[1])  # tie 2 -> earlier unit 1
    assert torch.equal(pooled[4], pooled[3])
    assert (pooled[1] == tokens[1, 4, 4]).all()  # unit 1 holds one organ token, magnified


@pytest.mark.parametrize("coverage, status", [("zeros", "empty"), (None, "missing")])
def test_empty_or_missing_mask_falls_back_to_the_whole_image(config, coverage, status):
    tokens = random_tokens(10, 9)
    coverage = torch.zeros(10, 9, 9) if coverage == "zeros" else None
    result = pool_organ_tokens(tokens, coverage, "volume", config)
    assert result.status == status
    assert "global fallback" in result.message
    if status == "empty":
        assert result.message.startswith("organ mask is empty")
    assert result.tokens.shape == (90, 4)
    expected = tokens.reshape(10, 3, 3, 3, 3, 4).mean((2, 4)).reshape(90, 4)
    assert torch.allclose(result.tokens, expected, atol=1e-6)


def test_cube_in_a_label_map_lands_on_the_expected_token_cells():
    label_map = np.zeros((6, 42, 42), dtype=np.uint8)
    label_map[3:6, 14:28, 28:42] = TOTALSEG_TOTAL_IDS["liver"]  # unit 1, token row 1, column 2
    label_map[0:3, 0:7, 0:14] = TOTALSEG_TOTAL_IDS["spleen"]  # unit 0, half of token (0, 0)
    liver = organ_mask_to_token_grid(organ_ids_mask(label_map, "liver"), 2, 3, (3, 3))
    expected = torch.zeros(2, 3, 3)
    expected[1, 1, 2] = 1.0
    assert torch.equal(liver, expected)
    both = organ_mask_to_token_grid(organ_ids_mask(label_map, [5, 1]), 2, 3, (3, 3))
    expected[0, 0, 0] = 0.5
    assert torch.equal(both, expected)


def test_coverage_of_a_partly_covered_unit_is_volume_weighted():
    mask = torch.zeros(7, 6, 6, dtype=torch.bool)  # 7 slices -> 2 units of 3, the last slice dropped
    mask[4, :3, :3] = True  # one slice of unit 1, a quarter of the plane
    mask[6] = True  # dropped by slice composition
    coverage = organ_mask_to_token_grid(mask, 2, 3, (2, 2))
    assert coverage[1, 0, 0] == pytest.approx(1 / 3) and coverage.sum() == pytest.approx(1 / 3)


def test_patch_layout_follows_the_unshuffle_padding():
    mask = torch.zeros(1, 56, 56, dtype=torch.bool)  # 4x4 patches of 14 px, m = 3 -> 2x2 tokens
    mask[0, 42:, 42:] = True  # the last patch, alone (with padding) in the last token
    coverage = organ_mask_to_token_grid(mask, 1, 1, (2, 2), patch_layout=(14, 3))
    assert coverage[0, 1, 1] == pytest.approx(1 / 9) and coverage.sum() == pytest.approx(1 / 9)
    halves = organ_mask_to_token_grid(mask, 1, 1, (2, 2), patch_layout=(14, 2))  # 2x2 patches per token
    assert halves[0, 1, 1] == pytest.approx(1 / 4) and halves.sum() == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="do not give"):
        organ_mask_to_token_grid(mask, 1, 1, (3, 3), patch_layout=(14, 3))


def test_organ_ids_mask_accepts_ids_names_and_unions():
    labels = torch.tensor([[[0, 1, 2, 3, 5]]])
    assert organ_ids_mask(labels, 5).tolist() == [[[False, False, False, False, True]]]
    assert organ_ids_mask(labels, ["kidney_right", 3]).tolist() == [[[False, False, True, True, False]]]
    with pytest.raises(ValueError, match="unknown TotalSegmentator"):
        organ_ids_mask(labels, "kidneys")


def test_gradients_reach_organ_tokens_only(config):
    tokens = random_tokens(3, 9).requires_grad_(True)
    coverage = torch.zeros(3, 9, 9)
    coverage[1, 2:4, 5:8] = 0.6
    coverage[1, 3, 6] = 0.0
    pool_organ_tokens(tokens, coverage, "volume", config).tokens.sum().backward()
    touched = tokens.grad.abs().sum(-1) > 0
    assert touched.any() and torch.equal(touched, coverage > 0)


def test_mismatched_shapes_are_rejected(config):
    with pytest.raises(ValueError, match="does not match the token grid"):
        pool_organ_tokens(random_tokens(1, 9), torch.ones(1, 8, 9), "slice", config)
    with pytest.raises(ValueError, match="cannot give"):
        organ_mask_to_token_grid(torch.ones(5, 6, 6, dtype=torch.bool), 2, 3, (2, 2))
