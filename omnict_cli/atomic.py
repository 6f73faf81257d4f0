"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

Every file omnict writes for a user (label maps, CSVs, JSON scores, model
files, cache entries, configs) goes through here: the bytes go to a
temporary file in the destination folder (``.<name>.<random>.tmp``, so the
final rename stays on one file system), are flushed to disk, get the mode
the user's umask gives new files (``mkstemp`` would leave 0600), and replace
the destination in one ``os.replace``. Two writers of one path both succeed;
the last rename wins.

Commands check their destination with :func:`check_destination` before
the work, and turn a write that fails anyway into one line with
:func:`output_error`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from omnict_cli.errors import OutputError

TEMP_SUFFIX = ".tmp"
"""Suffix of the temporary files, so cleaners (``omnict cache clear``) can recognise leftovers."""


def write_bytes_atomically(path: str | Path, data: bytes, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically, creating its folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            if fsync:
                stream.flush()
                os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text_atomically(path: str | Path, text: str, fsync: bool = True) -> Path:
    """:func:`write_bytes_atomically` for UTF-8 text."""
    return write_bytes_atomically(path, text.encode("utf-8"), fsync=fsync)


def check_destination(path: str | Path, *, folder: bool = False) -> Path:
    """Raise :class:`~omnict_cli.errors.OutputError` unless ``path`` can be written; returns it.

    Commands call this before their long work, so an unwritable ``--out``
    costs the user one line at once instead of a traceback after an hour.
    ``folder`` says ``path`` is a folder to write into rather than a file.
    Nothing is created: the nearest existing folder on the way must be a
    writable folder (the missing ones are made when the output is written).
    """
    path = Path(path)
    if path.is_dir() and not folder:
        raise OutputError("is a folder, not a file", path=path, hint="Give a file name to write")
    if path.exists() and folder and not path.is_dir():
        raise OutputError("is a file, not a folder", path=path, hint="Give a folder to write into")
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(
            f"cannot be written: {existing} is a file, not a folder",
            path=path,
            hint="Choose an output path whose folders are folders",
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot be written: the folder {existing} is not writable by this user",
            path=path,
            hint="Choose a writable place, or change the folder's permissions",
        )
    return path


def output_error(path: str | Path, error: OSError) -> OutputError:
    """The one-line error for a write that failed anyway (disk full, removed folder, ...)."""
    reason = error.strerror or str(error)
    return OutputError(
        f"cannot be written ({reason})",
        path=path,
        hint="Check the place is writable and has space, then run the command again",
    )


def apply_umask(folder: str | Path) -> None:
    """Give a staged folder and everything in it the modes the user's umask gives new ones.

    Folders staged with ``tempfile.mkdtemp`` (written whole, then renamed
    into place) start 0700, and some writers leave 0600 files; renamed as
    they are, outputs shared on a cluster would be unreadable by the group.
    """
    folder = Path(folder)
    mask = current_umask()
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_identity(stat_result) -> tuple[int, int, int]:
    """Device, inode and modification time: which file a path held when it was read."""
    return stat_result.st_dev, stat_result.st_ino, stat_result.st_mtime_ns


def remove_if_unchanged(path: Path, identity) -> str | None:
    """Remove a bad cache entry unless another process has meanwhile replaced it with a new file.

    ``identity`` is :func:`file_identity` of the file as it was read. Returns
    why the entry could not be removed (a read-only cache, a folder of another
    user), else None: a bad entry that stays is only ignored, it never fails a study.
    """
    try:
        if file_identity(os.stat(path)) == identity:
            Path(path).unlink()
    except FileNotFoundError:
        return None  # another process removed or replaced it: nothing left to do
    except OSError as error:
        return error.strerror or str(error)
    return None
