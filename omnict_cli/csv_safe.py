"""The one CSV writer of omnict: cells are data, never formulas, and always encodable as UTF-8.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a
formula (and tab or carriage return lead to the same through some importers),
so a study named ``=cmd|' -C calc'!A0.nii.gz`` would become a command in
whoever opens the labels CSV. Every CSV omnict writes goes through
:func:`csv_text`: a string cell that starts with one of those characters gets
a leading ``'`` (what spreadsheets themselves show for text typed that way);
numbers are written as numbers (``-0.5`` is a value, not a formula). Lone
surrogates (a file name that was not UTF-8) become U+FFFD, so writing never
fails on them. :func:`plain_cell` undoes the ``'`` when omnict reads its own CSVs.
"""

from __future__ import annotations

import csv
import io
import numbers
import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes of a file name) replaced by U+FFFD."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def safe_cell(value) -> str:
    """One cell as text: numbers formatted, strings neutralised (see the module notes)."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, numbers.Number):
        return str(value)
    text = encodable("" if value is None else str(value))
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def plain_cell(text: str) -> str:
    """A cell as omnict wrote it, read back: the ``'`` :func:`safe_cell` added is removed."""
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS):
        return text[1:]
    return text


def csv_text(rows, line_end: str = "\n") -> str:
    """Rows (lists of cells, the header first) as CSV text, every cell through :func:`safe_cell`."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=line_end)
    for row in rows:
        writer.writerow([safe_cell(value) for value in row])
    return buffer.getvalue()
