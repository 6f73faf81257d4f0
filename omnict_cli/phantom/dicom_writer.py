"""Write a canonical HU volume as an uncompressed DICOM CT series (one file per slice).

Used by the phantom generator (``omnict demo-data --format dicom``) and by
tests. The canonical layout is omnict's: ``hu_volume[z, y, x]`` with z from
inferior to superior, y from anterior to posterior and x from the patient's
right to left. With the default ImageOrientationPatient ``[1, 0, 0, 0, 1, 0]``
(rows run to +x = patient left, columns to +y = posterior, both LPS) and
positions stepping along +z (superior), omnict's loader gives back
``hu_volume`` exactly. Files carry no patient identifiers (name, id, birth
date, accession number, institution and dates are left out).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

SOP_CLASS_BY_MODALITY = {"CT": CTImageStorage, "MR": MRImageStorage}


def write_dicom_series(
    folder: str | Path,
    hu_volume: np.ndarray,
    spacing=(1.0, 1.0, 1.0),
    *,
    modality: str = "CT",
    series_uid: str | None = None,
    series_number: int | str | None = 1,
    positions=None,
    origin=(0.0, 0.0, 0.0),
    orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    rescale_intercept: float = -1024.0,
    rescale_slope: float = 1.0,
    study_uid: str | None = None,
    prefix: str = "slice",
    instance_numbers=None,
    image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
    slice_thickness: float | None = None,
    uid_source: tuple | None = None,
) -> list[Path]:
    """Write ``hu_volume[z, y, x]`` as one DICOM file per slice; returns the paths.

    Args:
        folder: created if needed; files are ``<prefix><k:04d>.dcm``.
        hu_volume: 3D array in HU (canonical layout, see module docs); a 2D
            array is one slice.
        spacing: ``(slice step, row spacing, column spacing)`` in mm; the row
            spacing is the distance between rows (along y), as PixelSpacing[0].
        modality: written to Modality; picks the SOP class (CT or MR Image Storage).
        series_uid: ``None`` generates one; ``""`` writes a blank
            SeriesInstanceUID (as anonymised exports do).
        series_number: SeriesNumber (``None`` leaves it out).
        positions: per-slice ImagePositionPatient ``(x, y, z)`` in LPS mm;
            default ``origin + k * spacing[0] * normal``, the normal being the
            cross product of the orientation cosines (+z, superior, by default).
            Give it to write gaps, uneven steps, duplicates or a gantry tilt.
        origin: position of slice 0 when ``positions`` is not given.
        orientation: ImageOrientationPatient (row cosine, then column cosine).
        rescale_intercept, rescale_slope: stored = (HU - intercept) / slope,
            rounded; uint16 when non-negative, else int16.
        study_uid: StudyInstanceUID (generated when ``None``).
        prefix: file name prefix, so several series can share a folder.
        instance_numbers: InstanceNumber per slice (default 1..n); readers
            must not rely on it.
        image_type: ImageType values (add ``"LOCALIZER"`` for a scout).
        slice_thickness: SliceThickness (default: the slice step).
        uid_source: values every UID not given is derived from (e.g. seed and
            case), so the same values write the same bytes; ``None`` draws
            fresh random UIDs.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    volume = np.asarray(hu_volume)
    if volume.ndim == 2:
        volume = volume[None]
    if volume.ndim != 3:
        raise ValueError(f"hu_volume must be 2D or 3D, got shape {volume.shape}")
    count, rows, columns = volume.shape
    step, row_spacing, column_spacing = (float(s) for s in spacing)
    orientation = tuple(float(v) for v in orientation)
    if positions is None:
        normal = np.cross(orientation[:3], orientation[3:])
        positions = [np.asarray(origin, dtype=float) + k * step * normal for k in range(count)]
    positions = [tuple(float(v) for v in p) for p in positions]
    if len(positions) != count:
        raise ValueError(f"{len(positions)} positions for {count} slices")
    stored = np.rint((volume.astype(np.float64) - rescale_intercept) / rescale_slope)
    if stored.min() >= 0 and stored.max() <= 65535:
        stored, signed = stored.astype(np.uint16), 0
    elif stored.min() >= -32768 and stored.max() <= 32767:
        stored, signed = stored.astype(np.int16), 1
    else:
        raise ValueError("HU values do not fit 16-bit stored values with this rescale")
    uid = _uid_maker(uid_source)
    series_uid = uid("series") if series_uid is None else series_uid
    study_uid = uid("study") if study_uid is None else study_uid
    frame_uid = uid("frame of reference")
    instance_numbers = list(range(1, count + 1)) if instance_numbers is None else list(instance_numbers)
    sop_class = SOP_CLASS_BY_MODALITY.get(modality.upper(), CTImageStorage)
    paths = []
    for k in range(count):
        dataset = new_dataset(folder / f"{prefix}{k:04d}.dcm", sop_class, uid("instance", k))
        dataset.Modality = modality
        dataset.StudyInstanceUID = study_uid
        dataset.SeriesInstanceUID = series_uid
        if series_number is not None:
            dataset.SeriesNumber = series_number
        dataset.FrameOfReferenceUID = frame_uid
        dataset.InstanceNumber = instance_numbers[k]
        dataset.ImageType = list(image_type)
        dataset.ImagePositionPatient = [_ds(v) for v in positions[k]]
        dataset.ImageOrientationPatient = [_ds(v) for v in orientation]
        dataset.PixelSpacing = [_ds(row_spacing), _ds(column_spacing)]
        dataset.SliceThickness = _ds(step if slice_thickness is None else slice_thickness)
        dataset.RescaleIntercept = _ds(rescale_intercept)
        dataset.RescaleSlope = _ds(rescale_slope)
        dataset.RescaleType = "HU"
        dataset.SamplesPerPixel = 1
        dataset.PhotometricInterpretation = "MONOCHROME2"
        dataset.Rows, dataset.Columns = rows, columns
        dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 16, 15
        dataset.PixelRepresentation = signed
        dataset.PixelData = np.ascontiguousarray(stored[k]).astype(stored.dtype.newbyteorder("<")).tobytes()
        dataset.save_as(dataset.filename, enforce_file_format=True)
        paths.append(Path(dataset.filename))
    return paths


def _uid_maker(source: tuple | None):
    """``uid(*what)``: a UID derived from ``source`` and ``what`` (pydicom hashes them), or a random one."""

    def uid(*what) -> str:
        if source is None:
            return generate_uid()
        return generate_uid(entropy_srcs=[str(part) for part in (*source, *what)])

    return uid


def new_dataset(path: Path, sop_class, sop_instance_uid: str | None = None) -> FileDataset:
    """An empty Explicit VR Little Endian dataset with file meta and its SOP instance UID (fresh when None)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), Dataset(), file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = sop_class
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    return dataset


def _ds(value: float) -> str:
    """A Decimal String value (at most 16 characters)."""
    text = f"{float(value):.6g}"
    return "0" if text == "-0" else text
