"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

Every file omnict writes for a user (label maps, CSVs, JSON scores, model
files, cache entries, configs) goes through here: the bytes go to a
temporary file in the destination folder (``.<name>.<random>.tmp``, so the
final rename stays on one file system), are flushed to disk, get the mode
the user's umask gives new files (``mkstemp`` would leave 0600), and replace
the destination in one ``os.replace``. Two writers of one path both succeed;
the last rename wins.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
