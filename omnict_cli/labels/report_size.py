"""The longest report text the labelers read, and what happens to a longer one.

CT-RATE reports are a few kilobytes; a text of megabytes is a mistake (a whole
file pasted into one field, a runaway generation). The rule labeler is linear
in the text's length (about 2.2 CPU-seconds per MB of distinct sentences;
repeated sentences are read once) and the classifier's
character n-grams need about 150 MB of memory per MB of text, so without a
limit one 50 MB "report" would take minutes and gigabytes. A text longer than
:data:`MAX_REPORT_CHARS` is cut to its first ``MAX_REPORT_CHARS`` characters
(at the last space before the limit) with one warning, and labelled from that.
"""

from __future__ import annotations

import logging

MAX_REPORT_CHARS = 1 << 20
"""1,048,576 characters (1 MiB of ASCII text): several hundred times the longest CT-RATE report."""

log = logging.getLogger(__name__)


def within_size_limit(text: str) -> str:
    """``text`` itself, or its first :data:`MAX_REPORT_CHARS` characters (cut at a space) with a warning."""
    if len(text) <= MAX_REPORT_CHARS:
        return text
    cut = text.rfind(" ", MAX_REPORT_CHARS // 2, MAX_REPORT_CHARS + 1)
    kept = text[: cut if cut > 0 else MAX_REPORT_CHARS]
    log.warning(
        "a report of %s characters is longer than the labeler's limit of %s characters: "
        "only its first %s characters are labelled",
        f"{len(text):,}",
        f"{MAX_REPORT_CHARS:,}",
        f"{len(kept):,}",
    )
    return kept


__all__ = ["MAX_REPORT_CHARS", "within_size_limit"]
