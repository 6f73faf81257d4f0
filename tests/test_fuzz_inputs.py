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


# ---- the findings file, rows files and review records (issue 25) -------------------------------

FINDINGS_COPIES = 300


class _Identity:
    """The model identity a run compares the findings file with."""

    name = "tiny"
    revision = "sha256:" + "0" * 64


def _valid_findings() -> bytes:
    from omnict_cli.run.records import encode_record

    model = {"name": _Identity.name, "revision": _Identity.revision}
    records = [
        {"study_id": f"case_{i}.nii.gz", "status": "ok", "findings": "Normal. ü", "model": model} for i in range(4)
    ]
    return b"".join(encode_record(record) for record in records)


def _damage_anywhere(data: bytes, rng: np.random.Generator) -> bytes:
    """A cut, flipped bytes, a foreign line or invalid UTF-8 bytes, anywhere in the file."""
    choice = rng.integers(4)
    at = int(rng.integers(0, len(data) + 1))
    if choice == 0:
        return data[:at]
    if choice == 1:
        damaged = bytearray(data)
        for offset in rng.integers(0, len(data), size=int(rng.integers(1, 6))):
            damaged[offset] ^= int(rng.integers(1, 256))
        return bytes(damaged)
    if choice == 2:
        return data[:at] + b'{"notes": "mine"}\n' + data[at:]
    return data[:at] + b"\xff\xfe\x80" + data[at:]


def test_a_damaged_findings_file_is_resumed_or_refused_untouched(tmp_path):
    """Only provably-ours bytes are ever cut: a refusal leaves the file byte for byte, a resume keeps whole records."""
    from omnict_cli.errors import OutputError
    from omnict_cli.run.findings_file import RECORD_START
    from omnict_cli.run.pipeline import open_findings

    rng = np.random.default_rng(SEED + 2)
    valid = _valid_findings()
    outcomes = {"resumed": 0, "refused": 0}
    for index in range(FINDINGS_COPIES):
        damaged = _damage_anywhere(valid, rng)
        path = tmp_path / f"findings_{index}.jsonl"
        path.write_bytes(damaged)
        try:
            earlier = open_findings(path, _Identity())
        except OutputError as error:
            assert "\n" not in error.one_line() and str(path) in error.one_line()
            assert path.read_bytes() == damaged
            outcomes["refused"] += 1
            continue
        left = path.read_bytes()
        assert damaged.startswith(left) and (left == b"" or left.endswith(b"\n"))
        cut = damaged[len(left) :]
        assert not cut or cut.startswith(RECORD_START) or RECORD_START.startswith(cut), cut
        assert earlier.records == left.count(b"\n")
        outcomes["resumed"] += 1
    assert outcomes["resumed"] > 20 and outcomes["refused"] > 20, outcomes


def test_damaged_question_rows_are_rows_with_reasons_or_one_line_for_the_file(tmp_path):
    from omnict_cli.errors import OmnictError
    from omnict_cli.run.questions import read_question_rows

    scan = tmp_path / "scan.nii.gz"
    write_nifti(scan, canonical_to_nifti(dicom_test_volume(4)[:, :8, :8]))
    rows = "".join(
        json.dumps({"image": "scan.nii.gz", "question": f"Is there finding {i}? <|im_end|>", "id": str(i)}) + "\n"
        for i in range(5)
    ).encode()
    rng = np.random.default_rng(SEED + 3)
    usable = 0
    for index in range(200):
        path = tmp_path / f"rows_{index}.jsonl"
        path.write_bytes(_damage_anywhere(rows, rng))
        try:
            jobs, problems = read_question_rows(path)
        except OmnictError as error:
            assert "\n" not in error.one_line() and str(path) in error.one_line()
            continue
        assert all("\n" not in problem.message for problem in problems)
        usable += bool(jobs)
    assert usable > 20


def _random_value(rng: np.random.Generator, depth: int = 0):
    kinds = ["<script>alert(1)</script>", -1.5, 7, None, True, "\udcff", "=cmd|' /C calc'!A0", float("nan")]
    pick = int(rng.integers(len(kinds) + (3 if depth < 2 else 0)))
    if pick < len(kinds):
        return kinds[pick]
    if pick == len(kinds):
        return [_random_value(rng, depth + 1) for _ in range(int(rng.integers(0, 4)))]
    return {str(_random_value(rng, depth + 1)): _random_value(rng, depth + 1) for _ in range(int(rng.integers(0, 3)))}


def test_review_makes_a_page_of_records_with_random_field_types(tmp_path):
    """Every field of every record a random JSON value: one page, no traceback, nothing of a record as markup."""
    from omnict_cli.run.records import encode_record

    fields = ["input", "root", "kind", "format", "shape", "spacing", "organs", "organ_reason", "segmenter"]
    fields += ["findings", "impression", "question", "answer", "labels", "model", "timing_s", "warnings", "note"]
    fields += ["error", "prompt", "task"]  # not record_id: records sharing one are one study, the last kept
    rng = np.random.default_rng(SEED + 4)
    lines = []
    for index in range(150):
        record = {"study_id": f"s{index}", "status": ["ok", "error", "skipped", _random_value(rng)][index % 4]}
        record.update({name: _random_value(rng) for name in fields if rng.random() < 0.7})
        lines.append(json.dumps(record, allow_nan=True).encode() + b"\n")
    lines.append(encode_record({"study_id": "plain", "status": "ok", "findings": "ok"}))
    findings = tmp_path / "findings.jsonl"
    findings.write_bytes(b"".join(lines))
    page = tmp_path / "review.html"
    result = CliRunner().invoke(main, ["review", str(findings), "--out", str(page), "--workers", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    assert html.count('<article class="study"') == 151
    assert "<script>alert" not in html and html.count("<script>") == 1
