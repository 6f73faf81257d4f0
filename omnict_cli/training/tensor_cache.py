"""The tensor cache: each study's encoder units and model-grid label map, prepared once and kept on disk.

Training reads every study once per epoch, and loading + preprocessing +
segmenting a CT costs seconds while a training step may cost milliseconds.
So the first pass stores what :func:`omnict_cli.run.study_inputs.prepare_study`
returns and every later read (epoch 2, a resumed run, stage 2 after stage 1)
opens one small file instead of the CT.

Key: sha256 over the study's source file bytes (every file of a DICOM
series, in order), the preprocessing sizes, the segmenter's name, version and
options, and the storage dtype. Like the mask cache key it depends only on
what determines the entry: renaming or moving a file keeps its entry, changing
a voxel, a size or the segmenter makes a new one. The files are hashed, not
decoded, so computing a key is a plain read.

Layout: ``<root>/<key[:2]>/<key>.safetensors`` holding ``units`` (``[N_s, 3, H,
W]``, float16 by default: values are HU / 1000, so the rounding is at most 0.5 HU,
far below CT noise, and the file is half the size) and, when the study was
segmented, ``label_map`` (uint8 on the units' grid). The safetensors metadata
carries the entry's record as JSON: key, kind, grid spacing, the segmenter's
vocabulary and description, the warnings of preparation, and the sha256 of each
tensor's bytes; never a file path or a patient identifier. Nothing is pickled.

Writes go through :mod:`omnict_cli.atomic` (temporary file, fsync, rename), so
concurrent writers (several training processes) are safe and a reader sees a
complete entry or none. Every read verifies the record and the hashes; a bad
entry is removed, reported and prepared again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from omnict_cli.atomic import file_identity, remove_if_unchanged, write_bytes_atomically

CACHE_FORMAT = "omnict-tensor-cache/1"
"""Goes into every key and record; bump it when the layout or the key recipe changes."""

ENTRY_SUFFIX = ".safetensors"
RECORD_KEY = "omnict"
UNIT_DTYPES = {"float16": np.float16, "float32": np.float32}


def default_tensor_cache_root(mask_cache_root: str | Path | None = None) -> Path:
    """Beside the mask cache: ``.../omnict/masks`` -> ``.../omnict/tensors``, any other ``X`` -> ``X-tensors``."""
    from omnict_cli.segmentation.cache import default_cache_root

    masks = Path(mask_cache_root).expanduser() if mask_cache_root is not None else default_cache_root()
    return masks.parent / "tensors" if masks.name == "masks" else masks.parent / f"{masks.name}-tensors"


def source_digest(paths) -> str:
    """sha256 over the bytes of ``paths`` in order (each file's own digest, then its length)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as stream:
            file_hash = hashlib.file_digest(stream, "sha256")
            digest.update(file_hash.digest())
            digest.update(stream.tell().to_bytes(8, "little"))
    return digest.hexdigest()


def entry_key(source: str, setup, units_dtype: str = "float16") -> str:
    """The key of a study whose files hash to ``source`` (:func:`source_digest`), prepared with ``setup``.

    ``setup`` is an ``omnict_cli.run.study_inputs.PrepareSetup``; only what changes
    the prepared tensors enters the key (not the cache folders or load limits).
    """
    segmenter = setup.segmenter
    header = {
        "format": CACHE_FORMAT,
        "source_sha256": source,
        "preprocess": {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(setup.preprocess).items()
        },
        "segmenter": None
        if segmenter is None
        else {"name": segmenter.name, "version": str(segmenter.version), "options": segmenter.options()},
        "units_dtype": units_dtype,
    }
    return hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class CachedStudy:
    """What one entry holds: a prepared study without its file names.

    Attributes:
        units: ``[N_s, 3, H, W]`` in the storage dtype (convert with :meth:`model_input`).
        kind: "slice" or "volume".
        grid_spacing: mm per voxel of the preprocessed grid.
        label_map: uint8 organ labels on the units' grid, or None (no segmenter, a picture, a failure).
        vocabulary: the segmenter's id -> name map when there is a label map.
        segmenter: the segmenter's description, or "none".
        shape, spacing: of the loaded canonical volume.
        warnings: what preparation repaired or assumed.
    """

    units: np.ndarray
    kind: str
    grid_spacing: tuple[float, float, float]
    label_map: np.ndarray | None = None
    vocabulary: dict[int, str] | None = None
    segmenter: str = "none"
    shape: tuple[int, ...] = ()
    spacing: tuple[float, ...] = ()
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_prepared(cls, prepared, units_dtype: str = "float16") -> CachedStudy:
        """From an ``omnict_cli.run.study_inputs.PreparedStudy``."""
        model_input = prepared.model_input
        label_map = None if model_input.label_map is None else np.asarray(model_input.label_map, dtype=np.uint8)
        return cls(
            units=np.asarray(model_input.units).astype(UNIT_DTYPES[units_dtype]),
            kind=model_input.kind,
            grid_spacing=tuple(float(s) for s in model_input.grid_spacing),
            label_map=label_map,
            vocabulary=None if label_map is None else dict(prepared.vocabulary or {}),
            segmenter=prepared.segmenter,
            shape=tuple(prepared.shape),
            spacing=tuple(prepared.spacing),
            warnings=list(prepared.warnings),
        )

    def model_input(self):
        """An ``omnict_cli.studies.preprocess.ModelInput`` with float32 units, as preprocessing returns it."""
        from omnict_cli.studies.preprocess import ModelInput

        return ModelInput(
            units=self.units.astype(np.float32),
            kind=self.kind,
            grid_spacing=self.grid_spacing,
            label_map=self.label_map,
        )


@dataclass
class CacheRead:
    """A lookup: the entry (None on a miss) and why a bad entry was thrown away, if one was."""

    entry: CachedStudy | None
    warning: str | None = None


class TensorCache:
    """Prepared studies on disk, keyed by :func:`entry_key` (see the module docs)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def entry_path(self, key: str) -> Path:
        """``<root>/<key[:2]>/<key>.safetensors``."""
        return self.root / key[:2] / f"{key}{ENTRY_SUFFIX}"

    def get(self, key: str) -> CacheRead:
        """The verified entry for ``key``; a corrupt one is removed and reported as a miss."""
        path = self.entry_path(key)
        try:
            with open(path, "rb") as stream:
                identity = file_identity(os.fstat(stream.fileno()))
                data = stream.read()
        except (FileNotFoundError, NotADirectoryError):
            return CacheRead(None)
        except OSError as error:
            return CacheRead(
                None,
                f"tensor cache entry {path} could not be read ({error.strerror or error}); preparing the study again",
            )
        try:
            return CacheRead(decode_entry(data, key))
        except ValueError as problem:
            removal = remove_if_unchanged(path, identity)
            done = "removed it" if removal is None else f"could not remove it ({removal})"
            return CacheRead(
                None, f"tensor cache entry {path} was corrupt ({problem}); {done} and preparing the study again"
            )

    def put(self, key: str, entry: CachedStudy) -> Path:
        """Store ``entry`` under ``key`` atomically; returns its path."""
        return write_bytes_atomically(self.entry_path(key), encode_entry(entry, key), fsync=True)

    def peek(self, key: str) -> dict | None:
        """The record of ``key``'s entry plus ``units_shape``, from its header only (no tensor read or check).

        For the start of a run, where reading every entry whole would be a full pass over
        the data; :meth:`get` verifies an entry when training reads it. None when absent or unreadable.
        """
        try:
            with open(self.entry_path(key), "rb") as stream:
                head = stream.read(8)
                length = int.from_bytes(head, "little") if len(head) == 8 else 0
                header = json.loads(stream.read(length)) if 0 < length < 2**26 else {}
        except (OSError, ValueError):
            return None
        try:
            record = json.loads((header.get("__metadata__") or {}).get(RECORD_KEY, "null"))
            units_shape = header["units"]["shape"]
        except (AttributeError, KeyError, TypeError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("format") != CACHE_FORMAT or record.get("key") != key:
            return None
        return {**record, "units_shape": list(units_shape)}


def encode_entry(entry: CachedStudy, key: str) -> bytes:
    """The safetensors bytes of ``entry``, its record (with tensor hashes) in the metadata."""
    from safetensors.numpy import save

    tensors = {"units": np.ascontiguousarray(entry.units)}
    if entry.label_map is not None:
        tensors["label_map"] = np.ascontiguousarray(entry.label_map, dtype=np.uint8)
    record = {
        "format": CACHE_FORMAT,
        "key": key,
        "kind": entry.kind,
        "grid_spacing": list(entry.grid_spacing),
        "vocabulary": None if entry.vocabulary is None else {str(k): v for k, v in entry.vocabulary.items()},
        "segmenter": entry.segmenter,
        "shape": list(entry.shape),
        "spacing": list(entry.spacing),
        "warnings": list(entry.warnings),
        "sha256": {name: _tensor_sha256(array) for name, array in tensors.items()},
    }
    return save(tensors, metadata={RECORD_KEY: json.dumps(record)})


def decode_entry(data: bytes, key: str) -> CachedStudy:
    """The verified :class:`CachedStudy` in entry bytes; ValueError says what is wrong."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        tensors = load(data)
        record = json.loads(_metadata(data).get(RECORD_KEY, "null"))
    except (SafetensorError, ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"not a readable safetensors file: {error}") from error
    if not isinstance(record, dict) or record.get("format") != CACHE_FORMAT or record.get("key") != key:
        raise ValueError("its record does not name this key and format")
    hashes = record.get("sha256") or {}
    if "units" not in tensors or set(hashes) != set(tensors):
        raise ValueError(f"tensors {sorted(tensors)} do not match the record's {sorted(hashes)}")
    for name, array in tensors.items():
        if _tensor_sha256(array) != hashes[name]:
            raise ValueError(f"the bytes of {name} do not match their sha256")
    vocabulary = record.get("vocabulary")
    return CachedStudy(
        units=tensors["units"],
        kind=record["kind"],
        grid_spacing=tuple(record["grid_spacing"]),
        label_map=tensors.get("label_map"),
        vocabulary=None if vocabulary is None else {int(k): v for k, v in vocabulary.items()},
        segmenter=record.get("segmenter", "none"),
        shape=tuple(record.get("shape", ())),
        spacing=tuple(record.get("spacing", ())),
        warnings=list(record.get("warnings", [])),
    )


def _metadata(data: bytes) -> dict:
    """The ``__metadata__`` of safetensors bytes (8-byte little-endian header length, then JSON)."""
    if len(data) < 8:
        raise ValueError("file shorter than a safetensors header")
    length = int.from_bytes(data[:8], "little")
    if length > len(data) - 8:
        raise ValueError("header longer than the file")
    return json.loads(data[8 : 8 + length]).get("__metadata__") or {}


def _tensor_sha256(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(memoryview(array).cast("B")).hexdigest()


def cache_size_bytes(root: str | Path) -> int:
    """Bytes of every entry under ``root`` (for messages and the benchmark)."""
    total = 0
    for folder, _, files in os.walk(root):
        total += sum(os.path.getsize(os.path.join(folder, name)) for name in files if name.endswith(ENTRY_SUFFIX))
    return total
