"""The bundled classifier's TF-IDF features, computed without scikit-learn, equal scikit-learn's bit for bit."""

import subprocess
import sys

import numpy as np
import pytest

from omnict_cli.labels.classifier import default_classifier
from omnict_cli.labels.corpus import training_corpus
from omnict_cli.labels.tfidf import FittedTfidf


def _reports() -> list[str]:
    texts = [f"{report.findings}\n{report.impression}" for report in training_corpus(300, seed=11)]
    # accents, tabs and runs of spaces, one letter, nothing: the edges of both analyzers
    return texts + ["Ça été  très   naïve\tcafé: no effusion.", "", "a", "x y", "  lung\n\nnodule  "]


@pytest.mark.parametrize("strip_accents", [None, "ascii", "unicode"])
def test_features_equal_scikit_learns_for_the_bundled_vocabularies(strip_accents):
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = _reports()
    for name, ours in default_classifier().vectorizers.items():
        assert isinstance(ours, FittedTfidf)
        ours.strip_accents = strip_accents
        theirs = TfidfVectorizer(
            analyzer=ours.analyzer,
            ngram_range=ours.ngram_range,
            token_pattern=ours.token_pattern,
            lowercase=ours.lowercase,
            strip_accents=strip_accents,
            sublinear_tf=ours.sublinear_tf,
            norm=ours.norm,
            use_idf=ours.use_idf,
            smooth_idf=ours.smooth_idf,
            vocabulary=ours.vocabulary_,
            dtype=np.float64,
        )
        theirs.idf_ = ours.idf_
        expected, got = theirs.transform(texts).toarray(), ours.transform(texts).toarray()
        assert got.shape == expected.shape and np.abs(got).sum() > 0, name
        np.testing.assert_array_equal(got, expected, err_msg=name)  # to the last bit


def test_labelling_a_report_imports_no_scikit_learn():
    probe = (
        "import sys\n"
        "from omnict_cli.labels.classifier import default_classifier\n"
        "from omnict_cli.labels.labeler import label_reports\n"
        "labels = label_reports(['Cardiomegaly is seen. No pleural effusion.'], model=default_classifier())\n"
        "print(int(labels.sum()), 'sklearn' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["1", "False"]
