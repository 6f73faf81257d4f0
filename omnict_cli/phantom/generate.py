"""One phantom case from a seed: anatomy, abnormalities, image finish, report and QA.

Each case draws from its own random stream, ``default_rng([seed, index])``,
so case 7 of seed 0 is the same whether 10 or 10,000 cases are generated,
and a set can be extended or regenerated piecemeal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from omnict_cli.errors import OmnictError
from omnict_cli.phantom.abnormalities import draw_abnormalities
from omnict_cli.phantom.anatomy import draw_anatomy, finish_image
from omnict_cli.phantom.findings import Finding, label_vector, slices_showing
from omnict_cli.phantom.reports import QAPair, Report, make_qa, write_report

REALISTIC_SIZE = (300, 512, 512)
REALISTIC_SPACING = (1.5, 0.7, 0.7)

MAX_VOXELS = 2**28
"""Largest volume generated (268 million voxels, e.g. 1024x512x512): drawing holds several float32
copies of it, so 2^28 voxels already take about 4 GiB while it runs."""

SPACING_RANGE_MM = (0.1, 20.0)
"""Voxel sizes a phantom is drawn at: from finer than any clinical CT to a very coarse 20 mm."""

FIELD_OF_VIEW_RANGE_MM = (60.0, 1000.0)
"""Size x spacing along each axis: the chest is scaled into the field of view, so it must be at least
a few centimetres wide, and not wider than any scanner's bore."""


class PhantomError(OmnictError):
    """A phantom case cannot be drawn with these settings."""


@dataclass(frozen=True)
class PhantomConfig:
    """What a generated set looks like.

    Attributes:
        size: ``(D, H, W)`` voxels of every volume (canonical ``[z, y, x]``).
        spacing: ``(sz, sy, sx)`` mm; size x spacing is the field of view.
        noise_hu: standard deviation of the image noise.
        blur_mm: partial-volume blur (Gaussian sigma).
        prevalence: per CT-RATE class probability; None uses the defaults
            of ``omnict_cli.phantom.abnormalities``.
    """

    size: tuple[int, int, int] = (64, 256, 256)
    spacing: tuple[float, float, float] = (5.0, 1.4, 1.4)
    noise_hu: float = 12.0
    blur_mm: float = 0.8
    prevalence: dict | None = None

    def __post_init__(self):
        if len(self.size) != 3 or min(self.size) < 8:
            raise ValueError(f"size must be three sizes of at least 8 voxels, got {self.size}")
        voxels = int(np.prod(self.size, dtype=np.int64))
        if voxels > MAX_VOXELS:
            raise ValueError(
                f"size {'x'.join(map(str, self.size))} is {voxels:,} voxels, over the "
                f"{MAX_VOXELS:,} a phantom may have (--realistic is {np.prod(REALISTIC_SIZE):,})"
            )
        low, high = SPACING_RANGE_MM
        if len(self.spacing) != 3 or not all(low <= s <= high for s in self.spacing):
            raise ValueError(f"spacing must be three voxel sizes from {low:g} to {high:g} mm, got {self.spacing}")
        field = [n * s for n, s in zip(self.size, self.spacing)]
        low, high = FIELD_OF_VIEW_RANGE_MM
        if not all(low <= f <= high for f in field):
            shown = " x ".join(f"{f:g}" for f in field)
            raise ValueError(
                f"size x spacing gives a {shown} mm field of view; each side must be from {low:g} to "
                f"{high:g} mm to hold a chest"
            )


@dataclass
class PhantomCase:
    """One generated study and everything known about it."""

    case_id: str
    hu: np.ndarray  # int16 [z, y, x], noise and blur applied
    labels: np.ndarray  # uint8 [z, y, x], TotalSegmentator ids
    spacing: tuple[float, float, float]
    findings: list[Finding]
    report: Report
    qa: list[QAPair] = field(default_factory=list)

    @property
    def label_vector(self) -> dict[str, int]:
        return label_vector(self.findings)


def case_id(index: int) -> str:
    return f"case_{index:04d}"


def generate_case(
    seed: int, index: int, config: PhantomConfig = PhantomConfig(), force: tuple[str, ...] = ()
) -> PhantomCase:
    """Generate case ``index`` of the set with ``seed`` (deterministic).

    Raises PhantomError for a seed or index below 0, and when a finding
    cannot be drawn on this grid (structures smaller than a voxel on very
    coarse grids): the message says which case and what to change.
    """
    if seed < 0 or index < 0:
        raise PhantomError(
            f"seed and case number must be 0 or more, got seed {seed} and case {index}",
            hint="Use --seed with a whole number from 0",
        )
    try:
        return _generate_case(seed, index, config, force)
    except (ValueError, TypeError, IndexError) as error:  # numpy on an empty region: a finding smaller than a voxel
        raise PhantomError(
            f"case {index} of seed {seed} cannot be drawn at {'x'.join(map(str, config.size))} "
            f"voxels of {'x'.join(f'{s:g}' for s in config.spacing)} mm ({type(error).__name__}: "
            f"{error})",
            hint="Use smaller voxels (--spacing) or more of them (--size)",
        ) from error


def _generate_case(seed: int, index: int, config: PhantomConfig, force: tuple[str, ...]) -> PhantomCase:
    rng = np.random.default_rng([seed, index])
    anatomy = draw_anatomy(rng, size=config.size, spacing=config.spacing)
    findings = draw_abnormalities(rng, anatomy, config.prevalence, force=force)
    hu = finish_image(rng, anatomy.hu, anatomy.spacing, noise_hu=config.noise_hu, blur_mm=config.blur_mm)
    report = write_report(findings, rng)
    qa = make_qa(findings, rng, modality="3d")
    return PhantomCase(
        case_id=case_id(index),
        hu=hu,
        labels=anatomy.labels,
        spacing=tuple(anatomy.spacing),
        findings=findings,
        report=report,
        qa=qa,
    )


def slice_through_finding(case: PhantomCase) -> tuple[int, list[Finding]] | None:
    """The axial slice through the first finding with a known centre, and the findings on it.

    A finding is on the slice when the drawing changed a voxel of it (its
    ``footprint``), wherever its centre is: the edge of an effusion or a
    second nodule shows on the slice too. A finding without a footprint
    (made by hand) counts when its centre lies within one slice. 2D
    questions are asked only about the findings on the slice.
    """
    centred = [f for f in case.findings if f.centre_zyx is not None]
    if not centred:
        return None
    z = int(centred[0].centre_zyx[0])
    return z, [f for f in case.findings if _shows_on_slice(f, z)]


def _shows_on_slice(finding: Finding, z: int) -> bool:
    showing = slices_showing(finding)
    if showing is not None:
        return z in showing
    return finding.centre_zyx is not None and abs(int(finding.centre_zyx[0]) - z) <= 1


def slice_qa(case: PhantomCase, on_slice: list[Finding], rng: np.random.Generator) -> list[QAPair]:
    """QA for a 2D slice: never asks about a class present in the volume but off this slice."""
    present_elsewhere = {f.label for f in case.findings} - {f.label for f in on_slice}
    return [pair for pair in make_qa(on_slice, rng, modality="2d") if pair.label not in present_elsewhere]
