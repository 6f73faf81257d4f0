"""OmniCTConfig: the paper's token counts, serialisation, preprocessing sizes, validation."""

import json

import pytest

from omnict_cli.model import OmniCTConfig
from omnict_cli.studies.preprocess import PreprocessConfig


def tiny_config(image_size: int = 42, **overrides) -> OmniCTConfig:
    """A 2-layer, width-32 SigLIP (42 px = 3x3 patches by default) and a 2-layer Qwen2, built in memory."""
    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        patch_size=14,
        image_size=image_size,
    )
    text = dict(
        model_type="qwen2",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=128,
    )
    sizes = dict(
        volume_size=(6, image_size, image_size),
        slice_size=(image_size, image_size),
        tpe_depth_dim=4,
        tpe_row_dim=4,
        tpe_col_dim=4,
    )
    return OmniCTConfig(vision_config=vision, text_config=text, **{**sizes, **overrides})


def test_default_encoder_is_so400m_patch14_384():
    vision = OmniCTConfig().vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.patch_size, vision.image_size) == (1152, 27, 14, 384)
    assert (vision.num_attention_heads, vision.intermediate_size) == (16, 4304)
    assert OmniCTConfig().patches_per_side == 27


def test_one_slice_keeps_all_27x27_tokens_and_pools_the_organ_to_9x9():
    config = OmniCTConfig()
    assert config.num_image_tokens("slice", 1) == 27 * 27 == 729
    assert config.num_organ_tokens("slice", 1) == 81


def test_three_independent_slices_are_three_units():
    config = OmniCTConfig()
    assert config.num_image_tokens("slice", 3) == 3 * 729
    assert config.num_organ_tokens("slice", 3) == 3 * 81


def test_three_slices_as_a_volume_make_one_unit_of_9x9_tokens():
    config = OmniCTConfig()
    assert PreprocessConfig(volume_size=(3, 384, 384)).units_per_volume == 1
    assert config.num_image_tokens("volume", 1) == 81
    assert config.num_organ_tokens("volume", 1) == 9


def test_32_slice_volume_gives_810_image_and_90_organ_tokens():
    config = OmniCTConfig()
    assert config.units_per_volume == 10
    assert config.num_image_tokens("volume", config.units_per_volume) == 10 * 9 * 9 == 810
    assert config.num_organ_tokens("volume", config.units_per_volume) == 10 * 3 * 3 == 90


def test_five_units_match_the_papers_405_siglip_tokens():
    assert OmniCTConfig().num_image_tokens("volume", 5) == 405  # Sec. 4.3 (ii)


def test_unshuffle_pads_when_the_grid_is_not_divisible():
    config = OmniCTConfig(volume_unshuffle=2)  # 27 = 2 * 13 + 1: padded to 28, 14 x 14
    assert config.tokens_per_side("volume") == 14
    assert config.num_image_tokens("volume", 1) == 196


def test_projector_input_widths_follow_eq3():
    config = OmniCTConfig()
    assert config.tpe_dim == 3 * 64
    assert config.projector_input_dim("slice") == 1152 + 192
    assert config.projector_input_dim("volume") == (1152 + 192) * 9
    assert config.projector_hidden_size == config.text_config.hidden_size


def test_dict_round_trip_keeps_every_value():
    config = tiny_config(slice_image_token_id=100, volume_image_token_id=101, vision_feature_layer=-1)
    restored = OmniCTConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored.to_dict() == config.to_dict()
    assert restored.volume_size == (6, 42, 42) and isinstance(restored.hu_window, tuple)
    assert restored.vision_config.hidden_size == 32 and restored.text_config.model_type == "qwen2"
    assert restored.num_image_tokens("volume", 2) == config.num_image_tokens("volume", 2) == 2


def test_save_and_load_pretrained_writes_config_json_only(tmp_path):
    config = tiny_config(ose_slice_grid=6, volume_organ_token_id=7)
    config.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    restored = OmniCTConfig.from_pretrained(tmp_path)
    assert restored.to_dict() == config.to_dict()
    assert restored.num_organ_tokens("slice", 1) == 36


def test_preprocess_config_takes_its_sizes_from_the_model_config():
    pre = tiny_config(hu_window=(-500, 700), slices_per_unit=2, antialias=False).preprocess_config()
    assert pre == PreprocessConfig(
        hu_window=(-500.0, 700.0), volume_size=(6, 42, 42), slice_size=(42, 42), slices_per_unit=2, antialias=False
    )
    assert OmniCTConfig().preprocess_config() == PreprocessConfig()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(tpe_row_dim=5), "tpe_row_dim"),
        (dict(tpe_depth_dim=-2), "tpe_depth_dim"),
        (dict(volume_unshuffle=0), "volume_unshuffle"),
        (dict(slice_unshuffle=4), "slice_unshuffle"),  # more than the 3 patches per side
        (dict(ose_volume_grid=0), "ose_volume_grid"),
        (dict(vision_feature_layer=3), "vision_feature_layer"),  # 2 layers: hidden states -3..2
        (dict(slice_image_token_id=5, volume_image_token_id=5), "differ"),
        (dict(slice_organ_token_id=-1), "slice_organ_token_id"),
        (dict(hu_window=(100, -100)), "hu_window"),
        (dict(volume_size=(6, 42)), "volume_size"),
        (dict(volume_size=(6, 40, 40)), "image_size"),
        (dict(slice_size=(42, 28)), "image_size"),
        (dict(slices_per_unit=7), "slices_per_unit"),
        (dict(vision_units_per_batch=0), "vision_units_per_batch"),
    ],
)
def test_invalid_values_raise_with_the_field_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_token_counts_reject_unknown_kinds_and_empty_inputs():
    config = OmniCTConfig()
    with pytest.raises(ValueError, match="kind"):
        config.num_image_tokens("video", 1)
    with pytest.raises(ValueError, match="num_units"):
        config.num_organ_tokens("volume", 0)


def test_configuration_module_leaves_preprocessing_unimported():
    """The config imports no torch of its own (transformers does); preprocessing loads on demand."""
    import subprocess
    import sys

    code = (
        "import sys; import omnict_cli.model.configuration_omnict; "
        "print('omnict_cli.studies.preprocess' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_auto_config_reads_an_omnict_directory(tmp_path):
    from transformers import AutoConfig

    tiny_config(ose_volume_grid=2).save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, OmniCTConfig) and loaded.num_organ_tokens("volume", 3) == 12
