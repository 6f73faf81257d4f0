"""The authors' prompt format: special tokens and the report question, in one place (``shared/DESIGN.md``).

Why a module of its own: the processor (``omnict_cli.model``), the report
pipeline, the training rows and the phantom writer all write this format, and
none of them should import torch or transformers just to spell a token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ORGAN_START = "<|organ_start|>"
ORGAN_END = "<|organ_end|>"

REPORT_QUESTION = "Can you describe the CT image?"
"""The report-generation prompt of the authors' training rows (and ``omnict report``'s default)."""


@dataclass(frozen=True)
class PromptTokens:
    """The special tokens of one input kind (slice or volume)."""

    image_start: str
    image: str
    image_end: str
    organ: str

    def image_block(self) -> str:
        return f"{self.image_start}{self.image}{self.image_end}"

    def organ_block(self) -> str:
        return f"{ORGAN_START}{self.organ}{ORGAN_END}"


PROMPT_TOKENS = {
    "slice": PromptTokens("<|image2d_start|>", "<|image2d|>", "<|image2d_end|>", "<|mask2d|>"),
    "volume": PromptTokens("<|image3d_start|>", "<|image3d|>", "<|image3d_end|>", "<|mask3d|>"),
}
"""Per input kind, verbatim from the authors' release."""

CHAT_TOKEN = re.compile(r"<\|[^|>]*\|>")
"""Any token shaped ``<|name|>``: the placeholders above and the chat template's own (``<|im_start|>``,
``<|im_end|>``, ``<|endoftext|>``, ...). Questions lose them before the model sees them
(:mod:`omnict_cli.run.question_rules`) and scoring joins questions without them, by this one pattern."""
