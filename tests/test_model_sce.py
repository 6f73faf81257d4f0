"""Spatial Consistency Enhancement: token counts, TPE, token unshuffle, routed hybrid projection."""

import pytest
import torch

from omnict_cli.model.modeling_omnict import OmniCTSpatialEncoder, sinusoid, token_unshuffle, tri_axial_codes
from tests.test_model_config import tiny_config


def units(count: int, side: int = 42, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, side, side, generator=generator) * 2 - 1


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return OmniCTSpatialEncoder(tiny_config()).eval()


def test_each_study_gets_exactly_num_image_tokens_of_llm_width(encoder):
    config = encoder.config
    kinds, counts = ["slice", "slice", "volume", "volume"], [1, 3, 1, 2]
    grids = encoder(units(sum(counts)), counts, kinds)
    for grid, kind, n in zip(grids, kinds, counts):
        assert grid[..., 0].numel() == config.num_image_tokens(kind, n)
        assert grid.shape[-1] == config.text_config.hidden_size
    assert [tuple(g.shape[:3]) for g in grids] == [(1, 3, 3), (3, 3, 3), (1, 1, 1), (2, 1, 1)]


def test_volume_grid_not_divisible_by_m_is_padded():
    config = tiny_config(image_size=56)  # 4x4 patches, m = 3 -> 2x2 tokens
    grids = OmniCTSpatialEncoder(config)(units(3, side=56), [3], ["volume"])
    assert grids[0].shape[:3] == (3, 2, 2)
    assert grids[0][..., 0].numel() == config.num_image_tokens("volume", 3) == 12


def run_backward(kind: str, count: int):
    torch.manual_seed(0)
    encoder = OmniCTSpatialEncoder(tiny_config())
    encoder(units(count), [count], [kind])[0].square().sum().backward()
    return encoder


def nonzero_grad(parameter: torch.nn.Parameter) -> bool:
    return parameter.grad is not None and bool(parameter.grad.abs().sum() > 0)


def test_slice_inputs_never_touch_the_volume_expert():
    projector = run_backward("slice", 2).multi_modal_projector
    assert nonzero_grad(projector.slice_expert.weight) and nonzero_grad(projector.shared.weight)
    assert projector.volume_expert.weight.grad is None and projector.volume_expert.bias.grad is None


def test_volume_inputs_never_touch_the_slice_expert():
    projector = run_backward("volume", 2).multi_modal_projector
    assert nonzero_grad(projector.volume_expert.weight) and nonzero_grad(projector.shared.weight)
    assert projector.slice_expert.weight.grad is None and projector.slice_expert.bias.grad is None


def test_experts_have_the_input_widths_of_eq3():
    projector = OmniCTSpatialEncoder(tiny_config()).multi_modal_projector
    assert projector.slice_expert.in_features == 32 + 12
    assert projector.volume_expert.in_features == (32 + 12) * 9


def test_frozen_tower_gets_no_gradient_and_an_unfrozen_one_does():
    assert all(p.grad is None for p in run_backward("volume", 1).vision_tower.parameters())
    encoder = OmniCTSpatialEncoder(tiny_config(freeze_vision_tower=False))
    encoder(units(1), [1], ["slice"])[0].sum().backward()
    patch_embedding = next(p for name, p in encoder.vision_tower.named_parameters() if "patch_embedding" in name)
    assert nonzero_grad(patch_embedding)


def test_tpe_differs_along_depth_rows_and_columns_each_in_its_own_slot():
    config = tiny_config()  # widths 4 + 4 + 4
    codes = tri_axial_codes(3, 3, config)
    assert codes.shape == (3, 3, 3, 12)
    depth, rows, cols = slice(0, 4), slice(4, 8), slice(8, 12)
    assert not torch.allclose(codes[0, 1, 1, depth], codes[2, 1, 1, depth])
    assert not torch.allclose(codes[1, 0, 1, rows], codes[1, 2, 1, rows])
    assert not torch.allclose(codes[1, 1, 0, cols], codes[1, 1, 2, cols])
    assert torch.equal(codes[0, :, :, rows], codes[2, :, :, rows])  # rows code ignores depth
    assert torch.equal(codes[:, 0, :, depth], codes[:, 2, :, depth])  # depth code ignores rows
    assert torch.equal(codes[:, :, 0, rows], codes[:, :, 2, rows])  # rows code ignores columns


def test_identical_units_at_different_depths_get_different_tokens(encoder):
    same = units(1).expand(3, -1, -1, -1)
    grid = encoder(same, [3], ["volume"])[0]
    assert not torch.allclose(grid[0], grid[1]) and not torch.allclose(grid[1], grid[2])


def test_sinusoid_is_sin_then_cos_of_geometric_frequencies():
    codes = sinusoid(torch.tensor([0, 2]), 4)
    assert torch.allclose(codes[0], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    expected = torch.tensor([2.0, 2.0 / 100.0])  # frequencies 1 and 10000 ** -0.5
    assert torch.allclose(codes[1], torch.cat([expected.sin(), expected.cos()]))


def test_token_unshuffle_folds_m_by_m_neighbours_in_row_then_column_order():
    grid = torch.arange(16.0).reshape(1, 4, 4, 1)
    folded = token_unshuffle(grid, 2)
    assert folded.shape == (1, 2, 2, 4)
    assert folded[0, 0, 0].tolist() == [0, 1, 4, 5]
    assert folded[0, 1, 1].tolist() == [10, 11, 14, 15]
    assert token_unshuffle(grid, 1) is grid


def test_token_unshuffle_zero_pads_a_grid_not_divisible_by_m():
    grid = torch.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    folded = token_unshuffle(grid, 2)
    assert folded.shape == (1, 2, 2, 4)
    assert folded[0, 0, 1].tolist() == [3, 0, 6, 0]
    assert folded[0, 1, 1].tolist() == [9, 0, 0, 0]


def test_features_come_from_the_configured_layer_whatever_the_unit_batch():
    torch.manual_seed(0)
    encoder = OmniCTSpatialEncoder(tiny_config(vision_feature_layer=-2, vision_units_per_batch=1)).eval()
    pixels = units(3)
    direct = encoder.vision_tower(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
    features = encoder.encode_units(pixels)
    assert features.shape == (3, 3, 3, 32)
    assert torch.allclose(features.reshape(3, 9, 32), direct, atol=1e-5)
    last = encoder.vision_tower(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
    assert not torch.allclose(features.reshape(3, 9, 32), last)


def test_unit_counts_that_do_not_match_the_pixels_raise(encoder):
    with pytest.raises(ValueError, match="3 units"):
        encoder(units(3), [1, 1], ["slice", "volume"])
