"""What every reader returns, and the options and checks they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from omnict_cli.errors import StudyLoadError, StudyTooLargeError
from omnict_cli.studies.volume import INTENSITY_HU

DEFAULT_MAX_VOXELS = 1024**3
"""Studies with more voxels are refused before their pixel data is read.

1024^3 voxels is 2 GiB as int16 and covers the largest CT-RATE volumes
(1024x1024x921). Loading beyond it risks exhausting memory on a shared GPU
server mid-run; raise it with ``--max-voxels`` when the machine allows."""

DEFAULT_MAX_BYTES = 6 * 1024**3
"""Studies whose voxels would take more memory than this are refused from the header, before any allocation.

What is counted is the decoded array in the file's own type plus one float32
working copy (:func:`study_bytes`), the most a load holds at once. 6 GiB lets
1024^3 int16 voxels through (2 GiB + 4 GiB, the same size as
``DEFAULT_MAX_VOXELS``, so the largest CT-RATE volumes load), and refuses a
1024^3 float64 volume (12 GiB) that a few megabytes of gzip can hold. Raise
it with ``--max-bytes`` when the machine allows; each loader worker may hold
one such study."""

WORKING_COPY_DTYPE = np.dtype(np.float32)
"""The type of the one full copy a load may make (rescaled HU, NaN repair, integer to float)."""

VOXEL_KINDS = "iuf"
"""numpy kinds of voxel types omnict reads: signed and unsigned integers, real floats (CT holds real
numbers; complex, RGB records and object arrays are refused before anything is allocated)."""


PERMISSION_HINT = "Make the file readable for this user (chmod/chown), or run as a user who may read it"


def permission_denied(path: str | Path) -> StudyLoadError:
    """The one error for a file this user may not read.

    Readers let ``PermissionError`` through (it is an ``OSError``, which
    they otherwise report as damaged data) and the loader turns it into
    this, so the line says what is really wrong and what to do.
    """
    return StudyLoadError("permission denied: cannot read the file", path=path, hint=PERMISSION_HINT)


@dataclass(frozen=True)
class LoadOptions:
    """Choices a user makes about loading; one object passed everywhere.

    Attributes:
        allow_non_ct: load MR/PET/... DICOM series instead of refusing them.
        max_voxels: refuse studies larger than this (see ``DEFAULT_MAX_VOXELS``).
        max_bytes: refuse studies whose decoded voxels plus their float32 working copy would take
            more memory than this (see ``DEFAULT_MAX_BYTES``).
    """

    allow_non_ct: bool = False
    max_voxels: int = DEFAULT_MAX_VOXELS
    max_bytes: int = DEFAULT_MAX_BYTES


@dataclass
class RawImage:
    """A reader's result: voxels in the file's own layout plus geometry.

    ``affine`` maps ``array`` indices (array axis order) to RAS+ mm. Values
    are already in HU (rescale applied exactly once, by the reader) when
    ``intensity`` is ``"hu"``.
    """

    array: np.ndarray
    affine: np.ndarray
    source_format: str
    intensity: str = INTENSITY_HU
    meta: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def check_study_size(shape, dtype, path: str | Path, options: LoadOptions) -> None:
    """Refuse, from the header alone, a study whose voxel type or size omnict will not load.

    Called by every reader before it allocates the voxel array. ``dtype``
    is the type the file stores (a subarray type such as ``(float32, 3)``
    for multi-component pixels counts every component). The type is judged
    first, so a header claiming gigabytes of complex numbers is refused for
    its type, then the voxel count, then the bytes (:func:`study_bytes`).
    """
    dtype = np.dtype(dtype)
    if dtype.base.kind not in VOXEL_KINDS or dtype.base.itemsize > 8:
        raise StudyLoadError(
            f"voxel type {describe_dtype(dtype)} is not supported (CT voxels are real numbers)",
            path=path,
            hint="Convert the scan to integer or float voxels (HU) and load that",
        )
    check_voxel_count(shape, path, options)
    needed = study_bytes(shape, dtype)
    if needed > options.max_bytes:
        dims = "x".join(str(int(n)) for n in shape)
        raise StudyTooLargeError(
            f"{dims} voxels of {describe_dtype(dtype)} need {_bytes_text(needed)} to load (the decoded array "
            f"plus a float32 working copy), over the limit of {_bytes_text(options.max_bytes)}",
            path=path,
            hint="Pass --max-bytes with a larger number of bytes if this machine has the memory",
        )


def study_bytes(shape, dtype) -> int:
    """Bytes a load holds at its peak: the decoded array in ``dtype`` plus one float32 working copy.

    Python integers, so a header claiming absurd sizes cannot overflow the sum.
    """
    count = 1
    for n in shape:
        count *= int(n)
    return count * (np.dtype(dtype).itemsize + WORKING_COPY_DTYPE.itemsize)


def describe_dtype(dtype) -> str:
    """``int16``, ``complex128``, ``3 x float32`` (multi-component), ``record of 3 x uint8`` (RGB).

    Byte order is left out (a big-endian file's ``>i2`` is ``int16``): it changes no size.
    """
    dtype = np.dtype(dtype)
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        return f"{'x'.join(str(n) for n in shape)} x {base.name}"
    if dtype.fields:
        return f"record of {len(dtype.fields)} x {next(iter(dtype.fields.values()))[0].name}"
    return dtype.name


def _bytes_text(count: int) -> str:
    """``11.2 GiB``, ``3.0 MiB`` or ``12,288 bytes``: readable, and exact where it is small."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count:,} bytes"


def check_voxel_count(shape, path: str | Path, options: LoadOptions) -> None:
    """Refuse a study whose header promises more voxels than allowed."""
    count = int(np.prod([int(n) for n in shape], dtype=np.int64))
    if count > options.max_voxels:
        dims = "x".join(str(int(n)) for n in shape)
        raise StudyTooLargeError(
            f"{dims} = {count:,} voxels is over the limit of {options.max_voxels:,}",
            path=path,
            hint="Pass --max-voxels with a larger number if this machine has the memory",
        )
