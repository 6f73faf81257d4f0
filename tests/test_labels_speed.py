"""The rule labeler's shortcuts change nothing it says.

The labeler skips work three ways (see omnict_cli/labels/rules.py): a quick
"trigger" per lexicon term picks the terms worth trying in a sentence, a quick
"gate" per cue pattern tells whether the pattern is worth running on a clause,
and a sentence's candidate terms and what it says are cached. Each is only
correct if the trigger and gate match wherever the full pattern does, if a
sentence's candidates depend on its own words only, and if a cached sentence
reads the same in any report and section; these tests check exactly that on
real report sentences.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from omnict_cli.labels import rules
from omnict_cli.labels.corpus import training_corpus
from omnict_cli.labels.ctrate_io import read_reports, report_text

HELDOUT = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "heldout_reports.csv"


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    """Lower-cased sentences of the held-out reports and 300 corpus reports, and their clauses."""
    reports = training_corpus(300, seed=21) + (read_reports(HELDOUT) if HELDOUT.is_file() else [])
    found = {sentence.lower() for report in reports for sentence in rules.split_sentences(report_text(report))}
    found |= {clause for sentence in list(found) for clause in rules._clauses(sentence)}
    return sorted(found)


def test_every_term_trigger_matches_wherever_its_term_does(sentences):
    missed = [
        (term.label, term.regex.pattern, sentence)
        for term in rules._TERMS
        for sentence in sentences
        if term.regex.search(sentence) and not term.trigger.search(sentence)
    ]
    assert not missed, f"{len(missed)} misses, e.g. {missed[0]}"


def test_every_cue_gate_matches_wherever_its_cue_does(sentences):
    missed = [
        (pattern.pattern, sentence)
        for _, _, pattern, gate in rules._COMPILED_CUES
        for sentence in sentences
        if pattern.search(sentence) and not gate.search(sentence)
    ]
    assert not missed, f"{len(missed)} misses, e.g. {missed[0]}"


def test_a_sentences_candidate_terms_do_not_depend_on_its_neighbours(sentences):
    together = rules._scan_triggers(sentences)
    alone = {sentence: rules._scan_triggers([sentence])[sentence] for sentence in sentences}
    assert together == alone
    rules._CANDIDATE_CACHE.clear()
    assert rules._candidate_terms(sentences[:50] + sentences[:50]) == [alone[s] for s in sentences[:50] * 2]
    assert rules._candidate_terms(sentences[:50]) == [alone[s] for s in sentences[:50]]  # from the cache


def test_trigger_drops_boundaries_lookbehinds_and_leading_optional_words():
    assert rules._trigger(r"(?:lymph )?nodes?\b").pattern == "nodes?"
    assert rules._trigger(r"(?<!pericardial )effusions?\b").pattern == "effusions?"
    assert rules._trigger(r"\w*nodul\w*\b").pattern == r"nodul\w*+"
    assert rules._trigger(r"(?:a|b)+c").pattern == "(?:a|b)+c"  # a repeated group is not optional


def test_a_cached_sentence_reads_the_same_in_any_section_and_report():
    rules._cached_read_sentence.cache_clear()
    text = "Findings: No pleural effusion. Small nodule in the right lower lobe.\nImpression: No pleural effusion."
    first, second = rules.label_report(text), rules.label_report(text)
    assert rules._cached_read_sentence.cache_info().hits >= 3
    assert first.mentions == second.mentions
    assert [(m.label, m.state, m.section) for m in first.mentions] == [
        ("Pleural effusion", "negative", "findings"),
        ("Lung nodule", "positive", "findings"),
        ("Pleural effusion", "negative", "impression"),
    ]


def test_a_very_long_sentence_is_read_but_not_kept():
    rules._cached_read_sentence.cache_clear()
    rules._CANDIDATE_CACHE.clear()
    sentence = "Small nodule in the lung" + " and the lung" * 200 + "."
    assert [m.label for m in rules.label_report(sentence).mentions] == ["Lung nodule"]
    assert rules._cached_read_sentence.cache_info().currsize == 0 and not rules._CANDIDATE_CACHE


def test_a_sentence_repeated_in_other_case_keeps_its_own_words():
    rules._cached_read_sentence.cache_clear()
    result = rules.label_report("Small NODULE in the lung. Small nodule in the lung.")
    assert [m.term for m in result.mentions] == ["NODULE", "nodule"]
