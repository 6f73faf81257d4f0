"""The one way a value gets into a review page: strings escaped, numbers formatted, never interpolated raw.

A findings file is data from elsewhere (a colleague's run, a hand edit, a
file crafted to attack whoever reviews it): a ``shape`` of
``["<script>...</script>", 1, 1]`` or a ``timing_s`` of strings must show as
text. So every value from a record, a file name or a score passes through
:func:`text` or :func:`number` on its way into HTML, in element content and
in attributes alike (``html.escape`` quotes ``"`` and ``'`` too). Lone
surrogates (file names that were not UTF-8) become U+FFFD, so the page can
always be written as UTF-8.
"""

from __future__ import annotations

import math
import numbers
from html import escape

from omnict_cli.csv_safe import encodable


def text(value) -> str:
    """Any value as escaped HTML text (``None`` is empty)."""
    return escape(encodable("" if value is None else str(value)), quote=True)


def number(value, spec: str = "") -> str:
    """A number formatted with ``spec`` (default: whole numbers as they are, others ``"g"``); anything else as text."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return text(value)
        if not spec:
            spec = "d" if isinstance(value, numbers.Integral) else "g"
        try:
            return format(value, spec)
        except (TypeError, ValueError):  # "d" of a float
            return format(float(value), "g")
    return text(value)
