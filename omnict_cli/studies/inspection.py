"""Summaries of discovered studies for ``omnict inspect`` (and scripts).

Loads each study the way every other command will, and reports what was
found: shape, spacing, the orientation the file declared, the HU range,
and any warning or error. A bad study becomes a summary with status
``error``; it never stops the walk.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np

from omnict_cli.errors import OmnictError
from omnict_cli.studies.discover import Study
from omnict_cli.studies.load import LoadOptions, load_study

log = logging.getLogger(__name__)


@dataclass
class StudySummary:
    """One row of ``omnict inspect``; ``asdict`` gives the ``--json`` form."""

    study_id: str
    input: str
    format: str
    status: str  # ok | warning | error
    kind: str | None = None
    shape: list[int] | None = None
    spacing: list[float] | None = None
    orientation: str | None = None
    hu_range: list[float] | None = None
    intensity: str | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def summarize_study(study: Study, options: LoadOptions = LoadOptions()) -> StudySummary:
    """Load one study and describe it; never raises for a bad input."""
    summary = StudySummary(study_id=study.study_id, input=study.input, format=study.format, status="ok")
    try:
        volume = load_study(study, options)
    except OmnictError as error:
        summary.status, summary.error = "error", error.one_line()
        return summary
    except Exception as error:  # a bug or an exotic file: report it, keep walking
        log.debug("unexpected error loading %s", study.study_id, exc_info=True)
        summary.status = "error"
        summary.error = f"{study.input}: unexpected {type(error).__name__}: {error} (please report this)"
        return summary
    summary.kind = volume.kind
    summary.shape = list(volume.shape)
    summary.spacing = [round(s, 4) for s in volume.spacing]
    summary.orientation = "".join(volume.file_axcodes)
    summary.hu_range = [float(np.min(volume.voxels)), float(np.max(volume.voxels))]
    summary.intensity = volume.intensity
    summary.warnings = list(volume.warnings)
    if summary.warnings:
        summary.status = "warning"
    return summary
