"""One findings record -> its views: re-read the scan, find its organ mask in the cache, render the thumbnails.

The record says where the scan was (``input``, relative to the folder the
run was given, ``root``; only paths inside that folder are opened), which segmenter made the masks (``segmenter``, its
``describe()`` line) and which organs the model pooled (``organs``). The
label map is looked up in the mask cache under the same key the run used
(voxels + spacing + segmenter name, version and options), so the outline is
exactly the mask the model pooled, on the scan's own grid. Nothing is
segmented again: a mask that is not in the cache is a warning, and the views
are shown without an outline.

Every problem (scan moved, unreadable, mask missing, unknown segmenter)
becomes a one-line warning naming the file; this module never raises for a
bad study, so one odd record cannot stop a page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from omnict_cli.errors import OmnictError
from omnict_cli.review.thumbnails import (
    CT_WINDOWS,
    DEFAULT_MAX_PIXELS,
    GREY_VALUES,
    View,
    organ_centre,
    render_slice,
    render_volume,
)
from omnict_cli.segmentation.base import Segmenter


@dataclass(frozen=True)
class ImageSettings:
    """Where scans and masks are, and how large views are; sent once to each worker process."""

    study_roots: tuple[Path, ...]
    """Folders a record's ``input`` is relative to, tried in order (after the record's own ``root``, if used)."""
    cache_dir: Path | None = None
    """Mask cache root (None: the default cache, ``$OMNICT_CACHE_DIR`` or ``~/.cache/omnict/masks``)."""
    max_pixels: int = DEFAULT_MAX_PIXELS
    record_roots: bool = True
    """Try a record's ``root`` (the folder its run was given) first; False when the user named ``--studies``."""


@dataclass
class StudyImages:
    """What the page shows of one study's pixels: views in order, and what went wrong."""

    views: list[View] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    centre: tuple[int, int, int] | None = None
    """The ``(z, y, x)`` voxel the views cut through (volumes only)."""


class RecordedSegmenter(Segmenter):
    """The segmenter a record names, rebuilt for the cache key and vocabulary only; it never segments.

    Name, options and vocabulary come from the real segmenter class; the
    version comes from the record, so a TotalSegmentator mask is found even
    where TotalSegmentator is not installed.
    """

    def __init__(self, like: Segmenter, version: str):
        self.name = like.name
        self.version = version
        self._options = like.options()
        self._vocabulary = dict(like.vocabulary)

    @property
    def vocabulary(self) -> dict[int, str]:
        return self._vocabulary

    def options(self) -> dict:
        return dict(self._options)

    def segment(self, volume) -> np.ndarray:
        raise RuntimeError("a RecordedSegmenter only looks masks up in the cache")


def recorded_segmenter(description: str) -> RecordedSegmenter | None:
    """The segmenter of a record's ``segmenter`` line (``"builtin 2"``, ``"totalsegmentator 2.18.0 fast"``).

    None for "none", an empty line or a segmenter omnict does not know.
    """
    parts = str(description or "").split()
    if len(parts) < 2:
        return None
    name, version, flags = parts[0], parts[1], set(parts[2:])
    if name == "builtin":
        from omnict_cli.segmentation.builtin import BuiltinSegmenter

        like = BuiltinSegmenter()
    elif name == "totalsegmentator":
        from omnict_cli.segmentation.totalseg import TotalSegmentatorSegmenter

        like = TotalSegmentatorSegmenter(fast="fast" in flags, device="cpu")
    else:
        return None
    segmenter = RecordedSegmenter(like, version)
    return segmenter if segmenter.describe() == " ".join(parts) else None


class OutsideTheRun(Exception):
    """A record's ``input`` that leads outside the folder of its run: refused, never opened."""


def roots_of(record: dict, settings: ImageSettings) -> tuple[Path, ...]:
    """The folders ``record``'s ``input`` may be under: its run's ``root`` (unless ``--studies``), then the settings'."""
    root = record.get("root")
    if settings.record_roots and isinstance(root, str) and Path(root).is_absolute():
        return (Path(root), *settings.study_roots)
    return settings.study_roots


def find_scan(record: dict, roots: tuple[Path, ...]) -> Path | None:
    """The first ``root / input`` that exists, or None; raises :class:`OutsideTheRun` for a path leading out.

    Reads stay inside the folder the run was given: an absolute ``input``, a
    ``..`` step or a symlink resolving outside the root is refused before
    anything is opened (a findings file may come from someone else).
    """
    relative = str(record.get("input") or "")
    if not relative:
        return None
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise OutsideTheRun(f"{relative}: not a path inside the run's folder (absolute or with '..'); not opened")
    for root in roots:
        candidate = Path(root) / relative
        if candidate.exists():
            inside = Path(os.path.realpath(root))
            if not Path(os.path.realpath(candidate)).is_relative_to(inside):
                raise OutsideTheRun(f"{relative}: a symlink leading outside {root}; not opened")
            return candidate
    return None


def _study_at(path: Path, study_id: str):
    """The study at ``path``; a folder with several DICOM series picks the one named like the record."""
    from omnict_cli.errors import StudyLoadError
    from omnict_cli.studies.discover import discover_studies

    studies = discover_studies(path)
    if len(studies) == 1:
        return studies[0]
    wanted = study_id.rsplit("/", 1)[-1]
    named = [study for study in studies if study.study_id.rsplit("/", 1)[-1] == wanted]
    if len(named) == 1:
        return named[0]
    raise StudyLoadError(f"holds {len(studies)} studies and none is named like '{study_id}'", path=path)


def organ_mask(record: dict, volume, settings: ImageSettings, warnings: list[str]) -> np.ndarray | None:
    """The mask of the record's ``organs`` on the volume's grid, from the mask cache; None with a warning."""
    organs = record.get("organs") or []
    if not organs:
        return None  # the model pooled the whole image: nothing to outline, and nothing wrong
    segmenter = recorded_segmenter(record.get("segmenter", ""))
    if segmenter is None:
        warnings.append(
            f"{record.get('input')}: segmenter {record.get('segmenter')!r} is not one omnict knows; "
            "views without the organ outline"
        )
        return None
    from omnict_cli.segmentation.cache import MaskCache
    from omnict_cli.segmentation.organs import organ_label_ids

    cache = MaskCache(settings.cache_dir)
    found = cache.lookup(volume, segmenter)
    if found.warning:
        warnings.append(found.warning)
    if found.labels is None:
        warnings.append(
            f"{record.get('input')}: no organ mask from {segmenter.describe()} in the mask cache "
            f"{cache.root} (another --cache-dir?); views without the organ outline"
        )
        return None
    try:
        ids = organ_label_ids(organs, segmenter.vocabulary)
    except ValueError as error:
        warnings.append(f"{record.get('input')}: {error}; views without the organ outline")
        return None
    return np.isin(found.labels, ids)


def study_images(record: dict, settings: ImageSettings) -> StudyImages:
    """The views of one ok record; problems become warnings (see the module docstring)."""
    from omnict_cli.studies.load import LoadOptions, load_study

    result = StudyImages()
    try:
        scan = find_scan(record, roots_of(record, settings))
    except OutsideTheRun as refused:
        result.warnings.append(str(refused))
        return result
    if scan is None:
        roots = ", ".join(str(root) for root in roots_of(record, settings))
        result.warnings.append(
            f"{record.get('input')}: scan not found under {roots} (give --studies, the "
            "folder the run was given); no images"
        )
        return result
    try:
        # the run already accepted this scan; an MR series it was allowed to read must not fail here
        volume = load_study(_study_at(scan, str(record.get("study_id", ""))), LoadOptions(allow_non_ct=True))
    except OmnictError as error:
        result.warnings.append(f"cannot re-read the scan: {error.one_line()}; no images")
        return result
    except Exception as error:  # a reader crash on one odd file must not stop the page
        result.warnings.append(f"{scan}: cannot re-read the scan ({type(error).__name__}: {error}); no images")
        return result
    mask = organ_mask(record, volume, settings, result.warnings) if volume.intensity == "hu" else None
    windows = CT_WINDOWS if volume.intensity == "hu" else (GREY_VALUES,)
    if volume.kind == "slice":
        result.views = render_slice(volume.voxels, volume.spacing, mask, windows, settings.max_pixels)
    else:
        result.centre = organ_centre(mask, volume.voxels.shape)
        result.views = render_volume(volume.voxels, volume.spacing, mask, windows, settings.max_pixels, result.centre)
    return result
