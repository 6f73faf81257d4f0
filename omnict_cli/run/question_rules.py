"""The one rule for every question and prompt a run sends to the model: chat tokens out, length bounded.

A question or prompt comes from a user (``ask``'s argument, ``report
--prompt``) or from a rows file (``ask --batch``); whichever, the run applies
:func:`clean_question` to it before anything else, in
:meth:`omnict_cli.run.pipeline.Pipeline.run`:

- chat tokens (anything shaped ``<|name|>``: the image and organ placeholders
  of the authors' format, the LLM's ``<|im_start|>``/``<|im_end|>`` and its
  other special tokens) are removed: the processor places the real ones,
  and a stray one either breaks the image-token count or ends the turn
  early. The placeholders the authors' chat rows carry before their question
  go silently; any other token earns a warning in the record;
- whitespace is tidied line by line, as ``omnict score`` does when it joins
  answers to references (:func:`omnict_cli.metrics.score_files.question_text`);
- a question longer than the limit (``--max-question-chars``, default
  2,000 characters, about 500 tokens) is an error record naming the limit,
  so a pasted megabyte does not hold a batch for ten minutes; a question
  with nothing left once the tokens are gone is an error record too.
"""

from __future__ import annotations

from omnict_cli.errors import OmnictError
from omnict_cli.metrics.score_files import question_text
from omnict_cli.prompt_format import CHAT_TOKEN, ORGAN_END, ORGAN_START, PROMPT_TOKENS

DEFAULT_MAX_QUESTION_CHARS = 2000

PLACEHOLDERS = frozenset(
    token
    for tokens in PROMPT_TOKENS.values()
    for token in (tokens.image_start, tokens.image, tokens.image_end, tokens.organ)
) | {ORGAN_START, ORGAN_END}
"""The authors' rows start their user turn with these: removed without a warning."""

QUESTION_NOTE = "question: "
"""How the warnings of this rule start in a record, so a command can pick them out."""


class QuestionTooLong(OmnictError):
    """A question or prompt over the run's length limit."""


class QuestionEmpty(OmnictError):
    """A question or prompt with nothing left once chat tokens and spaces are removed."""


def clean_question(text: str) -> tuple[str, list[str]]:
    """``text`` without chat tokens, whitespace tidied; and the warnings for the record (at most one)."""
    stray = sorted({token for token in CHAT_TOKEN.findall(text) if token not in PLACEHOLDERS})
    notes = []
    if stray:
        shown = ", ".join(stray[:5]) + (f" and {len(stray) - 5} more" if len(stray) > 5 else "")
        notes.append(f"{QUESTION_NOTE}removed chat tokens the model's prompt format reserves: {shown}")
    return question_text(text), notes


def question_problem(question: str, limit: int) -> OmnictError | None:
    """The error for a cleaned question that is empty or over ``limit`` characters, else None."""
    if not question:
        return QuestionEmpty("the question is empty once chat tokens are removed", hint="Ask a question in words")
    if len(question) <= limit:
        return None
    return QuestionTooLong(
        f"the question is {len(question):,} characters, over the limit of {limit:,}",
        hint="Shorten it, or raise the limit with --max-question-chars",
    )


def shown_question(question: str, limit: int) -> str:
    """What a refused question's record keeps of it: the first ``limit`` characters and a mark."""
    return question if len(question) <= limit else question[:limit] + " [...]"
