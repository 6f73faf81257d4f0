"""The JSONL findings file: one record per study (``report``) or per question (``ask``), written so a crash never costs one.

Schema (``shared/DESIGN.md``): ``study_id``, ``root`` + ``input`` (see
:func:`study_location`), ``kind``, ``format``,
``shape``, ``spacing``, ``task``, ``prompt``, ``organs``, ``organ_reason``,
``segmenter``, ``findings`` + ``impression`` (report) or ``question`` +
``answer`` (ask), optional ``labels`` (18 CT-RATE classes), ``model``
(``name`` + ``revision``), ``timing_s``, ``warnings`` and ``status`` ("ok",
"skipped", or "error" with ``error: {type, message}``). ``record_id`` is the
key a resumed run skips by: the study id for reports, the study id plus the
question's row id for questions. No record ever holds a patient identifier:
ids are relative paths and loaders keep no identifying header.

Integrity: each record is encoded (with ``jsonlines``) to one complete line
and written with a single ``os.write`` at the end of the file, then flushed
to the OS, so a SIGKILL leaves whole lines. If a write fails (disk full,
file gone read-only) the file is cut back to its previous length before the
error is raised: no partial record. On resume, a torn last line (a kill
inside the kernel's write, a power cut) is detected and cut, with a warning.
"""

from __future__ import annotations

import io
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import jsonlines

from omnict_cli.errors import OmnictError, OutputError

STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_SKIPPED = "skipped"


def record_id(record: dict) -> str:
    """The resume key of a record: ``record_id`` when present, else the study id.

    A record written before study ids kept their suffix (no ``root`` field,
    ``study_id`` = ``input`` without its image suffix) is keyed by the id its
    study has today, so resuming an older findings file redoes nothing.
    """
    key = str(record.get("record_id") or record.get("study_id") or "")
    study_id, source = str(record.get("study_id") or ""), record.get("input")
    if "root" in record or not isinstance(source, str) or source == study_id:
        return key
    from omnict_cli.study_ids import without_image_suffix

    if study_id and without_image_suffix(source) == study_id and (key == study_id or key.startswith(study_id + "::")):
        return source + key[len(study_id) :]
    return key


def encode_record(record: dict) -> bytes:
    """One record as one UTF-8 JSON line ending in ``\\n`` (compact; U+2028 etc. stay escaped-safe)."""
    buffer = io.BytesIO()
    with jsonlines.Writer(buffer, compact=True, dumps=_dumps) as writer:
        writer.write(record)
    return buffer.getvalue()


def _dumps(obj) -> str:
    # ensure_ascii keeps U+2028/U+0085 escaped, so no reader can mistake them for line breaks
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


class RecordWriter:
    """Appends whole records to a JSONL file, one ``os.write`` each; see the module notes.

    Use as a context manager. ``write`` raises :class:`OutputError` with one
    line (file + reason) and leaves the file as it was before the record.
    """

    def __init__(self, path: str | Path, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        self._fd: int | None = None

    def __enter__(self) -> RecordWriter:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_NONBLOCK: a FIFO put at --out fails at once (the run checked --out before, but it may be swapped)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o666)
        except OSError as error:
            raise OutputError(
                f"cannot open for writing ({error.strerror})",
                path=self.path,
                hint="Choose another --out, or fix the folder's permissions",
            ) from error
        try:
            check_regular_or_absent(self.path, self._fd)
        except OutputError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def write(self, record: dict) -> None:
        line = encode_record(record)
        start = os.fstat(self._fd).st_size
        try:
            view = memoryview(line)
            while view:  # a regular file takes it in one call; the loop only guards short writes
                written = os.write(self._fd, view)
                view = view[written:]
            if self.fsync:
                os.fsync(self._fd)
        except OSError as error:
            self._cut_back(start)
            raise OutputError(
                f"cannot write a record ({error.strerror}); the records before it are intact",
                path=self.path,
                hint="Free space or fix permissions, then rerun the same command to resume",
            ) from error

    def _cut_back(self, length: int) -> None:
        try:
            os.ftruncate(self._fd, length)
        except OSError:  # the file may be gone read-only too; resume cuts a torn line anyway
            pass


@dataclass
class ExistingRecords:
    """What an earlier run left in the findings file."""

    records: list[dict] = field(default_factory=list)
    cut_bytes: int = 0
    """Bytes of a torn last line (not a whole record): cut on resume, left out when only reading."""

    def by_id(self) -> dict[str, dict]:
        """Last record per id (a retried study's new record wins)."""
        return {record_id(record): record for record in self.records}


def read_records(path: str | Path) -> ExistingRecords:
    """Every record of a findings file, to read it (``review``); the file is never changed.

    A torn last line is left out and counted in ``cut_bytes``. A bad line
    anywhere else is not something a crash makes: it raises
    :class:`OutputError` naming the line. A run that will write to the file
    reads it through :mod:`omnict_cli.run.findings_file` instead, which
    checks it is omnict's before anything is cut.
    """
    path = Path(path)
    check_regular_or_absent(path)
    if not path.exists():
        return ExistingRecords()
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as error:
        raise OutputError(f"cannot read the earlier records ({error.strerror})", path=path) from error
    complete = data.rfind(b"\n") + 1
    torn = len(data) - complete
    return ExistingRecords(records=parse_lines(path, data[:complete]), cut_bytes=torn)


def check_regular_or_absent(path: str | Path, fd: int | None = None) -> None:
    """Raise OutputError unless ``path`` (open as ``fd``, if given) is a regular file (or a link to one) or absent.

    Checked with ``stat`` before anything opens it: ``/dev/zero`` reads
    forever, a FIFO blocks until someone writes, ``/dev/full`` takes nothing.
    """
    try:
        mode = (os.fstat(fd) if fd is not None else os.stat(path)).st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise OutputError(f"cannot be looked at ({error.strerror})", path=path) from error
    if stat.S_ISREG(mode):
        return
    kind = "a folder" if stat.S_ISDIR(mode) else "a named pipe" if stat.S_ISFIFO(mode) else "a device or socket"
    raise OutputError(
        f"is {kind}, not a regular file",
        path=path,
        hint="A findings file must be a regular file or not exist yet; give a file name",
    )


def parse_lines(path: Path, data: bytes, hint: str = "") -> list[dict]:
    """The JSON objects of whole lines ``data``; OutputError naming the first line that is not one."""
    records = []
    # json.loads, not jsonlines' default: it reads back the \\udcxx escapes written for non-UTF-8 file names
    reader = jsonlines.Reader(io.BytesIO(data), loads=json.loads)
    try:
        for record in reader.iter(type=dict, skip_empty=True):
            records.append(record)
    except jsonlines.InvalidLineError as error:
        raise OutputError(
            f"line {error.lineno} is not a JSON record ({error})",
            path=path,
            hint=hint or "This file was not written by omnict or was edited; move it away",
        ) from error
    return records


def rewrite_records(path: str | Path, records: list[dict]) -> None:
    """Replace the file's content with ``records`` atomically (``--retry-errors`` drops old errors)."""
    from omnict_cli.atomic import write_bytes_atomically

    try:
        write_bytes_atomically(path, b"".join(encode_record(record) for record in records))
    except OSError as error:
        raise OutputError(f"cannot rewrite the findings file ({error.strerror})", path=path) from error


def study_location(study) -> tuple[str, str]:
    """``(root, input)`` of a study's record, so ``omnict review`` finds the scan from any directory.

    ``root`` is the folder the run was given, made absolute but with symlinks
    kept as named (a pseudonymous link keeps its name); ``input`` is the file,
    or the DICOM series' folder, relative to it in POSIX form. A run given one
    file, or one series folder, records that path's parent as ``root``.
    """
    root = os.path.abspath(study.root)
    series_folder = study.format == "dicom" and len(study.paths) > 1
    target = os.path.abspath(study.paths[0].parent if series_folder else study.paths[0])
    if target == root:
        root = os.path.dirname(root)
    return root, Path(os.path.relpath(target, root)).as_posix()


def error_info(error: BaseException) -> dict:
    """``{"type", "message"}`` of an error record: one line, the file named by the error itself."""
    message = error.one_line() if isinstance(error, OmnictError) else f"{type(error).__name__}: {error}"
    return {"type": type(error).__name__, "message": " ".join(str(message).split())}
