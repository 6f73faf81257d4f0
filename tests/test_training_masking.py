"""Assistant-only loss: with a real byte-level BPE tokenizer and a Qwen-style chat template, the labels of a
training batch cover exactly the answer and its end-of-turn, starting at the prompt/answer boundary."""

import numpy as np
import pytest

from omnict_cli.model import OmniCTProcessor
from omnict_cli.studies.preprocess import ModelInput
from omnict_cli.training.dataset import BatchCollator
from tests.test_training_data import TINY_SIDE, bpe_tokenizer, tiny_omnict_config

TEXTS = [
    "Is there a pleural effusion in this scan?",
    "Yes",
    "No",
    "A 12 mm nodule is seen in the right upper lobe.",
    "Can you describe the CT image?",
    "Findings: The lungs are clear.\nImpression: Normal chest CT.",
] * 20


@pytest.fixture(scope="module")
def collate():
    tokenizer = bpe_tokenizer(TEXTS, vocab_size=300)
    processor = OmniCTProcessor(tokenizer, tiny_omnict_config(len(tokenizer) + 10))
    return BatchCollator(processor, max_length=400)


def item(question: str, answer: str, kind: str = "volume") -> dict:
    units = 2 if kind == "volume" else 1
    image = ModelInput(
        units=np.zeros((units, 3, TINY_SIDE, TINY_SIDE), np.float32), kind=kind, grid_spacing=(1.0, 1.0, 1.0)
    )
    return {"question": question, "answer": answer, "image": image, "organ_mask": None, "line": 1}


def test_labels_start_at_the_first_answer_token_and_cover_the_answer_and_end_of_turn(collate):
    tokenizer = collate.processor.tokenizer
    long_answer = "A 12 mm nodule is seen in the right upper lobe."
    batch = collate(
        [
            item("Is there a pleural effusion in this scan?", long_answer),
            item("Can you describe the CT image?", "No", kind="slice"),
        ]
    )
    for row in range(2):
        ids, labels, mask = batch["input_ids"][row], batch["labels"][row], batch["attention_mask"][row]
        labelled = (labels != -100).nonzero().flatten()
        first = int(labelled[0])
        assert labelled.tolist() == list(range(first, len(ids)))  # one contiguous run up to the row's end
        assert labels[labelled].tolist() == ids[labelled].tolist()
        prompt = tokenizer.decode(ids[mask.bool()][: first - int((mask == 0).sum())])
        assert prompt.endswith("<|im_start|>assistant\n")  # the boundary: everything before it is prompt
        assert prompt.count("<|im_start|>user\n") == 1 and "<|im_end|>" in prompt
    assert tokenizer.decode(batch["labels"][0][batch["labels"][0] != -100]) == f"{long_answer}<|im_end|>\n"
    assert tokenizer.decode(batch["labels"][1][batch["labels"][1] != -100]) == "No<|im_end|>\n"


def test_padding_image_and_organ_placeholders_never_carry_a_label(collate):
    batch = collate([item("Is there a pleural effusion in this scan?", "Yes"), item("Describe it.", "No", "slice")])
    ids, labels = batch["input_ids"], batch["labels"]
    placeholders = list(collate.processor.token_ids.values())
    assert np.isin(ids.numpy(), placeholders).sum() == 2 + 18 + 9 + 81  # 2 volume units, 1 slice unit
    assert (labels[np.isin(ids.numpy(), placeholders)] == -100).all()
    assert (labels[batch["attention_mask"] == 0] == -100).all()
    assert int((labels != -100).sum()) == 2 * len(collate.processor.tokenizer("X<|im_end|>\n")["input_ids"])


def test_a_long_answer_is_cut_to_max_length_and_the_prompt_kept_whole(collate):
    tokenizer = collate.processor.tokenizer
    full = collate([item("Can you describe the CT image?", "Findings: The lungs are clear. " * 30)])
    prompt_tokens = int((full["labels"][0] == -100).sum())
    short = BatchCollator(collate.processor, max_length=prompt_tokens + 5)(
        [item("Can you describe the CT image?", "Findings: The lungs are clear. " * 30)]
    )
    assert short["input_ids"].shape[1] == prompt_tokens + 5
    assert short["input_ids"][0, :prompt_tokens].tolist() == full["input_ids"][0, :prompt_tokens].tolist()
    kept = tokenizer.decode(short["labels"][0][short["labels"][0] != -100])
    assert "Findings: The lungs are clear.".startswith(kept) and len(kept) > 5
