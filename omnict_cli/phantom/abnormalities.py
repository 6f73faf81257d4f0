"""Draw the 18 CT-RATE abnormalities into a synthetic chest CT and report them as Findings.

Job: take an :class:`~omnict_cli.phantom.anatomy.Anatomy` (HU volume, TotalSegmentator
``total`` label map, spacing, landmarks; canonical ``[z, y, x]`` orientation, z inferior
to superior, y anterior to posterior, x patient right to left), decide which classes a
case has (:func:`sample_abnormality_classes`, per-class prevalence), draw each one into
``anatomy.hu`` in place and return one :class:`Finding` per drawn class. The image, the
label vector, the report and the QA pairs all come from these Findings.

What each class draws (HU before noise/blur; "lobe" = TotalSegmentator lobe ids 10-14):

==================================  =====================================================
class                               image change
==================================  =====================================================
Medical material                    metal (3000 HU): sternal cerclage wires, or a
                                    pacemaker generator + lead through the SVC into the
                                    right heart, or a descending-aorta stent; alternating
                                    bright/dark streaks radiate in-plane from the metal
Arterial wall calcification         400-900 HU plaques on the aortic wall (aorta label kept)
Cardiomegaly                        heart label + HU scaled up about its centre until the
                                    cardiothoracic ratio is 0.55-0.65
Pericardial effusion                4-15 mm rim of 0-20 HU fluid around the heart, label 0
Coronary artery wall calcification  1.5-3 mm spots (400-1000 HU) on the heart surface along
                                    LAD / RCA / circumflex courses
Hiatal hernia                       stomach (label 6) above the diaphragm beside the lower
                                    oesophagus, joined to the stomach by a neck through the
                                    hiatus: soft-tissue wall, gas anterior, fluid behind;
                                    may indent the back of the heart label
Lymphadenopathy                     1-3 soft-tissue (~40 HU) nodes, short axis 11-25 mm,
                                    right paratracheal / subcarinal / hilar; label 0
Emphysema                           < -950 HU holes, upper-lobe predominant: centrilobular
                                    (many 4-10 mm) or paraseptal bullae (subpleural 15-50 mm)
Atelectasis                         0-40 HU plate-like bands or dependent posterior bands
                                    in the lower lobes at the bases (lobe label kept)
Lung nodule                         1-5 solid spheres 4-30 mm (0-40 HU, partial-volume
                                    edge) inside a lobe (lobe label kept)
Lung opacity                        lumpy ground-glass region -700..-400 HU in one lobe
Pulmonary fibrotic sequela          -300..0 HU strands towards the pleura plus an apical
                                    pleuroparenchymal cap in an upper lobe
Pleural effusion                    dependent (posterior) crescent of 0-30 HU fluid in the
                                    pleural space, one or both sides, deepest at the base;
                                    lung voxels it replaces become label 0 (fluid is not
                                    lung; TotalSegmentator would not call it lung)
Mosaic attenuation pattern          lung parenchyma split into smooth lobular patches of
                                    about -900 and -760 HU
Peribronchial thickening            4-8 bronchi from the hilum into the lobes: air lumen
                                    1.5-2.5 mm radius with 2-3 mm soft-tissue walls
Consolidation                       lumpy 10-50 HU region in a lobe with air bronchograms
                                    (air tubes inside the region)
Bronchiectasis                      2-4 lower-lobe airways with 4-7 mm lumen radius and thin
                                    walls, each with a narrower artery beside it
Interlobular septal thickening      -300..-100 HU polygonal (Voronoi) lines, cells of
                                    15-22 mm, in the peripheral 12 mm of the lungs
==================================  =====================================================

What cannot be drawn convincingly at coarse voxels (e.g. 5-9 mm slices, 1.4 mm pixels),
so their default prevalence is kept at CT-RATE's lower values or below:
interlobular septal thickening (1-2 mm lines smear into haze across thick slices),
peribronchial thickening (the walls are only 1-2 pixels thick), mosaic attenuation (the
150 HU contrast between patches is close to the noise at thin structures), and the
"volume loss" part of fibrotic sequelae (only the apical cap and strands are drawn; the
lobe is not shrunk and fissures are not pulled). Small coronary spots under 2 mm may
vanish in blurring at 9 mm slices.

Labels change only where the anatomy itself changes: cardiomegaly grows heart 51,
pericardial and pleural fluid and lymph nodes become 0, a hiatal hernia adds stomach 6
above the diaphragm. Lesions inside the lungs keep their lobe label.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from omnict_cli.labels import CTRATE_ABNORMALITIES
from omnict_cli.phantom.findings import Finding

LOBES = {
    10: ("left upper lobe", "left"),
    11: ("left lower lobe", "left"),
    12: ("right upper lobe", "right"),
    13: ("right middle lobe", "right"),
    14: ("right lower lobe", "right"),
}
"""TotalSegmentator lobe id -> (name in words, side)."""
LUNG_IDS = tuple(LOBES)
UPPER_LOBES = (10, 12)
LOWER_LOBES = (11, 14)
SPLEEN, LIVER, STOMACH, ESOPHAGUS, TRACHEA = 1, 5, 6, 15, 16
HEART, AORTA, SVC, STERNUM = 51, 52, 62, 116
METAL_HU = 3000.0

DEFAULT_PREVALENCE = {
    "Medical material": 0.10,
    "Arterial wall calcification": 0.30,
    "Cardiomegaly": 0.10,
    "Pericardial effusion": 0.07,
    "Coronary artery wall calcification": 0.25,
    "Hiatal hernia": 0.14,
    "Lymphadenopathy": 0.25,
    "Emphysema": 0.20,
    "Atelectasis": 0.25,
    "Lung nodule": 0.45,
    "Lung opacity": 0.25,
    "Pulmonary fibrotic sequela": 0.25,
    "Pleural effusion": 0.12,
    "Mosaic attenuation pattern": 0.05,
    "Peribronchial thickening": 0.08,
    "Consolidation": 0.15,
    "Bronchiectasis": 0.10,
    "Interlobular septal thickening": 0.05,
}
"""Probability that a case has each class; close to CT-RATE's training-set rates, with
the classes that coarse voxels cannot show well (mosaic attenuation, peribronchial and
interlobular septal thickening) a little below them."""


# --------------------------------------------------------------------------- geometry


def _ellipsoid(shape, spacing, centre, radii_mm, angle=0.0):
    """(box slices, normalised radius) of an ellipsoid; 1 on its surface.

    Work happens in a box around the shape so drawing stays cheap on full volumes;
    ``angle`` rotates the y/x radii in-plane (radians)."""
    reach_yx = max(radii_mm[1], radii_mm[2]) if angle else None
    half = (radii_mm[0] / spacing[0], (reach_yx or radii_mm[1]) / spacing[1], (reach_yx or radii_mm[2]) / spacing[2])
    lo = [max(0, int(np.floor(c - h))) for c, h in zip(centre, half)]
    hi = [min(n, int(np.ceil(c + h)) + 1) for c, n, h in zip(centre, shape, half)]
    if any(a >= b for a, b in zip(lo, hi)):
        return None
    z = ((np.arange(lo[0], hi[0]) - centre[0]) * spacing[0])[:, None, None]
    y = ((np.arange(lo[1], hi[1]) - centre[1]) * spacing[1])[None, :, None]
    x = ((np.arange(lo[2], hi[2]) - centre[2]) * spacing[2])[None, None, :]
    u = y * np.cos(angle) + x * np.sin(angle)
    v = -y * np.sin(angle) + x * np.cos(angle)
    norm = np.sqrt((z / radii_mm[0]) ** 2 + (u / radii_mm[1]) ** 2 + (v / radii_mm[2]) ** 2)
    return tuple(slice(a, b) for a, b in zip(lo, hi)), norm


def _segment_distance(shape, spacing, p0, p1, reach_mm):
    """(box slices, distance in mm to the segment p0-p1) for voxels within reach of it.

    Tubes (bronchi, leads, strands, wires) are voxels whose distance is under a radius."""
    s = np.asarray(spacing, float)
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    lo = np.maximum(0, np.floor(np.minimum(p0, p1) - reach_mm / s)).astype(int)
    hi = np.minimum(shape, np.ceil(np.maximum(p0, p1) + reach_mm / s) + 1).astype(int)
    if np.any(lo >= hi):
        return None
    z = (np.arange(lo[0], hi[0]) * s[0])[:, None, None]
    y = (np.arange(lo[1], hi[1]) * s[1])[None, :, None]
    x = (np.arange(lo[2], hi[2]) * s[2])[None, None, :]
    a, ab = p0 * s, (p1 - p0) * s
    length2 = max(float(ab @ ab), 1e-9)
    t = np.clip(((z - a[0]) * ab[0] + (y - a[1]) * ab[1] + (x - a[2]) * ab[2]) / length2, 0, 1)
    dist = np.sqrt((z - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (x - a[2] - t * ab[2]) ** 2)
    return tuple(slice(int(a_), int(b_)) for a_, b_ in zip(lo, hi)), dist


def _band_from_edge(mask, axis, depth_vox, from_high=True):
    """Voxels of ``mask`` within ``depth_vox`` of its last (or first) voxel along ``axis``.

    Per column, so the band follows a curved wall: posterior (high y) for dependent
    effusion/atelectasis, top (high z) for apical caps."""
    n = mask.shape[axis]
    shape = [1] * mask.ndim
    shape[axis] = n
    index = np.arange(n).reshape(shape)
    if from_high:
        edge = np.where(mask, index, -(10**6)).max(axis=axis, keepdims=True)
        return mask & (index > edge - depth_vox)
    edge = np.where(mask, index, 10**6).min(axis=axis, keepdims=True)
    return mask & (index < edge + depth_vox)


def _random_voxel(rng, mask, flat=None):
    """A uniformly chosen voxel index of ``mask`` (None when empty).

    Loops drawing many voxels from one mask pass ``flat = np.flatnonzero(mask)``
    once instead of listing a large mask on every call."""
    flat = np.flatnonzero(mask) if flat is None else flat
    if flat.size == 0:
        return None
    return tuple(int(i) for i in np.unravel_index(flat[rng.integers(flat.size)], mask.shape))


def _bbox(mask, margin=0):
    """Slices of the bounding box of ``mask`` grown by ``margin`` voxels.

    Found from the mask's projections on each axis, which is much cheaper
    than listing every voxel of a large mask."""
    box = []
    for axis, n in enumerate(mask.shape):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(0, int(hits[0]) - margin), min(n, int(hits[-1]) + margin + 1)))
    return tuple(box)


def _inplane_structure():
    """3x3 cross in the axial plane only: erosions must not eat whole thick slices."""
    st = np.zeros((3, 3, 3), bool)
    st[1] = ndimage.generate_binary_structure(2, 1)
    return st


def _boxed_surface(mask, margin):
    """``(box, surface)``: the mask's bounding box (grown by ``margin``) and, inside it, the
    mask voxels on its in-plane edge, where wall calcifications sit."""
    box = _bbox(mask, margin)
    inner = mask[box]
    return box, inner & ~ndimage.binary_erosion(inner, _inplane_structure())


def _lobes_on_side(labels, candidates, side):
    """The candidate lobe ids on ``side`` (both for "bilateral") that this anatomy has."""
    return [lobe for lobe in candidates if (side == "bilateral" or LOBES[lobe][1] == side) and (labels == lobe).any()]


def _severity(value, mild_upto, moderate_upto):
    return "mild" if value <= mild_upto else "moderate" if value <= moderate_upto else "severe"


def _sides(sides):
    """Collapse per-component sides to one Finding side."""
    lateral = {s for s in sides if s in ("right", "left", "bilateral")}
    if not lateral:
        return None
    return lateral.pop() if len(lateral) == 1 else "bilateral"


class _Scene:
    """An anatomy plus the masks and landmarks every drawing function asks for."""

    def __init__(self, anatomy):
        self.anatomy = anatomy
        self.hu, self.labels = anatomy.hu, anatomy.labels
        self.spacing = tuple(float(s) for s in anatomy.spacing)
        self.shape = self.hu.shape
        self.body = np.asarray(anatomy.landmarks["body_mask"], bool)
        self.midline_x = float(np.nonzero(self.body.any(axis=(0, 1)))[0].mean())
        lm = anatomy.landmarks
        self.carina_z = int(lm["carina_z"])
        self.diaphragm_z = int(lm["diaphragm_z"])
        self.apex_z = int(lm.get("lung_apex_z", self.shape[0] - 1))

    def lungs(self):
        return np.isin(self.labels, LUNG_IDS)

    def side_of_x(self, x):
        return "right" if x < self.midline_x else "left"

    def heart_centre(self):
        heart = self.labels == HEART
        if heart.any():
            return tuple(float(c) for c in np.argwhere(heart).mean(axis=0))
        return tuple(float(c) for c in self.anatomy.landmarks["heart_centre_zyx"])

    def place_in_lobe(self, rng, lobe, radius_mm, zone=None, tries=40):
        """A lobe voxel whose sphere of ``radius_mm`` lies mostly (>= 85 %) in the lobe."""
        lobe_mask = self.labels == lobe
        if zone is not None:
            lobe_mask &= zone
        best, best_inside = None, -1.0
        for _ in range(tries):
            centre = _random_voxel(rng, lobe_mask)
            if centre is None:
                return None
            box = _ellipsoid(self.shape, self.spacing, centre, (radius_mm,) * 3)
            inside = float((self.labels[box[0]][box[1] <= 1] == lobe).mean())
            if inside > best_inside:
                best, best_inside = centre, inside
            if inside >= 0.85:
                break
        return best

    def hilum(self, side):
        """The medial edge of one lung just below the carina: where bronchi and hilar nodes start."""
        z = int(np.clip(self.carina_z - round(10 / self.spacing[0]), 0, self.shape[0] - 1))
        ids = (12, 13, 14) if side == "right" else (10, 11)
        for dz in range(self.shape[0]):
            for zz in (z - dz, z + dz):
                if 0 <= zz < self.shape[0]:
                    lung = np.isin(self.labels[zz], ids)
                    if lung.sum() > 20:
                        ys, xs = np.nonzero(lung)
                        band = np.abs(ys - np.median(ys)) <= max(3, np.ptp(ys) / 6)
                        pick = np.argmax(xs[band]) if side == "right" else np.argmin(xs[band])
                        return (zz, int(ys[band][pick]), int(xs[band][pick]))
        return None

    def lobe_choice(self, rng, candidates):
        present = [lobe for lobe in candidates if (self.labels == lobe).any()]
        return int(rng.choice(present)) if present else None


def cardiothoracic_ratio(labels, pleural_space=None) -> float:
    """Largest transverse heart width / largest inner thoracic width (per-slice x extent).

    The inner thorax is lungs + heart + the anatomy's pleural space (which reaches the
    inner chest wall, as the rib margins do on a radiograph) when given."""
    heart_cols = (labels == HEART).any(axis=1)  # [z, x]
    chest = np.isin(labels, LUNG_IDS) | (labels == HEART)
    if pleural_space is not None:
        chest |= np.asarray(pleural_space, bool)
    chest_cols = chest.any(axis=1)

    def widest(cols):
        widths = [np.ptp(np.nonzero(row)[0]) + 1 for row in cols if row.any()]
        return max(widths) if widths else 0

    chest = widest(chest_cols)
    return widest(heart_cols) / chest if chest else 0.0


# --------------------------------------------------------------------------- per class


def _draw_medical_material(rng, scene):
    """Metal with streaks: the brightest thing in a CT and the artifact everyone knows."""
    kind = str(rng.choice(["sternal wires", "pacemaker lead", "vascular stent"], p=[0.4, 0.4, 0.2]))
    metal = np.zeros(scene.shape, bool)
    hu, labels, sp = scene.hu, scene.labels, scene.spacing
    cz, cy, cx = scene.heart_centre()
    organ, side = "others", None
    if kind == "vascular stent":
        aorta = labels == AORTA
        aorta[max(scene.carina_z, 0) :] = False
        aorta[: scene.diaphragm_z] = False
        aorta &= np.arange(scene.shape[1])[None, :, None] > cy
        zs = np.nonzero(aorta.any(axis=(1, 2)))[0]
        if zs.size < 3:
            kind = "pacemaker lead"
        else:
            n = min(zs.size, int(rng.integers(6, 13)))
            start = int(rng.integers(0, zs.size - n + 1))
            band = np.zeros_like(aorta)
            band[zs[start : start + n]] = True
            wall = aorta & band & ~ndimage.binary_erosion(aorta, _inplane_structure())
            metal |= wall
            organ, location = "vessels", "descending thoracic aorta"
    if kind == "sternal wires":
        sternum = labels == STERNUM
        zs = np.nonzero(sternum.any(axis=(1, 2)))[0]
        zs = zs[(zs < scene.carina_z + 4) & (zs > scene.diaphragm_z)] if zs.size > 6 else zs
        n_wires = int(rng.integers(4, 7))
        if zs.size >= 2:
            levels = np.unique(np.linspace(zs.min(), zs.max(), n_wires).round().astype(int))
            for z in levels:
                s2d = sternum[z]
                ring = ndimage.binary_dilation(s2d, iterations=2) & ~ndimage.binary_dilation(s2d)
                metal[z] |= ring
        else:
            x = round(cx)
            rows = np.nonzero(scene.body[round(cz), :, x])[0]
            y = int(rows.min() + round(12 / sp[1])) if rows.size else int(cy) // 2
            top = min(scene.shape[0] - 1, round(cz) + round(60 / sp[0]))
            for z in np.unique(np.linspace(round(cz) - 1, top, n_wires).round().astype(int)):
                box = _ellipsoid(scene.shape, sp, (int(z), y, x), (sp[0] * 0.4, 9.0, 9.0))
                if box is not None:
                    metal[box[0]] |= (box[1] <= 1) & (box[1] > 0.75)
        location = "sternum (median sternotomy wires)"
    if kind == "pacemaker lead":
        side_x = 1 if rng.random() < 0.8 else -1  # +x = patient left
        side = "left" if side_x > 0 else "right"
        gz = int(np.clip(scene.apex_z - round(15 / sp[0]), 0, scene.shape[0] - 1))
        cols = np.nonzero(scene.body[gz].any(axis=0))[0]
        gx = round(scene.midline_x + side_x * 0.55 * (cols.max() - cols.min()) / 2)
        rows = np.nonzero(scene.body[gz, :, gx])[0]
        gy = int(rows.min() + round(9 / sp[1]))
        box = _ellipsoid(scene.shape, sp, (gz, gy, gx), (20.0, 4.0, 22.0))
        metal[box[0]] |= box[1] <= 1
        svc = labels == SVC
        svc_z = int(np.clip(scene.carina_z + round(15 / sp[0]), 0, scene.shape[0] - 1))
        if svc[svc_z].any():
            sy, sx = np.argwhere(svc[svc_z]).mean(axis=0)
        else:
            sy, sx = cy - 10 / sp[1], cx - 30 / sp[2]
        heart = labels == HEART
        heart_cols = np.nonzero(heart.any(axis=(0, 1)))[0]
        width = (heart_cols.max() - heart_cols.min()) if heart_cols.size else 60 / sp[2]
        ra = (cz + 10 / sp[0], cy, cx - 0.3 * width)
        rv_apex = (cz - 15 / sp[0], cy - 0.25 * width, cx + 0.1 * width)
        path = [(gz, gy, gx), (svc_z + 1, sy, sx), (svc_z - round(20 / sp[0]), sy, sx), ra, rv_apex]
        radius = max(1.0, 0.6 * max(sp[1], sp[2]))
        for p0, p1 in itertools.pairwise(path):
            seg = _segment_distance(scene.shape, sp, p0, p1, radius + 1)
            if seg is not None:
                metal[seg[0]] |= seg[1] <= radius
        organ, location = "heart", f"{side} chest wall pacemaker, lead via superior vena cava into right ventricle"
    metal &= scene.body
    hu[metal] = METAL_HU
    _add_metal_streaks(rng, hu, metal, scene.body, sp)
    centre = tuple(int(c) for c in np.argwhere(metal).mean(axis=0).round())
    extent = (np.ptp(np.argwhere(metal), axis=0) + 1) * np.asarray(sp)
    device = {
        "sternal wires": "sternal cerclage wiring",
        "pacemaker lead": "a pacemaker",
        "vascular stent": "an aortic stent",
    }[kind]
    return Finding(
        "Medical material",
        organ,
        side=side,
        location=location,
        size_mm=float(extent.max()),
        centre_zyx=centre,
        details={"kind": kind, "device": device},
    )


def _add_metal_streaks(rng, hu, metal, body, spacing):
    """Alternating bright/dark rays from the metal on each of its slices (beam hardening,
    photon starvation), fading with distance; kept inside the body. A slice with only a
    thin wire in it streaks less than one crossing a whole generator or wire loop."""
    n_rays = int(rng.integers(5, 10))
    phase = rng.uniform(0, np.pi)
    peak = rng.uniform(150, 350)
    metal_area_full = 60.0 / (spacing[1] * spacing[2])  # ~60 mm^2 of metal streaks fully
    yy, xx = np.mgrid[0 : hu.shape[1], 0 : hu.shape[2]]
    for z in np.nonzero(metal.any(axis=(1, 2)))[0]:
        my, mx = np.argwhere(metal[z]).mean(axis=0)
        amplitude = peak * min(1.0, metal[z].sum() / metal_area_full)
        dy, dx = (yy - my) * spacing[1], (xx - mx) * spacing[2]
        r = np.hypot(dy, dx)
        c = np.cos(n_rays * np.arctan2(dy, dx) + phase)
        streak = amplitude * np.sign(c) * np.abs(c) ** 12 * np.exp(-r / 70.0)
        where = body[z] & ~metal[z] & (r > 1.0) & (np.abs(streak) >= 1.0)  # no sub-HU dust
        hu[z][where] += streak[where].astype(hu.dtype)


def _draw_arterial_wall_calcification(rng, scene):
    """Bright plaques on the aortic wall; aorta label kept (the plaque is aortic wall)."""
    aorta = scene.labels == AORTA
    if not aorta.any():
        return None
    box, wall = _boxed_surface(aorta, 2)
    near_wall = ndimage.binary_dilation(wall, _inplane_structure())
    hu_box = scene.hu[box]
    offset = np.array([s.start for s in box])
    n = int(rng.integers(2, 11))
    places, centres = [], []
    cy = scene.heart_centre()[1]
    for _ in range(n):
        c = _random_voxel(rng, wall)
        r = rng.uniform(1.5, 4.0)
        ell = _ellipsoid(wall.shape, scene.spacing, c, (max(r, scene.spacing[0] * 0.4), r, r))
        plaque = (ell[1] <= 1) & near_wall[ell[0]]
        hu_box[ell[0]][plaque] = rng.uniform(450, 900)
        hu_box[c] = max(hu_box[c], 450)
        g = np.asarray(c) + offset
        centres.append(g)
        if g[0] < scene.diaphragm_z - 30 / scene.spacing[0]:
            places.append("abdominal aorta")
        elif g[0] > scene.carina_z:
            places.append("aortic arch")
        else:
            places.append("ascending aorta" if g[1] < cy else "descending aorta")
    location = ", ".join(dict.fromkeys(places))
    return Finding(
        "Arterial wall calcification",
        "vessels",
        location=location,
        count=n,
        severity=_severity(n, 3, 6),
        centre_zyx=tuple(int(v) for v in centres[0]),
        details={"plaque_centres_zyx": [tuple(int(v) for v in c) for c in centres]},
    )


def _draw_cardiomegaly(rng, scene):
    """Scale the heart (label and HU) about its centre until the cardiothoracic ratio passes 0.5."""
    labels, hu, sp = scene.labels, scene.hu, scene.spacing
    heart = labels == HEART
    if not heart.any():
        return None
    pleural = scene.anatomy.landmarks.get("pleural_space")
    before_ratio = cardiothoracic_ratio(labels, pleural)
    target = rng.uniform(0.55, 0.65)
    heart_voxels = np.argwhere(heart)
    centre = heart_voxels.mean(axis=0)
    src_hu, src_heart = hu.copy(), heart.copy()  # read-only sources of the scaling
    grow_x = max(target / max(before_ratio, 1e-3), 1.12)
    attempts = 6
    # room for the largest scaling the loop can reach, so work stays inside one box
    box = _bbox(heart, margin=int(np.ceil((grow_x * 1.08**attempts - 1) * np.ptp(heart_voxels, axis=0).max() / 2)) + 2)
    allowed = scene.body[box] & np.isin(labels[box], (*LUNG_IDS, 0, HEART))
    for _ in range(attempts):
        scale = np.array([1 + (grow_x - 1) * 0.3, 1 + (grow_x - 1) * 0.7, grow_x])
        # the scaling is separable: each output axis reads one source index per coordinate
        source = np.ix_(
            *[
                np.clip(np.round(centre[i] + (np.arange(b.start, b.stop) - centre[i]) / scale[i]), 0, n - 1).astype(
                    np.intp
                )
                for i, (b, n) in enumerate(zip(box, scene.shape))
            ]
        )
        grown = src_heart[source] & allowed
        labels[box][grown] = HEART
        hu[box][grown] = src_hu[source][grown]
        ratio = cardiothoracic_ratio(labels, pleural)
        if ratio >= target:
            break
        grow_x *= 1.08
    volume_ratio = float((labels == HEART).sum() / src_heart.sum())
    return Finding(
        "Cardiomegaly",
        "heart",
        location="heart",
        severity=_severity(ratio, 0.6, 0.66),
        size_mm=round(float(np.ptp(np.nonzero((labels == HEART).any(axis=(0, 1)))[0]) * sp[2]), 1),
        centre_zyx=tuple(round(c) for c in centre),
        details={
            "cardiothoracic_ratio": round(float(ratio), 3),
            "cardiothoracic_ratio_before": round(float(before_ratio), 3),
            "heart_volume_ratio": round(volume_ratio, 3),
        },
    )


def _draw_pericardial_effusion(rng, scene):
    """A water-density rim around the heart; fluid is not heart, so label 0."""
    heart = scene.labels == HEART
    if not heart.any():
        return None
    thickness = rng.uniform(4, 15)
    margin = int(np.ceil(thickness / min(scene.spacing))) + 1
    box = _bbox(heart, margin)
    dist = ndimage.distance_transform_edt(~heart[box], sampling=scene.spacing)
    lab = scene.labels[box]
    rim = (dist > 0) & (dist <= thickness) & scene.body[box] & (np.isin(lab, LUNG_IDS) | (lab == 0))
    if not rim.any():  # coarse grids: no voxel fits between heart and its surroundings; nothing drawn
        return None
    fluid = rng.uniform(6, 16) + rng.normal(0, 2, size=int(rim.sum()))
    scene.hu[box][rim] = np.clip(fluid, 0, 20)
    lab[rim] = 0
    centre = np.argwhere(rim).mean(axis=0) + [s.start for s in box]
    return Finding(
        "Pericardial effusion",
        "heart",
        location="pericardium",
        size_mm=round(thickness, 1),
        severity=_severity(thickness, 7, 11),
        centre_zyx=tuple(round(c) for c in centre),
    )


CORONARY_COURSES = {
    "left anterior descending artery": (40.0, 85.0),
    "right coronary artery": (110.0, 160.0),
    "circumflex artery": (-70.0, -15.0),
}
"""In-plane angle range (degrees; 90 = anterior, 0 = patient left) of each coronary groove
on the heart surface, seen from the heart centre."""


def _draw_coronary_artery_wall_calcification(rng, scene):
    """Small bright spots on the heart surface along coronary grooves, upper (basal) heart."""
    heart = scene.labels == HEART
    if not heart.any():
        return None
    box, surface = _boxed_surface(heart, 3)
    h = heart[box]
    offset = np.array([s.start for s in box])
    cz, cy, cx = np.array(scene.heart_centre()) - offset
    zz, yy, xx = np.indices(h.shape)
    angle = np.degrees(np.arctan2(-(yy - cy) * scene.spacing[1], (xx - cx) * scene.spacing[2]))
    allowed = (h | (scene.labels[box] == 0)) & scene.body[box]
    names = list(CORONARY_COURSES)
    chosen = rng.choice(names, size=int(rng.integers(1, 4)), replace=False)
    spots, vessels = [], []
    for name in chosen:
        lo, hi = CORONARY_COURSES[name]
        course = surface & (angle >= lo) & (angle <= hi) & (zz >= cz - 2)
        for _ in range(int(rng.integers(1, 4))):
            c = _random_voxel(rng, course)
            if c is None:
                break
            r = rng.uniform(1.5, 3.0)
            ell = _ellipsoid(h.shape, scene.spacing, c, (max(r, scene.spacing[0] * 0.4), r, r))
            spot = (ell[1] <= 1) & allowed[ell[0]]
            scene.hu[box][ell[0]][spot] = rng.uniform(400, 1000)
            spots.append(tuple(int(v) for v in np.asarray(c) + offset))
            vessels.append(str(name))
    if not spots:
        return None
    vessels = list(dict.fromkeys(vessels))
    return Finding(
        "Coronary artery wall calcification",
        "heart",
        location=", ".join(vessels),
        count=len(spots),
        severity=_severity(len(spots), 2, 5),
        centre_zyx=spots[0],
        details={"spot_centres_zyx": spots, "vessels": vessels},
    )


def _draw_hiatal_hernia(rng, scene):
    """Stomach pushed through the hiatus: label 6 above the diaphragm next to the oesophagus,
    with gas anteriorly (supine) and fluid behind."""
    labels, hu, sp = scene.labels, scene.hu, scene.spacing
    dz = scene.diaphragm_z
    oesophagus = labels == ESOPHAGUS
    oz = [z for z in range(dz, min(dz + 12, scene.shape[0])) if oesophagus[z].any()]
    if oz:
        ey, ex = np.argwhere(oesophagus[oz[0]]).mean(axis=0)
    else:
        _cz, cy, _cx = scene.heart_centre()
        ey, ex = cy + 40 / sp[1], scene.midline_x
    radii = (rng.uniform(15, 35), rng.uniform(12, 22), rng.uniform(15, 30))
    # behind the heart: centred a little posterior to the oesophagus and to its left
    centre = (dz + 0.5 * radii[0] / sp[0], ey + 0.3 * radii[1] / sp[1], ex + 0.25 * radii[2] / sp[2])
    ell = _ellipsoid(scene.shape, sp, centre, radii)
    box, norm = ell
    lab = labels[box]
    # the sac may indent the back of the heart (large hernias do) but never bone or aorta
    allowed = scene.body[box] & (np.isin(lab, LUNG_IDS) | np.isin(lab, (0, STOMACH, HEART)))
    sac = (norm <= 1) & allowed
    stomach = labels == STOMACH
    neck_top = (int(dz), centre[1], centre[2])
    if stomach.any():
        top = np.argwhere(stomach)
        top = top[top[:, 0] == top[:, 0].max()].mean(axis=0)
        seg = _segment_distance(scene.shape, sp, top, neck_top, 10)
        nlab = labels[seg[0]]
        neck = (seg[1] <= 9) & scene.body[seg[0]] & (np.isin(nlab, LUNG_IDS) | np.isin(nlab, (0, STOMACH)))
        hu[seg[0]][neck & (nlab != STOMACH)] = 35
        nlab[neck] = STOMACH
    y_idx = np.arange(box[1].start, box[1].stop)[None, :, None]
    wall = sac & (norm > 1 - 3.0 / min(radii))
    gas = sac & ~wall & (y_idx < centre[1] - 0.2 * radii[1] / sp[1])
    fluid = sac & ~wall & ~gas
    hu_box = hu[box]
    hu_box[wall] = 40
    hu_box[gas] = -950
    hu_box[fluid] = 15
    lab[sac] = STOMACH
    height = float(radii[0] * 2)
    return Finding(
        "Hiatal hernia",
        "stomach",
        location="oesophageal hiatus",
        size_mm=round(2 * max(radii[1:]), 1),
        severity=_severity(height, 35, 55),
        centre_zyx=tuple(round(c) for c in centre),
        details={"height_mm": round(height, 1)},
    )


def _draw_lymphadenopathy(rng, scene):
    """Enlarged soft-tissue nodes at mediastinal/hilar stations; nodes are not lung, label 0."""
    labels, hu, sp = scene.labels, scene.hu, scene.spacing
    trachea = labels == TRACHEA
    above = [z for z in range(scene.carina_z, scene.shape[0]) if trachea[z].any()]
    if above:
        tz = above[min(len(above) - 1, round(15 / sp[0]))]
        ty, tx = np.argwhere(trachea[tz]).mean(axis=0)
        t_half = np.ptp(np.nonzero(trachea[tz].any(axis=0))[0]) / 2 + 1
    else:
        tz, (_, ty, tx), t_half = scene.carina_z + 2, scene.heart_centre(), 8 / sp[2]
    stations = {"right paratracheal": "right", "subcarinal": None, "right hilar": "right", "left hilar": "left"}
    order = list(rng.permutation(list(stations)))
    wanted = int(rng.integers(1, 4))
    nodes = []
    for station in order:
        if len(nodes) == wanted:
            break
        short = rng.uniform(11, 25)
        radii = (short / 2 * rng.uniform(1.2, 1.6), short / 2, short / 2 * rng.uniform(1.0, 1.3))
        if station == "right paratracheal":
            centre = (tz, ty, tx - t_half - (radii[2] + 2) / sp[2])
        elif station == "subcarinal":
            centre = (scene.carina_z - round(15 / sp[0]), ty + 6 / sp[1], tx)
        else:
            centre = scene.hilum(stations[station])
            if centre is None:
                continue
        ell = _ellipsoid(scene.shape, sp, centre, radii)
        if ell is None:
            continue
        lab = labels[ell[0]]
        node = (ell[1] <= 1) & scene.body[ell[0]] & (np.isin(lab, LUNG_IDS) | (lab == 0))
        full = int((ell[1] <= 1).sum())
        if node.sum() < 0.5 * full:
            continue
        hu[ell[0]][node] = rng.uniform(35, 45) + rng.normal(0, 3, size=int(node.sum()))
        lab[node] = 0
        nodes.append(
            {"station": station, "short_axis_mm": round(short, 1), "centre_zyx": tuple(round(c) for c in centre)}
        )
    if not nodes:
        return None
    largest = max(nodes, key=lambda n: n["short_axis_mm"])
    return Finding(
        "Lymphadenopathy",
        "others",
        side=_sides(stations[n["station"]] for n in nodes),
        location=", ".join(n["station"] for n in nodes),
        size_mm=largest["short_axis_mm"],
        count=len(nodes),
        severity=_severity(largest["short_axis_mm"], 15, 20),
        centre_zyx=largest["centre_zyx"],
        details={"nodes": nodes},
    )


def _draw_emphysema(rng, scene):
    """Air holes below -950 HU, mostly upper lobes: centrilobular pits or subpleural bullae."""
    labels, hu, sp = scene.labels, scene.hu, scene.spacing
    pattern = str(rng.choice(["centrilobular", "paraseptal"], p=[0.7, 0.3]))
    side = str(rng.choice(["bilateral", "right", "left"], p=[0.7, 0.15, 0.15]))
    lobes = [lobe for lobe in UPPER_LOBES if side == "bilateral" or LOBES[lobe][1] == side]
    region = np.isin(labels, lobes)
    if not region.any():
        return None
    zs = np.nonzero(region.any(axis=(1, 2)))[0]
    region[: int(np.percentile(zs, 30))] = False  # upper-zone predominant
    if pattern == "paraseptal":
        region &= ~ndimage.binary_erosion(np.isin(labels, LUNG_IDS), _inplane_structure(), iterations=3)
        n, r_range = int(rng.integers(3, 9)), (7.5, 25.0)
    else:
        n, r_range = int(rng.integers(60, 200)), (2.0, 5.0)
    lung = np.isin(labels, LUNG_IDS)
    drawn = 0
    candidates = np.flatnonzero(region)
    for _ in range(n):
        c = _random_voxel(rng, region, candidates)
        if c is None:
            break
        r = rng.uniform(*r_range)
        ell = _ellipsoid(scene.shape, sp, c, (max(r, 0.4 * sp[0]), r, r))
        hole = (ell[1] <= 1) & lung[ell[0]] & (hu[ell[0]] > -950)
        hu[ell[0]][hole] = rng.uniform(-990, -960)
        drawn += int(hole.sum())
    fraction = drawn / max(int(lung.sum()), 1)
    return Finding(
        "Emphysema",
        "lungs",
        side=side,
        location=("upper lobes" if side == "bilateral" else f"{side} upper lobe"),
        severity=_severity(fraction, 0.03, 0.08),
        count=n,
        details={"pattern": pattern, "lung_fraction": round(fraction, 4)},
    )


def _draw_atelectasis(rng, scene):
    """Collapsed lung at the bases: plate-like bands or a dependent posterior band; lobe kept."""
    labels, hu, sp = scene.labels, scene.hu, scene.spacing
    side = str(rng.choice(["right", "left", "bilateral"], p=[0.35, 0.3, 0.35]))
    pattern = str(rng.choice(["plate-like", "dependent"]))
    lobes = _lobes_on_side(labels, LOWER_LOBES, side)
    if not lobes:
        return None
    changed = np.zeros(scene.shape, bool)
    for lobe in lobes:
        lobe_mask = labels == lobe
        zs = np.nonzero(lobe_mask.any(axis=(1, 2)))[0]
        base_top = zs.min() + max(1, round(rng.uniform(25, 50) / sp[0]))
        if pattern == "dependent":
            zone = lobe_mask.copy()
            zone[base_top:] = False
            band = _band_from_edge(zone, axis=1, depth_vox=rng.uniform(6, 15) / sp[1])
            changed |= band
        else:
            base = lobe_mask.copy()
            base[base_top + 2 :] = False
            for _ in range(int(rng.integers(1, 3))):
                c = scene.place_in_lobe(rng, lobe, 8, zone=base)
                if c is None:
                    continue
                ell = _ellipsoid(
                    scene.shape,
                    sp,
                    c,
                    (rng.uniform(8, 15), rng.uniform(2.0, 3.5), rng.uniform(18, 35)),
                    angle=rng.uniform(-0.4, 0.4),
                )
                changed[ell[0]] |= (ell[1] <= 1) & lobe_mask[ell[0]]
    if not changed.any():
        return None
    hu[changed] = rng.uniform(15, 35) + rng.normal(0, 4, size=int(changed.sum())).clip(-10, 10)
    centre = tuple(round(c) for c in np.argwhere(changed).mean(axis=0))
    names = [LOBES[lobe][0] for lobe in lobes]
    return Finding(
        "Atelectasis",
        "lungs",
        side=side,
        location=", ".join(names),
        severity="mild" if pattern == "plate-like" else "moderate",
        centre_zyx=centre,
        details={"pattern": pattern},
    )


def _draw_lung_nodule(rng, scene):
    """1-5 solid spheres with a one-pixel partial-volume edge; lobe label kept."""
    labels, hu, sp = scene.labels, scene.hu, scene.spacing
    nodules = []
    for _ in range(int(rng.integers(1, 6))):
        lobe = scene.lobe_choice(rng, LUNG_IDS)
        if lobe is None:
            break
        diameter = float(np.exp(rng.uniform(np.log(4), np.log(30))))
        c = scene.place_in_lobe(rng, lobe, diameter / 2)
        r = diameter / 2
        ell = _ellipsoid(scene.shape, sp, c, (r + sp[0] / 2, r + sp[1], r + sp[2]))
        dist_mm = ell[1] * (r + sp[1])
        frac = np.clip(0.5 + (r - dist_mm) / sp[1], 0, 1)
        frac[tuple(np.asarray(c) - [s.start for s in ell[0]])] = 1.0
        inside = (frac > 0) & (labels[ell[0]] == lobe)
        value = rng.uniform(10, 35)
        region = hu[ell[0]]
        region[inside] = region[inside] * (1 - frac[inside]) + value * frac[inside]
        nodules.append(
            {"lobe": LOBES[lobe][0], "side": LOBES[lobe][1], "diameter_mm": round(diameter, 1), "centre_zyx": c}
        )
    if not nodules:
        return None
    largest = max(nodules, key=lambda n: n["diameter_mm"])
    return Finding(
        "Lung nodule",
        "lungs",
        side=_sides(n["side"] for n in nodules),
        location=largest["lobe"],
        size_mm=largest["diameter_mm"],
        count=len(nodules),
        severity=_severity(largest["diameter_mm"], 6, 15),
        centre_zyx=largest["centre_zyx"],
        details={"nodules": nodules},
    )


def _lumpy_blob(rng, scene, lobe, radius_mm):
    """A lobe-confined irregular region: a few overlapping ellipsoids around one centre."""
    c = scene.place_in_lobe(rng, lobe, radius_mm * 0.7)
    if c is None:
        return None, None
    blob = np.zeros(scene.shape, bool)
    for i in range(int(rng.integers(3, 7))):
        shift = np.zeros(3) if i == 0 else rng.normal(0, radius_mm * 0.35, 3) / scene.spacing
        centre = np.asarray(c) + shift
        radii = radius_mm * rng.uniform(0.5, 0.9, 3)
        ell = _ellipsoid(scene.shape, scene.spacing, centre, radii)
        if ell is not None:
            blob[ell[0]] |= ell[1] <= 1
    blob &= scene.labels == lobe
    blob[c] = True
    return blob, c


def _airspace_region(rng, scene):
    """A lumpy region 30-80 mm across in a random lobe: ``(lobe, radius, blob, centre)`` or None."""
    lobe = scene.lobe_choice(rng, LUNG_IDS)
    if lobe is None:
        return None
    radius = rng.uniform(15, 40)
    blob, c = _lumpy_blob(rng, scene, lobe, radius)
    return None if blob is None else (lobe, radius, blob, c)


def _draw_lung_opacity(rng, scene):
    """Ground glass: a hazy -700..-400 HU region over the parenchyma of one lobe (vessels kept)."""
    region = _airspace_region(rng, scene)
    if region is None:
        return None
    lobe, radius, blob, c = region
    blob &= scene.hu < -500
    blob[c] = True
    level = rng.uniform(-650, -450)
    scene.hu[blob] = np.clip(level + rng.normal(0, 25, size=int(blob.sum())), -700, -400)
    name, side = LOBES[lobe]
    return Finding(
        "Lung opacity",
        "lungs",
        side=side,
        location=name,
        size_mm=round(2 * radius, 1),
        severity=_severity(radius, 22, 32),
        centre_zyx=c,
        details={"pattern": "ground glass"},
    )


def _draw_consolidation(rng, scene):
    """Dense airspace region (10-50 HU) in one lobe with air bronchograms through it."""
    region = _airspace_region(rng, scene)
    if region is None:
        return None
    lobe, radius, blob, c = region
    sp = scene.spacing
    scene.hu[blob] = np.clip(rng.uniform(25, 40) + rng.normal(0, 5, size=int(blob.sum())), 10, 50)
    n_air = int(rng.integers(2, 5))
    for _ in range(n_air):
        direction = rng.normal(0, 1, 3) * [0.3, 1, 1]
        direction /= np.linalg.norm(direction)
        end = np.asarray(c) + direction * radius * 1.2 / np.asarray(sp)
        lumen = max(1.2, 0.6 * sp[1])
        seg = _segment_distance(scene.shape, sp, c, end, lumen + 1)
        air = (seg[1] <= lumen) & blob[seg[0]]
        scene.hu[seg[0]][air] = rng.uniform(-950, -880)
    name, side = LOBES[lobe]
    return Finding(
        "Consolidation",
        "lungs",
        side=side,
        location=name,
        size_mm=round(2 * radius, 1),
        severity=_severity(radius, 22, 32),
        centre_zyx=c,
        details={"air_bronchograms": n_air},
    )


def _draw_pulmonary_fibrotic_sequela(rng, scene):
    """Scar: dense strands running to the pleura plus an apical pleuroparenchymal cap.
    Volume loss is only suggested by the cap; the lobe is not shrunk."""
    labels, hu, sp = scene.labels, scene.hu, scene.spacing
    side = str(rng.choice(["right", "left", "bilateral"], p=[0.35, 0.25, 0.4]))
    lobes = _lobes_on_side(labels, UPPER_LOBES, side)
    if not lobes:
        return None
    changed = np.zeros(scene.shape, bool)
    for lobe in lobes:
        lobe_mask = labels == lobe
        changed |= _band_from_edge(lobe_mask, axis=0, depth_vox=max(1.0, rng.uniform(4, 10) / sp[0]))
        zs = np.nonzero(lobe_mask.any(axis=(1, 2)))[0]
        zone = lobe_mask.copy()
        zone[: int(np.percentile(zs, 50))] = False
        for _ in range(int(rng.integers(4, 10))):
            start = _random_voxel(rng, zone)
            if start is None:
                break
            lateral = -1.0 if LOBES[lobe][1] == "right" else 1.0
            direction = np.array([rng.uniform(0, 0.4), rng.uniform(-1, 1), lateral * rng.uniform(0.3, 1)])
            direction /= np.linalg.norm(direction)
            end = np.asarray(start) + direction * rng.uniform(15, 40) / np.asarray(sp)
            radius = max(1.0, 0.6 * sp[1])
            seg = _segment_distance(scene.shape, sp, start, end, radius + 1)
            changed[seg[0]] |= (seg[1] <= radius) & lobe_mask[seg[0]]
    hu[changed] = np.clip(rng.uniform(-200, -80) + rng.normal(0, 30, size=int(changed.sum())), -300, 0)
    return Finding(
        "Pulmonary fibrotic sequela",
        "lungs",
        side=side,
        location=", ".join(LOBES[lobe][0] for lobe in lobes),
        details={"pattern": "apical, peripheral"},
        severity="mild",
        centre_zyx=tuple(round(c) for c in np.argwhere(changed).mean(axis=0)),
    )


def _draw_pleural_effusion(rng, scene):
    """Dependent fluid crescent in the posterior pleural space, deepest at the base.
    Lung it replaces becomes label 0 (fluid is not lung)."""
    labels, hu, sp = scene.labels, scene.hu, scene.spacing
    pleural = np.asarray(scene.anatomy.landmarks["pleural_space"], bool) & scene.body
    side = str(rng.choice(["right", "left", "bilateral"], p=[0.4, 0.25, 0.35]))
    x_idx = np.arange(scene.shape[2])[None, None, :]
    depth_max = rng.uniform(12, 50)
    height = rng.uniform(40, 120)
    fluid = np.zeros(scene.shape, bool)
    for s in ["right", "left"] if side == "bilateral" else [side]:
        space = pleural & ((x_idx < scene.midline_x) if s == "right" else (x_idx >= scene.midline_x))
        zs = np.nonzero(space.any(axis=(1, 2)))[0]
        if zs.size == 0:
            continue
        z_rel = (np.arange(scene.shape[0]) - zs.min()) * sp[0]
        depth = depth_max * np.clip(1 - z_rel / height, 0, 1) ** 0.7 / sp[1]
        fluid |= _band_from_edge(space, axis=1, depth_vox=depth[:, None, None])
    fluid &= np.isin(labels, LUNG_IDS) | (labels == 0)
    if not fluid.any():
        return None
    hu[fluid] = np.clip(rng.uniform(8, 22) + rng.normal(0, 3, size=int(fluid.sum())), 0, 30)
    labels[fluid] = 0
    location = "both pleural spaces" if side == "bilateral" else f"{side} pleural space"
    return Finding(
        "Pleural effusion",
        "lungs",
        side=side,
        location=location,
        size_mm=round(depth_max, 1),
        severity=_severity(depth_max, 20, 35),
        centre_zyx=tuple(round(c) for c in np.argwhere(fluid).mean(axis=0)),
    )


def _draw_mosaic_attenuation_pattern(rng, scene):
    """Lobular patches of darker (-900) and brighter (-760) parenchyma across both lungs."""
    lung = np.isin(scene.labels, LUNG_IDS)
    if not lung.any():
        return None
    box = _bbox(lung)
    field = ndimage.gaussian_filter(
        rng.standard_normal(lung[box].shape).astype(np.float32), sigma=[8.0 / s for s in scene.spacing]
    )
    parenchyma = lung[box] & (scene.hu[box] < -600)
    dark = field < np.median(field[parenchyma]) if parenchyma.any() else field < 0
    hu_box = scene.hu[box]
    n = int(parenchyma.sum())
    hu_box[parenchyma] = np.where(dark[parenchyma], -900.0, -760.0) + rng.normal(0, 8, size=n).clip(-20, 20)
    return Finding(
        "Mosaic attenuation pattern",
        "lungs",
        side="bilateral",
        location="both lungs",
        severity="moderate",
        centre_zyx=tuple(round(c) for c in np.argwhere(lung).mean(axis=0)),
    )


def _draw_airways(rng, scene, lobes, n, lumen_mm, wall_mm, artery_mm=None):
    """Bronchi from the hilum into lobes: air lumen, soft-tissue wall, optional artery beside.
    Returns the list of (lobe, start, end) drawn."""
    labels, hu, sp = scene.labels, scene.hu, scene.spacing
    drawn = []
    for _ in range(n):
        lobe = scene.lobe_choice(rng, lobes)
        if lobe is None:
            break
        hilum = scene.hilum(LOBES[lobe][1])
        end = _random_voxel(rng, labels == lobe)
        if hilum is None or end is None:
            break
        start = np.asarray(hilum) + 0.3 * (np.asarray(end) - hilum)
        lumen = max(lumen_mm, 0.6 * sp[1])
        wall = max(wall_mm, 0.8 * sp[1])
        seg = _segment_distance(scene.shape, sp, start, end, lumen + wall + 1)
        in_lobe = labels[seg[0]] == lobe
        region = hu[seg[0]]
        region[(seg[1] <= lumen + wall) & in_lobe] = rng.uniform(20, 40)
        region[(seg[1] <= lumen) & in_lobe] = rng.uniform(-990, -950)
        if artery_mm:
            d = np.asarray(end, float) - start
            side_step = np.cross(d * sp, [1.0, 0, 0])
            if np.linalg.norm(side_step) < 1e-6:
                side_step = np.array([0, 0, 1.0])
            side_step = side_step / np.linalg.norm(side_step) * (lumen + wall + artery_mm + 0.5)
            offset = side_step / np.asarray(sp)
            art = _segment_distance(scene.shape, sp, start + offset, np.asarray(end) + offset, artery_mm + 1)
            in_lobe_a = labels[art[0]] == lobe
            hu[art[0]][(art[1] <= artery_mm) & in_lobe_a & (hu[art[0]] < -500)] = 40
        drawn.append((lobe, tuple(int(v) for v in start.round()), end))
    return drawn


def _draw_peribronchial_thickening(rng, scene):
    """Bronchi with walls as thick as their lumen (normal walls are ~1/5 of it)."""
    airways = _draw_airways(
        rng, scene, LUNG_IDS, int(rng.integers(4, 9)), lumen_mm=rng.uniform(1.5, 2.5), wall_mm=rng.uniform(2.0, 3.0)
    )
    if not airways:
        return None
    names = list(dict.fromkeys(LOBES[a[0]][0] for a in airways))
    return Finding(
        "Peribronchial thickening",
        "lungs",
        side=_sides(LOBES[a[0]][1] for a in airways),
        location=", ".join(names),
        count=len(airways),
        severity="mild",
        centre_zyx=airways[0][2],
    )


def _draw_bronchiectasis(rng, scene):
    """Lower-lobe airways wider than the artery running beside them (signet-ring sign)."""
    lumen = rng.uniform(4.0, 7.0)
    airways = _draw_airways(
        rng,
        scene,
        LOWER_LOBES,
        int(rng.integers(2, 5)),
        lumen_mm=lumen,
        wall_mm=rng.uniform(1.0, 1.5),
        artery_mm=rng.uniform(2.0, 3.0),
    )
    if not airways:
        return None
    names = list(dict.fromkeys(LOBES[a[0]][0] for a in airways))
    return Finding(
        "Bronchiectasis",
        "lungs",
        side=_sides(LOBES[a[0]][1] for a in airways),
        location=", ".join(names),
        size_mm=round(2 * lumen, 1),
        count=len(airways),
        severity=_severity(lumen, 5, 6),
        centre_zyx=airways[0][2],
    )


def _depth_in_lung(lung, spacing):
    """Distance (mm) from each lung voxel to the lung's edge, on a grid coarsened to about
    2 mm in-plane: the 12 mm periphery needs no finer, and the distance map is the cost."""
    step = max(1, int(2.0 // min(spacing[1:])))
    coarse = lung[:, ::step, ::step]
    depth = ndimage.distance_transform_edt(coarse, sampling=(spacing[0], spacing[1] * step, spacing[2] * step))
    depth = np.repeat(np.repeat(depth, step, axis=1), step, axis=2)
    return depth[:, : lung.shape[1], : lung.shape[2]]


def _draw_interlobular_septal_thickening(rng, scene):
    """Polygonal lines at the lung periphery: Voronoi cell walls of 15-22 mm 'lobules'.

    Cells are stretched in z (distance in z counts 0.35x) so the walls stand mostly
    upright and show as lines, not sheets, on axial slices."""
    lung = np.isin(scene.labels, LUNG_IDS)
    if not lung.any():
        return None
    box = _bbox(lung, 1)
    sp = np.asarray(scene.spacing)
    peripheral = lung[box] & (_depth_in_lung(lung[box], sp) <= 12) & (scene.hu[box] < -500)
    points = np.argwhere(peripheral)
    metric = sp * [0.35, 1, 1]
    coords = points * metric
    lobule = rng.uniform(15.0, 22.0)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    n_seeds = int(np.prod(np.maximum(hi - lo, lobule)) / lobule**3) + 8
    seeds = rng.uniform(lo, hi, size=(n_seeds, 3))
    dist, _ = cKDTree(seeds).query(coords, k=2)
    wall = (dist[:, 1] - dist[:, 0]) < 1.3
    sel = tuple(points[wall].T)
    scene.hu[box][sel] = np.clip(rng.uniform(-250, -150) + rng.normal(0, 30, size=int(wall.sum())), -300, -100)
    centre = tuple(int(v) for v in (points[wall].mean(axis=0) + [s.start for s in box]).round())
    return Finding(
        "Interlobular septal thickening",
        "lungs",
        side="bilateral",
        location="peripheral lungs",
        severity="mild",
        centre_zyx=centre,
    )


DRAWERS: dict[str, Callable] = {
    # anatomy-changing classes first, then lung background patterns, focal lesions, metal last
    "Cardiomegaly": _draw_cardiomegaly,
    "Pericardial effusion": _draw_pericardial_effusion,
    "Hiatal hernia": _draw_hiatal_hernia,
    "Pleural effusion": _draw_pleural_effusion,
    "Mosaic attenuation pattern": _draw_mosaic_attenuation_pattern,
    "Emphysema": _draw_emphysema,
    "Interlobular septal thickening": _draw_interlobular_septal_thickening,
    "Pulmonary fibrotic sequela": _draw_pulmonary_fibrotic_sequela,
    "Lung opacity": _draw_lung_opacity,
    "Consolidation": _draw_consolidation,
    "Atelectasis": _draw_atelectasis,
    "Peribronchial thickening": _draw_peribronchial_thickening,
    "Bronchiectasis": _draw_bronchiectasis,
    "Lung nodule": _draw_lung_nodule,
    "Lymphadenopathy": _draw_lymphadenopathy,
    "Arterial wall calcification": _draw_arterial_wall_calcification,
    "Coronary artery wall calcification": _draw_coronary_artery_wall_calcification,
    "Medical material": _draw_medical_material,
}
"""CT-RATE class -> drawing function, in drawing order (metal last so its streaks cross everything)."""
assert set(DRAWERS) == set(CTRATE_ABNORMALITIES)


def sample_abnormality_classes(
    rng: np.random.Generator, prevalence: dict[str, float] | None = None, force: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """Which classes a case has, in CT-RATE order: one Bernoulli draw per class.

    Classes missing from ``prevalence`` use ``DEFAULT_PREVALENCE``; ``force`` are always in.
    Always consumes 18 uniforms so a seed gives the same stream whatever the prevalences."""
    rates = dict(DEFAULT_PREVALENCE)
    for name, p in (prevalence or {}).items():
        if name not in rates:
            raise ValueError(f"unknown CT-RATE class {name!r}")
        rates[name] = float(p)
    for name in force:
        if name not in rates:
            raise ValueError(f"unknown CT-RATE class {name!r}")
    draws = rng.random(len(CTRATE_ABNORMALITIES))
    return tuple(name for name, u in zip(CTRATE_ABNORMALITIES, draws) if name in force or u < rates[name])


def _centre_on_a_changed_slice(finding: Finding, changed: np.ndarray, box) -> Finding:
    """Give every Finding a centre whose axial slice shows it: 2D slices and questions are
    cut through ``centre_zyx``, and a centroid of scattered changes can fall between them.

    ``changed`` is the mask of voxels the drawing changed, ``box`` its bounding box."""
    if finding.centre_zyx is not None and changed[int(finding.centre_zyx[0])].any():
        return finding
    points = np.argwhere(changed[box]) + [s.start for s in box]
    centre = np.asarray(finding.centre_zyx if finding.centre_zyx is not None else points.mean(axis=0))
    nearest = points[np.argmin(((points - centre) ** 2).sum(axis=1))]
    return replace(finding, centre_zyx=tuple(int(v) for v in nearest))


def draw_abnormalities(
    rng: np.random.Generator, anatomy, prevalence: dict[str, float] | None = None, force: tuple[str, ...] = ()
) -> list[Finding]:
    """Sample classes, draw them into ``anatomy.hu`` (and ``labels`` where anatomy changes),
    and return their Findings in CT-RATE order.

    Each Finding's ``details`` gets ``changed_voxels``, ``bbox_zyx`` (inclusive
    ``(z0, y0, x0, z1, y1, x1)`` of the voxels whose HU it changed) and ``footprint``
    (boolean, the changed voxels inside that box: which slices and patches show it)."""
    chosen = set(sample_abnormality_classes(rng, prevalence, force))
    scene = _Scene(anatomy)
    findings = {}
    for name, draw in DRAWERS.items():
        if name not in chosen:
            continue
        before = anatomy.hu.copy()
        finding = draw(rng, scene)
        if finding is None:
            if name in force:
                raise RuntimeError(f"could not draw forced class {name!r} into this anatomy")
            continue
        changed = before != anatomy.hu
        count = int(np.count_nonzero(changed))
        if count:
            box = _bbox(changed)
            finding.details["changed_voxels"] = count
            finding.details["bbox_zyx"] = (*(s.start for s in box), *(s.stop - 1 for s in box))
            finding.details["footprint"] = changed[box]
            finding = _centre_on_a_changed_slice(finding, changed, box)
        findings[name] = finding
    return [findings[name] for name in CTRATE_ABNORMALITIES if name in findings]
