"""Choose the segmenter for a run: TotalSegmentator when it can run here, else the built-in one.

``auto`` must never surprise a user: when it falls back to the built-in
threshold segmenter it says so in one line, naming ``TOTALSEG_HOME_DIR``,
because the masks (and so the cache entries and answers) differ. Asking for
``totalsegmentator`` explicitly fails with the same explanation instead of
falling back. Both backends are imported only here and only when chosen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from omnict_cli.segmentation.base import Segmenter

log = logging.getLogger(__name__)

SEGMENTER_CHOICES = ("auto", "totalsegmentator", "builtin")


def make_segmenter(
    name: str = "auto", fast: bool = False, device: str = "auto", notify: Callable[[str], None] | None = None
) -> Segmenter:
    """The segmenter called ``name`` (``auto``, ``totalsegmentator`` or ``builtin``).

    ``auto`` is TotalSegmentator when its package is installed and its
    weights are on disk, else the built-in segmenter; the fallback notice
    goes to ``notify`` (default: a logging warning). ``totalsegmentator``
    raises ``SegmenterUnavailable`` (an ``OmnictError``) with what to do
    when it cannot run. ``fast`` and ``device`` only matter to TotalSegmentator.
    """
    if name not in SEGMENTER_CHOICES:
        raise ValueError(f"unknown segmenter {name!r}; one of: {', '.join(SEGMENTER_CHOICES)}")
    if name == "builtin":
        return _builtin()
    from omnict_cli.segmentation.totalseg import (
        HOME_ENV,
        SegmenterUnavailable,
        TotalSegmentatorSegmenter,
        totalsegmentator_status,
    )

    available, message = totalsegmentator_status(fast)
    if available:
        return TotalSegmentatorSegmenter(fast=fast, device=device)
    message = message.rstrip(".") + "."
    if HOME_ENV not in message:
        message += f" With TotalSegmentator installed, set {HOME_ENV} to a folder holding its weights."
    if name == "totalsegmentator":
        raise SegmenterUnavailable(message)
    (notify or log.warning)(fallback_notice(message))
    return _builtin()


def fallback_notice(message: str) -> str:
    """The one line ``auto`` says when it falls back: why (the first sentence of ``message``) and where to read on."""
    from omnict_cli.segmentation.totalseg import HOME_ENV

    reason = message.split(". ")[0].rstrip(".")
    return (
        f"using the built-in segmenter (coarse organ masks, no abdominal organs): {reason} "
        f'(install: pip install -e ".[seg]"; weights: ${HOME_ENV}; see docs/segmentation-totalseg.md)'
    )


def _builtin() -> Segmenter:
    from omnict_cli.segmentation.builtin import BuiltinSegmenter

    return BuiltinSegmenter()
