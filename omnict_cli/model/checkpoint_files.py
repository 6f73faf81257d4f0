"""The tensors of a checkpoint directory, read from safetensors only: one file, or shards with their index.

A released checkpoint is several GB; the importer must never hold it whole.
:class:`CheckpointFiles` reads only the headers up front (names, dtypes,
shapes, byte extents, each checked against the file by
:mod:`omnict_cli.model.weights_files`), then hands out one tensor at a time:
as a ``torch.Tensor`` through ``safetensors.safe_open`` (memory-mapped), or as
its raw bytes copied in bounded chunks straight from the file, which is how
the importer writes a tensor whose dtype it keeps. Nothing is unpickled: a
directory that holds only ``pytorch_model.bin`` / ``.pt`` / ``.pth`` /
``.ckpt`` / ``.pkl`` weights is refused with the way to convert it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from omnict_cli.errors import OmnictError
from omnict_cli.model.safetensors_only import pickled_weight_files, require_safetensors
from omnict_cli.model.weights_files import check_safetensors_file

INDEX_NAME = "model.safetensors.index.json"
COPY_CHUNK_BYTES = 64 * 1024 * 1024
DTYPE_NAMES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64", "I64": "int64"}


class CheckpointError(OmnictError):
    """A checkpoint directory whose weights cannot be read as safetensors."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies: its file, safetensors dtype (``"BF16"``), shape and absolute byte range."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def dtype_name(self) -> str:
        """The torch dtype's name (``"bfloat16"``), or the safetensors code for dtypes models do not use."""
        return DTYPE_NAMES.get(self.dtype, self.dtype)


class CheckpointFiles:
    """The safetensors tensors of one directory, by name (headers read now, data on demand)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.entries: dict[str, TensorEntry] = {}
        for path in weight_files(self.folder):
            self._add_file(path)

    def _add_file(self, path: Path) -> None:
        header = check_safetensors_file(path)
        with open(path, "rb") as stream:
            data_start = 8 + int.from_bytes(stream.read(8), "little")
        for name, entry in header.items():
            if name in self.entries:
                raise CheckpointError(
                    f"tensor {name!r} is stored twice: in {self.entries[name].file.name} and {path.name}",
                    path=self.folder,
                )
            begin, end = entry["data_offsets"]
            self.entries[name] = TensorEntry(
                name, path, entry["dtype"], tuple(entry["shape"]), data_start + begin, data_start + end
            )

    def read(self, name: str):
        """The tensor ``name`` as a ``torch.Tensor`` (memory-mapped read of that tensor only)."""
        from safetensors import safe_open

        with safe_open(self.entries[name].file, framework="pt") as handle:
            return handle.get_tensor(name)

    def copy_bytes(self, name: str, stream) -> None:
        """Write the raw bytes of ``name`` to ``stream``: in the kernel where it can, else in bounded chunks.

        ``os.copy_file_range`` moves the bytes file to file without passing them through this
        process; where the file systems do not allow it, chunks of ``COPY_CHUNK_BYTES`` do.
        """
        entry = self.entries[name]
        with open(entry.file, "rb") as source:
            done = _copy_in_kernel(source, stream, entry.start, entry.nbytes)
            source.seek(entry.start + done)
            left = entry.nbytes - done
            while left:
                chunk = source.read(min(left, COPY_CHUNK_BYTES))
                if not chunk:
                    raise CheckpointError(f"tensor {name!r} ends early (truncated file)", path=entry.file)
                stream.write(chunk)
                left -= len(chunk)


def _copy_in_kernel(source, stream, start: int, nbytes: int) -> int:
    """Bytes copied with ``os.copy_file_range`` (0 where the platform or file systems refuse it)."""
    if not hasattr(os, "copy_file_range"):
        return 0
    stream.flush()
    done = 0
    try:
        while done < nbytes:
            copied = os.copy_file_range(source.fileno(), stream.fileno(), nbytes - done, start + done)
            if copied == 0:
                break
            done += copied
    except OSError:  # another file system, an old kernel: the chunked copy takes over from here
        pass
    stream.seek(0, os.SEEK_END)  # the buffered writer learns where the descriptor now is
    return done


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files to read: the index's shards, else every ``*.safetensors``; refuses pickles."""
    index = folder / INDEX_NAME
    if index.is_file():
        return _indexed_shards(index)
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    if folder.is_dir() and pickled_weight_files(folder):
        require_safetensors(folder, "release")  # raises: the one pickle refusal every loader gives
    raise CheckpointError("no *.safetensors weights", path=folder, hint="Point at the released model directory")


def _indexed_shards(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(f"unreadable shard index ({error})", path=index) from error
    missing = [name for name in names if not (index.parent / name).is_file()]
    if missing or any("/" in name or name.startswith(".") for name in names):
        raise CheckpointError(
            f"the shard index names files that are not in the folder: {', '.join(missing or names)}",
            path=index,
            hint="Download every shard the index lists",
        )
    return [index.parent / name for name in names]
