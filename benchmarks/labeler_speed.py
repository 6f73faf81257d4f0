"""How fast does the rule labeler (``omnict_cli.labels.rules``) read reports?

Prints CPU-seconds (``time.process_time``) for:

(a) the 1 MB text of ``tests/test_labels_rules.py`` (three sentences repeated,
    test bound 5 CPU-s, target under 2.5): ``label_report`` as shipped, starting
    from empty sentence caches, and with the sentence caches off;
(b) a batch of whole reports: the held-out reports in ``benchmarks/data``, a
    slice of the training corpus (``omnict_cli.labels.corpus``) and any
    ``--reports`` file given (e.g. a ``demo-data`` folder's ``references.csv``),
    the same two ways.

Each line also gives texts/s, MB/s and the ratio to an in-process baseline:
every lexicon pattern of the classes, as written, run over the lower-cased
text (``re.findall``; no sentences, no cues), the bare term matching a regex
labeler starts from. On a shared machine the ratio moves less than the seconds.

``--against OLD_RULES_PY`` also times another version of rules.py on the same
texts, which gives a before/after in one process.

    python benchmarks/labeler_speed.py
    python benchmarks/labeler_speed.py --reports /tmp/ph/references.csv --corpus 2000
    git show 6bf58aa:omnict_cli/labels/rules.py > /tmp/old_rules.py
    python benchmarks/labeler_speed.py --against /tmp/old_rules.py
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import re
import sys
import time
from pathlib import Path

from omnict_cli.labels import rules
from omnict_cli.labels.corpus import training_corpus
from omnict_cli.labels.ctrate_io import read_reports, report_text

HELDOUT = Path(__file__).resolve().parent / "data" / "heldout_reports.csv"
TEST_SENTENCE = (
    "No pleural effusion was detected. Lymph nodes up to 8 mm in the mediastinum. "
    "Consolidation is seen in the right lower lobe, but no nodule. "
)
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


class _NothingKept(dict):
    """A candidate cache that keeps nothing."""

    def update(self, *args, **kwargs) -> None:
        pass


@contextlib.contextmanager
def sentence_cache_off():
    """Label with both sentence caches off (candidate terms and findings), so every sentence is read afresh."""
    findings, candidates = rules._sentence_findings, rules._CANDIDATE_CACHE
    rules._sentence_findings, rules._CANDIDATE_CACHE = rules._read_sentence, _NothingKept()
    try:
        yield
    finally:
        rules._sentence_findings, rules._CANDIDATE_CACHE = findings, candidates


def cpu_seconds(function, texts: list[str]) -> float:
    """CPU-seconds of ``function`` over every text, from empty sentence caches."""
    rules._cached_read_sentence.cache_clear()
    rules._CANDIDATE_CACHE.clear()
    started = time.process_time()
    for text in texts:
        function(text)
    return time.process_time() - started


_BASELINE_TERMS = [
    re.compile(pattern)
    for lexicon in (rules.FINDING_TERMS, rules.NORMAL_SUBJECTS)
    for patterns in lexicon.values()
    for pattern in patterns
]
_BASELINE_TERMS += [re.compile(pattern) for pattern in rules.STATION_NODE_TERMS]


def bare_term_matching(text: str) -> int:
    """The baseline: every lexicon pattern, as written, over the lower-cased text; the number of matches."""
    lowered = text.lower()
    return sum(len(term.findall(lowered)) for term in _BASELINE_TERMS)


def load_other_rules(path: Path):
    """Another version of rules.py (e.g. from ``git show REV:omnict_cli/labels/rules.py``) as a module."""
    spec = importlib.util.spec_from_file_location("other_rules", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["other_rules"] = module  # dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # any fault of that file: say which file and go on without it
        print(f"{path}: cannot be loaded as a rules module ({type(error).__name__}: {error}); left out")
        return None
    if not callable(getattr(module, "label_report", None)):
        print(f"{path}: has no label_report function; left out")
        return None
    return module


def measure(name: str, texts: list[str], other=None) -> list[str]:
    """Table rows for ``texts``: CPU-s, texts/s, MB/s and ratio to the baseline of each way of labelling."""
    baseline = cpu_seconds(bare_term_matching, texts)
    timed = [("label_report", cpu_seconds(rules.label_report, texts))]
    with sentence_cache_off():
        timed.append(("label_report, sentence cache off", cpu_seconds(rules.label_report, texts)))
    if other is not None:
        timed.append((f"label_report of {other.__file__}", cpu_seconds(other.label_report, texts)))
    timed.append(("baseline: re.findall of the class terms", baseline))
    megabytes = sum(map(len, texts)) / 1e6
    rows = []
    for how, seconds in timed:
        rows.append(
            f"| {name} | {how} | {seconds:.2f} | {len(texts) / seconds:,.1f} | {megabytes / seconds:.2f} "
            f"| {seconds / baseline:.2f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reports",
        type=Path,
        action="append",
        default=[],
        help="A CT-RATE style report CSV/JSONL to add to the batch (repeatable).",
    )
    parser.add_argument("--corpus", type=int, default=1000, help="Training-corpus reports in the batch.")
    parser.add_argument(
        "--against",
        type=Path,
        help="Another rules.py to time on the same texts "
        "(before/after in one process: git show REV:omnict_cli/labels/rules.py > old_rules.py).",
    )
    args = parser.parse_args()
    for path in args.reports + ([args.against] if args.against else []):
        if not path.is_file():
            raise SystemExit(f"{path}: no such file")
    other = load_other_rules(args.against) if args.against else None
    texts = batch_texts(args.reports, args.corpus)
    print("| texts | labeler | CPU-s | texts/s | MB/s | x baseline |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in measure("1 MB test text", [one_megabyte_text()], other):
        print(row)
    for row in measure(f"{len(texts):,} reports ({sum(map(len, texts)) / 1e6:.2f} MB)", texts, other):
        print(row)


if __name__ == "__main__":
    main()
