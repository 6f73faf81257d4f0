"""Training rows: the authors' JSONL chat format, read and written, and report rows from CT-RATE-style folders.

A row is one question about one image and its answer::

    {"messages": [{"role": "user", "content": "<|image3d_start|><|image3d|><|image3d_end|>\\n"
                                              "<|organ_start|><|mask3d|><|organ_end|>\\nIs there ...?"},
                  {"role": "assistant", "content": "Yes"}],
     "image": "volumes/case_0001.nii.gz", "organ": "lungs"}

``image`` is relative to the JSONL file's folder unless absolute; ``organ``
(optional) names the organ group OSE pools for this row, otherwise routing
picks it from the question. The placeholders in the user turn are dropped
on reading: the processor writes the right ones for the image's real kind
(a slice or a volume) and always adds the organ block, so report rows
written without it (as the authors' and ``demo-data``'s are) train the same
prompt inference uses.

Report rows come from a reports CSV (CT-RATE's ``VolumeName, Findings_EN,
Impressions_EN``; ``demo-data``'s ``references.csv`` has the same columns)
plus a folder holding the volumes, searched recursively (CT-RATE nests them:
``train/train_1/train_1_a/train_1_a_1.nii.gz``). A bad row or a missing
volume is one line in ``problems``; the other rows are kept.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import jsonlines

from omnict_cli.atomic import write_text_atomically
from omnict_cli.errors import OmnictError
from omnict_cli.prompt_format import PROMPT_TOKENS, REPORT_QUESTION

VOLUME_IMAGE_BLOCK = PROMPT_TOKENS["volume"].image_block()

_NIFTI_SUFFIXES = (".nii.gz", ".nii")


class RowsFileError(OmnictError):
    """A rows file (or a reports CSV) cannot be read at all."""


@dataclass(frozen=True)
class TrainingRow:
    """One (image, question, answer) example.

    Attributes:
        image: the study's file or DICOM folder, resolved against the rows file's folder.
        question: the user's text without prompt placeholders.
        answer: the assistant's text (the only tokens the loss covers).
        organ: organ group(s) for OSE given by the row, or None (routing decides).
        line: 1-based line in the rows file, for messages and ``metrics.jsonl``.
    """

    image: Path
    question: str
    answer: str
    organ: str | None = None
    line: int = 0


@dataclass
class RowsRead:
    """The usable rows of a file and one line per row left out."""

    rows: list[TrainingRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def question_text(content: str) -> str:
    """The user turn without its image and organ placeholders, e.g. ``"Is there ...?"``.

    The same text ``omnict ask`` puts in its prompt (spaces tidied line by line,
    :func:`omnict_cli.metrics.score_files.question_text`), so the model is trained on
    exactly the prompts it is asked at inference.
    """
    from omnict_cli.metrics.score_files import question_text as tidied_question

    return tidied_question(content)


def read_rows(path: str | Path) -> RowsRead:
    """Every row of a JSONL rows file; a malformed row is a problem line and is skipped.

    Raises :class:`RowsFileError` only when the file itself cannot be read.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as error:
        raise RowsFileError("training rows file not found", path=path) from error
    except (OSError, UnicodeDecodeError) as error:
        raise RowsFileError(
            f"cannot read the training rows file ({error})",
            path=path,
            hint="Give a UTF-8 JSONL file, one chat row per line.",
        ) from error
    result = RowsRead()
    # lines end at "\n" only: a JSON string may hold U+2028 or U+0085, which str.splitlines would cut
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            result.rows.append(_parse_row(_json_object(line), line_number, path.parent))
        except ValueError as problem:
            result.problems.append(f"{path}: line {line_number}: {problem}; row left out")
    return result


def _json_object(line: str) -> dict:
    """One JSONL line decoded with ``jsonlines``; ValueError for anything but one JSON object."""
    try:
        return jsonlines.Reader([line]).read(type=dict)
    except jsonlines.InvalidLineError as error:
        if isinstance(error.__cause__, ValueError):  # the JSON itself did not parse
            raise ValueError(f"not valid JSON ({error.__cause__})") from error
        raise ValueError("expected one JSON object per line") from error
    except RecursionError as error:
        raise ValueError("nested too deeply to be a training row") from error


def _parse_row(record: dict, line_number: int, folder: Path) -> TrainingRow:
    """One decoded JSONL row as a :class:`TrainingRow`; ValueError says what is wrong with it."""
    messages = record.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ValueError('\'messages\' must be a list of {"role", "content"} objects')
    roles = [message.get("role") for message in messages]
    if roles != ["user", "assistant"]:
        raise ValueError(f"expected one user turn then one assistant turn, got roles {roles}")
    user, assistant = (message.get("content") for message in messages)
    if not isinstance(user, str) or not isinstance(assistant, str) or not assistant.strip():
        raise ValueError("the user and assistant contents must be text, the answer not empty")
    question = question_text(user)
    if not question:
        raise ValueError("the user turn has no question besides the image placeholders")
    image = record.get("image")
    if not isinstance(image, str) or not image.strip():
        raise ValueError("'image' must name the study's file or folder")
    image_path = Path(image).expanduser()
    image_path = Path(os.path.normpath(image_path if image_path.is_absolute() else folder / image_path))
    if not image_path.exists():
        raise ValueError(f"image {image_path} not found")
    organ = record.get("organ")
    if organ is not None and (not isinstance(organ, str) or not organ.strip()):
        raise ValueError("'organ' must be an organ group name such as \"lungs\"")
    return TrainingRow(image=image_path, question=question, answer=assistant.strip(), organ=organ, line=line_number)


def row_record(row: TrainingRow, relative_to: Path | None = None) -> dict:
    """``row`` in the authors' chat format; the image path relative to ``relative_to`` when it lies below it."""
    image = row.image
    if relative_to is not None:
        try:
            image = Path(os.path.relpath(row.image, relative_to))
        except ValueError:  # another drive on Windows
            pass
    record = {
        "messages": [
            {"role": "user", "content": f"{VOLUME_IMAGE_BLOCK}\n{row.question}"},
            {"role": "assistant", "content": row.answer},
        ],
        "image": image.as_posix(),
    }
    if row.organ:
        record["organ"] = row.organ
    return record


def write_rows(path: str | Path, rows: list[TrainingRow]) -> Path:
    """Write ``rows`` as JSONL (atomically), image paths relative to the file's folder."""
    path = Path(path)
    folder = path.resolve().parent
    text = "".join(json.dumps(row_record(row, folder)) + "\n" for row in rows)
    return write_text_atomically(path, text)


def report_rows(reports_csv: str | Path, volumes: str | Path) -> RowsRead:
    """Report-generation rows from a reports CSV and the folder holding its volumes.

    Each study's answer is ``"Findings: ...\\nImpression: ..."`` (the format
    ``omnict report`` writes and ``omnict score`` reads back). The volume is
    found by its ``VolumeName`` anywhere under ``volumes``: a file of that
    name, or a folder named like it without ``.nii.gz`` (a DICOM series).
    """
    from omnict_cli.labels.ctrate_io import CtrateFileError, read_reports, report_text

    volumes = Path(volumes)
    if not volumes.is_dir():
        raise RowsFileError("volumes folder not found", path=volumes)
    try:
        reports = read_reports(reports_csv)
    except CtrateFileError as error:
        raise RowsFileError(error.message, path=error.path, hint=error.hint) from error
    index = _index_by_name(volumes)
    result = RowsRead()
    for number, report in enumerate(reports, start=1):
        image = _find_volume(index, report.volume_name)
        answer = report_text(report)
        if image is None:
            result.problems.append(
                f"{reports_csv}: {report.volume_name}: no such volume under {volumes}; study left out"
            )
        elif not answer:
            result.problems.append(f"{reports_csv}: {report.volume_name}: the report is empty; study left out")
        else:
            result.rows.append(TrainingRow(image=image, question=REPORT_QUESTION, answer=answer, line=number))
    return result


def phantom_report_rows(phantom_dir: str | Path) -> RowsRead:
    """Report rows of a ``demo-data`` set: its ``references.csv`` and ``volumes/``."""
    phantom_dir = Path(phantom_dir)
    return report_rows(phantom_dir / "references.csv", phantom_dir / "volumes")


def _index_by_name(folder: Path) -> dict[str, Path]:
    """File and folder names under ``folder`` -> their paths (the first in sorted walk order wins)."""
    index: dict[str, Path] = {}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files) + dirs:
            index.setdefault(name, Path(root) / name)
    return index


def _find_volume(index: dict[str, Path], volume_name: str) -> Path | None:
    name = Path(volume_name).name
    if name in index:
        return index[name]
    for suffix in _NIFTI_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in index:
            return index[name[: -len(suffix)]]
    return None
