"""Question rows for ``omnict ask --batch``: the authors' chat rows or plain ``{"image", "question"}`` rows -> jobs.

Accepted rows (one JSON object per line, read with ``jsonlines``):

- chat rows, as the authors' MedEval-CT data and ``omnict demo-data`` write
  them: ``{"messages": [{"role": "user", "content": "<|image3d_start|>...\\nQuestion"},
  {"role": "assistant", ...}], "image": "path"}``; the assistant turn, if
  any, is the reference and is ignored here;
- plain rows: ``{"image": "path", "question": "..."}``.

Optional keys: ``"id"`` or ``"question_id"`` (else the line number) and
``"organ"`` (overrides routing for that row). Relative image paths are
relative to the rows file's folder. A row that cannot become a job (no
image, no question, an image that does not exist) becomes an error record
of its own instead of stopping the batch: :func:`read_question_rows` returns
those problems beside the jobs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from omnict_cli.errors import OmnictError
from omnict_cli.metrics.score_files import question_text  # the same question text scoring joins answers by
from omnict_cli.run.pipeline import Job
from omnict_cli.run.question_rules import DEFAULT_MAX_QUESTION_CHARS, clean_question, shown_question


class QuestionRowsError(OmnictError):
    """The rows file itself cannot be read."""


@dataclass
class RowProblem:
    """A row that is not a usable question; reported as an error record named by its line."""

    record_id: str
    study_id: str
    question_id: str
    message: str
    question: str = ""

    def to_record(self) -> dict:
        """An ``ask`` error record for this row (the run adds the model and version)."""
        return {
            "study_id": self.study_id,
            "record_id": self.record_id,
            "question_id": self.question_id,
            "task": "ask",
            "question": shown_question(clean_question(self.question)[0], DEFAULT_MAX_QUESTION_CHARS),
            "error": {"type": "QuestionRowsError", "message": self.message},
            "warnings": [],
            "status": "error",
        }


def read_question_rows(path: str | Path, organ: str | None = None) -> tuple[list[Job], list[RowProblem]]:
    """Jobs for every usable row (sorted by study, then row), and the rows that are not usable."""
    path = Path(path)
    jobs, problems = [], []
    try:
        data = path.read_bytes()
    except OSError as error:
        raise QuestionRowsError(f"cannot read ({error.strerror})", path=path) from error
    for line, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        if line == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # a BOM some editors write
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:  # one bad row is that row's error record, as any unusable row
            message = f"{path} line {line}: is not UTF-8 text (byte {error.start + 1} of the line)"
            problems.append(RowProblem(f"line {line}::{line}", f"line {line}", str(line), message))
            continue
        try:
            row = json.loads(text)
        except ValueError as error:
            raise QuestionRowsError(
                f"line {line} is not valid JSON ({error})", path=path, hint="Each line must be one JSON object"
            ) from error
        _add_row(path, line, row, organ, jobs, problems)
    jobs.sort(key=lambda job: (job.study.study_id, _number(job.question_id)))
    return jobs, problems


def _number(question_id: str):
    return (0, int(question_id), "") if question_id.isdigit() else (1, 0, question_id)


def _add_row(path: Path, line: int, row, organ, jobs: list, problems: list) -> None:
    question_id = str(row.get("question_id", row.get("id", line))) if isinstance(row, dict) else str(line)
    image = row.get("image") if isinstance(row, dict) else None
    study_id = str(image) if isinstance(image, str) else f"line {line}"
    question = ""
    try:
        if not isinstance(row, dict):
            raise QuestionRowsError("is not a JSON object")
        question = _question_of(row)
        if not isinstance(image, str) or not image.strip():
            raise QuestionRowsError('has no "image" path')
        try:
            study = study_for_image(path.parent, image)
        except (OSError, ValueError) as error:  # a path the OS refuses: too long, a NUL byte
            reason = getattr(error, "strerror", None) or error
            raise QuestionRowsError(f"its image path cannot be used ({reason})") from None
    except OmnictError as error:
        problems.append(
            RowProblem(
                f"{study_id}::{question_id}", study_id, question_id, f"{path} line {line}: {error.one_line()}", question
            )
        )
        return
    row_organ = row.get("organ") if isinstance(row.get("organ"), str) else None
    jobs.append(Job(f"{study.study_id}::{question_id}", study, "ask", question, organ or row_organ, question_id))


def _question_of(row: dict) -> str:
    if isinstance(row.get("messages"), list):
        users = [
            turn.get("content")
            for turn in row["messages"]
            if isinstance(turn, dict) and turn.get("role") == "user" and isinstance(turn.get("content"), str)
        ]
        if not users:
            raise QuestionRowsError("has no user message")
        question = users[0]
    else:
        question = row.get("question") if isinstance(row.get("question"), str) else ""
    if not question_text(question):
        raise QuestionRowsError('has no question (a user message or a "question" key)')
    return question  # as written: the run removes chat tokens and checks the length (run.question_rules)


def study_for_image(folder: Path, image: str):
    """The one study at ``image`` (a file or a DICOM series folder), named by the path as the row gives it.

    That is the study-id rule of :mod:`omnict_cli.study_ids` with the rows
    file's folder as the root, so ``volumes/case_1.nii.gz`` in a row is the
    id ``report`` gives the same file when run on that folder.
    """
    from omnict_cli.studies.discover import single_study

    target = Path(image).expanduser()
    study = single_study(target if target.is_absolute() else folder / target)
    name = Path(image)
    if name.is_absolute() or ".." in name.parts or name.parent == Path("."):
        return study
    # named by the path the row gives (slices/case_1.png), read from the same file
    return replace(study, study_id=f"{name.parent.as_posix()}/{study.study_id}", root=folder)
