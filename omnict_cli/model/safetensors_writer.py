"""Write safetensors files tensor by tensor, so memory stays near one tensor however large the model.

``safetensors.torch.save_file`` takes every tensor at once: a 6 GB model
costs 6 GB of memory to save. A safetensors file is an 8-byte header length,
a JSON header (name -> dtype, shape, byte offsets; padded to 8 bytes) and the
tensors' bytes in header order. Every size is known before a byte is read,
so the header goes first and each tensor's bytes follow from a callback that
streams them in. Above ``max_shard_bytes`` the tensors are split over
``model-0000k-of-0000n.safetensors`` with ``model.safetensors.index.json``, as
transformers writes and reads them. Every file is fsynced.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omnict_cli.model.checkpoint_files import INDEX_NAME

MAX_SHARD_BYTES = 5 * 1000**3  # 5 GB, transformers' usual shard size


@dataclass(frozen=True)
class TensorToWrite:
    """One output tensor: its name, safetensors dtype code (``"BF16"``), shape, byte size, and its bytes' writer."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    write: Callable  # write(stream): writes exactly nbytes


def write_model_files(folder: Path, tensors: list[TensorToWrite], max_shard_bytes: int = MAX_SHARD_BYTES) -> list[Path]:
    """Write ``tensors`` (in order) into ``folder`` as one file or shards + index; returns the files written."""
    shards = _plan_shards(tensors, max_shard_bytes)
    if len(shards) == 1:
        path = Path(folder) / "model.safetensors"
        _write_file(path, shards[0])
        return [path]
    paths, weight_map = [], {}
    for number, shard in enumerate(shards, start=1):
        path = Path(folder) / f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        _write_file(path, shard)
        paths.append(path)
        weight_map.update(dict.fromkeys((tensor.name for tensor in shard), path.name))
    index = {"metadata": {"total_size": sum(t.nbytes for t in tensors)}, "weight_map": weight_map}
    write_synced(Path(folder) / INDEX_NAME, json.dumps(index, indent=2).encode())
    return paths


def _plan_shards(tensors: list[TensorToWrite], max_shard_bytes: int) -> list[list[TensorToWrite]]:
    shards, size = [[]], 0
    for tensor in tensors:
        if shards[-1] and size + tensor.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(tensor)
        size += tensor.nbytes
    return shards


def _write_file(path: Path, tensors: list[TensorToWrite]) -> None:
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for tensor in tensors:
        header[tensor.name] = {
            "dtype": tensor.dtype,
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + tensor.nbytes],
        }
        offset += tensor.nbytes
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)  # the format aligns the data to 8 bytes
    with open(path, "wb") as stream:
        stream.write(len(header_bytes).to_bytes(8, "little"))
        stream.write(header_bytes)
        data_start = stream.tell()
        for tensor in tensors:
            expected = stream.tell() + tensor.nbytes
            tensor.write(stream)
            if stream.tell() != expected:
                raise RuntimeError(
                    f"{tensor.name}: wrote {stream.tell() - expected + tensor.nbytes} of {tensor.nbytes} bytes"
                )
        assert stream.tell() == data_start + offset
        stream.flush()
        os.fsync(stream.fileno())


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it (the folder it is in is renamed into place later, whole)."""
    with open(path, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
