"""The VLM3D challenge's report file: ``{"generated_reports": [{"input_image_name": ..., "report": ...}]}``.

Participants of the VLM3D challenge (MICCAI 2025, report generation on
CT-RATE) submit their generated reports as one JSON object with this layout;
its scorer reads it. omnict reads it wherever it reads reports (so
``omnict score`` scores a peer's submission as it is) and writes it (so an
omnict run can be submitted or scored by the challenge's own code).

A file is taken for this layout when its whole text is one JSON object with
a ``generated_reports`` key; anything else (JSONL, CSV) is left to the other
readers. Each entry needs a non-empty ``input_image_name`` and a ``report``
string; anything else is an error naming the file and the entry's position.
"""

from __future__ import annotations

import json
from pathlib import Path

from omnict_cli.atomic import write_text_atomically
from omnict_cli.errors import OmnictError

REPORTS_KEY = "generated_reports"
NAME_KEY = "input_image_name"
TEXT_KEY = "report"


class ChallengeFileError(OmnictError):
    """A file in the challenge's layout whose entries cannot be read."""


def challenge_entries(text: str, path: str | Path) -> list[tuple[int, str, str]] | None:
    """``(entry number, image name, report)`` of a challenge-layout text, or None when it is not one.

    Entry numbers count from 1, for messages. Raises :class:`ChallengeFileError`
    for a file in this layout with a bad entry.
    """
    if not text.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None  # JSONL (several objects) or broken JSON: the JSONL reader says what is wrong
    if not isinstance(data, dict) or REPORTS_KEY not in data:
        return None
    entries = data[REPORTS_KEY]
    if not isinstance(entries, list):
        raise ChallengeFileError(f"'{REPORTS_KEY}' must be a list of entries", path=path)
    found = []
    for number, entry in enumerate(entries, start=1):
        name = entry.get(NAME_KEY) if isinstance(entry, dict) else None
        report = entry.get(TEXT_KEY) if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name.strip() or not isinstance(report, str):
            raise ChallengeFileError(
                f"entry {number} of '{REPORTS_KEY}' needs a '{NAME_KEY}' name and a '{TEXT_KEY}' text",
                path=path,
            )
        found.append((number, name.strip(), report))
    return found


def is_challenge_file(path: str | Path) -> bool:
    """Whether ``path`` holds the challenge's layout (an unreadable file is not: its reader will say why)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return False
    try:
        return challenge_entries(text, path) is not None
    except ChallengeFileError:
        return True


def challenge_json(reports: dict[str, str]) -> str:
    """The challenge layout of ``{image name: report}``, in the given order, as indented JSON text."""
    entries = [{NAME_KEY: name, TEXT_KEY: report} for name, report in reports.items()]
    return json.dumps({REPORTS_KEY: entries}, indent=2, ensure_ascii=False) + "\n"


def is_our_challenge_file(path: str | Path) -> bool:
    """Whether an existing file is one :func:`write_challenge_json` could have written (only the layout's key)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and set(data) == {REPORTS_KEY}


def write_challenge_json(path: str | Path, reports: dict[str, str]) -> None:
    """Write ``{image name: report}`` in the challenge's layout, in one step (see :mod:`omnict_cli.atomic`)."""
    write_text_atomically(path, challenge_json(reports))


__all__ = [
    "ChallengeFileError",
    "challenge_entries",
    "challenge_json",
    "is_challenge_file",
    "is_our_challenge_file",
    "write_challenge_json",
]
