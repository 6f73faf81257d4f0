"""VQA scoring: accuracy for closed (yes/no) and multiple-choice answers, text metrics for open ones.

A language model answers in free text ("Yes, there is a nodule.", "(B)
Pleural effusion"), so deciding whether it is right needs explicit rules.
The rules here are deliberately strict and documented in docs/metrics.md:
an answer that does not commit to exactly one choice is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from omnict_cli.errors import OmnictError
from omnict_cli.metrics.text import bleu, exact_match, meteor, normalize_answer, rouge_l, token_f1

_YES_NO = ("yes", "no")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# An explicit answer keyword: "Answer: B", "The answer is (b)", "Option B is correct". Outside
# parentheses only a capital letter counts, so "The answer is a nodule" picks no letter.
_KEYWORD_LETTER = re.compile(
    r"^\s*(?i:the\s+)?(?i:correct\s+)?(?i:answer|option|choice)\s*(?i:is\s*)?[:\-]?\s*"
    r"(?:\(([A-Za-z])\)|([A-Z])(?![A-Za-z]))"
)
# A bare letter: "B", "b", "(B) ...", "B. ...", "B) ...", "B: ..." but not "A pleural effusion".
_BARE_LETTER = re.compile(r"^\s*(?:\(([A-Za-z])\)|([A-Za-z])(?=\s*$|[.:)\],;]))")
# Options written with their letter, e.g. "A. Pleural effusion" or "(A) Pleural effusion".
_OPTION_PREFIX = re.compile(r"^\s*\(?([A-Z])[.):]\s+|^\s*\(([A-Z])\)\s*")


def _first_word(text: str) -> str:
    """First word of the SQuAD-normalised text ("" when there is none)."""
    words = normalize_answer(text).split()
    return words[0] if words else ""


def closed_answer_correct(prediction: str, reference: str) -> bool:
    """Whether a closed answer matches the reference.

    References starting with yes/no: the prediction's FIRST word (after lower-casing and
    removing punctuation) must be the same "yes" or "no" — "Yes.", "yes,
    there is ..." count as yes; "There is no ..." decides nothing and is wrong.
    Other closed references ("left", "axial"): the normalised prediction must
    equal the reference or start with it as whole words ("left, in the apex").
    """
    reference_word = _first_word(reference)
    if reference_word in _YES_NO:
        return _first_word(prediction) == reference_word
    normalized_prediction, normalized_reference = normalize_answer(prediction), normalize_answer(reference)
    if not normalized_reference:
        return False
    return normalized_prediction == normalized_reference or normalized_prediction.startswith(normalized_reference + " ")


def _option_letter_and_text(option: str, position: int) -> tuple[str, str]:
    """("B", "pleural effusion") for "B. Pleural effusion" or, at position 1, for "Pleural effusion"."""
    prefixed = _OPTION_PREFIX.match(option)
    if prefixed:
        return (prefixed.group(1) or prefixed.group(2)).upper(), normalize_answer(option[prefixed.end() :])
    return _LETTERS[position], normalize_answer(option)


def _chosen_option(answer: str, options: list[str]) -> int | None:
    """Index of the one option ``answer`` picks, by letter first, else by option text; None if unclear."""
    letters_and_texts = [_option_letter_and_text(option, i) for i, option in enumerate(options)]
    letter_match = _KEYWORD_LETTER.match(answer) or _BARE_LETTER.match(answer)
    if letter_match:
        letter = (letter_match.group(1) or letter_match.group(2)).upper()
        for index, (option_letter, _) in enumerate(letters_and_texts):
            if option_letter == letter:
                return index
    normalized = normalize_answer(answer)
    if not normalized:
        return None
    for index, (_, text) in enumerate(letters_and_texts):
        if text == normalized:
            return index
    mentioned = [
        index
        for index, (_, text) in enumerate(letters_and_texts)
        if text and re.search(rf"(?:^|\s){re.escape(text)}(?:$|\s)", normalized)
    ]
    # "pleural effusion" also mentions the option "effusion": keep only the longest mentions.
    mentioned = [
        i
        for i in mentioned
        if not any(i != j and letters_and_texts[i][1] in letters_and_texts[j][1] for j in mentioned)
    ]
    return mentioned[0] if len(mentioned) == 1 else None


def choice_correct(prediction: str, reference: str, options: list[str]) -> bool:
    """Whether a multiple-choice prediction picks the reference option.

    Options are "Pleural effusion" (lettered A, B, ... by position) or carry
    their own letter ("B. Pleural effusion"). Prediction and reference each
    resolve to one option: a leading letter ("B", "(B)", "B.", "Answer: B")
    wins; otherwise the text must equal one option or mention exactly one
    (the longest, when one option's text contains another's). A reference
    that names no option is an error; a prediction that names none is wrong.
    """
    if not options:
        raise OmnictError("a multiple-choice question has no options", hint="Give the options as a list.")
    reference_index = _chosen_option(reference, options)
    if reference_index is None:
        raise OmnictError(
            f"reference {reference!r} is neither an option letter nor an option text", hint=f"Options are {options}."
        )
    return _chosen_option(prediction, options) == reference_index


@dataclass(frozen=True)
class AccuracyScore:
    """Accuracy of closed or multiple-choice answers, with the per-row outcomes for bootstrapping."""

    n_correct: int
    n_total: int
    accuracy: float
    correct: list[bool] = field(repr=False)


@dataclass(frozen=True)
class OpenAnswerScores:
    """Text-overlap scores of open answers; token F1 / EM / ROUGE-L / METEOR are means over rows, BLEU is corpus."""

    n_total: int
    token_f1: float
    exact_match: float
    bleu1: float
    bleu2: float
    bleu3: float
    bleu4: float
    rouge_l: float
    """Mean ROUGE-L F1 (beta = 1)."""
    meteor: float
    token_f1_per_row: list[float] = field(repr=False)


@dataclass(frozen=True)
class VQAScores:
    """Scores per question kind; a kind with no rows is None."""

    closed: AccuracyScore | None
    choice: AccuracyScore | None
    open: OpenAnswerScores | None


_REQUIRED_KEYS = ("answer", "reference", "kind")


def _checked_rows(rows: list[dict], source: str | None) -> dict[str, list[dict]]:
    """Group rows by kind, raising a clear error (row number and key) for a malformed row."""
    by_kind: dict[str, list[dict]] = {"closed": [], "choice": [], "open": []}
    for number, row in enumerate(rows, start=1):
        missing = [key for key in _REQUIRED_KEYS if not isinstance(row.get(key), str)]
        if missing:
            raise OmnictError(
                f"row {number} has no text for {', '.join(missing)}",
                path=source,
                hint="Each row needs string 'answer', 'reference' and 'kind'.",
            )
        if row["kind"] not in by_kind:
            raise OmnictError(
                f"row {number} has kind {row['kind']!r}", path=source, hint="kind must be 'closed', 'choice' or 'open'."
            )
        if row["kind"] == "choice" and not row.get("options"):
            raise OmnictError(f"row {number} is a multiple-choice question without options", path=source)
        by_kind[row["kind"]].append(row)
    return by_kind


def _accuracy(outcomes: list[bool]) -> AccuracyScore | None:
    if not outcomes:
        return None
    return AccuracyScore(
        n_correct=sum(outcomes), n_total=len(outcomes), accuracy=sum(outcomes) / len(outcomes), correct=outcomes
    )


def _open_scores(rows: list[dict]) -> OpenAnswerScores | None:
    if not rows:
        return None
    predictions = [row["answer"] for row in rows]
    references = [row["reference"] for row in rows]
    per_row_f1 = [token_f1(p, r) for p, r in zip(predictions, references)]
    bleu_scores = bleu(predictions, references)
    count = len(rows)
    return OpenAnswerScores(
        n_total=count,
        token_f1=sum(per_row_f1) / count,
        exact_match=sum(exact_match(p, r) for p, r in zip(predictions, references)) / count,
        bleu1=bleu_scores["bleu1"],
        bleu2=bleu_scores["bleu2"],
        bleu3=bleu_scores["bleu3"],
        bleu4=bleu_scores["bleu4"],
        rouge_l=sum(rouge_l(p, r)["f1"] for p, r in zip(predictions, references)) / count,
        meteor=sum(meteor(p, r) for p, r in zip(predictions, references)) / count,
        token_f1_per_row=per_row_f1,
    )


def score_vqa(rows: list[dict], source: str | None = None) -> VQAScores:
    """Score VQA rows {"question", "answer" (the prediction), "reference", "kind", "options"}.

    ``kind`` is "closed", "choice" or "open"; ``source`` names the file the
    rows came from, for error messages.
    """
    by_kind = _checked_rows(rows, source)
    closed = [closed_answer_correct(row["answer"], row["reference"]) for row in by_kind["closed"]]
    choice = []
    for row in by_kind["choice"]:
        try:
            choice.append(choice_correct(row["answer"], row["reference"], list(row["options"])))
        except OmnictError as error:
            raise OmnictError(
                f"question {row.get('question', '')!r}: {error.message}", path=source, hint=error.hint
            ) from error
    return VQAScores(closed=_accuracy(closed), choice=_accuracy(choice), open=_open_scores(by_kind["open"]))
