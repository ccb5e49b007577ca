"""The chest around the heart, and the painting of the whole anatomy onto the coarse sub-plane grid.

The thorax is built *around* a sampled heart: the anterior chest wall just in
front of its most anterior point, the spine behind the left atrium with room
for the oesophagus and descending aorta, the lateral walls wide enough for a
lung on either side. Tissue values are drawn per case (non-contrast blood,
myocardium, fat, lung, muscle, bone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cacscore.phantom_sdf.heart import Branch, Heart
from cacscore.phantom_sdf.scanner import SliceGrid
from cacscore.phantom_sdf.shapes import superquadric

Array = np.ndarray


@dataclass(frozen=True)
class Tissues:
    """HU of each tissue in one case."""

    air: float
    lung: float
    lung_gradient: float
    fat_subcutaneous: float
    fat_epicardial: float
    fat_mediastinal: float
    muscle: float
    myocardium: float
    blood: float
    pericardium: float
    liver: float
    stomach: float
    cortical_bone: float
    trabecular_bone: float
    cartilage: float
    disc: float
    csf: float
    glandular: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Tissues:
        u = rng.uniform
        return cls(
            air=float(u(-1010, -990)),
            lung=float(u(-900, -800)),
            lung_gradient=float(u(20, 60)),
            fat_subcutaneous=float(u(-120, -80)),
            fat_epicardial=float(u(-115, -65)),
            fat_mediastinal=float(u(-115, -70)),
            muscle=float(u(40, 60)),
            myocardium=float(u(35, 55)),
            blood=float(u(30, 60)),
            pericardium=float(u(15, 40)),
            liver=float(u(50, 68)),
            stomach=float(u(20, 40)),
            cortical_bone=float(u(550, 950)),
            trabecular_bone=float(u(150, 280)),
            cartilage=float(u(70, 115)),
            disc=float(u(70, 100)),
            csf=float(u(5, 15)),
            glandular=float(u(5, 40)),
        )

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 1) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Thorax:
    """Chest geometry around the heart (LPS mm)."""

    centre_y: float
    semi_x: float
    semi_y: float
    exponent: float
    subcutaneous_mm: float
    muscle_mm: float
    sternum_half_width_mm: float
    spine_x: float
    spine_y: float
    vertebra_radii: tuple[float, float]
    disc_period_mm: float
    disc_phase_mm: float
    aorta_xy: tuple[float, float]
    aorta_radius_mm: float
    oesophagus_xy: tuple[float, float]
    oesophagus_radius_mm: float
    mediastinum_half_width_mm: float
    pericardial_gap_mm: float
    dome_left: tuple[float, float, float]
    dome_right: tuple[float, float, float]
    dome_radius_mm: float
    rib_period_mm: float
    rib_phase_mm: float
    rib_drop_mm: float
    rib_size_mm: tuple[float, float]
    cartilage_angle_deg: float
    breasts: tuple[tuple[float, float, float, float, float, float], ...]
    gas_bubble: tuple[float, float, float, float] | None

    def body_sd(self, x: Array, y: Array) -> Array:
        """2-D signed distance to the skin, mm."""
        return superquadric(
            x, y - self.centre_y, np.zeros((1, 1), np.float32), (self.semi_x, self.semi_y, 1e6), self.exponent
        )

    def dome_z(self, x: Array, y: Array) -> Array:
        """Height of the diaphragm (mm): the higher of the two domes."""
        out = []
        for cx, cy, cz in (self.dome_left, self.dome_right):
            r2 = (x - cx) ** 2 + (y - cy) ** 2
            out.append(cz - r2 / (2 * self.dome_radius_mm))
        return np.maximum(out[0], out[1]).astype(np.float32)


def heart_extent(heart: Heart, branches: list[Branch] | None = None) -> tuple[Array, Array]:
    """Bounding box (LPS mm, ``(lo, hi)`` of x, y, z) of the heart with its fat and great-vessel roots."""
    centre = heart.frame.to_patient(np.array([[0.3 * heart.lv_length_mm, 0.0, 0.0]]))[0]
    ax = [centre[k] + np.arange(-96.0, 96.1, 4.0) for k in range(3)]
    x, y, z = np.meshgrid(*ax, indexing="ij")
    chambers, _, _ = heart.ventricles_atria(x, y, z)
    a, _, _ = heart.frame.local(x, y, z)
    inside = (chambers - heart.fat_thickness(a, x, y, z)) < 4.0
    idx = np.argwhere(inside)
    lo = np.array([ax[k][idx[:, k].min()] for k in range(3)]) - 4.0
    hi = np.array([ax[k][idx[:, k].max()] for k in range(3)]) + 4.0
    if branches:
        pts = np.concatenate([b.points for b in branches])
        lo = np.minimum(lo, pts.min(axis=0) - 6.0)
        hi = np.maximum(hi, pts.max(axis=0) + 6.0)
    return lo, hi


def sample_thorax(rng: np.random.Generator, heart_lo: Array, heart_hi: Array, female: bool) -> Thorax:
    """Chest around a heart occupying ``heart_lo..heart_hi`` (LPS mm)."""
    u = rng.uniform
    subcut = float(u(6, 35))
    muscle = float(u(14, 24))
    wall = subcut + muscle
    anterior_inner = heart_lo[1] + float(u(3.0, 12.0))  # the right ventricle touches the chest wall
    body_front = anterior_inner - wall - 8.0  # sternum depth
    vr = (float(u(17, 23)), float(u(14, 19)))
    spine_front = heart_hi[1] + float(u(16, 28))
    spine_y = spine_front + vr[1]
    body_back = spine_y + vr[1] + float(u(45, 65)) + subcut
    centre_y = (body_front + body_back) / 2
    semi_y = (body_back - body_front) / 2
    need_x = max(abs(heart_lo[0]), abs(heart_hi[0])) + wall + float(u(25, 60))
    semi_x = max(semi_y * float(u(1.3, 1.7)), need_x)
    spine_x = float(u(-4, 4))
    ao_r = float(u(10, 14))
    aorta = (spine_x + float(u(14, 26)), spine_front - ao_r * float(u(0.3, 0.9)))
    oes = (spine_x + float(u(-6, 4)), spine_front - float(u(8, 12)))
    z_apex = float(heart_lo[2])
    left_top = z_apex + float(u(-2, 12))
    dome_left = (float(u(0.35, 0.55)) * semi_x, centre_y + float(u(-10, 20)), left_top)
    dome_right = (-float(u(0.35, 0.55)) * semi_x, centre_y + float(u(-10, 20)), left_top + float(u(5, 25)))
    breasts: tuple[tuple[float, float, float, float, float, float], ...] = ()
    if female:
        size = float(u(0.6, 1.3))
        zc = float(heart_lo[2] + u(10, 45))
        breasts = tuple(
            (
                side * float(u(0.35, 0.55)) * semi_x,
                body_front + 10.0,
                zc,
                55.0 * size,
                40.0 * size * float(u(0.6, 1.2)),
                45.0 * size,
            )
            for side in (-1.0, 1.0)
        )
    gas = None
    if rng.random() < 0.5:
        gas = (
            dome_left[0] + float(u(-15, 15)),
            dome_left[1] - float(u(0, 25)),
            left_top - float(u(8, 20)),
            float(u(8, 25)),
        )
    return Thorax(
        centre_y=centre_y,
        semi_x=semi_x,
        semi_y=semi_y,
        exponent=float(u(2.0, 2.8)),
        subcutaneous_mm=subcut,
        muscle_mm=muscle,
        sternum_half_width_mm=float(u(13, 20)),
        spine_x=spine_x,
        spine_y=spine_y,
        vertebra_radii=vr,
        disc_period_mm=float(u(24, 31)),
        disc_phase_mm=float(u(0, 30)),
        aorta_xy=aorta,
        aorta_radius_mm=ao_r,
        oesophagus_xy=oes,
        oesophagus_radius_mm=float(u(6, 9)),
        mediastinum_half_width_mm=float(u(8, 18)),
        pericardial_gap_mm=float(u(0.0, 5.0)),
        dome_left=dome_left,
        dome_right=dome_right,
        dome_radius_mm=float(u(120, 220)),
        rib_period_mm=float(u(20, 27)),
        rib_phase_mm=float(u(0, 25)),
        rib_drop_mm=float(u(70, 110)),
        rib_size_mm=(float(u(7, 11)), float(u(10, 15))),
        cartilage_angle_deg=float(u(25, 40)),
        breasts=breasts,
        gas_bubble=gas,
    )


def _mix(out: Array, occupancy: Array, hu: float | Array) -> None:
    """``out = out * (1 - occ) + occ * hu`` in place (partial volume)."""
    out += occupancy * (np.float32(hu) - out) if np.ndim(hu) == 0 else occupancy * (hu - out)


def _occ(sd: Array, px: float) -> Array:
    """Area fraction inside a surface from its signed distance (mm) at pixel size ``px`` mm."""
    return np.clip(0.5 - sd / np.float32(px), 0.0, 1.0).astype(np.float32)


def _interp_axis(a: Array, axis: int, pos: Array) -> Array:
    """Linear interpolation of ``a`` along ``axis`` at fractional indices ``pos`` (clamped)."""
    pos = np.clip(pos, 0, a.shape[axis] - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, a.shape[axis] - 1)
    w = (pos - i0).astype(np.float32)
    shape = [1] * a.ndim
    shape[axis] = len(pos)
    w = w.reshape(shape)
    return (np.take(a, i0, axis) * (1 - w) + np.take(a, i1, axis) * w).astype(np.float32)


def paint_anatomy(
    grid: SliceGrid,
    thorax: Thorax,
    heart: Heart,
    branches: list[Branch],
    tissues: Tissues,
    rng: np.random.Generator,
    extent: tuple[Array, Array] | None = None,
) -> tuple[Array, dict[str, Array]]:
    """HU of every sub-plane on the coarse grid, and the heart fields on it.

    Parameters
    ----------
    grid : SliceGrid
    thorax, heart, branches, tissues
        The case's anatomy and tissue values.
    rng : numpy.random.Generator
        For the lung texture and the pulmonary vessels.
    extent : tuple of 2 ndarray, optional
        :func:`heart_extent` of the heart with its coronaries, if already known.

    Returns
    -------
    planes : (n_sub, Yc, Xc) ndarray of float32
        The object before the slice profile and the point spread, HU.
    heart_fields : dict
        ``box`` (index slices into ``planes``), ``outer``, ``fat`` (signed distances, mm) and
        ``vessel`` (signed distance to the coronary lumens, mm) inside the box.
    """
    xs, ys = grid.coarse_xy()
    zs = grid.sub_z()
    px = float(xs[1] - xs[0]) if len(xs) > 1 else grid.spacing[2]
    X = xs[None, :].astype(np.float32)
    Y = ys[:, None].astype(np.float32)
    t = thorax
    nz, ny, nx = len(zs), len(ys), len(xs)
    planes = np.empty((nz, ny, nx), dtype=np.float32)

    # 2-D maps (the chest is an extrusion; z enters through ribs, discs, diaphragm, heart, breasts).
    body = t.body_sd(X, Y)
    inner = body + np.float32(t.subcutaneous_mm + t.muscle_mm)
    dome = t.dome_z(X, Y)
    vx, vy = X - t.spine_x, Y - t.spine_y
    vertebra = superquadric(vx, vy, np.zeros((1, 1), np.float32), (*t.vertebra_radii, 1e6), 2.4)
    canal_y = t.spine_y + t.vertebra_radii[1] + 9.0
    canal = np.sqrt(vx**2 + (Y - canal_y) ** 2) - 8.0
    arch = np.sqrt(vx**2 + (Y - canal_y) ** 2) - 14.0
    spinous = superquadric(vx, Y - canal_y - 26.0, np.zeros((1, 1), np.float32), (5.0, 16.0, 1e6))
    transverse = superquadric(vx, Y - canal_y + 2.0, np.zeros((1, 1), np.float32), (34.0, 5.0, 1e6))
    posterior_bone = np.minimum(np.minimum(np.maximum(arch, -canal), spinous), transverse)
    aorta = np.sqrt((X - t.aorta_xy[0]) ** 2 + (Y - t.aorta_xy[1]) ** 2) - t.aorta_radius_mm
    oes = np.sqrt((X - t.oesophagus_xy[0]) ** 2 + (Y - t.oesophagus_xy[1]) ** 2) - t.oesophagus_radius_mm
    anterior = Y < t.centre_y
    sternum = np.maximum(np.abs(X - t.spine_x) - t.sternum_half_width_mm, np.abs(inner - 4.0) - 5.0)
    sternum = np.where(anterior, sternum, 99.0).astype(np.float32)
    # Ribs: polar angle around the chest centre, 0 = anterior; a rib descends as it runs forwards.
    theta = np.arctan2(X, -(Y - t.centre_y))
    progress = np.clip(1.0 - np.abs(theta) / np.pi, 0.0, 1.0)  # 0 at the spine, 1 at the sternum
    rib_radial = inner - np.float32(t.rib_size_mm[0] / 2 + 1.0)
    cartilage_zone = np.abs(theta) < np.deg2rad(t.cartilage_angle_deg)
    # Superior mediastinum (above the aortic root): a rounded column from the sternum to the spine.
    mid_y = (t.centre_y - t.semi_y + t.spine_y) / 2
    mediastinum = (
        superquadric(
            X - t.spine_x,
            Y - mid_y,
            np.zeros((1, 1), np.float32),
            (t.mediastinum_half_width_mm, (t.spine_y - t.centre_y + t.semi_y) / 2, 1e6),
            2.5,
        )
        < 0
    )
    posterior_med = np.minimum(np.minimum(aorta, oes), vertebra) < 6.0

    # Lung texture: smooth blobs from a coarse random field.
    small = rng.standard_normal((max(nz // 6, 2), max(ny // 12, 2), max(nx // 12, 2))).astype(np.float32)
    blobs = _interp_axis(small, 0, np.linspace(0, small.shape[0] - 1, nz))
    blobs = _interp_axis(blobs, 1, np.linspace(0, small.shape[1] - 1, ny))
    blobs = _interp_axis(blobs, 2, np.linspace(0, small.shape[2] - 1, nx))

    # Heart fields on a 2 mm grid over its box, interpolated to the coarse grid.
    lo = np.array([xs[0], ys[0], zs[0]])
    pts = np.concatenate([b.points for b in branches]) if branches else np.zeros((0, 3))
    hlo, hhi = heart_extent(heart) if extent is None else extent
    hlo = np.minimum(hlo, pts.min(axis=0) - 8.0) if len(pts) else hlo
    hhi = np.maximum(hhi, pts.max(axis=0) + 8.0) if len(pts) else hhi
    hlo = hlo - 6.0
    hhi = hhi + 6.0
    ix0, ix1 = (
        int(np.clip(np.floor((hlo[0] - lo[0]) / px), 0, nx)),
        int(np.clip(np.ceil((hhi[0] - lo[0]) / px), 0, nx)),
    )
    iy0, iy1 = (
        int(np.clip(np.floor((hlo[1] - lo[1]) / px), 0, ny)),
        int(np.clip(np.ceil((hhi[1] - lo[1]) / px), 0, ny)),
    )
    h = grid.sub_step_mm
    iz0, iz1 = (
        int(np.clip(np.floor((hlo[2] - lo[2]) / h), 0, nz)),
        int(np.clip(np.ceil((hhi[2] - lo[2]) / h), 0, nz)),
    )
    step = 2.5  # the heart's distance fields are smooth: sampled at 2.5 mm, interpolated
    gx = np.arange(xs[ix0] - step, xs[max(ix1 - 1, ix0)] + 2 * step, step) if ix1 > ix0 else np.array([0.0])
    gy = np.arange(ys[iy0] - step, ys[max(iy1 - 1, iy0)] + 2 * step, step) if iy1 > iy0 else np.array([0.0])
    gz = np.arange(zs[iz0] - step, zs[max(iz1 - 1, iz0)] + 2 * step, step) if iz1 > iz0 else np.array([0.0])
    GZ, GY, GX = np.meshgrid(
        gz.astype(np.float32), gy.astype(np.float32), gx.astype(np.float32), indexing="ij"
    )
    coarse_fields = heart.fields(GX, GY, GZ)
    fields: dict[str, Array] = {}
    for name in ("outer", "fat", "blood"):
        f = coarse_fields[name]
        f = _interp_axis(f, 0, (zs[iz0:iz1] - gz[0]) / step)
        f = _interp_axis(f, 1, (ys[iy0:iy1] - gy[0]) / step)
        fields[name] = _interp_axis(f, 2, (xs[ix0:ix1] - gx[0]) / step)
    vessel, sleeve = _vessel_distance(branches, xs[ix0:ix1], ys[iy0:iy1], zs[iz0:iz1])
    lung_vessel = _capsules(lung_vessels(rng, heart), xs, ys, zs)
    fields["vessel"] = vessel
    fields["box"] = np.array([iz0, iz1, iy0, iy1, ix0, ix1])

    ti = tissues
    # The z-independent layers, once (with and without an intervertebral disc in the plane).
    static = np.full((ny, nx), ti.air, dtype=np.float32)
    _mix(static, _occ(body, px), ti.fat_subcutaneous)
    _mix(static, _occ(body + t.subcutaneous_mm, px), ti.muscle)
    _mix(static, _occ(inner, px), ti.fat_mediastinal)
    _mix(static, _occ(sternum, px), ti.cortical_bone)
    _mix(static, _occ(sternum + 1.5, px), ti.trabecular_bone)
    _mix(static, _occ(posterior_bone - 8.0, px), ti.muscle)
    _mix(static, _occ(posterior_bone, px), ti.cortical_bone)
    _mix(static, _occ(posterior_bone + 2.5, px), ti.trabecular_bone)
    _mix(static, _occ(canal, px), ti.csf)
    _mix(static, _occ(aorta, px), ti.blood)
    _mix(static, _occ(oes, px), ti.muscle - 10.0)
    static_disc = static.copy()
    _mix(static, _occ(vertebra, px), ti.cortical_bone)
    _mix(static, _occ(vertebra + 2.0, px), ti.trabecular_bone)
    _mix(static_disc, _occ(vertebra, px), ti.disc)
    band = np.nonzero(
        (np.abs(rib_radial) < t.rib_size_mm[0]) & (np.abs(X - t.spine_x) > t.sternum_half_width_mm + 2)
    )
    band_progress = np.broadcast_to(progress, (ny, nx))[band]
    band_radial = np.broadcast_to(rib_radial, (ny, nx))[band]
    band_cartilage = np.broadcast_to(cartilage_zone, (ny, nx))[band]
    band_bone = np.where(band_cartilage, ti.cartilage, ti.cortical_bone).astype(np.float32)
    lung_candidate = (inner < -1.0) & ~posterior_med
    lung_static = (ti.lung + ti.lung_gradient * (Y - t.centre_y) / t.semi_y) * np.ones((ny, nx), np.float32)
    z_base = float(heart.root_centre[2])

    for k, z in enumerate(zs):
        p = planes[k]
        in_disc = abs(((z - t.disc_phase_mm) / t.disc_period_mm) % 1.0 - 0.5) * t.disc_period_mm < 3.0
        p[:] = static_disc if in_disc else static
        # ribs and costal cartilage: a rib descends as it runs forwards (steepest anteriorly)
        rib_n = (z + band_progress**1.5 * t.rib_drop_mm - t.rib_phase_mm) / t.rib_period_mm
        rib_dz = (rib_n - np.round(rib_n)) * t.rib_period_mm
        half_t, half_h = t.rib_size_mm[0] / 2, t.rib_size_mm[1] / 2
        rib_sd = (np.sqrt((band_radial / half_t) ** 2 + (rib_dz / half_h) ** 2) - 1.0) * np.float32(half_t)
        vals = p[band]
        occ = _occ(rib_sd, px)
        vals += occ * (band_bone - vals)
        occ = _occ(rib_sd + 1.5, px) * ~band_cartilage
        vals += occ * (np.float32(ti.trabecular_bone) - vals)
        p[band] = vals
        for bx, by, bz, rx, ry, rz in t.breasts:
            if abs(z - bz) < rz:
                sd = superquadric(X - bx, Y - by, np.full((1, 1), z - bz, np.float32), (rx, ry, rz))
                front = (Y < t.centre_y) & (body > -2.0)
                _mix(p, _occ(sd, px) * front, ti.fat_subcutaneous)
                p[(blobs[k] > 0.3) & (sd < -8.0) & front] = ti.glandular
        # abdomen below the diaphragm; lungs above it, outside the mediastinum
        below = (dome > z) & (inner < 0)
        liver_side = X < t.spine_x + 25.0
        p[below & liver_side] = ti.liver
        p[below & ~liver_side] = ti.stomach
        if t.gas_bubble is not None:
            gx0, gy0, gz0, gr = t.gas_bubble
            if abs(z - gz0) < gr:
                gas = np.sqrt((X - gx0) ** 2 + (Y - gy0) ** 2 + (z - gz0) ** 2) - gr
                _mix(p, _occ(gas, px) * (below & ~liver_side), ti.air)
        lung = lung_candidate & (dome <= z - 2.0)
        if z >= z_base:
            lung &= ~mediastinum
        in_box = iz0 <= k < iz1
        if in_box:
            sub_lung = lung[iy0:iy1, ix0:ix1]
            sub_lung &= (fields["fat"][k - iz0] > 1.5 + t.pericardial_gap_mm) & (
                fields["vessel"][k - iz0] > 6.0
            )
        p[lung] = (lung_static + 45.0 * blobs[k])[lung]
        _mix(p, _occ(lung_vessel[k], px) * lung, ti.blood)
        if in_box:
            q = p[iy0:iy1, ix0:ix1]
            o, f, b = fields["outer"][k - iz0], fields["fat"][k - iz0], fields["blood"][k - iz0]
            _mix(q, _occ(f - 1.2, px) * (o > -3.0) * (f > -30.0), ti.pericardium)
            _mix(q, _occ(f, px) * (o > -3.0), ti.fat_epicardial)
            _mix(q, _occ(o, px), ti.myocardium)
            _mix(q, _occ(b, px), ti.blood)
            _mix(q, _occ(sleeve[k - iz0], px) * (o > -2.0), ti.fat_epicardial)
            _mix(q, _occ(vessel[k - iz0], px), ti.blood)
    return planes, fields


def _vessel_distance(branches: list[Branch], xs: Array, ys: Array, zs: Array) -> tuple[Array, Array]:
    """Signed distance (mm) to the coronary lumens and to their fat sleeves (2.5 mm).

    Both are computed on a box of the coarse grid.
    """
    if not branches:
        shape = (len(zs), len(ys), len(xs))
        return np.full(shape, 99.0, dtype=np.float32), np.full(shape, 99.0, dtype=np.float32)
    points = np.concatenate([b.points[::2] for b in branches])
    radii = np.concatenate([b.radius_mm[::2] for b in branches])
    return _sweep(points, radii, xs, ys, zs, 2.5)


def _sweep(
    points: Array, radii: Array, xs: Array, ys: Array, zs: Array, sleeve_mm: float
) -> tuple[Array, Array]:
    """Signed distance (mm) to a union of spheres on a grid, and to the spheres grown by ``sleeve_mm``."""
    shape = (len(zs), len(ys), len(xs))
    lumen = np.full(shape, 99.0, dtype=np.float32)
    sleeve = np.full(shape, 99.0, dtype=np.float32)
    if not all(shape):
        return lumen, sleeve
    px = float(xs[1] - xs[0]) if len(xs) > 1 else 1.0
    h = float(zs[1] - zs[0]) if len(zs) > 1 else 1.0
    for c, r in zip(points, radii, strict=True):
        reach = float(r) + sleeve_mm + 1.0
        i0 = max(int(np.floor((c[0] - reach - xs[0]) / px)), 0)
        i1 = min(int(np.ceil((c[0] + reach - xs[0]) / px)) + 1, len(xs))
        j0 = max(int(np.floor((c[1] - reach - ys[0]) / px)), 0)
        j1 = min(int(np.ceil((c[1] + reach - ys[0]) / px)) + 1, len(ys))
        k0 = max(int(np.floor((c[2] - reach - zs[0]) / h)), 0)
        k1 = min(int(np.ceil((c[2] + reach - zs[0]) / h)) + 1, len(zs))
        if i0 >= i1 or j0 >= j1 or k0 >= k1:
            continue
        dx = (xs[i0:i1] - c[0]).astype(np.float32)[None, None, :]
        dy = (ys[j0:j1] - c[1]).astype(np.float32)[None, :, None]
        dz = (zs[k0:k1] - c[2]).astype(np.float32)[:, None, None]
        d = np.sqrt(dx * dx + dy * dy + dz * dz) - np.float32(r)
        np.minimum(lumen[k0:k1, j0:j1, i0:i1], d, out=lumen[k0:k1, j0:j1, i0:i1])
        if sleeve_mm > 0:
            np.minimum(sleeve[k0:k1, j0:j1, i0:i1], d - sleeve_mm, out=sleeve[k0:k1, j0:j1, i0:i1])
    return lumen, sleeve


def lung_vessels(rng: np.random.Generator, heart: Heart) -> Array:
    """Pulmonary vessel trees from both hila.

    Segments ``(N, 8)`` = start xyz, end xyz, start and end radius (mm).

    Each hilum sends 7-11 trunks outwards (3-5 mm radius, 25-45 mm long), each dividing
    four times into two thinner, shorter children at 25-45 degrees.
    """
    la = heart.frame.to_patient(np.array([heart.la.centre]))[0]
    segments: list[Array] = []
    for side in (1.0, -1.0):  # patient left, then right
        hilum = la + np.array([side * rng.uniform(35, 55), rng.uniform(-5, 10), rng.uniform(0, 15)])
        stack = []
        for _ in range(int(rng.integers(7, 12))):
            d = np.array([side * rng.uniform(0.4, 1.0), rng.uniform(-0.6, 0.8), rng.uniform(-0.9, 0.9)])
            stack.append(
                (hilum, d / np.linalg.norm(d), float(rng.uniform(3.0, 5.0)), float(rng.uniform(25, 45)), 0)
            )
        while stack:
            start, d, r, length, depth = stack.pop()
            end = start + d * length
            segments.append(np.concatenate([start, end, [r, r * 0.8]]))
            if depth < 4:
                for _ in range(2):
                    turn = rng.normal(0, 1, 3)
                    turn -= (turn @ d) * d
                    turn /= max(float(np.linalg.norm(turn)), 1e-6)
                    angle = np.deg2rad(rng.uniform(25, 45))
                    child = np.cos(angle) * d + np.sin(angle) * turn
                    stack.append((end, child, r * 0.68, length * 0.75, depth + 1))
    return np.array(segments)


def _capsules(segments: Array, xs: Array, ys: Array, zs: Array) -> Array:
    """Signed distance (mm) to a union of tapered capsules (rows of :func:`lung_vessels`) on a grid."""
    shape = (len(zs), len(ys), len(xs))
    out = np.full(shape, 99.0, dtype=np.float32)
    for seg in segments:
        a, b, r0, r1 = seg[:3], seg[3:6], float(seg[6]), float(seg[7])
        lo = np.minimum(a, b) - max(r0, r1) - 1.0
        hi = np.maximum(a, b) + max(r0, r1) + 1.0
        i0, i1 = np.searchsorted(xs, lo[0]), np.searchsorted(xs, hi[0])
        j0, j1 = np.searchsorted(ys, lo[1]), np.searchsorted(ys, hi[1])
        k0, k1 = np.searchsorted(zs, lo[2]), np.searchsorted(zs, hi[2])
        if i0 >= i1 or j0 >= j1 or k0 >= k1:
            continue
        d = (b - a).astype(np.float32)
        px = (xs[i0:i1] - a[0]).astype(np.float32)[None, None, :]
        py = (ys[j0:j1] - a[1]).astype(np.float32)[None, :, None]
        pz = (zs[k0:k1] - a[2]).astype(np.float32)[:, None, None]
        t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / max(float(d @ d), 1e-6), 0.0, 1.0)
        dist = np.sqrt((px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 + (pz - t * d[2]) ** 2) - (
            r0 + t * (r1 - r0)
        )
        np.minimum(out[k0:k1, j0:j1, i0:i1], dist, out=out[k0:k1, j0:j1, i0:i1])
    return out
