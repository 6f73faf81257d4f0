"""Load any supported study into a canonical :class:`~omnict_cli.studies.volume.Volume`.

One dispatcher over the format readers in ``omnict_cli.studies.readers``, then the
steps every format shares: keep the first volume of 4D data, repair
non-finite voxels, settle the dtype (int16 HU when exact, else float32),
reorient to the canonical layout, decide volume or slice, and check that
the values look like CT HU. Every repair or assumption becomes a warning
on the Volume; anything unusable raises a
:class:`~omnict_cli.errors.StudyLoadError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from omnict_cli.errors import StudyLoadError
from omnict_cli.studies.discover import Study, discover_studies
from omnict_cli.studies.readers.base import DEFAULT_MAX_VOXELS, LoadOptions, RawImage, permission_denied
from omnict_cli.studies.volume import (
    CANONICAL_AXCODES,
    INTENSITY_HU,
    SLICE_DISPLAY_AXCODES,
    Volume,
    affine_problem,
    canonicalize,
    obliquity_degrees,
    slice_plane,
)

OBLIQUE_WARN_DEGREES = 1.0
THIN_VOLUME_SLICES = 8

__all__ = ["LoadOptions", "DEFAULT_MAX_VOXELS", "load_study", "load_path", "volume_from_raw", "hu_warnings"]


def load_study(study: Study, options: LoadOptions = LoadOptions(), on_planes=None) -> Volume:
    """Read one discovered study; raises StudyLoadError with the file and a hint.

    ``on_planes`` is passed to the NIfTI reader, which reports decoding
    progress to it (see ``omnict_cli.studies.readers.nifti.VoxelProgress``); other
    formats ignore it.
    """
    if study.problem:
        raise StudyLoadError(study.problem, path=study.paths[0], hint=study.hint)
    try:
        raw = _read(study, options, on_planes)
    except PermissionError as error:
        raise permission_denied(error.filename or study.paths[0]) from error
    except IsADirectoryError as error:
        raise StudyLoadError("is a folder, not a file", path=study.paths[0]) from error
    except FileNotFoundError as error:  # removed or moved between the walk and the load
        raise StudyLoadError(
            "the file is gone (removed or moved after the folder was walked)",
            path=error.filename or study.paths[0],
            hint="Run again when the folder is stable",
        ) from error
    except OSError as error:  # EIO on a failing disk, a stale network share, ...
        raise StudyLoadError(
            f"cannot read the file ({error.strerror or error})",
            path=error.filename or study.paths[0],
            hint="Check the disk or network share, then run again",
        ) from error
    volume = volume_from_raw(raw, study.paths[0])
    volume.warnings.extend(study.notes)
    return volume


def load_path(path: str | Path, options: LoadOptions = LoadOptions()) -> Volume:
    """Load a single file, or the one study inside a folder (e.g. a DICOM series)."""
    studies = discover_studies(path)
    if len(studies) != 1:
        found = ", ".join(s.study_id for s in studies[:5]) or "nothing"
        raise StudyLoadError(
            f"expected one study, found {len(studies)} ({found})",
            path=path,
            hint="Point at one file or one series folder, or use discover_studies()",
        )
    return load_study(studies[0], options)


def _read(study: Study, options: LoadOptions, on_planes=None) -> RawImage:
    fmt = study.format
    path = study.paths[0]
    if fmt == "nifti":
        from omnict_cli.studies.readers.nifti import read_nifti

        return read_nifti(path, options, on_planes)
    if fmt == "dicom":
        from omnict_cli.studies.readers.dicom import read_dicom

        return read_dicom(list(study.paths), options)
    if fmt in ("nrrd", "mha", "mhd"):
        from omnict_cli.studies.readers.itk import read_itk

        return read_itk(path, options)
    if fmt == "npy":
        from omnict_cli.studies.readers.numpy_file import read_npy

        return read_npy(path, options)
    if fmt in ("png", "jpeg", "bmp", "tiff"):
        from omnict_cli.studies.readers.image2d import read_picture

        return read_picture(path, options)
    raise StudyLoadError(f"unsupported format {fmt!r}", path=path)


def volume_from_raw(raw: RawImage, path: str | Path) -> Volume:
    """The steps all formats share, from a reader's raw result to a Volume."""
    warnings = list(raw.warnings)
    array = _first_volume(raw.array, warnings)
    if min(array.shape) == 0:
        raise StudyLoadError(f"image has no voxels (shape {array.shape})", path=path)
    array = _settle_dtype(array, path, warnings)
    problem = affine_problem(raw.affine)
    if problem:
        raise StudyLoadError(
            f"the voxel-to-world geometry (affine) {problem}",
            path=path,
            hint="The file's geometry header is damaged; re-export the scan",
        )
    thin_axes = [axis for axis, n in enumerate(array.shape) if n == 1]
    if len(thin_axes) > 1:
        raise StudyLoadError(f"image is a line, not a slice or volume (shape {array.shape})", path=path)
    source_ornt = _ornt(raw.affine)
    if thin_axes:
        plane = slice_plane(raw.affine, thin_axes[0])
        voxels, affine = canonicalize(array, raw.affine, SLICE_DISPLAY_AXCODES[plane])
        kind = "slice"
        if raw.source_format not in ("png", "jpeg", "bmp", "tiff") and not (
            raw.source_format == "dicom" and raw.meta.get("slices_in_file") == 1
        ):
            warnings.append(f"1-slice volume: treated as a 2D {plane} slice")
    else:
        voxels, affine = canonicalize(array, raw.affine, CANONICAL_AXCODES)
        kind = "volume"
        if voxels.shape[0] < THIN_VOLUME_SLICES:
            warnings.append(f"only {voxels.shape[0]} slices: a very thin volume, resampling will interpolate heavily")
    oblique = _obliquity_beyond_tilt(raw)
    if oblique > OBLIQUE_WARN_DEGREES:
        warnings.append(
            f"oblique axes ({oblique:.1f} degrees off the anatomical axes): snapped to the nearest axes, not resampled"
        )
    if raw.intensity == INTENSITY_HU and str(raw.meta.get("modality", "CT") or "CT").upper() == "CT":
        # HU plausibility only means something for CT; an MR/PET series loaded
        # with allow_non_ct already carries a "not CT HU" warning from its reader.
        warnings.extend(hu_warnings(voxels))
    return Volume(
        voxels=voxels,
        affine=affine,
        kind=kind,
        source_format=raw.source_format,
        source_ornt=source_ornt,
        source_shape=tuple(array.shape),
        intensity=raw.intensity,
        meta=dict(raw.meta),
        warnings=warnings,
    )


def _obliquity_beyond_tilt(raw: RawImage) -> float:
    """Obliquity of the axes, leaving out a gantry tilt the reader already reported.

    A tilted DICOM series has a sheared slice axis; its own warning says so.
    Counting that shear again as "oblique axes" would report one cause
    twice, so the slice axis (array axis 0) is replaced by the in-plane
    normal and only the in-plane axes are judged.
    """
    if not raw.meta.get("gantry_tilt_degrees"):
        return obliquity_degrees(raw.affine)
    affine = np.array(raw.affine, dtype=float)
    normal = np.cross(affine[:3, 1], affine[:3, 2])
    affine[:3, 0] = normal / np.linalg.norm(normal) * np.linalg.norm(affine[:3, 0])
    return obliquity_degrees(affine)


def _ornt(affine):
    from nibabel import orientations

    return orientations.io_orientation(affine)


def _first_volume(array: np.ndarray, warnings: list[str]) -> np.ndarray:
    if array.ndim == 3:
        return array
    if array.ndim < 3:
        return array.reshape(array.shape + (1,) * (3 - array.ndim))
    extra = array.shape[3:]
    warnings.append(f"{array.ndim}D input (extra dimensions {extra}): used the first volume")
    return array[(slice(None),) * 3 + (0,) * (array.ndim - 3)]


def _settle_dtype(array: np.ndarray, path, warnings: list[str]) -> np.ndarray:
    """int16 stays; other integers become int16 when they fit; floats become float32
    with NaN/Inf repaired."""
    if array.dtype == np.int16 or array.dtype == np.float32 and np.isfinite(array).all():
        return array
    if array.dtype.kind in "iub":
        low, high = int(array.min()), int(array.max())
        if -32768 <= low and high <= 32767:
            return array.astype(np.int16)
        return array.astype(np.float32)
    if array.dtype.kind != "f":
        raise StudyLoadError(f"unsupported voxel type {array.dtype}", path=path)
    array = array.astype(np.float32, copy=False)
    finite = np.isfinite(array)
    if not finite.any():
        raise StudyLoadError("every voxel is NaN or infinite", path=path, hint="The export is broken; re-export it")
    if not finite.all():
        bad = int((~finite).sum())
        array = np.nan_to_num(array, nan=-1000.0, posinf=float(array[finite].max()), neginf=float(array[finite].min()))
        warnings.append(f"{bad:,} NaN/infinite voxels replaced (NaN -> -1000 HU air, +/-inf -> the finite max/min)")
    return array


def _voxel_sample(voxels: np.ndarray) -> np.ndarray:
    """About 2 million voxels on a regular stride, as float32: enough to judge the value range."""
    step = max(1, int(round((voxels.size / 2_000_000) ** (1 / 3))))
    return np.asarray(voxels[::step, ::step, ::step], dtype=np.float32)


def looks_like_label_map(voxels: np.ndarray) -> bool:
    """Non-negative whole numbers, few distinct values, mostly zero: a segmentation, not CT.

    The rule behind the "looks like a label map" warning; ``report`` skips such studies.
    """
    sample = _voxel_sample(voxels)
    return bool(sample.size) and float(sample.min()) >= 0.0 and _looks_like_label_map(sample)


def hu_warnings(voxels: np.ndarray) -> list[str]:
    """Say when values do not look like CT Hounsfield units."""
    sample = _voxel_sample(voxels)
    low, high = float(sample.min()), float(sample.max())
    if low == high:
        return [f"constant image: every voxel is {low:g}"]
    if low >= 0.0 and high <= 1.0:
        return [
            "values lie in [0, 1]: this looks normalised, not CT HU; windowing to [-1000, 1000] HU "
            "will wash it out. Export HU, or convert it before running"
        ]
    if low >= 0.0 and _looks_like_label_map(sample):
        return [
            f"integer ids 0 to {high:g}, mostly 0: this looks like a label map (segmentation), not CT HU; "
            "keep segmentations out of the folder of scans, or ignore this study"
        ]
    if low >= 0.0 and high > 500.0:
        return [
            f"no values below 0 (range {low:g} to {high:g}): air should be near -1000 HU; the rescale "
            "intercept (usually -1024) looks missing"
        ]
    if low < -10000.0 or high > 40000.0:
        return [f"values {low:g} to {high:g} are far outside the CT HU range"]
    return []


def _looks_like_label_map(sample: np.ndarray) -> bool:
    """Whole numbers, few distinct values, mostly zero: TotalSegmentator-style outputs
    often sit next to the scans they were made from."""
    if sample.max() > 1000 or not np.array_equal(sample, np.round(sample)):
        return False
    return float((sample == 0).mean()) > 0.3 and len(np.unique(sample)) <= 256
