"""Per-class precision / recall / F1 as an inline SVG bar chart (no plotting library, no script).

One row per class, three horizontal bars (precision, recall, F1) on a 0-100
scale, the value written at each bar's end. A class with nothing to score
(NaN: no reference positive and no prediction) shows "n/a" and no bars, as
``omnict score`` prints it; a class with all three at 0 says "0.0 (no true
positive)" once instead of three labels on top of each other.
"""

from __future__ import annotations

import math

from omnict_cli.review.html_values import text

METRICS = (("precision", "#4e79a7"), ("recall", "#f28e2b"), ("f1", "#59a14f"))
LABEL_WIDTH = 250
BAR_AREA = 360
BAR_HEIGHT = 6
ROW_HEIGHT = 3 * BAR_HEIGHT + 8
TOP = 28


def _bar_row(y: float, scores) -> list[str]:
    """The three bars of one class, or "n/a" when its scores are not defined."""
    parts = [
        f'<text x="{LABEL_WIDTH - 6}" y="{y + ROW_HEIGHT / 2 + 2:.1f}" text-anchor="end">{text(scores.label)}</text>'
    ]
    values = [getattr(scores, name) for name, _ in METRICS]
    if all(math.isnan(value) for value in values):
        parts.append(f'<text x="{LABEL_WIDTH + 4}" y="{y + ROW_HEIGHT / 2 + 2:.1f}" fill="#888">n/a</text>')
        return parts
    if all(value == 0 for value in values):  # three stacked "0.0" labels would blur into one smudge
        parts.append(
            f'<text x="{LABEL_WIDTH + 4}" y="{y + ROW_HEIGHT / 2 + 2:.1f}" class="v">0.0 (no true positive)</text>'
        )
        return parts
    for offset, ((name, colour), value) in enumerate(zip(METRICS, values)):
        top = y + 4 + offset * BAR_HEIGHT
        width = 0.0 if math.isnan(value) else BAR_AREA * value
        shown = "n/a" if math.isnan(value) else f"{100 * value:.1f}"
        parts.append(
            f'<rect x="{LABEL_WIDTH}" y="{top:.1f}" width="{width:.1f}" height="{BAR_HEIGHT - 1}" '
            f'fill="{colour}"><title>{text(scores.label)} {name} {shown}</title></rect>'
        )
        parts.append(f'<text x="{LABEL_WIDTH + width + 3:.1f}" y="{top + BAR_HEIGHT - 1:.1f}" class="v">{shown}</text>')
    return parts


def class_scores_svg(per_class) -> str:
    """The chart for a list of :class:`omnict_cli.metrics.classification.ClassScores`."""
    height = TOP + ROW_HEIGHT * len(per_class) + 20
    width = LABEL_WIDTH + BAR_AREA + 50
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="per-class precision, recall and F1">'
    ]
    for index, (name, colour) in enumerate(METRICS):
        x = LABEL_WIDTH + index * 110
        parts.append(
            f'<rect x="{x}" y="8" width="10" height="10" fill="{colour}"/><text x="{x + 14}" y="17">{name}</text>'
        )
    for tick in (0, 25, 50, 75, 100):
        x = LABEL_WIDTH + BAR_AREA * tick / 100
        parts.append(
            f'<line x1="{x}" y1="{TOP - 4}" x2="{x}" y2="{height - 16}" stroke="#ddd"/>'
            f'<text x="{x}" y="{height - 4}" text-anchor="middle" class="v">{tick}</text>'
        )
    for row, scores in enumerate(per_class):
        parts.extend(_bar_row(TOP + row * ROW_HEIGHT, scores))
    parts.append("</svg>")
    return "".join(parts)
