"""``omnict build-model``: an untrained OmniCT composed from local SigLIP and LLM checkpoints."""

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipConfig, SiglipModel, SiglipVisionConfig, SiglipVisionModel

from omnict_cli.cli import main
from omnict_cli.model import OmniCTForConditionalGeneration, OmniCTProcessor
from omnict_cli.model.build import ComponentError, build_model_dir
from omnict_cli.model.processing_omnict import special_tokens
from tests.test_model_processing import study, tiny_tokenizer

VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=14, image_size=42
)
SMALL_SIZES = ["--volume-unshuffle", "3"]


def save_siglip(path, full: bool = True):
    """A tiny SigLIP as google/siglip-so400m ships it (vision + text towers), or its vision model alone."""
    torch.manual_seed(1)
    if full:
        text = dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            vocab_size=64,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
        SiglipModel(SiglipConfig(text_config=text, vision_config=VISION)).save_pretrained(path)
    else:
        SiglipVisionModel(SiglipVisionConfig(**VISION)).save_pretrained(path)
    return path


def save_llm(path, tie: bool = True, spare_rows: int = 6):
    """A tiny Qwen2 with a word-level tokenizer (no pad token set: the build supplies one)."""
    tokenizer = tiny_tokenizer()
    tokenizer.pad_token = None
    tokenizer.eos_token = "[PAD]"
    torch.manual_seed(2)
    config = Qwen2Config(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=len(tokenizer) + spare_rows,
        tie_word_embeddings=tie,
    )
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def components(tmp_path_factory):
    root = tmp_path_factory.mktemp("components")
    return save_siglip(root / "siglip"), save_llm(root / "qwen")


def build(components, out, *extra):
    vision, llm = components
    result = CliRunner().invoke(
        main,
        ["build-model", "--vision", str(vision), "--llm", str(llm), "--out", str(out), "--dtype", "float32", *extra],
    )
    assert result.exit_code == 0, result.output
    return result


def test_build_writes_a_directory_the_model_and_processor_load(components, tmp_path):
    result = build(components, tmp_path / "omnict")
    assert "10 prompt tokens added" in result.output
    names = sorted(p.name for p in (tmp_path / "omnict").iterdir())
    assert "config.json" in names and "tokenizer.json" in names and "generation_config.json" in names
    assert any(n.endswith(".safetensors") for n in names)
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    config = json.loads((tmp_path / "omnict" / "config.json").read_text())
    assert config["model_type"] == "omnict" and config["volume_unshuffle"] == 3
    assert str(components[0].parent) not in (tmp_path / "omnict" / "config.json").read_text()  # no builder's paths
    assert config["text_config"]["_name_or_path"] == "qwen" and config["vision_config"]["_name_or_path"] == "siglip"
    model = OmniCTForConditionalGeneration.from_pretrained(tmp_path / "omnict").eval()
    processor = OmniCTProcessor.from_pretrained(tmp_path / "omnict")
    assert processor.tokenizer.pad_token is not None
    assert model.config.volume_image_token_id == processor.tokenizer.convert_tokens_to_ids("<|image3d|>")
    batch = processor(["describe this ct image"], [study("volume", 2)])
    with torch.no_grad():
        generated = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert generated.shape == (1, batch["input_ids"].shape[1] + 3)


def test_component_weights_are_copied_and_the_text_tower_is_left_out(components, tmp_path):
    build(components, tmp_path / "omnict")
    model = OmniCTForConditionalGeneration.from_pretrained(tmp_path / "omnict")
    siglip = SiglipModel.from_pretrained(components[0])
    vision_state = model.spatial_encoder.vision_tower.state_dict()
    for name, value in siglip.vision_model.state_dict().items():
        if name.startswith("head."):  # SigLIP's pooling head: OmniCT reads hidden states and drops it
            assert name not in vision_state
        else:
            assert torch.equal(vision_state[name], value), name
    assert not any("text" in name for name in model.state_dict())
    llm = Qwen2ForCausalLM.from_pretrained(components[1])
    ours = model.language_model.state_dict()
    for name, value in llm.state_dict().items():
        if "embed_tokens" not in name and "lm_head" not in name:
            assert torch.equal(ours[name], value), name
    assert all(not p.requires_grad for p in model.spatial_encoder.vision_tower.parameters())


def test_new_prompt_tokens_start_at_the_mean_embedding_and_old_rows_are_kept(components, tmp_path):
    build(components, tmp_path / "omnict")
    model = OmniCTForConditionalGeneration.from_pretrained(tmp_path / "omnict")
    tokenizer = OmniCTProcessor.from_pretrained(tmp_path / "omnict").tokenizer
    source = Qwen2ForCausalLM.from_pretrained(components[1]).get_input_embeddings().weight
    embeddings = model.get_input_embeddings().weight
    old = len(tokenizer) - len(special_tokens())
    assert torch.equal(embeddings[:old], source[:old])
    new_ids = tokenizer.convert_tokens_to_ids(special_tokens())
    assert sorted(new_ids) == list(range(old, len(tokenizer)))
    assert torch.allclose(embeddings[new_ids], source[:old].mean(0).expand(len(new_ids), -1), atol=1e-6)
    # tied LLM (as Qwen2.5-3B): the output head is the same matrix after saving and loading
    assert model.get_output_embeddings().weight.data_ptr() == embeddings.data_ptr()


def test_embeddings_grow_when_the_llm_has_no_spare_rows(tmp_path):
    components = (save_siglip(tmp_path / "siglip", full=False), save_llm(tmp_path / "qwen", tie=False, spare_rows=0))
    build(components, tmp_path / "omnict")
    model = OmniCTForConditionalGeneration.from_pretrained(tmp_path / "omnict")
    tokenizer = OmniCTProcessor.from_pretrained(tmp_path / "omnict").tokenizer
    assert model.get_input_embeddings().num_embeddings == len(tokenizer) == model.config.text_config.vocab_size
    assert model.get_output_embeddings().weight.shape[0] == len(tokenizer)


def test_bfloat16_build_writes_bfloat16_weights(components, tmp_path):
    vision, llm = components
    build_model_dir(vision, llm, tmp_path / "omnict", dtype="bfloat16")
    model = OmniCTForConditionalGeneration.from_pretrained(tmp_path / "omnict")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_bad_component_directories_give_one_clear_line(components, tmp_path):
    vision, llm = components
    runner = CliRunner()
    missing = runner.invoke(
        main, ["build-model", "--vision", str(tmp_path / "nope"), "--llm", str(llm), "--out", str(tmp_path / "a")]
    )
    assert missing.exit_code != 0 and "nope" in missing.output and "not found" in missing.output
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((llm / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    result = runner.invoke(
        main, ["build-model", "--vision", str(vision), "--llm", str(pickled), "--out", str(tmp_path / "b")]
    )
    assert result.exit_code != 0 and "safetensors" in result.output and "pickled" in result.output
    assert not (tmp_path / "b").exists()


def test_a_checkpoint_that_does_not_fit_its_config_is_refused(tmp_path):
    vision = save_siglip(tmp_path / "siglip", full=False)
    save_file({"unrelated.weight": torch.zeros(2)}, str(vision / "model.safetensors"))
    with pytest.raises(ComponentError, match="missing weights"):
        build_model_dir(vision, save_llm(tmp_path / "qwen"), tmp_path / "omnict")


def test_an_existing_output_is_kept_unless_overwrite(components, tmp_path):
    (tmp_path / "omnict").mkdir()
    (tmp_path / "omnict" / "mine.txt").write_text("keep")
    vision, llm = components
    result = CliRunner().invoke(
        main, ["build-model", "--vision", str(vision), "--llm", str(llm), "--out", str(tmp_path / "omnict")]
    )
    assert result.exit_code != 0 and "already exists" in result.output
    assert (tmp_path / "omnict" / "mine.txt").read_text() == "keep"
    build(components, tmp_path / "omnict", "--overwrite")
    assert not (tmp_path / "omnict" / "mine.txt").exists()


def test_the_documented_python_example_runs_on_the_bundled_scan(components, tmp_path):
    """docs/model.md's example: built model + processor + load_and_preprocess on a real CT file."""
    from pathlib import Path

    from omnict_cli import discover_studies, load_and_preprocess

    build(components, tmp_path / "omnict")
    model = OmniCTForConditionalGeneration.from_pretrained(tmp_path / "omnict").eval()
    processor = OmniCTProcessor.from_pretrained(tmp_path / "omnict")
    scan = Path(__file__).resolve().parents[1] / "examples" / "ct_chest_small.nii.gz"
    study = discover_studies(scan)[0]
    volume, model_input = load_and_preprocess(study, model.config.preprocess_config())
    assert model_input.units.shape == (10, 3, 42, 42)  # 32 slices -> 10 units at the encoder's size
    batch = processor(["is the liver enlarged ?"], [model_input]).to(model.device)
    with torch.inference_mode():
        ids = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert len(processor.decode(ids[:, batch["input_ids"].shape[1] :])) == 1


def test_built_directory_and_files_follow_the_umask(components, tmp_path):
    """A model shared on a cluster must be readable by the group: not mkdtemp's 0700 / 0600."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        build(components, tmp_path / "omnict")
    finally:
        os.umask(old)
    out = tmp_path / "omnict"
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in out.iterdir() if path.is_file()}
    assert modes and set(modes.values()) == {0o644}, modes


def test_an_unwritable_out_is_one_line_before_the_build(components, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("components were loaded although --out cannot be written")

    monkeypatch.setattr("omnict_cli.model.build.build_omnict", never)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    vision, llm = components
    result = CliRunner().invoke(
        main, ["build-model", "--vision", str(vision), "--llm", str(llm), "--out", str(tmp_path / "blocker" / "omnict")]
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # click's exit, not a crash
    assert "blocker/omnict: cannot be written" in result.output and "is a file, not a folder" in result.output
