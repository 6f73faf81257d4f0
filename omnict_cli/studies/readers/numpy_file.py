"""``.npy`` arrays, read without pickle.

Documented assumption (a ``.npy`` file carries no geometry): the array is
already in omnict's canonical layout ``[z, y, x]`` (z inferior->superior,
y anterior->posterior, x patient right->left), holds Hounsfield units, and
has 1 mm isotropic voxels. A 2D array is one axial slice ``[y, x]``. A
warning in every record says so. Object arrays are refused (no unpickling).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from omnict_cli.errors import StudyLoadError
from omnict_cli.studies.readers.base import LoadOptions, RawImage, check_study_size
from omnict_cli.studies.volume import canonical_affine


def read_npy(path: Path, options: LoadOptions) -> RawImage:
    """Read a ``.npy`` array under the module's documented assumption."""
    try:
        lazy = np.load(path, mmap_mode="r", allow_pickle=False)
        check_study_size(lazy.shape, lazy.dtype, path, options)
        array = np.array(lazy)
    except (PermissionError, FileNotFoundError):
        raise  # OSErrors, but not damage: the loader reports it as "permission denied"
    except ValueError as error:
        raise StudyLoadError(
            f"cannot read .npy ({error})",
            path=path,
            hint="Save a plain numeric array with numpy.save (object arrays are refused)",
        ) from error
    except (OSError, EOFError) as error:
        raise StudyLoadError(
            f"cannot read .npy ({type(error).__name__}: {error})", path=path, hint="The file is damaged or truncated"
        ) from error
    if array.dtype.kind not in "iuf" or array.ndim not in (2, 3, 4):
        raise StudyLoadError(
            f"expected a 2D/3D numeric array, got {array.ndim}D {array.dtype}",
            path=path,
            hint="Save the volume as [z, y, x] in HU",
        )
    if array.ndim == 2:
        array = array[None]
    warnings = ["npy: assumed canonical [z, y, x] layout, HU values and 1 mm voxels"]
    return RawImage(array=array, affine=canonical_affine(), source_format="npy", warnings=warnings)
