"""Scores for generated reports and VQA answers, with the paper's definitions.

* :mod:`.classification` — per-class precision / recall / F1 of the 18 CT-RATE labels (Table 16);
* :mod:`.text` — BLEU-1..4, ROUGE-L, METEOR, SQuAD token F1 and exact match;
* :mod:`.vqa` — accuracy of closed and multiple-choice answers, text scores of open ones;
* :mod:`.bootstrap` — percentile bootstrap confidence intervals over studies;
* :mod:`.bertscore` — BERTScore from a local safetensors encoder (imports torch only when called).

Exact definitions and how they differ from common packages: docs/metrics.md.
"""

from omnict_cli.metrics.bertscore import bertscore
from omnict_cli.metrics.bootstrap import accuracy_ci, bootstrap_ci, macro_f1_ci
from omnict_cli.metrics.classification import ClassificationReport, ClassScores, classification_report
from omnict_cli.metrics.text import (
    bleu,
    exact_match,
    meteor,
    meteor_corpus,
    rouge_l,
    rouge_l_corpus,
    sentence_bleu,
    token_f1,
    tokenize,
)
from omnict_cli.metrics.vqa import (
    AccuracyScore,
    OpenAnswerScores,
    VQAScores,
    choice_correct,
    closed_answer_correct,
    normalize_answer,
    score_vqa,
)

__all__ = [
    "AccuracyScore",
    "ClassScores",
    "ClassificationReport",
    "OpenAnswerScores",
    "VQAScores",
    "accuracy_ci",
    "bertscore",
    "bleu",
    "bootstrap_ci",
    "choice_correct",
    "classification_report",
    "closed_answer_correct",
    "exact_match",
    "macro_f1_ci",
    "meteor",
    "meteor_corpus",
    "normalize_answer",
    "rouge_l",
    "rouge_l_corpus",
    "score_vqa",
    "sentence_bleu",
    "token_f1",
    "tokenize",
]
