"""Turn questions and preprocessed studies into model inputs: prompt, token expansion, batching.

The prompt follows the authors' release (``shared/DESIGN.md``): the user turn
is ``<image tokens>\\n<organ tokens>\\n<question>`` with

- a slice:  ``<|image2d_start|><|image2d|><|image2d_end|>`` and
  ``<|organ_start|><|mask2d|><|organ_end|>``;
- a volume: ``<|image3d_start|><|image3d|><|image3d_end|>`` and
  ``<|organ_start|><|mask3d|><|organ_end|>``.

As in transformers' LLaVA, the processor expands each image placeholder into
exactly :meth:`OmniCTConfig.num_image_tokens` copies and each organ
placeholder into :meth:`OmniCTConfig.num_organ_tokens` copies, so the model
only checks the counts and scatters its features into those positions. The
counts come from the model's own config (one source of truth), which is why
this processor holds an :class:`OmniCTConfig` instead of a separate
``processor_config.json``: a model directory (``config.json`` + tokenizer
files) is all :meth:`OmniCTProcessor.from_pretrained` needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import AddedToken, AutoTokenizer, BatchFeature

from omnict_cli.model.configuration_omnict import OmniCTConfig
from omnict_cli.prompt_format import ORGAN_END, ORGAN_START, PROMPT_TOKENS

# The config field that records each placeholder's token id.
PLACEHOLDER_ID_FIELDS = {
    "<|image2d|>": "slice_image_token_id",
    "<|image3d|>": "volume_image_token_id",
    "<|mask2d|>": "slice_organ_token_id",
    "<|mask3d|>": "volume_organ_token_id",
}

# Used when the tokenizer has no chat template (e.g. a base LLM); documented in OmniCTProcessor.
FALLBACK_PROMPT = "USER: {content}\nASSISTANT:"


def special_tokens() -> list[str]:
    """Every special token of the authors' prompt format, in a fixed order."""
    tokens = [ORGAN_START, ORGAN_END]
    for prompt in PROMPT_TOKENS.values():
        tokens += [prompt.image_start, prompt.image, prompt.image_end, prompt.organ]
    return tokens


def add_special_tokens(tokenizer) -> dict[str, int]:
    """Register the prompt's special tokens with ``tokenizer`` (idempotent).

    Returns the placeholder ids as OmniCTConfig fields, e.g.
    ``{"volume_image_token_id": 151669, ...}``, ready for ``config.update(...)``.
    The caller resizes the LLM's embeddings to ``len(tokenizer)``.
    """
    tokenizer.add_tokens(
        [AddedToken(token, special=True, normalized=False) for token in special_tokens()], special_tokens=True
    )
    return {field: tokenizer.convert_tokens_to_ids(token) for token, field in PLACEHOLDER_ID_FIELDS.items()}


def user_content(question: str, kind: str) -> str:
    """The user turn ``<image tokens>\\n<organ tokens>\\n<question>`` with one placeholder each.

    A question that already carries the kind's image placeholder (a training row
    in the authors' format) is used as it is.
    """
    prompt = PROMPT_TOKENS[kind]
    if prompt.image in question:
        return question
    return f"{prompt.image_block()}\n{prompt.organ_block()}\n{question}"


class OmniCTProcessor:
    """Builds chat prompts, expands placeholders and batches studies with left padding.

    Left padding keeps every prompt's last token at the end of the row, where
    batched ``generate()`` appends. Prompts are rendered with the tokenizer's
    chat template (user turn + generation prompt); a tokenizer without one gets
    ``FALLBACK_PROMPT`` (``"USER: <content>\\nASSISTANT:"``).

    Args:
        tokenizer: the LLM's tokenizer; :func:`add_special_tokens` is applied to it.
        config: the model's :class:`OmniCTConfig` (token counts, image size).
    """

    def __init__(self, tokenizer, config: OmniCTConfig):
        if tokenizer.pad_token is None:
            raise ValueError(
                "the tokenizer has no pad token; set tokenizer.pad_token (e.g. to its EOS token) "
                "so batches can be padded"
            )
        self.tokenizer = tokenizer
        self.config = config
        self.token_ids = add_special_tokens(tokenizer)

    @classmethod
    def from_pretrained(cls, model_dir, **tokenizer_kwargs) -> OmniCTProcessor:
        """Read the tokenizer and ``config.json`` of an OmniCT model directory (local files only)."""
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, **tokenizer_kwargs)
        return cls(tokenizer, OmniCTConfig.from_pretrained(model_dir, local_files_only=True))

    def save_pretrained(self, out_dir) -> None:
        """Write the tokenizer files; ``config.json`` is written by the model."""
        self.tokenizer.save_pretrained(out_dir)

    def prompt(self, question: str, kind: str, num_units: int) -> str:
        """The full prompt text of one study, placeholders already expanded."""
        text = self.render_chat(user_content(question, kind))
        prompt = PROMPT_TOKENS[kind]
        text = text.replace(prompt.image, prompt.image * self.config.num_image_tokens(kind, num_units))
        return text.replace(prompt.organ, prompt.organ * self.config.num_organ_tokens(kind, num_units))

    def render_chat(self, content: str) -> str:
        """One user turn plus the assistant's generation prompt."""
        if not getattr(self.tokenizer, "chat_template", None):
            return FALLBACK_PROMPT.format(content=content)
        messages = [{"role": "user", "content": content}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def __call__(
        self, questions: str | Sequence[str], images, organ_masks=None, answers=None, max_length: int | None = None
    ) -> BatchFeature:
        """Tokenize a batch of (question, study) pairs, with their answers for training.

        Args:
            questions: one question per study.
            images: one :class:`omnict_cli.studies.preprocess.ModelInput` per study (slices and
                volumes may be mixed); ``units`` is float32 ``[N_s, 3, H, W]`` in [-1, 1].
            organ_masks: optional, one boolean ``[D, H, W]`` organ mask per study on the
                preprocessed grid (``[1, H, W]`` for a slice), or ``None`` for a study without one.
            answers: for training, one target text per study: it is appended as the assistant's
                turn (closed by the chat template's end-of-turn, or the EOS token) and ``labels``
                are returned, -100 on the prompt and the padding so the loss covers only the answer.
            max_length: with ``answers``, cut each answer so a row has at most this many tokens
                (the prompt, image and organ tokens are never cut; a prompt longer than this is
                an error). The paper trains with 2048.

        Returns:
            BatchFeature with ``input_ids`` and ``attention_mask`` (long ``[B, T]``, left padded),
            ``pixel_values`` (float32 ``[sum N_s, 3, H, W]``: all units of the batch, study after
            study), ``num_units`` (long ``[B]``: how many of those units each study owns),
            ``image_kinds`` (list of "slice"/"volume") and, when given, ``organ_masks``
            (list of bool tensors or ``None``); with ``answers`` also ``labels`` (long ``[B, T]``).
        """
        questions = [questions] if isinstance(questions, str) else list(questions)
        images = list(images) if isinstance(images, (list, tuple)) else [images]
        if len(questions) != len(images):
            raise ValueError(f"got {len(questions)} questions for {len(images)} studies; pass one each")
        kinds = [self._check_image(image) for image in images]
        num_units = [int(image.units.shape[0]) for image in images]
        texts = [self.prompt(q, kind, n) for q, kind, n in zip(questions, kinds, num_units)]
        if answers is None:
            encoded = self.tokenizer(
                texts, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt"
            )
        else:
            encoded = self._encode_with_answers(texts, questions, kinds, answers, max_length)
        self._check_counts(encoded["input_ids"], kinds, num_units)
        data = dict(encoded)
        data["pixel_values"] = torch.cat(
            [torch.as_tensor(np.asarray(image.units, dtype=np.float32)) for image in images]
        )
        data["num_units"] = torch.tensor(num_units, dtype=torch.long)
        data["image_kinds"] = kinds
        if organ_masks is not None:
            data["organ_masks"] = self._organ_masks(organ_masks, images)
        return BatchFeature(data=data)

    def answer_suffix(self, question: str, kind: str, answer: str) -> str:
        """The text that follows the prompt when the assistant says ``answer``.

        With a chat template it is what the template writes for an assistant turn
        (for Qwen2.5: the answer and ``<|im_end|>``), found as the difference between
        the rendered conversation and the rendered prompt; otherwise the answer and EOS.
        """
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": user_content(question, kind)}]
            prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            full = self.tokenizer.apply_chat_template(
                messages + [{"role": "assistant", "content": answer}], tokenize=False
            )
            if full.startswith(prompt):
                return full[len(prompt) :]
        if self.tokenizer.eos_token is None:
            raise ValueError(
                "training needs an end-of-answer token: the tokenizer has no chat template and no EOS token"
            )
        return f" {answer}{self.tokenizer.eos_token}"

    def _encode_with_answers(self, texts, questions, kinds, answers, max_length) -> dict:
        """Prompt ids + answer ids per row, left padded, with labels only on the answer."""
        answers = [answers] if isinstance(answers, str) else list(answers)
        if len(answers) != len(texts):
            raise ValueError(f"got {len(answers)} answers for {len(texts)} studies; pass one each")
        rows, labels = [], []
        for text, question, kind, answer in zip(texts, questions, kinds, answers):
            prompt_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            suffix = self.answer_suffix(question, kind, answer)
            answer_ids = self.tokenizer(suffix, add_special_tokens=False)["input_ids"]
            if max_length is not None:
                if len(prompt_ids) >= max_length:
                    raise ValueError(f"the prompt alone has {len(prompt_ids)} tokens, max_length is {max_length}")
                answer_ids = answer_ids[: max_length - len(prompt_ids)]
            rows.append(prompt_ids + answer_ids)
            labels.append([-100] * len(prompt_ids) + answer_ids)
        width = max(len(row) for row in rows)
        pad = self.tokenizer.pad_token_id

        def left_pad(values, fill):
            return torch.tensor([[fill] * (width - len(v)) + v for v in values], dtype=torch.long)

        return {
            "input_ids": left_pad(rows, pad),
            "attention_mask": left_pad([[1] * len(r) for r in rows], 0),
            "labels": left_pad(labels, -100),
        }

    def decode(self, token_ids, **kwargs) -> list[str]:
        """Decode a batch of generated ids, special tokens skipped."""
        return self.tokenizer.batch_decode(token_ids, skip_special_tokens=True, **kwargs)

    def _check_image(self, image) -> str:
        units = image.units
        side = self.config.vision_config.image_size
        if image.kind not in PROMPT_TOKENS:
            raise ValueError(f"image kind must be 'slice' or 'volume', got {image.kind!r}")
        if units.ndim != 4 or units.shape[0] < 1 or tuple(units.shape[1:]) != (3, side, side):
            raise ValueError(
                f"units must be [N_s >= 1, 3, {side}, {side}] (the model config's image_size); got {tuple(units.shape)}"
            )
        return image.kind

    def _check_counts(self, input_ids: torch.Tensor, kinds, num_units) -> None:
        """Each row must hold exactly the expected number of placeholder ids (one token per copy)."""
        for row, kind, n in zip(input_ids, kinds, num_units):
            prompt = PROMPT_TOKENS[kind]
            for token, expected in (
                (prompt.image, self.config.num_image_tokens(kind, n)),
                (prompt.organ, self.config.num_organ_tokens(kind, n)),
            ):
                found = int((row == self.token_ids[PLACEHOLDER_ID_FIELDS[token]]).sum())
                if found != expected:
                    raise ValueError(
                        f"{token} appears {found} times in a tokenized {kind} prompt, expected "
                        f"{expected}; the tokenizer must keep it a single special token"
                    )

    def _organ_masks(self, organ_masks, images) -> list:
        if len(organ_masks) != len(images):
            raise ValueError(f"got {len(organ_masks)} organ masks for {len(images)} studies; use None for none")
        return [None if mask is None else self._organ_mask(mask, image) for mask, image in zip(organ_masks, images)]

    def _organ_mask(self, mask, image) -> torch.Tensor:
        """A study's organ mask as bool ``[D, H, W]`` on its preprocessed grid."""
        mask = torch.as_tensor(np.asarray(mask, dtype=bool))
        n_units, _, height, width = image.units.shape
        # A slice study has one grid slice per unit; a volume at least the slices its units used.
        min_depth = n_units if image.kind == "slice" else n_units * self.config.slices_per_unit
        if mask.ndim != 3 or tuple(mask.shape[1:]) != (height, width) or mask.shape[0] < min_depth:
            raise ValueError(
                f"organ mask shape {tuple(mask.shape)} is not on the study's preprocessed grid "
                f"([>= {min_depth}, {height}, {width}]); resample it with the study"
            )
        return mask
