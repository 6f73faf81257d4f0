"""A "RadBERT-style" report classifier for the 18 CT-RATE classes, stored without pickle.

CT-RATE scores generated reports by labelling them with a fine-tuned RadBERT
that cannot be downloaded here; this is the trainable stand-in:

* **Features.** TF-IDF of word 1-2 grams and of character 3-5 grams inside
  word boundaries (``char_wb``, robust to spelling and inflection), both with
  sublinear term frequency and L2 rows and a capped vocabulary, plus the rule
  labeler's 54 one-hot states (positive / negative / uncertain per class,
  :func:`omnict_cli.labels.rules.rule_feature_matrix`), which carry negation
  and uncertainty that n-grams only approximate.
* **Model.** One L2 logistic regression per class (one-vs-rest, lbfgs, which
  is deterministic and on these features several times faster than liblinear;
  ``class_weight="balanced"`` so rare classes are not ignored).
* **Calibration.** Platt scaling per class: ``p = 1 / (1 + exp(-(a*s + b)))``
  fitted on out-of-fold decision values ``s`` (stratified k-fold; the models
  used for the final scores are refitted on all reports), with Platt's
  smoothed targets. A class with fewer than two reports on either side cannot
  be cross-validated and is calibrated on its in-sample scores; a class with
  no positive (or no negative) report at all becomes a *constant predictor*:
  zero weights and ``p`` = the Laplace-smoothed training rate
  ``(positives + 1) / (reports + 2)``, so it predicts 0 (or 1) for everything
  and says so in ``metadata["constant_classes"]``.

The vectorizers are fitted once on all reports, also for the calibration
folds: the idf weights see the held-out fold's words (not its labels), a
small optimism accepted to keep training to one pass over the text.

**File format** (``save``/``load``): one JSON object, gzip-compressed when the
name ends in ``.gz``::

    {"format": "omnict-report-classifier", "version": 2, "sha256": "<hex>",
     "payload": {"classes": [...18 names...],
                 "vectorizers": {"word": {"params": {...}, "terms": [...], "idf": <array>},
                                 "char": {...}},
                 "rule_features": {"used": true, "width": 54},
                 "linear": {"coef": <array 18 x F>, "intercept": <array 18>},
                 "calibration": {"method": "platt", "a": <array 18>, "b": <array 18>},
                 "metadata": {...}}}

``params`` are the tokenizer and weighting settings as plain data (analyzer,
n-gram range, lowercase, accents, sublinear tf, norm, idf); the token pattern
is a *name* from :data:`TOKEN_PATTERNS` (e.g. ``"words-of-2-or-more-characters"``),
never a regular expression: a file naming anything else is refused, so no
file can make ``predict`` run an expression of its author's choosing.
``terms[i]`` is the vocabulary term of feature column ``i``; an ``<array>`` is
``{"dtype": "<f8", "shape": [...], "base64": "..."}`` (little-endian float64,
so numbers survive the round trip bit for bit); ``sha256`` is the hash of the
payload serialised with sorted keys and no spaces. Loading parses JSON and
decodes numbers with numpy only, then applies the fitted vocabulary and idf
with :class:`omnict_cli.labels.tfidf.FittedTfidf` (scikit-learn's TF-IDF,
without importing scikit-learn); nothing in the file is ever executed or
unpickled, and a file that is not a classifier file, has another format or
version, a wrong checksum, wrong shapes or non-finite numbers is refused with
a :class:`ClassifierFileError` naming it.
"""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

from omnict_cli.atomic import write_bytes_atomically
from omnict_cli.errors import OmnictError
from omnict_cli.labels.classes import CTRATE_ABNORMALITIES
from omnict_cli.labels.report_size import within_size_limit

FILE_FORMAT = "omnict-report-classifier"
FILE_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Version 1 stored the token pattern as a regular expression; it is read only when that
expression is exactly one of :data:`TOKEN_PATTERNS` (which every file omnict wrote holds)."""

TOKEN_PATTERNS = {
    "words-of-2-or-more-characters": r"(?u)\b\w\w+\b",
    "words-of-1-or-more-characters": r"(?u)\b\w+\b",
}
"""The token patterns a classifier file may name. A file names one of these; it never carries a
regular expression of its own, so no file can make ``predict`` run a slow (catastrophic) regex."""
RULE_FEATURE_WIDTH = 3 * len(CTRATE_ABNORMALITIES)
"""Positive / negative / uncertain one-hot per class, as ``rule_feature_matrix`` returns."""

MAX_FILE_BYTES = 256 * 1024 * 1024
"""Refuse to decompress or parse more than this: a classifier is a few MB, a bigger file is a mistake."""

_ARRAY_DTYPE = "<f8"
_VECTORIZER_PARAMS = (
    "analyzer",
    "ngram_range",
    "lowercase",
    "token_pattern",
    "sublinear_tf",
    "norm",
    "use_idf",
    "smooth_idf",
    "strip_accents",
    "min_df",
    "max_features",
)


class ClassifierFileError(OmnictError):
    """A file given as a report classifier is not one, or is damaged."""


@dataclass(frozen=True)
class ClassifierConfig:
    """How a :class:`ReportClassifier` is built; stored in its file's metadata.

    The vocabulary caps keep the saved file to a few MB; ``min_df`` drops
    n-grams seen in only one report (typos, sizes like "57.8 mm").
    """

    word_max_features: int = 6000
    char_max_features: int = 12000
    min_df: int = 2
    regularization_c: float = 4.0
    calibration_folds: int = 3
    use_rule_features: bool = True
    seed: int = 0


# --------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------


def _new_vectorizers(config: ClassifierConfig) -> dict:
    """Unfitted word and character TF-IDF vectorizers (``sublinear_tf``, L2 rows)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    common = dict(
        lowercase=True,
        sublinear_tf=True,
        norm="l2",
        use_idf=True,
        smooth_idf=True,
        min_df=config.min_df,
        dtype=np.float64,
    )
    return {
        "word": TfidfVectorizer(
            analyzer="word",
            ngram_range=(1, 2),
            token_pattern=TOKEN_PATTERNS["words-of-2-or-more-characters"],
            max_features=config.word_max_features,
            **common,
        ),
        "char": TfidfVectorizer(
            analyzer="char_wb", ngram_range=(3, 5), max_features=config.char_max_features, **common
        ),
    }


def _rule_features(texts: list[str]) -> np.ndarray:
    """The rule labeler's one-hot states, checked to be the width the model was trained with."""
    from omnict_cli.labels.rules import rule_feature_matrix

    matrix = np.asarray(rule_feature_matrix(list(texts)), dtype=np.float64)
    if matrix.shape != (len(texts), RULE_FEATURE_WIDTH):
        raise RuntimeError(
            f"rule_feature_matrix returned shape {matrix.shape}, expected ({len(texts)}, {RULE_FEATURE_WIDTH})"
        )
    return matrix


# --------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------


def _sigmoid(values: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow warnings for large |x|."""
    from scipy.special import expit

    return expit(values)


def fit_platt(scores: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """Platt's ``(a, b)`` so that ``sigmoid(a * score + b)`` is the probability of a positive.

    Uses Platt's smoothed targets ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)``
    so a perfectly separated class still gets finite, not 0/1, probabilities.
    """
    from scipy.optimize import minimize

    positives = int(targets.sum())
    negatives = len(targets) - positives
    soft = np.where(targets == 1, (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0))

    def loss_and_gradient(params):
        a, b = params
        logits = a * scores + b
        # log(1 + e^z) - t z, written with logaddexp to stay finite
        loss = np.sum(np.logaddexp(0.0, logits) - soft * logits)
        residual = _sigmoid(logits) - soft
        return loss, np.array([np.sum(residual * scores), np.sum(residual)])

    prior = np.log((negatives + 1.0) / (positives + 1.0))
    result = minimize(loss_and_gradient, x0=np.array([1.0, -prior]), jac=True, method="L-BFGS-B")
    return float(result.x[0]), float(result.x[1])


def _constant_logit(positives: int, count: int) -> float:
    """The logit of the Laplace-smoothed rate ``(positives + 1) / (count + 2)``."""
    return float(np.log((positives + 1.0) / (count - positives + 1.0)))


# --------------------------------------------------------------------------
# The classifier
# --------------------------------------------------------------------------


class ReportClassifier:
    """Report text -> calibrated probabilities of the 18 CT-RATE classes (CT-RATE column order).

    Build with :meth:`fit` on labelled reports, or :meth:`load` a saved file;
    the two give identical probabilities. All arrays are [reports, 18].
    """

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        self.config = config
        self.classes = tuple(CTRATE_ABNORMALITIES)
        self.vectorizers: dict | None = None
        self.coef: np.ndarray | None = None  # [18, features]
        self.intercept: np.ndarray | None = None  # [18]
        self.platt_a: np.ndarray | None = None  # [18]
        self.platt_b: np.ndarray | None = None  # [18]
        self.use_rule_features = config.use_rule_features
        self.metadata: dict = {}

    # ---- features ---------------------------------------------------------

    def features(self, texts: list[str]) -> sparse.csr_matrix:
        """The model's input: [word TF-IDF | char TF-IDF | rule one-hots] as one sparse matrix."""
        self._check_fitted()
        texts = [within_size_limit(str(text)) for text in texts]
        blocks = [self.vectorizers["word"].transform(texts), self.vectorizers["char"].transform(texts)]
        if self.use_rule_features:
            blocks.append(sparse.csr_matrix(_rule_features(texts)))
        return sparse.hstack(blocks, format="csr")

    # ---- training -----------------------------------------------------------

    def fit(
        self,
        texts: list[str],
        labels: np.ndarray,
        *,
        corpus_name: str = "unnamed",
        on_class_done: Callable[[str], None] | None = None,
    ) -> ReportClassifier:
        """Fit vectorizers, per-class models and Platt calibration on reports and their 0/1 labels.

        Args:
            texts: report texts (findings and impression together).
            labels: 0/1 array [len(texts), 18] in CT-RATE column order.
            corpus_name: where the reports came from, kept in the metadata.
            on_class_done: called with each class name when its model is done (progress bars).
        """
        texts = [str(text) for text in texts]
        labels = self._checked_labels(labels, len(texts))
        self.vectorizers = _new_vectorizers(self.config)
        for vectorizer in self.vectorizers.values():
            vectorizer.fit(texts)
        matrix = self.features(texts)
        rows = []
        for index, name in enumerate(self.classes):
            rows.append(self._fit_class(matrix, labels[:, index]))
            if on_class_done is not None:
                on_class_done(name)
        self.coef = np.vstack([row[0] for row in rows])
        self.intercept = np.array([row[1] for row in rows])
        self.platt_a = np.array([row[2] for row in rows])
        self.platt_b = np.array([row[3] for row in rows])
        self.metadata = self._training_metadata(texts, labels, corpus_name)
        return self

    @staticmethod
    def _checked_labels(labels, count: int) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.shape != (count, len(CTRATE_ABNORMALITIES)):
            raise ValueError(f"labels must have shape ({count}, {len(CTRATE_ABNORMALITIES)}), got {labels.shape}")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("labels must be 0 or 1")
        if count < 2:
            raise ValueError(f"need at least 2 reports to train, got {count}")
        return labels.astype(np.int64)

    def _fit_class(self, matrix, targets: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """``(coef, intercept, platt_a, platt_b)`` of one class; see the module docstring for edge cases."""
        positives = int(targets.sum())
        if positives in (0, len(targets)):
            return np.zeros(matrix.shape[1]), 0.0, 0.0, _constant_logit(positives, len(targets))
        model = self._new_linear_model().fit(matrix, targets)
        folds = min(self.config.calibration_folds, positives, len(targets) - positives)
        if folds >= 2:
            scores = self._out_of_fold_scores(matrix, targets, folds)
        else:
            scores = model.decision_function(matrix)
        a, b = fit_platt(scores, targets)
        return model.coef_[0].astype(np.float64), float(model.intercept_[0]), a, b

    def _new_linear_model(self):
        from sklearn.linear_model import LogisticRegression

        # a loose tolerance halves the iterations; Platt scaling recalibrates the scores anyway
        return LogisticRegression(
            solver="lbfgs", C=self.config.regularization_c, class_weight="balanced", tol=1e-3, max_iter=1000
        )

    def _out_of_fold_scores(self, matrix, targets: np.ndarray, folds: int) -> np.ndarray:
        """Decision values of each report from a model that did not see it (stratified k-fold)."""
        from sklearn.model_selection import StratifiedKFold

        scores = np.zeros(len(targets))
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.config.seed)
        for train, held_out in splitter.split(np.zeros(len(targets)), targets):
            model = self._new_linear_model().fit(matrix[train], targets[train])
            scores[held_out] = model.decision_function(matrix[held_out])
        return scores

    def _training_metadata(self, texts: list[str], labels: np.ndarray, corpus_name: str) -> dict:
        from omnict_cli import __version__

        counts = labels.sum(axis=0)
        constant = [name for name, n in zip(self.classes, counts) if n in (0, len(texts))]
        return {
            "n_reports": len(texts),
            "class_counts": {name: int(n) for name, n in zip(self.classes, counts)},
            "constant_classes": constant,
            "corpus": corpus_name,
            "trained_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "omnict_version": __version__,
            "sklearn_version": _sklearn_version(),
            "config": asdict(self.config),
            "calibration": "platt on out-of-fold decision values",
        }

    # ---- prediction ---------------------------------------------------------

    def decision_function(self, texts: list[str]) -> np.ndarray:
        """Uncalibrated linear scores [n, 18]."""
        matrix = self.features(texts)
        return np.asarray(matrix @ self.coef.T) + self.intercept

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Calibrated probability that each report states each class, [n, 18]."""
        if len(texts) == 0:
            return np.zeros((0, len(self.classes)))
        return _sigmoid(self.decision_function(texts) * self.platt_a + self.platt_b)

    def predict(self, texts: list[str], threshold: float = 0.5) -> np.ndarray:
        """0/1 labels [n, 18]: probability at or above ``threshold``."""
        return (self.predict_proba(texts) >= threshold).astype(np.int64)

    def _check_fitted(self) -> None:
        if self.vectorizers is None:
            raise RuntimeError("the classifier is not trained: call fit() or ReportClassifier.load()")

    # ---- storage ------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the classifier as JSON (gzip when ``path`` ends in ``.gz``), atomically; returns the path."""
        self._check_fitted()
        path = Path(path)
        payload = _payload_of(self)
        document = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "sha256": _payload_hash(payload),
            "payload": payload,
        }
        data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")
        if path.name.endswith(".gz"):
            data = gzip.compress(data, compresslevel=9, mtime=0)
        write_bytes_atomically(path, data)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReportClassifier:
        """Read a file written by :meth:`save`; refuses anything else with a :class:`ClassifierFileError`."""
        path = Path(path)
        document = _read_document(path)
        payload = _checked_payload(path, document)
        return _classifier_from_payload(path, payload, document["version"])


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


# --------------------------------------------------------------------------
# File writing
# --------------------------------------------------------------------------


def _encode_array(values: np.ndarray) -> dict:
    array = np.ascontiguousarray(values, dtype=_ARRAY_DTYPE)
    return {
        "dtype": _ARRAY_DTYPE,
        "shape": list(array.shape),
        "base64": base64.b64encode(array.tobytes()).decode("ascii"),
    }


def _token_pattern_name(pattern: str) -> str:
    """The :data:`TOKEN_PATTERNS` name of a vectorizer's token pattern."""
    for name, known in TOKEN_PATTERNS.items():
        if pattern == known:
            return name
    raise ValueError(f"token pattern {pattern!r} is not one of omnict's named patterns ({', '.join(TOKEN_PATTERNS)})")


def _vectorizer_entry(vectorizer) -> dict:
    params = {name: getattr(vectorizer, name) for name in _VECTORIZER_PARAMS}
    params["ngram_range"] = list(params["ngram_range"])
    params["token_pattern"] = _token_pattern_name(params["token_pattern"])
    terms = [""] * len(vectorizer.vocabulary_)
    for term, column in vectorizer.vocabulary_.items():
        terms[column] = term
    return {"params": params, "terms": terms, "idf": _encode_array(vectorizer.idf_)}


def _payload_of(model: ReportClassifier) -> dict:
    return {
        "classes": list(model.classes),
        "vectorizers": {name: _vectorizer_entry(v) for name, v in model.vectorizers.items()},
        "rule_features": {
            "used": model.use_rule_features,
            "width": RULE_FEATURE_WIDTH if model.use_rule_features else 0,
        },
        "linear": {"coef": _encode_array(model.coef), "intercept": _encode_array(model.intercept)},
        "calibration": {"method": "platt", "a": _encode_array(model.platt_a), "b": _encode_array(model.platt_b)},
        "metadata": model.metadata,
    }


def _payload_hash(payload: dict) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------
# File reading and checking
# --------------------------------------------------------------------------


def _refuse(path: Path, problem: str) -> ClassifierFileError:
    return ClassifierFileError(
        problem, path=path, hint="Give a classifier written by 'omnict labels train' (or ReportClassifier.save)."
    )


def _read_document(path: Path) -> dict:
    """The file's top-level JSON object (gunzipped if needed), size-limited; never executes anything."""
    try:
        with open(path, "rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as error:
        raise ClassifierFileError("classifier file not found", path=path) from error
    except OSError as error:
        raise ClassifierFileError(f"cannot read classifier file ({error.strerror})", path=path) from error
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
                raw = stream.read(MAX_FILE_BYTES + 1)
        except (OSError, EOFError) as error:
            raise _refuse(path, f"not a classifier file (damaged gzip data: {error})") from error
    if len(raw) > MAX_FILE_BYTES:
        raise _refuse(path, f"not a classifier file (more than {MAX_FILE_BYTES // 2**20} MiB)")
    try:
        document = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise _refuse(path, f"not a classifier file (not JSON text: {error})") from error
    if not isinstance(document, dict) or "format" not in document:
        raise _refuse(path, "not a classifier file (no 'format' field)")
    return document


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name} in the file")


def _checked_payload(path: Path, document: dict) -> dict:
    if document.get("format") != FILE_FORMAT:
        raise _refuse(path, f"not a classifier file (format {document.get('format')!r}, expected {FILE_FORMAT!r})")
    if document.get("version") not in READABLE_VERSIONS:
        raise _refuse(
            path,
            f"unsupported classifier file version {document.get('version')!r} "
            f"(this omnict reads versions {', '.join(map(str, READABLE_VERSIONS))})",
        )
    payload = document.get("payload")
    if not isinstance(payload, dict):
        raise _refuse(path, "damaged classifier file (no payload object)")
    if document.get("sha256") != _payload_hash(payload):
        raise _refuse(path, "damaged or edited classifier file (sha256 checksum does not match the payload)")
    return payload


def _decode_array(path: Path, entry, where: str, shape: tuple) -> np.ndarray:
    """A float64 array from its JSON entry, checked for dtype, shape and finiteness."""
    if not isinstance(entry, dict) or entry.get("dtype") != _ARRAY_DTYPE or not isinstance(entry.get("base64"), str):
        raise _refuse(path, f"damaged classifier file ({where}: not a {_ARRAY_DTYPE} array entry)")
    if entry.get("shape") != list(shape):
        raise _refuse(path, f"damaged classifier file ({where}: shape {entry.get('shape')}, expected {list(shape)})")
    try:
        data = base64.b64decode(entry["base64"], validate=True)
    except ValueError as error:
        raise _refuse(path, f"damaged classifier file ({where}: bad base64 data)") from error
    if len(data) != 8 * int(np.prod(shape)):
        raise _refuse(path, f"damaged classifier file ({where}: {len(data)} bytes for shape {list(shape)})")
    values = np.frombuffer(data, dtype=_ARRAY_DTYPE).reshape(shape).astype(np.float64)
    if not np.isfinite(values).all():
        raise _refuse(path, f"damaged classifier file ({where}: non-finite numbers)")
    return values


def _vectorizer_params_problem(params: dict, analyzer: str) -> str | None:
    """What is wrong with saved vectorizer parameters, or None: only the values ``save`` can write pass."""
    ngram_range = params["ngram_range"]
    if params["analyzer"] != analyzer:
        return f"analyzer {params['analyzer']!r}, expected {analyzer!r}"
    if not (
        isinstance(ngram_range, list)
        and len(ngram_range) == 2
        and all(isinstance(n, int) and 1 <= n <= 10 for n in ngram_range)
        and ngram_range[0] <= ngram_range[1]
    ):
        return f"ngram_range {ngram_range!r}"
    if any(not isinstance(params[key], bool) for key in ("lowercase", "sublinear_tf", "smooth_idf")):
        return "lowercase, sublinear_tf and smooth_idf must be true or false"
    if params["use_idf"] is not True or params["norm"] not in ("l1", "l2", None):
        return f"use_idf {params['use_idf']!r} / norm {params['norm']!r}"
    if params["strip_accents"] not in (None, "ascii", "unicode"):
        return f"strip_accents {params['strip_accents']!r}"
    if not isinstance(params["token_pattern"], str) or params["token_pattern"] not in TOKEN_PATTERNS:
        return (
            f"token_pattern {str(params['token_pattern'])[:60]!r} is not one of the named patterns "
            f"{', '.join(TOKEN_PATTERNS)} (a file never supplies its own regular expression)"
        )
    return None


def _vectorizer_from_entry(path: Path, entry, name: str, version: int):
    """A :class:`~omnict_cli.labels.tfidf.FittedTfidf` with the saved parameters, vocabulary and idf.

    Not scikit-learn's TfidfVectorizer: applying a fitted vocabulary needs no scikit-learn, whose
    import would cost every ``score``, ``review`` and ``labels predict`` half a second.
    """
    from omnict_cli.labels.tfidf import FittedTfidf

    expected = {"word": "word", "char": "char_wb"}[name]
    if not isinstance(entry, dict) or not isinstance(entry.get("params"), dict):
        raise _refuse(path, f"damaged classifier file (vectorizer '{name}' has no parameters)")
    params = {key: entry["params"].get(key) for key in _VECTORIZER_PARAMS}
    if version == 1:  # version 1 wrote the expression itself: accepted only when it is a named one
        params["token_pattern"] = next(
            (known for known, pattern in TOKEN_PATTERNS.items() if pattern == params["token_pattern"]),
            params["token_pattern"],
        )
    problem = _vectorizer_params_problem(params, expected)
    if problem:
        raise _refuse(path, f"damaged classifier file (vectorizer '{name}': {problem})")
    terms = entry.get("terms")
    if not isinstance(terms, list) or not terms:
        raise _refuse(path, f"damaged classifier file (vectorizer '{name}' has no vocabulary)")
    if not all(isinstance(term, str) for term in terms) or len(set(terms)) != len(terms):
        raise _refuse(path, f"damaged classifier file (vectorizer '{name}': terms must be distinct strings)")
    try:
        # min_df and max_features only shaped the vocabulary at fit time; they are kept as a record
        transform_params = {key: params[key] for key in _VECTORIZER_PARAMS if key not in ("min_df", "max_features")}
        transform_params["ngram_range"] = tuple(params["ngram_range"])
        transform_params["token_pattern"] = TOKEN_PATTERNS[params["token_pattern"]]
        vectorizer = FittedTfidf(
            **transform_params,
            vocabulary_={term: i for i, term in enumerate(terms)},
            idf_=_decode_array(path, entry.get("idf"), f"{name} idf", (len(terms),)),
        )
    except (TypeError, ValueError) as error:
        raise _refuse(path, f"damaged classifier file (vectorizer '{name}': {error})") from error
    return vectorizer


def _classifier_from_payload(path: Path, payload: dict, version: int) -> ReportClassifier:
    if payload.get("classes") != list(CTRATE_ABNORMALITIES):
        raise _refuse(path, "classifier file has other classes than the 18 CT-RATE classes in CT-RATE order")
    metadata = payload.get("metadata") if isinstance(payload.get("metadata"), dict) else {}
    config_fields = set(ClassifierConfig.__dataclass_fields__)
    saved_config = {k: v for k, v in (metadata.get("config") or {}).items() if k in config_fields}
    model = ReportClassifier(ClassifierConfig(**saved_config))
    vectorizers = payload.get("vectorizers") or {}
    model.vectorizers = {
        name: _vectorizer_from_entry(path, vectorizers.get(name), name, version) for name in ("word", "char")
    }
    rules = payload.get("rule_features") or {}
    model.use_rule_features = bool(rules.get("used"))
    width = RULE_FEATURE_WIDTH if model.use_rule_features else 0
    if rules.get("width") != width:
        raise _refuse(path, f"classifier file expects {rules.get('width')} rule features, omnict has {width}")
    n_features = sum(len(v.vocabulary_) for v in model.vectorizers.values()) + width
    n_classes = len(CTRATE_ABNORMALITIES)
    linear, calibration = payload.get("linear") or {}, payload.get("calibration") or {}
    if calibration.get("method") != "platt":
        raise _refuse(path, f"unknown calibration method {calibration.get('method')!r}")
    model.coef = _decode_array(path, linear.get("coef"), "linear coef", (n_classes, n_features))
    model.intercept = _decode_array(path, linear.get("intercept"), "linear intercept", (n_classes,))
    model.platt_a = _decode_array(path, calibration.get("a"), "calibration a", (n_classes,))
    model.platt_b = _decode_array(path, calibration.get("b"), "calibration b", (n_classes,))
    model.metadata = metadata
    return model


# --------------------------------------------------------------------------
# The bundled model
# --------------------------------------------------------------------------

BUNDLED_MODEL = Path(__file__).resolve().parent / "data" / "ctrate_classifier.json.gz"
"""The classifier shipped with omnict, trained by ``benchmarks/train_bundled_labeler.py``."""

_default_cache: dict[str, ReportClassifier] = {}


def default_classifier() -> ReportClassifier:
    """The bundled classifier, loaded once per process."""
    if "bundled" not in _default_cache:
        if not BUNDLED_MODEL.exists():
            raise ClassifierFileError(
                "the bundled report classifier is missing from this installation",
                path=BUNDLED_MODEL,
                hint="Reinstall omnict, run benchmarks/train_bundled_labeler.py, or pass --model / use --method rules.",
            )
        _default_cache["bundled"] = ReportClassifier.load(BUNDLED_MODEL)
    return _default_cache["bundled"]


__all__ = [
    "ReportClassifier",
    "ClassifierConfig",
    "ClassifierFileError",
    "default_classifier",
    "fit_platt",
    "BUNDLED_MODEL",
    "FILE_FORMAT",
    "FILE_VERSION",
]
