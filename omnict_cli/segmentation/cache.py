"""The content-addressed organ-mask cache: segment a study once, reuse the mask everywhere.

Segmentation is the slowest step of a run, and users often fill the cache
on CPU machines before a GPU run, so a mask is stored under a key that
depends only on what determines it:

* the canonical voxels (C-order bytes, little-endian, with dtype and shape),
* the voxel spacing rounded to 0.1 micrometre (the affine's float noise must
  not change the key; origin and file name do not matter),
* the segmenter's ``name``, ``version`` and ``options()`` (sorted-key JSON).

Layout: ``<root>/<segmenter name>/<key[:2]>/<key>.nii.gz``, a compressed
NIfTI holding the uint8 label map on the volume's canonical grid, so it
opens in any viewer (file axes ``x, y, z``; the affine is ``volume.affine``
with its columns in that order, see :func:`_encode_entry`). The entry carries its
own record in a NIfTI comment extension (key, shape, dtype, sha256 of the
label bytes, segmenter description, creation time, omnict version; never a
patient identifier or a file path). Keeping record and mask in one file
means one ``os.replace`` publishes a complete entry: concurrent writers of
the same key cannot pair one writer's mask with another's record, and
readers see either no entry or a complete one, without locks.

Every read verifies the entry (gzip CRC, NIfTI header, shape, key, label
sha256). A bad entry is removed, reported as a warning string and
recomputed; it is never returned.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from omnict_cli.atomic import TEMP_SUFFIX, file_identity, remove_if_unchanged, write_bytes_atomically
from omnict_cli.segmentation.base import LABEL_DTYPE, Segmenter, check_label_map

CACHE_FORMAT = "omnict-mask-cache/1"
"""Goes into every key and record; bump it when the layout or key recipe changes."""

SPACING_DECIMALS = 4
"""Spacing is rounded to 1e-4 mm before hashing: far below any scanner's precision,
far above the float noise of a spacing derived from an affine."""

ENTRY_SUFFIX = ".nii.gz"
_KEY_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_HASH_CHUNK_BYTES = 16 * 2**20
_GZIP_LEVEL = 1  # label maps are mostly runs of zeros: level 1 is near the best size at a fraction of the time


def default_cache_root() -> Path:
    """``$OMNICT_CACHE_DIR``, else ``$XDG_CACHE_HOME/omnict/masks``, else ``~/.cache/omnict/masks``."""
    if os.environ.get("OMNICT_CACHE_DIR"):
        return Path(os.environ["OMNICT_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "omnict" / "masks"
    return Path.home() / ".cache" / "omnict" / "masks"


def cache_key(volume, segmenter: Segmenter) -> str:
    """The sha256 hex key of ``volume`` (an ``omnict_cli.studies.volume.Volume``) segmented by ``segmenter``.

    Equal voxel values give equal keys whatever their memory layout or byte
    order (a flipped view, a big-endian file); any change of a voxel, the
    spacing, or the segmenter's name, version or options gives another key.
    """
    voxels = _little_endian(np.asarray(volume.voxels))
    header = {
        "format": CACHE_FORMAT,
        "shape": list(voxels.shape),
        "dtype": voxels.dtype.str,
        "spacing_mm": [round(float(s), SPACING_DECIMALS) for s in volume.spacing],
        "segmenter": {
            "name": segmenter.name,
            "version": str(segmenter.version),
            "options": _segmenter_options(segmenter),
        },
    }
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    _hash_voxels(digest, voxels)
    return digest.hexdigest()


def _little_endian(voxels: np.ndarray) -> np.ndarray:
    """The same values as little-endian, so a big-endian file keys like its little-endian copy."""
    little = voxels.dtype.newbyteorder("<")
    return voxels if voxels.dtype == little else voxels.astype(little)


def _hash_voxels(digest, voxels: np.ndarray) -> None:
    """Feed the C-order bytes in slabs, so a strided view is never copied whole."""
    if voxels.ndim == 0 or voxels.flags.c_contiguous:
        digest.update(memoryview(np.ascontiguousarray(voxels)).cast("B"))
        return
    plane_bytes = max(1, voxels[0].nbytes)
    step = max(1, _HASH_CHUNK_BYTES // plane_bytes)
    for start in range(0, voxels.shape[0], step):
        digest.update(memoryview(np.ascontiguousarray(voxels[start : start + step])).cast("B"))


def _segmenter_options(segmenter: Segmenter) -> dict:
    options = segmenter.options()
    try:
        json.dumps(options, sort_keys=True)
    except TypeError as error:
        raise ValueError(f"{segmenter.name}: options() must be JSON values to key the mask cache ({error})") from error
    return options


@dataclass
class CacheLookup:
    """What a read found: the labels (None on a miss) and why an entry was thrown away, if one was."""

    key: str
    labels: np.ndarray | None
    warning: str | None = None


@dataclass
class SegmenterUsage:
    """Entries and bytes one segmenter holds in the cache."""

    entries: int = 0
    size_bytes: int = 0


@dataclass
class CacheInfo:
    """What ``omnict cache info`` shows."""

    root: Path
    segmenters: dict[str, SegmenterUsage] = field(default_factory=dict)

    @property
    def entries(self) -> int:
        return sum(usage.entries for usage in self.segmenters.values())

    @property
    def size_bytes(self) -> int:
        return sum(usage.size_bytes for usage in self.segmenters.values())


class MaskCache:
    """Label maps on disk, keyed by voxels + spacing + segmenter (see the module docs).

    Safe to share between processes and machines (e.g. on a network drive):
    writes are atomic renames, reads verify what they load.
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_root()

    def entry_path(self, key: str, segmenter: Segmenter) -> Path:
        """``<root>/<segmenter name>/<key[:2]>/<key>.nii.gz``."""
        return self.root / _folder_name(segmenter.name) / key[:2] / f"{key}{ENTRY_SUFFIX}"

    def get(self, volume, segmenter: Segmenter) -> np.ndarray | None:
        """The cached label map for ``volume``, or None (a bad entry is removed and counts as a miss)."""
        return self.lookup(volume, segmenter).labels

    def lookup(self, volume, segmenter: Segmenter, key: str | None = None) -> CacheLookup:
        """Like :meth:`get`, but also says why an entry was removed."""
        key = key or cache_key(volume, segmenter)
        path = self.entry_path(key, segmenter)
        try:
            with open(path, "rb") as stream:
                identity = file_identity(os.fstat(stream.fileno()))
                data = stream.read()
        except (FileNotFoundError, NotADirectoryError):
            return CacheLookup(key, None)
        except OSError as error:
            return CacheLookup(
                key, None, f"mask cache entry {path} could not be read ({error.strerror or error}); segmenting again"
            )
        try:
            labels = _decode_entry(data, key, volume.shape)
        except ValueError as problem:
            removal = remove_if_unchanged(path, identity)
            done = "removed it" if removal is None else f"could not remove it ({removal})"
            return CacheLookup(
                key, None, f"mask cache entry {path} was corrupt ({problem}); {done} and segmenting again"
            )
        return CacheLookup(key, labels)

    def put(self, volume, segmenter: Segmenter, labels: np.ndarray, key: str | None = None) -> Path:
        """Store ``labels`` (validated against the volume and the segmenter's vocabulary); returns the entry path."""
        return self._store(volume, segmenter, check_label_map(labels, volume, segmenter), key)

    def get_or_compute(self, volume, segmenter: Segmenter) -> tuple[np.ndarray, bool, list[str]]:
        """``(labels, hit, warnings)``: the cached mask, or a fresh one from ``segmenter`` that is then stored.

        A cache that cannot be written (read-only, disk full) does not fail
        the study: the labels are returned with a warning saying so.
        """
        key = cache_key(volume, segmenter)
        found = self.lookup(volume, segmenter, key)
        warnings = [found.warning] if found.warning else []
        if found.labels is not None:
            return found.labels, True, warnings
        labels = check_label_map(segmenter.segment(volume), volume, segmenter)
        try:
            self._store(volume, segmenter, labels, key)
        except OSError as error:
            warnings.append(
                f"could not store the mask in the cache at {self.root} "
                f"({error.strerror or error}); it will be segmented again next time"
            )
        return labels, False, warnings

    def _store(self, volume, segmenter: Segmenter, labels: np.ndarray, key: str | None) -> Path:
        """Write an already validated label map under its key."""
        key = key or cache_key(volume, segmenter)
        path = self.entry_path(key, segmenter)
        write_file_atomically(path, _encode_entry(labels, volume.affine, key, segmenter))
        return path

    def info(self) -> CacheInfo:
        """Entries and bytes per segmenter; an absent root is an empty cache."""
        info = CacheInfo(root=self.root)
        for segmenter_dir, path in self._entry_files():
            usage = info.segmenters.setdefault(segmenter_dir.name, SegmenterUsage())
            usage.entries += 1
            usage.size_bytes += _size(path)
        return info

    def clear(self) -> CacheInfo:
        """Remove every entry (and leftovers of interrupted writes); returns what was removed.

        Only files the cache itself names are deleted, so pointing
        ``--cache-dir`` at the wrong folder cannot wipe unrelated files.
        """
        removed = self.info()
        for _, path in self._entry_files(include_temporary=True):
            path.unlink(missing_ok=True)
        for segmenter_dir in _subfolders(self.root):
            for shard in _subfolders(segmenter_dir):
                _remove_if_empty(shard)
            _remove_if_empty(segmenter_dir)
        return removed

    def _entry_files(self, include_temporary: bool = False):
        """``(segmenter folder, file)`` for each entry file (and temporary file) in the layout."""
        for segmenter_dir in _subfolders(self.root):
            for shard in _subfolders(segmenter_dir):
                for path in sorted(shard.iterdir()):
                    if _is_entry_name(path.name) or include_temporary and _is_temporary_name(path.name):
                        yield segmenter_dir, path


def _encode_entry(labels: np.ndarray, affine: np.ndarray, key: str, segmenter: Segmenter) -> bytes:
    """A gzipped NIfTI of ``labels`` with the entry's record as a JSON comment extension.

    The file's axes are ``(x, y, z)`` (i = x, j = y, k = z, slices along k as
    most NIfTI files have them): NIfTI stores Fortran order, so the
    transposed view of our C-order ``[z, y, x]`` array is written without a
    copy, and its affine is ``volume.affine`` with the columns in that order,
    the same grid in the same world position.
    """
    import nibabel as nib
    from isal import igzip

    from omnict_cli import __version__

    labels = np.ascontiguousarray(labels, dtype=LABEL_DTYPE)
    record = {
        "format": CACHE_FORMAT,
        "key": key,
        "shape": list(labels.shape),
        "dtype": np.dtype(LABEL_DTYPE).str,
        "labels_sha256": hashlib.sha256(memoryview(labels).cast("B")).hexdigest(),
        "segmenter": segmenter.describe(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "omnict_version": __version__,
    }
    file_affine = np.asarray(affine, dtype=float)[:, [2, 1, 0, 3]]
    image = nib.Nifti1Image(labels.transpose(2, 1, 0), file_affine)
    image.set_data_dtype(LABEL_DTYPE)
    image.set_qform(file_affine, code=1)
    image.set_sform(file_affine, code=1)
    image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", json.dumps(record).encode()))
    return igzip.compress(image.to_bytes(), compresslevel=_GZIP_LEVEL)


def _decode_entry(data: bytes, key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The verified ``[z, y, x]`` label map in an entry file; ValueError says what is wrong with it."""
    import zlib

    import nibabel as nib
    from isal import igzip

    try:
        raw = igzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"not a complete gzip file: {error}") from error
    try:
        image = nib.Nifti1Image.from_bytes(raw)
        file_array = np.asanyarray(image.dataobj)
    except Exception as error:  # nibabel raises many types for a mangled header; all mean "unreadable"
        raise ValueError(f"not a readable NIfTI: {type(error).__name__}: {error}") from error
    record = _entry_record(image)
    expected = {"format": CACHE_FORMAT, "key": key, "shape": list(shape), "dtype": np.dtype(LABEL_DTYPE).str}
    for name, value in expected.items():
        if record.get(name) != value:
            raise ValueError(f"record {name} is {record.get(name)!r}, expected {value!r}")
    if file_array.ndim != 3 or file_array.shape[::-1] != tuple(shape) or file_array.dtype != LABEL_DTYPE:
        raise ValueError(f"label map is {file_array.dtype} {file_array.shape[::-1]}, expected uint8 {tuple(shape)}")
    labels = np.ascontiguousarray(file_array.transpose(2, 1, 0))  # a view: the file's Fortran order is our C order
    if hashlib.sha256(memoryview(labels).cast("B")).hexdigest() != record.get("labels_sha256"):
        raise ValueError("label bytes do not match their sha256 in the record")
    return labels


def _entry_record(image) -> dict:
    for extension in image.header.extensions:
        if extension.get_code() == 6:  # NIfTI "comment"
            try:
                record = json.loads(extension.get_content())
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(record, dict) and record.get("format") == CACHE_FORMAT:
                return record
    raise ValueError("the NIfTI has no mask cache record")


def write_file_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path``, fsync it and rename it into place (see :mod:`omnict_cli.atomic`).

    Readers see the old entry or the new one, never a partial one; two
    writers of one path both succeed and the last rename wins.
    """
    write_bytes_atomically(path, data, fsync=True)


def _folder_name(segmenter_name: str) -> str:
    """The segmenter's name as one safe path component."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", segmenter_name).strip("._")
    return name or "segmenter"


def _is_entry_name(name: str) -> bool:
    return name.endswith(ENTRY_SUFFIX) and bool(_KEY_PATTERN.match(name[: -len(ENTRY_SUFFIX)]))


def _is_temporary_name(name: str) -> bool:
    """``.<key>.nii.gz.<random>.tmp`` as left by :func:`write_file_atomically` when a process was killed."""
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return False
    entry_name = name[1:].split(ENTRY_SUFFIX, 1)[0] + ENTRY_SUFFIX
    return _is_entry_name(entry_name)


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(path for path in folder.iterdir() if path.is_dir() and not path.is_symlink())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (another process is writing, or the user put files there): keep it


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0  # removed by a concurrent clear
