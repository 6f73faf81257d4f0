"""NRRD / MetaImage (``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``) through SimpleITK.

ITK stores geometry in LPS with a direction matrix whose columns are the
index axes (i fastest); the array SimpleITK hands back is ``[k, j, i]``.
The size limit is checked from the header before pixels are read.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from omnict_cli.errors import StudyLoadError
from omnict_cli.studies.readers.base import LoadOptions, RawImage, check_study_size
from omnict_cli.studies.volume import lps_to_ras

FORMAT_BY_SUFFIX = {".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "mha", ".mhd": "mhd"}


def read_itk(path: Path, options: LoadOptions) -> RawImage:
    """Read a NRRD/MHA/MHD file into HU voxels and an RAS affine."""
    # ITK reports an unreadable file as a generic RuntimeError ("could not
    # create IO object"); opening it first lets PermissionError reach the
    # loader, which says "permission denied". Other errors are ITK's to report.
    try:
        with open(path, "rb"):
            pass
    except (PermissionError, FileNotFoundError):
        raise
    except OSError:
        pass
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        check_study_size(reader.GetSize(), _header_dtype(reader), path, options)
        image = reader.Execute()
    except RuntimeError as error:
        raise StudyLoadError(
            f"cannot read image ({_itk_reason(error)})",
            path=path,
            hint="The file or its data file is damaged or missing; re-export it",
        ) from error
    warnings = []
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
        warnings.append(f"4D input (size {reader.GetSize()}): used the first volume")
    if image.GetNumberOfComponentsPerPixel() > 1:
        image = sitk.VectorIndexSelectionCast(image, 0)
        warnings.append("multi-component pixels: used the first component")
    array = sitk.GetArrayFromImage(image)
    affine = _affine_lps(image)
    if image.GetDimension() == 2:
        array = array[None]
    return RawImage(
        array=array,
        affine=lps_to_ras(affine),
        source_format=FORMAT_BY_SUFFIX[_suffix(path)],
        meta={"stored_dtype": str(array.dtype)},
        warnings=warnings,
    )


_PIXEL_TYPES = {
    **{
        getattr(sitk, f"sitk{prefix}{name}"): numpy
        for prefix in ("", "Vector")
        for name, numpy in (
            ("Int8", np.int8),
            ("UInt8", np.uint8),
            ("Int16", np.int16),
            ("UInt16", np.uint16),
            ("Int32", np.int32),
            ("UInt32", np.uint32),
            ("Int64", np.int64),
            ("UInt64", np.uint64),
            ("Float32", np.float32),
            ("Float64", np.float64),
        )
    },
    sitk.sitkComplexFloat32: np.complex64,
    sitk.sitkComplexFloat64: np.complex128,
}
"""SimpleITK pixel ids (scalar and vector) -> the numpy type of one component."""


def _header_dtype(reader) -> np.dtype:
    """The pixel type the header declares, as numpy sees it, for the size check before ``Execute``.

    Vector pixels count every component (``(float32, 3)``); complex types map
    to numpy's complex, which the size check refuses by type. A type this
    table does not know (a label map type) is taken as float64, the widest.
    """
    base = _PIXEL_TYPES.get(reader.GetPixelID(), np.float64)
    components = max(1, int(reader.GetNumberOfComponents()))
    return np.dtype(base) if components == 1 else np.dtype((base, (components,)))


def _itk_reason(error: RuntimeError) -> str:
    """The sentence of an ITK exception that says what is wrong.

    ITK messages run over several lines: where it was thrown, then
    ``ITK ERROR: <object>(<address>): <reason>``, sometimes followed by
    matrices. The reason is kept; without one, the last line.
    """
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    for line in lines:
        if line.startswith("ITK ERROR:"):
            return re.sub(r"^ITK ERROR:\s*(\w+\(0x[0-9a-fA-F]+\):\s*)?", "", line)
    return lines[-1] if lines else "unknown ITK error"


def _affine_lps(image) -> np.ndarray:
    """Voxel-to-LPS affine for the ``[k, j, i]`` array (2D images get a unit normal)."""
    dimension = image.GetDimension()
    direction = np.array(image.GetDirection(), dtype=float).reshape(dimension, dimension)
    spacing = np.array(image.GetSpacing(), dtype=float)
    origin = np.array(image.GetOrigin(), dtype=float)
    if dimension == 2:
        direction3 = np.eye(3)
        direction3[:2, :2] = direction
        direction, spacing, origin = direction3, np.append(spacing, 1.0), np.append(origin, 0.0)
    columns = direction * spacing  # column c: index axis c in world mm
    affine = np.eye(4)
    affine[:3, :3] = columns[:, ::-1]  # array axes are (k, j, i)
    affine[:3, 3] = origin
    return affine


def _suffix(path: Path) -> str:
    return path.suffix.lower()
