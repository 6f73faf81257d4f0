"""Damaged headers never escape as exceptions: random cuts and byte flips, one record per file.

A folder of small valid files (one-slice DICOMs, each in its own folder,
and NIfTIs plain and gzipped) is copied many times with seeded damage:
the file cut at a random byte of its header (or anywhere), or a few bytes
of its header flipped. ``omnict inspect --json`` over the folder must give
exactly one record per file, each ``ok``/``warning``/``error``, every error
one line naming its file, none of them the "unexpected ... (please report
this)" line kept for real bugs. Seeded, so a failure reproduces.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np
import pytest
from badinputs import canonical_to_nifti, dicom_test_volume, write_dicom_series, write_nifti
from click.testing import CliRunner

from omnict_cli.cli import main
from omnict_cli.studies.discover import discover_studies
from omnict_cli.studies.inspection import summarize_study

SEED = 12
COPIES_PER_KIND = 400
"""Damaged copies per base file kind (DICOM, .nii, .nii.gz): 1200 files, a few seconds."""

SERIES_COPIES = 40
SERIES_SLICES = 4

NIFTI_HEADER_BYTES = 352


def _valid_files(folder: Path) -> dict[str, bytes]:
    """The undamaged bases: name -> bytes, and the size of each one's header."""
    volume = dicom_test_volume(1)
    (dicom_path,) = write_dicom_series(folder / "dicom", volume)
    nifti = write_nifti(folder / "scan.nii", canonical_to_nifti(dicom_test_volume(8)[:, :8, :8]))
    return {"dcm": dicom_path.read_bytes(), "nii": nifti.read_bytes()}


def _dicom_header_bytes(data: bytes) -> int:
    """Bytes before the PixelData element (7FE0,0010)."""
    at = data.find(b"\xe0\x7f\x10\x00")
    return at if at > 0 else len(data)


def _damage(data: bytes, header_bytes: int, rng: np.random.Generator) -> bytes:
    """One of: a cut inside the header, a cut anywhere, or 1-8 flipped header bytes."""
    choice = rng.integers(3)
    if choice == 0:
        return data[: int(rng.integers(0, header_bytes + 1))]
    if choice == 1:
        return data[: int(rng.integers(0, len(data)))]
    damaged = bytearray(data)
    for offset in rng.integers(0, header_bytes, size=int(rng.integers(1, 9))):
        damaged[offset] ^= int(rng.integers(1, 256))
    return bytes(damaged)


def _write_damaged_copies(root: Path, bases: dict[str, bytes], rng: np.random.Generator) -> list[Path]:
    files = []
    for index in range(COPIES_PER_KIND):
        dicom = bases["dcm"]
        path = root / f"series_{index:03d}" / "slice.dcm"  # its own folder: a one-file series
        path.parent.mkdir()
        path.write_bytes(_damage(dicom, _dicom_header_bytes(dicom), rng))
        files.append(path)
        path = root / f"plain_{index:03d}.nii"
        path.write_bytes(_damage(bases["nii"], NIFTI_HEADER_BYTES, rng))
        files.append(path)
        path = root / f"packed_{index:03d}.nii.gz"
        path.write_bytes(gzip.compress(_damage(bases["nii"], NIFTI_HEADER_BYTES, rng), compresslevel=1))
        files.append(path)
    return files


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory):
    bases = _valid_files(tmp_path_factory.mktemp("bases"))
    root = tmp_path_factory.mktemp("fuzz")
    files = _write_damaged_copies(root, bases, np.random.default_rng(SEED))
    return root, files


def test_damaged_headers_give_one_record_per_file_and_no_traceback(fuzz_folder):
    root, files = fuzz_folder
    started = time.perf_counter()
    result = CliRunner().invoke(main, ["inspect", str(root), "--json"])
    seconds = time.perf_counter() - started
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    records = json.loads(result.stdout)
    inputs = sorted(str(root / record["input"]) for record in records)
    assert inputs == sorted(str(path) for path in files)  # one record per file, none lost, none doubled
    assert {record["status"] for record in records} <= {"ok", "warning", "error"}
    errors = [record["error"] for record in records if record["status"] == "error"]
    assert errors, "the damage must break some files"
    for record in records:
        if record["status"] == "error":
            assert "\n" not in record["error"]
            assert record["error"].startswith(str(root / record["input"])), record["error"]
            assert "please report" not in record["error"], record["error"]
    assert result.exit_code == 1  # some studies failed
    assert seconds < 20, f"inspect took {seconds:.1f} s"


def test_every_damaged_copy_differs_from_its_base(fuzz_folder):
    """Guards the test itself: the seeded damage really changes the files."""
    root, files = fuzz_folder
    assert len(files) == 3 * COPIES_PER_KIND
    sizes = {path.stat().st_size for path in files if path.suffix == ".dcm"}
    assert len(sizes) > 10


def test_a_damaged_slice_fails_at_most_its_own_series(tmp_path):
    """Each copy of a 4-slice series has one slice damaged at random: the walk never raises, each
    folder's studies stay inside it, and the other slices still load as a series in most copies."""
    rng = np.random.default_rng(SEED + 1)
    base = tmp_path / "base"
    write_dicom_series(base, dicom_test_volume(SERIES_SLICES))
    root = tmp_path / "copies"
    for index in range(SERIES_COPIES):
        folder = root / f"series_{index:02d}"
        folder.mkdir(parents=True)
        victim = int(rng.integers(SERIES_SLICES))
        for number, source in enumerate(sorted(base.iterdir())):
            data = source.read_bytes()
            (folder / source.name).write_bytes(
                _damage(data, _dicom_header_bytes(data), rng) if number == victim else data
            )
    summaries = [summarize_study(study) for study in discover_studies(root)]
    by_folder = {}
    for summary in summaries:
        by_folder.setdefault(summary.input.split("/")[0], []).append(summary)
        if summary.status == "error":
            assert "please report" not in summary.error and "\n" not in summary.error
    assert sorted(by_folder) == [f"series_{index:02d}" for index in range(SERIES_COPIES)]
    loaded = [
        folder
        for folder, found in by_folder.items()
        if any(s.status != "error" and s.shape and s.shape[0] >= SERIES_SLICES - 1 for s in found)
    ]
    assert len(loaded) >= 0.8 * SERIES_COPIES  # the intact slices survive their damaged neighbour
