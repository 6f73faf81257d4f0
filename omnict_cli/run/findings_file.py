"""Which findings file a run may touch: only one that is provably omnict's, and only one run at a time.

A findings file is a file the user named; rewriting someone's notes or
another model's records because they sat at ``--out`` loses work nobody can
get back. So every path that opens ``--out`` (a plain run, ``--shard``,
``--retry-errors``, ``--overwrite``, the shard merge) goes through the same
steps here before it changes a byte:

1. :func:`~omnict_cli.run.records.check_regular_or_absent`: ``--out`` is a
   regular file or does not exist (a device such as ``/dev/zero``, a FIFO or
   a folder is refused before anything is opened: they read forever or hang).
2. :class:`FindingsLock`: an exclusive ``flock`` on ``<out>.lock`` beside it,
   which holds the holder's pid and host, so a second run on the same file
   refuses with one line naming the first. The kernel drops a ``flock`` when
   its process dies, so a lock file a killed run left behind is simply
   taken over.
3. :func:`read_own_records`: every line is an omnict record (a JSON object
   with ``study_id``, ``status`` and a ``model`` identity, name and
   revision), else the file is refused untouched. A last line without its
   line end is a torn record only when it starts the way every record omnict
   writes starts (``{"study_id":``); anything else there is not ours.
4. :func:`refuse_other_models`: records of another model refuse the run
   (unless ``--overwrite``), before the torn line is cut.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
from pathlib import Path

from omnict_cli.errors import OutputError
from omnict_cli.run.records import ExistingRecords, check_regular_or_absent, parse_lines

RECORD_START = b'{"study_id":'
"""How every line omnict writes begins (``encode_record`` of a record whose first key is ``study_id``)."""

NOT_OURS_HINT = "omnict only rewrites its own findings files; move this file away or choose another --out"


def check_out_path(path: str | Path) -> None:
    """Fail before any work when ``path`` cannot be a findings file: not a regular file, or not writable."""
    from omnict_cli.atomic import check_destination

    path = Path(path)
    check_regular_or_absent(path)
    check_destination(path)
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError("is not writable", path=path, hint="Choose another --out or fix its permissions")


def read_own_records(path: str | Path) -> ExistingRecords:
    """The records of ``path`` if it is provably omnict's (or absent); raises OutputError and changes nothing else.

    ``cut_bytes`` of the result is the length of a torn last record, which
    :func:`cut_torn_record` may cut (nothing is cut here).
    """
    path = Path(path)
    check_regular_or_absent(path)
    if not path.exists():
        return ExistingRecords()
    try:
        # O_NONBLOCK: a FIFO swapped in after the check above fails here instead of waiting for a writer
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as stream:
            check_regular_or_absent(path, stream.fileno())
            if stream.read(1) not in (b"", b"{"):  # not JSON lines: refused before a large file is read
                raise OutputError(
                    "does not start with a JSON record: it is not a findings file omnict wrote",
                    path=path,
                    hint=NOT_OURS_HINT,
                )
            stream.seek(0)
            data = stream.read()
    except OSError as error:
        raise OutputError(f"cannot read the earlier records ({error.strerror})", path=path) from error
    complete = data.rfind(b"\n") + 1
    torn = data[complete:]
    if torn and not (torn.startswith(RECORD_START) or RECORD_START.startswith(torn)):
        raise OutputError(
            f"ends in {len(torn)} bytes that are neither a whole line nor the start of an omnict record; "
            "it is not a findings file omnict wrote",
            path=path,
            hint=NOT_OURS_HINT,
        )
    records = parse_lines(path, data[:complete], hint=NOT_OURS_HINT)
    for line, record in enumerate(records, start=1):
        problem = _not_a_record(record)
        if problem:
            raise OutputError(f"record {line} {problem}", path=path, hint=NOT_OURS_HINT)
    return ExistingRecords(records=records, cut_bytes=len(torn))


def _not_a_record(record: dict) -> str | None:
    """Why a JSON object is not a record omnict wrote, or None."""
    if not isinstance(record.get("study_id"), str) or not isinstance(record.get("status"), str):
        return "is not an omnict record (it has no study_id and status)"
    model = record.get("model")
    if not (isinstance(model, dict) and isinstance(model.get("name"), str) and isinstance(model.get("revision"), str)):
        return "has no model identity (model name and revision), so no one can tell which model made it"
    return None


def refuse_other_models(path: str | Path, existing: ExistingRecords, identity) -> None:
    """Raise OutputError when ``existing`` holds records of a model other than ``identity``."""
    others = sorted(
        {
            f"{record['model']['name']} {record['model']['revision'][:19]}"
            for record in existing.records
            if record["model"]["revision"] != identity.revision
        }
    )
    if others:
        raise OutputError(
            f"holds records made by another model ({', '.join(others)}), not {identity.name} {identity.revision[:19]}",
            path=path,
            hint="Pass --overwrite to start the file over, or write to another --out",
        )


def cut_torn_record(path: str | Path, existing: ExistingRecords) -> None:
    """Cut the torn last record :func:`read_own_records` found (a kill inside a write); the whole lines stay."""
    path = Path(path)
    try:
        os.truncate(path, path.stat().st_size - existing.cut_bytes)
    except OSError as error:
        raise OutputError(f"cannot cut its torn last line ({error.strerror})", path=path) from error


def lock_path(path: str | Path) -> Path:
    """``findings.jsonl`` -> ``findings.jsonl.lock``, the file the lock is held on."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


class FindingsLock:
    """An exclusive lock on a findings file for one run; see the module notes.

    ``wait``: block until the holder is done (the shard merge, which every
    shard may reach) instead of refusing. ``notes`` says when a lock left by
    a process that is gone was taken over. The lock file is removed on exit.
    """

    def __init__(self, path: str | Path, wait: bool = False):
        self.path = Path(path)
        self.lock_file = lock_path(self.path)
        self.wait = wait
        self.notes: list[str] = []
        self._fd: int | None = None

    def __enter__(self) -> FindingsLock:
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        while self._fd is None:
            fd = self._open()
            if not self._lock(fd):
                continue  # the holder removed the file we locked: lock the new one
            self._fd = fd
        self._write_holder()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fd is None:
            return
        try:
            self.lock_file.unlink(missing_ok=True)  # while still holding it, so no one locks a removed file
        finally:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        """The lock file, opened without following a link: a planted ``x.lock -> /etc/...`` is never written."""
        try:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
        except OSError as error:
            reason = "it is a symlink" if error.errno == errno.ELOOP else error.strerror
            raise OutputError(
                f"cannot write its lock file {self.lock_file.name} ({reason})",
                path=self.path,
                hint="Remove that file if no omnict run is using it, or choose another --out",
            ) from error
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OutputError(
                f"cannot write its lock file {self.lock_file.name} (not a regular file)",
                path=self.path,
                hint="Remove it, or choose another --out",
            )
        return fd

    def _lock(self, fd: int) -> bool:
        """Lock ``fd``; False when its file was removed meanwhile. Raises OutputError when another run holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = _holder_text(fd)
            os.close(fd)
            raise OutputError(
                f"is being written by another omnict run ({holder})",
                path=self.path,
                hint=f"Wait for it to finish, or write to another --out (its lock file is {self.lock_file})",
            ) from None
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise OutputError(f"cannot lock {self.lock_file.name} ({error.strerror})", path=self.path) from error
            self.notes.append(
                f"{self.path}: this file system cannot lock files ({error.strerror}); "
                "make sure no other run writes the same --out"
            )
            return True
        try:
            same = os.stat(self.lock_file).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
        return same

    def _write_holder(self) -> None:
        earlier = _holder_text(self._fd)
        if earlier != "holder unknown" and _holder_pid(self._fd) != os.getpid():
            self.notes.append(f"{self.path}: took over a lock left by a run that is gone ({earlier})")
        holder = {"pid": os.getpid(), "host": socket.gethostname()}
        data = (json.dumps(holder) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)


def _holder(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        holder = json.loads(text)
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _holder_pid(fd: int):
    return _holder(fd).get("pid")


def _holder_text(fd: int) -> str:
    holder = _holder(fd)
    if "pid" not in holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on host {holder.get('host', '?')}"
