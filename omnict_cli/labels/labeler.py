"""One entry point from report texts to the 18 CT-RATE labels: the trained classifier or the rules.

``omnict score`` and ``omnict labels predict`` both call :func:`label_reports`
so the two commands can never label the same report differently, and
:func:`explain` so ``--explain`` shows, for every positive, the sentence and
rule that support it (and, with the classifier, its probability).

Texts are whole reports as :func:`omnict_cli.labels.ctrate_io.report_text`
writes them (``"Findings: ...\\nImpression: ..."``); a text without headers
is read as findings.

Lymph nodes: ``convention`` (:data:`~omnict_cli.labels.rules.CONVENTIONS`)
says how Lymphadenopathy is read, "ctrate" (CT-RATE's labels: any affirmed
node, the default) or "clinical" (enlarged or pathological nodes only). The
rules decide that one class under either method: the bundled classifier
learnt Lymphadenopathy from a corpus with one fixed reading, so its own
column could not follow the user's choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnict_cli.labels.classes import CTRATE_ABNORMALITIES

METHODS = ("classifier", "rules")
LYMPH_NODE_COLUMN = CTRATE_ABNORMALITIES.index("Lymphadenopathy")


def _classifier(model):
    """The classifier to use: a given one, one loaded from a path, or the bundled one."""
    from omnict_cli.labels.classifier import ReportClassifier, default_classifier

    if model is None:
        return default_classifier()
    if isinstance(model, (str, Path)):
        return ReportClassifier.load(model)
    return model


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown labelling method {method!r}; use one of {', '.join(METHODS)}")


def label_reports(
    texts: list[str], method: str = "classifier", *, model=None, threshold: float = 0.5, convention: str = "ctrate"
) -> np.ndarray:
    """0/1 labels [len(texts), 18] in CT-RATE column order.

    Args:
        texts: whole report texts.
        method: "classifier" (calibrated probability >= ``threshold``) or "rules"
            (a class stated positive; hedged mentions count as 0).
        model: a ReportClassifier, a path to a saved one, or None for the bundled one.
        convention: how lymph nodes are read, "ctrate" or "clinical" (module docstring).
    """
    from omnict_cli.labels.rules import check_convention, label_report

    _check_method(method)
    check_convention(convention)
    texts = [str(text) for text in texts]
    if not texts:
        return np.zeros((0, len(CTRATE_ABNORMALITIES)), dtype=np.int64)
    rules = np.array(
        [list(label_report(text, convention=convention).vector().values()) for text in texts], dtype=np.int64
    )
    if method == "rules":
        return rules
    labels = _classifier(model).predict(texts, threshold=threshold)
    labels[:, LYMPH_NODE_COLUMN] = rules[:, LYMPH_NODE_COLUMN]
    return labels


@dataclass(frozen=True)
class PositiveLabel:
    """Why one class was labelled positive in one report."""

    label: str
    probability: float | None
    """The classifier's calibrated probability; None with the rules."""
    evidence: tuple[str, ...]
    """Rule lines: the sentence with the matched term in [[ ]] and the rule that fired."""

    def lines(self) -> list[str]:
        """Human-readable lines for ``--explain``."""
        head = self.label if self.probability is None else f"{self.label} (p = {self.probability:.2f})"
        if not self.evidence:
            return [f"{head}: no rule sentence states it; the classifier's word and character n-grams decided"]
        # a rule line reads "<class> [<section>]: <sentence> (<rule>)"; the class is already in the head
        return [f"{head} {line[len(self.label) :].strip()}" for line in self.evidence]


def _evidence_by_label(rules) -> dict[str, tuple[str, ...]]:
    """Rule explanation lines per class, one per sentence (a sentence matching two terms is shown once)."""
    positive_mentions = [mention for mention in rules.mentions if mention.state == "positive"]
    evidence: dict[str, list[str]] = {}
    seen = set()
    # RuleResult.explain() writes one line per positive mention, in mention order
    for mention, line in zip(positive_mentions, rules.explain()):
        if (mention.label, mention.sentence) not in seen:
            seen.add((mention.label, mention.sentence))
            evidence.setdefault(mention.label, []).append(line)
    return {label: tuple(lines) for label, lines in evidence.items()}


def explain(
    texts: list[str], method: str = "classifier", *, model=None, threshold: float = 0.5, convention: str = "ctrate"
) -> list[list[PositiveLabel]]:
    """For each report, its positive classes with their evidence (see :class:`PositiveLabel`).

    Lymphadenopathy is explained by the rules' sentence under ``convention``
    with either method, as :func:`label_reports` decides it.
    """
    from omnict_cli.labels.rules import check_convention, label_report

    _check_method(method)
    check_convention(convention)
    texts = [str(text) for text in texts]
    probabilities = _classifier(model).predict_proba(texts) if method == "classifier" and texts else None
    explained = []
    for row, text in enumerate(texts):
        rules = label_report(text, convention=convention)
        evidence_by_label = _evidence_by_label(rules)
        positives = []
        for column, label in enumerate(CTRATE_ABNORMALITIES):
            evidence = evidence_by_label.get(label, ())
            if probabilities is not None and column != LYMPH_NODE_COLUMN:
                if probabilities[row, column] >= threshold:
                    positives.append(PositiveLabel(label, float(probabilities[row, column]), evidence))
            elif rules.state(label) == "positive":
                positives.append(PositiveLabel(label, None, evidence))
        explained.append(positives)
    return explained


__all__ = ["METHODS", "label_reports", "explain", "PositiveLabel"]
