"""Tests for omnict_cli.metrics: values computed by hand, sklearn agreement, published BLEU examples."""

from __future__ import annotations

import itertools
import math
import shutil
from collections import Counter

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from omnict_cli.errors import OmnictError
from omnict_cli.labels import CTRATE_ABNORMALITIES
from omnict_cli.metrics import (
    accuracy_ci,
    bertscore,
    bleu,
    bootstrap_ci,
    choice_correct,
    classification_report,
    closed_answer_correct,
    exact_match,
    macro_f1_ci,
    meteor,
    rouge_l,
    rouge_l_corpus,
    score_vqa,
    sentence_bleu,
    token_f1,
    tokenize,
)
from omnict_cli.metrics.text import align_unigrams, corpus_bleu_tokens, count_chunks, lcs_length, porter_stem

LABELS = list(CTRATE_ABNORMALITIES)


# --------------------------------------------------------------------------- classification


def test_classification_hand_computed_counts_and_scores():
    # 4 studies x 3 classes.
    #   class a: truth 1 1 0 0, pred 1 0 1 0 -> tp 1 fp 1 fn 1 tn 1: P = R = F1 = 1/2
    #   class b: truth 1 1 1 0, pred 1 1 1 1 -> tp 3 fp 1 fn 0: P 3/4, R 1, F1 = 6/7
    #   class c: truth 0 0 1 1, pred 0 0 0 0 -> tp 0 fp 0 fn 2: P 0 (nothing predicted), R 0, F1 0
    #   micro: tp 4 fp 2 fn 3 -> P 4/6, R 4/7, F1 = 8/13
    y_true = np.array([[1, 1, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]])
    y_pred = np.array([[1, 1, 0], [0, 1, 0], [1, 1, 0], [0, 1, 0]])
    report = classification_report(y_true, y_pred, ["a", "b", "c"])
    a, b, c = report.per_class
    assert (a.tp, a.fp, a.fn, a.tn, a.support) == (1, 1, 1, 1, 2)
    assert (a.precision, a.recall, a.f1) == pytest.approx((0.5, 0.5, 0.5))
    assert (b.precision, b.recall, b.f1) == pytest.approx((0.75, 1.0, 6 / 7))
    assert (c.precision, c.recall, c.f1, c.support) == (0.0, 0.0, 0.0, 2)
    assert report.macro_f1 == pytest.approx((0.5 + 6 / 7 + 0) / 3)
    assert report.macro_precision == pytest.approx((0.5 + 0.75 + 0) / 3)
    assert (report.micro_precision, report.micro_recall, report.micro_f1) == pytest.approx((4 / 6, 4 / 7, 8 / 13))
    assert report.n_samples == 4


def test_macro_f1_is_mean_of_class_f1_not_f1_of_macro_means():
    unequal = classification_report(np.array([[1, 1], [1, 1], [0, 1]]), np.array([[1, 0], [0, 1], [0, 1]]), ["x", "y"])
    # x: tp1 fn1 -> P 1, R .5, F1 2/3; y: tp2 fn1 -> P 1, R 2/3, F1 .8 -> macro F1 = 0.7333
    # F1 of macro P (1) and macro R (7/12) would be 0.7368: the report must use the mean of class F1.
    assert unequal.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2)


def test_class_with_nothing_to_score_is_nan_and_left_out_of_macro():
    # class a: tp 1 fn 1 -> P 1, R 1/2, F1 2/3; class b: never present, never predicted -> not defined;
    # class c: predicted once, never present -> P 0, R 0 (predicted but absent), F1 0.
    y_true = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 0]])
    y_pred = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 0]])
    report = classification_report(y_true, y_pred, ["a", "b", "c"])
    a, b, c = report.per_class
    assert math.isnan(b.precision) and math.isnan(b.recall) and math.isnan(b.f1) and not b.defined
    assert (c.precision, c.recall, c.f1) == (0.0, 0.0, 0.0) and c.defined
    assert report.undefined_labels == ["b"]
    assert report.macro_f1 == pytest.approx((2 / 3 + 0) / 2)  # mean over a and c only, not (2/3 + 1 + 0) / 3
    assert report.macro_precision == pytest.approx(0.5) and report.macro_recall == pytest.approx(0.25)
    assert (report.micro_precision, report.micro_recall) == pytest.approx((1 / 2, 1 / 2))


def test_nothing_to_score_in_any_class_gives_nan_macro_and_micro():
    report = classification_report(np.zeros((3, 2)), np.zeros((3, 2)), ["a", "b"])
    assert report.undefined_labels == ["a", "b"]
    for value in (
        report.macro_precision,
        report.macro_recall,
        report.macro_f1,
        report.micro_precision,
        report.micro_recall,
        report.micro_f1,
    ):
        assert math.isnan(value)


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_classification_agrees_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((60, 18)) < 0.25).astype(int)
    y_pred = (rng.random((60, 18)) < 0.3).astype(int)
    y_true[:, 4] = 0  # a class absent from every reference but predicted
    y_pred[:, 5] = 0  # a class present but never predicted
    empty = np.zeros(18, dtype=bool)
    empty[rng.choice(np.r_[0:4, 6:18], size=3, replace=False)] = True  # classes neither present nor predicted
    y_true[:, empty] = y_pred[:, empty] = 0
    report = classification_report(y_true, y_pred, LABELS)
    p0, r0, f0, support = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    pn, rn, fn, _ = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=np.nan)
    # NaN exactly where the class has nothing to score; sklearn's 0 rule for never predicted / never present
    expected_p, expected_r = np.where(empty, pn, p0), np.where(empty, rn, r0)
    assert np.isnan(fn).tolist() == empty.tolist() and np.isnan(expected_p).tolist() == empty.tolist()
    assert [c.precision for c in report.per_class] == pytest.approx(expected_p, nan_ok=True)
    assert [c.recall for c in report.per_class] == pytest.approx(expected_r, nan_ok=True)
    assert [c.f1 for c in report.per_class] == pytest.approx(fn, nan_ok=True)
    assert [c.support for c in report.per_class] == list(support)
    assert report.undefined_labels == [label for label, skip in zip(LABELS, empty) if skip]
    # sklearn's macro with zero_division=nan is the mean over the classes whose value is not NaN
    sklearn_macro_f1 = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=np.nan)[2]
    assert report.macro_f1 == pytest.approx(sklearn_macro_f1) == pytest.approx(np.nanmean(fn))
    assert report.macro_precision == pytest.approx(np.nanmean(expected_p))
    assert report.macro_recall == pytest.approx(np.nanmean(expected_r))
    micro = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)
    assert (report.micro_precision, report.micro_recall, report.micro_f1) == pytest.approx(micro[:3])
    assert report.per_class[5].precision == 0.0 and report.per_class[4].recall == 0.0


def test_identical_label_matrices_score_one_on_every_defined_class():
    rng = np.random.default_rng(1)
    labels = (rng.random((50, 18)) < 0.2).astype(int)
    labels[:, 3] = 0  # a class no study has
    report = classification_report(labels, labels.copy(), LABELS)
    defined = [c for c in report.per_class if c.label != LABELS[3]]
    assert all(c.precision == c.recall == c.f1 == 1.0 for c in defined)
    assert math.isnan(report.per_class[3].f1) and report.undefined_labels == [LABELS[3]]
    assert report.macro_precision == report.macro_recall == report.macro_f1 == report.micro_f1 == 1.0


def test_classification_rejects_bad_matrices():
    with pytest.raises(OmnictError, match=r"shape \(2, 3\) but predicted labels have shape \(2, 2\)"):
        classification_report(np.zeros((2, 3)), np.zeros((2, 2)), ["a", "b", "c"])
    with pytest.raises(OmnictError, match="only 0 and 1"):
        classification_report(np.array([[2, 0]]), np.array([[1, 0]]), ["a", "b"])
    with pytest.raises(OmnictError, match="no studies to score"):
        classification_report(np.zeros((0, 2)), np.zeros((0, 2)), ["a", "b"])
    with pytest.raises(OmnictError, match="3 label names given for 2 label columns"):
        classification_report(np.zeros((1, 2)), np.zeros((1, 2)), ["a", "b", "c"])


# --------------------------------------------------------------------------- tokenisation and BLEU


def test_tokenize_lowercases_splits_punctuation_and_keeps_decimals():
    assert tokenize("Right-sided 3.5 mm nodule.") == ["right", "-", "sided", "3.5", "mm", "nodule", "."]
    assert tokenize("") == []


PAPINENI_HYP = (
    "It is a guide to action which ensures that the military always obeys the commands of the party"
).split()
PAPINENI_REFS = [
    "It is a guide to action that ensures that the military will forever heed Party commands".split(),
    "It is the guiding principle which guarantees the military forces always being under the command of the Party".split(),
    "It is the practical guide for the army always to heed the directions of the party".split(),
]


def test_bleu_matches_the_papineni_example_values_published_with_nltk():
    # NLTK's documented results for Papineni et al.'s candidate 1 (case-sensitive tokens).
    sentence = corpus_bleu_tokens([PAPINENI_HYP], [PAPINENI_REFS])
    assert sentence["bleu1"] == pytest.approx(17 / 18)  # NLTK modified_precision example: 0.9444
    assert sentence["bleu4"] == pytest.approx(0.5045666840058485)
    second_hyp = "he read the book because he was interested in world history".split()
    second_ref = "he was interested in world history because he read the book".split()
    corpus = corpus_bleu_tokens([PAPINENI_HYP, second_hyp], [PAPINENI_REFS, [second_ref]])
    assert corpus["bleu4"] == pytest.approx(0.5920778868801042)


def test_bleu_hand_computed_with_and_without_smoothing():
    # hyp "the cat sat on the mat" vs ref "the cat is on the mat" (6 tokens each, BP = 1):
    #   p1 = 5/6 (sat unmatched), p2 = 3/5 (the cat, on the, the mat), p3 = 1/4 (on the mat), p4 = 0/3
    hyp, ref = "the cat sat on the mat", "the cat is on the mat"
    scores = bleu([hyp], [ref])
    assert scores["bleu1"] == pytest.approx(5 / 6)
    assert scores["bleu2"] == pytest.approx(math.sqrt(5 / 6 * 3 / 5))
    assert scores["bleu3"] == pytest.approx(0.5)  # (5/6 * 3/5 * 1/4) ** (1/3) = 0.125 ** (1/3)
    assert scores["bleu4"] == 0.0  # no 4-gram matches and no smoothing
    smoothed = sentence_bleu(hyp, ref)  # method1: p4 = 0.1 / 3
    assert smoothed["bleu4"] == pytest.approx((5 / 6 * 3 / 5 * 1 / 4 * 0.1 / 3) ** 0.25)
    add_one = sentence_bleu(hyp, ref, smoothing="method2")  # p_n = (m + 1) / (t + 1) for n >= 2
    assert add_one["bleu4"] == pytest.approx((5 / 6 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25)


def test_bleu_brevity_penalty_and_multiple_references():
    # "the cat" vs a 6-token reference: all n-grams match, BP = exp(1 - 6/2) = exp(-2).
    short = bleu(["the cat"], ["the cat sat on the mat"], max_n=2)
    assert short == pytest.approx({"bleu1": math.exp(-2), "bleu2": math.exp(-2)})
    # With a second 2-token reference the closest length is 2: no penalty.
    assert bleu(["the cat"], [["the cat sat on the mat", "the cat"]], max_n=2)["bleu2"] == pytest.approx(1.0)


def test_bleu_of_empty_texts_is_zero_and_bad_input_is_rejected():
    assert bleu([""], ["no effusion"]) == {"bleu1": 0.0, "bleu2": 0.0, "bleu3": 0.0, "bleu4": 0.0}
    assert bleu([""], [""])["bleu1"] == 0.0
    assert sentence_bleu("", "no effusion")["bleu4"] == 0.0
    with pytest.raises(OmnictError, match="2 hypotheses but 1 references"):
        bleu(["a", "b"], ["a"])
    with pytest.raises(OmnictError, match="unknown BLEU smoothing 'method7'"):
        sentence_bleu("a", "a", smoothing="method7")


# --------------------------------------------------------------------------- ROUGE-L


def _lcs_by_table(a, b):
    """Textbook O(len(a) * len(b)) LCS table, the oracle for the bit-parallel version."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_lcs_length_matches_the_dynamic_programme():
    rng = np.random.default_rng(3)
    for _ in range(200):
        a = list(rng.choice(list("abcd"), size=rng.integers(0, 30)))
        b = list(rng.choice(list("abcd"), size=rng.integers(0, 30)))
        assert lcs_length(a, b) == _lcs_by_table(a, b)


def test_rouge_l_hand_computed():
    # Lin (2004) Sec. 3.1: S1 "police killed the gunman"; S2 "police kill the gunman" has LCS 3
    # ("police the gunman") -> 0.75; S3 "the gunman kill police" has LCS 2 ("the gunman") -> 0.5.
    assert rouge_l("police kill the gunman", "police killed the gunman")["f1"] == pytest.approx(0.75)
    assert rouge_l("the gunman kill police", "police killed the gunman")["f1"] == pytest.approx(0.5)
    # Unequal lengths: LCS 3, P = 3/3, R = 3/4; F1 = 2 * .75 / 1.75; F(beta=1.2) = 2.44 * .75 / (.75 + 1.44).
    scores = rouge_l("police the gunman", "police killed the gunman")
    assert (scores["precision"], scores["recall"]) == pytest.approx((1.0, 0.75))
    assert scores["f1"] == pytest.approx(1.5 / 1.75)
    assert scores["f_beta"] == pytest.approx(2.44 * 0.75 / 2.19)
    assert rouge_l("", "police")["f1"] == 0.0 and rouge_l("", "")["f_beta"] == 0.0


def test_rouge_l_corpus_is_the_mean_of_pairs():
    pairs = (["police kill the gunman", "the gunman kill police"], ["police killed the gunman"] * 2)
    assert rouge_l_corpus(*pairs) == pytest.approx((0.75 + 0.5) / 2)
    with pytest.raises(OmnictError, match="unknown ROUGE-L measure"):
        rouge_l_corpus(*pairs, measure="f2")


# --------------------------------------------------------------------------- METEOR and Porter


@pytest.mark.parametrize(
    "word, stem",
    [
        ("caresses", "caress"),
        ("ponies", "poni"),
        ("cats", "cat"),
        ("feed", "feed"),
        ("agreed", "agre"),
        ("plastered", "plaster"),
        ("motoring", "motor"),
        ("sing", "sing"),
        ("hopping", "hop"),
        ("falling", "fall"),
        ("filing", "file"),
        ("happy", "happi"),
        ("sky", "sky"),
        ("relational", "relat"),
        ("conditional", "condit"),
        ("generalization", "gener"),
        ("oscillators", "oscil"),
        ("adjustment", "adjust"),
        ("controlling", "control"),
        ("effusions", "effus"),
        ("effusion", "effus"),
        ("opacities", "opac"),
        ("opacity", "opac"),
    ],
)
def test_porter_stemmer_known_outputs(word, stem):
    # Examples from Porter (1980) and his published sample vocabulary, plus radiology words.
    assert porter_stem(word) == stem


def test_meteor_hand_computed():
    # hyp [the small nodule] vs ref [a small nodule in the lung]: 3 matches, P = 1, R = 1/2,
    # Fmean = PR / (0.9P + 0.1R) = 0.5 / 0.95; chunks: "the" and "small nodule" -> 2;
    # penalty = 0.5 * (2/3)^3.
    expected = (0.5 / 0.95) * (1 - 0.5 * (2 / 3) ** 3)
    assert meteor("the small nodule", "a small nodule in the lung") == pytest.approx(expected)
    # Stem match: effusions ~ effusion; 2 matches in 1 chunk -> 1 - 0.5 * (1/2)^3.
    assert meteor("pleural effusions", "pleural effusion") == pytest.approx(0.9375)
    # Identical 4-token text: one chunk still costs 0.5 * (1/4)^3.
    assert meteor("no pleural effusion seen", "no pleural effusion seen") == pytest.approx(1 - 0.5 / 64)


def test_meteor_alignment_minimises_chunks():
    # hyp "the cat the dog" vs ref "the dog the cat": aligning "the dog"->"the dog" and
    # "the cat"->"the cat" gives 2 chunks (NLTK's right-to-left greedy pairs the wrong "the"s: 4 chunks).
    hyp, ref = tokenize("the cat the dog"), tokenize("the dog the cat")
    alignment = align_unigrams(hyp, ref)
    assert len(alignment) == 4 and count_chunks(alignment) == 2
    assert meteor("the cat the dog", "the dog the cat") == pytest.approx(1 - 0.5 * (2 / 4) ** 3)


def _fewest_chunks_by_brute_force(hyp, ref):
    """Minimum chunk count over every maximum one-to-one matching of equal tokens."""
    choices_per_word = []
    for word in set(hyp) & set(ref):
        hyp_at = [i for i, token in enumerate(hyp) if token == word]
        ref_at = [j for j, token in enumerate(ref) if token == word]
        k = min(len(hyp_at), len(ref_at))
        choices_per_word.append(
            [list(zip(hs, rs)) for hs in itertools.combinations(hyp_at, k) for rs in itertools.permutations(ref_at, k)]
        )
    return min(
        count_chunks([pair for part in combo for pair in part]) for combo in itertools.product(*choices_per_word)
    )


def test_meteor_alignment_is_maximal_and_near_minimal_in_chunks():
    rng = np.random.default_rng(0)
    above_minimum = 0
    for _ in range(300):
        hyp = list(rng.choice(list("abcd"), size=rng.integers(1, 8)))
        ref = list(rng.choice(list("abcd"), size=rng.integers(1, 8)))
        alignment = align_unigrams(hyp, ref)
        assert len(alignment) == sum((Counter(hyp) & Counter(ref)).values())  # as many matches as possible
        if alignment:
            extra = count_chunks(alignment) - _fewest_chunks_by_brute_force(hyp, ref)
            assert extra in (0, 1)
            above_minimum += extra
    assert above_minimum <= 6  # at most 2 % of these adversarial cases miss the minimum by one chunk


def test_meteor_empty_and_multiple_references():
    assert meteor("", "no effusion") == 0.0 and meteor("", "") == 0.0
    assert meteor("pleural effusion", ["nothing alike", "pleural effusion"]) == pytest.approx(1 - 0.5 / 8)


# --------------------------------------------------------------------------- token F1 / EM


def test_token_f1_and_exact_match_follow_squad():
    # "the pleural effusion" -> [pleural, effusion]; "pleural effusion, small" -> [pleural, effusion, small]:
    # shared 2, P = 1, R = 2/3, F1 = 0.8.
    assert token_f1("The pleural effusion", "pleural effusion, small") == pytest.approx(0.8)
    assert token_f1("liver", "spleen") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("the", "") == 1.0 and token_f1("", "liver") == 0.0
    assert exact_match("The Left lung.", "left lung") and not exact_match("left lung", "right lung")


def test_identical_reports_score_one_on_every_text_metric():
    report = (
        "Cardiomegaly is present. There is a 6.5 mm nodule in the right upper lobe. "
        "No pleural effusion. Mild emphysema."
    )
    assert bleu([report, report], [report, report]) == pytest.approx({f"bleu{n}": 1.0 for n in range(1, 5)})
    assert rouge_l(report, report)["f1"] == rouge_l(report, report)["f_beta"] == 1.0
    assert token_f1(report, report) == 1.0 and exact_match(report, report)
    assert meteor(report, report) == pytest.approx(1 - 0.5 / len(tokenize(report)) ** 3)


# --------------------------------------------------------------------------- VQA


@pytest.mark.parametrize(
    "prediction, reference, correct",
    [
        ("Yes.", "yes", True),
        ("yes, there is a nodule in the right lung", "Yes", True),
        ("No", "no", True),
        ("No.", "Yes", False),
        ("There is no effusion.", "no", False),  # the leading word decides; "there" decides nothing
        ("", "yes", False),
        ("Left.", "left", True),
        ("left, in the apex", "left", True),
        ("leftward", "left", False),
    ],
)
def test_closed_answer_correct(prediction, reference, correct):
    assert closed_answer_correct(prediction, reference) is correct


OPTIONS = ["Pleural effusion", "Atelectasis", "Effusion", "Emphysema"]


@pytest.mark.parametrize(
    "prediction, reference, correct",
    [
        ("A", "A", True),
        ("(A)", "Pleural effusion", True),
        ("A.", "a", True),
        ("Answer: A", "A", True),
        ("The answer is (B) Atelectasis", "B", True),
        ("Option B is correct.", "B", True),
        ("b) atelectasis", "B", True),
        ("The answer is a pleural effusion", "A", True),  # lower-case "a" after "is" is an article
        ("pleural effusion", "A", True),
        ("There is a pleural effusion.", "A", True),  # mentions "pleural effusion" (and "effusion" inside it)
        ("Effusion", "C", True),
        ("A pleural effusion is present", "A", True),  # "A" followed by a word is an article, not a letter
        ("B", "A", False),
        ("atelectasis or emphysema", "B", False),  # two options named: undecided
        ("I am not sure", "A", False),
    ],
)
def test_choice_correct(prediction, reference, correct):
    assert choice_correct(prediction, reference, OPTIONS) is correct


def test_choice_options_with_their_own_letters():
    options = ["A. Liver", "B. Spleen", "C. Kidney"]
    assert choice_correct("B", "Spleen", options)
    assert choice_correct("spleen", "B", options)
    assert not choice_correct("C. Kidney", "B", options)


def test_choice_reference_must_name_an_option():
    with pytest.raises(OmnictError, match="reference 'Pancreas' is neither an option letter nor an option text"):
        choice_correct("A", "Pancreas", ["Liver", "Spleen"])


def test_score_vqa_counts_and_open_scores():
    rows = [
        {"question": "Is there effusion?", "answer": "Yes, small.", "reference": "yes", "kind": "closed"},
        {"question": "Is there a nodule?", "answer": "No.", "reference": "yes", "kind": "closed"},
        {"question": "Which?", "answer": "(B)", "reference": "Atelectasis", "kind": "choice", "options": OPTIONS},
        {"question": "Where?", "answer": "The right lower lobe", "reference": "right lower lobe", "kind": "open"},
        {"question": "What?", "answer": "pleural effusion", "reference": "pleural effusion, small", "kind": "open"},
    ]
    scores = score_vqa(rows)
    assert (scores.closed.n_correct, scores.closed.n_total, scores.closed.accuracy) == (1, 2, 0.5)
    assert scores.closed.correct == [True, False]
    assert (scores.choice.n_correct, scores.choice.n_total) == (1, 1)
    assert scores.open.n_total == 2
    assert scores.open.token_f1 == pytest.approx((1.0 + 0.8) / 2)
    assert scores.open.exact_match == pytest.approx(0.5)
    expected_bleu = bleu(["The right lower lobe", "pleural effusion"], ["right lower lobe", "pleural effusion, small"])
    assert scores.open.bleu1 == pytest.approx(expected_bleu["bleu1"])
    assert 0.0 < scores.open.rouge_l < 1.0 and 0.0 < scores.open.meteor < 1.0
    assert score_vqa([]).closed is None


def test_score_vqa_names_the_file_and_row_of_a_bad_row():
    good = {"answer": "yes", "reference": "yes", "kind": "closed"}
    with pytest.raises(OmnictError, match=r"answers\.jsonl: row 2 has no text for reference"):
        score_vqa([good, {"answer": "yes", "kind": "closed"}], source="answers.jsonl")
    with pytest.raises(OmnictError, match="row 1 has kind 'free'"):
        score_vqa([{**good, "kind": "free"}])
    with pytest.raises(OmnictError, match="row 1 is a multiple-choice question without options"):
        score_vqa([{**good, "kind": "choice"}])
    with pytest.raises(OmnictError, match="question 'Which organ\\?': reference 'Heart' is neither"):
        score_vqa(
            [
                {
                    "question": "Which organ?",
                    "answer": "A",
                    "reference": "Heart",
                    "kind": "choice",
                    "options": ["Liver", "Lung"],
                }
            ]
        )


# --------------------------------------------------------------------------- bootstrap


def _label_matrices(n_studies, seed):
    rng = np.random.default_rng(seed)
    truth = (rng.random((n_studies, 18)) < 0.25).astype(int)
    flips = rng.random((n_studies, 18)) < 0.2
    return truth, np.where(flips, 1 - truth, truth)


def test_macro_f1_ci_matches_generic_bootstrap_and_contains_the_estimate():
    truth, predicted = _label_matrices(120, seed=2)
    point = classification_report(truth, predicted, LABELS).macro_f1
    low, high = macro_f1_ci(truth, predicted, n_resamples=200, seed=5)
    assert low < point < high
    generic = bootstrap_ci(
        lambda idx: classification_report(truth[idx], predicted[idx], LABELS).macro_f1, n=120, n_resamples=200, seed=5
    )
    assert (low, high) == pytest.approx(generic)


def test_macro_f1_ci_averages_the_classes_defined_in_each_resample():
    truth, predicted = _label_matrices(40, seed=3)
    truth[:, [2, 9]] = predicted[:, [2, 9]] = 0  # two classes with nothing to score anywhere
    truth[:, 11] = predicted[:, 11] = 0
    truth[0, 11] = predicted[1, 11] = 1  # one class defined only in resamples that draw study 0 or 1
    low, high = macro_f1_ci(truth, predicted, n_resamples=200, seed=4)
    generic = bootstrap_ci(
        lambda idx: classification_report(truth[idx], predicted[idx], LABELS).macro_f1, n=40, n_resamples=200, seed=4
    )
    assert not math.isnan(low) and (low, high) == pytest.approx(generic)
    assert low < classification_report(truth, predicted, LABELS).macro_f1 < high


def test_bootstrap_drops_resamples_with_nothing_to_score():
    # Only study 0 has anything: class a found (F1 1), class b missed (F1 0); class c never occurs.
    # Resamples with study 0 score (1 + 0) / 2 = 0.5; resamples without it have no defined class and
    # are dropped. (Scoring empty classes 1.0 would give 2/3 and 1.0 instead.)
    truth = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 0]])
    predicted = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    assert macro_f1_ci(truth, predicted, n_resamples=200, seed=0) == (0.5, 0.5)
    generic = bootstrap_ci(
        lambda idx: classification_report(truth[idx], predicted[idx], ["a", "b", "c"]).macro_f1,
        n=3,
        n_resamples=200,
        seed=0,
    )
    assert generic == (0.5, 0.5)
    low, high = macro_f1_ci(np.zeros((3, 2)), np.zeros((3, 2)), n_resamples=50)
    assert math.isnan(low) and math.isnan(high)  # no resample has anything to score


def test_accuracy_ci_contains_estimate_narrows_with_more_studies_and_is_seeded():
    rng = np.random.default_rng(0)
    small = rng.random(100) < 0.7
    large = rng.random(3000) < 0.7
    low_s, high_s = accuracy_ci(small)
    low_l, high_l = accuracy_ci(large)
    assert low_s <= small.mean() <= high_s and low_l <= large.mean() <= high_l
    assert high_l - low_l < (high_s - low_s) / 2  # width shrinks like 1/sqrt(n)
    per_row_scores = rng.random(100)  # continuous scores, so different resamples give different bounds
    assert accuracy_ci(per_row_scores, seed=3) == accuracy_ci(per_row_scores, seed=3)
    assert accuracy_ci(per_row_scores, seed=3) != accuracy_ci(per_row_scores, seed=4)
    assert accuracy_ci(small) == pytest.approx(bootstrap_ci(lambda idx: small[idx].mean(), n=100))


def test_bootstrap_rejects_bad_settings():
    with pytest.raises(OmnictError, match="0 studies"):
        accuracy_ci(np.array([]))
    with pytest.raises(OmnictError, match="confidence must be between 0 and 1"):
        accuracy_ci(np.ones(5), confidence=95)
    with pytest.raises(OmnictError, match=r"10,000,000 bootstrap resamples is more than the cap of 100,000"):
        macro_f1_ci(np.ones((5, 3)), np.ones((5, 3)), n_resamples=10_000_000)
    with pytest.raises(OmnictError, match="cap of 100,000"):
        accuracy_ci(np.ones(5), n_resamples=100_001)


def test_resamples_drawn_in_blocks_equal_one_draw(monkeypatch):
    from omnict_cli.metrics import bootstrap

    truth, predicted = _label_matrices(50, seed=7)
    whole = bootstrap.resample_indices(50, 300, seed=2)
    interval = macro_f1_ci(truth, predicted, n_resamples=300, seed=2)
    monkeypatch.setattr(bootstrap, "BLOCK_ELEMENTS", 50 * 7)  # blocks of 7 resamples
    assert np.array_equal(bootstrap.resample_indices(50, 300, seed=2), whole)
    assert macro_f1_ci(truth, predicted, n_resamples=300, seed=2) == interval


# --------------------------------------------------------------------------- BERTScore


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A randomly initialised 2-layer BERT (hidden size 32) with a word-level vocabulary, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    model_dir = tmp_path_factory.mktemp("tiny_bert")
    words = "no pleural effusion is seen there a large nodule in the right left lung".split()
    (model_dir / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + words))
    tokenizer = BertTokenizer(str(model_dir / "vocab.txt"))
    tokenizer.save_pretrained(model_dir)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(model_dir, safe_serialization=True)
    return model_dir


def test_bertscore_identical_is_one_and_different_is_lower(tiny_bert_dir):
    hyps = ["no pleural effusion is seen.", "a large nodule in the right lung", ""]
    refs = ["no pleural effusion is seen.", "there is no nodule in the left lung", "no effusion"]
    scores = bertscore(hyps, refs, str(tiny_bert_dir), batch_size=2)
    identical, different, empty = scores["f1_per_pair"]
    assert identical == pytest.approx(1.0, abs=1e-5)
    assert different < 0.99
    assert empty == 0.0
    assert scores["f1"] == pytest.approx((identical + different + empty) / 3)
    weighted = bertscore(hyps[:2], refs[:2], str(tiny_bert_dir), layer=1, idf=True)
    assert weighted["f1_per_pair"][0] == pytest.approx(1.0, abs=1e-5)
    assert weighted["f1_per_pair"][1] < 0.99
    # One reference: every token occurs in all (1) references, idf = 0 everywhere -> equal weights.
    assert bertscore(hyps[:1], refs[:1], str(tiny_bert_dir), idf=True)["f1"] == pytest.approx(1.0, abs=1e-5)


def test_bertscore_refuses_a_directory_without_safetensors(tiny_bert_dir, tmp_path):
    import torch
    from transformers import BertModel

    # The same model with its weights as a pickled pytorch_model.bin only (written, never read back).
    pickled_dir = tmp_path / "pickled"
    shutil.copytree(tiny_bert_dir, pickled_dir)
    model = BertModel.from_pretrained(tiny_bert_dir, local_files_only=True, use_safetensors=True)
    for weights in pickled_dir.glob("*.safetensors"):
        weights.unlink()
    torch.save(model.state_dict(), pickled_dir / "pytorch_model.bin")
    with pytest.raises(OmnictError, match=rf"{pickled_dir}: BERTScore model directory has no \*\.safetensors"):
        bertscore(["a"], ["a"], str(pickled_dir))
    with pytest.raises(OmnictError, match="BERTScore model directory does not exist"):
        bertscore(["a"], ["a"], str(tmp_path / "missing"))
    with pytest.raises(OmnictError, match="layer 5 does not exist; the model has layers 0..2"):
        bertscore(["a"], ["a"], str(tiny_bert_dir), layer=5)


def test_the_score_command_refuses_more_bootstrap_resamples_than_the_cap_before_any_work():
    from click.testing import CliRunner

    from omnict_cli.cli import main
    from omnict_cli.metrics.bootstrap import MAX_RESAMPLES

    result = CliRunner().invoke(
        main, ["score", "missing.jsonl", "--references", "missing.csv", "--bootstrap", str(MAX_RESAMPLES + 1)]
    )
    assert result.exit_code == 2 and "--bootstrap" in result.output
    assert f"{MAX_RESAMPLES + 1}" in result.output
    allowed = CliRunner().invoke(
        main, ["score", "missing.jsonl", "--references", "missing.csv", "--bootstrap", str(MAX_RESAMPLES)]
    )
    assert "--bootstrap" not in allowed.output  # the cap itself is accepted: the two limits agree
