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
    """

    allow_non_ct: bool = False
    max_voxels: int = DEFAULT_MAX_VOXELS


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
