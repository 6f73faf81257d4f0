"""The loaded-study type, ``Volume``, and the one canonical orientation.

Every reader hands its voxels and a voxel-to-world affine to
:func:`canonicalize`, which flips and transposes them (views, no copy) into
omnict's canonical layout, so the same scan gives the same array whatever
its file says about orientation.

Canonical layout (DESIGN.md): voxels are indexed ``[z, y, x]`` with z from
inferior to superior, y from anterior to posterior and x from the patient's
right to left. In nibabel's axis codes the array axes point to
``("S", "P", "L")``. An axial slice ``voxels[k]`` then shows the way a
radiologist reads it: patient right on the image left, anterior at the top.

Affines here always map array indices (in array axis order) to RAS+ world
millimetres, the NIfTI convention; DICOM and ITK readers convert from LPS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from nibabel import orientations as nio

CANONICAL_AXCODES = ("S", "P", "L")
"""Where the canonical array axes point: z superior, y posterior, x left."""

SLICE_DISPLAY_AXCODES = {
    "axial": ("S", "P", "L"),  # rows anterior->posterior, columns right->left
    "coronal": ("P", "I", "L"),  # rows superior->inferior, columns right->left
    "sagittal": ("L", "I", "P"),  # rows superior->inferior, columns anterior->posterior
}
"""Display layouts of a 2D slice held as a ``(1, H, W)`` array; the first
axis is the one-voxel-thick slice normal."""

_SLICE_ROW_COLUMN_FORMATS = ("dicom", "nrrd", "mha", "mhd")
"""Formats whose arrays are read slice-first, ``[k, j, i]``."""

INTENSITY_HU = "hu"
INTENSITY_DISPLAY = "display"


@dataclass
class Volume:
    """One loaded study: voxels in canonical orientation plus their geometry.

    Attributes:
        voxels: ``[z, y, x]`` array. Hounsfield units when ``intensity`` is
            ``"hu"`` (int16 when the values are whole numbers that fit, else
            float32); grey values in [0, 1] when ``"display"`` (PNG/JPEG
            slices, which carry no HU). A slice has shape ``(1, H, W)``.
            May be a strided view of the file's array (flips and transposes
            are not copied).
        affine: 4x4 map from ``voxels`` indices to RAS+ millimetres.
        kind: ``"volume"`` or ``"slice"``.
        source_format: ``nifti``, ``dicom``, ``nrrd``, ``mha``, ``png``, ...
        source_ornt: nibabel orientation of the array as the file stored it;
            with ``source_shape`` it lets results go back to the file's own
            voxel layout (:meth:`to_source_layout`).
        meta: identifier-free facts about the acquisition (never names,
            ids, dates or institutions).
        warnings: everything repaired or assumed while loading.
    """

    voxels: np.ndarray
    affine: np.ndarray
    kind: str
    source_format: str
    source_ornt: np.ndarray
    source_shape: tuple[int, ...]
    intensity: str = INTENSITY_HU
    meta: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.voxels.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along ``(z, y, x)``, derived from the affine."""
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """Where the array axes point (``("S", "P", "L")`` for volumes)."""
        return nio.aff2axcodes(self.affine)

    @property
    def source_axcodes(self) -> tuple[str, ...]:
        """Orientation found in the file, e.g. ``("R", "A", "S")`` for a RAS NIfTI."""
        return tuple(nio.ornt2axcodes(self.source_ornt))

    @property
    def file_axcodes(self) -> tuple[str, ...]:
        """The file's orientation named in its own index order (i, j, k), fastest axis first.

        NIfTI arrays are read as ``[i, j, k]`` already; DICOM series and ITK
        images (NRRD, MHA) are read as ``[k, j, i]`` (slice, row, column),
        so their codes are reversed: a standard axial DICOM series reads
        ``LPS``, a NRRD saved from a RAS NIfTI ``RAS``, as their tools say.
        """
        codes = self.source_axcodes
        return tuple(reversed(codes)) if self.source_format in _SLICE_ROW_COLUMN_FORMATS else codes

    @property
    def hu(self) -> np.ndarray:
        """The voxels in Hounsfield units; refuses display-only images."""
        if self.intensity != INTENSITY_HU:
            raise ValueError(f"this {self.source_format} image holds display grey values, not HU")
        return self.voxels

    def to_source_layout(self, array: np.ndarray) -> np.ndarray:
        """Put a canonical-grid array (e.g. a label map) back in the file's voxel order."""
        current = nio.io_orientation(self.affine)
        transform = nio.ornt_transform(current, self.source_ornt)
        return nio.apply_orientation(array, transform)


def canonicalize(array: np.ndarray, affine: np.ndarray, target_axcodes=CANONICAL_AXCODES):
    """Flip/transpose a 3D array so its axes point along ``target_axcodes``.

    Returns ``(array, affine)``: the reoriented view and its affine. Oblique
    axes are snapped to the nearest anatomical axis (the affine stays exact).
    """
    source = nio.io_orientation(affine)
    target = nio.axcodes2ornt(target_axcodes)
    transform = nio.ornt_transform(source, target)
    reoriented = nio.apply_orientation(array, transform)
    new_affine = affine @ nio.inv_ornt_aff(transform, array.shape)
    return reoriented, new_affine


def slice_plane(affine: np.ndarray, thin_axis: int) -> str:
    """Name the plane of a one-voxel-thick slice from its normal's direction."""
    world_axis = int(nio.io_orientation(affine)[thin_axis, 0])
    return {0: "sagittal", 1: "coronal", 2: "axial"}[world_axis]


def obliquity_degrees(affine: np.ndarray) -> float:
    """Largest angle between a voxel axis and the nearest anatomical axis."""
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    cosines = np.clip(np.abs(directions).max(axis=0), -1.0, 1.0)
    return float(np.degrees(np.arccos(cosines)).max())


SINGULAR_TOLERANCE = 1e-6
"""Smallest |det| of the affine's unit-length axes for three independent directions."""


def affine_problem(affine) -> str | None:
    """What makes ``affine`` unusable as voxel geometry, or None when it is usable.

    Unusable: not 4x4, NaN or infinite entries, a voxel axis of zero
    length, or axes that do not span space (two parallel axes). Each would
    otherwise surface as a linear-algebra failure deep in reorientation.
    """
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4):
        return f"is {affine.shape}, not 4x4"
    if not np.isfinite(affine).all():
        return "has NaN or infinite entries"
    lengths = np.linalg.norm(affine[:3, :3], axis=0)
    if lengths.min() <= SINGULAR_TOLERANCE:
        axis = int(np.argmin(lengths))
        return f"gives voxel axis {axis} zero length (voxel size 0)"
    if abs(np.linalg.det(affine[:3, :3] / lengths)) < SINGULAR_TOLERANCE:
        return "is singular: two voxel axes point the same way"
    return None


def canonical_affine(spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Affine of an array already in canonical layout (z up, y back, x to the left).

    Used for inputs that carry no geometry (PNG slices, ``.npy`` arrays),
    which are assumed to be laid out as a radiologist views them.
    """
    sz, sy, sx = spacing
    return np.array([[0.0, 0.0, -sx, 0.0], [0.0, -sy, 0.0, 0.0], [sz, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def lps_to_ras(affine_lps: np.ndarray) -> np.ndarray:
    """Convert a voxel-to-LPS affine (DICOM, ITK) into voxel-to-RAS (NIfTI)."""
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
