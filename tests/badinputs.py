"""Build a corpus of bad inputs (and valid NIfTI and DICOM controls) with our own code, for tests.

Not a test module: tests import it (``from badinputs import ...``; pytest
puts ``tests/`` on ``sys.path``). Everything is written from scratch with
nibabel (NIfTI) and pydicom (DICOM), small (16x16 or 32x32 pixels) so the
whole corpus builds in about a second.

``write_dicom_series`` (``omnict_cli.phantom.dicom_writer``, with this corpus's
spacing as default) writes a valid, uncompressed (Explicit VR Little
Endian) CT series from a canonical HU array. The canonical layout is omnict's: ``hu_volume[z, y, x]`` with
z from inferior to superior, y from anterior to posterior and x from the
patient's right to left. With the default ImageOrientationPatient
``[1, 0, 0, 0, 1, 0]`` (rows run to +x = patient left, columns to +y =
posterior, both LPS) and positions stepping along +z (superior), a
correct loader gives back ``hu_volume`` exactly.

The size-limit case documents omnict's default limit: studies over
``DEFAULT_MAX_VOXELS`` (1024^3 voxels, 2 GiB as int16) are refused from the
header, before any pixel is read, with an error naming ``--max-voxels``;
nothing is loaded and the walk goes on.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import RTStructureSetStorage, generate_uid

from omnict_cli.phantom import dicom_writer

HUGE_NIFTI_SHAPE = (2048, 2048, 1024)
"""What the header-only ``too_large`` NIfTI claims: 4 Gi voxels, 4x the default limit."""

NIFTI_SPACING = (0.8, 0.8, 2.0)
"""(x, y, z) voxel size in mm of the NIfTI cases (RAS affine, so x/y/z are R/A/S)."""

DICOM_SPACING = (2.5, 0.7, 0.7)
"""(z, y, x) voxel size in mm of the DICOM cases: slice step, row spacing, column spacing."""


# --------------------------------------------------------------------------- DICOM


def write_dicom_series(folder, hu_volume, spacing=DICOM_SPACING, **options) -> list[Path]:
    """``omnict_cli.phantom.dicom_writer.write_dicom_series`` with this corpus's default spacing."""
    return dicom_writer.write_dicom_series(folder, hu_volume, spacing, **options)


def write_dicom_without_pixels(path: str | Path) -> Path:
    """An RT structure set: valid DICOM, no PixelData (not an image)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset = dicom_writer.new_dataset(path, RTStructureSetStorage)
    dataset.Modality = "RTSTRUCT"
    dataset.StudyInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SeriesNumber = 99
    dataset.StructureSetLabel = "organs"
    dataset.save_as(path, enforce_file_format=True)
    return path


def set_raw_value(path: str | Path, keyword: str, value: bytes) -> Path:
    """Replace one element's value bytes in an Explicit VR Little Endian file written by our writer.

    pydicom refuses to write invalid values (text in a DS, "abcdef" in an
    IS); hostile files have them, so tests write them byte by byte. The
    element keeps its tag and VR; its length field follows the new value
    (padded to even length with a space).
    """
    path = Path(path)
    data = path.read_bytes()
    tag = tag_for_keyword(keyword)
    vr = dictionary_VR(tag).encode()
    element = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr
    at = data.find(element, 132)
    if at < 0 or vr not in SHORT_LENGTH_VRS:
        raise ValueError(f"{keyword} ({vr!r}) is not a short-length element of {path}")
    old_length = struct.unpack("<H", data[at + 6 : at + 8])[0]
    value = value + b" " if len(value) % 2 else value
    path.write_bytes(data[: at + 6] + struct.pack("<H", len(value)) + value + data[at + 8 + old_length :])
    return path


def insert_raw_element(path: str | Path, keyword: str, vr: bytes, value: bytes) -> Path:
    """Insert an element (e.g. NumberOfFrames "abcdef") at its tag's place in the dataset's order."""
    path = Path(path)
    data = path.read_bytes()
    tag = tag_for_keyword(keyword)
    value = value + b" " if len(value) % 2 else value
    encoded = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr + struct.pack("<H", len(value)) + value
    at = _offset_after_file_meta(data)
    while at < len(data):
        group, element = struct.unpack("<HH", data[at : at + 4])
        if (group << 16 | element) > tag:
            break
        at = _next_element(data, at)
    path.write_bytes(data[:at] + encoded + data[at:])
    return path


def _offset_after_file_meta(data: bytes) -> int:
    """Offset of the first dataset element: after the preamble, 'DICM' and group 0002."""
    group_length = struct.unpack("<I", data[140:144])[0]  # (0002,0000) UL is the first meta element
    return 144 + group_length


def _next_element(data: bytes, at: int) -> int:
    vr = data[at + 4 : at + 6]
    if vr in SHORT_LENGTH_VRS:
        return at + 8 + struct.unpack("<H", data[at + 6 : at + 8])[0]
    return at + 12 + struct.unpack("<I", data[at + 8 : at + 12])[0]


SHORT_LENGTH_VRS = {
    vr.encode()
    for vr in (
        "AE",
        "AS",
        "AT",
        "CS",
        "DA",
        "DS",
        "DT",
        "FL",
        "FD",
        "IS",
        "LO",
        "LT",
        "PN",
        "SH",
        "SL",
        "SS",
        "ST",
        "TM",
        "UI",
        "UL",
        "US",
    )
}
"""Explicit VR elements whose length is 2 bytes; the others (OB, OW, SQ, UN, UT, ...) use 4."""


# --------------------------------------------------------------------------- volumes


def phantom_hu(shape=(16, 32, 32)) -> np.ndarray:
    """A body-like int16 HU phantom ``[z, y, x]``: air, a soft-tissue body, a bone rod, a lung."""
    nz, ny, nx = shape
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    cy, cx = (ny - 1) / 2, (nx - 1) / 2
    volume = np.full(shape, -1000, dtype=np.int16)
    body = ((y - cy) / (0.42 * ny)) ** 2 + ((x - cx) / (0.45 * nx)) ** 2 <= 1
    volume[body] = 40
    lung = ((y - cy) / (0.2 * ny)) ** 2 + ((x - cx - 0.2 * nx) / (0.12 * nx)) ** 2 <= 1
    volume[lung] = -850
    bone = (y - (cy + 0.25 * ny)) ** 2 + (x - cx) ** 2 <= (0.08 * nx) ** 2
    volume[bone] = 700
    volume += (z * 2).astype(np.int16)  # each slice differs a little
    return volume


def dicom_test_volume(slices: int = 12, seed: int = 0) -> np.ndarray:
    """16x16 slices of even HU values: the mean of two slices is a whole HU,
    so linear interpolation between neighbours is exact in int16."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-500, 500, size=(slices, 16, 16)) * 2).astype(np.int16)


def nifti_affine(spacing=NIFTI_SPACING) -> np.ndarray:
    """RAS affine for a ``[x, y, z]`` NIfTI array (NIfTI's usual layout)."""
    return np.diag([*spacing, 1.0])


def canonical_to_nifti(volume_zyx: np.ndarray) -> np.ndarray:
    """``[z, y, x]`` canonical (S, P, L) -> ``[x, y, z]`` NIfTI array in RAS (R, A, S)."""
    return np.ascontiguousarray(np.transpose(volume_zyx, (2, 1, 0))[::-1, ::-1, :])


def write_nifti(path: str | Path, array_xyz: np.ndarray, spacing=NIFTI_SPACING) -> Path:
    """Save an ``[x, y, z(, t)]`` array with an RAS affine (sform set)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array_xyz, nifti_affine(spacing)), path)
    return path


def write_header_only_nifti(path: str | Path, shape=HUGE_NIFTI_SHAPE, dtype=np.int16) -> Path:
    """A gzip NIfTI holding only a header that claims ``shape``; no voxel data at all."""
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header.set_sform(nifti_affine(), code="scanner")
    buffer = io.BytesIO()
    header.write_to(buffer)
    buffer.write(b"\0" * 4)  # empty extension flag; vox_offset is 352
    Path(path).write_bytes(gzip.compress(buffer.getvalue()))
    return Path(path)


def write_raw_nifti(path: str | Path, array_xyz: np.ndarray, *, sform=None, qform=None, pixdim=None) -> Path:
    """A NIfTI-1 written from our own header, so its fields stay as given.

    nibabel's ``save`` rewrites ``pixdim`` and the forms from the image's
    affine; damaged files keep theirs. ``sform`` / ``qform`` are 4x4
    affines (their code 1) or None (code 0); ``pixdim`` overrides the voxel
    size fields after the forms are set (e.g. 0, NaN).
    """
    header = nib.Nifti1Header()
    header.set_data_dtype(array_xyz.dtype)
    header.set_data_shape(array_xyz.shape)
    if qform is not None:
        header.set_qform(qform, code=1)
    if sform is not None:
        header.set_sform(sform, code=1)
    else:
        header.set_sform(None, code=0)
    if pixdim is not None:
        header["pixdim"][1:4] = pixdim
    buffer = io.BytesIO()
    header.write_to(buffer)
    buffer.write(b"\0" * 4)  # no extensions; vox_offset is 352
    buffer.write(np.asfortranarray(array_xyz).tobytes(order="F"))
    path = Path(path)
    path.write_bytes(buffer.getvalue())
    return path


# --------------------------------------------------------------------------- corpus

DICOM_CASES = {
    # case: (slices written, seed of dicom_test_volume)
    "valid_dicom": (12, 2),
    "missing_slice": (12, 3),
    "two_series_1": (10, 4),
    "two_series_2": (6, 5),
    "blank_uid_3": (9, 6),
    "blank_uid_4": (5, 7),
    "mr": (10, 8),
    "gantry_tilt": (10, 9),
    "uneven": (10, 10),
    "duplicates": (10, 11),
}
"""How each DICOM case's volume was made, so tests can compare values."""

MISSING_SLICE_FILE = "slice0005.dcm"
"""The file removed from ``missing_slice`` (slice index 5, z = 12.5 mm)."""

GANTRY_TILT_DEGREES = 15.0
UNEVEN_Z = (0.0, 2.5, 5.0, 6.0, 8.5, 11.0, 12.0, 14.5, 17.0, 19.5)
DUPLICATE_Z = (0.0, 2.5, 5.0, 5.0, 7.5, 10.0, 12.5, 12.5, 15.0, 17.5)


def dicom_case_volume(case: str) -> np.ndarray:
    """The HU volume ``[z, y, x]`` that was written for a DICOM case (MR: stored values)."""
    slices, seed = DICOM_CASES[case]
    volume = dicom_test_volume(slices, seed=seed)
    return (volume + 1000).astype(np.int16) if case == "mr" else volume


def build_bad_corpus(root: str | Path) -> dict[str, Path]:
    """Write every bad-input case (and a valid control) under ``root``.

    Returns ``{case name: path}``; a DICOM case's path is its folder. Each
    case is its own file or folder directly under ``root``, so walking
    ``root`` gives one study per case (two for the mixed-series folders,
    plus one for the symlink loop report). The ``unreadable`` file is made
    mode 000; as root it still reads, which the tests allow for.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cases: dict[str, Path] = {}
    phantom = phantom_hu()

    # NIfTI cases ---------------------------------------------------------
    cases["valid_nifti"] = write_nifti(root / "valid_control.nii.gz", canonical_to_nifti(phantom))

    cases["zero_byte"] = root / "zero_byte.nii.gz"
    cases["zero_byte"].write_bytes(b"")

    good = gzip.compress(nib.Nifti1Image(canonical_to_nifti(dicom_test_volume(16)), nifti_affine()).to_bytes())
    cases["truncated"] = root / "truncated.nii.gz"
    cases["truncated"].write_bytes(good[: len(good) // 2])

    cases["truncated_header"] = root / "truncated_header.nii.gz"
    cases["truncated_header"].write_bytes(gzip.compress(gzip.decompress(good)[:200]))

    cases["random_bytes"] = root / "random_bytes.nii.gz"
    cases["random_bytes"].write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())

    first = canonical_to_nifti(phantom)
    four_d = np.stack([first, first + 100, first - 100], axis=-1)  # only the first may be used
    cases["four_d"] = write_nifti(root / "four_d.nii.gz", four_d.astype(np.int16))

    nan_volume = phantom.astype(np.float32)
    nan_volume[3, 5, 6] = np.nan
    nan_volume[4, 7, 8] = np.nan
    nan_volume[5, 9, 10] = np.inf
    nan_volume[6, 11, 12] = -np.inf
    cases["nan_inf"] = write_nifti(root / "nan_inf.nii.gz", canonical_to_nifti(nan_volume))

    scaled = (phantom.astype(np.float32) + 1000.0) / 2000.0
    cases["scaled_0_1"] = write_nifti(root / "scaled_0_1.nii.gz", canonical_to_nifti(np.clip(scaled, 0.0, 1.0)))

    cases["one_slice"] = write_nifti(root / "one_slice.nii.gz", canonical_to_nifti(phantom[7:8]))

    cases["too_large"] = write_header_only_nifti(root / "too_large.nii.gz")

    cases["unreadable"] = write_nifti(root / "unreadable.nii.gz", canonical_to_nifti(phantom))
    os.chmod(cases["unreadable"], 0o000)

    # DICOM cases ---------------------------------------------------------
    step = DICOM_SPACING[0]
    cases["valid_dicom"] = root / "dicom_valid"
    write_dicom_series(cases["valid_dicom"], dicom_case_volume("valid_dicom"))

    cases["zero_byte_dicom"] = root / "dicom_zero_byte" / "empty.dcm"
    cases["zero_byte_dicom"].parent.mkdir()
    cases["zero_byte_dicom"].write_bytes(b"")

    cases["missing_slice"] = root / "dicom_missing_slice"
    write_dicom_series(cases["missing_slice"], dicom_case_volume("missing_slice"))
    (cases["missing_slice"] / MISSING_SLICE_FILE).unlink()

    cases["two_series"] = root / "dicom_two_series"
    write_dicom_series(cases["two_series"], dicom_case_volume("two_series_1"), series_number=1, prefix="a")
    write_dicom_series(
        cases["two_series"], dicom_case_volume("two_series_2"), series_number=2, prefix="b", origin=(0.0, 0.0, 100.0)
    )

    cases["blank_uid_series"] = root / "dicom_blank_uid"
    write_dicom_series(
        cases["blank_uid_series"], dicom_case_volume("blank_uid_3"), series_uid="", series_number=3, prefix="a"
    )
    write_dicom_series(
        cases["blank_uid_series"], dicom_case_volume("blank_uid_4"), series_uid="", series_number=4, prefix="b"
    )

    cases["no_pixels"] = root / "dicom_no_pixels"
    write_dicom_without_pixels(cases["no_pixels"] / "structures.dcm")

    cases["mr"] = root / "dicom_mr"
    write_dicom_series(cases["mr"], dicom_case_volume("mr"), modality="MR", rescale_intercept=0.0)

    shear = np.tan(np.radians(GANTRY_TILT_DEGREES))
    cases["gantry_tilt"] = root / "dicom_gantry_tilt"
    write_dicom_series(
        cases["gantry_tilt"],
        dicom_case_volume("gantry_tilt"),
        positions=[(0.0, k * step * shear, k * step) for k in range(10)],
    )

    cases["uneven"] = root / "dicom_uneven"
    write_dicom_series(cases["uneven"], dicom_case_volume("uneven"), positions=[(0.0, 0.0, z) for z in UNEVEN_Z])

    cases["duplicates"] = root / "dicom_duplicates"
    write_dicom_series(
        cases["duplicates"], dicom_case_volume("duplicates"), positions=[(0.0, 0.0, z) for z in DUPLICATE_Z]
    )

    # Folders ------------------------------------------------------------
    cases["symlink_loop"] = root / "loop"
    write_nifti(cases["symlink_loop"] / "inside.nii.gz", canonical_to_nifti(phantom))
    (cases["symlink_loop"] / "parent").symlink_to("..", target_is_directory=True)
    return cases
