"""Lexical text metrics: BLEU-1..4, ROUGE-L, METEOR, SQuAD token F1 and exact match.

Generated reports and open VQA answers are compared with references using
the standard definitions, re-implemented here without nltk / rouge-score /
sacrebleu so results do not depend on which of those a user has installed.
Every choice where those packages differ is spelled out in docs/metrics.md;
the short version:

* BLEU (Papineni et al. 2002): clipped n-gram precisions, closest-reference
  brevity penalty, cumulative uniform weights (BLEU-N = geometric mean of
  p_1..p_N). Corpus level pools counts and is unsmoothed; sentence level
  defaults to NLTK's ``method1`` smoothing (epsilon 0.1).
* ROUGE-L (Lin 2004): LCS precision and recall; ``f1`` is the harmonic mean
  (rouge-score / HF evaluate), ``f_beta`` weights recall by beta = 1.2
  (pycocoevalcap, used by most report-generation papers).
* METEOR (Banerjee & Lavie 2005) with NLTK's parameters alpha 0.9, beta 3,
  gamma 0.5; exact and Porter-stem matches; no WordNet synonyms.
* token F1 / exact match: SQuAD v2 evaluation script normalisation.
"""

from __future__ import annotations

import functools
import heapq
import math
import re
import string
from collections import Counter
from itertools import pairwise

from omnict_cli.errors import OmnictError

_TOKEN_PATTERN = re.compile(r"\d+(?:\.\d+)+|\w+|[^\w\s]")
BLEU_SMOOTHING_EPSILON = 0.1
"""NLTK's ``SmoothingFunction().method1`` epsilon for zero n-gram matches."""


def tokenize(text: str) -> list[str]:
    """Lower-case ``text`` and split it into words, decimal numbers and single punctuation marks.

    "Right-sided 3.5 mm nodule." -> ["right", "-", "sided", "3.5", "mm", "nodule", "."].
    Punctuation marks are tokens (as with NLTK's word_tokenize), so a missing
    full stop costs a little, and decimals stay whole so sizes compare as one token.
    """
    return _TOKEN_PATTERN.findall(text.lower())


# --------------------------------------------------------------------------- BLEU


def _ngrams(tokens: list[str], n: int) -> Counter:
    """Counts of the n-grams (as tuples) in ``tokens``."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _clipped_ngram_matches(hypothesis: list[str], references: list[list[str]], n: int) -> tuple[int, int]:
    """(clipped matches, hypothesis n-gram count) for one sentence, as in Papineni et al. Sec. 2.1."""
    hypothesis_counts = _ngrams(hypothesis, n)
    max_reference_counts: Counter = Counter()
    for reference in references:
        max_reference_counts |= _ngrams(reference, n)
    matches = sum(min(count, max_reference_counts[gram]) for gram, count in hypothesis_counts.items())
    return matches, sum(hypothesis_counts.values())


def _closest_reference_length(hypothesis_length: int, references: list[list[str]]) -> int:
    """Reference length closest to the hypothesis length; ties go to the shorter (NLTK, sacrebleu)."""
    return min((len(ref) for ref in references), key=lambda length: (abs(length - hypothesis_length), length))


def _brevity_penalty(hypothesis_length: int, reference_length: int) -> float:
    """1 when the hypothesis is longer than the reference, else exp(1 - r / c); 0 for an empty hypothesis."""
    if hypothesis_length == 0:
        return 0.0
    if hypothesis_length > reference_length:
        return 1.0
    return math.exp(1.0 - reference_length / hypothesis_length)


def _smoothed_precisions(matches: list[int], totals: list[int], smoothing: str) -> list[float]:
    """Modified precisions p_1..p_N with the chosen smoothing (see :func:`sentence_bleu`)."""
    precisions = []
    for order, (matched, total) in enumerate(zip(matches, totals), start=1):
        total = max(1, total)  # a hypothesis shorter than n has p_n = 0/1, as in NLTK
        if smoothing == "method2" and order > 1:
            precisions.append((matched + 1) / (total + 1))
        elif smoothing == "method1" and matched == 0:
            precisions.append(BLEU_SMOOTHING_EPSILON / total)
        else:
            precisions.append(matched / total)
    return precisions


def _bleu_from_counts(
    matches: list[int], totals: list[int], hyp_length: int, ref_length: int, smoothing: str
) -> dict[str, float]:
    """Cumulative BLEU-1..N from pooled n-gram counts and lengths."""
    if smoothing not in ("none", "method1", "method2"):
        raise OmnictError(f"unknown BLEU smoothing {smoothing!r}", hint="Use 'none', 'method1' or 'method2'.")
    penalty = _brevity_penalty(hyp_length, ref_length)
    precisions = _smoothed_precisions(matches, totals, smoothing)
    scores = {}
    for n in range(1, len(matches) + 1):
        if penalty == 0.0 or matches[0] == 0 or min(precisions[:n]) == 0.0:
            scores[f"bleu{n}"] = 0.0
        else:
            scores[f"bleu{n}"] = penalty * math.exp(sum(math.log(p) for p in precisions[:n]) / n)
    return scores


def corpus_bleu_tokens(
    hypotheses: list[list[str]], references: list[list[list[str]]], max_n: int = 4, smoothing: str = "none"
) -> dict[str, float]:
    """Corpus BLEU-1..max_n over pre-tokenised text: counts and lengths pooled over all sentences.

    ``references[i]`` is the list of reference token lists for ``hypotheses[i]``.
    """
    _check_pairs(hypotheses, references)
    matches, totals = [0] * max_n, [0] * max_n
    hyp_length = ref_length = 0
    for hypothesis, refs in zip(hypotheses, references):
        if not refs:
            raise OmnictError("a hypothesis has no reference", hint="Give at least one reference per hypothesis.")
        for n in range(1, max_n + 1):
            matched, total = _clipped_ngram_matches(hypothesis, refs, n)
            matches[n - 1] += matched
            totals[n - 1] += total
        hyp_length += len(hypothesis)
        ref_length += _closest_reference_length(len(hypothesis), refs)
    return _bleu_from_counts(matches, totals, hyp_length, ref_length, smoothing)


def bleu(
    hypotheses: list[str], references: list[str] | list[list[str]], max_n: int = 4, smoothing: str = "none"
) -> dict[str, float]:
    """Corpus-level BLEU-1..max_n ({"bleu1": ..., "bleu4": ...}) of tokenised strings.

    ``references`` holds one reference string per hypothesis or a list of
    references per hypothesis. Unsmoothed by default, like Papineni et al.,
    sacrebleu and pycocoevalcap: an order with no match anywhere gives 0.
    """
    hyp_tokens = [tokenize(h) for h in hypotheses]
    ref_tokens = [[tokenize(r) for r in _as_reference_list(refs)] for refs in references]
    return corpus_bleu_tokens(hyp_tokens, ref_tokens, max_n=max_n, smoothing=smoothing)


def sentence_bleu(
    hypothesis: str, references: str | list[str], max_n: int = 4, smoothing: str = "method1"
) -> dict[str, float]:
    """BLEU-1..max_n of one sentence, smoothed by default.

    Smoothing (Chen & Cherry 2014 numbering, as in NLTK's SmoothingFunction):
    ``"method1"`` replaces a zero count by epsilon 0.1, ``"method2"`` adds 1 to
    matches and totals of orders >= 2 (Lin & Och 2004), ``"none"`` leaves zeros.
    As in NLTK, no unigram match at all gives 0 whatever the smoothing.
    """
    return corpus_bleu_tokens(
        [tokenize(hypothesis)],
        [[tokenize(r) for r in _as_reference_list(references)]],
        max_n=max_n,
        smoothing=smoothing,
    )


def _as_reference_list(references: str | list[str]) -> list[str]:
    """One reference string or a list of them -> a list."""
    return [references] if isinstance(references, str) else list(references)


def _check_pairs(hypotheses: list, references: list) -> None:
    """Hypotheses and references must pair up one to one."""
    if len(hypotheses) != len(references):
        raise OmnictError(
            f"{len(hypotheses)} hypotheses but {len(references)} references",
            hint="Each generated text needs exactly one reference entry.",
        )


# --------------------------------------------------------------------------- ROUGE-L


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists.

    Bit-parallel form of the LCS dynamic programme (Allison & Dix 1986, in
    Hyyrö's 2004 formulation; each 0 bit of ``row`` is one step of the LCS):
    one Python big-integer update per token of ``b`` instead of len(a) cell
    updates, which keeps 300-word reports fast.
    """
    if not a or not b:
        return 0
    positions: dict[str, int] = {}
    for i, token in enumerate(a):
        positions[token] = positions.get(token, 0) | (1 << i)
    all_ones = (1 << len(a)) - 1
    row = all_ones
    for token in b:
        matched = row & positions.get(token, 0)
        row = ((row + matched) | (row - matched)) & all_ones
    return len(a) - row.bit_count()


def rouge_l(hypothesis: str, reference: str, beta: float = 1.2) -> dict[str, float]:
    """ROUGE-L of one pair: {"precision", "recall", "f1", "f_beta"} from the token LCS.

    precision = LCS / hypothesis tokens, recall = LCS / reference tokens,
    f1 = 2PR / (P + R) (what rouge-score and HF evaluate call rougeL fmeasure),
    f_beta = (1 + beta^2) P R / (R + beta^2 P) (pycocoevalcap, beta = 1.2).
    Any empty side scores 0.
    """
    hyp_tokens, ref_tokens = tokenize(hypothesis), tokenize(reference)
    common = lcs_length(hyp_tokens, ref_tokens)
    if common == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "f_beta": 0.0}
    precision = common / len(hyp_tokens)
    recall = common / len(ref_tokens)
    return {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall),
        "f_beta": (1 + beta**2) * precision * recall / (recall + beta**2 * precision),
    }


def rouge_l_corpus(hypotheses: list[str], references: list[str], measure: str = "f1", beta: float = 1.2) -> float:
    """Mean over pairs of one ROUGE-L measure ("precision", "recall", "f1" or "f_beta")."""
    _check_pairs(hypotheses, references)
    if measure not in ("precision", "recall", "f1", "f_beta"):
        raise OmnictError(f"unknown ROUGE-L measure {measure!r}", hint="Use precision, recall, f1 or f_beta.")
    if not hypotheses:
        return 0.0
    return sum(rouge_l(h, r, beta)[measure] for h, r in zip(hypotheses, references)) / len(hypotheses)


# --------------------------------------------------------------------------- METEOR


def meteor(
    hypothesis: str, reference: str | list[str], alpha: float = 0.9, beta: float = 3.0, gamma: float = 0.5
) -> float:
    """METEOR of one hypothesis; with several references, the best one counts (as in NLTK).

    Unigrams match exactly or by Porter stem; among the alignments with the
    most matches, one with few chunks is chosen (longest runs first).
    score = Fmean * (1 - gamma * (chunks / matches)^beta), with
    Fmean = P R / (alpha P + (1 - alpha) R). Identical texts therefore score
    a little below 1 (one chunk still costs gamma / matches^beta).
    """
    hyp_tokens = tokenize(hypothesis)
    return max(_single_meteor(hyp_tokens, tokenize(ref), alpha, beta, gamma) for ref in _as_reference_list(reference))


def meteor_corpus(hypotheses: list[str], references: list[str] | list[list[str]]) -> float:
    """Mean sentence METEOR over pairs (how NLTK-based evaluation scripts report it)."""
    _check_pairs(hypotheses, references)
    if not hypotheses:
        return 0.0
    return sum(meteor(h, r) for h, r in zip(hypotheses, references)) / len(hypotheses)


def _single_meteor(hyp: list[str], ref: list[str], alpha: float, beta: float, gamma: float) -> float:
    """METEOR of one tokenised pair."""
    alignment = align_unigrams(hyp, ref)
    if not alignment:
        return 0.0
    precision, recall = len(alignment) / len(hyp), len(alignment) / len(ref)
    fmean = precision * recall / (alpha * precision + (1 - alpha) * recall)
    penalty = gamma * (count_chunks(alignment) / len(alignment)) ** beta
    return fmean * (1 - penalty)


def count_chunks(alignment: list[tuple[int, int]]) -> int:
    """Number of runs of matches adjacent in both texts, in hypothesis order."""
    ordered = sorted(alignment)
    breaks = sum(1 for (h0, r0), (h1, r1) in pairwise(ordered) if not (h1 == h0 + 1 and r1 == r0 + 1))
    return 1 + breaks if ordered else 0


def align_unigrams(hyp: list[str], ref: list[str]) -> list[tuple[int, int]]:
    """One-to-one (hyp index, ref index) matches by equal Porter stem, few chunks.

    Every diagonal run of matchable pairs goes into a heap; the longest run
    (then the one with most exact matches, then the most parallel) is taken
    first, and runs that lost a word to it are split and put back. This
    matches as many words as possible; the chunk count is the minimum in all
    but about 1 % of adversarial random cases (then one chunk more), where the
    official METEOR runs a beam search and NLTK a plain right-to-left greedy.
    """
    hyp_stems, ref_stems = [porter_stem(t) for t in hyp], [porter_stem(t) for t in ref]
    heap = [_run_key(run, hyp, ref) for run in _diagonal_runs(hyp_stems, ref_stems)]
    heapq.heapify(heap)
    used_hyp, used_ref, alignment = set(), set(), []
    while heap:
        *_, run = heapq.heappop(heap)
        free = [(i, j) for i, j in run if i not in used_hyp and j not in used_ref]
        if len(free) == len(run):
            alignment.extend(run)
            used_hyp.update(i for i, _ in run)
            used_ref.update(j for _, j in run)
            continue
        for piece in _contiguous_pieces(free):
            heapq.heappush(heap, _run_key(piece, hyp, ref))
    return sorted(alignment)


def _diagonal_runs(hyp_stems: list[str], ref_stems: list[str]) -> list[list[tuple[int, int]]]:
    """Maximal runs of pairs (i + k, j + k) whose stems are equal."""
    ref_positions: dict[str, list[int]] = {}
    for j, stem in enumerate(ref_stems):
        ref_positions.setdefault(stem, []).append(j)
    runs = []
    for i, stem in enumerate(hyp_stems):
        for j in ref_positions.get(stem, ()):
            if i > 0 and j > 0 and hyp_stems[i - 1] == ref_stems[j - 1]:
                continue  # (i, j) continues the run that starts at (i - 1, j - 1)
            length = 1
            while (
                i + length < len(hyp_stems)
                and j + length < len(ref_stems)
                and hyp_stems[i + length] == ref_stems[j + length]
            ):
                length += 1
            runs.append([(i + k, j + k) for k in range(length)])
    return runs


def _contiguous_pieces(pairs: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Split the still-free pairs of a diagonal run where a pair was taken."""
    pieces: list[list[tuple[int, int]]] = []
    for pair in pairs:
        if pieces and pair[0] == pieces[-1][-1][0] + 1:
            pieces[-1].append(pair)
        else:
            pieces.append([pair])
    return pieces


def _run_key(run: list[tuple[int, int]], hyp: list[str], ref: list[str]) -> tuple:
    """Heap order: longer runs, more exact matches, smaller position shift, earlier start."""
    exact = sum(1 for i, j in run if hyp[i] == ref[j])
    i, j = run[0]
    return (-len(run), -exact, abs(i - j), i, j, run)


# --------------------------------------------------------------------------- Porter stemmer


_STEP2_RULES = (
    ("ational", "ate"),
    ("tional", "tion"),
    ("enci", "ence"),
    ("anci", "ance"),
    ("izer", "ize"),
    ("abli", "able"),
    ("alli", "al"),
    ("entli", "ent"),
    ("eli", "e"),
    ("ousli", "ous"),
    ("ization", "ize"),
    ("ation", "ate"),
    ("ator", "ate"),
    ("alism", "al"),
    ("iveness", "ive"),
    ("fulness", "ful"),
    ("ousness", "ous"),
    ("aliti", "al"),
    ("iviti", "ive"),
    ("biliti", "ble"),
)
_STEP3_RULES = (
    ("icate", "ic"),
    ("ative", ""),
    ("alize", "al"),
    ("iciti", "ic"),
    ("ical", "ic"),
    ("ful", ""),
    ("ness", ""),
)
_STEP4_SUFFIXES = (
    "al",
    "ance",
    "ence",
    "er",
    "ic",
    "able",
    "ible",
    "ant",
    "ement",
    "ment",
    "ent",
    "ion",
    "ou",
    "ism",
    "ate",
    "iti",
    "ous",
    "ive",
    "ize",
)


@functools.lru_cache(maxsize=65536)
def porter_stem(word: str) -> str:
    """Stem an English word with the original Porter (1980) algorithm.

    "effusions" and "effusion" both give "effus", so METEOR can match them.
    Follows the 1980 paper's rules (NLTK's default mode adds a few
    extensions, so rare words may stem differently). Words of one or two
    letters and non-alphabetic tokens are returned unchanged.
    """
    if len(word) <= 2 or not word.isalpha():
        return word
    word = _step1a(word.lower())
    word = _step1b(word)
    if word.endswith("y") and _has_vowel(word[:-1]):
        word = word[:-1] + "i"
    word = _replace_longest_suffix(word, _STEP2_RULES, lambda stem: _measure(stem) > 0)
    word = _replace_longest_suffix(word, _STEP3_RULES, lambda stem: _measure(stem) > 0)
    word = _step4(word)
    return _step5(word)


def _is_consonant(word: str, i: int) -> bool:
    """Porter's consonant: not a vowel, and 'y' only when it follows a vowel (or starts the word)."""
    if word[i] in "aeiou":
        return False
    if word[i] == "y":
        return i == 0 or not _is_consonant(word, i - 1)
    return True


def _measure(stem: str) -> int:
    """Porter's m: the number of vowel-consonant sequences in [C](VC)^m[V]."""
    pattern = "".join("c" if _is_consonant(stem, i) else "v" for i in range(len(stem)))
    return len(re.findall("v+c+", pattern))


def _has_vowel(stem: str) -> bool:
    return any(not _is_consonant(stem, i) for i in range(len(stem)))


def _ends_double_consonant(word: str) -> bool:
    return len(word) >= 2 and word[-1] == word[-2] and _is_consonant(word, len(word) - 1)


def _ends_cvc(word: str) -> bool:
    """Porter's *o: consonant-vowel-consonant ending, the last not w, x or y ("hop", not "snow")."""
    return (
        len(word) >= 3
        and _is_consonant(word, len(word) - 3)
        and not _is_consonant(word, len(word) - 2)
        and _is_consonant(word, len(word) - 1)
        and word[-1] not in "wxy"
    )


def _replace_longest_suffix(word: str, rules, condition) -> str:
    """Apply the rule with the longest matching suffix if its stem meets ``condition``; else nothing."""
    matching = [(suffix, replacement) for suffix, replacement in rules if word.endswith(suffix)]
    if not matching:
        return word
    suffix, replacement = max(matching, key=lambda rule: len(rule[0]))
    stem = word[: -len(suffix)]
    return stem + replacement if condition(stem) else word


def _step1a(word: str) -> str:
    for suffix, replacement in (("sses", "ss"), ("ies", "i"), ("ss", "ss"), ("s", "")):
        if word.endswith(suffix):
            return word[: -len(suffix)] + replacement
    return word


def _step1b(word: str) -> str:
    if word.endswith("eed"):
        return word[:-1] if _measure(word[:-3]) > 0 else word
    for suffix in ("ed", "ing"):
        if word.endswith(suffix) and _has_vowel(word[: -len(suffix)]):
            return _tidy_after_1b(word[: -len(suffix)])
    return word


def _tidy_after_1b(stem: str) -> str:
    """Restore an 'e' or undouble a consonant after removing -ed / -ing."""
    if stem.endswith(("at", "bl", "iz")):
        return stem + "e"
    if _ends_double_consonant(stem) and stem[-1] not in "lsz":
        return stem[:-1]
    if _measure(stem) == 1 and _ends_cvc(stem):
        return stem + "e"
    return stem


def _step4(word: str) -> str:
    def condition(stem: str, suffix: str) -> bool:
        return _measure(stem) > 1 and (suffix != "ion" or stem.endswith(("s", "t")))

    matching = [suffix for suffix in _STEP4_SUFFIXES if word.endswith(suffix)]
    if not matching:
        return word
    suffix = max(matching, key=len)
    stem = word[: -len(suffix)]
    return stem if condition(stem, suffix) else word


def _step5(word: str) -> str:
    if word.endswith("e"):
        stem = word[:-1]
        if _measure(stem) > 1 or (_measure(stem) == 1 and not _ends_cvc(stem)):
            word = stem
    if word.endswith("ll") and _measure(word) > 1:
        word = word[:-1]
    return word


# --------------------------------------------------------------------------- SQuAD token F1


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, delete punctuation, drop a/an/the, squeeze spaces.

    Punctuation is deleted, not replaced by a space ("ground-glass" ->
    "groundglass", "3.5" -> "35"), exactly as the SQuAD v2 evaluation script does.
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, ground_truth: str) -> float:
    """SQuAD token F1: harmonic mean of bag-of-token precision and recall after normalisation.

    When either side normalises to nothing, the score is 1.0 if both do and 0.0 otherwise.
    """
    pred_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(ground_truth).split()
    if not pred_tokens or not truth_tokens:
        return float(pred_tokens == truth_tokens)
    shared = sum((Counter(pred_tokens) & Counter(truth_tokens)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(pred_tokens), shared / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, ground_truth: str) -> bool:
    """SQuAD exact match: the normalised strings are equal."""
    return normalize_answer(prediction) == normalize_answer(ground_truth)
