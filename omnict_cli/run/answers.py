"""Answers shaped like answers: yes/no for a closed question, a phrase for an open one, at inference time.

Why: a small model trained mostly on reports answers every question with a
report, and generated text alone does not say "yes" or "no" reliably. So
the shape of an answer is decided here, from the question, for any model:

- **closed** (yes/no) question: the model's next-token probabilities of
  "Yes" and "No" at the answer position are compared (one forward pass,
  no generation); the answer is the likelier one and the record keeps both
  probabilities (:class:`YesNoAnswer`).
- **open** question: the answer is generated and cut at the end of its
  first phrase (:func:`first_phrase`); generation stops there too
  (:class:`PhraseEndStop`), and the first token may not be "Yes" or "No"
  (a model trained mostly on yes/no questions otherwise says "Yes" to
  "Where is ...?").
- **request** ("Can you describe the CT image?"): the generated text, whole,
  as a report is.

The rule (:func:`question_kind`), on the question's first line: a question
is closed when its first word is an auxiliary verb (:data:`CLOSED_QUESTION_STARTS`:
is, are, does, can, ...), unless it is a request ("can/could/would/will you
..."), offers a choice ("... left or right?") or lists lettered options
("A. ...", multiple choice). Everything else is open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CLOSED = "closed"
OPEN = "open"
REQUEST = "request"

CLOSED_QUESTION_STARTS = frozenset(
    "is are was were am does do did has have had can could will would shall should may might must".split()
)
"""First words of a yes/no question (auxiliary and modal verbs)."""

_REQUEST_VERBS = frozenset("can could would will".split())
_OPTION_LINE = re.compile(r"^\s*\(?[A-Ha-h][.)]\s")
_WORD = re.compile(r"[a-z']+")

YES, NO = "Yes", "No"


def question_kind(question: str) -> str:
    """``"closed"``, ``"open"`` or ``"request"`` for ``question`` (the rule in the module notes)."""
    lines = [line for line in str(question).strip().splitlines() if line.strip()]
    if not lines:
        return OPEN
    if any(_OPTION_LINE.match(line) for line in lines[1:]):
        return OPEN
    words = _WORD.findall(lines[0].lower())
    if not words or words[0] not in CLOSED_QUESTION_STARTS:
        return OPEN
    if words[0] in _REQUEST_VERBS and len(words) > 1 and words[1] == "you":
        return REQUEST
    if "or" in words[1:]:
        return OPEN
    return CLOSED


@dataclass(frozen=True)
class YesNoAnswer:
    """A closed question's answer: the likelier of "Yes" and "No" as the model's next token."""

    probability_yes: float
    probability_no: float

    @property
    def text(self) -> str:
        return YES if self.probability_yes >= self.probability_no else NO

    def to_record(self) -> dict:
        """The record's ``answer_probabilities``: both, over the whole vocabulary, rounded."""
        return {YES: round(self.probability_yes, 6), NO: round(self.probability_no, 6)}


def yes_no_token_ids(tokenizer) -> tuple[int, int] | None:
    """The ids of the first tokens of "Yes" and "No" (one token each in Qwen2.5 and the demo's tokenizer).

    None when the two words start with the same token (a word-level test tokenizer maps both to its
    unknown token): such a model answers closed questions by generating, as open ones.
    """
    yes = tokenizer(YES, add_special_tokens=False)["input_ids"]
    no = tokenizer(NO, add_special_tokens=False)["input_ids"]
    unknown = getattr(tokenizer, "unk_token_id", None)
    if not yes or not no or yes[0] == no[0] or unknown in (yes[0], no[0]):
        return None
    return yes[0], no[0]


_PHRASE_END = re.compile(r"\n|(?<![0-9])(?<!\b[A-Za-z])[.?!;](?=\s|$)")
"""A line break, or ``. ? ! ;`` followed by a space or the end, not after a digit ("57.8" is a number,
"2." in a list) nor after a lone letter ("C. Pulmonary ..." is an answer option)."""


_SECTION_HEADER = re.compile(r"^(?:findings|impression)\s*:\s*", re.IGNORECASE)
"""A report's section header, which a model trained on reports may begin an answer with."""


def first_phrase(text: str) -> str:
    """``text`` up to its first phrase end (kept: "Moderate.", "56 mm"), without a leading "Findings:"
    or "Impression:" header; the whole text when it has no phrase end."""
    text = _SECTION_HEADER.sub("", text.strip())
    found = _PHRASE_END.search(text)
    if found is None:
        return text
    end = found.start() if found.group(0) == "\n" else found.end()
    return text[:end].strip() or text


class PhraseEndStop:
    """Stopping criterion: a row is done once its generated text holds a phrase end (:func:`first_phrase`).

    A row is decoded only on a step whose token can end a phrase (``end_ids``:
    tokens ending in ``. ? ! ;`` or holding a line break), so the check stays cheap.
    """

    def __init__(self, tokenizer, end_ids: frozenset[int], prompt_length: int):
        self.tokenizer = tokenizer
        self.end_ids = end_ids
        self.prompt_length = prompt_length

    def __call__(self, input_ids, scores=None, **kwargs):
        import torch

        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for row, token in enumerate(input_ids[:, -1].tolist()):
            if token in self.end_ids:
                text = self.tokenizer.decode(input_ids[row, self.prompt_length :].tolist(), skip_special_tokens=True)
                done[row] = _PHRASE_END.search(text.lstrip() + " ") is not None
        return done


def phrase_end_ids(tokenizer) -> frozenset[int]:
    """Token ids whose text can end a phrase (a scan of the vocabulary: compute once per tokenizer)."""
    texts = tokenizer.batch_decode([[token_id] for token_id in range(len(tokenizer))])
    return frozenset(i for i, text in enumerate(texts) if "\n" in text or text.rstrip().endswith((".", "?", "!", ";")))
