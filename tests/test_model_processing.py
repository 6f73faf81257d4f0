"""OmniCTProcessor: the authors' prompt, exact placeholder expansion, left-padded batches."""

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from omnict_cli.model.processing_omnict import OmniCTProcessor, add_special_tokens, special_tokens
from omnict_cli.studies.preprocess import ModelInput
from tests.test_model_config import tiny_config

WORDS = [
    "[PAD]",
    "[UNK]",
    "USER",
    "ASSISTANT",
    ":",
    "is",
    "the",
    "liver",
    "enlarged",
    "?",
    "describe",
    "this",
    "ct",
    "image",
    "<|im_start|>",
    "<|im_end|>",
    "user",
    "assistant",
]


def tiny_tokenizer(chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over a few words, built in memory (no downloads)."""
    backend = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]")
    tokenizer.chat_template = chat_template
    return tokenizer


def study(kind: str, num_units: int, side: int = 42) -> ModelInput:
    units = np.random.default_rng(num_units).uniform(-1, 1, (num_units, 3, side, side)).astype(np.float32)
    return ModelInput(units=units, kind=kind, grid_spacing=(1.0, 1.0, 1.0))


@pytest.fixture
def processor():
    return OmniCTProcessor(tiny_tokenizer(), tiny_config())


def count(row: torch.Tensor, token_id: int) -> int:
    return int((row == token_id).sum())


def test_add_special_tokens_registers_every_token_once_and_returns_config_ids():
    tokenizer = tiny_tokenizer()
    ids = add_special_tokens(tokenizer)
    assert add_special_tokens(tokenizer) == ids  # idempotent
    assert len(tokenizer) == len(WORDS) + len(special_tokens()) == len(WORDS) + 10
    assert sorted(ids) == sorted(
        ["slice_image_token_id", "volume_image_token_id", "slice_organ_token_id", "volume_organ_token_id"]
    )
    assert len(set(ids.values())) == 4 and min(ids.values()) >= len(WORDS)
    tiny_config(**ids)  # accepted by the config


def test_batch_of_a_slice_and_a_volume_has_exact_placeholder_counts(processor):
    config, ids = processor.config, processor.token_ids
    batch = processor(["is the liver enlarged ?", "describe this ct image"], [study("slice", 1), study("volume", 2)])
    slice_row, volume_row = batch["input_ids"]
    assert count(slice_row, ids["slice_image_token_id"]) == config.num_image_tokens("slice", 1) == 9
    assert count(slice_row, ids["slice_organ_token_id"]) == config.num_organ_tokens("slice", 1) == 81
    assert count(slice_row, ids["volume_image_token_id"]) == count(slice_row, ids["volume_organ_token_id"]) == 0
    assert count(volume_row, ids["volume_image_token_id"]) == config.num_image_tokens("volume", 2) == 2
    assert count(volume_row, ids["volume_organ_token_id"]) == config.num_organ_tokens("volume", 2) == 18
    assert count(volume_row, ids["slice_image_token_id"]) == 0
    assert batch["image_kinds"] == ["slice", "volume"]
    assert batch["num_units"].tolist() == [1, 2]
    assert batch["pixel_values"].shape == (3, 3, 42, 42) and batch["pixel_values"].dtype == torch.float32
    assert torch.equal(batch["pixel_values"][1:], torch.from_numpy(study("volume", 2).units))


def test_batches_are_left_padded(processor):
    batch = processor(["is the liver enlarged ?", "describe this ct image"], [study("volume", 1), study("slice", 1)])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    short = int(mask.sum(1).argmin())
    padding = int((mask[short] == 0).sum())
    assert padding > 0
    assert mask[short, :padding].eq(0).all() and mask[short, padding:].eq(1).all()
    assert ids[short, :padding].eq(processor.tokenizer.pad_token_id).all()
    assert mask[:, -1].eq(1).all()  # every prompt ends at the last column, where generation appends


def test_prompt_follows_the_authors_user_turn(processor):
    text = processor.prompt("is the liver enlarged ?", "volume", 1)
    image, organ = "<|image3d|>", "<|mask3d|>"
    expected = (
        f"USER: <|image3d_start|>{image}<|image3d_end|>\n<|organ_start|>{organ * 9}<|organ_end|>\n"
        "is the liver enlarged ?\nASSISTANT:"
    )
    assert text == expected


def test_question_round_trips(processor):
    batch = processor(["describe this ct image", "is the liver enlarged ?"], [study("slice", 2), study("volume", 3)])
    decoded = processor.decode(batch["input_ids"])
    assert decoded[0].endswith("describe this ct image ASSISTANT :")
    assert decoded[1].endswith("is the liver enlarged ? ASSISTANT :")
    assert "USER :" in decoded[1]


def test_chat_template_is_applied_when_the_tokenizer_has_one():
    template = (
        "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
        "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
    )
    processor = OmniCTProcessor(tiny_tokenizer(template), tiny_config())
    text = processor.prompt("is the liver enlarged ?", "slice", 1)
    assert text.startswith("<|im_start|> user <|image2d_start|><|image2d|>")
    assert text.endswith("is the liver enlarged ? <|im_end|> <|im_start|> assistant ")
    assert text.count("<|image2d|>") == 9 and text.count("<|mask2d|>") == 81


def test_a_training_row_in_the_authors_format_is_not_wrapped_twice(processor):
    row = "<|image3d_start|><|image3d|><|image3d_end|>\n<|organ_start|><|mask3d|><|organ_end|>\ndescribe this ct image"
    batch = processor([row], [study("volume", 2)])
    assert count(batch["input_ids"][0], processor.token_ids["volume_image_token_id"]) == 2
    assert processor.prompt(row, "volume", 2).count("<|image3d_start|>") == 1


def test_organ_masks_pass_through_per_study(processor):
    volume_mask = np.zeros((6, 42, 42), dtype=np.uint8)
    volume_mask[2:4, 10:20, 10:20] = 1
    batch = processor(
        ["is the liver enlarged ?"] * 2, [study("volume", 2), study("slice", 1)], organ_masks=[volume_mask, None]
    )
    masks = batch["organ_masks"]
    assert masks[1] is None and masks[0].dtype == torch.bool and int(masks[0].sum()) == 200


def test_misplaced_inputs_raise_clear_errors(processor):
    with pytest.raises(ValueError, match="2 questions for 1 studies"):
        processor(["is the liver enlarged ?"] * 2, [study("slice", 1)])
    with pytest.raises(ValueError, match="image_size"):
        processor(["describe this ct image"], [study("slice", 1, side=28)])
    with pytest.raises(ValueError, match="preprocessed grid"):
        processor(["describe this ct image"], [study("volume", 2)], organ_masks=[np.zeros((6, 40, 40), bool)])


def test_a_tokenizer_without_pad_token_is_refused():
    tokenizer = tiny_tokenizer()
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match="pad token"):
        OmniCTProcessor(tokenizer, tiny_config())


def test_processor_reloads_from_a_model_directory(tmp_path, processor):
    processor.config.update(processor.token_ids)
    processor.config.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = OmniCTProcessor.from_pretrained(tmp_path)
    assert reloaded.token_ids == processor.token_ids
    questions, images = ["is the liver enlarged ?"], [study("volume", 2)]
    assert torch.equal(reloaded(questions, images)["input_ids"], processor(questions, images)["input_ids"])


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)


def test_training_labels_cover_only_the_answer_and_its_end_of_turn():
    tokenizer = tiny_tokenizer(CHAT_TEMPLATE)
    tokenizer.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)  # single tokens, as in Qwen
    processor = OmniCTProcessor(tokenizer, tiny_config())
    batch = processor(
        ["is the liver enlarged ?", "describe this ct image"],
        [study("slice", 1), study("volume", 2)],
        answers=["the liver is enlarged", "ct"],
    )
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == labels.shape == mask.shape
    first = [tokenizer.convert_ids_to_tokens(int(t)) for t in labels[0] if t != -100]
    second = [tokenizer.convert_ids_to_tokens(int(t)) for t in labels[1] if t != -100]
    # the template closes an assistant turn with <|im_end|>: it is learnt, so generation stops there
    assert first == ["the", "liver", "is", "enlarged", "<|im_end|>"]
    assert second == ["ct", "<|im_end|>"]
    # labels sit on the last positions of each row, under the same ids; padding is left and masked
    assert torch.equal(ids[0, -5:], labels[0, -5:])
    assert (labels[mask == 0] == -100).all() and (mask[1, 0] == 0 or mask[0, 0] == 0)
    # image and organ placeholders are never targets
    placeholders = torch.isin(ids, torch.tensor(list(processor.token_ids.values())))
    assert (labels[placeholders] == -100).all()


def test_training_without_chat_template_ends_answers_with_eos(processor):
    processor.tokenizer.eos_token = "[PAD]"
    batch = processor(["is the liver enlarged ?"], [study("volume", 2)], answers=["enlarged"])
    targets = [processor.tokenizer.convert_ids_to_tokens(int(t)) for t in batch["labels"][0] if t != -100]
    assert targets == ["enlarged", "[PAD]"]


def test_max_length_cuts_the_answer_never_the_prompt(processor):
    processor.tokenizer.eos_token = "[PAD]"
    full = processor(["describe this ct image"], [study("volume", 2)], answers=["the liver is enlarged"])
    prompt_length = int((full["labels"][0] == -100).sum())
    cut = processor(
        ["describe this ct image"],
        [study("volume", 2)],
        answers=["the liver is enlarged"],
        max_length=prompt_length + 2,
    )
    assert cut["input_ids"].shape[1] == prompt_length + 2
    assert [processor.tokenizer.convert_ids_to_tokens(int(t)) for t in cut["labels"][0, -2:]] == ["the", "liver"]
    with pytest.raises(ValueError, match="prompt alone has"):
        processor(["describe this ct image"], [study("volume", 2)], answers=["x"], max_length=prompt_length)
    with pytest.raises(ValueError, match="1 answers for 2 studies"):
        processor(["a", "b"], [study("volume", 2), study("slice", 1)], answers=["x"])
