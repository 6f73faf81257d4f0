"""Score files of generated reports or VQA answers against reference files, the CT-RATE / OmniCT way.

This is the library behind ``omnict score``. It stands apart from
``omnict_cli.metrics`` on purpose: the metrics are pure functions of label
matrices and strings, while this module works on *files*: it reads an omnict
run's JSONL (or a CT-RATE CSV) and the references, joins them study by
study, runs a labeler over the report texts, and only then calls the
metrics. Two modes, chosen from the predictions file:

* **Reports** (``omnict report`` JSONL records, or a CT-RATE reports CSV):
  both sides are labelled with the 18 CT-RATE classes (classifier or rules;
  the references may bring their own label CSV), then per-class precision /
  recall / F1 with macro and micro averages (paper Table 16), a bootstrap
  95% interval of macro F1, and text scores of the report texts (BLEU-1..4,
  ROUGE-L, METEOR, BERTScore with a local encoder). Texts are the findings
  and impression together (``"Findings: ...\\nImpression: ..."``).
* **VQA** (records with ``answer``, e.g. from ``omnict ask``): closed and
  multiple-choice accuracy with bootstrap intervals, open-answer token F1,
  BLEU and ROUGE-L.

**Join rule.** A study name is compared by its *join key*
(:func:`omnict_cli.study_ids.join_key`, the rule ``report`` names studies
by): the part after the last ``/`` (or ``\\``) with an image suffix
(``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, ``.dcm``, ``.png``, ...)
removed, case kept. So ``case_0001``, ``case_0001.nii.gz`` and
``chest/volumes/case_0001.nii.gz`` are one study. The scored set is the
studies that have a reference. Several predictions may share a key (the
same scan as ``ct.nii.gz`` and ``ct.nrrd``): that only matters when a
reference has that key, and then the prediction whose name *is* the
reference's (equal, or ending in ``/`` + the reference name) is taken; if
none or several are, that one reference is left out of the scores and
listed as ambiguous, naming the candidates. Two reference names with one key
are an error (the references file itself is ambiguous). VQA rows are joined
by (join key, question text without image / organ tokens, lower-cased,
spaces collapsed, and the k-th time that question is asked of that study),
so a question asked twice of one study pairs up in file order.

**Missing studies are never dropped silently.** References without any
prediction and predictions without a reference are counted and listed (the
first few names) and left out of the scores. A prediction that exists but
*failed* (``"status": "error"``) or is empty (no findings and no impression,
or an empty answer) stays in: it is scored as an empty report, i.e. all 18
classes negative and empty text (an empty answer, i.e. wrong, in VQA),
because the tool was asked about that study and said nothing. Both counts
(failed and empty) are reported.

**Classes with nothing to score.** A class with no reference positive and no
prediction among the scored studies has precision / recall / F1 NaN ("not
defined") and is left out of the macro means (see
``omnict_cli.metrics.classification``); ``to_dict`` writes such values as
JSON null.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from omnict_cli.errors import OmnictError
from omnict_cli.labels.classes import CTRATE_ABNORMALITIES
from omnict_cli.prompt_format import CHAT_TOKEN
from omnict_cli.study_ids import join_key

PROTOCOLS = ("omnict", "vlm3d")
"""Report scoring protocols: omnict's own (this module) and the VLM3D challenge's."""
NAMES_SHOWN = 5
"""How many missing names a summary line lists before saying "and N more"."""


class ScoringError(OmnictError):
    """Predictions and references cannot be scored together."""


# --------------------------------------------------------------------------
# Joining predictions to references
# --------------------------------------------------------------------------


def study_key(name: str) -> str:
    """The name a study is joined by: :func:`omnict_cli.study_ids.join_key` (see the module docstring)."""
    return join_key(name)


@dataclass
class StudyJoin:
    """Which predictions and references belong together, and which have no partner."""

    matched: list[tuple[str, str]]
    """(prediction name, reference name) pairs, in reference-file order."""
    no_prediction: list[str]
    """Reference names with no prediction record at all."""
    no_reference: list[str]
    """Prediction names with no reference."""
    ambiguous: list[str] = field(default_factory=list)
    """References left out because several predictions share their key: "reference (candidate / candidate)"."""
    unit: str = "studies"
    """What the names are, for messages: "studies" or "questions"."""

    def summary_lines(self, prediction_source: str, reference_source: str) -> list[str]:
        """One line per side that has unmatched names (count + the first few), for the user."""
        lines = []
        if self.no_prediction:
            lines.append(
                f"{len(self.no_prediction)} reference {self.unit} have no prediction in "
                f"{prediction_source} (not scored): {first_names(self.no_prediction)}"
            )
        if self.no_reference:
            lines.append(
                f"{len(self.no_reference)} predicted {self.unit} have no reference in "
                f"{reference_source} (not scored): {first_names(self.no_reference)}"
            )
        if self.ambiguous:
            lines.append(
                f"{len(self.ambiguous)} reference {self.unit} match several predictions in {prediction_source} "
                f"and none by its full name (not scored): {first_names(self.ambiguous)}"
            )
        return lines


def first_names(names: list[str]) -> str:
    """ "a, b, c, d, e and 7 more": the first few names of a list, for one-line messages."""
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown if len(names) <= NAMES_SHOWN else f"{shown} and {len(names) - NAMES_SHOWN} more"


def _names_by_key(names: list[str], source: str | Path) -> dict[str, str]:
    by_key: dict[str, str] = {}
    for name in names:
        key = study_key(name)
        if key in by_key:
            raise ScoringError(
                f"'{by_key[key]}' and '{name}' are the same study for the join (key '{key}')",
                path=source,
                hint="Give every study a distinct name (file name without folder and extension).",
            )
        by_key[key] = name
    return by_key


def join_studies(
    predicted: list[str], references: list[str], *, prediction_source: str | Path, reference_source: str | Path
) -> StudyJoin:
    """Pair prediction names with reference names by :func:`study_key` (module docstring: the join rule).

    Unmatched names on both sides are kept for the summary; a reference whose
    key several predictions share is matched by full name or listed as ambiguous.
    """
    reference_by_key = _names_by_key(references, reference_source)
    candidates: dict[str, list[str]] = {}
    for name in predicted:
        candidates.setdefault(study_key(name), []).append(name)
    matched, ambiguous = [], []
    for key, reference in reference_by_key.items():
        names = candidates.get(key, [])
        chosen = names if len(names) == 1 else [name for name in names if _names_the_same(name, reference)]
        if len(chosen) == 1:
            matched.append((chosen[0], reference))
        elif names:
            ambiguous.append(f"{reference} ({' / '.join(names)})")
    return StudyJoin(
        matched=matched,
        no_prediction=[name for key, name in reference_by_key.items() if key not in candidates],
        no_reference=[name for name in dict.fromkeys(predicted) if study_key(name) not in reference_by_key],
        ambiguous=ambiguous,
    )


def _names_the_same(predicted: str, reference: str) -> bool:
    """Whether a prediction's name is the reference's own (equal, or the reference is its trailing path)."""
    predicted, reference = predicted.replace("\\", "/"), reference.strip().replace("\\", "/")
    return predicted == reference or predicted.endswith("/" + reference)


# --------------------------------------------------------------------------
# Reading predictions
# --------------------------------------------------------------------------


def _jsonl_records(path: Path) -> list[tuple[int, dict]]:
    """``(line, object)`` of every non-blank line of a JSONL file; a bad line is an error naming it."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as error:
        raise ScoringError("file not found", path=path) from error
    except (OSError, UnicodeDecodeError) as error:
        raise ScoringError(f"cannot read as UTF-8 text ({error})", path=path) from error
    from omnict_cli.labels.ctrate_io import jsonl_objects

    try:
        return jsonl_objects(text)
    except ValueError as error:
        raise ScoringError(str(error), path=path) from error


def is_jsonl(path: str | Path) -> bool:
    """Whether a predictions/references file is JSONL (by extension, else by its first character).

    A file in the VLM3D challenge's layout (one JSON object) is not.
    """
    from omnict_cli.labels.challenge_json import is_challenge_file

    path = Path(path)
    if is_challenge_file(path):
        return False
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return True
    if path.suffix.lower() == ".csv":
        return False
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as stream:
            return stream.read(4096).lstrip().startswith("{")
    except OSError as error:
        raise ScoringError(f"cannot read file ({error.strerror})", path=path) from error


def is_answer_file(path: str | Path) -> bool:
    """Whether a predictions file holds VQA answers (records with "answer" and no report text)."""
    if not is_jsonl(path):
        return False
    from omnict_cli.labels.ctrate_io import NOT_REPORT_STATUSES

    for _, record in _jsonl_records(Path(path)):
        if record.get("status") in NOT_REPORT_STATUSES:
            continue
        return "answer" in record and not any(key in record for key in ("findings", "impression", "report"))
    return False


def _record_name(record: dict) -> str:
    return str(record.get("study_id") or record.get("VolumeName") or record.get("image") or "").strip()


@dataclass
class GeneratedReports:
    """The report texts of a predictions file; failed records kept by name so they are scored, not lost."""

    texts: dict[str, str]
    failed: list[str] = field(default_factory=list)
    """Names of records with ``"status": "error"`` and no successful record of the same study."""


def read_generated_reports(path: str | Path) -> GeneratedReports:
    """Generated reports from ``omnict report`` JSONL or a CT-RATE reports CSV, with failed records listed."""
    from omnict_cli.labels.ctrate_io import read_reports, report_text

    path = Path(path)
    reports = read_reports(path)
    failed = []
    if is_jsonl(path):
        failed = [_record_name(record) for _, record in _jsonl_records(path) if record.get("status") == "error"]
    if not all(failed):
        raise ScoringError('a record with status "error" has no study_id', path=path)
    texts = {report.volume_name: report_text(report) for report in reports}
    # a resumed run may have retried a failed study: its report wins over the earlier error
    failed = [name for name in dict.fromkeys(failed) if name not in texts]
    return GeneratedReports(texts=texts, failed=failed)


def nan_to_none(data):
    """``data`` with every NaN float replaced by None, so it is valid JSON (NaN is not; null is).

    NaN is how the metrics say "not defined" (a class with no reference
    positive and no prediction); JSON readers other than Python's reject a
    bare ``NaN`` token.
    """
    if isinstance(data, float) and math.isnan(data):
        return None
    if isinstance(data, dict):
        return {key: nan_to_none(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [nan_to_none(value) for value in data]
    return data


# --------------------------------------------------------------------------
# Report scoring
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreOptions:
    """How ``omnict score`` labels and scores; one object instead of a long argument list."""

    method: str = "classifier"
    """Labeler for the report texts: "classifier" or "rules"."""
    model: str | Path | None = None
    """Classifier file; None uses the bundled one."""
    convention: str = "ctrate"
    """How Lymphadenopathy is read from text: "ctrate" (any affirmed node) or "clinical" (enlarged nodes only)."""
    protocol: str = "omnict"
    """How reports are scored: "omnict" (this module) or "vlm3d" (:mod:`omnict_cli.metrics.vlm3d`)."""
    reference_labels: str | Path | None = None
    """CT-RATE label CSV for the references; None labels the reference texts like the predictions."""
    bertscore_model: str | Path | None = None
    """Local encoder directory for BERTScore; None skips it."""
    bootstrap: int = 1000
    """Bootstrap resamples for the 95% intervals."""
    seed: int = 0


@dataclass
class ReportScores:
    """Everything ``omnict score`` reports for generated reports (see :meth:`to_dict` for the JSON)."""

    predictions: str
    references: str
    method: str
    reference_labels_source: str
    join: StudyJoin
    failed: list[str]
    """Matched predictions with status "error" (scored as empty reports)."""
    empty: list[str]
    """Matched predictions with no text (scored as empty reports)."""
    classification: object
    """:class:`omnict_cli.metrics.ClassificationReport` of the scored studies."""
    macro_f1_ci: tuple[float, float]
    text_scores: dict[str, float]
    bootstrap: int
    notes: list[str] = field(default_factory=list)
    """One line per score left out, and why (CIDEr-D without pycocoevalcap)."""
    pairs: object = None
    """The :class:`~omnict_cli.metrics.report_pairs.ReportPairs` scored (for ``--per-study``)."""
    protocol = "omnict"

    @property
    def n_scored(self) -> int:
        return len(self.join.matched)

    def to_dict(self) -> dict:
        """Plain JSON-ready data: counts, missing names, per-class table, averages, interval, text scores.

        Scores that are not defined (NaN: a class with no reference positive
        and no prediction; a macro or micro value when no class has any) are None.
        """
        report = self.classification
        data = {
            "mode": "reports",
            "predictions": self.predictions,
            "references": self.references,
            "method": self.method,
            "reference_labels": self.reference_labels_source,
            **joined_counts(self.join, self.failed, self.empty),
            "per_class": [asdict(scores) for scores in report.per_class],
            "macro": {"precision": report.macro_precision, "recall": report.macro_recall, "f1": report.macro_f1},
            "micro": {"precision": report.micro_precision, "recall": report.micro_recall, "f1": report.micro_f1},
            "macro_f1_ci95": list(self.macro_f1_ci),
            "bootstrap_resamples": self.bootstrap,
            "text": self.text_scores,
            "notes": self.notes,
        }
        return nan_to_none(data)


def joined_counts(join: StudyJoin, failed: list[str], empty: list[str]) -> dict:
    """What the join scored and left out, as both protocols' JSON gives it."""
    return {
        "n_scored": len(join.matched),
        "n_failed": len(failed),
        "n_empty": len(empty),
        "failed": failed,
        "empty": empty,
        "n_no_prediction": len(join.no_prediction),
        "no_prediction": join.no_prediction,
        "n_no_reference": len(join.no_reference),
        "no_reference": join.no_reference,
        "n_ambiguous": len(join.ambiguous),
        "ambiguous": join.ambiguous,
    }


def reference_label_matrix(path: Path, reference_names: list[str]) -> np.ndarray:
    """Rows of a CT-RATE label CSV for the given references (joined by study key); missing rows are an error."""
    from omnict_cli.labels.ctrate_io import read_labels

    labels = read_labels(path)
    by_key = _names_by_key(list(labels), path)
    missing = [name for name in reference_names if study_key(name) not in by_key]
    if missing:
        raise ScoringError(
            f"{len(missing)} scored reference studies have no labels: {first_names(missing)}",
            path=path,
            hint="Give the label CSV of the same studies as --references.",
        )
    return np.array(
        [[labels[by_key[study_key(name)]][label] for label in CTRATE_ABNORMALITIES] for name in reference_names],
        dtype=np.int64,
    )


def label_texts(texts: list[str], method: str, model=None, *, convention: str = "ctrate") -> np.ndarray:
    """``[N, 18]`` 0/1 labels of report texts; an empty text (failed or empty prediction) is all negative.

    The one way reports are labelled for scoring: ``omnict score`` and the
    labels ``omnict review`` marks disagreements with both use it.
    """
    from omnict_cli.labels.labeler import label_reports

    matrix = np.zeros((len(texts), len(CTRATE_ABNORMALITIES)), dtype=np.int64)
    present = [i for i, text in enumerate(texts) if text.strip()]
    if present:
        matrix[present] = label_reports([texts[i] for i in present], method, model=model, convention=convention)
    return matrix


def text_scores(
    hypotheses: list[str], references: list[str], bertscore_model: str | Path | None, notes: list[str] | None = None
) -> dict:
    """BLEU-1..4 (corpus), mean ROUGE-L F1, mean METEOR, CIDEr-D and, with an encoder, mean BERTScore F1.

    CIDEr-D is pycocoevalcap's, on omnict's tokens; without pycocoevalcap it is
    left out and a line saying so is appended to ``notes``.
    """
    from omnict_cli.metrics import bleu, meteor_corpus, rouge_l_corpus
    from omnict_cli.metrics.coco_text import INSTALL_HINT, cider_d, coco_available
    from omnict_cli.metrics.text import tokenize

    scores = dict(bleu(hypotheses, references))
    scores["rouge_l"] = rouge_l_corpus(hypotheses, references)
    scores["meteor"] = meteor_corpus(hypotheses, references)
    if coco_available():
        scores["cider_d"] = cider_d(
            [" ".join(tokenize(text)) for text in hypotheses], [" ".join(tokenize(text)) for text in references]
        )[0]
    elif notes is not None:
        notes.append(f"CIDEr-D left out: pycocoevalcap is not installed ({INSTALL_HINT})")
    if bertscore_model is not None:
        from omnict_cli.metrics import bertscore

        result = bertscore(hypotheses, references, str(bertscore_model))
        scores.update(
            bertscore_precision=result["precision"], bertscore_recall=result["recall"], bertscore_f1=result["f1"]
        )
    return scores


def score_reports(
    predictions_path: str | Path, references_path: str | Path, options: ScoreOptions = ScoreOptions()
) -> ReportScores:
    """Label, join and score generated reports against reference reports (module docstring has the rules)."""
    from omnict_cli.metrics import classification_report, macro_f1_ci
    from omnict_cli.metrics.report_pairs import pair_reports

    pairs = pair_reports(predictions_path, references_path, options)
    notes: list[str] = []
    return ReportScores(
        predictions=str(predictions_path),
        references=str(references_path),
        method=options.method,
        reference_labels_source=pairs.truth_source,
        join=pairs.join,
        failed=pairs.failed,
        empty=pairs.empty,
        classification=classification_report(pairs.truth, pairs.predicted, list(CTRATE_ABNORMALITIES)),
        macro_f1_ci=macro_f1_ci(pairs.truth, pairs.predicted, n_resamples=options.bootstrap, seed=options.seed),
        text_scores=text_scores(pairs.hypotheses, pairs.reference_texts, options.bertscore_model, notes),
        bootstrap=options.bootstrap,
        notes=notes,
        pairs=pairs,
    )


# --------------------------------------------------------------------------
# VQA scoring
# --------------------------------------------------------------------------

_OPTION_LINE = re.compile(r"^\s*\(?[A-Z][.)]\s+\S")
_YES_NO = re.compile(r"^\s*(yes|no)\s*[.!]?\s*$", re.IGNORECASE)


def question_text(content: str) -> str:
    """A question without chat tokens (the image / organ placeholders and any other ``<|...|>``), spaces tidied.

    The run removes the same tokens from questions (``run.question_rules``), so answers and references join.
    """
    lines = [" ".join(line.split()) for line in CHAT_TOKEN.sub("", content).splitlines()]
    return "\n".join(line for line in lines if line)


def options_in_question(question: str) -> list[str]:
    """Lettered option lines of a multiple-choice question ("A. Consolidation", "B) Emphysema", ...)."""
    options = [line.strip() for line in question.splitlines() if _OPTION_LINE.match(line)]
    return options if len(options) >= 2 else []


def infer_kind(answer: str, options: list[str]) -> str:
    """ "choice" when there are options, "closed" for a yes/no answer, else "open"."""
    if options:
        return "choice"
    return "closed" if _YES_NO.match(answer) else "open"


@dataclass
class QuestionRow:
    """One question of one study: on the reference side ``answer`` is the reference answer."""

    study: str
    question: str
    answer: str
    kind: str = "open"
    options: list[str] = field(default_factory=list)
    failed: bool = False

    def label(self) -> str:
        return f"{self.study}: {self.question.splitlines()[0] if self.question else ''}"


def _reference_row(path: Path, line: int, record: dict) -> QuestionRow:
    """A reference question from a chat row (``messages``) or a plain {question, answer, kind, options} row."""
    study = _record_name(record)
    if isinstance(record.get("messages"), list):
        turns = {
            turn.get("role"): turn.get("content") for turn in reversed(record["messages"]) if isinstance(turn, dict)
        }
        question, answer = turns.get("user"), turns.get("assistant")
    else:
        question, answer = record.get("question"), record.get("answer", record.get("reference"))
    if not study or not isinstance(question, str) or not isinstance(answer, str):
        raise ScoringError(
            f"line {line}: a reference row needs a study (image / study_id), a question and an "
            "answer (or a chat row with user and assistant messages)",
            path=path,
        )
    question = question_text(question)
    options = record.get("options") or options_in_question(question)
    if not isinstance(options, list) or not all(isinstance(option, str) for option in options):
        raise ScoringError(f"line {line}: 'options' must be a list of strings", path=path)
    kind = record.get("kind") or infer_kind(answer, options)
    if kind not in ("closed", "choice", "open"):
        raise ScoringError(f"line {line}: kind {kind!r} is not closed, choice or open", path=path)
    return QuestionRow(study, question, answer.strip(), kind, list(options))


def read_reference_questions(path: str | Path) -> list[QuestionRow]:
    """Reference questions of a JSONL file (chat rows as ``omnict demo-data`` writes, or plain rows)."""
    path = Path(path)
    return [_reference_row(path, line, record) for line, record in _jsonl_records(path)]


def read_answers(path: str | Path) -> list[QuestionRow]:
    """Predicted answers (``omnict ask`` records): study, question (``question`` or ``prompt``), answer, status."""
    path = Path(path)
    rows = []
    for line, record in _jsonl_records(path):
        question = record.get("question", record.get("prompt"))
        study = _record_name(record)
        if not study or not isinstance(question, str):
            raise ScoringError(
                f"line {line}: an answer record needs a study_id and its question ('question' or 'prompt')", path=path
            )
        failed = record.get("status") == "error"
        answer = "" if failed else record.get("answer")
        if not isinstance(answer, str):
            raise ScoringError(f"line {line}: 'answer' must be text", path=path)
        rows.append(QuestionRow(study, question_text(question), answer.strip(), failed=failed))
    return rows


def _question_keys(rows: list[QuestionRow]) -> list[tuple[str, str, int]]:
    """(study key, normalised question, occurrence) per row: the k-th asking of a question pairs with the k-th."""
    seen: dict[tuple[str, str], int] = {}
    keys = []
    for row in rows:
        base = (study_key(row.study), " ".join(row.question.lower().split()))
        seen[base] = seen.get(base, 0) + 1
        keys.append((*base, seen[base]))
    return keys


@dataclass
class VQAResult:
    """Everything ``omnict score`` reports for VQA answers (see :meth:`to_dict`)."""

    predictions: str
    references: str
    join: StudyJoin
    """Names here are "study: question" labels."""
    failed: list[str]
    empty: list[str]
    scores: object
    """:class:`omnict_cli.metrics.VQAScores`."""
    intervals: dict[str, tuple[float, float]]
    bootstrap: int

    def to_dict(self) -> dict:
        def accuracy(score, name):
            if score is None:
                return None
            return {
                "n": score.n_total,
                "correct": score.n_correct,
                "accuracy": score.accuracy,
                "ci95": list(self.intervals[name]),
            }

        open_scores = None
        if self.scores.open is not None:
            open_scores = {key: value for key, value in asdict(self.scores.open).items() if key != "token_f1_per_row"}
            open_scores["token_f1_ci95"] = list(self.intervals["open"])
        data = {
            "mode": "vqa",
            "predictions": self.predictions,
            "references": self.references,
            "n_scored": len(self.join.matched),
            "n_failed": len(self.failed),
            "n_empty": len(self.empty),
            "failed": self.failed,
            "empty": self.empty,
            "n_no_prediction": len(self.join.no_prediction),
            "no_prediction": self.join.no_prediction,
            "n_no_reference": len(self.join.no_reference),
            "no_reference": self.join.no_reference,
            "closed": accuracy(self.scores.closed, "closed"),
            "choice": accuracy(self.scores.choice, "choice"),
            "open": open_scores,
            "bootstrap_resamples": self.bootstrap,
        }
        return nan_to_none(data)


def score_answers(
    predictions_path: str | Path, references_path: str | Path, options: ScoreOptions = ScoreOptions()
) -> VQAResult:
    """Join answers to reference questions and score them by kind, with bootstrap 95% intervals."""
    from omnict_cli.metrics import accuracy_ci, score_vqa

    answers, references = read_answers(predictions_path), read_reference_questions(references_path)
    answer_by_key = dict(zip(_question_keys(answers), answers))
    reference_by_key = dict(zip(_question_keys(references), references))
    pairs = [(answer_by_key[key], reference) for key, reference in reference_by_key.items() if key in answer_by_key]
    join = StudyJoin(
        matched=[(answer.label(), reference.label()) for answer, reference in pairs],
        no_prediction=[row.label() for key, row in reference_by_key.items() if key not in answer_by_key],
        no_reference=[row.label() for key, row in answer_by_key.items() if key not in reference_by_key],
        unit="questions",
    )
    if not pairs:
        raise ScoringError(
            "no question is in both files, nothing to score",
            path=predictions_path,
            hint=" ".join(join.summary_lines(str(predictions_path), str(references_path))),
        )
    rows = [
        {
            "question": reference.question,
            "answer": answer.answer,
            "reference": reference.answer,
            "kind": reference.kind,
            "options": reference.options,
        }
        for answer, reference in pairs
    ]
    scores = score_vqa(rows, source=str(references_path))
    intervals = {}
    for name, values in (
        ("closed", scores.closed and scores.closed.correct),
        ("choice", scores.choice and scores.choice.correct),
        ("open", scores.open and scores.open.token_f1_per_row),
    ):
        if values:
            intervals[name] = accuracy_ci(values, n_resamples=options.bootstrap, seed=options.seed)
    return VQAResult(
        predictions=str(predictions_path),
        references=str(references_path),
        join=join,
        failed=[answer.label() for answer, _ in pairs if answer.failed],
        empty=[answer.label() for answer, _ in pairs if not answer.failed and not answer.answer],
        scores=scores,
        intervals=intervals,
        bootstrap=options.bootstrap,
    )


def score(predictions_path: str | Path, references_path: str | Path, options: ScoreOptions = ScoreOptions()):
    """Score a predictions file in the mode its records call for: VQA answers or reports (by ``options.protocol``)."""
    if options.protocol not in PROTOCOLS:
        raise ScoringError(f"unknown scoring protocol {options.protocol!r}", hint=f"Use one of {', '.join(PROTOCOLS)}.")
    if is_answer_file(predictions_path):
        if options.protocol != "omnict":
            raise ScoringError(
                f"the {options.protocol} protocol scores generated reports, and this file holds VQA answers",
                path=predictions_path,
                hint="Score answers without --protocol (omnict's VQA scores).",
            )
        return score_answers(predictions_path, references_path, options)
    if options.protocol == "vlm3d":
        from omnict_cli.metrics.vlm3d import score_vlm3d

        return score_vlm3d(predictions_path, references_path, options)
    return score_reports(predictions_path, references_path, options)


__all__ = [
    "ScoreOptions",
    "ReportScores",
    "VQAResult",
    "StudyJoin",
    "ScoringError",
    "score",
    "score_reports",
    "score_answers",
    "study_key",
    "join_studies",
    "read_generated_reports",
    "read_reference_questions",
    "read_answers",
    "first_names",
    "infer_kind",
    "options_in_question",
    "question_text",
    "text_scores",
    "is_answer_file",
    "nan_to_none",
]
