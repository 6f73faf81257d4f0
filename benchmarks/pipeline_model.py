"""A small random-weight OmniCT *directory* (weights + tokenizer) for timing the report pipeline (no downloads).

``benchmarks/synthetic_model.py`` builds models in memory; the pipeline loads
a directory like a user's, so this writes one: the ``small_config`` model
(or the full-size shapes) and a word-level tokenizer whose 10 prompt tokens
get exactly the ids the config expects.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.synthetic_model import _first_prompt_id, random_model  # noqa: E402
from omnict_cli.model.processing_omnict import add_special_tokens  # noqa: E402

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def word_tokenizer(size: int) -> PreTrainedTokenizerFast:
    """A whitespace tokenizer of exactly ``size`` entries before the prompt tokens."""
    vocab = {"[PAD]": 0, "[UNK]": 1, "<|im_start|>": 2, "<|im_end|>": 3}
    for index in range(len(vocab), size):
        vocab[f"w{index}"] = index
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", eos_token="<|im_end|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def write_model_dir(config, out_dir: Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Path:
    """Save a random model of ``config`` and a matching tokenizer to ``out_dir``; returns it."""
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    tokenizer = word_tokenizer(_first_prompt_id(config))
    ids = add_special_tokens(tokenizer)
    expected = {field: getattr(config, field) for field in ids}
    if ids != expected:
        raise RuntimeError(f"prompt token ids {ids} differ from the config's {expected}")
    model = random_model(config, device=device, dtype=dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = None  # random weights: always generate exactly max_new_tokens
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
