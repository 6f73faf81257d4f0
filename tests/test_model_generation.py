"""OmniCTForConditionalGeneration: scatter of image/organ tokens, count check, save/load, generation, training."""

import numpy as np
import pytest
import torch

from omnict_cli.model import OmniCTForConditionalGeneration, OmniCTProcessor
from omnict_cli.model.processing_omnict import special_tokens
from tests.test_model_config import tiny_config
from tests.test_model_processing import WORDS, study, tiny_tokenizer

VOCAB = len(WORDS) + len(special_tokens())


def build(seed: int = 0):
    """A tiny random model (SigLIP 32 x 2 layers, 42 px; Qwen2 32 x 2 layers) and its processor."""
    processor = OmniCTProcessor(tiny_tokenizer(), tiny_config())
    torch.manual_seed(seed)
    config = tiny_config(**processor.token_ids)
    config.text_config.vocab_size = VOCAB  # the tiny tokenizer's words + the prompt's special tokens
    processor.config = config
    return OmniCTForConditionalGeneration(config).eval(), processor


@pytest.fixture(scope="module")
def model_and_processor():
    return build()


def batch_of_two(processor, **kwargs):
    return processor(
        ["is the liver enlarged ?", "describe this ct image"], [study("slice", 1), study("volume", 2)], **kwargs
    )


def test_forward_on_a_slice_and_a_volume_gives_logits_per_token(model_and_processor):
    model, processor = model_and_processor
    batch = batch_of_two(processor)
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (2, batch["input_ids"].shape[1], VOCAB)
    assert torch.isfinite(out.logits).all()
    # the image really enters: other pixels, other logits
    other = dict(batch, pixel_values=batch["pixel_values"].flip(-1))
    with torch.no_grad():
        assert not torch.allclose(model(**other).logits, out.logits)


def test_placeholder_feature_mismatch_raises_with_both_counts(model_and_processor):
    model, processor = model_and_processor
    batch = batch_of_two(processor)
    ids = batch["input_ids"].clone()
    image_id = processor.config.volume_image_token_id
    row, col = (ids == image_id).nonzero()[0].tolist()
    ids[row, col] = processor.tokenizer.convert_tokens_to_ids("ct")
    with pytest.raises(ValueError, match="tokens: 1, features: 2"):
        model(**dict(batch, input_ids=ids))


def test_save_and_load_give_identical_logits_from_safetensors_only(model_and_processor, tmp_path):
    model, processor = model_and_processor
    model.save_pretrained(tmp_path)
    names = [p.name for p in tmp_path.iterdir()]
    assert any(n.endswith(".safetensors") for n in names)
    assert not any(n.endswith((".bin", ".pt", ".pth")) for n in names)
    reloaded = OmniCTForConditionalGeneration.from_pretrained(tmp_path).eval()
    batch = batch_of_two(processor)
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, model(**batch).logits)


def test_batched_greedy_generation_equals_one_at_a_time(model_and_processor):
    model, processor = model_and_processor
    questions, images = ["is the liver enlarged ?", "describe this ct image"], [study("slice", 1), study("volume", 2)]
    settings = dict(max_new_tokens=5, do_sample=False, pad_token_id=processor.tokenizer.pad_token_id)
    batch = processor(questions, images)
    with torch.no_grad():
        together = model.generate(**batch, **settings)[:, batch["input_ids"].shape[1] :]
        for i in range(2):
            single = processor([questions[i]], [images[i]])
            alone = model.generate(**single, **settings)[:, single["input_ids"].shape[1] :]
            assert together[i].tolist() == alone[0].tolist()
    assert together.shape == (2, 5)


def test_a_few_adamw_steps_on_one_example_lower_the_loss():
    model, processor = build(seed=1)
    model.train()
    processor.tokenizer.eos_token = "[PAD]"
    inputs = processor(["is the liver enlarged ?"], [study("volume", 2)], answers=["the liver is enlarged"])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(5):
        loss = model(**inputs).loss
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0] * 0.7
    projector = model.spatial_encoder.multi_modal_projector
    assert projector.volume_expert.weight.grad is not None and projector.slice_expert.weight.grad is None


def test_organ_status_is_missing_without_a_mask_and_ok_with_one(model_and_processor):
    model, processor = model_and_processor
    volume_mask = np.zeros((6, 42, 42), dtype=bool)
    volume_mask[0:3, 0:14, 0:14] = True
    with torch.no_grad():
        without = model(**batch_of_two(processor))
        with_mask = model(**batch_of_two(processor, organ_masks=[None, volume_mask]))
    assert [status for status, _ in without.organ_status] == ["missing", "missing"]
    assert [status for status, _ in with_mask.organ_status] == ["missing", "ok"]
    assert not torch.allclose(with_mask.logits[1], without.logits[1])
    assert torch.allclose(with_mask.logits[0], without.logits[0], atol=1e-5)


def test_sampling_follows_the_generation_config_and_the_seed(model_and_processor):
    from transformers import GenerationConfig

    model, processor = model_and_processor
    batch = batch_of_two(processor)
    prompt = batch["input_ids"].shape[1]
    pad = processor.tokenizer.pad_token_id

    def sample(seed, **settings):
        torch.manual_seed(seed)
        config = GenerationConfig(max_new_tokens=8, pad_token_id=pad, **settings)
        with torch.no_grad():
            return model.generate(**batch, generation_config=config)[:, prompt:]

    hot = dict(do_sample=True, temperature=5.0, top_k=0, top_p=1.0)
    first, again, other = sample(0, **hot), sample(0, **hot), sample(1, **hot)
    assert torch.equal(first, again)  # same seed, same text
    assert not torch.equal(first, other)  # sampling really samples
    greedy = sample(0, do_sample=False)
    # top_k=1 keeps only the most likely token: sampling collapses to greedy decoding
    assert torch.equal(sample(3, do_sample=True, top_k=1), greedy)
    assert greedy.shape == (2, 8)


def test_device_map_with_offloaded_weights_gives_the_same_logits_and_text(model_and_processor, tmp_path):
    """``device_map`` (accelerate) splits a model too big for one device; here it is forced onto disk offload,
    so every module runs through accelerate's hooks, as when a 7B model spans GPUs and CPU."""
    model, processor = model_and_processor
    model.save_pretrained(tmp_path / "model")
    split = OmniCTForConditionalGeneration.from_pretrained(
        tmp_path / "model", device_map="auto", max_memory={"cpu": "60KB"}, offload_folder=str(tmp_path / "offload")
    ).eval()
    assert set(split.hf_device_map.values()) == {"disk"}
    batch = batch_of_two(processor)
    settings = dict(max_new_tokens=4, do_sample=False, pad_token_id=processor.tokenizer.pad_token_id)
    with torch.no_grad():
        assert torch.allclose(split(**batch).logits, model(**batch).logits, atol=1e-5)
        assert torch.equal(split.generate(**batch, **settings), model.generate(**batch, **settings))


def test_bfloat16_with_sdpa_attention_runs_and_follows_float32(model_and_processor):
    """The GPU setting (bf16 weights, SDPA) on the CPU: float32 pixels are cast to the tower's dtype."""
    import copy

    model, processor = model_and_processor
    half = copy.deepcopy(model).to(torch.bfloat16)
    assert half.language_model.config._attn_implementation == "sdpa"
    batch = batch_of_two(processor)
    with torch.no_grad():
        logits = half(**batch).logits
        reference = model(**batch).logits
    assert logits.dtype == torch.bfloat16
    assert (logits.float() - reference).abs().max() < 0.1 * reference.abs().max()
