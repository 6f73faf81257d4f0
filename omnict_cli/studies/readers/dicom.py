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
import pydicom.datadict

from omnict_cli.errors import NotCTError, StudyLoadError
from omnict_cli.studies.readers.base import LoadOptions, RawImage, check_study_size
from omnict_cli.studies.readers.dicom_fields import (
    DAMAGED_HINT,
    FIELD_HINT,
    describe_error,
    field_value,
    has_pixel_data,
    quiet_pydicom,
    read_dataset,
    uid_name,
)
from omnict_cli.studies.volume import INTENSITY_DISPLAY, canonical_affine, lps_to_ras

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
        """Files with equal keys form one study: same folder, same series, same geometry.

        The folder is part of the key: two copies of one series in two
        folders stay two studies, so a damaged copy cannot take the intact
        one down with it. Anonymised exports blank SeriesInstanceUID; then
        SeriesNumber stands in for it. Orientation and matrix size split
        stacks that share a UID (e.g. a localizer inside the series).
        """
        series = self.series_uid or f"number:{self.series_number}"
        orientation = None if self.orientation is None else tuple(round(v, 3) for v in self.orientation)
        return (str(folder), series, orientation, self.rows, self.columns)


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
    """Read one file's header (large values deferred, pixels not decoded).

    Raises StudyLoadError naming the file (and the field) when the bytes
    or a value discovery needs are damaged.
    """
    dataset = read_dataset(path, header_only=True, force=path.suffix.lower() == ".dcm")
    if not _has_dicom_fields(dataset):
        raise StudyLoadError(
            "not a DICOM file: no DICOM preamble and no DICOM field in it",
            path=path,
            hint="It is named .dcm but holds something else (a picture, text, random bytes); rename or remove it",
        )
    orientation = field_value(dataset, "ImageOrientationPatient", path, float, count=0)
    image_type = field_value(dataset, "ImageType", path, str, count=0, default=())
    sop_class = field_value(dataset, "SOPClassUID", path, str, default="")
    return DicomHeader(
        path=path,
        series_uid=field_value(dataset, "SeriesInstanceUID", path, str, default=""),
        series_number=field_value(dataset, "SeriesNumber", path, str, default=""),
        modality=field_value(dataset, "Modality", path, str, default="").upper(),
        rows=field_value(dataset, "Rows", path, int, default=0),
        columns=field_value(dataset, "Columns", path, int, default=0),
        orientation=orientation if orientation is not None and len(orientation) == 6 else None,
        has_pixels=has_pixel_data(dataset),
        frames=field_value(dataset, "NumberOfFrames", path, int, default=1),
        is_localizer="LOCALIZER" in [value.upper() for value in image_type],
        sop_class=uid_name(sop_class),
    )


def _has_dicom_fields(dataset) -> bool:
    """True when the parsed bytes hold at least one field DICOM defines (or file meta information).

    pydicom's ``force`` parses any bytes as *some* dataset: random bytes, a
    picture or text named ``.dcm`` come out as one or two elements with
    tags no dictionary knows. Those are not DICOM files at all, and saying
    "no pixel data" about them would send the user looking for the wrong
    problem. Tags are looked up without converting any value.
    """
    if getattr(dataset, "file_meta", None):
        return True
    return any(pydicom.datadict.keyword_for_tag(tag) for tag in dataset.keys())


@dataclass
class _Slice:
    """One readable file of a series with the header values the reader uses, all checked."""

    path: Path
    dataset: object
    position: tuple[float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    slope: float
    intercept: float


def read_dicom(paths: list[Path], options: LoadOptions) -> RawImage:
    """Read one series (or one single-frame file) into HU with an RAS affine.

    A file of a series that cannot be read, decoded or placed is left out
    with a warning naming it (the gap is then filled like a missing slice);
    a header value that would silently change the HU values or the geometry
    (a zero or non-numeric rescale, unusable orientation) fails the series
    with an error naming the file and the field.
    """
    _check_before_pixels(paths, options)
    datasets, warnings = _read_datasets(paths)
    first_path, first = datasets[0]
    _check_modality(first, first_path, options)
    _check_pixels(first, first_path)
    if field_value(first, "SamplesPerPixel", first_path, int, default=1) == 3:
        return _read_colour_capture(datasets[0], warnings)
    rows = field_value(first, "Rows", first_path, int, default=0)
    columns = field_value(first, "Columns", first_path, int, default=0)
    check_study_size((len(datasets), rows, columns), _stored_dtype(first, first_path), first_path, options)
    modality = field_value(first, "Modality", first_path, str, default="").upper()
    if modality and modality != "CT":
        warnings.append(
            f"modality is {modality}, loaded because non-CT was allowed: values are {modality} intensities, not CT HU"
        )
    row_cos, col_cos, normal = _cosines(first, first_path)
    slices = _usable_slices(datasets, warnings)
    row_spacing, col_spacing = _pixel_spacing(slices, warnings)
    slices = sorted(slices, key=lambda s: float(np.dot(s.position, normal)))
    hu, kept = _slices_in_hu(slices, (rows, columns), warnings)
    positions = _positions([s for s, keep in zip(slices, kept) if keep], normal)
    thickness = _thickness(first, first_path, warnings)
    hu, step_vector, tilt, grid_warnings = _regular_grid(hu, positions, normal, thickness)
    warnings.extend(grid_warnings)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = step_vector
    affine_lps[:3, 1] = col_cos * row_spacing
    affine_lps[:3, 2] = row_cos * col_spacing
    affine_lps[:3, 3] = positions["xyz"][0]
    meta = _safe_meta(first, first_path)
    meta["slices_in_file"] = len(hu)
    if tilt > GANTRY_TILT_WARN_DEGREES:
        meta["gantry_tilt_degrees"] = round(tilt, 2)
    meta["transfer_syntax"] = _transfer_syntax(first, first_path)
    return RawImage(array=hu, affine=lps_to_ras(affine_lps), source_format="dicom", meta=meta, warnings=warnings)


def _check_before_pixels(paths, options):
    """Refuse a non-CT or too-large series from the first file's header alone.

    Reading a series loads every file's pixel bytes, so the modality, the
    voxel count (files x frames x rows x columns, an upper bound) and the
    bytes those voxels take in their stored type are checked first: an
    oversized series must not be read into memory only to be refused. A
    first file that cannot be read is left to the full read, which reports
    it (or leaves it out of a longer series).
    """
    try:
        header = read_dataset(paths[0], header_only=True)
        frames = max(1, field_value(header, "NumberOfFrames", paths[0], int, default=1))
        shape = (
            len(paths) * frames,
            field_value(header, "Rows", paths[0], int, default=0),
            field_value(header, "Columns", paths[0], int, default=0),
        )
        stored = _stored_dtype(header, paths[0])
    except StudyLoadError:
        return
    _check_modality(header, paths[0], options)
    check_study_size(shape, stored, paths[0], options)


def _stored_dtype(dataset, path) -> np.dtype:
    """The type of one pixel as stored (BitsAllocated, PixelRepresentation, SamplesPerPixel), for the size check.

    Bit depths numpy has no type for (1, 12, ...) are counted as the next
    whole byte size, so the estimate stays an upper bound.
    """
    bits = field_value(dataset, "BitsAllocated", path, int, default=16)
    signed = field_value(dataset, "PixelRepresentation", path, int, default=0) == 1
    samples = max(1, field_value(dataset, "SamplesPerPixel", path, int, default=1))
    size = next((n for n in (1, 2, 4, 8) if 8 * n >= bits), 8)
    base = np.dtype(f"{'i' if signed else 'u'}{size}")
    return base if samples == 1 else np.dtype((base, (samples,)))


def _read_datasets(paths):
    """Read every file; in a series a damaged or unreadable file is dropped with a warning.

    A one-file study has nothing to fall back on: its error is raised.
    """
    datasets, warnings, first_error = [], [], None
    for path in paths:
        try:
            datasets.append((path, read_dataset(path)))
        except StudyLoadError as error:
            if len(paths) == 1:
                raise
            first_error = first_error or error
            warnings.append(f"left out {path.name}: {error.message}")
        except FileNotFoundError:
            if len(paths) == 1:
                raise  # the loader names a vanished file
            first_error = first_error or StudyLoadError("the file is gone", path=path, hint="Re-export the series")
            warnings.append(f"left out {path.name}: the file is gone (removed after the folder was walked)")
    if not datasets:
        raise StudyLoadError(
            f"no readable DICOM file in the series (first: {first_error.message})",
            path=paths[0].parent,
            hint=first_error.hint or "Re-export the series",
        )
    return datasets, warnings


def _usable_slices(datasets, warnings) -> list[_Slice]:
    """Each file's position, pixel spacing and rescale, checked.

    A file of a series without a usable position is left out with a
    warning (its gap is filled later); a lone slice without one is placed
    at the origin. A bad rescale is an error for the whole series: values
    from a slope of 0 or a text intercept would be silently wrong HU.
    """
    slices, dropped = [], []
    for path, dataset in datasets:
        slope = field_value(dataset, "RescaleSlope", path, float, default=1.0)
        intercept = field_value(dataset, "RescaleIntercept", path, float, default=0.0)
        if slope == 0.0:
            raise StudyLoadError(
                "RescaleSlope is 0: every voxel would have the same value",
                path=path,
                hint="The header is damaged; re-export the series (the slope is usually 1)",
            )
        spacing = field_value(dataset, "PixelSpacing", path, float, count=2)
        if spacing is None:
            spacing = field_value(dataset, "ImagerPixelSpacing", path, float, count=2)
        try:
            position = field_value(dataset, "ImagePositionPatient", path, float, count=3)
        except StudyLoadError as error:
            if len(datasets) == 1:
                raise
            dropped.append(f"left out {path.name}: {error.message}")
            continue
        if spacing is not None and min(spacing) <= 0:
            raise StudyLoadError(
                f"PixelSpacing is {spacing[0]:g}\\{spacing[1]:g}: pixel sizes must be positive",
                path=path,
                hint=FIELD_HINT,
            )
        if position is None and len(datasets) > 1:
            dropped.append(f"left out {path.name}: ImagePositionPatient is missing, the slice cannot be placed")
            continue
        if position is None:
            warnings.append("ImagePositionPatient missing: position assumed at the origin")
            position = (0.0, 0.0, 0.0)
        slices.append(_Slice(path, dataset, position, spacing, slope, intercept))
    warnings.extend(dropped)
    if not slices:
        raise StudyLoadError(
            "ImagePositionPatient is missing or damaged in every file of the series",
            path=datasets[0][0].parent,
            hint="Slices cannot be ordered without it; re-export with geometry tags",
        )
    return slices


def _check_modality(dataset, path, options):
    modality = field_value(dataset, "Modality", path, str, default="").upper()
    if modality and modality != "CT" and not options.allow_non_ct:
        raise NotCTError(
            f"modality is {modality}, not CT",
            path=path,
            hint="omnict is built for CT; pass --allow-non-ct to load it anyway",
        )


def _check_pixels(dataset, path):
    if not has_pixel_data(dataset):
        sop_class = field_value(dataset, "SOPClassUID", path, str, default="")
        kind = uid_name(sop_class) or field_value(dataset, "Modality", path, str, default="unknown")
        raise StudyLoadError(
            f"DICOM file has no pixel data ({kind})",
            path=path,
            hint="It is not an image (report, structure set, ...); nothing to load",
        )
    if field_value(dataset, "NumberOfFrames", path, int, default=1) > 1:
        raise StudyLoadError(
            "multi-frame (enhanced) DICOM is not supported yet",
            path=path,
            hint="Convert it to NIfTI with dcm2niix and point omnict at the NIfTI",
        )


ORTHOGONAL_TOLERANCE = 0.01
"""Largest |cos| between the row and column directions accepted as perpendicular (about 0.6 degrees)."""


def _cosines(dataset, path):
    """Unit row and column directions and the slice normal; unusable orientations are errors."""
    orientation = field_value(dataset, "ImageOrientationPatient", path, float, count=6)
    if orientation is None:
        raise StudyLoadError(
            "ImageOrientationPatient is missing",
            path=path,
            hint="Without it the anatomy's orientation is unknown; re-export with geometry tags",
        )
    row, column = np.array(orientation[:3]), np.array(orientation[3:])
    if min(np.linalg.norm(row), np.linalg.norm(column)) < 1e-6:
        raise StudyLoadError(
            f"ImageOrientationPatient {_numbers(orientation)} has a zero direction",
            path=path,
            hint="Without it the anatomy's orientation is unknown; re-export the series",
        )
    row_cos, col_cos = row / np.linalg.norm(row), column / np.linalg.norm(column)
    cosine = abs(float(row_cos @ col_cos))
    if cosine > ORTHOGONAL_TOLERANCE:
        angle = float(np.degrees(np.arccos(min(1.0, cosine))))
        raise StudyLoadError(
            f"ImageOrientationPatient {_numbers(orientation)}: row and column directions are "
            f"{angle:.1f} degrees apart, not perpendicular",
            path=path,
            hint="The geometry header is damaged; re-export the series",
        )
    return row_cos, col_cos, np.cross(row_cos, col_cos)


PIXEL_SPACING_TOLERANCE = 0.01
"""Relative difference of PixelSpacing between slices tolerated silently (1%: rounding in exports)."""


def _pixel_spacing(slices: list[_Slice], warnings) -> tuple[float, float]:
    """The series' in-plane spacing: the first slice's, warned when slices disagree beyond 1%.

    One in-plane grid per series is all a volume can have; slices whose
    spacing differs are kept (refusing a whole scan for a few resized
    slices would lose it) and the warning gives the range.
    """
    known = np.array([s.pixel_spacing for s in slices if s.pixel_spacing is not None])
    if not len(known):
        warnings.append("PixelSpacing missing: assumed 1 mm")
        return 1.0, 1.0
    first = known[0]
    spread = np.abs(known - first).max(axis=0) / first
    if spread.max() > PIXEL_SPACING_TOLERANCE:
        low, high = known.min(axis=0), known.max(axis=0)
        warnings.append(
            f"PixelSpacing differs between slices (rows {low[0]:g} to {high[0]:g} mm, columns "
            f"{low[1]:g} to {high[1]:g} mm): used the first slice's {first[0]:g} x {first[1]:g} mm "
            "for all; sizes in the other slices are off by up to "
            f"{100 * spread.max():.0f}%"
        )
    if len(known) < len(slices):
        warnings.append(f"PixelSpacing missing in {len(slices) - len(known)} slice(s): used the others' value")
    return float(first[0]), float(first[1])


def _positions(slices: list[_Slice], normal):
    xyz = np.array([s.position for s in slices], dtype=float)
    return {"xyz": xyz, "along_normal": xyz @ normal}


def _thickness(dataset, path, warnings) -> float:
    """SliceThickness, used only as the depth of a one-slice study; a bad value is warned, 1 mm assumed."""
    try:
        thickness = field_value(dataset, "SliceThickness", path, float, default=1.0)
    except StudyLoadError as error:
        warnings.append(f"{error.message}: slice thickness assumed 1 mm")
        return 1.0
    return thickness if thickness > 0 else 1.0


def _slices_in_hu(slices: list[_Slice], shape, warnings) -> tuple[np.ndarray, np.ndarray]:
    """Stored values -> HU with each slice's own slope/intercept; int16 when exact.

    Returns ``(hu, kept)``: ``kept`` marks the slices whose pixels were
    decoded. In a series a slice that cannot be decoded (truncated pixel
    data, another matrix size, an unsupported codec) is left out with a
    warning; a lone slice, or a series where none decodes, raises.
    """
    integral = all(s.slope == 1.0 and s.intercept.is_integer() for s in slices)
    out = np.empty((len(slices), *shape), dtype=np.int16 if integral else np.float32)
    kept = np.zeros(len(slices), dtype=bool)
    first_error = None
    for index, item in enumerate(slices):
        try:
            stored = _pixels(item, shape)
        except StudyLoadError as error:
            if len(slices) == 1:
                raise
            first_error = first_error or error
            warnings.append(f"left out {item.path.name}: {error.message}")
            continue
        hu = (
            stored.astype(np.float64) * item.slope + item.intercept
            if not integral
            else stored.astype(np.int32) + int(item.intercept)
        )
        if integral and (hu.min() < -32768 or hu.max() > 32767):
            out = out.astype(np.float32)
            integral = False
        out[index] = hu
        kept[index] = True
    if not kept.any():
        raise StudyLoadError(
            f"no slice of the series could be decoded (first: {first_error.message})",
            path=slices[0].path.parent,
            hint=first_error.hint,
        )
    return (out if kept.all() else out[kept]), kept


def _pixels(item: _Slice, shape) -> np.ndarray:
    """The stored values of one slice, checked against the series' matrix size."""
    try:
        with quiet_pydicom():
            stored = item.dataset.pixel_array
    except MemoryError:
        raise
    except Exception as error:  # decoders raise many types; name the file and move on
        raise StudyLoadError(
            f"cannot decode pixel data ({describe_error(error)})",
            path=item.path,
            hint="Install pylibjpeg/pylibjpeg-openjpeg or re-export uncompressed",
        ) from error
    if shape is not None and stored.shape != tuple(shape):
        raise StudyLoadError(
            f"slice is {stored.shape}, the series is {tuple(shape)}",
            path=item.path,
            hint="Mixed matrix sizes in one series; separate the files",
        )
    return stored


def _safe_meta(dataset, path) -> dict:
    """The identifier-free acquisition facts of :data:`SAFE_META_TAGS`; a damaged one is left out."""
    meta = {}
    for tag, name in SAFE_META_TAGS.items():
        kind = float if tag in ("KVP", "SliceThickness") else int if tag == "BitsStored" else str
        try:
            values = field_value(dataset, tag, path, kind, count=0)
        except StudyLoadError:
            continue
        if values:
            meta[name] = values[0] if len(values) == 1 else list(values)
    return meta


def _transfer_syntax(dataset, path) -> str:
    """The transfer syntax's name (e.g. "Explicit VR Little Endian"); empty when the file meta lacks it."""
    file_meta = getattr(dataset, "file_meta", None)
    try:
        uid = field_value(file_meta, "TransferSyntaxUID", path, str, default="") if file_meta is not None else ""
    except StudyLoadError:
        return ""
    return uid_name(uid)


def _numbers(values) -> str:
    return "\\".join(f"{v:g}" for v in values)


def _regular_grid(slices, positions, normal, thickness: float):
    """Place slices on a regular grid: drop duplicates, fill gaps, report tilt.

    Returns ``(slices, step_vector, tilt_degrees, warnings)``: the step
    vector is the LPS offset from one grid slice to the next (sheared by
    any gantry tilt), so the affine keeps the true slice positions. A lone
    slice is ``thickness`` mm deep.
    """
    warnings = []
    along = positions["along_normal"]
    xyz = positions["xyz"]
    if len(slices) == 1:
        return slices, normal * thickness, 0.0, warnings
    keep = np.concatenate([[True], np.diff(along) > 1e-3])
    if not keep.all():
        warnings.append(f"{int((~keep).sum())} slice(s) at duplicate positions dropped")
        slices, along, xyz = slices[keep], along[keep], xyz[keep]
    if len(slices) == 1:
        return slices, normal * thickness, 0.0, warnings
    steps = np.diff(along)
    step = _grid_step(steps)
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
        warnings.append(
            f"gantry tilt of {tilt:.1f} degrees: slices are sheared; the affine keeps the true "
            "slice positions but voxels are not de-sheared"
        )
    return slices, step_vector, tilt, warnings


def _grid_step(steps: np.ndarray) -> float:
    """The slice step of the regular grid: the smallest step when every step is a whole multiple of it
    (slices missing from a short series, where a median would land between 1 and 2 steps), else the median."""
    smallest = float(steps.min())
    multiples = steps / smallest
    if np.abs(multiples - np.rint(multiples)).max() < 0.05:
        return smallest
    return float(np.median(steps))


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
        return filled, (
            f"{missing} missing slice(s) (gap after position {where} mm along the slice normal): "
            f"filled by linear interpolation"
        )
    return filled, (
        f"uneven slice spacing ({np.diff(along).min():.2f} to {np.diff(along).max():.2f} mm): "
        f"resampled to a regular {step:.2f} mm grid by linear interpolation"
    )


def _read_colour_capture(path_and_dataset, warnings) -> RawImage:
    """A colour secondary capture (screenshot) becomes a grey display slice."""
    path, dataset = path_and_dataset
    bits = field_value(dataset, "BitsStored", path, int, default=8)
    if not 1 <= bits <= 16:
        raise StudyLoadError(f"header field BitsStored is {bits}, expected 1 to 16", path=path, hint=FIELD_HINT)
    rgb = _pixels(_Slice(path, dataset, None, None, 1.0, 0.0), None).astype(np.float32)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise StudyLoadError(
            f"colour image has shape {rgb.shape}, expected rows x columns x 3", path=path, hint=DAMAGED_HINT
        )
    grey = (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)) / float(2**bits - 1)
    warnings.append("colour DICOM image (secondary capture): converted to grey, values are not HU")
    modality = field_value(dataset, "Modality", path, str, default="")
    return RawImage(
        array=grey[None],
        affine=canonical_affine(),
        source_format="dicom",
        intensity=INTENSITY_DISPLAY,
        meta={"modality": modality},
        warnings=warnings,
    )
