"""Text metrics computed by ``pycocoevalcap`` itself: BLEU-1..4, ROUGE-L, CIDEr-D and METEOR.

The field reports report-generation scores with the COCO caption evaluation
package (``pip install pycocoevalcap==1.2``, omnict's ``[eval]`` extra), so a
number that is to be put next to published ones must come from that code,
not from a re-implementation. This module only feeds it and collects what it
returns; it changes no formula.

How pycocoevalcap 1.2 reads its input (from its sources): every scorer takes
``{id: [text]}`` dictionaries, one hypothesis and one or more references per
id; BLEU, ROUGE-L and CIDEr split the texts at spaces (``str.split``; ROUGE-L
at single spaces), so the caller decides the tokenisation; METEOR hands the
texts to ``meteor-1.5.jar`` (``-l en -norm``), which needs a Java runtime.
``Cider`` is the CIDEr-D variant (clipped counts, Gaussian length penalty,
x10). Its IDF comes from the references of the scored set, so a study's
CIDEr depends on the other studies scored with it.

Per-study scores come back too: they are what the bootstrap resamples and
what ``omnict score --per-study`` writes. For corpus BLEU the bootstrap needs
each study's n-gram counts, which pycocoevalcap's own ``BleuScorer`` cooks
(:func:`bleu_counts`); the corpus formula is then applied to resampled sums
(:func:`bleu_from_counts`), and applied to all studies once it equals
pycocoevalcap's corpus BLEU (a test checks this).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from dataclasses import dataclass, field

import numpy as np

from omnict_cli.errors import OmnictError

BLEU_ORDERS = 4
INSTALL_HINT = 'pip install "omnict[eval]" (or pip install pycocoevalcap==1.2)'
BLEU_TINY, BLEU_SMALL = 1e-15, 1e-9
"""pycocoevalcap's BleuScorer guards against 0/0 with these (``bleu_scorer.compute_score``)."""


class CocoEvalUnavailable(OmnictError):
    """pycocoevalcap is not installed."""


def coco_available() -> bool:
    """Whether pycocoevalcap can be imported (its package is empty: importing it loads no scorer)."""
    try:
        import pycocoevalcap  # noqa: F401
    except ImportError:
        return False
    return True


def java_missing_reason() -> str | None:
    """Why METEOR cannot run here (no ``java`` on PATH, or one that does not start), or None when it can."""
    java = shutil.which("java")
    if java is None:
        return "no Java runtime on PATH (METEOR runs meteor-1.5.jar)"
    try:
        subprocess.run([java, "-version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        return f"the Java runtime does not start ({error})"
    return None


def _require_coco() -> None:
    if not coco_available():
        raise CocoEvalUnavailable("pycocoevalcap is not installed", hint=INSTALL_HINT)


@dataclass
class CocoTextScores:
    """Corpus scores and per-study scores, in the order the pairs were given."""

    corpus: dict[str, float]
    """bleu1..bleu4, bleu_mean, rouge_l, cider_d and (with Java) meteor."""
    per_study: dict[str, np.ndarray]
    """The same names, one score per study (BLEU: pycocoevalcap's per-sentence BLEU)."""
    bleu_counts: np.ndarray | None = None
    """[studies, 2 + 2 * 4] n-gram counts for the BLEU bootstrap (see :func:`bleu_counts`)."""
    notes: list[str] = field(default_factory=list)
    """One line per metric left out, and why (METEOR without Java)."""


def _as_dicts(hypotheses: list[str], references: list[str]) -> tuple[dict, dict]:
    if len(hypotheses) != len(references):
        raise OmnictError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise OmnictError("no texts to score")
    # the ids are positions: pycocoevalcap iterates dict keys in insertion order, so scores come back in order
    return {i: [text] for i, text in enumerate(references)}, {i: [text] for i, text in enumerate(hypotheses)}


def bleu_counts(hypotheses: list[str], references: list[str]) -> np.ndarray:
    """Per study: test length, reference length, then guessed and correct n-grams of orders 1..4.

    Cooked by pycocoevalcap's ``BleuScorer`` (one reference per study, so the
    "closest" reference length is that reference's length).
    """
    _require_coco()
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer

    rows = []
    for hypothesis, reference in zip(hypotheses, references):
        scorer = BleuScorer(n=BLEU_ORDERS)
        scorer += (hypothesis, [reference])
        cooked = scorer.ctest[0]
        (reference_length,) = scorer.crefs[0][0]
        rows.append([cooked["testlen"], reference_length, *cooked["guess"], *cooked["correct"]])
    return np.array(rows, dtype=np.float64)


def bleu_from_counts(totals: np.ndarray) -> np.ndarray:
    """Corpus BLEU-1..4 from summed :func:`bleu_counts` rows ([..., 10] -> [..., 4]), as BleuScorer combines them."""
    totals = np.asarray(totals, dtype=np.float64)
    test_length, reference_length = totals[..., 0], totals[..., 1]
    guess, correct = totals[..., 2 : 2 + BLEU_ORDERS], totals[..., 2 + BLEU_ORDERS :]
    log_precision = np.cumsum(np.log((correct + BLEU_TINY) / (guess + BLEU_SMALL)), axis=-1)
    orders = np.arange(1, BLEU_ORDERS + 1)
    scores = np.exp(log_precision / orders)
    ratio = (test_length + BLEU_TINY) / (reference_length + BLEU_SMALL)
    penalty = np.where(ratio < 1, np.exp(1 - 1 / np.maximum(ratio, BLEU_TINY)), 1.0)
    return scores * penalty[..., None]


def coco_scores(
    hypotheses: list[str], references: list[str], *, meteor: bool = True, cider: bool = True
) -> CocoTextScores:
    """Score pre-tokenised texts (tokens joined by single spaces) with pycocoevalcap's scorers.

    ``meteor=False`` skips METEOR; without a working Java runtime it is
    skipped anyway, with a note saying why. Raises :class:`CocoEvalUnavailable`
    when pycocoevalcap is not installed.
    """
    _require_coco()
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    references_by_id, hypotheses_by_id = _as_dicts(hypotheses, references)
    corpus, per_study = {}, {}
    bleu, bleu_per_sentence = Bleu(BLEU_ORDERS).compute_score(references_by_id, hypotheses_by_id, verbose=0)
    for order in range(BLEU_ORDERS):
        corpus[f"bleu{order + 1}"] = float(bleu[order])
        per_study[f"bleu{order + 1}"] = np.asarray(bleu_per_sentence[order], dtype=np.float64)
    corpus["bleu_mean"] = float(np.mean(bleu))
    per_study["bleu_mean"] = np.mean([per_study[f"bleu{order + 1}"] for order in range(BLEU_ORDERS)], axis=0)
    rouge, rouge_per_study = Rouge().compute_score(references_by_id, hypotheses_by_id)
    corpus["rouge_l"], per_study["rouge_l"] = float(rouge), np.asarray(rouge_per_study, dtype=np.float64)
    if cider:
        cider_score, cider_per_study = Cider().compute_score(references_by_id, hypotheses_by_id)
        corpus["cider_d"], per_study["cider_d"] = float(cider_score), np.asarray(cider_per_study, dtype=np.float64)
    notes = []
    if meteor:
        reason = java_missing_reason()
        if reason is None:
            try:
                corpus["meteor"], per_study["meteor"] = _meteor(references_by_id, hypotheses_by_id)
            except (OSError, ValueError) as error:  # the Java process died or answered garbage
                reason = f"meteor-1.5.jar stopped without a score ({error})"
        if reason is not None:
            notes.append(f"METEOR skipped: {reason}")
    return CocoTextScores(corpus, per_study, bleu_counts(hypotheses, references), notes)


def _meteor(references_by_id: dict, hypotheses_by_id: dict) -> tuple[float, np.ndarray]:
    """pycocoevalcap's METEOR (meteor-1.5.jar in a Java subprocess), the subprocess closed afterwards."""
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    try:
        score, per_study = scorer.compute_score(references_by_id, hypotheses_by_id)
    finally:
        # compute_score keeps its lock when the Java process fails mid-way, and Meteor.__del__ waits for
        # that lock: free it, and close the process here rather than at garbage collection
        if scorer.lock.locked():
            scorer.lock.release()
        scorer.meteor_p.kill()
        scorer.meteor_p.wait()
        with contextlib.suppress(OSError):
            scorer.meteor_p.stdin.close()
    return float(score), np.asarray(per_study, dtype=np.float64)


def cider_d(hypotheses: list[str], references: list[str]) -> tuple[float, np.ndarray]:
    """CIDEr-D (corpus mean, per study) of pre-tokenised texts, by pycocoevalcap's ``Cider``."""
    _require_coco()
    from pycocoevalcap.cider.cider import Cider

    references_by_id, hypotheses_by_id = _as_dicts(hypotheses, references)
    score, per_study = Cider().compute_score(references_by_id, hypotheses_by_id)
    return float(score), np.asarray(per_study, dtype=np.float64)


__all__ = [
    "CocoEvalUnavailable",
    "CocoTextScores",
    "bleu_counts",
    "bleu_from_counts",
    "cider_d",
    "coco_available",
    "coco_scores",
    "java_missing_reason",
]
