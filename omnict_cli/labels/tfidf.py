"""TF-IDF features of a fitted vocabulary, computed the way scikit-learn's ``TfidfVectorizer.transform`` does.

Why not scikit-learn itself: importing ``sklearn.feature_extraction`` takes about half a second,
and every ``omnict score``, ``review`` and ``labels predict`` labels reports with the bundled
classifier, whose vectorizers are only *applied* (fitted once, at training, with scikit-learn).
Applying a fitted vocabulary is a few lines of numpy and scipy; :class:`FittedTfidf` does it with
the same analyzers (word n-grams of a token pattern; ``char_wb`` character n-grams padded inside
word boundaries), sublinear term frequency, idf weights and row normalisation, and keeps
scikit-learn's attribute names (``vocabulary_``, ``idf_``, ``ngram_range``, ...), so a classifier
file saved from it reads the same. ``tests/test_labels_tfidf.py`` checks the features equal
scikit-learn's on hundreds of reports.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

_WHITE_SPACES = re.compile(r"\s\s+")


@dataclass
class FittedTfidf:
    """A fitted TF-IDF vectorizer: analyzer settings, ``vocabulary_`` (term -> column) and ``idf_``."""

    analyzer: str
    ngram_range: tuple[int, int]
    token_pattern: str
    vocabulary_: dict[str, int]
    idf_: np.ndarray
    lowercase: bool = True
    strip_accents: str | None = None
    sublinear_tf: bool = True
    norm: str | None = "l2"
    use_idf: bool = True
    smooth_idf: bool = True
    min_df: int | float = 1
    max_features: int | None = None
    _tokens: re.Pattern = field(init=False, repr=False)

    def __post_init__(self):
        if self.analyzer not in ("word", "char_wb"):
            raise ValueError(f"analyzer must be 'word' or 'char_wb', got {self.analyzer!r}")
        self.ngram_range = tuple(self.ngram_range)
        self._tokens = re.compile(self.token_pattern)

    def transform(self, texts: list[str]) -> sparse.csr_matrix:
        """``[len(texts), len(vocabulary_)]`` float64 TF-IDF rows (unknown terms ignored)."""
        rows, columns, counts = [], [], []
        for row, text in enumerate(texts):
            found: dict[int, int] = {}
            for term in self._terms(text):
                column = self.vocabulary_.get(term)
                if column is not None:
                    found[column] = found.get(column, 0) + 1
            rows.extend([row] * len(found))
            columns.extend(found)
            counts.extend(found.values())
        shape = (len(texts), len(self.vocabulary_))
        matrix = sparse.csr_matrix((np.asarray(counts, dtype=np.float64), (rows, columns)), shape=shape)
        matrix.sort_indices()
        if self.sublinear_tf:
            np.log(matrix.data, matrix.data)
            matrix.data += 1.0
        if self.use_idf:
            matrix.data *= self.idf_[matrix.indices]
        return _normalised(matrix, self.norm)

    def _terms(self, text: str) -> list[str]:
        text = _preprocess(text, self.lowercase, self.strip_accents)
        low, high = self.ngram_range
        if self.analyzer == "char_wb":
            return _char_wb_ngrams(_WHITE_SPACES.sub(" ", text), low, high)
        return _word_ngrams(self._tokens.findall(text), low, high)


def _preprocess(text: str, lowercase: bool, strip_accents: str | None) -> str:
    if lowercase:
        text = text.lower()
    if strip_accents == "ascii":
        text = unicodedata.normalize("NFKD", text).encode("ASCII", "ignore").decode("ASCII")
    elif strip_accents == "unicode" and not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return text


def _word_ngrams(tokens: list[str], low: int, high: int) -> list[str]:
    """Every run of ``low``..``high`` consecutive tokens, joined by one space, shortest first."""
    terms = []
    for n in range(low, min(high, len(tokens)) + 1):
        terms.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return terms


def _char_wb_ngrams(text: str, low: int, high: int) -> list[str]:
    """Character n-grams of each space-padded word; a word shorter than n gives itself once."""
    terms = []
    for word in text.split():
        padded = f" {word} "
        for n in range(low, high + 1):
            terms.extend(padded[i : i + n] for i in range(max(len(padded) - n + 1, 1)))
            if len(padded) <= n:
                break
    return terms


def _normalised(matrix: sparse.csr_matrix, norm: str | None) -> sparse.csr_matrix:
    """Rows scaled to unit l1 or l2 length (empty rows stay empty).

    Each row's length is summed in index order (``cumsum`` adds one value after the other), as
    scikit-learn's normalisation does, so the features agree to the last bit with a model trained there.
    """
    if norm is None:
        return matrix
    values = matrix.data * matrix.data if norm == "l2" else np.abs(matrix.data)
    for start, end in zip(matrix.indptr[:-1], matrix.indptr[1:]):
        if end > start:
            length = np.cumsum(values[start:end])[-1]
            if length != 0.0:
                matrix.data[start:end] /= np.sqrt(length) if norm == "l2" else length
    return matrix
