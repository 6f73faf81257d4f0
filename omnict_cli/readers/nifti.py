"""NIfTI-1/2 reader (``.nii``, ``.nii.gz``).

nibabel parses the header; gzip is decoded by python-isal (several times
faster than zlib) when it is installed, streaming straight into the voxel
array so the decoded data is held once. ``scl_slope``/``scl_inter`` are
applied here, exactly once; whole-number HU stay int16.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from omnict_cli.errors import StudyLoadError
from omnict_cli.readers.base import LoadOptions, RawImage, check_voxel_count

try:  # python-isal: same format as gzip, faster decoder
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover - isal is a dependency, this is a safety net
    _gzip = gzip

_HEADER_CLASSES = {348: nib.Nifti1Image, 540: nib.Nifti2Image}
_DECODE_ERRORS = (OSError, EOFError, ValueError, zlib.error, ImageFileError, HeaderDataError)


GZIP_MAGIC = b"\x1f\x8b"


def _open(path: Path, warnings: list[str]):
    """Open for reading, decompressing when the bytes (not the name) are gzip.

    The name can lie both ways: a plain NIfTI saved as ``.nii.gz`` loads
    (with a warning), and random bytes named ``.nii.gz`` are reported as
    "not a NIfTI file" instead of an opaque gzip error. An empty file is
    named as such.
    """
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if not magic:
        raise StudyLoadError("empty file (0 bytes)", path=path, hint="Re-export it or remove it")
    named_gz = path.name.lower().endswith(".gz")
    if magic == GZIP_MAGIC:
        if not named_gz:
            warnings.append("file is gzip-compressed although not named .gz: decompressed")
        return _gzip.open(path, "rb")
    if named_gz:
        warnings.append("file is named .gz but is not gzip-compressed: read as plain NIfTI")
    return open(path, "rb")


def _image_class(header_bytes: bytes, path: Path):
    """Pick NIfTI-1 or NIfTI-2 from ``sizeof_hdr`` (either byte order).

    ``header_bytes`` is the start of the (decompressed) file, up to 540
    bytes. A file that ends inside its header is reported as truncated
    here; nibabel would fail on it with an internal ``WrapStructError``.
    """
    if len(header_bytes) < 4:
        raise StudyLoadError("file is shorter than a NIfTI header", path=path,
                             hint="Re-export the scan; the file is truncated")
    for order in ("<", ">"):
        size = int(np.frombuffer(header_bytes[:4], dtype=f"{order}i4")[0])
        if size in _HEADER_CLASSES:
            if len(header_bytes) < size:
                raise StudyLoadError(f"file ends inside its NIfTI header ({len(header_bytes)} of {size} bytes)",
                                     path=path, hint="Re-export or re-download it; the file is truncated")
            return _HEADER_CLASSES[size]
    raise StudyLoadError("not a NIfTI file (header size field is neither 348 nor 540)", path=path,
                         hint="Check the file is really NIfTI; rename it if it is another format")


def read_nifti(path: Path, options: LoadOptions) -> RawImage:
    """Read a NIfTI file into HU voxels and a RAS affine."""
    warnings = []
    try:
        with _open(path, warnings) as stream:
            image_class = _image_class(stream.read(max(_HEADER_CLASSES)), path)
            stream.seek(0)
            image = image_class.from_stream(stream)
            check_voxel_count(image.shape, path, options)
            stored = np.asanyarray(image.dataobj.get_unscaled())
    except (StudyLoadError, PermissionError):
        raise  # PermissionError is an OSError but not damage; the loader names it
    except _DECODE_ERRORS as error:
        raise StudyLoadError(f"cannot read NIfTI data ({type(error).__name__}: {error})", path=path,
                             hint="The file is damaged or truncated; re-export or re-download it") from error
    header = image.header
    affine = image.affine
    if int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0:
        warnings.append("NIfTI header has no orientation (qform and sform codes are 0): assumed RAS")
    array = _apply_scaling(stored, header)
    meta = {"nifti_version": 2 if isinstance(image, nib.Nifti2Image) else 1,
            "stored_dtype": str(stored.dtype)}
    return RawImage(array=array, affine=affine, source_format="nifti", meta=meta, warnings=warnings)


def _apply_scaling(stored: np.ndarray, header) -> np.ndarray:
    """Apply ``scl_slope``/``scl_inter`` once, keeping integers integral."""
    slope, inter = header.get_slope_inter()
    slope = 1.0 if slope is None else float(slope)
    inter = 0.0 if inter is None else float(inter)
    if slope == 1.0 and inter == 0.0:
        return stored
    if stored.dtype.kind in "iu" and slope.is_integer() and inter.is_integer():
        return stored.astype(np.int32) * int(slope) + int(inter)
    return stored.astype(np.float32) * np.float32(slope) + np.float32(inter)
