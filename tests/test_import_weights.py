"""``omnict import-weights``: release-style checkpoints in three naming styles become omnict models.

Every checkpoint is written here by ``tests/release_checkpoints.py`` (random
weights, stock transformers classes, tiny widths). The imported model must
give exactly the stock Qwen2's logits and hold each source tensor where it
belongs; each kind of bad checkpoint must be refused with one line naming
the tensor; a killed import must leave nothing at ``--out``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from omnict_cli.cli import main
from omnict_cli.model import OmniCTForConditionalGeneration
from omnict_cli.model.release_import import ImportRefused, import_release, is_release_layout
from tests.release_checkpoints import (
    STYLES,
    VOLUME_UNSHUFFLE,
    release_llm,
    release_projector,
    release_vision,
    write_release_checkpoint,
    write_siglip_dir,
)

REPO = Path(__file__).resolve().parents[1]
PROMPT_IDS = torch.tensor([[5, 17, 230, 1001, 42, 7, 99]])


@pytest.fixture(scope="module")
def siglip(tmp_path_factory) -> Path:
    return write_siglip_dir(tmp_path_factory.mktemp("siglip") / "siglip")


def quiet(_line: str) -> None:
    """The importer's printout is not under test here."""


def load_imported(out: Path, dtype=torch.float32):
    return OmniCTForConditionalGeneration.from_pretrained(out, dtype=dtype, local_files_only=True).eval()


@pytest.mark.parametrize(
    ("style", "shards", "dtype", "with_vision"),
    [
        ("mm_projector", 1, torch.float32, False),
        ("multi_modal_projector", 3, torch.float32, True),
        ("projector", 2, torch.bfloat16, False),
    ],
)
def test_release_styles_import_with_the_stock_models_outputs(tmp_path, siglip, style, shards, dtype, with_vision):
    source = write_release_checkpoint(tmp_path / "release", style, shards=shards, dtype=dtype, with_vision=with_vision)
    report = import_release(source, tmp_path / "omnict", vision=siglip, echo=quiet)

    assert [check.passed for check in report.checks] == [True, True, True]
    assert any("is not used" in warning for warning in report.warnings) == with_vision  # its own tower wins
    model = load_imported(tmp_path / "omnict", dtype)
    with torch.inference_mode():
        imported = model.language_model(input_ids=PROMPT_IDS).logits
        stock = release_llm(style, dtype)(input_ids=PROMPT_IDS).logits
    assert torch.equal(imported, stock)
    config = model.config
    assert (config.volume_unshuffle, config.slice_unshuffle) == (VOLUME_UNSHUFFLE, 1)
    assert (config.tpe_depth_dim, config.tpe_row_dim, config.tpe_col_dim) == (4, 4, 4)
    assert config.projector_hidden_size == STYLES[style]["projector_hidden"]
    assert (config.volume_image_token_id, config.slice_organ_token_id) == (10, 8)  # the demo tokenizer's ids
    slice_name, volume_name, shared_name = STYLES[style]["projector"]
    projector, source_tensors = model.spatial_encoder.multi_modal_projector, release_projector(style, dtype)
    assert torch.equal(projector.slice_expert.weight, source_tensors[f"{slice_name}.weight"])
    assert torch.equal(projector.volume_expert.bias, source_tensors[f"{volume_name}.bias"])
    assert torch.equal(projector.shared.weight, source_tensors[f"{shared_name}.weight"])
    stock_vision = release_vision(dtype).state_dict()
    tower = model.spatial_encoder.vision_tower.state_dict()
    assert torch.equal(tower["encoder.layers.1.mlp.fc2.weight"], stock_vision["encoder.layers.1.mlp.fc2.weight"])
    assert "head.probe" not in tower  # SigLIP's pooling head is left out (OmniCT reads hidden states)


def test_command_prints_the_table_verifies_and_answers_the_example(tmp_path, siglip):
    source = write_release_checkpoint(tmp_path / "release", "projector")
    result = CliRunner().invoke(
        main, ["import-weights", str(source), "--out", str(tmp_path / "m"), "--vision", str(siglip)]
    )

    assert result.exit_code == 0, result.output
    assert "projector.volume_expert.weight" in result.stdout
    assert "->  spatial_encoder.multi_modal_projector.volume_expert.weight  [48, 144]  float32" in result.stdout
    assert "inferred volume unshuffle m: 2" in result.stdout
    assert "inferred positional width d_z + d_y + d_x: 12 = 4 + 4 + 4" in result.stdout
    assert "verify ok: LLM next-token logits vs stock Qwen2ForCausalLM: max |diff| 0 " in result.stdout
    assert "verify ok: ask on the bundled example ct_chest_small.nii.gz" in result.stdout
    assert "not verifiable without the authors' code: organ tokens: 81 per slice" in result.stdout
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []


def test_dry_run_prints_the_placement_and_writes_nothing(tmp_path, siglip):
    source = write_release_checkpoint(tmp_path / "release", "mm_projector")
    args = ["import-weights", str(source), "--out", str(tmp_path / "m"), "--vision", str(siglip), "--dry-run"]
    result = CliRunner().invoke(main, args)

    assert result.exit_code == 0, result.output
    assert "model.mm_projector.out.2.weight" in result.stdout
    assert "spatial_encoder.multi_modal_projector.shared.weight  [32, 40]" in result.stdout
    assert not (tmp_path / "m").exists()


def rewrite_weights(folder: Path, change) -> None:
    """Apply ``change(tensors)`` to a single-file checkpoint in place."""
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def refused_lines(tmp_path, source, *extra) -> list[str]:
    args = ["import-weights", str(source), "--out", str(tmp_path / "m"), *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "m").exists()
    return [line for line in result.stderr.splitlines() if line.startswith("refused: ")]


def test_a_missing_tensor_is_refused_naming_the_parameter(tmp_path, siglip):
    source = write_release_checkpoint(tmp_path / "release", "mm_projector")
    rewrite_weights(source, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))

    assert refused_lines(tmp_path, source, "--vision", str(siglip)) == [
        f"refused: {source}: language_model.model.layers.1.mlp.up_proj.weight [64, 32] stays unfilled: "
        "no source tensor for it"
    ]


def test_an_extra_tensor_is_refused_and_a_key_map_drops_it(tmp_path, siglip):
    source = write_release_checkpoint(tmp_path / "release", "mm_projector")
    rewrite_weights(source, lambda t: t.update({"model.mm_projector.temperature": torch.ones(7)}))

    lines = refused_lines(tmp_path, source, "--vision", str(siglip))
    assert lines == [f"refused: {source}: model.mm_projector.temperature [7] has no place"]

    key_map = tmp_path / "drop.json"
    key_map.write_text(json.dumps({r"^model\.mm_projector\.temperature$": ""}))
    report = import_release(source, tmp_path / "m", vision=siglip, key_map=key_map, verify=False, echo=quiet)
    assert any(
        row.source == "model.mm_projector.temperature" and row.note == "dropped by the key map" for row in report.rows
    )
    assert (tmp_path / "m" / "config.json").is_file()


def test_two_same_shaped_projector_candidates_are_refused(tmp_path, siglip):
    source = write_release_checkpoint(tmp_path / "release", "projector")

    def add_ema_copy(tensors):
        tensors["projector.slice_expert_ema.weight"] = tensors["projector.slice_expert.weight"].clone()

    rewrite_weights(source, add_ema_copy)
    assert refused_lines(tmp_path, source, "--vision", str(siglip)) == [
        f"refused: {source}: 2 tensors could fill W_s (slice expert): projector.slice_expert.weight [48, 36], "
        "projector.slice_expert_ema.weight [48, 36]"
    ]


def test_unknown_llm_prefix_is_refused_and_a_key_map_renames_it(tmp_path, siglip):
    source = write_release_checkpoint(tmp_path / "release", "mm_projector")
    rewrite_weights(
        source, lambda t: t.update({f"backbone.{k}": t.pop(k) for k in list(t) if k.startswith("model.layers.")})
    )

    lines = refused_lines(tmp_path, source, "--vision", str(siglip))
    assert (
        "refused: "
        + str(source)
        + ": language_model.model.layers.0.self_attn.q_proj.weight [32, 32] stays unfilled: no source tensor for it"
        in lines
    )

    key_map = tmp_path / "renames.json"
    key_map.write_text(json.dumps([[r"^backbone\.", ""]]))
    report = import_release(source, tmp_path / "m", vision=siglip, key_map=key_map, echo=quiet)
    assert all(check.passed for check in report.checks)
    assert any(row.note == "renamed to model.layers.0.mlp.up_proj.weight by the key map" for row in report.rows)


def test_a_pickle_only_source_is_refused_without_unpickling(tmp_path):
    source = tmp_path / "release"
    source.mkdir()
    (source / "config.json").write_text("{}")
    (source / "pytorch_model.bin").write_bytes(b"\x80\x04 not even a pickle: nothing may read it")

    lines = refused_lines(tmp_path, source)
    assert len(lines) == 1
    assert lines[0].startswith(
        f"refused: {source}: the release weights are pickles (pytorch_model.bin), which omnict never loads"
    )


def test_auto_map_is_ignored_with_a_warning(tmp_path, siglip):
    source = write_release_checkpoint(tmp_path / "release", "projector")
    config = json.loads((source / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_omnict.OmniCTQwen2ForCausalLM"}
    (source / "config.json").write_text(json.dumps(config))
    (source / "modeling_omnict.py").write_text("raise SystemExit('remote code ran')\n")

    args = ["import-weights", str(source), "--out", str(tmp_path / "m"), "--vision", str(siglip), "--no-verify"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {source / 'config.json'}: ignoring auto_map: omnict never runs code from a checkpoint"
    ]
    assert "auto_map" not in (tmp_path / "m" / "config.json").read_text()


def test_an_existing_out_is_never_replaced(tmp_path, siglip):
    source = write_release_checkpoint(tmp_path / "release", "projector")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").write_text("mine")

    with pytest.raises(ImportRefused, match="already exists"):
        import_release(source, tmp_path / "m", vision=siglip, echo=quiet)
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"


def test_release_layout_is_told_from_omnict_and_plain_qwen2_directories(tmp_path, siglip):
    releases = [write_release_checkpoint(tmp_path / style, style) for style in STYLES]
    import_release(releases[0], tmp_path / "imported", vision=siglip, verify=False, echo=quiet)
    release_llm().save_pretrained(tmp_path / "qwen2")

    assert [is_release_layout(path) for path in releases] == [True, True, True]
    assert not is_release_layout(tmp_path / "imported")
    assert not is_release_layout(tmp_path / "qwen2")


def test_an_import_killed_midway_leaves_no_model_and_the_next_one_cleans_up(tmp_path, siglip):
    source = write_release_checkpoint(tmp_path / "release", "projector")
    out = tmp_path / "m"
    command = [
        sys.executable,
        "-m",
        "omnict_cli",
        "import-weights",
        str(source),
        "--out",
        str(out),
        "--vision",
        str(siglip),
    ]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = tmp_path / f".m.partial-{process.pid}"
    deadline = time.monotonic() + 120
    while not (partial / "model.safetensors").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    assert process.returncode == -signal.SIGKILL, "the import finished before it could be killed"
    assert partial.is_dir() and not out.exists()
    import_release(source, out, vision=siglip, verify=False, echo=quiet)
    assert (out / "model.safetensors").is_file()
    assert not partial.exists()


def test_a_bias_free_projector_gets_zero_biases(tmp_path, siglip):
    source = write_release_checkpoint(tmp_path / "release", "projector")
    rewrite_weights(
        source, lambda t: [t.pop(name) for name in list(t) if name.startswith("projector.") and name.endswith(".bias")]
    )

    report = import_release(source, tmp_path / "m", vision=siglip, echo=quiet)
    projector = load_imported(tmp_path / "m").spatial_encoder.multi_modal_projector
    assert torch.equal(projector.shared.bias, torch.zeros(32))
    assert torch.equal(projector.slice_expert.weight, release_projector("projector")["projector.slice_expert.weight"])
    zero_rows = [row.target for row in report.rows if row.source == "(none)"]
    assert zero_rows == [
        f"spatial_encoder.multi_modal_projector.{layer}.bias" for layer in ("slice_expert", "volume_expert", "shared")
    ]


def test_a_config_without_the_head_count_is_refused_not_guessed(tmp_path, siglip):
    """Heads change the attention, not any tensor's shape: guessing them would give a model that talks nonsense."""
    source = write_release_checkpoint(tmp_path / "release", "mm_projector")
    config = json.loads((source / "config.json").read_text())
    del config["num_attention_heads"]
    (source / "config.json").write_text(json.dumps(config))

    assert refused_lines(tmp_path, source, "--vision", str(siglip)) == [
        f"refused: {source}: config.json gives neither num_attention_heads nor head_dim, and no tensor shape tells "
        "them; add the LLM's num_attention_heads to config.json (Qwen2.5-3B: 16, Qwen2.5-7B: 28)"
    ]


def test_a_vision_tower_without_its_config_needs_vision_for_the_config(tmp_path, siglip):
    source = write_release_checkpoint(tmp_path / "release", "mm_projector", with_vision=True)  # flat config.json

    assert refused_lines(tmp_path, source) == [
        f"refused: {source}: the vision tensors are 24 wide, not SigLIP-so400m's 1152, and config.json has no "
        "vision_config; give --vision DIR whose config.json describes this tower"
    ]
    report = import_release(source, tmp_path / "m", vision=siglip, verify=False, echo=quiet)
    assert not any(row.note.startswith("from ") for row in report.rows)  # the tensors are the source's own


def test_source_and_vision_may_be_hub_ids_from_an_offline_cache(tmp_path, siglip, monkeypatch):
    from tests.test_model_sources import fill_hub_cache

    cache = tmp_path / "hf-cache"
    release = write_release_checkpoint(tmp_path / "release", "projector")
    fill_hub_cache(cache, "Alibaba-DAMO-Academy/OmniCT-3B", "a" * 40, release)
    fill_hub_cache(cache, "google/siglip-so400m-patch14-384", "b" * 40, siglip)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    args = ["import-weights", "Alibaba-DAMO-Academy/OmniCT-3B", "--out", str(tmp_path / "m"), "--no-verify"]
    result = CliRunner().invoke(main, args)  # no --vision: the default hub id, from the cache
    assert result.exit_code == 0, result.output
    assert f"from {cache}/models--google--siglip-so400m-patch14-384/snapshots/{'b' * 40}" in result.stdout
    model = load_imported(tmp_path / "m")
    with torch.inference_mode():
        assert torch.equal(
            model.language_model(input_ids=PROMPT_IDS).logits, release_llm("projector")(input_ids=PROMPT_IDS).logits
        )


def test_saved_buffers_are_dropped_with_their_reason(tmp_path, siglip):
    """Older transformers saved SigLIP's position ids and Qwen2's rotary frequencies; both are rebuilt from code."""
    source = write_release_checkpoint(tmp_path / "release", "mm_projector", with_vision=True)

    def add_buffers(tensors):
        tensors["model.vision_tower.vision_tower.vision_model.embeddings.position_ids"] = torch.arange(16)[None]
        tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)

    rewrite_weights(source, add_buffers)
    report = import_release(source, tmp_path / "m", vision=siglip, verify=False, echo=quiet)
    dropped = {row.source: row.note for row in report.rows if not row.target}
    assert dropped["model.vision_tower.vision_tower.vision_model.embeddings.position_ids"].startswith(
        "position-id buffer"
    )
    assert dropped["model.layers.0.self_attn.rotary_emb.inv_freq"].startswith("rotary-embedding buffer")


def test_a_vision_tower_under_an_unlisted_prefix_is_found_by_its_siglip_names(tmp_path, siglip):
    """Names no test style uses (``image_encoder.``, ``connector.*``): SigLIP's layer names and Eq. 4's shapes
    place everything, the pooling head under the same prefix is dropped as the tower's, not refused."""
    source = write_release_checkpoint(tmp_path / "release", "multi_modal_projector", with_vision=True)
    projector_names = dict(zip(STYLES["multi_modal_projector"]["projector"], ("a.b2d", "a.b3d", "a.out")))

    def rename_tower_and_projector(tensors):
        for name in list(tensors):
            new = name.replace("model.vision_tower.", "image_encoder.")
            for old_prefix, new_prefix in projector_names.items():
                new = new.replace(old_prefix, "connector." + new_prefix)
            tensors[new] = tensors.pop(name)

    rewrite_weights(source, rename_tower_and_projector)
    report = import_release(source, tmp_path / "omnict", vision=siglip, echo=quiet)

    assert [check.passed for check in report.checks] == [True, True, True]
    tower = load_imported(tmp_path / "omnict").spatial_encoder.vision_tower.state_dict()
    stock = release_vision().state_dict()
    assert all(torch.equal(tower[name], stock[name]) for name in tower)
    assert "head.probe" not in tower


def test_a_whole_llm_under_an_unknown_prefix_is_refused_with_the_key_map_that_places_it(tmp_path, siglip):
    source = write_release_checkpoint(tmp_path / "release", "mm_projector")
    rewrite_weights(
        source,
        lambda t: t.update({f"decoder.{k}": t.pop(k) for k in list(t) if k.startswith(("model.layers.", "model.e"))}),
    )

    lines = refused_lines(tmp_path, source, "--vision", str(siglip))
    hint = next(line for line in lines if "looks like the LLM's embedding" in line)
    assert "decoder.model.embed_tokens.weight" in hint and "under the prefix 'decoder.'" in hint

    key_map = tmp_path / "renames.json"
    key_map.write_text(hint.split("a key map ", 1)[1].removesuffix(" places the LLM"))  # the map the line gives
    report = import_release(source, tmp_path / "m", vision=siglip, key_map=key_map, echo=quiet)
    assert all(check.passed for check in report.checks)
