"""Generation that loops on one sentence: stop it early, drop the repeats, say so in the record.

Why: a language model fed an image unlike its training data can fall into a
loop ("Pleural effusion is present. Pleural effusion is present. ...") until
``--max-new-tokens`` runs out. The bundled demo model does it on the real CT
in ``examples/``; large models do it more rarely, but each loop costs a
whole ``max_new_tokens`` of GPU time and leaves a record no reader wants.
Two parts, one rule ("the same sentence again"):

* :class:`RepeatedSentenceStop`, a ``transformers`` stopping criterion: a
  row stops once one sentence has been completed ``limit`` times (3: a
  report may legitimately state a finding in Findings and again in
  Impression, a loop reaches three at once);
* :func:`drop_repeated_sentences`: within each paragraph of the text, a
  sentence that repeats an earlier one of the same paragraph is dropped;
  the caller records a warning with the count.
"""

from __future__ import annotations

from collections import Counter

from omnict_cli.labels.rules import split_sentences

REPEAT_LIMIT = 3
"""Completions of one sentence that stop a row (see the module docstring)."""


def sentence_end_ids(tokenizer) -> frozenset[int]:
    """Token ids whose text ends a sentence ("." "?" "!", possibly followed by spaces or newlines).

    A scan of the whole vocabulary (150k ids for Qwen2.5, about a second):
    compute it once per tokenizer.
    """
    texts = tokenizer.batch_decode([[token_id] for token_id in range(len(tokenizer))])
    return frozenset(token_id for token_id, text in enumerate(texts) if text.rstrip().endswith((".", "?", "!")))


class RepeatedSentenceStop:
    """Stopping criterion: a row is done once one of its sentences has been completed ``limit`` times.

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
        for row, token in enumerate(last):
            if token in self.ends:
                text = self.tokenizer.decode(input_ids[row, self.prompt_length:].tolist(), skip_special_tokens=True)
                done[row] = max(Counter(split_sentences(text)).values(), default=0) >= self.limit
        return done


def drop_repeated_sentences(text: str) -> tuple[str, int]:
    """``text`` without sentences that repeat an earlier sentence of their paragraph; and how many were dropped.

    Paragraphs (lines) are kept apart, so an Impression may restate a
    Findings sentence. Sentences are the labeler's (:func:`split_sentences`,
    spaces normalised); a line with no repeat is kept exactly as it was.
    """
    dropped = 0
    lines = []
    for line in text.split("\n"):
        sentences = split_sentences(line)
        unique = list(dict.fromkeys(sentences))
        dropped += len(sentences) - len(unique)
        lines.append(" ".join(unique) if len(unique) < len(sentences) else line)
    return "\n".join(lines), dropped


def repeat_warning(dropped: int) -> str:
    """The record warning for ``dropped`` repeated sentences."""
    plural = "s" if dropped != 1 else ""
    return (f"the model repeated itself: {dropped} repeated sentence{plural} dropped "
            f"(generation stops once a sentence comes {REPEAT_LIMIT} times)")
