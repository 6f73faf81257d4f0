"""Write a generated phantom set to disk in the layouts omnict and CT-RATE users know.

Layout of ``OUT_DIR`` (``--format nifti``, the default)::

    volumes/case_0001.nii.gz        HU volume (int16, RAS affine)
    labels/case_0001.nii.gz         exact organ label map, same grid (TotalSegmentator ids)
    slices/case_0001_z017.png       axial slice through a finding, windowed [-1000, 1000] to 8 bit
    slices/case_0001_z017.dcm       the same slice as a one-frame DICOM in HU
    slices/labels.csv               slice PNG name + the 18 classes, 0/1: the findings on that slice
    references.csv                  VolumeName, Findings_EN, Impressions_EN (CT-RATE columns)
    labels.csv                      VolumeName + the 18 CT-RATE classes, 0/1, CT-RATE order
    qa.jsonl                        chat rows (authors' format): report, volume QA and slice QA

``--format dicom`` writes each volume as a DICOM series folder
``volumes/case_0001/`` instead (geometry tags such that omnict's loader
reads back the same array). ``--format png`` writes a 2D set: only the
slices, with ``labels.csv`` rows per slice (the findings on that slice)
and their QA; no volume reports.

Every file is written to a temporary name and renamed into place, so an
interrupted run never leaves a half-written file under its final name.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip
from PIL import Image

from omnict_cli.atomic import apply_umask, write_bytes_atomically
from omnict_cli.csv_safe import csv_text
from omnict_cli.labels import CTRATE_ABNORMALITIES
from omnict_cli.phantom.dicom_writer import write_dicom_series
from omnict_cli.phantom.findings import label_vector
from omnict_cli.phantom.generate import PhantomCase, PhantomConfig, generate_case, slice_qa, slice_through_finding
from omnict_cli.phantom.reports import chat_row, report_row
from omnict_cli.studies.volume import canonical_affine, canonicalize

FORMATS = ("nifti", "dicom", "png")


@dataclass
class SetSummary:
    """What a run wrote: counts a command prints and tests check."""

    out_dir: Path
    cases: int = 0
    slices: int = 0
    qa_rows: int = 0
    positives: dict = field(default_factory=lambda: {name: 0 for name in CTRATE_ABNORMALITIES})


def write_phantom_set(
    out_dir: str | Path, n: int, seed: int, config: PhantomConfig = PhantomConfig(), fmt: str = "nifti", on_case=None
) -> SetSummary:
    """Generate ``n`` cases with ``seed`` and write them under ``out_dir``.

    ``on_case(index)`` is called after each case (progress bars).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    out_dir = Path(out_dir)
    summary = SetSummary(out_dir=out_dir)
    references, label_rows, slice_label_rows, qa_rows = [], [], [], []
    for index in range(1, n + 1):
        case = generate_case(seed, index, config)
        rng = np.random.default_rng([seed, index, 1])
        if fmt != "png":
            volume_name = _write_volume(case, out_dir, fmt, seed)
            references.append(
                {
                    "VolumeName": volume_name,
                    "Findings_EN": case.report.findings,
                    "Impressions_EN": case.report.impression,
                }
            )
            label_rows.append({"VolumeName": volume_name, **case.label_vector})
            qa_rows.append(report_row(case.report, f"volumes/{volume_name}", modality="3d"))
            qa_rows.extend(chat_row(pair, f"volumes/{volume_name}", modality="3d") for pair in case.qa)
        slice_rows, slice_labels = _write_slice(case, out_dir, rng, seed)
        qa_rows.extend(slice_rows)
        (label_rows if fmt == "png" else slice_label_rows).extend(slice_labels)
        summary.slices += len(slice_labels)
        summary.cases += 1
        for name, value in case.label_vector.items():
            summary.positives[name] += value
        if on_case is not None:
            on_case(index)
    if references:
        _write_csv(out_dir / "references.csv", ["VolumeName", "Findings_EN", "Impressions_EN"], references)
    _write_csv(out_dir / "labels.csv", ["VolumeName", *CTRATE_ABNORMALITIES], label_rows)
    if fmt != "png":  # header only when no case had a finding to slice through
        _write_csv(_ensure(out_dir / "slices") / "labels.csv", ["VolumeName", *CTRATE_ABNORMALITIES], slice_label_rows)
    _write_text(out_dir / "qa.jsonl", "".join(json.dumps(row) + "\n" for row in qa_rows))
    summary.qa_rows = len(qa_rows)
    return summary


def _write_volume(case: PhantomCase, out_dir: Path, fmt: str, seed: int) -> str:
    """Write the HU volume and its label map; return the VolumeName used in the CSVs."""
    _write_nifti(out_dir / "labels" / f"{case.case_id}.nii.gz", case.labels, case.spacing)
    if fmt == "dicom":
        folder = out_dir / "volumes" / case.case_id
        staging = Path(tempfile.mkdtemp(prefix=f".{case.case_id}.", dir=_ensure(folder.parent)))
        write_dicom_series(
            staging, case.hu, case.spacing, origin=_origin_lps(case), uid_source=_uids(seed, case.case_id)
        )
        apply_umask(staging)  # not mkdtemp's 0700
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
        return case.case_id
    _write_nifti(out_dir / "volumes" / f"{case.case_id}.nii.gz", case.hu, case.spacing)
    return f"{case.case_id}.nii.gz"


def _write_slice(case: PhantomCase, out_dir: Path, rng, seed: int) -> tuple[list[dict], list[dict]]:
    """PNG + one-frame DICOM of the axial slice through a finding, and its QA rows."""
    chosen = slice_through_finding(case)
    if chosen is None:
        return [], []
    z, on_slice = chosen
    name = f"{case.case_id}_z{z:03d}"
    grey = np.clip((case.hu[z].astype(np.float32) + 1000.0) / 2000.0, 0.0, 1.0)
    buffer = io.BytesIO()
    Image.fromarray(np.rint(grey * 255).astype(np.uint8)).save(buffer, format="PNG")
    _write_bytes(out_dir / "slices" / f"{name}.png", buffer.getvalue())
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=_ensure(out_dir / "slices")))
    (path,) = write_dicom_series(
        staging,
        case.hu[z : z + 1],
        case.spacing,
        origin=_origin_lps(case, z),
        prefix=name,
        uid_source=_uids(seed, name),
    )
    os.replace(path, out_dir / "slices" / f"{name}.dcm")
    staging.rmdir()
    rows = [chat_row(pair, f"slices/{name}.png", modality="2d") for pair in slice_qa(case, on_slice, rng)]
    return rows, [{"VolumeName": f"{name}.png", **label_vector(on_slice)}]


def _uids(seed: int, name: str) -> tuple:
    """What a written DICOM's UIDs are derived from: the same seed and case give the same UIDs, and bytes."""
    return ("omnict demo-data", seed, name)


def _origin_lps(case: PhantomCase, z: int = 0) -> tuple[float, float, float]:
    """LPS position of voxel ``[z, 0, 0]``: the volume is centred on the world origin."""
    depth, height, width = case.hu.shape
    sz, sy, sx = case.spacing
    return (-(width - 1) * sx / 2.0, -(height - 1) * sy / 2.0, (z - (depth - 1) / 2.0) * sz)


def _write_nifti(path: Path, canonical: np.ndarray, spacing) -> None:
    """Save a canonical ``[z, y, x]`` array as a conventional RAS NIfTI, centred on the origin."""
    affine = canonical_affine(spacing)
    affine[:3, 3] = -affine[:3, :3] @ ((np.array(canonical.shape) - 1) / 2.0)
    array, ras_affine = canonicalize(canonical, affine, ("R", "A", "S"))
    image = nib.Nifti1Image(np.ascontiguousarray(array), ras_affine)
    image.set_data_dtype(canonical.dtype)
    image.set_qform(ras_affine, code=1)
    image.set_sform(ras_affine, code=1)
    _write_bytes(path, igzip.compress(image.to_bytes(), compresslevel=2, mtime=0))  # same seed, same bytes


def _write_csv(path: Path, columns, rows) -> None:
    _write_text(path, csv_text([columns, *([row.get(column, "") for column in columns] for row in rows)]))


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _write_bytes(path: Path, data: bytes) -> None:
    write_bytes_atomically(path, data, fsync=False)


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
