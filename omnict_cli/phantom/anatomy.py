"""Normal chest CT anatomy in Hounsfield units with an exact organ label map.

``draw_anatomy`` paints a normal chest (upper abdomen to lung apices) into a
volume of any size and spacing, deterministically from a numpy Generator;
``finish_image`` then adds the partial-volume blur and noise of a scanner.
Everything is placed in physical millimetres (voxel centre = (index + 0.5)
* spacing) and the body is centred in the field of view with per-case
jitter; the craniocaudal layout is compressed when the field of view is
shorter than 330 mm so apices, diaphragm and upper kidneys all stay in.

Orientation is the project's canonical one (DESIGN.md): array [z, y, x],
z inferior -> superior, y anterior -> posterior, x patient right -> left.

Structures are painted in order; a later one replaces HU and label together,
so the label map and the HU image agree voxel by voxel (before blur).

=====================================  ===========  ==========================
structure                               HU           label (TotalSegmentator)
=====================================  ===========  ==========================
air outside the body                    -1000        0
skin / subcutaneous fat                 20 / -100    0
chest and abdominal wall muscle         45           0
mediastinal / abdominal fat             -80          0
paraspinal muscles                      50           autochthon_left 86 / right 87
lungs (anterior -> posterior gradient)  -865..-825   lobes 10, 11 (left), 12, 13, 14 (right)
pulmonary vessels (in the lungs)        40           the lobe they lie in
trachea + main bronchi (wall / lumen)   40 / -1000   trachea 16 (both; `total` has no bronchus)
esophagus (wall / air lumen)            40 / -1000   esophagus 15
heart                                   40           heart 51
pericardium (2 mm rim)                  25           0
aorta (root, arch, descending)          40           aorta 52
pulmonary trunk and arteries            40           0 (not a `total` class)
superior / inferior vena cava           40           62 / 63
vertebrae cortex / cancellous           750 / 250    vertebrae_C7..L5 (44..27) by level
intervertebral discs                    90           0
spinal canal CSF / spinal cord          10 / 35      0 / spinal_cord 79
ribs 1-12                               600          rib_left_N 92..103, rib_right_N 104..115
costal cartilages (ribs 1-7)            150          costal_cartilages 117
sternum                                 450          sternum 116
liver                                   60           liver 5
gallbladder                             10           gallbladder 4
spleen                                  50           spleen 1
stomach (wall+content / gas bubble)     30 / -1000   stomach 6 (both)
kidneys                                 35           kidney_right 2 / kidney_left 3
=====================================  ===========  ==========================
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from scipy import ndimage

from omnict_cli.segmentation.classes import TOTALSEG_TOTAL_IDS as IDS

LOBE_IDS = tuple(
    IDS[n]
    for n in (
        "lung_upper_lobe_left",
        "lung_lower_lobe_left",
        "lung_upper_lobe_right",
        "lung_middle_lobe_right",
        "lung_lower_lobe_right",
    )
)
DIAPHRAGM_MM = 4.0
"""Thickness of the diaphragm muscle between lung base and abdominal organs."""
PLEURAL_RIM_MM = 5.0
"""How far the pleural space reaches beyond the lungs into the chest wall."""
NOMINAL_HEIGHT_MM = 330.0
"""Craniocaudal extent the layout is designed for; shorter fields compress it."""


@dataclass
class Anatomy:
    """A drawn normal chest: HU image, label map and named landmarks.

    ``hu`` is float32 [z, y, x] before blur and noise (see ``finish_image``);
    ``labels`` is uint8 TotalSegmentator ``total`` ids, 0 where unlabelled.
    ``landmarks``: ``carina_z``, ``diaphragm_z`` (top slice of the liver
    dome), ``lung_apex_z`` (top slice with lung), ``heart_centre_zyx`` (voxel
    index, inside the heart), ``midline_x`` (column of the body centre),
    ``body_mask`` (bool volume) and ``pleural_space`` (bool volume: the lobes
    plus a 5 mm unlabelled rim into the chest wall and diaphragm, where a
    pleural effusion may be drawn).
    """

    hu: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    landmarks: dict


@dataclass
class _Layout:
    """Per-case geometry in mm: body frame, craniocaudal levels, spine position."""

    cy: float  # body centre (mm)
    cx: float
    ay: float  # body half-axes: anterior-posterior, left-right
    ax: float
    s: float  # in-plane scale applied to nominal (adult, mm) offsets
    zs: float  # craniocaudal scale (< 1 when the field is under 330 mm)
    cav_ay: float  # thoracic cavity half-axes (inside the chest wall)
    cav_ax: float
    apex: float  # lung apex height
    dome_r: float  # right / left diaphragm dome heights
    dome_l: float
    carina: float
    heart_scale: float  # heart size within the normal range

    def yx(self, dy: float, dx: float) -> tuple[float, float]:
        """Absolute (y, x) mm of a nominal offset from the body centre (dx > 0: patient left)."""
        return self.cy + dy * self.s, self.cx + dx * self.s

    def p(self, z: float, dy: float, dx: float) -> tuple[float, float, float]:
        """Absolute (z, y, x) mm point: z absolute, (dy, dx) nominal offsets."""
        return (z, *self.yx(dy, dx))

    @property
    def vb_dy(self) -> float:
        """Nominal y offset of the vertebral body centre."""
        return self.cav_ay / self.s - 35.0

    @property
    def med_x(self) -> float:
        """x (mm) of the mediastinum's midline, a little left of the body centre."""
        return self.cx + 5.0 * self.s


class _Canvas:
    """The HU and label volumes plus physical coordinates, painted box by box."""

    def __init__(self, shape, spacing):
        self.shape = tuple(int(n) for n in shape)
        self.spacing = tuple(float(s) for s in spacing)
        self.hu = np.full(self.shape, -1000.0, np.float32)
        self.labels = np.zeros(self.shape, np.uint8)
        self.axes = [((np.arange(n) + 0.5) * sp).astype(np.float32) for n, sp in zip(self.shape, self.spacing)]
        self.extent = tuple(n * sp for n, sp in zip(self.shape, self.spacing))

    def box(self, lo, hi):
        """Index slices of the voxels whose centres lie in [lo, hi] mm, or None if empty."""
        slices = []
        for n, sp, a, b in zip(self.shape, self.spacing, lo, hi):
            i0 = max(0, int(np.ceil(a / sp - 0.5)))
            i1 = min(n, int(np.floor(b / sp - 0.5)) + 1)
            if i1 <= i0:
                return None
            slices.append(slice(i0, i1))
        return tuple(slices)

    def full(self):
        return tuple(slice(0, n) for n in self.shape)

    def coords(self, box, origin=(0.0, 0.0, 0.0)):
        """Broadcastable z, y, x mm coordinates of a box, relative to origin."""
        z, y, x = (ax[sl] - np.float32(o) for ax, sl, o in zip(self.axes, box, origin))
        return z[:, None, None], y[None, :, None], x[None, None, :]

    def index(self, point_mm) -> tuple[int, ...]:
        return tuple(
            int(np.clip(round(p / sp - 0.5), 0, n - 1)) for p, sp, n in zip(point_mm, self.spacing, self.shape)
        )

    def paint(self, box, mask, hu, label=None, lungs_only=False):
        """Write hu (and label, unless None) where mask; lungs_only keeps to lobe voxels."""
        shape = tuple(sl.stop - sl.start for sl in box)
        mask = np.broadcast_to(mask, shape)
        if lungs_only:
            lab = self.labels[box]
            mask = mask & (lab >= min(LOBE_IDS)) & (lab <= max(LOBE_IDS))
        for volume, value in ((self.hu, hu), (self.labels, label)):
            if value is None:
                continue
            view = volume[box]
            view[mask] = value if np.ndim(value) == 0 else np.broadcast_to(value, shape)[mask]


# ----------------------------------------------------------------------------- primitives


def _ellipsoid(canvas, centre, radii):
    """(box, normalised squared radius field) of an axis-aligned ellipsoid."""
    lo = [c - r for c, r in zip(centre, radii)]
    hi = [c + r for c, r in zip(centre, radii)]
    box = canvas.box(lo, hi)
    if box is None:
        return None, None
    z, y, x = canvas.coords(box, centre)
    return box, (z / np.float32(radii[0])) ** 2 + (y / np.float32(radii[1])) ** 2 + (x / np.float32(radii[2])) ** 2


def _paint_ellipsoid(canvas, centre, radii, hu, label, below=None):
    """Paint an ellipsoid; ``below`` (2D mm map) keeps it under that height (organs under the diaphragm)."""
    box, r2 = _ellipsoid(canvas, centre, radii)
    if box is None:
        return
    mask = r2 <= 1.0
    if below is not None:
        z = canvas.coords(box)[0]
        mask &= z < below[box[1:]][None]
    canvas.paint(box, mask, hu, label)


def _smooth_path(points, rounds=2):
    """Chaikin corner cutting of a polyline of rows (z, y, x, radius); ends are kept."""
    p = np.asarray(points, float)
    for _ in range(rounds):
        q = 0.75 * p[:-1] + 0.25 * p[1:]
        r = 0.25 * p[:-1] + 0.75 * p[1:]
        middle = np.stack([q, r], axis=1).reshape(-1, p.shape[1])
        p = np.vstack([p[:1], middle[1:-1], p[-1:]])
    return p


def _paint_tube(canvas, path, hu, label, lungs_only=False, radius_scale=1.0):
    """Paint a tube along rows (z, y, x, radius mm); the radius varies linearly per segment."""
    path = np.asarray(path, float)
    for a, b in pairwise(path):
        ra, rb = a[3] * radius_scale, b[3] * radius_scale
        r = max(ra, rb)
        box = canvas.box(np.minimum(a[:3], b[:3]) - r, np.maximum(a[:3], b[:3]) + r)
        if box is None:
            continue
        dz, dy, dx = canvas.coords(box, a[:3])
        vz, vy, vx = (float(v) for v in b[:3] - a[:3])
        length2 = max(vz * vz + vy * vy + vx * vx, 1e-9)
        t = np.clip((dz * vz + dy * vy + dx * vx) * (1.0 / length2), 0.0, 1.0)
        dist2 = (dz - t * vz) ** 2 + (dy - t * vy) ** 2 + (dx - t * vx) ** 2
        radius = ra + (rb - ra) * t
        canvas.paint(box, dist2 <= radius * radius, hu, label, lungs_only)


# ----------------------------------------------------------------------------- layout


def _draw_layout(rng, canvas) -> _Layout:
    """Per-case body size/position, lung height (diaphragm) and heart size."""
    height, fov_y, fov_x = canvas.extent
    ax, ay = rng.uniform(150, 175), rng.uniform(100, 122)
    s = min(1.0, 0.46 * fov_x / ax, 0.46 * fov_y / ay)
    ax, ay = ax * s, ay * s
    cy = fov_y / 2 + rng.uniform(-0.03, 0.03) * fov_y
    cx = fov_x / 2 + rng.uniform(-0.03, 0.03) * fov_x
    zs = min(1.0, height / NOMINAL_HEIGHT_MM)
    apex = height - rng.uniform(8, 20) * zs
    dome_r = apex - rng.uniform(185, 235) * zs
    dome_l = dome_r - rng.uniform(8, 20) * zs
    carina = apex - rng.uniform(85, 100) * zs
    wall = rng.uniform(30, 40) * s
    return _Layout(
        cy=cy,
        cx=cx,
        ay=ay,
        ax=ax,
        s=s,
        zs=zs,
        cav_ay=ay - wall,
        cav_ax=ax - wall,
        apex=apex,
        dome_r=dome_r,
        dome_l=dome_l,
        carina=carina,
        heart_scale=rng.uniform(0.88, 1.08),
    )


def _diaphragm_height(canvas, lay: _Layout) -> np.ndarray:
    """2D map (y, x) of the diaphragm's upper surface in mm: two domes sloping to the recesses."""
    _, y, x = canvas.coords(canvas.full())
    y, x = y[0], x[0]
    drop = 75.0 * lay.zs
    y_dome = lay.cy - 0.1 * lay.cav_ay

    def dome(top, x_centre):
        return top - drop * (((x - x_centre) / (0.6 * lay.cav_ax)) ** 2 + ((y - y_dome) / lay.cav_ay) ** 2)

    right = dome(lay.dome_r, lay.cx - 0.5 * lay.cav_ax)
    left = dome(lay.dome_l, lay.cx + 0.5 * lay.cav_ax)
    return np.maximum(right, left).astype(np.float32)


# ----------------------------------------------------------------------------- body and lungs


def _paint_body_layers(canvas, lay: _Layout) -> np.ndarray:
    """Skin, fat, muscle and cavity fat as one z-invariant slice; returns the 2D body mask."""
    _, y, x = canvas.coords(canvas.full())
    y, x = y[0], x[0]

    def inside(shrink):
        return ((y - lay.cy) / (lay.ay - shrink)) ** 2 + ((x - lay.cx) / (lay.ax - shrink)) ** 2 <= 1.0

    fat_mm = (lay.ay - lay.cav_ay) * 0.45
    body = inside(0.0)
    slice_hu = np.full(body.shape, -1000.0, np.float32)
    slice_hu[body] = 20.0
    slice_hu[inside(2.0)] = -100.0
    slice_hu[inside(fat_mm)] = 45.0
    slice_hu[inside(lay.ay - lay.cav_ay)] = -80.0
    canvas.hu[...] = slice_hu[None]
    return body


def _lung_region(canvas, lay: _Layout, dia, grow=0.0, box=None):
    """(box, mask, z, y, x) of the lungs before mediastinal overrides; grow widens the walls."""
    if box is None:
        zb = float(dia.min()) - grow - DIAPHRAGM_MM
        lo = (zb, lay.cy - lay.cav_ay - grow, lay.cx - lay.cav_ax - grow)
        hi = (lay.apex + grow, lay.cy + lay.cav_ay + grow, lay.cx + lay.cav_ax + grow)
        box = canvas.box(lo, hi)
    z, y, x = canvas.coords(box)
    width = _chest_width_scale(lay, z)
    in_cavity = ((y - lay.cy) / (lay.cav_ay + grow)) ** 2 + ((x - lay.cx) / (lay.cav_ax + grow)) ** 2 <= width * width
    beside_mediastinum = np.abs(x - lay.med_x) >= _mediastinum_half_width(lay, y)
    above_diaphragm = z >= dia[box[1:]][None] + (DIAPHRAGM_MM - grow)
    taper_from = lay.apex - 160.0 * lay.zs
    frac = np.clip((z[:, 0, 0] - taper_from) / (lay.apex + grow - taper_from), 0.0, 1.0)
    apex_radius2 = (0.75 * lay.cav_ax + grow) ** 2 * (1.0 - frac**2)
    x_side = np.where(x < lay.med_x, lay.cx - 0.5 * lay.cav_ax, lay.cx + 0.5 * lay.cav_ax)
    dist2 = (y - (lay.cy + 0.1 * lay.cav_ay)) ** 2 + (x - x_side) ** 2
    under_apex = dist2 <= apex_radius2[:, None, None]
    mask = in_cavity & beside_mediastinum & above_diaphragm & under_apex
    return box, mask, z, y, x


def _chest_width_scale(lay: _Layout, z):
    """How much narrower than at the base the thoracic cavity is at height z (1 low, 0.8 at the apex)."""
    span = 150.0 * lay.zs
    frac = np.clip((z - (lay.apex - span)) / span, 0.0, 1.0)
    return 1.0 - 0.2 * frac * frac


def _mediastinum_half_width(lay: _Layout, y):
    """Half-width (mm) of the gap between the lungs: narrow behind, wider in front (great vessels)."""
    front = np.clip((lay.cy - y) / lay.cav_ay + 0.2, 0.0, 1.0)
    return (18.0 + 22.0 * front) * lay.s


def _paint_lungs(canvas, lay: _Layout, dia):
    """Lungs split into lobes by an oblique fissure (both) and a horizontal one (right)."""
    box, mask, z, y, x = _lung_region(canvas, lay, dia)
    _paint_diaphragm(canvas, lay, dia, box)
    y_front, y_back = lay.cy - lay.cav_ay, lay.cy + lay.cav_ay
    frac_back = np.clip((y - y_front) / (y_back - y_front), 0.0, 1.0)
    oblique = lay.dome_l + (lay.carina - 10.0 * lay.zs - lay.dome_l) * frac_back
    upper = z > oblique
    above_horizontal = z >= lay.carina - 35.0 * lay.zs
    left = x >= lay.med_x
    right_lobe = np.where(
        upper,
        np.where(above_horizontal, IDS["lung_upper_lobe_right"], IDS["lung_middle_lobe_right"]),
        IDS["lung_lower_lobe_right"],
    )
    left_lobe = np.where(upper, IDS["lung_upper_lobe_left"], IDS["lung_lower_lobe_left"])
    lobes = np.where(left, left_lobe, right_lobe).astype(np.uint8)
    gradient_hu = (-865.0 + 40.0 * frac_back).astype(np.float32)
    canvas.paint(box, mask, gradient_hu, lobes)


def _paint_diaphragm(canvas, lay: _Layout, dia, box):
    """The diaphragm muscle (45 HU, label 0) between lung bases and abdominal organs."""
    z, y, x = canvas.coords(box)
    in_cavity = ((y - lay.cy) / lay.cav_ay) ** 2 + ((x - lay.cx) / lay.cav_ax) ** 2 <= 1.0
    height = z - dia[box[1:]][None]
    canvas.paint(box, in_cavity & (np.abs(height) < DIAPHRAGM_MM), 45.0, 0)


def _pleural_space(canvas, lay: _Layout, dia) -> np.ndarray:
    """Lung lobes plus a thin unlabelled rim where the chest wall and diaphragm meet them."""
    lab = canvas.labels
    pleural = (lab >= min(LOBE_IDS)) & (lab <= max(LOBE_IDS))
    box, grown, *_ = _lung_region(canvas, lay, dia, grow=PLEURAL_RIM_MM)
    _, core, *_ = _lung_region(canvas, lay, dia, grow=0.0, box=box)
    pleural[box] |= grown & ~core & (lab[box] == 0)
    return pleural


# ----------------------------------------------------------------------------- abdomen


def _paint_abdomen(rng, canvas, lay: _Layout, dia):
    """Liver, gallbladder, stomach with gas, spleen and kidneys, all kept under the diaphragm."""
    below = dia - DIAPHRAGM_MM
    zs, cay, cax = lay.zs, lay.cav_ay / lay.s, lay.cav_ax / lay.s
    liver_rz = rng.uniform(85, 100) * zs
    _paint_ellipsoid(
        canvas,
        lay.p(lay.dome_r - 0.55 * liver_rz, -0.05 * cay, -0.3 * cax),
        (liver_rz, 0.85 * lay.cav_ay, 0.72 * lay.cav_ax),
        60.0,
        IDS["liver"],
        below,
    )
    _paint_ellipsoid(
        canvas,
        lay.p(lay.dome_r - 75 * zs, -0.4 * cay, -0.35 * cax),
        (28 * zs, 14 * lay.s, 14 * lay.s),
        10.0,
        IDS["gallbladder"],
        below,
    )
    _paint_stomach(canvas, lay, below)
    _paint_ellipsoid(
        canvas,
        lay.p(lay.dome_l - 45 * zs, 0.5 * cay, 0.72 * cax),
        (50 * zs, 32 * lay.s, 22 * lay.s),
        50.0,
        IDS["spleen"],
        below,
    )
    for side, name in ((-1, "kidney_right"), (1, "kidney_left")):
        top = lay.dome_r if side < 0 else lay.dome_l
        _paint_ellipsoid(
            canvas,
            lay.p(top - 95 * zs, 0.62 * cay, side * 0.45 * cax),
            (55 * zs, 24 * lay.s, 28 * lay.s),
            35.0,
            IDS[name],
            below,
        )


def _paint_stomach(canvas, lay: _Layout, below):
    """Stomach under the left dome; the gas bubble floats anteriorly (supine patient)."""
    centre = lay.p(lay.dome_l - 45 * lay.zs, -0.15 * lay.cav_ay / lay.s, 0.4 * lay.cav_ax / lay.s)
    radii = (50 * lay.zs, 38 * lay.s, 42 * lay.s)
    box, r2 = _ellipsoid(canvas, centre, radii)
    if box is None:
        return
    z, y, _ = canvas.coords(box, centre)
    inside = (r2 <= 1.0) & (z + np.float32(centre[0]) < below[box[1:]][None])
    gas = inside & (r2 <= 0.7) & (y < -0.35 * radii[1])
    canvas.paint(box, inside, 30.0, IDS["stomach"])
    canvas.paint(box, gas, -1000.0, IDS["stomach"])


# ----------------------------------------------------------------------------- mediastinum


def _heart_geometry(lay: _Layout, dia_centre_mm: float):
    """Heart centre and radii: anterior-left, lower-mid chest, resting on the diaphragm."""
    h = lay.heart_scale
    radii = (55 * lay.zs * h, 48 * lay.s * h, 62 * lay.s * h)
    floor = max(dia_centre_mm, lay.dome_l - 25 * lay.zs)
    centre = lay.p(floor + 0.75 * radii[0], -0.3 * lay.cav_ay / lay.s, 18.0)
    return centre, radii


def _paint_heart(canvas, lay: _Layout, dia, centre, radii):
    """Heart ellipsoid above the diaphragm inside a 2 mm pericardial rim (label 0)."""
    above = dia + DIAPHRAGM_MM
    rim = 2.0
    box, r2_rim = _ellipsoid(canvas, centre, tuple(r + rim for r in radii))
    if box is None:
        return
    z = canvas.coords(box)[0]
    above_dia = z >= above[box[1:]][None]
    canvas.paint(box, (r2_rim <= 1.0) & above_dia, 25.0, 0)
    dz, dy, dx = canvas.coords(box, centre)
    r2 = (dz / radii[0]) ** 2 + (dy / radii[1]) ** 2 + (dx / radii[2]) ** 2
    canvas.paint(box, (r2 <= 1.0) & above_dia & (z >= above[box[1:]][None] + rim), 40.0, IDS["heart"])


def _paint_great_vessels(canvas, lay: _Layout, heart_c, heart_r):
    """Pulmonary trunk (label 0), aorta, SVC and IVC as tubes (rows z, y, x, radius)."""
    s, zs, car, vb = lay.s, lay.zs, lay.carina, lay.vb_dy
    hz, top = heart_c[0], heart_c[0] + heart_r[0]

    def path(rows):
        return _smooth_path([(*lay.p(z, dy, dx), r * s) for z, dy, dx, r in rows])

    trunk = [(hz + 0.5 * heart_r[0], -45, 22, 13), (car - 12 * zs, -22, 16, 13)]
    _paint_tube(canvas, path(trunk), 40.0, 0)
    _paint_tube(canvas, path([trunk[-1], (car - 20 * zs, 0, 55, 10)]), 40.0, 0)
    _paint_tube(canvas, path([trunk[-1], (car - 22 * zs, -14, -20, 10), (car - 25 * zs, -5, -55, 9)]), 40.0, 0)
    aorta = [
        (hz + 0.3 * heart_r[0], -18, 2, 14),
        (top + 5 * zs, -30, -10, 15),
        (car + 15 * zs, -30, -8, 14),
        (car + 32 * zs, -28, 2, 13),
        (car + 35 * zs, vb - 42, 26, 13),
        (car + 22 * zs, vb - 16, 26, 12),
        (car - 10 * zs, vb - 14, 25, 12),
        (-30.0, vb - 12, 18, 11),
    ]
    _paint_tube(canvas, path(aorta), 40.0, IDS["aorta"])
    svc = [(car + 40 * zs, -15, -38, 9), (hz + 0.5 * heart_r[0], -18, -36, 10)]
    _paint_tube(canvas, path(svc), 40.0, IDS["superior_vena_cava"])
    ivc = [(-30.0, vb - 20, -15, 11), (hz - 0.3 * heart_r[0], -20, -12, 12)]
    _paint_tube(canvas, path(ivc), 40.0, IDS["inferior_vena_cava"])


def _paint_airways_and_esophagus(canvas, lay: _Layout):
    """Trachea and main bronchi (walls + air lumen, all trachea) and the esophagus to the stomach."""
    s, zs, car, vb = lay.s, lay.zs, lay.carina, lay.vb_dy
    height = canvas.extent[0]

    def path(rows):
        return _smooth_path([(*lay.p(z, dy, dx), r * s) for z, dy, dx, r in rows])

    thoracic = [(height + 20, vb - 24, 3, 8), (car, vb - 24, 5, 8), (lay.dome_l, vb - 32, 18, 8)]
    to_stomach = (lay.dome_l - 40 * zs, -0.15 * lay.cav_ay / s, 0.4 * lay.cav_ax / s, 8)
    _paint_tube(canvas, path(thoracic + [to_stomach]), 40.0, IDS["esophagus"])
    _paint_tube(canvas, path(thoracic), -1000.0, IDS["esophagus"], radius_scale=0.3)
    trachea = path([(height + 20, vb - 46, 0, 10), (car + 20 * zs, vb - 44, 0, 10), (car, vb - 42, 0, 10)])
    right = path([(car, vb - 42, 0, 8), (car - 30 * zs, vb - 38, -32, 7)])
    left = path([(car, vb - 42, 0, 8), (car - 35 * zs, vb - 36, 45, 7)])
    for airway in (trachea, right, left):
        _paint_tube(canvas, airway, 40.0, IDS["trachea"])
    for airway in (trachea, right, left):
        _paint_tube(canvas, airway, -1000.0, IDS["trachea"], radius_scale=0.78)


# ----------------------------------------------------------------------------- bones and muscles


def _spine_yx(lay: _Layout):
    """(vertebral body centre y, canal centre y) in mm."""
    vb_y = lay.cy + lay.vb_dy * lay.s
    return vb_y, vb_y + 25.0 * lay.s


def _vertebra_levels(canvas, lay: _Layout, box):
    """Per-slice vertebra id (C1 50 .. L5 27, 0 outside) and disc flag, for the box's slices.

    T1 starts just above the lung apex; each level is 25 mm (scaled with the
    layout) with its disc in the lowest 4.5 mm.
    """
    z = canvas.axes[0][box[0]]
    pitch = 25.0 * lay.zs
    depth = (lay.apex + 8.0 * lay.zs - z) / pitch
    level = np.floor(depth).astype(int)
    disc = (depth - level) > 1.0 - 4.5 * lay.zs / pitch
    ids = np.where((level >= -7) & (level <= 16), IDS["vertebrae_T1"] - level, 0)
    return ids.astype(np.uint8), disc


def _paint_spine(canvas, lay: _Layout):
    """Vertebral bodies (cortex + cancellous), posterior elements, discs, canal and spinal cord."""
    s = lay.s
    vb_y, canal_y = _spine_yx(lay)
    box = canvas.box((-1e9, vb_y - 17 * s, lay.cx - 31 * s), (1e9, canal_y + 40 * s, lay.cx + 31 * s))
    z, y, x = canvas.coords(box)
    y, x = y[0], x[0]
    dx = np.abs(x - lay.cx)
    body_r2 = ((y - vb_y) / (16 * s)) ** 2 + (dx / (20 * s)) ** 2
    body = body_r2 <= 1.0
    cancellous = ((y - vb_y) / (16 * s - 2.5)) ** 2 + (dx / (20 * s - 2.5)) ** 2 <= 1.0
    canal_r = np.sqrt((y - canal_y) ** 2 + dx**2)
    posterior = (
        (canal_r <= 13 * s)
        | ((dx < 3.5 * s) & (y > canal_y + 9 * s) & (y < canal_y + 38 * s))
        | ((np.abs(y - canal_y) < 4.5 * s) & (dx < 30 * s))
    ) & (canal_r > 8 * s)
    ids, disc = _vertebra_levels(canvas, lay, box)
    present = (ids > 0)[:, None, None]
    bone_hu = np.where(cancellous, 250.0, 750.0).astype(np.float32)
    level_ids = ids[:, None, None]
    canvas.paint(box, body[None] & present & disc[:, None, None], 90.0, 0)
    canvas.paint(box, body[None] & present & ~disc[:, None, None], bone_hu[None], level_ids)
    canvas.paint(box, posterior[None] & present, 750.0, level_ids)
    canvas.paint(box, (canal_r <= 8 * s)[None] & present, 10.0, 0)
    conus = lay.apex + 8.0 * lay.zs - 14 * 25.0 * lay.zs
    canvas.paint(box, (canal_r <= 4.5 * s)[None] & present & (z > conus), 35.0, IDS["spinal_cord"])


def _paint_paraspinal_muscles(canvas, lay: _Layout):
    """Autochthonous back muscles either side of the spinous processes, whole length."""
    s = lay.s
    _, canal_y = _spine_yx(lay)
    for side, name in ((1, "autochthon_left"), (-1, "autochthon_right")):
        centre = (canvas.extent[0] / 2, canal_y + 20 * s, lay.cx + side * 22 * s)
        radii = (1e9, 20 * s, 17 * s)
        box, r2 = _ellipsoid(canvas, centre, radii)
        if box is not None:
            canvas.paint(box, r2 <= 1.0, 50.0, IDS[name])


RIB_END_ANGLE = (2.75,) * 7 + (2.6, 2.45, 2.3, 1.9, 1.5)
"""Angle (rad, 0 = posterior midline, pi = anterior) where each rib's bone ends."""


def _rib_path(lay: _Layout, n: int, side: int, theta):
    """Rows (z, y, x, radius) of rib n (1..12) on one side along an ellipse hugging the cavity."""
    pitch = 25.0 * lay.zs
    z_back = lay.apex + 8.0 * lay.zs - (n - 0.5) * pitch
    drop = (25.0 + 2.0 * n) * lay.zs
    z = z_back - drop * (theta - 0.38) / (2.75 - 0.38)
    shrink = _chest_width_scale(lay, z) * min(1.0, 0.8 + 0.1 * n)
    ry, rx = lay.cav_ay * shrink + 6 * lay.s, lay.cav_ax * shrink + 6 * lay.s
    y = lay.cy + ry * np.cos(theta)
    x = lay.cx + side * rx * np.sin(theta)
    return np.column_stack([z, y, x, np.full_like(theta, 4.5 * lay.s)])


def _paint_ribs_and_sternum(canvas, lay: _Layout):
    """Ribs 1-12 each side, costal cartilages of ribs 1-7, and the sternum."""
    for n, end in enumerate(RIB_END_ANGLE, start=1):
        for side, name in ((1, "left"), (-1, "right")):
            bone = _rib_path(lay, n, side, np.linspace(0.38, end, 12))
            _paint_tube(canvas, bone, 600.0, IDS[f"rib_{name}_{n}"])
            if n <= 7:
                cartilage = _rib_path(lay, n, side, np.linspace(end, 3.0, 3))
                _paint_tube(canvas, cartilage, 150.0, IDS["costal_cartilages"])
    top, bottom = lay.carina + 30 * lay.zs, lay.dome_r - 10 * lay.zs
    centre = ((top + bottom) / 2, lay.cy - lay.cav_ay - 6 * lay.s, lay.cx)
    box, r2 = _ellipsoid(canvas, centre, ((top - bottom) / 2, 7 * lay.s, 16 * lay.s))
    if box is not None:
        dz = canvas.coords(box, centre)[0]
        cross_section = r2 - (dz / ((top - bottom) / 2)) ** 2
        canvas.paint(box, (cross_section <= 1.0) & (np.abs(dz) <= (top - bottom) / 2), 450.0, IDS["sternum"])


# ----------------------------------------------------------------------------- lung vessels

PRIMARY_BRANCHES = (
    (1.0, 0.0, 0.3),
    (0.7, -0.6, 0.3),
    (0.6, 0.6, 0.3),
    (0.0, -0.2, 1.0),
    (-1.0, 0.2, 0.3),
    (-0.7, 0.7, 0.4),
    (-0.5, -0.7, 0.4),
    (-0.8, 0.1, 0.8),
)
"""Nominal (z, y, lateral) directions of the first pulmonary artery branches from each hilum."""


def _paint_pulmonary_vessels(rng, canvas, lay: _Layout):
    """Branching vessel trees from both hila, painted (40 HU) only onto lung voxels."""
    s, zs = lay.s, lay.zs
    hila = {-1: lay.p(lay.carina - 25 * zs, -5, -55), 1: lay.p(lay.carina - 22 * zs, 0, 55)}
    for side, hilum in hila.items():
        for dz, dy, dlat in PRIMARY_BRANCHES:
            direction = np.array([dz * zs, dy * s, side * dlat * s]) + rng.normal(0, 0.15, 3)
            _grow_vessel(rng, canvas, np.array(hilum), direction, 40.0, 4.5 * s, depth=4)


def _grow_vessel(rng, canvas, start, direction, length, radius, depth):
    """One vessel segment, then two thinner, shorter children bent randomly off it."""
    direction = direction / np.linalg.norm(direction)
    end = start + direction * length
    rows = np.array([[*start, radius], [*end, radius * 0.8]])
    _paint_tube(canvas, rows, 40.0, None, lungs_only=True)
    if depth == 0:
        return
    for _ in range(2):
        child = direction + rng.normal(0, 0.4, 3)
        _grow_vessel(rng, canvas, end, child, length * 0.8, radius * 0.7, depth - 1)


# ----------------------------------------------------------------------------- public API


def draw_anatomy(rng: np.random.Generator, size=(64, 256, 256), spacing=(5.0, 1.4, 1.4)) -> Anatomy:
    """Draw a normal chest CT (HU before blur/noise) with its exact TotalSegmentator label map."""
    canvas = _Canvas(size, spacing)
    lay = _draw_layout(rng, canvas)
    dia = _diaphragm_height(canvas, lay)
    body = _paint_body_layers(canvas, lay)
    _paint_lungs(canvas, lay, dia)
    _paint_abdomen(rng, canvas, lay, dia)
    heart_yx = canvas.index((0.0, *lay.yx(-0.3 * lay.cav_ay / lay.s, 18.0)))[1:]
    heart_c, heart_r = _heart_geometry(lay, float(dia[heart_yx]))
    _paint_heart(canvas, lay, dia, heart_c, heart_r)
    _paint_great_vessels(canvas, lay, heart_c, heart_r)
    _paint_airways_and_esophagus(canvas, lay)
    _paint_paraspinal_muscles(canvas, lay)
    _paint_ribs_and_sternum(canvas, lay)
    _paint_spine(canvas, lay)
    _paint_pulmonary_vessels(rng, canvas, lay)
    landmarks = _landmarks(canvas, lay, dia, body, heart_c)
    return Anatomy(hu=canvas.hu, labels=canvas.labels, spacing=canvas.spacing, landmarks=landmarks)


def _top_slice(labels, ids, fallback: int) -> int:
    """Highest z index holding any of ids (fallback when none is in the field of view)."""
    lo, hi = min(ids), max(ids)
    any_per_slice = ((labels >= lo) & (labels <= hi)).any(axis=(1, 2))
    found = np.flatnonzero(any_per_slice)
    return int(found[-1]) if found.size else fallback


def _landmarks(canvas, lay: _Layout, dia, body, heart_c) -> dict:
    index_z = canvas.index((lay.carina, 0.0, 0.0))[0]
    return {
        "carina_z": index_z,
        "diaphragm_z": _top_slice(canvas.labels, (IDS["liver"],), canvas.index((lay.dome_r, 0, 0))[0]),
        "body_mask": np.broadcast_to(body[None], canvas.shape).copy(),
        "pleural_space": _pleural_space(canvas, lay, dia),
        "heart_centre_zyx": canvas.index(heart_c),
        "lung_apex_z": _top_slice(canvas.labels, LOBE_IDS, canvas.index((lay.apex, 0, 0))[0]),
        "midline_x": canvas.index((0.0, 0.0, lay.cx))[2],
    }


def finish_image(
    rng: np.random.Generator, hu: np.ndarray, spacing, noise_hu: float = 12.0, blur_mm: float = 0.8
) -> np.ndarray:
    """Scanner look: Gaussian partial-volume blur (sigma blur_mm, per axis in voxels), then noise.

    Returns int16 HU clipped to [-1024, 3071]. Axes where sigma is under a
    tenth of a voxel (thick slices) are not blurred.
    """
    image = np.asarray(hu, np.float32)
    sigma = [blur_mm / float(sp) for sp in spacing]
    sigma = [sg if sg >= 0.1 else 0.0 for sg in sigma]
    if any(sigma):
        image = ndimage.gaussian_filter(image, sigma, truncate=3.0)
    else:
        image = image.copy()
    if noise_hu > 0:
        noise = rng.standard_normal(image.shape, dtype=np.float32)
        noise *= np.float32(noise_hu)
        image += noise
    np.clip(image, -1024, 3071, out=image)
    return np.rint(image, out=image).astype(np.int16)
