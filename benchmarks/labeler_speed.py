"""How fast does the rule labeler (``omnict_cli.labels.rules``) read reports?

Prints CPU-seconds (``time.process_time``) for:

(a) the 1 MB text of ``tests/test_labels_rules.py`` (three sentences repeated,
    test bound 5 CPU-s, target under 2.5): ``label_report`` as shipped, starting
    from empty sentence caches, and with the sentence caches off;
(b) a batch of whole reports: the held-out reports in ``benchmarks/data``, a
    slice of the training corpus (``omnict_cli.labels.corpus``) and any
    ``--reports`` file given (e.g. a ``demo-data`` folder's ``references.csv``),
    in reports/s, the same two ways.

Before/after a change cannot be timed in one process, so each line also gives
the ratio against an in-process baseline that does the least any labeler must
do: every lexicon pattern of the classes, as written, run over the
lower-cased text (``re.findall``, no sentences, no cues). The ratio says how many times that
bare matching the labeler costs, and moves little with the machine's speed.

    python benchmarks/labeler_speed.py
    python benchmarks/labeler_speed.py --reports /tmp/ph/references.csv --corpus 2000
"""

from __future__ import annotations

import argparse
import contextlib
import re
import time
from pathlib import Path

from omnict_cli.labels import rules
from omnict_cli.labels.corpus import training_corpus
from omnict_cli.labels.ctrate_io import read_reports, report_text

HELDOUT = Path(__file__).resolve().parent / "data" / "heldout_reports.csv"
TEST_SENTENCE = ("No pleural effusion was detected. Lymph nodes up to 8 mm in the mediastinum. "
                 "Consolidation is seen in the right lower lobe, but no nodule. ")
"""The sentence tests/test_labels_rules.py repeats to 1 MB."""


def one_megabyte_text() -> str:
    """The 1 MB text of the labeler's speed test."""
    return (TEST_SENTENCE * (1_000_000 // len(TEST_SENTENCE) + 1))[:1_000_000]


def batch_texts(extra_reports: list[Path], corpus_size: int) -> list[str]:
    """Whole report texts: the held-out set, ``corpus_size`` corpus reports and every ``extra_reports`` file."""
    reports = read_reports(HELDOUT) + training_corpus(corpus_size, seed=11)
    for path in extra_reports:
        reports += read_reports(path)
    return [report_text(report) for report in reports]


_CACHED_READER = rules._sentence_findings
"""The labeler's sentence reader with its cache (``functools.lru_cache``)."""


class _NothingKept(dict):
    """A candidate cache that keeps nothing."""

    def update(self, *args, **kwargs) -> None:
        pass


@contextlib.contextmanager
def sentence_cache_off():
    """Label with both sentence caches off (candidate terms and findings), so every sentence is read afresh."""
    candidates = rules._CANDIDATE_CACHE
    rules._sentence_findings, rules._CANDIDATE_CACHE = _CACHED_READER.__wrapped__, _NothingKept()
    try:
        yield
    finally:
        rules._sentence_findings, rules._CANDIDATE_CACHE = _CACHED_READER, candidates


def cpu_seconds(function, texts: list[str]) -> float:
    """CPU-seconds of ``function`` over every text, from empty sentence caches."""
    _CACHED_READER.cache_clear()
    rules._CANDIDATE_CACHE.clear()
    started = time.process_time()
    for text in texts:
        function(text)
    return time.process_time() - started


_BASELINE_TERMS = [re.compile(pattern) for lexicon in (rules.FINDING_TERMS, rules.NORMAL_SUBJECTS)
                   for patterns in lexicon.values() for pattern in patterns]
_BASELINE_TERMS += [re.compile(pattern) for pattern in rules.STATION_NODE_TERMS]


def bare_term_matching(text: str) -> int:
    """The baseline: every lexicon pattern, as written, over the lower-cased text; the number of matches."""
    lowered = text.lower()
    return sum(len(term.findall(lowered)) for term in _BASELINE_TERMS)


def measure(name: str, texts: list[str]) -> list[str]:
    """Table rows for ``texts``: shipped, cache off and baseline CPU-s, texts/s, MB/s and ratio to the baseline."""
    baseline = cpu_seconds(bare_term_matching, texts)
    shipped = cpu_seconds(rules.label_report, texts)
    with sentence_cache_off():
        uncached = cpu_seconds(rules.label_report, texts)
    megabytes = sum(map(len, texts)) / 1e6
    rows = []
    for how, seconds in (("label_report", shipped), ("label_report, sentence cache off", uncached),
                         ("baseline: re.findall of the class terms", baseline)):
        rows.append(f"| {name} | {how} | {seconds:.2f} | {len(texts) / seconds:,.1f} | {megabytes / seconds:.2f} "
                    f"| {seconds / baseline:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=Path, action="append", default=[],
                        help="A CT-RATE style report CSV/JSONL to add to the batch (repeatable).")
    parser.add_argument("--corpus", type=int, default=1000, help="Training-corpus reports in the batch.")
    args = parser.parse_args()
    for path in args.reports:
        if not path.is_file():
            raise SystemExit(f"{path}: no such report file")
    texts = batch_texts(args.reports, args.corpus)
    print("| texts | labeler | CPU-s | texts/s | MB/s | x baseline |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in measure("1 MB test text", [one_megabyte_text()]):
        print(row)
    for row in measure(f"{len(texts):,} reports ({sum(map(len, texts)) / 1e6:.2f} MB)", texts):
        print(row)


if __name__ == "__main__":
    main()
