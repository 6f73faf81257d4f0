"""The built-in organ segmenter: HU thresholds, connected components and morphology.

OSE's organ-level token aggregation needs a label map for every study. When
TotalSegmentator's weights are not installed, this segmenter still gives the
coarse regions that HU alone can find reliably (body, left and right lung,
trachea with main bronchi, bone, mediastinum) with no download, in seconds on
a CPU, also on small-field-of-view scans whose lungs touch the image edge.
The steps, the exact meaning of each class, its limits and measured Dice
scores are in ``docs/segmentation-builtin.md``.

Decisions (components, hole filling, the left/right split, airway tracking)
are made on a coarse working grid of about 3 mm voxel blocks, which keeps
a 300x512x512 scan to a few seconds; region edges are then re-decided on the
full grid by the HU threshold, so boundaries keep full resolution. All
distances are in millimetres via ``volume.spacing``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from omnict_cli.errors import OmnictError
from omnict_cli.segmentation.base import LABEL_DTYPE, Segmenter
from omnict_cli.segmentation.classes import BUILTIN_EXTRA_IDS, TOTALSEG_TOTAL_IDS
from omnict_cli.studies.volume import CANONICAL_AXCODES, INTENSITY_HU

TRACHEA = TOTALSEG_TOTAL_IDS["trachea"]
BODY = BUILTIN_EXTRA_IDS["body"]
LUNG_LEFT = BUILTIN_EXTRA_IDS["lung_left"]
LUNG_RIGHT = BUILTIN_EXTRA_IDS["lung_right"]
BONE = BUILTIN_EXTRA_IDS["bone"]
MEDIASTINUM = BUILTIN_EXTRA_IDS["mediastinum"]

BODY_HU = -500.0
"""Above: patient tissue (fat is about -100); below: air, lung or foam padding."""
LUNG_AIR_HU = -400.0
"""Below: air or aerated lung; the lung and airway boundary threshold."""
GAS_HU = -950.0
"""Below: pure gas (airway lumen, bowel gas); lung parenchyma is about -850."""
BONE_HU = 150.0
"""Above, inside the body: bone (and contrast-filled vessels, see the docs)."""
OUTSIDE_AIR_HU = -940.0
"""Below: outside air (-1000) and foam pads (about -955); lung parenchyma is mostly above, even in deep
inspiration (a typical lung is about -850 to -880)."""
OUTSIDE_AIR_EDGE_SHARE = 0.5
"""A non-tissue region reaching the image edge is outside air when at least this share of its
edge voxels is below OUTSIDE_AIR_HU; otherwise it is patient cut by a small field of view (lung)."""

WORK_GRID_MM = 3.0
"""Largest edge of the coarse blocks that components and morphology work on."""
TABLE_GAP_MM = 5.0
"""Radius of the in-plane opening that cuts the CT table and thin bridges off the body."""
BODY_PART_SHARE = 0.02
"""A separate tissue part (an arm) stays body when it has this share of the trunk's volume."""
MIN_LUNG_ML = 20.0
"""Smallest air component that may be a lung (volumes)."""
MIN_LUNG_AREA_MM2 = 500.0
"""Smallest air region that may be a lung (single slices)."""
MAX_LUNG_GAS_FRACTION = 0.5
"""Lung parenchyma is mostly above GAS_HU; bowel and stomach gas is mostly below."""
SIDE_SHARE = 0.85
"""A lung component with this share of its voxels on one side of the midline belongs to that side."""
AIRWAY_SEED_AREA_MM2 = (40.0, 600.0)
"""Cross-section range of the trachea where tracking starts."""
AIRWAY_MAX_AREA_MM2 = 600.0
"""A gas region larger than this in a slice is not airway (e.g. a bulla): tracking skips it."""
AIRWAY_MIDLINE_MM = 30.0
"""The trachea seed lies within this distance of the body's midline."""
AIRWAY_SEED_SEARCH_MM = 30.0
"""The trachea seed is looked for in this many mm below the top of the scan."""
BRONCHI_LENGTH_MM = 40.0
"""Airway tracking continues this far below the carina (main bronchi, like TotalSegmentator's trachea)."""
MEDIASTINUM_LUNG_SHARE = 0.15
"""Slices whose lungs fill less of the body than this are lung bases or apices: no mediastinum."""
SPINE_WINDOW_MM = 15.0
"""Half-width of the midline strip searched for the vertebral body (mediastinum's back wall)."""


class SegmentationInputError(OmnictError, ValueError):
    """The image cannot be segmented by the built-in segmenter (e.g. it carries no HU)."""


class BuiltinSegmenter(Segmenter):
    """Coarse organ label map from HU thresholds, for use without TotalSegmentator weights.

    ``version`` changes whenever any output voxel can change (a threshold,
    a step, the grid), so masks cached by an older version are not reused.
    """

    name = "builtin"
    version = "2"

    @property
    def vocabulary(self) -> dict[int, str]:
        """Trachea keeps TotalSegmentator's id (16); the coarse classes use the built-in ids 200-204."""
        return {
            TRACHEA: "trachea",
            BODY: "body",
            LUNG_LEFT: "lung_left",
            LUNG_RIGHT: "lung_right",
            BONE: "bone",
            MEDIASTINUM: "mediastinum",
        }

    def segment(self, volume) -> np.ndarray:
        """Label map in ``volume``'s canonical layout; see the module docs for the classes.

        Raises SegmentationInputError for display-intensity images (PNG,
        JPEG), which carry no Hounsfield units to threshold.
        """
        if volume.intensity != INTENSITY_HU:
            raise SegmentationInputError(
                f"the built-in segmenter needs Hounsfield units, but this {volume.source_format} image "
                "holds display grey values",
                hint="segment the CT as DICOM, NIfTI, NRRD or MHA instead",
            )
        hu = volume.voxels
        grid = WorkGrid.for_shape(hu.shape, volume.spacing)
        regions = find_regions(grid.block_mean(hu), grid.spacing, axial=tuple(volume.axcodes) == CANONICAL_AXCODES)
        return paint_labels(hu, grid, regions)


@dataclass(frozen=True)
class WorkGrid:
    """A coarse grid of whole voxel blocks; maps images down (block mean) and masks up (nearest)."""

    full_shape: tuple[int, int, int]
    full_spacing: tuple[float, float, float]
    factors: tuple[int, int, int]

    @classmethod
    def for_shape(cls, shape, spacing) -> WorkGrid:
        """Blocks as large as fit in WORK_GRID_MM along each axis (1 voxel where voxels are coarser)."""
        factors = tuple(max(1, min(int(n), int(WORK_GRID_MM // s))) for n, s in zip(shape, spacing))
        return cls(tuple(int(n) for n in shape), tuple(float(s) for s in spacing), factors)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Blocks along (z, y, x); remainder voxels at the far edges do not make a block."""
        return tuple(n // f for n, f in zip(self.full_shape, self.factors))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Block size in mm along (z, y, x)."""
        return tuple(s * f for s, f in zip(self.full_spacing, self.factors))

    def block_mean(self, image: np.ndarray) -> np.ndarray:
        """Mean of each block (float32); the remainder voxels at the far edges are left out."""
        (dz, dy, dx), (fz, fy, fx) = self.shape, self.factors
        blocks = image[: dz * fz, : dy * fy, : dx * fx].reshape(dz, fz, dy, fy, dx, fx)
        return blocks.mean(axis=(1, 3, 5), dtype=np.float32)

    def upsample(self, mask: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray]:
        """A coarse mask on the full grid, as ``(box, mask_in_box)`` around its voxels.

        Nearest neighbour: each block is repeated; the remainder voxels at
        the far edges copy their neighbouring block. Working in the box keeps
        small structures cheap on a large grid.
        """
        box = _bounding_box(mask)
        full_box = self._full_box(box)
        return full_box, self._repeat_blocks(mask[box], full_box)

    def refine(self, mask: np.ndarray, hu: np.ndarray, keep) -> tuple[tuple[slice, ...], np.ndarray]:
        """Like :meth:`upsample`, but the one-block band at the mask's edge is re-decided by ``keep(hu)``.

        The interior keeps what the coarse steps filled in (vessels inside a
        lung); the band gets full-resolution boundaries from the threshold.
        ``keep`` maps an HU crop to a boolean crop.
        """
        grown = ndi.binary_dilation(mask)
        box = _bounding_box(grown)
        interior = ndi.binary_erosion(mask[box], border_value=1)
        band = grown[box] & ~interior
        full_box = self._full_box(box)
        refined = self._repeat_blocks(interior, full_box) | (self._repeat_blocks(band, full_box) & keep(hu[full_box]))
        return full_box, refined

    def _full_box(self, box) -> tuple[slice, ...]:
        """The full-grid voxels of a box of blocks (up to the far edge when the box reaches it)."""
        return tuple(
            slice(edge.start * f, full if edge.stop == n else edge.stop * f)
            for edge, f, n, full in zip(box, self.factors, self.shape, self.full_shape)
        )

    def _repeat_blocks(self, mask: np.ndarray, full_box) -> np.ndarray:
        """Blocks of a coarse crop repeated to fill ``full_box`` (its far edge padded by copying)."""
        full = mask
        for axis, factor in enumerate(self.factors):
            if factor > 1:
                full = np.repeat(full, factor, axis=axis)
        missing = [(0, edge.stop - edge.start - n) for edge, n in zip(full_box, full.shape)]
        return np.pad(full, missing, mode="edge") if any(pad for _, pad in missing) else full


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Smallest box holding the mask's voxels (an empty box when there are none)."""
    boxes = ndi.find_objects(mask.astype(np.uint8))
    return boxes[0] if boxes else (slice(0, 0),) * mask.ndim


@dataclass
class Regions:
    """Coarse-grid masks of each structure (all boolean, the work grid's shape)."""

    body: np.ndarray
    lung_right: np.ndarray
    lung_left: np.ndarray
    airway: np.ndarray
    mediastinum: np.ndarray


def find_regions(coarse_hu: np.ndarray, spacing, axial: bool) -> Regions:
    """Decide every structure on the coarse grid.

    Non-axial single slices (coronal, sagittal) get the body only here
    (bone is added on the full grid): airway tracking, the left/right split
    and the mediastinum rows all assume axial slices.
    """
    empty = np.zeros(coarse_hu.shape, dtype=bool)
    body = body_mask(coarse_hu, spacing, axial)
    if not axial or not body.any():
        return Regions(body, empty, empty.copy(), empty.copy(), empty.copy())
    midline_x = ndi.center_of_mass(body)[2]
    candidates = lung_candidates(coarse_hu, body, spacing)
    airway = track_airway((coarse_hu < GAS_HU) & body, candidates, spacing, midline_x)
    airway = ndi.binary_dilation(airway, _in_plane(1)) & (coarse_hu < LUNG_AIR_HU)
    right, left = split_left_right(candidates & ~airway, spacing, midline_x)
    right, left = fill_holes_in_plane(right), fill_holes_in_plane(left)
    left &= ~right
    bone = (coarse_hu > BONE_HU) & body
    mediastinum = mediastinum_mask(right, left, body, bone, spacing, midline_x) & ~airway
    return Regions(body, right, left, airway, mediastinum)


def paint_labels(hu: np.ndarray, grid: WorkGrid, regions: Regions) -> np.ndarray:
    """Full-grid label map; later structures win where regions overlap."""
    labels = np.zeros(grid.full_shape, dtype=LABEL_DTYPE)
    _paint(labels, grid.refine(regions.body, hu, lambda crop: crop > BODY_HU), BODY)
    _paint(labels, grid.upsample(regions.mediastinum), MEDIASTINUM)
    # Bone only one block or more inside the skin: a table touching the back is often as dense as bone.
    core_box, core = grid.upsample(ndi.binary_erosion(regions.body, border_value=1))
    _paint(labels, (core_box, core & (hu[core_box] > BONE_HU)), BONE)
    _paint(labels, grid.refine(regions.lung_right, hu, _is_air), LUNG_RIGHT)
    _paint(labels, grid.refine(regions.lung_left, hu, _is_air), LUNG_LEFT)
    airway_box, airway = grid.upsample(regions.airway)
    _paint(labels, (airway_box, airway & _is_air(hu[airway_box])), TRACHEA)
    return labels


def _paint(labels: np.ndarray, region, value: int) -> None:
    """Write ``value`` where a ``(box, mask_in_box)`` region is set."""
    box, mask = region
    labels[box][mask] = value


def _is_air(hu: np.ndarray) -> np.ndarray:
    """Full-grid test for the lung and airway boundary."""
    return hu < LUNG_AIR_HU


def body_mask(coarse_hu: np.ndarray, spacing, axial: bool) -> np.ndarray:
    """The patient: tissue parts after cutting thin bridges, minus the table, plus all but outside air.

    The in-plane opening cuts the table (thin plates, often just touching
    the back) off the trunk. Besides the trunk, large separate parts (arms)
    stay, unless their centre lies behind the trunk's back, where the table is.
    Then every slice takes in what :func:`outside_air` leaves: enclosed
    lungs and bowel, and lungs a small field of view cuts at the image edge.
    """
    tissue = coarse_hu > BODY_HU
    disc = _disc(TABLE_GAP_MM, spacing)
    parts, count = ndi.label(ndi.binary_opening(tissue, disc))
    if count == 0:
        return np.zeros_like(tissue)
    sizes = np.bincount(parts.ravel())
    sizes[0] = 0
    trunk = int(sizes.argmax())
    keep = [trunk]
    if axial:
        back_row = np.nonzero((parts == trunk).any(axis=(0, 2)))[0].max()
        for part in np.flatnonzero(sizes >= BODY_PART_SHARE * sizes[trunk]):
            if part != trunk and ndi.center_of_mass(parts == part)[1] < back_row:
                keep.append(int(part))
    # No dilation back to the tissue: it would regrow a touching table. The
    # refine step on the full grid restores the skin edge within one block.
    trunk_and_arms = np.isin(parts, keep)
    return trunk_and_arms | ~outside_air(trunk_and_arms, coarse_hu)


def outside_air(body: np.ndarray, coarse_hu: np.ndarray) -> np.ndarray:
    """Per axial slice, what lies outside the patient: every non-body voxel that is not enclosed.

    A region enclosed by the body in a slice (lungs, bowel) is the patient.
    A region reaching the image edge is outside air only when its edge
    voxels are mostly below OUTSIDE_AIR_HU (outside air is about -1000 HU,
    foam pads about -955, lung parenchyma mostly -940 to -700): a small
    field of view cuts through the lungs, and lung touching the edge is
    still lung. Tissue on the edge (a table cut off by the opening) is not
    counted either way; a region with only tissue on the edge is outside.
    Gas reaching the edge through gas is outside air in any case, so an
    air-filled corner joined to a cut lung stays outside.
    """
    background, count = ndi.label(~body, _IN_PLANE_FOUR_NEIGHBOURS)
    edge = _slice_edges(body.shape)
    edge_ids, edge_hu = background[edge], coarse_hu[edge]
    not_tissue = edge_hu <= BODY_HU
    reaches_edge = np.bincount(edge_ids, minlength=count + 1) > 0
    counted = np.bincount(edge_ids[not_tissue], minlength=count + 1)
    air = np.bincount(edge_ids[not_tissue & (edge_hu < OUTSIDE_AIR_HU)], minlength=count + 1)
    is_outside = reaches_edge & (air >= OUTSIDE_AIR_EDGE_SHARE * counted)
    is_outside[0] = False
    gas_regions, _ = ndi.label((coarse_hu < GAS_HU) & ~body, _IN_PLANE_FOUR_NEIGHBOURS)
    gas_from_edge = np.isin(gas_regions, np.unique(gas_regions[edge])) & (gas_regions > 0)
    return is_outside[background] | gas_from_edge


def _slice_edges(shape) -> np.ndarray:
    """Boolean mask of the first and last row and column of every axial slice."""
    edge = np.zeros(shape, dtype=bool)
    edge[:, [0, -1], :] = True
    edge[:, :, [0, -1]] = True
    return edge


def lung_candidates(coarse_hu: np.ndarray, body: np.ndarray, spacing) -> np.ndarray:
    """Air components inside the body that are large and mostly parenchyma, not pure gas.

    Outside air is excluded by the body outline; bowel and stomach gas by
    its share of voxels below GAS_HU (lungs, even emphysematous, keep most
    voxels above it). Includes the airways connected to the lungs.
    """
    air = (coarse_hu < LUNG_AIR_HU) & body
    components, count = ndi.label(air)
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    gas = np.bincount(components[coarse_hu < GAS_HU], minlength=count + 1)
    sz, sy, sx = spacing
    if coarse_hu.shape[0] == 1:
        min_voxels = MIN_LUNG_AREA_MM2 / (sy * sx)
    else:
        min_voxels = MIN_LUNG_ML * 1000.0 / (sz * sy * sx)
    is_lung = (sizes >= min_voxels) & (gas <= MAX_LUNG_GAS_FRACTION * sizes)
    is_lung[0] = False
    return is_lung[components]


def track_airway(gas: np.ndarray, lungs: np.ndarray, spacing, midline_x: float) -> np.ndarray:
    """Trachea and main bronchi lumen: gas followed slice by slice down from a midline seed near the top.

    Each slice keeps the gas regions that overlap the airway one slice up and
    are no larger than AIRWAY_MAX_AREA_MM2 (so it never floods a bulla), and
    tracking stops BRONCHI_LENGTH_MM below the carina (the first split).
    The result is dropped unless lungs lie on both sides of it: a midline gas
    bubble with no lungs around it is bowel, not trachea.
    """
    airway = np.zeros_like(gas)
    if not lungs.any():
        return airway
    sz, sy, sx = spacing
    seed_z, seed = _trachea_seed(gas, spacing, midline_x)
    if seed is None:
        return airway
    airway[seed_z] = seed
    carina_z = None
    for z in range(seed_z - 1, -1, -1):
        if carina_z is not None and (carina_z - z) * sz > BRONCHI_LENGTH_MM:
            break
        regions, _ = ndi.label(gas[z], _EIGHT_NEIGHBOURS)
        areas = np.bincount(regions.ravel()) * sy * sx
        keep = [r for r in np.unique(regions[airway[z + 1]]) if r and areas[r] <= AIRWAY_MAX_AREA_MM2]
        if not keep:
            break
        airway[z] = np.isin(regions, keep)
        if carina_z is None and len(keep) >= 2:
            carina_z = z
    return airway if _has_lungs_on_both_sides(airway, lungs) else np.zeros_like(gas)


def _trachea_seed(gas: np.ndarray, spacing, midline_x: float):
    """``(z, mask)`` of the largest trachea-sized midline gas region near the top, or ``(None, None)``."""
    sz, sy, sx = spacing
    lowest = max(0, gas.shape[0] - 1 - int(AIRWAY_SEED_SEARCH_MM // sz))
    low_area, high_area = AIRWAY_SEED_AREA_MM2
    for z in range(gas.shape[0] - 1, lowest - 1, -1):
        regions, count = ndi.label(gas[z], _EIGHT_NEIGHBOURS)
        if count == 0:
            continue
        areas = np.bincount(regions.ravel())[1:] * sy * sx
        centres_x = np.array(ndi.center_of_mass(gas[z], regions, range(1, count + 1)))[:, 1]
        fits = (areas >= low_area) & (areas <= high_area) & (np.abs(centres_x - midline_x) * sx <= AIRWAY_MIDLINE_MM)
        if fits.any():
            best = int(np.argmax(np.where(fits, areas, -1.0))) + 1
            return z, regions == best
    return None, None


def _has_lungs_on_both_sides(airway: np.ndarray, lungs: np.ndarray) -> bool:
    """True when, in the airway's slices, lung lies both to its right and to its left."""
    slices = np.flatnonzero(airway.any(axis=(1, 2)))
    if slices.size == 0:
        return False
    airway_x = np.nonzero(airway)[2].mean()
    lung_x = np.nonzero(lungs[slices])[2]
    return lung_x.size > 0 and lung_x.min() < airway_x < lung_x.max()


def split_left_right(lungs: np.ndarray, spacing, midline_x: float) -> tuple[np.ndarray, np.ndarray]:
    """``(right, left)`` lung masks; x grows toward the patient's left in canonical layout.

    A component lying (almost) all on one side of the body's midline goes to
    that side; one spanning both (lungs touching in front of the heart) is
    cut where it narrows, by :func:`_separate_touching_lungs`.
    """
    right = np.zeros_like(lungs)
    left = np.zeros_like(lungs)
    components, _ = ndi.label(lungs)
    for index, box in enumerate(ndi.find_objects(components), start=1):
        part = components[box] == index
        share_left = float((np.nonzero(part)[2] + box[2].start > midline_x).mean())
        if share_left >= SIDE_SHARE:
            left[box] |= part
        elif share_left <= 1.0 - SIDE_SHARE:
            right[box] |= part
        else:
            part_right, part_left = _separate_touching_lungs(part, spacing, midline_x - box[2].start)
            right[box] |= part_right
            left[box] |= part_left
    return right, left


def _separate_touching_lungs(part: np.ndarray, spacing, midline_x: float) -> tuple[np.ndarray, np.ndarray]:
    """Split one component into right and left lung at its narrowing.

    Erodes until the component falls into two large pieces, then gives every
    voxel to the nearer piece (the cut follows the valley between lungs).
    If it never splits, cuts along the body's midline.
    """
    eroded = part
    for _ in range(int(np.ceil(20.0 / min(spacing[1:])))):
        eroded = ndi.binary_erosion(eroded)
        pieces, count = ndi.label(eroded)
        if count < 2:
            if count == 0:
                break
            continue
        sizes = np.bincount(pieces.ravel())
        sizes[0] = 0
        first, second = np.argsort(sizes)[::-1][:2]
        if sizes[second] < 0.1 * sizes[first]:
            continue
        seeds = np.where(np.isin(pieces, [first, second]), pieces, 0)
        nearest = ndi.distance_transform_edt(seeds == 0, sampling=spacing, return_distances=False, return_indices=True)
        owner = seeds[tuple(nearest)]
        right_piece = (
            first if ndi.center_of_mass(pieces == first)[2] < ndi.center_of_mass(pieces == second)[2] else second
        )
        return part & (owner == right_piece), part & (owner != right_piece)
    on_left = np.arange(part.shape[2])[None, None, :] > midline_x
    return part & ~on_left, part & on_left


def mediastinum_mask(
    right: np.ndarray, left: np.ndarray, body: np.ndarray, bone: np.ndarray, spacing, midline_x: float
) -> np.ndarray:
    """Between the lungs: per slice and row, the non-lung body between the right and the left lung.

    Only in slices where the lungs fill at least MEDIASTINUM_LUNG_SHARE of
    the body (so not between lung bases around the liver), and only in
    front of the vertebral body (so not the spinal canal).
    """
    from_right = np.logical_or.accumulate(right, axis=2)
    to_left = np.logical_or.accumulate(left[:, :, ::-1], axis=2)[:, :, ::-1]
    between = from_right & to_left & ~right & ~left & body
    lung_share = (right | left).sum(axis=(1, 2)) / np.maximum(body.sum(axis=(1, 2)), 1)
    between[lung_share < MEDIASTINUM_LUNG_SHARE] = False
    rows = np.arange(body.shape[1])[None, :, None]
    return between & (rows < _spine_front_rows(bone, body, spacing, midline_x)[:, None, None])


def _spine_front_rows(bone: np.ndarray, body: np.ndarray, spacing, midline_x: float) -> np.ndarray:
    """Per slice, the first row of bone in the midline strip behind the body's centre (the vertebral body)."""
    nz, ny, nx = bone.shape
    half = round(SPINE_WINDOW_MM / spacing[2])
    strip = slice(max(0, int(midline_x) - half), min(nx, int(midline_x) + half + 1))
    fronts = np.full(nz, ny)
    for z in range(nz):
        rows_of_body = np.flatnonzero(body[z].any(axis=1))
        if rows_of_body.size == 0:
            continue
        centre_row = int(rows_of_body.mean())
        bone_rows = np.flatnonzero(bone[z, centre_row:, strip].any(axis=1))
        if bone_rows.size:
            fronts[z] = centre_row + bone_rows[0]
    # Discs between vertebral bodies are not bone: take the frontmost row of the nearby slices.
    window = 2 * int(np.ceil(SPINE_WINDOW_MM / spacing[0])) + 1
    return ndi.minimum_filter1d(fronts, window, mode="nearest")


def fill_holes_in_plane(mask: np.ndarray) -> np.ndarray:
    """Fill holes slice by slice (axial): background not connected to a slice's edge becomes mask."""
    background, _ = ndi.label(~mask, _IN_PLANE_FOUR_NEIGHBOURS)
    edges = np.concatenate(
        [
            background[:, 0, :].ravel(),
            background[:, -1, :].ravel(),
            background[:, :, 0].ravel(),
            background[:, :, -1].ravel(),
        ]
    )
    return mask | ~np.isin(background, np.unique(edges))


_EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)
"""2D connectivity of airway regions within one slice."""
_IN_PLANE_FOUR_NEIGHBOURS = np.pad(ndi.generate_binary_structure(2, 1)[None], ((1, 1), (0, 0), (0, 0)))
"""3D structure connecting voxels only within their axial slice (4 neighbours): regions per slice."""


def _in_plane(radius_voxels: int) -> np.ndarray:
    """Square in-plane structuring element of one slice: (1, 2r+1, 2r+1)."""
    return np.ones((1, 2 * radius_voxels + 1, 2 * radius_voxels + 1), dtype=bool)


def _disc(radius_mm: float, spacing) -> np.ndarray:
    """In-plane disc of ``radius_mm`` on a grid with ``spacing``: shape (1, h, w)."""
    ry, rx = (max(1, round(radius_mm / s)) for s in spacing[1:])
    y, x = np.ogrid[-ry : ry + 1, -rx : rx + 1]
    return (((y * spacing[1]) ** 2 + (x * spacing[2]) ** 2) <= radius_mm**2)[None]
