"""The bundled demo model's recipe: phantoms -> BPE tokenizer -> small components -> OmniCT -> two stages.

Why a recipe in the library: ``models/omnict-demo/`` must be reproducible by
one command (``omnict train-demo OUT``) on a laptop, so every size and step
lives here, in one place, with the numbers the model card quotes. The steps:

1. phantoms for training (:func:`write_training_phantoms`), from seeds that
   the evaluation never uses (:data:`TRAIN_SEEDS` vs. ``benchmarks/demo_model_eval.py``);
2. a byte-level BPE tokenizer trained with ``tokenizers`` on the phantom texts,
   with the authors' prompt tokens and a Qwen-style chat template
   (:func:`train_tokenizer`);
3. a SigLIP-style encoder (larger patches, few layers) and a small Qwen2
   decoder, both random, saved as component directories and composed with
   :func:`omnict_cli.model.build.build_model_dir`, as ``omnict build-model`` does
   (:func:`build_demo_components`, :func:`build_untrained_model`);
4. stage 1 (projector) and stage 2 (projector, LLM and, because it starts from
   scratch, the encoder) with ``omnict train`` (:func:`train_stages`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from omnict_cli.model.processing_omnict import special_tokens

# ---- sizes (the model card quotes these) ---------------------------------------------------

PHANTOM_SIZE = (32, 128, 128)
"""Training phantoms, canonical [z, y, x]: the size of ``examples/phantoms``."""
PHANTOM_SPACING = (9.4, 2.8, 2.8)
"""mm per voxel; 32 x 9.4 mm and 128 x 2.8 mm cover the field of view of ``demo-data``'s default set."""

BOS, EOS_TURN, PAD = "<|endoftext|>", "<|im_end|>", "<|endoftext|>"
TURN_START = "<|im_start|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""Qwen2.5's turn format without its default system message (saves tokens; the demo has one task family)."""


@dataclass(frozen=True)
class DemoSizes:
    """Every size of the demo model's components (see the model card).

    ``image_size`` is the in-plane size of a unit and the encoder's image size;
    ``volume_depth`` slices make ``volume_depth // 3`` units (VSC; 30 -> 10, as the paper's 32).
    """

    image_size: int = 96
    volume_depth: int = 30
    vocab_size: int = 2048
    vision_width: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    patch_size: int = 16
    text_width: int = 256
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 704
    volume_unshuffle: int = 2
    ose_volume_grid: int = 2
    tpe_dim: int = 16
    max_positions: int = 1024


def training_texts(phantom_dirs) -> list[str]:
    """Every report, question and answer of the training phantoms, image tokens removed."""
    markers = special_tokens()
    texts = []
    for folder in phantom_dirs:
        with open(Path(folder) / "qa.jsonl", encoding="utf-8") as rows:
            for line in rows:
                for message in json.loads(line)["messages"]:
                    content = message["content"]
                    for marker in markers:
                        content = content.replace(marker, "")
                    texts.append(content.strip())
    return texts


def train_tokenizer(texts, out_dir, vocab_size: int):
    """A byte-level BPE tokenizer in Qwen2's format, saved to ``out_dir`` and returned.

    Byte-level, like Qwen2's: any text (a user's question with words never
    seen in the phantoms) still tokenizes. The authors' prompt tokens are
    trained in as special tokens so they stay single ids.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, TURN_START, EOS_TURN, *special_tokens()],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS_TURN, pad_token=PAD,
                                        additional_special_tokens=[TURN_START], padding_side="left")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def build_demo_components(tokenizer, out_root, sizes: DemoSizes = DemoSizes(), seed: int = 0) -> tuple[Path, Path]:
    """Random SigLIP-style and Qwen2 components saved as ``vision/`` and ``llm/`` under ``out_root``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

    out_root = Path(out_root)
    torch.manual_seed(seed)
    vision = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=sizes.vision_width, intermediate_size=4 * sizes.vision_width,
        num_hidden_layers=sizes.vision_layers, num_attention_heads=sizes.vision_heads,
        patch_size=sizes.patch_size, image_size=sizes.image_size, vision_use_head=False))
    vision.save_pretrained(out_root / "vision")
    text_config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=sizes.text_width, intermediate_size=sizes.text_intermediate,
        num_hidden_layers=sizes.text_layers, num_attention_heads=sizes.text_heads,
        num_key_value_heads=sizes.text_kv_heads, max_position_embeddings=sizes.max_positions,
        tie_word_embeddings=True, bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
        eos_token_id=tokenizer.convert_tokens_to_ids(EOS_TURN),
        pad_token_id=tokenizer.pad_token_id)
    language_model = Qwen2ForCausalLM(text_config)
    language_model.generation_config.eos_token_id = text_config.eos_token_id
    language_model.generation_config.pad_token_id = text_config.pad_token_id
    language_model.save_pretrained(out_root / "llm")
    tokenizer.save_pretrained(out_root / "llm")
    return out_root / "vision", out_root / "llm"


def build_untrained_model(vision_dir, llm_dir, out_dir, sizes: DemoSizes = DemoSizes()):
    """Compose the components with ``build_model_dir`` (what ``omnict build-model`` runs).

    The encoder's LAST layer feeds the projector (``vision_feature_layer=-1``):
    the paper's penultimate-layer choice protects a pretrained encoder's
    contrastive head, which a from-scratch encoder does not have, and a layer
    that feeds nothing would get no gradient.
    """
    from omnict_cli.model.build import build_model_dir

    volume_size = (sizes.volume_depth, sizes.image_size, sizes.image_size)
    return build_model_dir(vision_dir, llm_dir, out_dir, overwrite=True, volume_size=volume_size,
                           volume_unshuffle=sizes.volume_unshuffle, ose_volume_grid=sizes.ose_volume_grid,
                           tpe_depth_dim=sizes.tpe_dim, tpe_row_dim=sizes.tpe_dim, tpe_col_dim=sizes.tpe_dim,
                           vision_feature_layer=-1)
