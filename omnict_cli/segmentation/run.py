"""Segment a folder of studies through the mask cache: the library behind ``omnict segment``.

For each study: load it, key it, take the mask from the cache or segment
and store it, and optionally write the label map next to the input's
geometry for a viewer. A bad study becomes a result with an error message
and the run goes on; the command line only prints the results.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from omnict_cli.errors import OmnictError
from omnict_cli.segmentation.base import Segmenter
from omnict_cli.segmentation.cache import MaskCache, write_file_atomically
from omnict_cli.studies.discover import Study
from omnict_cli.studies.load import LoadOptions, load_study

log = logging.getLogger(__name__)

LABELS_JSON = "labels.json"


@dataclass
class StudySegmentation:
    """What happened to one study; ``status`` is ``ok``, ``skipped`` or ``error``.

    ``skipped``: a picture without HU (PNG/JPEG slice) has no organs to find by
    density; it is not an error, and the model pools the whole image for it
    (``note`` says so).

    ``load_seconds`` covers reading the file, ``segment_seconds`` the
    segmentation step (key, cache lookup, segmenting and storing on a miss),
    ``seconds`` the whole study including writing ``--out``.
    """

    study_id: str
    status: str
    cached: bool = False
    seconds: float = 0.0
    load_seconds: float = 0.0
    segment_seconds: float = 0.0
    error: str | None = None
    note: str | None = None
    warnings: list[str] = field(default_factory=list)
    output: Path | None = None


@dataclass
class RunTotals:
    """The summary line of a run: counts and time."""

    studies: int
    segmented: int
    from_cache: int
    skipped: int
    failed: int
    seconds: float

    @classmethod
    def of(cls, results: list[StudySegmentation]) -> RunTotals:
        ok = [r for r in results if r.status == "ok"]
        return cls(
            studies=len(results),
            segmented=sum(not r.cached for r in ok),
            from_cache=sum(r.cached for r in ok),
            skipped=sum(r.status == "skipped" for r in results),
            failed=sum(r.status == "error" for r in results),
            seconds=sum(r.seconds for r in results),
        )


def segment_studies(
    studies: list[Study],
    segmenter: Segmenter,
    cache: MaskCache,
    out_dir: str | Path | None = None,
    options: LoadOptions | None = None,
    on_study=None,
) -> list[StudySegmentation]:
    """Segment every study (cache first); with ``out_dir``, also write ``<study_id>.nii.gz`` label maps
    in each input's own voxel layout and one ``labels.json`` naming the label ids.

    ``on_study(result)`` is called after each study (progress bars). Raises
    OmnictError before any work when ``out_dir`` cannot be written.
    """
    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is not None:
        write_labels_json(out_dir / LABELS_JSON, segmenter)
    results = []
    for study in studies:
        result = segment_study(study, segmenter, cache, out_dir, options)
        results.append(result)
        if on_study is not None:
            on_study(result)
    return results


def segment_study(
    study: Study,
    segmenter: Segmenter,
    cache: MaskCache,
    out_dir: Path | None = None,
    options: LoadOptions | None = None,
) -> StudySegmentation:
    """One study through load -> cache or segment -> optional label map file; never raises for a bad study."""
    result = StudySegmentation(study_id=study.study_id, status="ok")
    started = time.perf_counter()
    try:
        volume = load_study(study, options or LoadOptions())
        result.load_seconds = time.perf_counter() - started
        result.warnings.extend(volume.warnings)
        if volume.intensity != "hu":
            result.status = "skipped"
            result.note = (
                f"{study.input}: a {volume.source_format} picture holds grey values, not HU; not "
                "segmented (the model pools the whole image for it)"
            )
            result.seconds = time.perf_counter() - started
            return result
        segment_started = time.perf_counter()
        labels, result.cached, cache_warnings = cache.get_or_compute(volume, segmenter)
        result.segment_seconds = time.perf_counter() - segment_started
        result.warnings.extend(cache_warnings)
        if out_dir is not None:
            result.output = output_path(out_dir, study)
            write_label_map(result.output, volume, labels)
    except OmnictError as error:
        result.status, result.error = "error", error.one_line()
    except Exception as error:  # a bug or an exotic file: report it, keep going with the other studies
        log.debug("unexpected error segmenting %s", study.study_id, exc_info=True)
        result.status = "error"
        result.error = f"{study.input}: unexpected {type(error).__name__}: {error} (please report this)"
    result.seconds = time.perf_counter() - started
    return result


def output_path(out_dir: Path, study: Study) -> Path:
    """``<out_dir>/<study_id>.nii.gz`` with no doubled suffix (:func:`omnict_cli.study_ids.mask_file_name`);
    ids with '/' become subfolders, but never a path outside ``out_dir``."""
    from omnict_cli.study_ids import mask_file_name

    path = out_dir / mask_file_name(study.study_id)
    if not path.resolve().is_relative_to(out_dir.resolve()):
        raise OmnictError(
            f"study id {study.study_id!r} would write outside the output folder {out_dir}",
            path=study.input,
            hint="Run omnict segment on the folder that holds the study",
        )
    return path


def source_layout_affine(volume) -> np.ndarray:
    """The voxel-to-RAS affine of ``volume.to_source_layout(...)`` arrays, i.e. the input file's own affine.

    Loading only flipped and permuted the file's axes (``canonicalize``) and
    kept the affine exact, even for oblique scans; this undoes that step.
    """
    from nibabel import orientations as nio

    transform = nio.ornt_transform(nio.io_orientation(volume.affine), volume.source_ornt)
    return np.asarray(volume.affine, dtype=float) @ nio.inv_ornt_aff(transform, volume.shape)


def write_label_map(path: Path, volume, labels: np.ndarray) -> None:
    """Write a canonical-grid label map as a NIfTI that overlays the input file voxel for voxel.

    Raises OmnictError naming the file when it cannot be written.
    """
    import nibabel as nib
    from isal import igzip

    affine = source_layout_affine(volume)
    image = nib.Nifti1Image(volume.to_source_layout(labels), affine)
    image.set_data_dtype(labels.dtype)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    try:
        write_file_atomically(path, igzip.compress(image.to_bytes(), compresslevel=1))
    except OSError as error:
        raise OmnictError(
            f"cannot write the label map ({error.strerror or error})",
            path=path,
            hint="Check that the --out folder is writable and has space",
        ) from error


def write_labels_json(path: Path, segmenter: Segmenter) -> None:
    """``labels.json``: which segmenter made the maps and the name of every label id."""
    names = {"0": "background", **{str(label_id): name for label_id, name in sorted(segmenter.vocabulary.items())}}
    document = {"segmenter": segmenter.describe(), "labels": names}
    try:
        write_file_atomically(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"))
    except OSError as error:
        raise OmnictError(
            f"cannot write the output folder ({error.strerror or error})",
            path=path.parent,
            hint="Choose a writable --out folder",
        ) from error
