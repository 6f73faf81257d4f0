"""From a canonical volume and an organ mask to small PNG views: which slices, which windows, what outline.

Why a module of its own: this is the pixel half of ``omnict review`` and the
one part a test can check against a label map voxel by voxel, so it knows
nothing of records, files or HTML.

Orientation (``shared/DESIGN.md``): voxels are ``[z, y, x]`` with z inferior
-> superior, y anterior -> posterior, x patient right -> left. Views follow
the radiological convention: the patient's right is on the image's left in
axial and coronal views, anterior at the top of an axial view and on the left
of a sagittal one, and superior at the top of coronal and sagittal views (the
z axis is flipped for them). Every view is resized so one pixel covers the
same millimetres across and down, so a 5 mm-slice scan does not look squashed.

PNG size matters (a 1,000-study page must stay under 100 MB), so views are
palette PNGs: 64 grey levels plus, for the outline, the same 64 greys
blended with the outline colour (a translucent line that keeps the anatomy
under it visible).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np

OUTLINE_RGB = (255, 40, 40)
"""The organ outline colour; grey pixels never have red far above blue, so tests and eyes can find it."""
OUTLINE_ALPHA = 0.7
GREY_LEVELS = 64
"""Grey levels per window: 23 HU a step in the lung window, 6 HU in soft tissue; 128 made pages ~30% larger."""
DEFAULT_MAX_PIXELS = 160
"""Longest side of a view in pixels (``--thumbnail-size``)."""


@dataclass(frozen=True)
class Window:
    """A CT display window: ``centre`` and ``width`` in HU."""

    name: str
    centre: float
    width: float


LUNG_WINDOW = Window("lung", -600.0, 1500.0)
SOFT_TISSUE_WINDOW = Window("soft tissue", 40.0, 400.0)
CT_WINDOWS = (LUNG_WINDOW, SOFT_TISSUE_WINDOW)
GREY_VALUES = Window("grey", 0.5, 1.0)
"""For pictures (PNG/JPEG slices) that hold grey values in [0, 1], not HU."""


@dataclass(frozen=True)
class Plane:
    """One 2D cut of a volume as shown: ``pixels`` rows top to bottom, and the mm per row and per column."""

    name: str
    pixels: np.ndarray
    mask: np.ndarray | None
    row_mm: float
    column_mm: float


@dataclass(frozen=True)
class View:
    """One encoded view: plane, window, the PNG bytes and its size in pixels."""

    plane: str
    window: str
    png: bytes
    width: int
    height: int

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def organ_centre(mask: np.ndarray | None, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The ``(z, y, x)`` voxel the three views cut through: the middle of the organ.

    Per axis, the organ's centre of mass; when the slice there holds less
    than half of the organ's largest cross-section along that axis (a paired
    organ: the middle of the two lungs is the mediastinum), the largest
    cross-section nearest to it instead, so every view shows the organ.
    No mask or an empty one: the middle of the volume.
    """
    if mask is None or not mask.any():
        return tuple(n // 2 for n in shape)
    centre = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        areas = mask.sum(axis=other)
        middle = int(round(float((areas * np.arange(len(areas))).sum() / areas.sum())))
        if areas[middle] < areas.max() / 2:
            candidates = np.flatnonzero(areas >= areas.max() / 2)
            middle = int(candidates[np.argmin(np.abs(candidates - middle))])
        centre.append(middle)
    return tuple(centre)


def volume_planes(
    voxels: np.ndarray, spacing: tuple[float, float, float], mask: np.ndarray | None, centre: tuple[int, int, int]
) -> list[Plane]:
    """Axial, coronal and sagittal cuts through ``centre``, oriented for display (see module docstring)."""
    z, y, x = centre
    sz, sy, sx = spacing

    def cut(index):
        return None if mask is None else mask[index]

    axial = (np.s_[z, :, :], sy, sx, False)
    coronal = (np.s_[:, y, :], sz, sx, True)
    sagittal = (np.s_[:, :, x], sz, sy, True)
    planes = []
    for name, (index, row_mm, column_mm, superior_up) in (
        ("axial", axial),
        ("coronal", coronal),
        ("sagittal", sagittal),
    ):
        pixels, plane_mask = voxels[index], cut(index)
        if superior_up:  # rows run inferior -> superior in the array; the top of the picture is superior
            pixels = pixels[::-1]
            plane_mask = None if plane_mask is None else plane_mask[::-1]
        planes.append(Plane(name, pixels, plane_mask, float(row_mm), float(column_mm)))
    return planes


def display_size(plane: Plane, max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` with square pixels in mm and the longest side ``max_pixels``."""
    rows, columns = plane.pixels.shape
    height_mm, width_mm = rows * plane.row_mm, columns * plane.column_mm
    scale = max_pixels / max(height_mm, width_mm)
    return max(1, int(round(width_mm * scale))), max(1, int(round(height_mm * scale)))


def window_grey(pixels: np.ndarray, window: Window) -> np.ndarray:
    """Values through ``window`` as grey levels 0..GREY_LEVELS-1 (uint8)."""
    low = window.centre - window.width / 2
    scaled = (np.asarray(pixels, dtype=np.float32) - low) / window.width
    return np.clip(np.floor(scaled * GREY_LEVELS), 0, GREY_LEVELS - 1).astype(np.uint8)


def outline(mask: np.ndarray) -> np.ndarray:
    """The mask's edge pixels: inside the mask with a 4-neighbour outside it (or on the picture's border)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """For each of ``n_out`` output pixels, the input pixel whose area holds its centre."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.intp), n_in - 1)


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A 2D mask at ``height x width`` by nearest neighbour (labels are never interpolated)."""
    return mask[np.ix_(nearest_indices(mask.shape[0], height), nearest_indices(mask.shape[1], width))]


def _palette() -> list[int]:
    """Indices 0..63 plain greys, 64..127 the same greys under the translucent outline colour."""
    palette = []
    for outlined in (False, True):
        for level in range(GREY_LEVELS):
            grey = round(level * 255 / (GREY_LEVELS - 1))
            for channel in OUTLINE_RGB:
                palette.append(round(OUTLINE_ALPHA * channel + (1 - OUTLINE_ALPHA) * grey) if outlined else grey)
    return palette


_PALETTE = _palette()


def render_view(plane: Plane, window: Window, max_pixels: int) -> View:
    """Window, resize (bilinear for the image, :func:`resize_nearest` for the mask), outline, encode a palette PNG."""
    from PIL import Image

    width, height = display_size(plane, max_pixels)
    grey = Image.fromarray(window_grey(plane.pixels, window), mode="L").resize((width, height), Image.BILINEAR)
    indices = np.asarray(grey, dtype=np.uint8).copy()
    if plane.mask is not None and plane.mask.any():
        indices[outline(resize_nearest(plane.mask, height, width))] += GREY_LEVELS
    image = Image.fromarray(indices, mode="P")
    image.putpalette(_PALETTE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return View(plane.name, window.name, buffer.getvalue(), width, height)


def render_volume(
    voxels: np.ndarray,
    spacing,
    mask: np.ndarray | None,
    windows=CT_WINDOWS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    centre: tuple[int, int, int] | None = None,
) -> list[View]:
    """Every plane in every window, planes first (axial lung, axial soft tissue, coronal lung, ...).

    The planes cut through ``centre`` (default: :func:`organ_centre`).
    """
    centre = organ_centre(mask, voxels.shape) if centre is None else centre
    planes = volume_planes(voxels, tuple(spacing), mask, centre)
    return [render_view(plane, window, max_pixels) for plane in planes for window in windows]


def render_slice(
    voxels: np.ndarray, spacing, mask: np.ndarray | None, windows, max_pixels: int = DEFAULT_MAX_PIXELS
) -> list[View]:
    """A 2D study (shape ``(1, H, W)``): its one picture in each window, outlined when there is a mask."""
    plane = Plane("slice", voxels[0], None if mask is None else mask[0], float(spacing[1]), float(spacing[2]))
    return [render_view(plane, window, max_pixels) for window in windows]
