"""NIfTI-1/2 reader (``.nii``, ``.nii.gz``).

nibabel parses the header; gzip is decoded by python-isal (several times
faster than zlib), in pieces straight into the voxel array, so the decoded
data is held once and finished slices can be used before the rest arrives. ``scl_slope``/``scl_inter`` are
applied here, exactly once; whole-number HU stay int16.
"""

from __future__ import annotations

import gzip
import io
import logging
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from omnict_cli.errors import StudyLoadError
from omnict_cli.studies.readers.base import LoadOptions, RawImage, check_study_size
from omnict_cli.studies.volume import affine_problem

try:  # python-isal: same format as gzip, faster decoder
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover - isal is a dependency, this is a safety net
    _gzip = gzip

_HEADER_CLASSES = {348: nib.Nifti1Image, 540: nib.Nifti2Image}
_PIECE_BYTES = 8 * 2**20  # decode granularity: small enough to stream, large enough to be fast
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
        raise StudyLoadError(
            "file is shorter than a NIfTI header", path=path, hint="Re-export the scan; the file is truncated"
        )
    for order in ("<", ">"):
        size = int(np.frombuffer(header_bytes[:4], dtype=f"{order}i4")[0])
        if size in _HEADER_CLASSES:
            if len(header_bytes) < size:
                raise StudyLoadError(
                    f"file ends inside its NIfTI header ({len(header_bytes)} of {size} bytes)",
                    path=path,
                    hint="Re-export or re-download it; the file is truncated",
                )
            return _HEADER_CLASSES[size]
    raise StudyLoadError(
        "not a NIfTI file (header size field is neither 348 nor 540)",
        path=path,
        hint="Check the file is really NIfTI; rename it if it is another format",
    )


def read_nifti(path: Path, options: LoadOptions, on_planes=None) -> RawImage:
    """Read a NIfTI file into HU voxels and a RAS affine.

    The voxel block is decoded in pieces straight into one Fortran-ordered
    array (NIfTI's on-disk order), so the decoded volume is held once.
    ``on_planes(progress)``, when given, is called after each piece with a
    :class:`VoxelProgress`: a caller in another thread can resample the
    finished slices while the rest is still decoding (``omnict_cli.studies.prepare``).
    """
    warnings = []
    try:
        with _open(path, warnings) as stream:
            header_bytes = stream.read(max(_HEADER_CLASSES) + _EXTENSION_FLAG_BYTES)
            image_class = _image_class(header_bytes, path)
            header = _checked_header(image_class, header_bytes, warnings)
            shape = header.get_data_shape()
            check_study_size(shape, header.get_data_dtype(), path, options)
            slope, inter = _slope_inter(header, path, warnings)
            stream.seek(_voxel_offset(header, header_bytes[_header_size(image_class) :], path, warnings))
            scaled = (slope, inter) != (1.0, 0.0)
            report = None if on_planes is None else partial(_report_progress, on_planes, header, scaled)
            stored = _read_voxel_block(stream, shape, header.get_data_dtype(), path, report)
    except (StudyLoadError, PermissionError, FileNotFoundError):
        raise  # OSErrors, but not damage; the loader names them
    except _DECODE_ERRORS as error:
        raise StudyLoadError(
            f"cannot read NIfTI data ({type(error).__name__}: {error})",
            path=path,
            hint="The file is damaged or truncated; re-export or re-download it",
        ) from error
    affine = nifti_affine(header, path, warnings)
    array = _apply_scaling(stored, slope, inter, path)
    meta = {"nifti_version": 2 if image_class is nib.Nifti2Image else 1, "stored_dtype": str(stored.dtype)}
    return RawImage(array=array, affine=affine, source_format="nifti", meta=meta, warnings=warnings)


@dataclass(frozen=True)
class VoxelProgress:
    """How far decoding has got: ``array`` (file layout, being filled) has its
    first ``planes`` planes along the third axis complete.

    ``scaled`` says the stored values still need ``scl_slope``/``scl_inter``
    (applied after the whole block is read), i.e. they are not yet HU.
    """

    array: np.ndarray
    affine: np.ndarray
    planes: int
    scaled: bool


def _report_progress(on_planes, header, scaled, array, planes):
    on_planes(VoxelProgress(array=array, affine=nifti_affine(header, "", []), planes=planes, scaled=scaled))


def nifti_affine(header, path, warnings: list[str]) -> np.ndarray:
    """The voxel-to-RAS affine of a NIfTI header, checked; what was assumed goes into ``warnings``.

    The sform when its code is set (compared with a coded qform, warned when
    they disagree), else the qform, else NIfTI's method 1, a plain RAS grid
    of ``pixdim`` (warned: no orientation; see :func:`_method1_affine` for
    why this is not nibabel's choice). A form
    with NaN/Inf entries or a singular matrix is not used; with nothing
    usable left the file is refused. ``pixdim`` holds the qform's voxel
    size; when it is 0, negative or not a number the qform has no size,
    so the size comes from the sform rows (even with sform code 0, which
    many writers fill anyway), warned, or 1 mm is assumed, warned.
    """
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    spatial = max(1, min(3, len(header.get_data_shape())))
    pixdim = np.array(header["pixdim"][1:4], dtype=float)
    pixdim_ok = bool(np.isfinite(pixdim[:spatial]).all() and (pixdim[:spatial] > 0).all())
    sform = np.array(header.get_sform(coded=False), dtype=float)
    problems = []
    if sform_code > 0:
        problem = affine_problem(sform)
        if problem is None:
            if not pixdim_ok:
                warnings.append(
                    f"pixdim {_numbers(pixdim[:spatial])} is not a voxel size: used the sform's "
                    f"{_spacing_text(sform)} mm"
                )
            elif qform_code > 0:
                warnings.extend(_forms_disagree(sform, _qform_or_none(header), spatial))
            return sform
        problems.append(f"the sform {problem}")
    if qform_code > 0 or sform_code == 0:
        unit_header = header.copy()  # the qform's rotation and origin, with a usable voxel size in pixdim
        unit_header["pixdim"][1:4] = np.where(np.isfinite(pixdim) & (pixdim > 0), pixdim, 1.0)
        form = _qform_or_none(unit_header) if qform_code > 0 else _method1_affine(unit_header)
        name = "qform" if qform_code > 0 else "pixdim grid"
        if form is not None and not pixdim_ok:
            form = _size_from_sform_rows(form, sform, pixdim[:spatial], spatial, name, warnings)
        problem = _NOT_A_ROTATION if form is None else affine_problem(form)
        if problem is None:
            warnings.extend(f"{text}: used the {name}" for text in problems)
            if qform_code == 0 and sform_code == 0:
                warnings.append(
                    "NIfTI header has no orientation (qform and sform codes are 0): assumed RAS, voxel axes "
                    "pointing right, anterior and superior (NIfTI's rule for code 0)"
                )
            return form
        problems.append(f"the {name} {problem}")
    raise StudyLoadError(
        f"no usable voxel geometry: {'; '.join(problems)}",
        path=path,
        hint="The NIfTI header is damaged; re-export the scan",
    )


def _method1_affine(header) -> np.ndarray:
    """NIfTI's "method 1" for qform and sform codes 0: voxel axes along +x, +y, +z (RAS) scaled by ``pixdim``.

    The standard's rule for a header without orientation. nibabel's
    ``get_base_affine`` (used by ``get_best_affine`` for this case) follows
    the older Analyze convention instead and flips x, which would mirror
    left and right; omnict follows the NIfTI standard, and its warning says so.
    """
    return np.diag([*np.asarray(header["pixdim"][1:4], dtype=float), 1.0])


QFORM_SFORM_SIZE_TOLERANCE = 0.01
"""Largest relative difference between the qform's and the sform's voxel sizes taken as agreement (1%)."""

QFORM_SFORM_ANGLE_TOLERANCE_DEGREES = 1.0
"""Largest angle between the qform's and the sform's direction of one voxel axis taken as agreement."""


_NOT_A_ROTATION = "has a quaternion that is not a rotation (quatern_b, _c and _d squared sum to over 1)"


def _qform_or_none(header):
    """The qform matrix, or None when its quaternion is not a rotation (nibabel raises ValueError then)."""
    try:
        return header.get_qform()
    except ValueError:
        return None


def _forms_disagree(sform, qform, spatial) -> list[str]:
    """A warning naming both forms when their voxel sizes or axis directions differ beyond the tolerances.

    The sform is used (NIfTI prefers it when its code is set, and so does
    every common reader); the warning says so, because a file whose two
    geometries disagree is likely mislabelled in one of them. Origins are
    not compared: omnict's voxels do not depend on them.
    """
    if qform is None:
        return []  # an unusable qform is simply not used
    sform_axes, qform_axes = np.asarray(sform, float)[:3, :spatial], np.asarray(qform, float)[:3, :spatial]
    sform_sizes, qform_sizes = np.linalg.norm(sform_axes, axis=0), np.linalg.norm(qform_axes, axis=0)
    if not (np.isfinite(qform_sizes).all() and (qform_sizes > 0).all()):
        return []  # an unusable qform is simply not used
    size_ratio = np.abs(sform_sizes / qform_sizes - 1.0)
    cosines = np.clip(np.sum(sform_axes * qform_axes, axis=0) / (sform_sizes * qform_sizes), -1.0, 1.0)
    angles = np.degrees(np.arccos(cosines))
    if size_ratio.max() <= QFORM_SFORM_SIZE_TOLERANCE and angles.max() <= QFORM_SFORM_ANGLE_TOLERANCE_DEGREES:
        return []
    return [
        f"qform and sform disagree (sform: {_spacing_text(sform)} mm, axes {_axcodes(sform)}; qform: "
        f"{_spacing_text(qform)} mm, axes {_axcodes(qform)}; axes up to {angles.max():.0f} degrees apart): "
        "used the sform, as NIfTI prefers it; check which geometry is right"
    ]


def _axcodes(affine) -> str:
    return "".join(nib.aff2axcodes(np.asarray(affine, dtype=float)))


def _size_from_sform_rows(form, sform, pixdim, spatial, name, warnings) -> np.ndarray:
    """Give ``form`` (made with 1 mm for the bad pixdim entries) the voxel size of the sform rows when
    they are usable, else keep 1 mm; warned either way."""
    shown = _numbers(pixdim)
    if affine_problem(sform) is None:
        sizes = np.linalg.norm(sform[:3, :3], axis=0)
        form = form.copy()
        form[:3, :3] = form[:3, :3] / np.linalg.norm(form[:3, :3], axis=0) * sizes
        warnings.append(
            f"pixdim {shown} is not a voxel size: the {name} took the voxel size "
            f"{_spacing_text(form)} mm from the sform rows"
        )
        return form
    warnings.append(
        f"pixdim {shown} is not a voxel size and no sform gives one: assumed 1 mm, so distances "
        "and volumes may be wrong"
    )
    return form


def _numbers(values) -> str:
    return "x".join(f"{v:g}" for v in values)


def _spacing_text(affine) -> str:
    return "x".join(f"{v:.3g}" for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def _checked_header(image_class, header_bytes: bytes, warnings: list[str]):
    """The parsed header after nibabel's checks, its repairs reported as warnings.

    nibabel's checks fix some fields in place (a 0 in ``pixdim`` becomes 1,
    an invalid qform code 0) and log each fix to the console. Here each
    fix is a warning on the study instead, and the file's own ``pixdim``
    is kept, so :func:`nifti_affine` can tell a real voxel size from a
    repaired one. Problems nibabel cannot fix still raise HeaderDataError.
    """
    header = image_class.header_class.from_fileobj(io.BytesIO(header_bytes[: _header_size(image_class)]), check=False)
    pixdim = header["pixdim"].copy()
    header.check_fix(logger=_FixReport(warnings))
    header["pixdim"] = pixdim
    return header


class _FixReport:
    """Stands in for the logger nibabel's header checks write to; keeps their messages as warnings."""

    def __init__(self, warnings: list[str]):
        self.warnings = warnings

    def log(self, level, message, *args):
        message = str(message) % args if args else str(message)
        if level < logging.WARNING or not message.strip():
            return  # nibabel reports every check, passed ones at level 0
        if "pixdim" not in message:  # the voxel size gets its own warning from nifti_affine
            self.warnings.append(f"NIfTI header repaired: {' '.join(message.split())}")


def _header_size(image_class) -> int:
    return next(size for size, klass in _HEADER_CLASSES.items() if klass is image_class)


def _read_voxel_block(stream, shape, dtype, path, on_planes) -> np.ndarray:
    """Decode the voxel block piece by piece into a Fortran-ordered array."""
    shape = tuple(int(n) for n in shape)
    buffer = np.empty(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, dtype=np.uint8)
    array = buffer.view(dtype).reshape(shape, order="F")
    plane_bytes = int(np.prod(shape[:2], dtype=np.int64)) * dtype.itemsize
    planes_total = shape[2] if len(shape) > 2 else 1
    view, done = memoryview(buffer), 0
    while done < buffer.size:
        count = stream.readinto(view[done : done + _PIECE_BYTES])
        if not count:
            raise StudyLoadError(
                f"voxel data ends early ({done:,} of {buffer.size:,} bytes)",
                path=path,
                hint="The file is truncated; re-export or re-download it",
            )
        done += count
        if on_planes is not None:
            on_planes(array, min(planes_total, done // max(plane_bytes, 1)))
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    return array


def _slope_inter(header, path, warnings: list[str]) -> tuple[float, float]:
    """``scl_slope``/``scl_inter`` as the NIfTI standard defines them, checked before any voxel is read.

    A slope of 0 means "no scaling" (the standard), and so does NaN
    (nibabel writes NaN for "unset"); the intercept is then not applied,
    and a non-zero intercept beside it is warned as ignored, since its
    writer probably meant it. An infinite slope, or a real slope with an
    intercept that is not a finite number, is an error: HU would be
    silently wrong. (nibabel's ``get_slope_inter`` would drop an infinite
    slope silently and raise on a NaN intercept; the fields are read here.)
    """
    slope, inter = float(header["scl_slope"]), float(header["scl_inter"])
    if slope == 0.0 or np.isnan(slope):
        if np.isfinite(inter) and inter != 0.0:
            warnings.append(
                f"scl_slope is {slope:g}, which means no scaling in NIfTI, so scl_inter {inter:g} was not "
                f"applied: values may be off by {inter:g}"
            )
        return 1.0, 0.0
    if not (np.isfinite(slope) and np.isfinite(inter)):
        raise StudyLoadError(
            f"scl_slope/scl_inter are {slope:g}/{inter:g}, not finite numbers",
            path=path,
            hint="The NIfTI header is damaged; re-export the scan",
        )
    return slope, inter


_EXTENSION_FLAG_BYTES = 4
"""A single-file NIfTI has 4 bytes after its header: byte 0 non-zero means header extensions follow."""


def _voxel_offset(header, after_header: bytes, path, warnings: list[str]) -> int:
    """Where the voxels start; a ``vox_offset`` inside the header is "unset" when that can be told safely.

    In a single-file NIfTI the voxels cannot start inside the header (348
    + 4 bytes for NIfTI-1, 540 + 4 for NIfTI-2). Writers that leave
    ``vox_offset`` 0 (nibabel's "unset") put the voxels right after the
    header when it has no extensions, so they are read from there, warned.
    With extensions nothing marks where they end: that is an error, never
    a guess (nibabel itself would read the header bytes as voxels).
    """
    offset = float(header["vox_offset"])
    header_end = int(header.sizeof_hdr) + _EXTENSION_FLAG_BYTES
    if not np.isfinite(offset) or offset < 0:
        raise StudyLoadError(
            f"vox_offset is {offset:g}, not a position in the file",
            path=path,
            hint="The NIfTI header is damaged; re-export the scan",
        )
    if offset >= header_end:
        return int(offset)
    if after_header[:1] not in (b"", b"\x00"):
        raise StudyLoadError(
            f"vox_offset {offset:g} points inside the header, and header extensions follow it, so where "
            "the voxels start is unknown",
            path=path,
            hint="The NIfTI header is damaged; re-export the scan",
        )
    warnings.append(
        f"vox_offset {offset:g} points inside the header: read the voxels from byte {header_end}, right after "
        "the header, where writers put them when vox_offset is left unset"
    )
    return header_end


def _apply_scaling(stored: np.ndarray, slope: float, inter: float, path) -> np.ndarray:
    """Apply the checked ``scl_slope``/``scl_inter`` (:func:`_slope_inter`) once, keeping integers integral."""
    if slope == 1.0 and inter == 0.0:
        return stored
    if stored.dtype.kind in "iu" and slope.is_integer() and inter.is_integer() and stored.size:
        low, high = int(stored.min()), int(stored.max())
        ends = (low * int(slope) + int(inter), high * int(slope) + int(inter))
        if -(2**31) <= min(ends) and max(ends) < 2**31:  # a damaged header can ask for more than int32 holds
            return stored.astype(np.int32) * int(slope) + int(inter)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = stored.astype(np.float32) * np.float32(slope) + np.float32(inter)
    if not np.isfinite(scaled).all() and (stored.dtype.kind in "iu" or np.isfinite(stored).all()):
        raise StudyLoadError(
            f"scl_slope {slope:g} and scl_inter {inter:g} take the values beyond float32",
            path=path,
            hint="The NIfTI header is damaged; re-export the scan",
        )
    return scaled
