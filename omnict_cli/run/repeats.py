"""Generation that loops on one sentence: stop it early, drop the repeats, say so in the record.

Why: a language model fed an image unlike its training data can fall into a
loop ("Pleural effusion is present. Pleural effusion is present. ...") until
``--max-new-tokens`` runs out. The bundled demo model does it on the real CT
in ``examples/``; large models do it more rarely, but each loop costs a
whole ``max_new_tokens`` of GPU time and leaves a record no reader wants.
A loop can also be one word or token ("Pleural Pleural Pleural ...",
"YesYesYes..."), which never completes a sentence. Two parts:

* :class:`RepeatedSentenceStop`, a ``transformers`` stopping criterion: a
  row stops once one sentence has been completed ``limit`` times (3: a
  report may legitimately state a finding in Findings and again in
  Impression, a loop reaches three at once), or once its last
  ``TOKEN_RUN_LIMIT`` tokens are one token;
* :func:`drop_repeated_sentences`: within each paragraph of the text, a
  word said three or more times in a row is kept once, and a sentence that
  repeats an earlier one of the same paragraph is dropped; the caller
  records a warning with the count.
"""

from __future__ import annotations

import re
from collections import Counter

from omnict_cli.labels.rules import split_sentences

REPEAT_LIMIT = 3
"""Completions of one sentence that stop a row (see the module docstring)."""

TOKEN_RUN_LIMIT = 8
"""A row whose last this many generated tokens are one token stops (a number like "1000000" has 6 zeros)."""

_WORD_RUN = re.compile(r"\b([A-Za-z]{2,}?)(?:\s*\1){2,}(?![a-z])")
"""A word of two or more letters said three or more times in a row, with or without spaces between."""


def sentence_end_ids(tokenizer) -> frozenset[int]:
    """Token ids whose text ends a sentence ("." "?" "!", possibly followed by spaces or newlines).

    A scan of the whole vocabulary (150k ids for Qwen2.5, about a second):
    compute it once per tokenizer.
    """
    texts = tokenizer.batch_decode([[token_id] for token_id in range(len(tokenizer))])
    return frozenset(token_id for token_id, text in enumerate(texts) if text.rstrip().endswith((".", "?", "!")))


class RepeatedSentenceStop:
    """Stopping criterion: a row is done once one of its sentences has been completed ``limit`` times,
    or once its last :data:`TOKEN_RUN_LIMIT` generated tokens are the same token.

    Sentences are those of the labeler's :func:`~omnict_cli.labels.rules.split_sentences`
    (which knows that "approx." or "e.g." ends none) in the row's generated
    text; the prompt (the first ``prompt_length`` ids) is not counted. A row
    is decoded and checked only on a step whose token can end a sentence.
    """

    def __init__(self, tokenizer, sentence_ends: frozenset[int], prompt_length: int, limit: int = REPEAT_LIMIT):
        self.tokenizer = tokenizer
        self.ends = sentence_ends
        self.prompt_length = prompt_length
        self.limit = limit

    def __call__(self, input_ids, scores=None, **kwargs):
        import torch

        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        last = input_ids[:, -1].tolist()
        if input_ids.shape[1] - self.prompt_length >= TOKEN_RUN_LIMIT:
            done |= (input_ids[:, -TOKEN_RUN_LIMIT:] == input_ids[:, -1:]).all(dim=1)
        for row, token in enumerate(last):
            if token in self.ends and not done[row]:
                text = self.tokenizer.decode(input_ids[row, self.prompt_length :].tolist(), skip_special_tokens=True)
                done[row] = max(Counter(split_sentences(text)).values(), default=0) >= self.limit
        return done


def drop_repeated_sentences(text: str) -> tuple[str, int]:
    """``text`` without word runs and without sentences that repeat an earlier sentence of their paragraph;
    and how many repeats were dropped.

    A word said three or more times in a row ("Pleural Pleural Pleural",
    "YesYesYes") is kept once and counts as one repeat. Paragraphs (lines)
    are kept apart, so an Impression may restate a Findings sentence.
    Sentences are the labeler's (:func:`split_sentences`, spaces
    normalised); a line with no repeat is kept exactly as it was.
    """
    dropped = 0
    lines = []
    for line in text.split("\n"):
        line, runs = _WORD_RUN.subn(r"\1", line)
        dropped += runs
        sentences = split_sentences(line)
        unique = list(dict.fromkeys(sentences))
        dropped += len(sentences) - len(unique)
        lines.append(" ".join(unique) if len(unique) < len(sentences) else line)
    return "\n".join(lines), dropped


def repeat_warning(dropped: int) -> str:
    """The record warning for ``dropped`` repeats (sentences said again, words said three or more times in a row)."""
    plural = "s" if dropped != 1 else ""
    return (
        f"the model repeated itself: {dropped} repeat{plural} dropped (a sentence said again in its "
        f"paragraph, or a word said three or more times in a row; generation stops once a sentence comes "
        f"{REPEAT_LIMIT} times or one token {TOKEN_RUN_LIMIT} times in a row)"
    )
