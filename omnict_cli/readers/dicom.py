"""DICOM: header scan for discovery, and series/slice reading into HU.

Slices are ordered by ImagePositionPatient projected on the slice normal
(the cross product of the ImageOrientationPatient cosines), never by
InstanceNumber, and the slice spacing comes from those positions, never
from SliceThickness (which is the reconstructed thickness, often larger).
RescaleSlope/RescaleIntercept are applied here, exactly once, per slice
(pydicom's ``pixel_array`` returns stored values). Gaps from missing
slices and uneven spacing are filled by linear interpolation onto a
regular grid, and every such repair is reported as a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from omnict_cli.errors import NotCTError, StudyLoadError
from omnict_cli.readers.base import LoadOptions, RawImage, check_voxel_count, permission_denied
from omnict_cli.volume import INTENSITY_DISPLAY, canonical_affine, lps_to_ras

GANTRY_TILT_WARN_DEGREES = 0.5

SAFE_META_TAGS = {
    "Modality": "modality",
    "Manufacturer": "manufacturer",
    "ManufacturerModelName": "model_name",
    "KVP": "kvp",
    "ConvolutionKernel": "kernel",
    "SliceThickness": "slice_thickness_mm",
    "BodyPartExamined": "body_part",
    "PatientPosition": "patient_position",
    "PhotometricInterpretation": "photometric",
    "BitsStored": "bits_stored",
}
"""The only header fields copied into outputs: acquisition facts, no identifiers
(no names, ids, dates, UIDs, institutions, free-text descriptions)."""


@dataclass(frozen=True)
class DicomHeader:
    """What discovery needs from one DICOM file, read without its pixels."""

    path: Path
    series_uid: str
    series_number: str
    modality: str
    rows: int
    columns: int
    orientation: tuple[float, ...] | None
    has_pixels: bool
    frames: int
    is_localizer: bool
    sop_class: str

    def series_key(self, folder: Path) -> tuple:
        """Files with equal keys form one study: same series and same geometry.

        Anonymised exports blank SeriesInstanceUID; then the folder and
        SeriesNumber stand in for it. Orientation and matrix size split
        stacks that share a UID (e.g. a localizer inside the series).
        """
        series = self.series_uid or f"{folder}|number:{self.series_number}"
        orientation = None if self.orientation is None else tuple(round(v, 3) for v in self.orientation)
        return (series, orientation, self.rows, self.columns)


def has_dicom_preamble(path: Path) -> bool:
    """True if the file has the DICOM preamble ('DICM' at byte 128).

    Raises ``OSError`` (e.g. ``PermissionError``) when the file cannot be
    opened, so discovery can report an unreadable file instead of taking
    it for "not DICOM".
    """
    with open(path, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def looks_like_dicom(path: Path) -> bool:
    """Like :func:`has_dicom_preamble`, but False for a file that cannot be opened."""
    try:
        return has_dicom_preamble(path)
    except OSError:
        return False


def read_header(path: Path) -> DicomHeader:
    """Read one file's header (large values deferred, pixels not decoded)."""
    try:
        dataset = pydicom.dcmread(path, defer_size="2 KB", force=path.suffix.lower() == ".dcm")
    except PermissionError as error:  # an OSError, but not damage: say what to do about it
        raise permission_denied(path) from error
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise StudyLoadError(f"cannot read DICOM header ({type(error).__name__}: {error})", path=path,
                             hint="The file is damaged or not DICOM; remove it or re-export the series") from error
    orientation = _floats(dataset.get("ImageOrientationPatient"))
    return DicomHeader(
        path=path,
        series_uid=str(dataset.get("SeriesInstanceUID", "") or "").strip(),
        series_number=str(dataset.get("SeriesNumber", "") or "").strip(),
        modality=str(dataset.get("Modality", "") or "").strip().upper(),
        rows=int(dataset.get("Rows", 0) or 0),
        columns=int(dataset.get("Columns", 0) or 0),
        orientation=orientation if orientation is not None and len(orientation) == 6 else None,
        has_pixels=any(tag in dataset for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")),
        frames=int(dataset.get("NumberOfFrames", 1) or 1),
        is_localizer="LOCALIZER" in [str(v).upper() for v in (dataset.get("ImageType") or [])],
        sop_class=str(getattr(dataset.get("SOPClassUID", ""), "name", dataset.get("SOPClassUID", ""))),
    )


def _floats(value) -> tuple[float, ...] | None:
    if value is None or value == "":
        return None
    try:
        return tuple(float(v) for v in (value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]))
    except (TypeError, ValueError):
        return None


def read_dicom(paths: list[Path], options: LoadOptions) -> RawImage:
    """Read one series (or one single-frame file) into HU with an RAS affine."""
    _check_before_pixels(paths, options)
    datasets, warnings = _read_datasets(paths)
    first = datasets[0][1]
    _check_modality(first, paths[0], options)
    _check_pixels(first, paths[0])
    if int(first.get("SamplesPerPixel", 1) or 1) == 3:
        return _read_colour_capture(datasets[0], warnings)
    check_voxel_count((len(datasets), int(first.Rows), int(first.Columns)), paths[0], options)
    modality = str(first.get("Modality", "") or "").upper()
    if modality and modality != "CT":
        warnings.append(f"modality is {modality}, loaded because non-CT was allowed: values are {modality} "
                        "intensities, not CT HU")
    row_cos, col_cos, normal = _cosines(first, paths[0])
    row_spacing, col_spacing = _pixel_spacing(first, warnings)
    positions = _positions(datasets, normal, warnings)
    order = np.argsort(positions["along_normal"], kind="stable")
    positions = {key: value[order] for key, value in positions.items()}
    datasets = [datasets[i] for i in order]
    slices = _slices_in_hu(datasets)
    slices, step_vector, tilt, grid_warnings = _regular_grid(slices, positions, normal, first)
    warnings.extend(grid_warnings)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = step_vector
    affine_lps[:3, 1] = col_cos * row_spacing
    affine_lps[:3, 2] = row_cos * col_spacing
    affine_lps[:3, 3] = positions["xyz"][0]
    meta = {name: _plain(first.get(tag)) for tag, name in SAFE_META_TAGS.items() if first.get(tag) not in (None, "")}
    meta["slices_in_file"] = len(datasets)
    if tilt > GANTRY_TILT_WARN_DEGREES:
        meta["gantry_tilt_degrees"] = round(tilt, 2)
    meta["transfer_syntax"] = str(getattr(first.file_meta, "TransferSyntaxUID", "").name) if hasattr(first, "file_meta") else ""
    return RawImage(array=slices, affine=lps_to_ras(affine_lps), source_format="dicom", meta=meta,
                    warnings=warnings)


def _check_before_pixels(paths, options):
    """Refuse a non-CT or too-large series from the first file's header alone.

    Reading a series loads every file's pixel bytes, so the modality and
    the voxel count (files x rows x columns, an upper bound) are checked
    first: an oversized series must not be read into memory only to be
    refused. A first file that cannot be read is left to the full read,
    which reports it.
    """
    try:
        header = pydicom.dcmread(paths[0], stop_before_pixels=True, force=True)
        shape = (len(paths), int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0))
    except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError):
        return
    _check_modality(header, paths[0], options)
    if int(header.get("NumberOfFrames", 1) or 1) == 1:
        check_voxel_count(shape, paths[0], options)


def _read_datasets(paths):
    """Read every file; a damaged file is dropped with a warning, not fatal."""
    datasets, warnings = [], []
    for path in paths:
        try:
            datasets.append((path, pydicom.dcmread(path, force=True)))
        except PermissionError as error:
            if len(paths) == 1:
                raise permission_denied(path) from error
            warnings.append(f"skipped unreadable file {path.name} (permission denied)")
        except (InvalidDicomError, OSError, EOFError, ValueError, TypeError, AttributeError) as error:
            if len(paths) == 1:
                raise StudyLoadError(f"cannot read DICOM ({type(error).__name__}: {error})", path=path,
                                     hint="The file is damaged or not DICOM") from error
            warnings.append(f"skipped unreadable file {path.name} ({type(error).__name__})")
    if not datasets:
        raise StudyLoadError("no readable DICOM file in the series", path=paths[0].parent,
                             hint="Re-export the series")
    return datasets, warnings


def _check_modality(dataset, path, options):
    modality = str(dataset.get("Modality", "") or "").upper()
    if modality and modality != "CT" and not options.allow_non_ct:
        raise NotCTError(f"modality is {modality}, not CT", path=path,
                         hint="omnict is built for CT; pass --allow-non-ct to load it anyway")


def _check_pixels(dataset, path):
    if "PixelData" not in dataset:
        kind = getattr(dataset.get("SOPClassUID"), "name", "") or dataset.get("Modality", "unknown")
        raise StudyLoadError(f"DICOM file has no pixel data ({kind})", path=path,
                             hint="It is not an image (report, structure set, ...); nothing to load")
    if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
        raise StudyLoadError("multi-frame (enhanced) DICOM is not supported yet", path=path,
                             hint="Convert it to NIfTI with dcm2niix and point omnict at the NIfTI")


def _cosines(dataset, path):
    orientation = _floats(dataset.get("ImageOrientationPatient"))
    if orientation is None or len(orientation) != 6:
        raise StudyLoadError("ImageOrientationPatient is missing", path=path,
                             hint="Without it the anatomy's orientation is unknown; re-export with geometry tags")
    row_cos = np.array(orientation[:3]) / np.linalg.norm(orientation[:3])
    col_cos = np.array(orientation[3:]) / np.linalg.norm(orientation[3:])
    return row_cos, col_cos, np.cross(row_cos, col_cos)


def _pixel_spacing(dataset, warnings):
    spacing = _floats(dataset.get("PixelSpacing")) or _floats(dataset.get("ImagerPixelSpacing"))
    if not spacing or len(spacing) != 2 or min(spacing) <= 0:
        warnings.append("PixelSpacing missing: assumed 1 mm")
        return 1.0, 1.0
    return spacing[0], spacing[1]


def _positions(datasets, normal, warnings):
    xyz = []
    for path, dataset in datasets:
        position = _floats(dataset.get("ImagePositionPatient"))
        if position is None or len(position) != 3:
            if len(datasets) > 1:
                raise StudyLoadError("ImagePositionPatient is missing", path=path,
                                     hint="Slices cannot be ordered without it; re-export with geometry tags")
            warnings.append("ImagePositionPatient missing: position assumed at the origin")
            position = (0.0, 0.0, 0.0)
        xyz.append(position)
    xyz = np.array(xyz, dtype=float)
    return {"xyz": xyz, "along_normal": xyz @ normal}


def _slices_in_hu(datasets) -> np.ndarray:
    """Stored values -> HU with each slice's own slope/intercept; int16 when exact."""
    rescales = [(float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0))
                for _, ds in datasets]
    integral = all(s == 1.0 and i.is_integer() for s, i in rescales)
    first = datasets[0][1]
    out = np.empty((len(datasets), int(first.Rows), int(first.Columns)),
                   dtype=np.int16 if integral else np.float32)
    for index, ((path, dataset), (slope, intercept)) in enumerate(zip(datasets, rescales)):
        try:
            stored = dataset.pixel_array
        except Exception as error:  # decoders raise many types; name the file and move on
            raise StudyLoadError(f"cannot decode pixel data ({type(error).__name__}: {error})", path=path,
                                 hint="Install pylibjpeg/pylibjpeg-openjpeg or re-export uncompressed") from error
        if stored.shape != out.shape[1:]:
            raise StudyLoadError(f"slice is {stored.shape}, the series is {out.shape[1:]}", path=path,
                                 hint="Mixed matrix sizes in one series; separate the files")
        hu = stored.astype(np.float64) * slope + intercept if not integral else stored.astype(np.int32) + int(intercept)
        if integral and (hu.min() < -32768 or hu.max() > 32767):
            out = out.astype(np.float32)
            integral = False
        out[index] = hu
    return out


def _regular_grid(slices, positions, normal, first):
    """Place slices on a regular grid: drop duplicates, fill gaps, report tilt.

    Returns ``(slices, step_vector, tilt_degrees, warnings)``: the step
    vector is the LPS offset from one grid slice to the next (sheared by
    any gantry tilt), so the affine keeps the true slice positions.
    """
    warnings = []
    along = positions["along_normal"]
    xyz = positions["xyz"]
    if len(slices) == 1:
        thickness = float(first.get("SliceThickness", 1.0) or 1.0)
        return slices, normal * thickness, 0.0, warnings
    keep = np.concatenate([[True], np.diff(along) > 1e-3])
    if not keep.all():
        warnings.append(f"{int((~keep).sum())} slice(s) at duplicate positions dropped")
        slices, along, xyz = slices[keep], along[keep], xyz[keep]
    if len(slices) == 1:
        return slices, normal * float(first.get("SliceThickness", 1.0) or 1.0), 0.0, warnings
    steps = np.diff(along)
    step = float(np.median(steps))
    tolerance = max(0.01, 0.01 * step)
    if np.abs(steps - step).max() > tolerance:
        slices, warning = _fill_to_regular(slices, along, step)
        warnings.append(warning)
        # The grid now steps ``step`` mm along the normal; the first-to-last
        # vector per mm along the normal keeps any gantry-tilt shear.
        step_vector = (xyz[-1] - xyz[0]) * (step / (along[-1] - along[0]))
    else:
        step_vector = (xyz[-1] - xyz[0]) / (len(slices) - 1)
    cosine = abs(float(step_vector @ normal)) / float(np.linalg.norm(step_vector))
    tilt = float(np.degrees(np.arccos(min(1.0, cosine))))
    if tilt > GANTRY_TILT_WARN_DEGREES:
        warnings.append(f"gantry tilt of {tilt:.1f} degrees: slices are sheared; the affine keeps the true "
                        "slice positions but voxels are not de-sheared")
    return slices, step_vector, tilt, warnings


def _fill_to_regular(slices, along, step):
    """Linearly interpolate slices onto positions ``along[0] + k * step``."""
    count = int(round((along[-1] - along[0]) / step)) + 1
    targets = along[0] + step * np.arange(count)
    upper = np.clip(np.searchsorted(along, targets, side="left"), 1, len(along) - 1)
    lower = upper - 1
    fraction = np.clip((targets - along[lower]) / (along[upper] - along[lower]), 0.0, 1.0)
    filled = np.empty((count, *slices.shape[1:]), dtype=slices.dtype)
    for index in range(count):
        value = (1.0 - fraction[index]) * slices[lower[index]] + fraction[index] * slices[upper[index]]
        filled[index] = np.rint(value) if slices.dtype.kind == "i" else value
    gaps = np.diff(along) / step
    multiples = np.abs(gaps - np.rint(gaps)).max() < 0.05
    if multiples:
        missing = int(round(gaps.sum())) - (len(along) - 1)
        where = ", ".join(f"{along[i]:.1f}" for i in np.flatnonzero(gaps > 1.5)[:5])
        return filled, (f"{missing} missing slice(s) (gap after position {where} mm along the slice normal): "
                        f"filled by linear interpolation")
    return filled, (f"uneven slice spacing ({np.diff(along).min():.2f} to {np.diff(along).max():.2f} mm): "
                    f"resampled to a regular {step:.2f} mm grid by linear interpolation")


def _read_colour_capture(path_and_dataset, warnings) -> RawImage:
    """A colour secondary capture (screenshot) becomes a grey display slice."""
    path, dataset = path_and_dataset
    rgb = dataset.pixel_array.astype(np.float32)
    grey = (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)) / float(2 ** int(dataset.BitsStored) - 1)
    warnings.append("colour DICOM image (secondary capture): converted to grey, values are not HU")
    return RawImage(array=grey[None], affine=canonical_affine(), source_format="dicom", intensity=INTENSITY_DISPLAY,
                    meta={"modality": str(dataset.get("Modality", ""))}, warnings=warnings)


def _plain(value):
    """Header values as JSON-friendly plain Python."""
    if isinstance(value, (pydicom.multival.MultiValue, list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (int, float, str)):
        return value if not isinstance(value, str) else value.strip()
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
