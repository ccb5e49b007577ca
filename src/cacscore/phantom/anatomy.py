"""Chest anatomy of one synthetic patient: sampling its shape and painting it in HU.

The patient is built in a local frame centred on the heart (x to the
patient's left, y posterior, z head-ward, mm) and placed in LPS by an
in-plane rotation (how the patient lies on the table) and a translation.
Every structure with bone density (> 130 HU: vertebrae, ribs, sternum,
calcified costal cartilage) is drawn on purpose, so that a plain threshold
does not find the coronary calcium.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from cacscore.phantom.render import (
    DistanceFn,
    Grid,
    capsule_distance,
    ellipse_distance,
    ellipsoid_distance,
    orthonormal_frame,
    paint,
)

if TYPE_CHECKING:
    from cacscore.phantom.variation import HeartShape, TissueHU

FAT_HU = -100.0
MUSCLE_HU = 48.0
BLOOD_HU = 42.0
AIR_HU = -1000.0


@dataclass
class Ellipsoid:
    """An ellipsoid in LPS mm: centre ``(3,)``, unit axes as columns ``(3, 3)``, semi-axes ``(3,)``."""

    center: np.ndarray
    axes: np.ndarray
    radii: np.ndarray

    def distance(self) -> DistanceFn:
        """Signed distance function of this ellipsoid (mm)."""
        return ellipsoid_distance(self.center, self.axes, self.radii)

    def bounds(self, margin_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned LPS bounding box ``(lo, hi)`` in mm."""
        half = np.sqrt(((self.axes * self.radii[None, :]) ** 2).sum(axis=1)) + margin_mm
        return self.center - half, self.center + half


def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum of two distance fields (mm); fills creases up to ``k / 4`` mm deep."""
    h = np.clip(k - np.abs(a - b), 0.0, None) / k
    return np.minimum(a, b) - h * h * k * 0.25


@dataclass
class Anatomy:
    """One patient's chest, everything in LPS mm (see the module docstring)."""

    rotation: np.ndarray  # (3, 3) local -> LPS
    heart_center: np.ndarray  # LPS mm
    body_center: np.ndarray  # LPS (x, y) mm
    body_radii: np.ndarray  # (LR, AP) mm
    fat_mm: float  # subcutaneous fat thickness
    wall_mm: float  # chest wall (fat + muscle) thickness to the pleura
    angle: float  # in-plane rotation, rad
    long_axis: np.ndarray  # heart long axis, base -> apex, unit LPS
    heart_base: np.ndarray  # centre of the atrioventricular plane, LPS
    heart_length_mm: float  # base to apex
    heart_parts: list[Ellipsoid]  # LV, RV, atria
    epicardial_fat_mm: float
    paracardial_fat_mm: float
    heart_hu: float
    surface_waves: np.ndarray  # (K, 3) wave vectors of the heart-surface bumps, rad/mm
    surface_phases: np.ndarray  # (K,) rad
    aortic_root: np.ndarray  # centre of the aortic valve plane, LPS
    aorta_axis: np.ndarray  # unit vector up the ascending aorta
    aorta_radius_mm: float
    left_ostium: np.ndarray
    right_ostium: np.ndarray
    spine_center: np.ndarray  # (x, y) of the vertebral body centre
    spine_radii: np.ndarray
    disc_phase_mm: float
    disc_period_mm: float
    desc_aorta: np.ndarray  # (x, y)
    desc_aorta_radius_mm: float
    sternum_center: np.ndarray  # (x, y)
    apex_z_mm: float
    top_z_mm: float  # highest point the scan should cover (above the LM)
    lung_hu: float
    rib_phase_mm: float
    cartilage_calcified: bool
    # Generator version 2 varies these; the defaults are version 1's fixed values.
    surface_bump_mm: float = 0.9
    fat_hu: float = FAT_HU
    muscle_hu: float = MUSCLE_HU
    epicardial_hu: float | None = None  # None: from the fat thickness (epicardial_fat_hu)
    breasts: list[Ellipsoid] = field(default_factory=list)
    breast_hu: float = 25.0
    blood_hu: float = BLOOD_HU

    def to_lps(self, local: np.ndarray) -> np.ndarray:
        """Local heart-frame point(s) (mm) to LPS mm."""
        return np.asarray(local, dtype=float) @ self.rotation.T + self.heart_center

    def heart_distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hard-union and groove-filling soft-union signed distances to the heart (mm)."""
        d = [part.distance()(x, y, z) for part in self.heart_parts]
        # Gentle bumps (a few mm over 4-9 cm) so that the outline is not a perfect ellipse.
        bumps = np.float32(0.0)
        for wave, phase in zip(self.surface_waves, self.surface_phases, strict=True):
            bumps = bumps + np.float32(self.surface_bump_mm) * np.sin(
                x * wave[0] + y * wave[1] + z * wave[2] + phase
            )
        hard = np.minimum(np.minimum(d[0], d[1]), d[2]) + bumps
        soft = smooth_min(smooth_min(d[0], d[1], 14.0), d[2], 16.0) + bumps
        return hard, soft

    def heart_bounds(self, margin_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """LPS bounding box of the heart plus ``margin_mm``."""
        boxes = [part.bounds(margin_mm) for part in self.heart_parts]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)


def sample_anatomy(
    rng: np.random.Generator,
    *,
    size: float,
    heart: HeartShape | None = None,
    tissue: TissueHU | None = None,
) -> Anatomy:
    """Draw one patient's chest.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (the only one).
    size : float
        Body size factor, 0 (slim) to 1 (large); drives body radii and fat.
    heart, tissue : HeartShape, TissueHU, optional
        Generator version 2: heart size, orientation, chamber layout, fat and tissue densities
        that replace version 1's narrow draws (which are still drawn, so that ``rng`` advances
        the same way).
    """
    angle_deg = rng.uniform(-8.0, 8.0)
    angle = float(np.deg2rad(angle_deg if heart is None else heart.body_rotation_deg))
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    heart_center = np.array([rng.uniform(-10, 30), rng.uniform(-30, 10), rng.uniform(-180, -60)])

    def lps(local: np.ndarray) -> np.ndarray:
        return np.asarray(local, dtype=float) @ rotation.T + heart_center

    def lps_dir(local: np.ndarray) -> np.ndarray:
        v = rotation @ np.asarray(local, dtype=float)
        return v / np.linalg.norm(v)

    body_lr = rng.uniform(135, 160) + 40 * size
    if heart is not None:
        body_lr += 60.0 * max(heart.scale - 1.0, 0.0)  # a large heart needs a wide chest
    fat_mm = rng.uniform(4, 12) + 28 * size * rng.uniform(0.5, 1.0)
    wall_mm = fat_mm + rng.uniform(9, 15)
    anterior_gap = rng.uniform(3, 12)

    # Heart: long axis from base to apex points left, anterior and down.
    psi = np.deg2rad(rng.uniform(35, 58))
    eps = np.deg2rad(rng.uniform(22, 42))
    if heart is not None:
        psi, eps = np.deg2rad(heart.azimuth_deg), np.deg2rad(heart.tilt_deg)
    a_local = np.array([np.cos(eps) * np.sin(psi), -np.cos(eps) * np.cos(psi), -np.sin(eps)])
    right_anterior = np.array([-1.0, -1.0, 0.0])
    e2 = right_anterior - (right_anterior @ a_local) * a_local
    e2 /= np.linalg.norm(e2)
    e3 = np.cross(a_local, e2)
    frame_local = np.stack([a_local, e2, e3], axis=1)
    frame = rotation @ frame_local
    s = rng.uniform(0.9, 1.1) * (1.0 + 0.06 * size)
    if heart is not None:
        s = heart.scale * (1.0 + 0.06 * size)
    length = rng.uniform(80, 92) * s
    r_lv = rng.uniform(25, 28.5) * s
    rv_offset, rv_scale, atria_scale = 0.72, 1.0, 1.0
    if heart is not None:
        r_lv *= heart.lv_radius_scale
        rv_offset, rv_scale, atria_scale = heart.rv_offset, heart.rv_scale, heart.atria_scale
    base = -a_local * length * 0.45
    parts_local = [
        # Ventricles widest at the base, narrowing to the apex; their tops hide in the atria.
        (base + a_local * length * 0.3 - e2 * 5, np.array([length * 0.75, r_lv, r_lv])),
        (
            base + a_local * length * 0.3 + e2 * r_lv * rv_offset,
            np.array([length * 0.62, r_lv * 0.62, r_lv * 1.05]) * rv_scale,
        ),
        (
            base - a_local * 20 + e2 * 2 + np.array([0, 4, 4]),
            np.array([rng.uniform(22, 27) * s, rng.uniform(36, 42) * s, rng.uniform(27, 32) * s])
            * atria_scale,
        ),
    ]
    lv, rv, atria = (Ellipsoid(lps(c), frame, r) for c, r in parts_local)
    local_bounds = [Ellipsoid(c, frame_local, r).bounds() for c, r in parts_local]
    heart_front_y = min(b[0][1] for b in local_bounds)
    heart_back_y = max(b[1][1] for b in local_bounds)
    apex_local = base + a_local * length * 1.05
    # Body around the heart: chest wall in front, oesophagus, aorta and spine behind.
    spine_radii = np.array([rng.uniform(18, 23), rng.uniform(14, 17)])
    spine_y = heart_back_y + rng.uniform(8, 18) + spine_radii[1]
    front_skin = heart_front_y - anterior_gap - wall_mm
    back_skin = spine_y + rng.uniform(70, 82) + 10 * size
    body_radii = np.array([body_lr, (back_skin - front_skin) / 2])
    body_center_local = np.array([-rng.uniform(25, 42), (back_skin + front_skin) / 2, 0.0])

    aorta_radius = rng.uniform(13, 17)
    root_local = base - a_local * 6 + e2 * 12 + np.array([0.0, 0.0, 8.0])
    aorta_axis = lps_dir(np.array([-0.12, -0.18, 1.0]))
    root = lps(root_local)
    sinus_center = root + aorta_axis * 6
    left_ostium = sinus_center + lps_dir(np.array([0.9, 0.25, 0.0])) * (aorta_radius + 1.5)
    right_ostium = (
        sinus_center + aorta_axis * 3 + lps_dir(np.array([-0.35, -0.95, 0.0])) * (aorta_radius + 1.5)
    )

    spine_local = np.array([body_center_local[0] + rng.uniform(-4, 4), spine_y, 0.0])
    desc_local = spine_local + np.array([rng.uniform(20, 30), -rng.uniform(14, 22), 0.0])
    sternum_local = np.array(
        [body_center_local[0] + rng.uniform(-4, 4), body_center_local[1] - body_radii[1] + fat_mm + 9.0, 0.0]
    )

    anatomy = Anatomy(
        rotation=rotation,
        heart_center=heart_center,
        body_center=lps(body_center_local)[:2],
        body_radii=body_radii,
        fat_mm=float(fat_mm),
        wall_mm=float(wall_mm),
        angle=angle,
        long_axis=frame[:, 0],
        heart_base=lps(base),
        heart_length_mm=float(length),
        heart_parts=[lv, rv, atria],
        epicardial_fat_mm=float(rng.uniform(1.0, 3.0) + 3.0 * size),
        paracardial_fat_mm=float(rng.uniform(0.5, 3.0) + 6.0 * size),
        heart_hu=float(rng.uniform(35, 55)),
        surface_waves=(
            orthonormal_frame(rng.normal(size=3)) * (2 * np.pi / rng.uniform(40, 90, 3))[None, :]
        ).T,
        surface_phases=rng.uniform(0, 2 * np.pi, 3),
        aortic_root=root,
        aorta_axis=aorta_axis,
        aorta_radius_mm=float(aorta_radius),
        left_ostium=left_ostium,
        right_ostium=right_ostium,
        spine_center=lps(spine_local)[:2],
        spine_radii=spine_radii,
        disc_phase_mm=float(rng.uniform(0, 26)),
        disc_period_mm=float(rng.uniform(23, 28)),
        desc_aorta=lps(desc_local)[:2],
        desc_aorta_radius_mm=float(rng.uniform(10, 14)),
        sternum_center=lps(sternum_local)[:2],
        apex_z_mm=float(lps(apex_local)[2]),
        top_z_mm=float(root[2] + 22.0),
        lung_hu=float(rng.uniform(-880, -820)),
        rib_phase_mm=float(rng.uniform(0, 30)),
        cartilage_calcified=bool(rng.random() < 0.4),
    )
    if heart is not None:
        anatomy = dataclasses.replace(
            anatomy,
            epicardial_fat_mm=heart.epicardial_fat_mm,
            paracardial_fat_mm=heart.paracardial_fat_mm,
            surface_bump_mm=heart.surface_bump_mm,
        )
    if tissue is not None:
        anatomy = dataclasses.replace(
            anatomy,
            heart_hu=tissue.heart_hu,
            lung_hu=tissue.lung_hu,
            fat_hu=tissue.fat_hu,
            muscle_hu=tissue.muscle_hu,
            epicardial_hu=tissue.epicardial_fat_hu,
            blood_hu=tissue.heart_hu,
        )
    return anatomy


def _local_xy(anatomy: Anatomy, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """In-plane patient-frame coordinates (mm, relative to the body centre), ``(Y, X)`` each."""
    x = grid.xs[None, :] - anatomy.body_center[0]
    y = grid.ys[:, None] - anatomy.body_center[1]
    cos, sin = np.cos(anatomy.angle), np.sin(anatomy.angle)
    return (x * cos + y * sin).astype(np.float32), (-x * sin + y * cos).astype(np.float32)


def _smooth_profile(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """A random smooth 1-D profile of length ``n`` with amplitude ~1 (a few cosine terms)."""
    t = np.linspace(0, 1, n, dtype=np.float32)
    out = np.zeros(n, dtype=np.float32)
    for k in range(1, 5):
        out += (
            rng.normal()
            / k
            * np.cos(2 * np.pi * k * t * scale + rng.uniform(0, 2 * np.pi)).astype(np.float32)
        )
    return out


def render_anatomy(grid: Grid, anatomy: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Paint the chest into a float32 ``(Z, Y, X)`` HU volume sampled at slice centres."""
    nz, ny, nx = grid.shape
    vol = np.full(grid.shape, AIR_HU, dtype=np.float32)
    full = (slice(0, nz), slice(0, ny), slice(0, nx))
    bx, by = anatomy.body_center
    rad = anatomy.body_radii
    ang = anatomy.angle
    for radii, value in (
        (rad, 20.0),
        (rad - 2.0, anatomy.fat_hu + rng.uniform(-8, 8)),
        (rad - anatomy.fat_mm, anatomy.muscle_hu),
    ):
        paint(vol, grid, full, ellipse_distance(anatomy.body_center, ang, radii), value, z_invariant=True)
    _paint_breasts(vol, grid, anatomy)
    lx, ly = _local_xy(anatomy, grid)
    cav_rad, cav_shift = _cavity(anatomy)
    cav = (lx / cav_rad[0]) ** 2 + ((ly - cav_shift) / cav_rad[1]) ** 2
    cavity2d = cav < 1.0
    # Lung parenchyma: denser posteriorly (dependent), with a low-frequency texture.
    gradient = (ly - cav_shift) / cav_rad[1]
    lung = (anatomy.lung_hu + 55.0 * np.clip(gradient, -1, 1) + 20.0 * gradient**2).astype(np.float32)
    texture = (
        _smooth_profile(rng, nz, 2.0)[:, None, None]
        * _smooth_profile(rng, ny, 3.0)[None, :, None]
        * _smooth_profile(rng, nx, 3.0)[None, None, :]
    )
    vol[:, cavity2d] = (lung[None, :, :] + 12.0 * texture)[:, cavity2d]

    # Liver under the right hemidiaphragm, spleen/stomach under the left; they rise into the lowest slices.
    dome = anatomy.apex_z_mm - rng.uniform(-5, 15)
    organs = (
        (
            np.array([bx - 0.35 * rad[0], by + 5.0, dome - 95.0]),
            np.array([0.75 * rad[0], 0.8 * rad[1], 100.0]),
            rng.uniform(55, 68),
        ),
        (
            np.array([bx + 0.45 * rad[0], by + 20.0, dome - 80.0]),
            np.array([0.45 * rad[0], 0.6 * rad[1], 75.0]),
            rng.uniform(38, 50),
        ),
    )
    for center, radii, value in organs:
        organ = Ellipsoid(center, np.eye(3), radii)
        box = grid.box(*organ.bounds(2.0))
        paint(vol, grid, box, organ.distance(), value, where=_cavity_box(cavity2d, box))

    heart = _HeartFields.compute(grid, anatomy)
    _paint_mediastinum(vol, grid, anatomy, heart, rng)
    _paint_ribs(vol, grid, anatomy, lx, ly, rng)
    _paint_spine(vol, grid, anatomy, rng)
    _paint_sternum(vol, grid, anatomy, rng)
    _paint_heart(vol, grid, anatomy, heart)
    _paint_great_vessels(vol, grid, anatomy)
    _paint_lung_vessels(vol, grid, anatomy, rng)
    return vol


def _cavity(anatomy: Anatomy) -> tuple[np.ndarray, float]:
    """Semi-axes (LR, AP) of the thoracic cavity and its AP shift from the body centre, mm.

    The posterior wall (paraspinal muscles) is thicker than the anterior one.
    """
    rad = anatomy.body_radii
    return np.array([rad[0] - anatomy.wall_mm - 6.0, rad[1] - anatomy.wall_mm * 0.5 - 22.0]), (
        anatomy.wall_mm * 0.5 - 22.0
    )


def _cavity_box(cavity2d: np.ndarray, box: tuple[slice, slice, slice] | None) -> np.ndarray | None:
    if box is None:
        return None
    return cavity2d[box[1], box[2]][None, :, :]


def _column(
    grid: Grid, xy: np.ndarray, radii: np.ndarray, angle: float = 0.0
) -> tuple[tuple[slice, slice, slice] | None, DistanceFn]:
    """Box and distance of a vertical elliptic column through every slice."""
    r = float(max(radii)) + 2.0
    lo = np.array([xy[0] - r, xy[1] - r, -1e9])
    hi = np.array([xy[0] + r, xy[1] + r, 1e9])
    return grid.box(lo, hi), ellipse_distance(xy, angle, np.asarray(radii))


def _paint_column(
    vol: np.ndarray, grid: Grid, xy: np.ndarray, radii: np.ndarray, value: float, angle: float = 0.0
) -> None:
    box, dist = _column(grid, xy, radii, angle)
    paint(vol, grid, box, dist, value, z_invariant=True)


def _paint_capsule(
    vol: np.ndarray, grid: Grid, a: np.ndarray, b: np.ndarray, r_a: float, r_b: float, value: float
) -> None:
    lo = np.minimum(a, b) - max(r_a, r_b) - 1.0
    hi = np.maximum(a, b) + max(r_a, r_b) + 1.0
    paint(vol, grid, grid.box(lo, hi), capsule_distance(a, b, r_a, r_b), value)


@dataclass
class _HeartFields:
    """Hard- and soft-union heart distances (mm) in one box, shared by the fat and heart painters."""

    box: tuple[slice, slice, slice] | None
    hard: np.ndarray
    soft: np.ndarray

    @classmethod
    def compute(cls, grid: Grid, anatomy: Anatomy) -> _HeartFields:
        margin = anatomy.epicardial_fat_mm + anatomy.paracardial_fat_mm + 2.0
        lo, hi = anatomy.heart_bounds(margin)
        box = grid.box(lo, hi)
        if box is None:
            empty = np.zeros((0, 0, 0), np.float32)
            return cls(None, empty, empty)
        # Distances are smooth: evaluate on every other row and column, interpolate linearly.
        x, y, z = grid.centres(box)
        hard, soft = anatomy.heart_distance(x[..., ::2], y[:, ::2], z)
        shape = (y.shape[1], x.shape[2])
        return cls(box, _upsample2(hard, shape), _upsample2(soft, shape))


def _upsample2(coarse: np.ndarray, shape_yx: tuple[int, int]) -> np.ndarray:
    """Linear 2x upsampling along axes 1 and 2 of a field sampled at even indices, cropped to ``shape_yx``."""
    out = coarse
    for axis, n in ((1, shape_yx[0]), (2, shape_yx[1])):
        a = np.moveaxis(out, axis, 0)
        fine = np.empty((2 * a.shape[0],) + a.shape[1:], dtype=np.float32)
        fine[0::2] = a
        fine[1:-1:2] = 0.5 * (a[:-1] + a[1:])
        fine[-1] = 2 * a[-1] - (a[-2] if a.shape[0] > 1 else a[-1])
        out = np.moveaxis(fine[:n], 0, axis)
    return np.ascontiguousarray(out)


def _paint_mediastinum(
    vol: np.ndarray, grid: Grid, anatomy: Anatomy, heart: _HeartFields, rng: np.random.Generator
) -> None:
    """Fat between the lungs.

    Behind the sternum, in front of the spine, and paracardial fat around the heart.
    """
    rot2 = anatomy.rotation[:2, :2]
    behind_sternum = anatomy.sternum_center + rot2 @ np.array([6.0, 14.0])
    fat_hu = anatomy.fat_hu
    _paint_column(vol, grid, behind_sternum, np.array([rng.uniform(10, 16), 14.0]), fat_hu, anatomy.angle)
    before_spine = anatomy.spine_center + rot2 @ np.array([8.0, -anatomy.spine_radii[1] - 14.0])
    _paint_column(vol, grid, before_spine, np.array([rng.uniform(22, 28), 18.0]), fat_hu, anatomy.angle)
    margin = anatomy.epicardial_fat_mm + anatomy.paracardial_fat_mm
    box3, soft = heart.box, heart.soft
    if box3 is not None:
        occ = np.clip(0.5 - (soft - margin) / grid.spacing[2], 0.0, 1.0)
        region = vol[box3]
        region += occ * (fat_hu - region)
    for a, b, ra, rb in _great_vessels(anatomy):
        _paint_capsule(vol, grid, a, b, ra + 3.0, rb + 3.0, fat_hu)
    # Descending aorta and oesophagus behind the heart, trachea and bronchi at the top.
    _paint_column(vol, grid, anatomy.desc_aorta, np.full(2, anatomy.desc_aorta_radius_mm + 4), fat_hu)
    _paint_column(vol, grid, anatomy.desc_aorta, np.full(2, anatomy.desc_aorta_radius_mm), anatomy.blood_hu)
    oes = anatomy.spine_center + anatomy.rotation[:2, :2] @ np.array([6.0, -anatomy.spine_radii[1] - 12.0])
    _paint_column(vol, grid, oes, np.array([8.0, 6.0]), 38.0)
    if rng.random() < 0.5:
        _paint_column(vol, grid, oes, np.array([2.5, 1.8]), AIR_HU)
    carina = np.array(
        [
            *(anatomy.spine_center + anatomy.rotation[:2, :2] @ np.array([-4.0, -30.0])),
            anatomy.top_z_mm + rng.uniform(5, 25),
        ]
    )
    _paint_capsule(vol, grid, carina + np.array([0, 0, 60.0]), carina, 9.0, 9.0, AIR_HU)
    rot = anatomy.rotation
    for target, radius in (((48.0, 10.0, -30.0), 6.5), ((-38.0, 8.0, -18.0), 7.0)):
        end = carina + rot @ np.array(target)
        _paint_capsule(vol, grid, carina, end, radius, radius * 0.7, AIR_HU)


def _paint_ribs(
    vol: np.ndarray, grid: Grid, anatomy: Anatomy, lx: np.ndarray, ly: np.ndarray, rng: np.random.Generator
) -> None:
    """Ribs: oblique bands in the chest wall, seen as short oval segments on each axial slice.

    A rib at angle ``theta`` (around the body) lies at height ``z_k + g(theta)``;
    ``g`` drops from the spine forwards, so every slice cuts several ribs.
    Costal cartilage continues the ribs next to the sternum (cartilage HU,
    sometimes calcified).
    """
    cav_rad, cav_shift = _cavity(anatomy)
    rho = np.sqrt((lx / cav_rad[0]) ** 2 + ((ly - cav_shift) / cav_rad[1]) ** 2)
    theta = np.arctan2(lx, ly - cav_shift)  # 0 posterior, +-pi anterior
    mean_r = float(cav_rad.mean())
    band = (rho > 1.0 - 2.0 / mean_r) & (rho < 1.0 + 10.0 / mean_r)
    idx = np.nonzero(band)
    if idx[0].size == 0:
        return
    depth = (rho[idx] - 1.0) * mean_r - 3.5  # mm from the rib centre line, radial
    th = np.abs(theta[idx])
    drop = 125.0 * (th / np.pi) ** 1.2  # ribs slope down towards the front
    period = 27.0
    anterior = th > np.pi * 0.86
    cortical, marrow = rng.uniform(550, 800), rng.uniform(180, 300)
    cartilage = 165.0 if anatomy.cartilage_calcified else 105.0
    for k, z in enumerate(grid.zs):
        u = z + drop - anatomy.rib_phase_mm
        dz = u - period * np.round(u / period)
        # Elliptic rib cross-section: ~7 mm radial, ~12 mm along z.
        q = (depth / 3.6) ** 2 + (dz / 6.0) ** 2
        inside = q < 1.0
        if not inside.any():
            continue
        value = np.where(q > 0.5, cortical, marrow).astype(np.float32)
        value = np.where(anterior, cartilage, value)
        vol[k, idx[0][inside], idx[1][inside]] = value[inside]


def _paint_spine(vol: np.ndarray, grid: Grid, anatomy: Anatomy, rng: np.random.Generator) -> None:
    """Vertebral body (cortical shell 700-1000 HU, cancellous 200-300 HU), discs, arch and processes."""
    rot2 = anatomy.rotation[:2, :2]
    c = anatomy.spine_center
    r = anatomy.spine_radii
    ang = anatomy.angle
    cortical = rng.uniform(700, 1000)
    cancellous = rng.uniform(200, 300)
    for side in (-1.0, 1.0):
        _paint_column(
            vol,
            grid,
            c + rot2 @ np.array([side * 32.0, r[1] + 30.0]),
            np.array([22.0, 24.0]),
            anatomy.muscle_hu + 5,
            ang,
        )
    _paint_column(vol, grid, c, r + 3.0, anatomy.fat_hu + 20, ang)
    canal = c + rot2 @ np.array([0.0, r[1] + 11.0])
    arch_parts = [
        (canal, np.array([13.0, 12.0]), cortical * 0.8),
        (c + rot2 @ np.array([0.0, r[1] + 33.0]), np.array([4.5, 13.0]), cortical * 0.7),
        (c + rot2 @ np.array([-24.0, r[1] + 16.0]), np.array([13.0, 5.5]), cortical * 0.7),
        (c + rot2 @ np.array([24.0, r[1] + 16.0]), np.array([13.0, 5.5]), cortical * 0.7),
    ]
    for center, radii, value in arch_parts:
        _paint_column(vol, grid, center, radii, value, ang)
    _paint_column(vol, grid, canal, np.array([8.0, 7.5]), 25.0, ang)
    _paint_column(vol, grid, c, r, cortical, ang)
    _paint_column(vol, grid, c, r - 1.8, cancellous, ang)
    # Intervertebral discs replace the body on the slices they cross.
    box, dist = _column(grid, c, r + 0.5, ang)
    if box is not None:
        zc = grid.zs[box[0]]
        phase = (zc - anatomy.disc_phase_mm) % anatomy.disc_period_mm
        disc = np.clip(1.0 - np.abs(phase - 3.0) / 4.0, 0.0, 1.0).astype(np.float32)
        x, y, _ = grid.centres(box)
        occ = np.clip(0.5 - dist(x, y, np.zeros((1, 1, 1), np.float32)) / grid.spacing[2], 0, 1)
        region = vol[box]
        region += disc[:, None, None] * occ * (rng.uniform(80, 105) - region)


def _paint_sternum(vol: np.ndarray, grid: Grid, anatomy: Anatomy, rng: np.random.Generator) -> None:
    radii = np.array([rng.uniform(13, 19), rng.uniform(5.5, 8.0)])
    _paint_column(vol, grid, anatomy.sternum_center, radii, rng.uniform(550, 800), anatomy.angle)
    _paint_column(vol, grid, anatomy.sternum_center, radii - 1.4, rng.uniform(150, 260), anatomy.angle)


def _paint_heart(vol: np.ndarray, grid: Grid, anatomy: Anatomy, heart: _HeartFields) -> None:
    """Epicardial fat (thicker in the grooves), the pericardium and the heart (blood = myocardium)."""
    t0 = anatomy.epicardial_fat_mm
    if heart.box is None:
        return
    px = grid.spacing[2]
    region = vol[heart.box]
    peri = np.clip(0.5 - (heart.soft - t0 - 0.5) / px, 0.0, 1.0)
    region += peri * (0.0 - region)
    fat = np.clip(0.5 - (heart.soft - t0) / px, 0.0, 1.0)
    region += fat * (epicardial_fat_hu(anatomy) - region)
    tissue = np.clip(0.5 - heart.hard / px, 0.0, 1.0)
    region += tissue * (anatomy.heart_hu - region)


def epicardial_fat_hu(anatomy: Anatomy) -> float:
    """Epicardial fat density of this patient, HU (version 1: -70 to -115, leaner patients denser)."""
    if anatomy.epicardial_hu is not None:
        return anatomy.epicardial_hu
    return -70.0 - 45.0 * min(1.0, anatomy.epicardial_fat_mm / 6.0)


def _paint_breasts(vol: np.ndarray, grid: Grid, anatomy: Anatomy) -> None:
    """Breasts in front of the chest wall (version 2): skin, fat and a glandular core."""
    for breast in anatomy.breasts:
        box = grid.box(*breast.bounds(2.0))
        paint(vol, grid, box, breast.distance(), 20.0)
        inner = Ellipsoid(breast.center, breast.axes, np.maximum(breast.radii - 2.0, 1.0))
        paint(vol, grid, box, inner.distance(), anatomy.fat_hu)
        core = Ellipsoid(breast.center, breast.axes, breast.radii * 0.6)
        paint(vol, grid, box, core.distance(), anatomy.breast_hu)


def _great_vessels(anatomy: Anatomy) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """Capsules of the ascending aorta, pulmonary arteries and superior vena cava.

    Each capsule is (start, end, radius, radius).
    """
    rot = anatomy.rotation
    root = anatomy.aortic_root
    r = anatomy.aorta_radius_mm
    pa0 = root + rot @ np.array([22.0, -22.0, 2.0])
    pa1 = pa0 + rot @ np.array([4.0, 26.0, 40.0])
    svc = root + rot @ np.array([-32.0, 8.0, 0.0])
    return [
        (root, root + anatomy.aorta_axis * 150.0, r, r),
        (pa0, pa1, 13.0, 13.0),
        (pa1, pa1 + rot @ np.array([36.0, 28.0, -6.0]), 11.0, 9.0),
        (pa1, pa1 + rot @ np.array([-55.0, 18.0, -8.0]), 11.0, 9.0),
        (svc, svc + np.array([0, 0, 150.0]), 10.0, 10.0),
    ]


def _paint_great_vessels(vol: np.ndarray, grid: Grid, anatomy: Anatomy) -> None:
    """Fat pad around the aortic root (where the coronaries leave), then the great vessels' lumens."""
    up = anatomy.aorta_axis
    r = anatomy.aorta_radius_mm
    pad = Ellipsoid(anatomy.aortic_root + up * 9.0, orthonormal_frame(up), np.array([13.0, r + 8.0, r + 8.0]))
    lo, hi = pad.bounds(2.0)
    paint(vol, grid, grid.box(lo, hi), pad.distance(), epicardial_fat_hu(anatomy))
    for a, b, ra, rb in _great_vessels(anatomy):
        _paint_capsule(vol, grid, a, b, ra, rb, anatomy.blood_hu)
    root = anatomy.aortic_root
    _paint_capsule(vol, grid, root + up * 3, root + up * 10, r + 3.0, r + 2.0, anatomy.blood_hu)


def _paint_lung_vessels(vol: np.ndarray, grid: Grid, anatomy: Anatomy, rng: np.random.Generator) -> None:
    """Pulmonary vessels: a random branching tree from each hilum, drawn only inside the lungs."""
    rot = anatomy.rotation
    root = anatomy.aortic_root
    segments: list[tuple[np.ndarray, np.ndarray, float, float]] = []
    for side in (-1.0, 1.0):
        hilum = root + rot @ np.array([side * 40.0, 32.0, rng.uniform(-5, 10)])
        stack = [
            (hilum, rot @ np.array([side, f, d]), 4.0, 0) for d in (0.9, 0.3, -0.3, -0.9) for f in (-0.6, 0.7)
        ]
        while stack:
            start, direction, radius, depth = stack.pop()
            direction = direction / np.linalg.norm(direction)
            end = start + direction * rng.uniform(12, 22) * (1.0 - 0.08 * depth)
            r_end = radius * 0.8
            segments.append((start, end, radius, r_end))
            if depth < 5 and r_end > 0.7:
                for _ in range(2 if depth > 1 else 3):
                    stack.append((end, direction + rng.normal(0.0, 0.5, 3), r_end, depth + 1))
    for a, b, ra, rb in segments:
        lo = np.minimum(a, b) - ra - 1.0
        hi = np.maximum(a, b) + ra + 1.0
        box = grid.box(lo, hi)
        if box is None:
            continue
        lung = vol[box] < -500.0
        paint(vol, grid, box, capsule_distance(a, b, ra, rb), 35.0, where=lung)


__all__ = ["BLOOD_HU", "FAT_HU", "Anatomy", "Ellipsoid", "render_anatomy", "sample_anatomy"]
