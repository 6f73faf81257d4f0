"""omnict's cache of imported release checkpoints: import once, start at once afterwards.

A ``--model`` that points at the authors' release layout (a directory, or a
hub snapshot) is converted by ``release_import.import_release`` into an
omnict model directory under ``<cache>/models/`` (``$OMNICT_CACHE_DIR/models``,
else ``$XDG_CACHE_HOME/omnict/models``, else ``~/.cache/omnict/models``).
The folder is keyed by the source's revision: the hub commit, or for a local
directory a hash of its weights' headers, sizes and modification times, so
an edited checkpoint is imported again and an unchanged one never is.

Two runs starting at once take a lock per key, so only one imports; the
other waits and then uses the result. An import is written to a hidden
staging folder and renamed into place only when complete, so an import
killed midway leaves nothing a later run would use (the next run under the
lock removes the leftover staging folders).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from omnict_cli.model.sources import ResolvedSource

IMPORT_RECORD = "omnict-import.json"
_STAGING_PREFIX = ".importing-"
_REVISION_FILES = ("*.safetensors", "*.json", "*.bin", "*.pt", "*.pth")


def default_models_root() -> Path:
    """Where imported models live (see the module notes)."""
    if os.environ.get("OMNICT_CACHE_DIR"):
        return Path(os.environ["OMNICT_CACHE_DIR"]).expanduser() / "models"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "omnict" / "models"
    return Path.home() / ".cache" / "omnict" / "models"


def source_revision(source: ResolvedSource) -> str:
    """The hub commit, or ``sha256:<hex>`` of the directory's weight headers, sizes and modification times."""
    if source.commit:
        return source.commit
    digest = hashlib.sha256()
    files = sorted({path for pattern in _REVISION_FILES for path in source.path.rglob(pattern) if path.is_file()})
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(source.path)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        if path.suffix == ".safetensors":
            digest.update(_header_bytes(path))
    return f"sha256:{digest.hexdigest()}"


def _header_bytes(path: Path) -> bytes:
    """The JSON header of a safetensors file, at most 100 MB of it (a garbage file is refused later, by the import)."""
    with open(path, "rb") as stream:
        length = int.from_bytes(stream.read(8), "little")
        return stream.read(min(length, 100 * 1024 * 1024))


def imported_model_dir(source: ResolvedSource, root: Path | None = None) -> Path:
    """The cache folder for ``source``'s import (it may not exist yet)."""
    revision = source_revision(source).removeprefix("sha256:")
    name = source.hub_id.replace("/", "--") if source.hub_id else source.path.resolve().name
    return Path(root or default_models_root()) / f"{re.sub(r'[^A-Za-z0-9._-]', '_', name)}-{revision[:16]}"


def cached_import(source: ResolvedSource, *, root: Path | None = None, echo=print, importer=None) -> Path:
    """The imported omnict model directory for ``source``: from the cache, or imported now (under a lock).

    ``importer`` is ``release_import.import_release`` unless a caller passes another
    function with its signature (``importer(source_dir, out, echo=...)``).
    """
    out = imported_model_dir(source, root)
    if (out / IMPORT_RECORD).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(out.parent / f"{out.name}.lock"):
        if (out / IMPORT_RECORD).is_file():  # another run imported it while we waited
            return out
        _remove_leftovers(out)
        if importer is None:
            from omnict_cli.model.release_import import import_release as importer
        staging = out.parent / f"{_STAGING_PREFIX}{out.name}-{os.getpid()}"
        echo(f"importing {source.description} into {out} (first use; later runs start at once)")
        try:
            importer(source.path, staging / "model", echo=echo)
            record = {"source": source.to_dict(), "revision": source_revision(source)}
            (staging / "model" / IMPORT_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
            os.replace(staging / "model", out)
        finally:  # a refused import leaves nothing behind either
            shutil.rmtree(staging, ignore_errors=True)
    return out


def _remove_leftovers(out: Path) -> None:
    """Drop staging folders of killed imports of this key, and a folder at ``out`` without its import record."""
    for leftover in out.parent.glob(f"{_STAGING_PREFIX}{out.name}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    if out.exists():
        shutil.rmtree(out)


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """Hold an exclusive lock on ``lock_path`` (released by the OS if the process dies)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the atomic rename alone keeps half imports out of use
        yield
        return
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
