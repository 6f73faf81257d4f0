"""Check safetensors files from their headers before anything loads them.

A safetensors file is an 8-byte little-endian header length, a JSON header
(tensor name -> dtype, shape, byte offsets) and the tensor bytes. A garbage,
truncated or hostile file (a 1 KB header claiming a 16 GiB tensor, a header
length of 2^63) makes loaders raise deep inside Rust or allocate before they
fail; reading the header ourselves and checking every tensor's byte extent
against the file size turns each of those into one line naming the file.
Nothing here reads tensor data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from omnict_cli.errors import OmnictError

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit
# Bytes per element of every dtype the safetensors format defines (sub-byte float types are not used by models here).
DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "C64": 8,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


class WeightsFileError(OmnictError):
    """A weights file that is not a well-formed safetensors file."""


def check_safetensors_file(path: str | Path) -> dict:
    """The file's header (tensor name -> entry) once every tensor's extent is checked; else WeightsFileError."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as stream:
            prefix = stream.read(8)
            if len(prefix) < 8:
                raise WeightsFileError(
                    f"not a safetensors file: {size} bytes, shorter than its 8-byte header length", path=path
                )
            header_length = int.from_bytes(prefix, "little")
            if header_length > min(MAX_HEADER_BYTES, size - 8):
                raise WeightsFileError(
                    f"not a safetensors file (or truncated): header length {header_length} bytes "
                    f"but the file has {size - 8} after it (limit {MAX_HEADER_BYTES})",
                    path=path,
                )
            raw_header = stream.read(header_length)
    except OSError as error:
        raise WeightsFileError(f"cannot read ({error.strerror or error})", path=path) from error
    header = _parse_header(raw_header, path)
    _check_extents(header, size - 8 - header_length, path)
    return header


def _parse_header(raw_header: bytes, path: Path) -> dict:
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise WeightsFileError(f"not a safetensors file: its header is not JSON ({error})", path=path) from error
    if not isinstance(header, dict):
        raise WeightsFileError("not a safetensors file: its header is not a JSON object", path=path)
    header.pop("__metadata__", None)
    return header


def _check_extents(header: dict, data_bytes: int, path: Path) -> None:
    """Every tensor: a known dtype, a shape of non-negative ints, and bytes inside the file matching that shape."""
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise WeightsFileError(f"tensor {name!r}: header entry is not an object", path=path)
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in DTYPE_BYTES:
            raise WeightsFileError(f"tensor {name!r}: unsupported dtype {dtype!r}", path=path)
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise WeightsFileError(f"tensor {name!r}: shape {shape!r} is not a list of sizes", path=path)
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(n, int) for n in offsets)):
            raise WeightsFileError(f"tensor {name!r}: data_offsets {offsets!r} are not two integers", path=path)
        begin, end = offsets
        if not 0 <= begin <= end <= data_bytes:
            raise WeightsFileError(
                f"tensor {name!r}: bytes {begin}..{end} lie outside the file's {data_bytes} data bytes "
                "(truncated or corrupt)",
                path=path,
            )
        expected = math.prod(shape) * DTYPE_BYTES[dtype]
        if end - begin != expected:
            raise WeightsFileError(
                f"tensor {name!r}: shape {shape} of {dtype} needs {expected} bytes, the file holds {end - begin}",
                path=path,
            )


def check_weights_dir(folder: str | Path) -> list[Path]:
    """The ``*.safetensors`` files of a model directory, each checked (see ``check_safetensors_file``)."""
    files = sorted(Path(folder).glob("*.safetensors"))
    for path in files:
        check_safetensors_file(path)
    return files
