"""Read and write CT-RATE's report and label files.

Scoring a report generator the CT-RATE way needs two kinds of file:

* a *reports* file: CT-RATE's reports CSV (``VolumeName, Findings_EN,
  Impressions_EN``; ``ClinicalInformation_EN`` and ``Technique_EN`` are
  accepted and ignored, ``Impressions_EN`` may be missing), a JSONL file
  with one study per line (omnict's own ``report`` output, see below), or
  the VLM3D challenge's JSON (:mod:`omnict_cli.labels.challenge_json`);
* a *labels* file: CT-RATE's label CSV (``VolumeName`` then the 18
  abnormality columns in :data:`CTRATE_ABNORMALITIES` order, values 0/1).

Every problem a user can fix raises :class:`CtrateFileError` naming the file
and, where it applies, the line and column, so a typo in a 3,000-row CSV is
found in seconds. Writers are atomic (temporary file, then ``os.replace``):
an interrupted run never leaves half a CSV behind.

JSONL reports: each line is an object with a study name in ``study_id`` or
``VolumeName`` and the text in ``findings``/``impression``, or as one whole
report in ``report`` or ``text`` (split at "Findings:"/"Impression:" style
headers by :func:`split_sections`). omnict records with ``"status": "error"``
carry no report and are skipped; a scorer notices the missing names.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import jsonlines

from omnict_cli.atomic import write_text_atomically
from omnict_cli.csv_safe import csv_text, plain_cell
from omnict_cli.errors import OmnictError
from omnict_cli.labels.classes import CTRATE_ABNORMALITIES

NAME_COLUMN = "VolumeName"
FINDINGS_COLUMN = "Findings_EN"
IMPRESSION_COLUMN = "Impressions_EN"
IGNORED_REPORT_COLUMNS = ("ClinicalInformation_EN", "Technique_EN")
"""Columns of CT-RATE's reports CSV that say nothing the labels are read from."""

JSONL_NAME_KEYS = ("study_id", "VolumeName")
JSONL_WHOLE_TEXT_KEYS = ("report", "text")

FINDINGS_HEADER = "Findings:"
IMPRESSION_HEADER = "Impression:"

_SECTION_HEADER = re.compile(
    r"(?im)(?:^|(?<=[\s.;]))(?P<name>findings|impressions?|conclusions?|results?|opinion)\s*(?::|-\s|\n)"
)
"""A section header at a line start or after a sentence: "Findings:", "IMPRESSION:", "Conclusion -"."""

_IMPRESSION_NAMES = ("impression", "impressions", "conclusion", "conclusions", "opinion")


class CtrateFileError(OmnictError):
    """A CT-RATE reports or labels file cannot be read as one."""


@dataclass
class LabelledReport:
    """One study's report text and, when known, its 18 CT-RATE labels (class name -> 0/1)."""

    volume_name: str
    findings: str
    impression: str
    labels: dict[str, int] | None = None


# --------------------------------------------------------------------------
# Report text and its sections
# --------------------------------------------------------------------------


def report_text(report: LabelledReport) -> str:
    """Findings and impression as one text with headers :func:`split_sections` (and the labeler) reads back.

    ``"Findings: <findings>\\nImpression: <impression>"``, the format of
    omnict's report rows; an empty section is left out.
    """
    parts = []
    if report.findings.strip():
        parts.append(f"{FINDINGS_HEADER} {report.findings.strip()}")
    if report.impression.strip():
        parts.append(f"{IMPRESSION_HEADER} {report.impression.strip()}")
    return "\n".join(parts)


def split_sections(text: str) -> tuple[str, str]:
    """``(findings, impression)`` of a report text, split at its section headers.

    Headers are matched case-insensitively ("Findings:", "FINDINGS", "Impression:",
    "IMPRESSION -", "Conclusion:", "Opinion:"). Text before any header, and text
    under a findings/results header, is findings; text under an
    impression/conclusion/opinion header is impression. A text without headers
    is all findings, as CT-RATE's Findings_EN column is.
    """
    headers = list(_SECTION_HEADER.finditer(text))
    findings_parts = [text[: headers[0].start()] if headers else text]
    impression_parts = []
    for header, following in zip(headers, headers[1:] + [None]):
        body = text[header.end() : following.start() if following else len(text)]
        name = header.group("name").lower()
        (impression_parts if name in _IMPRESSION_NAMES else findings_parts).append(body)
    return _join(findings_parts), _join(impression_parts)


def _join(parts: list[str]) -> str:
    return " ".join(" ".join(part.split()) for part in parts if part.strip())


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def _read_text(path: Path, what: str) -> str:
    """The file's text; binary, undecodable or missing files are refused with a clear message."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as error:
        raise CtrateFileError(f"{what} file not found", path=path) from error
    except IsADirectoryError as error:
        raise CtrateFileError(f"{what} path is a folder, not a file", path=path) from error
    except OSError as error:
        raise CtrateFileError(f"cannot read {what} file ({error.strerror})", path=path) from error
    if b"\x00" in raw[:65536]:
        raise CtrateFileError(
            f"not a {what} text file (it contains binary data)",
            path=path,
            hint="Give the CSV (or JSONL) file itself, not a spreadsheet or archive.",
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CtrateFileError(
            f"not a UTF-8 text file (undecodable byte at offset {error.start})",
            path=path,
            hint="Save the file as UTF-8 CSV.",
        ) from error


def _csv_rows(path: Path, text: str, required: tuple[str, ...], what: str) -> tuple[list[str], list]:
    """Header and ``(line_number, row_dict)`` pairs of a CSV text, after checking the required columns."""
    with _cells_as_long_as(text):
        return _parsed_csv_rows(path, text, required, what)


@contextlib.contextmanager
def _cells_as_long_as(text: str):
    """Let the csv module read cells up to the length of ``text``, then restore its limit.

    The csv module refuses cells over 128 K characters ("field larger than
    field limit"), a guard for streams read piece by piece. Here the whole
    file is already in memory, so the guard protects nothing, and a valid
    report of a megabyte would be called malformed.
    """
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, len(text) + 1))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _parsed_csv_rows(path: Path, text: str, required: tuple[str, ...], what: str) -> tuple[list[str], list]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise CtrateFileError(f"{what} file is empty", path=path) from None
    except csv.Error as error:
        raise CtrateFileError(f"line 1: not a readable CSV header ({error})", path=path) from error
    for column in required:
        if column not in header:
            raise CtrateFileError(
                f"line 1: missing column '{column}'",
                path=path,
                hint=f"A {what} CSV needs the columns {', '.join(required)}.",
            )
    rows = []
    line = 1
    try:
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                raise CtrateFileError(
                    f"line {line}: {len(cells)} cells but the header has {len(header)} columns", path=path
                )
            rows.append((line, dict(zip(header, cells))))
    except csv.Error as error:
        raise CtrateFileError(f"line {line + 1}: malformed CSV ({error})", path=path) from error
    return header, rows


def _is_jsonl(path: Path, text: str) -> bool:
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return True
    return path.suffix.lower() != ".csv" and text.lstrip().startswith("{")


def read_reports(path: str | Path) -> list[LabelledReport]:
    """The reports of a CT-RATE reports CSV or a JSONL file, in file order (labels None).

    See the module docstring for the accepted columns and keys. Raises
    :class:`CtrateFileError` naming the file and line for anything unreadable,
    a missing name or text, or a study listed twice.
    """
    path = Path(path)
    text = _read_text(path, "reports")
    reports = _reports_from_challenge_json(path, text)
    if reports is None:
        reports = _reports_from_jsonl(path, text) if _is_jsonl(path, text) else _reports_from_csv(path, text)
    _check_unique_names(path, reports)
    return [report for _, report in reports]


def _reports_from_challenge_json(path: Path, text: str) -> list[tuple[int, LabelledReport]] | None:
    """Reports of a file in the VLM3D challenge's layout (entry number as the line), or None for another layout."""
    from omnict_cli.labels.challenge_json import challenge_entries

    entries = challenge_entries(text, path)
    if entries is None:
        return None
    return [(number, LabelledReport(name, *split_sections(report))) for number, name, report in entries]


def _reports_from_csv(path: Path, text: str) -> list[tuple[int, LabelledReport]]:
    header, rows = _csv_rows(path, text, (NAME_COLUMN, FINDINGS_COLUMN), "reports")
    has_impression = IMPRESSION_COLUMN in header
    reports = []
    for line, row in rows:
        name = plain_cell(row[NAME_COLUMN].strip())
        if not name:
            raise CtrateFileError(f"line {line}, column '{NAME_COLUMN}': empty study name", path=path)
        impression = plain_cell(row[IMPRESSION_COLUMN]) if has_impression else ""
        reports.append((line, LabelledReport(name, _tidy(plain_cell(row[FINDINGS_COLUMN])), _tidy(impression))))
    return reports


def _tidy(text: str) -> str:
    """Collapse whitespace; pandas writes a missing cell as "nan", which is no text."""
    text = " ".join(text.split())
    return "" if text.lower() == "nan" else text


MAX_JSONL_LINE_CHARS = 16 * 1024 * 1024
"""The longest JSONL line read (16 MiB): a study record is kilobytes; a longer line is a damaged file."""


def _json_object(line: str) -> dict:
    """One line's JSON value; a nesting too deep for the parser is a ValueError, not a RecursionError."""
    try:
        return json.loads(line)
    except RecursionError:
        raise ValueError(
            f"nested too deeply (lists or objects inside one another more than about {sys.getrecursionlimit()} levels)"
        ) from None


def _lines(text: str):
    """The lines of ``text`` split at "\\n" only (JSON strings may hold U+2028, U+0085 or a lone "\\r")."""
    start = 0
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end]
        yield line[:-1] if line.endswith("\r") else line
        start = end + 1


def _invalid_line_message(error: jsonlines.InvalidLineError, text: str) -> str:
    """ "line N: <problem>" for a line the jsonlines reader refused, with a hint for a torn last line."""
    cause = error.__cause__
    if isinstance(cause, json.JSONDecodeError):
        problem = f"not valid JSON ({cause.msg}, column {cause.colno})"
    elif isinstance(cause, ValueError):
        problem = str(cause)
    else:
        problem = "expected one JSON object per line"
    last = error.lineno == text.count("\n") + 1
    if last and text and not text.endswith("\n") and isinstance(cause, json.JSONDecodeError):
        problem += "; it is the last line and has no line end, as when a writer was interrupted"
    return f"line {error.lineno}: {problem}"


def jsonl_objects(text: str) -> list[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line of JSONL text, read with ``jsonlines``.

    Lines are split at "\\n" only, so a JSON string holding U+2028 or U+0085
    (which ``str.splitlines`` would cut) is read whole. Raises ValueError
    starting "line N:" for a line that is not one JSON object, is nested too
    deeply, or is longer than :data:`MAX_JSONL_LINE_CHARS`; callers add the
    file name (with their own error class).
    """
    objects = []
    lines = _NumberedLines(_lines(text))
    reader = jsonlines.Reader(lines, loads=_json_object)
    while True:
        try:
            record = reader.read(type=dict, skip_empty=True)
        except EOFError:
            return objects
        except jsonlines.InvalidLineError as error:
            raise ValueError(_invalid_line_message(error, text)) from error
        objects.append((lines.number, record))


class _NumberedLines:
    """An iterator over lines that remembers the number of the last one handed out.

    The jsonlines reader pulls lines one at a time, so after a ``read`` this
    is the line the record came from; a line longer than
    :data:`MAX_JSONL_LINE_CHARS` is refused before it is parsed.
    """

    def __init__(self, lines):
        self.lines = iter(lines)
        self.number = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.number += 1
        if len(line) > MAX_JSONL_LINE_CHARS:
            raise ValueError(
                f"line {self.number}: {len(line):,} characters, more than the "
                f"{MAX_JSONL_LINE_CHARS:,} one JSONL record may have (a damaged file?)"
            )
        return line


NOT_REPORT_STATUSES = ("error", "skipped")
"""``omnict report`` records that carry no report: failed studies (scored as failures by
``omnict score``) and inputs that are not studies (label maps found beside the scans)."""


def _reports_from_jsonl(path: Path, text: str) -> list[tuple[int, LabelledReport]]:
    try:
        records = jsonl_objects(text)
    except ValueError as error:
        raise CtrateFileError(str(error), path=path) from error
    return [
        (line, _report_from_record(path, line, record))
        for line, record in records
        if record.get("status") not in NOT_REPORT_STATUSES
    ]


def _report_from_record(path: Path, line: int, record: dict) -> LabelledReport:
    name = next((str(record[key]).strip() for key in JSONL_NAME_KEYS if record.get(key)), "")
    if not name:
        raise CtrateFileError(f"line {line}: no study name (one of: {', '.join(JSONL_NAME_KEYS)})", path=path)
    if isinstance(record.get("findings"), str) or isinstance(record.get("impression"), str):
        return LabelledReport(
            name, _tidy(str(record.get("findings") or "")), _tidy(str(record.get("impression") or ""))
        )
    for key in JSONL_WHOLE_TEXT_KEYS:
        if isinstance(record.get(key), str):
            findings, impression = split_sections(record[key])
            return LabelledReport(name, findings, impression)
    raise CtrateFileError(
        f"line {line}: study '{name}' has no report text",
        path=path,
        hint="Give 'findings'/'impression', or the whole report as 'report' or 'text'.",
    )


def _check_unique_names(path: Path, reports: list[tuple[int, LabelledReport]]) -> None:
    first_line = {}
    for line, report in reports:
        if report.volume_name in first_line:
            raise CtrateFileError(
                f"line {line}: study '{report.volume_name}' is listed twice "
                f"(first on line {first_line[report.volume_name]})",
                path=path,
            )
        first_line[report.volume_name] = line


def read_labels(path: str | Path) -> dict[str, dict[str, int]]:
    """CT-RATE labels per study: ``{VolumeName: {class: 0 or 1}}`` with the 18 classes in CT-RATE order.

    Extra columns are ignored. Raises :class:`CtrateFileError` naming the file,
    line and column for a missing class column, a value other than 0/1, a
    duplicate or empty ``VolumeName``, or a file that is not CSV text.
    """
    path = Path(path)
    text = _read_text(path, "labels")
    header, rows = _csv_rows(path, text, (NAME_COLUMN, *CTRATE_ABNORMALITIES), "labels")
    labels: dict[str, dict[str, int]] = {}
    first_line: dict[str, int] = {}
    for line, row in rows:
        name = plain_cell(row[NAME_COLUMN].strip())
        if not name:
            raise CtrateFileError(f"line {line}, column '{NAME_COLUMN}': empty study name", path=path)
        if name in labels:
            raise CtrateFileError(
                f"line {line}: VolumeName '{name}' is listed twice (first on line {first_line[name]})", path=path
            )
        labels[name] = {label: _binary_cell(path, line, header, label, row[label]) for label in CTRATE_ABNORMALITIES}
        first_line[name] = line
    return labels


def _binary_cell(path: Path, line: int, header: list[str], column: str, cell: str) -> int:
    """0 or 1 from a cell ("0", "1", and pandas' "0.0"/"1.0"); anything else names line and column."""
    value = cell.strip()
    if value in ("0", "0.0"):
        return 0
    if value in ("1", "1.0"):
        return 1
    raise CtrateFileError(
        f"line {line}, column {header.index(column) + 1} ('{column}'): expected 0 or 1, got {value!r}", path=path
    )


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _write_atomically(path: Path, rows: list[list[str]]) -> None:
    """Write CSV rows to ``path`` in one step (see :mod:`omnict_cli.atomic`), formula cells neutralised."""
    write_text_atomically(path, csv_text(rows, line_end="\r\n"))


def write_labels(path: str | Path, rows: dict[str, dict[str, int]]) -> None:
    """Write a CT-RATE label CSV (``VolumeName`` + the 18 classes in CT-RATE order), atomically.

    Raises ``ValueError`` naming the study and class when a row lacks a class
    or holds a value other than 0/1, before anything is written.
    """
    table = [[NAME_COLUMN, *CTRATE_ABNORMALITIES]]
    for name, labels in rows.items():
        missing = [label for label in CTRATE_ABNORMALITIES if label not in labels]
        if missing:
            raise ValueError(f"labels of '{name}' lack the classes: {', '.join(missing)}")
        bad = {label: labels[label] for label in CTRATE_ABNORMALITIES if labels[label] not in (0, 1)}
        if bad:
            raise ValueError(f"labels of '{name}' must be 0 or 1, got {bad}")
        table.append([name, *(str(int(labels[label])) for label in CTRATE_ABNORMALITIES)])
    _write_atomically(Path(path), table)


def write_reports(path: str | Path, reports: list[LabelledReport]) -> None:
    """Write a CT-RATE reports CSV (``VolumeName, Findings_EN, Impressions_EN``), atomically."""
    table = [[NAME_COLUMN, FINDINGS_COLUMN, IMPRESSION_COLUMN]]
    table += [[report.volume_name, report.findings, report.impression] for report in reports]
    _write_atomically(Path(path), table)


__all__ = [
    "LabelledReport",
    "CtrateFileError",
    "read_reports",
    "read_labels",
    "write_labels",
    "write_reports",
    "report_text",
    "split_sections",
]
