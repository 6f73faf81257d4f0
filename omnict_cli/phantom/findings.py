"""What was drawn into a phantom, in the words reports and questions need.

The drawing code (``abnormalities``) returns :class:`Finding` records; the
text code (``reports``) only reads them, so the image, the label vector,
the report and the QA pairs all come from one source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from omnict_cli.labels import CTRATE_ABNORMALITIES
from omnict_cli.segmentation.organ_groups import ORGAN_GROUPS


@dataclass(frozen=True)
class Finding:
    """One abnormality drawn into a phantom.

    Attributes:
        label: a CT-RATE class name, exactly as in ``CTRATE_ABNORMALITIES``.
        organ: the organ group a question about it is routed to (one of the paper's 13,
            ``omnict_cli.segmentation.organ_groups.ORGAN_GROUPS``).
        side: ``"right"``, ``"left"``, ``"bilateral"`` or None (midline/not lateral).
        location: anatomical place in words, e.g. ``"right upper lobe"``,
            ``"aortic arch"``, ``"pericardium"``, ``"lower oesophagus"``.
        size_mm: longest diameter (or thickness for effusions) in mm, when meaningful.
        count: how many (nodules, enlarged nodes, ...).
        severity: ``"mild"``, ``"moderate"``, ``"severe"`` or None.
        centre_zyx: canonical voxel index of the finding's centre (for 2D slices and QA).
    """

    label: str
    organ: str
    side: str | None = None
    location: str | None = None
    size_mm: float | None = None
    count: int = 1
    severity: str | None = None
    centre_zyx: tuple[int, int, int] | None = None
    details: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.label not in CTRATE_ABNORMALITIES:
            raise ValueError(f"unknown CT-RATE class {self.label!r}")
        if self.organ not in ORGAN_GROUPS:
            raise ValueError(f"unknown organ group {self.organ!r}; expected one of {ORGAN_GROUPS}")
        if self.side not in (None, "right", "left", "bilateral"):
            raise ValueError(f"side must be right, left, bilateral or None, got {self.side!r}")


def label_vector(findings) -> dict[str, int]:
    """The 18-class 0/1 vector (CT-RATE order) of a list of findings."""
    present = {finding.label for finding in findings}
    return {name: int(name in present) for name in CTRATE_ABNORMALITIES}


def slices_showing(finding: Finding) -> set[int] | None:
    """Axial slice indices on which ``finding`` changed at least one voxel; None if unknown."""
    box, footprint = finding.details.get("bbox_zyx"), finding.details.get("footprint")
    if box is None or footprint is None:
        return None
    return {box[0] + int(z) for z in np.flatnonzero(footprint.any(axis=(1, 2)))}
