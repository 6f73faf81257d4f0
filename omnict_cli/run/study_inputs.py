"""One study -> everything the model needs: encoder units, the organ label map on their grid, and what happened.

This is the per-study half of ``omnict report``, ``omnict ask`` and training,
kept apart from the model so it can run in worker processes (it imports no
transformers) while the model works on the previous batch:

1. load and preprocess (:func:`omnict_cli.studies.prepare.load_and_preprocess`),
2. segment through the mask cache (a cached mask costs a file read),
3. put the label map on the preprocessed grid (nearest neighbour).

The organ choice depends on the question, so it is a separate, cheap step
(:func:`organ_selection_for`) run once per question.

A segmentation failure does not fail the study: the model then pools the
whole image (OSE's own fallback) and the record carries a warning saying so.
A study that cannot be loaded raises (``StudyLoadError`` with a one-line
message naming the file); the caller turns that into an error record.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from omnict_cli.errors import OmnictError
from omnict_cli.studies.discover import Study
from omnict_cli.studies.load import LoadOptions
from omnict_cli.studies.prepare import load_and_preprocess
from omnict_cli.studies.preprocess import ModelInput, PreprocessConfig, resample_labels, target_size
from omnict_cli.studies.volume import INTENSITY_HU

log = logging.getLogger(__name__)

NO_SEGMENTER = "none"


@dataclass(frozen=True)
class PrepareSetup:
    """How studies are prepared: the model's preprocessing sizes, the segmenter and its cache.

    ``segmenter=None`` prepares without organ masks (OSE pools the whole image).
    ``mask_cache=None`` segments every time without storing.
    """

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    segmenter: object | None = None
    mask_cache: object | None = None
    load_options: LoadOptions = field(default_factory=LoadOptions)


@dataclass
class PreparedStudy:
    """A study ready for the processor, plus the facts its output record reports.

    Attributes:
        study_id, input, format: from the :class:`Study` (no patient identifiers).
        kind, shape, spacing: of the loaded canonical volume (``[z, y, x]``, mm).
        model_input: encoder units; ``label_map`` is on their grid, or None without masks.
        vocabulary: the segmenter's id -> name map, or None without masks.
        segmenter: ``Segmenter.describe()``, or "none".
        mask_from_cache: the label map came from the mask cache.
        warnings: everything repaired or assumed, loading and segmentation together.
        timing_s: ``{"load": s, "segment": s}`` (load includes preprocessing).
        skip_reason: why the study is not sent to the model (a label map), or None.
    """

    study_id: str
    input: str
    format: str
    kind: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    model_input: ModelInput
    vocabulary: dict | None = None
    segmenter: str = NO_SEGMENTER
    mask_from_cache: bool = False
    warnings: list[str] = field(default_factory=list)
    timing_s: dict = field(default_factory=dict)
    skip_reason: str | None = None
    """Set when the input is not a scan to report on (a label map beside the scans)."""


def prepare_study(study: Study, setup: PrepareSetup) -> PreparedStudy:
    """Load, preprocess and segment ``study``; raises OmnictError when it cannot be loaded."""
    started = time.perf_counter()
    volume, model_input = load_and_preprocess(study, setup.preprocess, setup.load_options)
    loaded = time.perf_counter()
    prepared = PreparedStudy(
        study_id=study.study_id,
        input=study.input,
        format=study.format,
        kind=volume.kind,
        shape=volume.shape,
        spacing=tuple(round(s, 4) for s in volume.spacing),
        model_input=model_input,
        warnings=list(dict.fromkeys(list(study.notes) + list(volume.warnings))),
    )
    if is_label_map(volume):
        prepared.skip_reason = (
            f"{study.input}: integer ids, mostly 0: a label map (segmentation output), not a CT scan; not reported"
        )
    elif setup.segmenter is not None:
        _add_organ_labels(prepared, volume, setup)
    prepared.timing_s = {"load": round(loaded - started, 3), "segment": round(time.perf_counter() - loaded, 3)}
    return prepared


def is_label_map(volume) -> bool:
    """A segmentation saved beside its scan (the loader's own label-map rule), not CT to report on.

    Segmentation outputs often sit in the folder of scans (the phantom sets
    ``omnict demo-data`` writes keep them in ``labels/``); reporting on them would
    be noise, so they become "skipped" records instead of reports.
    """
    from omnict_cli.studies.load import looks_like_label_map

    return volume.intensity == INTENSITY_HU and looks_like_label_map(volume.voxels)


def _add_organ_labels(prepared: PreparedStudy, volume, setup: PrepareSetup) -> None:
    """Segment (cache first) and put the label map on the model grid; failures become warnings."""
    segmenter = setup.segmenter
    if volume.intensity != INTENSITY_HU:
        prepared.warnings.append(
            f"a {volume.source_format} picture holds grey values, not HU: not segmented, "
            "the whole image is pooled for the organ tokens"
        )
        return
    try:
        if setup.mask_cache is not None:
            labels, cached, cache_warnings = setup.mask_cache.get_or_compute(volume, segmenter)
            prepared.warnings.extend(cache_warnings)
        else:
            from omnict_cli.segmentation.base import check_label_map

            labels, cached = check_label_map(segmenter.segment(volume), volume, segmenter), False
    except OmnictError as error:
        prepared.warnings.append(
            f"segmentation failed ({error.one_line()}): the whole image is pooled for the organ tokens"
        )
        return
    except Exception as error:  # a segmenter crash on one odd study must not cost its report
        log.debug("segmenting %s failed", prepared.study_id, exc_info=True)
        prepared.warnings.append(
            f"segmentation failed ({type(error).__name__}: {error}): the whole image is pooled for the organ tokens"
        )
        return
    prepared.model_input.label_map = resample_labels(labels, target_size(volume, setup.preprocess))
    prepared.vocabulary = dict(segmenter.vocabulary)
    prepared.segmenter = segmenter.describe()
    prepared.mask_from_cache = bool(cached)


def organ_selection_for(prepared: PreparedStudy, task: str, question: str | None = None, override: str | None = None):
    """The organs OSE pools for this task/question (``OrganSelection``; ``mask=None``: whole image).

    Without a label map (no segmenter, a grey-value picture, a failed
    segmentation) the whole image is pooled and the reason says why.
    """
    from omnict_cli.segmentation.organ_selection import OrganSelection, select_organs

    label_map = prepared.model_input.label_map
    if label_map is None or prepared.vocabulary is None:
        return OrganSelection(
            (), (), None, "no organ label map for this study: the whole image is pooled", fallback=True
        )
    return select_organs(
        label_map, prepared.vocabulary, task, question=question, override=override, segmenter=prepared.segmenter
    )
