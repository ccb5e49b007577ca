"""The heart as blended signed-distance chambers, its epicardial fat, great vessels and coronary trees.

The heart has its own frame: origin at the centre of the atrioventricular
(AV) plane, axis ``a`` along the long axis from base to apex, ``b`` towards
anterior, ``c`` towards the patient's right. Four chambers are superquadrics
(random size, shape exponent and placement) blended with a smooth minimum and
roughened by Gaussian bumps. The epicardial fat is a shell of random,
patchy thickness outside the myocardium, thickest in the AV and
interventricular grooves, plus a sleeve around every coronary artery.

Coronary centrelines are built in the frame's cylindrical coordinates
(position ``a`` along the long axis, angle ``phi`` around it, measured from
``b`` towards ``c``) and lifted onto the surface ``sd = radius + gap`` by
bisection along the radial ray, so that they run in the grooves: the AV
groove (RCA, LCX) and the anterior and posterior interventricular grooves
(LAD, PDA), whose angles are found where the left and right ventricle meet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cacscore.phantom_sdf.shapes import Bumps, Frame, frame_from_axis, polyline_tube, smooth_min, superquadric

Array = np.ndarray


@dataclass(frozen=True)
class Chamber:
    """A superquadric chamber in the heart frame: outer surface and blood cavity."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    wall_mm: float
    exponent: float

    def outer(self, a: Array, b: Array, c: Array) -> Array:
        return superquadric(
            a - self.centre[0], b - self.centre[1], c - self.centre[2], self.radii, self.exponent
        )

    def cavity(self, a: Array, b: Array, c: Array) -> Array:
        rx, ry, rz = (max(r - self.wall_mm, 2.0) for r in self.radii)
        return superquadric(
            a - self.centre[0], b - self.centre[1], c - self.centre[2], (rx, ry, rz), self.exponent
        )


@dataclass(frozen=True)
class Heart:
    """One sampled heart (geometry in mm, LPS patient space through :attr:`frame`)."""

    frame: Frame
    lv_length_mm: float
    lv: Chamber
    rv: Chamber
    la: Chamber
    ra: Chamber
    blend_mm: float
    bumps: Bumps
    fat_base_mm: float
    fat_groove_mm: float
    fat_bumps: Bumps
    aorta_nodes: Array
    aorta_radius_mm: float
    root_centre: Array
    root_radius_mm: float
    pa_nodes: Array
    pa_radius_mm: float
    svc_nodes: Array
    svc_radius_mm: float

    # -- fields -------------------------------------------------------------------------------------
    def ventricles_atria(self, x: Array, y: Array, z: Array) -> tuple[Array, Array, Array]:
        """Signed distance to the four-chamber surface, and to the LV and RV alone, mm."""
        a, b, c = self.frame.local(x, y, z)
        lv = self.lv.outer(a, b, c)
        rv = self.rv.outer(a, b, c)
        atria = smooth_min(self.la.outer(a, b, c), self.ra.outer(a, b, c), self.blend_mm)
        ventricles = smooth_min(lv, rv, self.blend_mm * 0.6)
        sd = smooth_min(ventricles, atria, self.blend_mm) + self.bumps(x, y, z)
        return sd, lv, rv

    def great_vessels(self, x: Array, y: Array, z: Array) -> Array:
        """Signed distance to the aortic root, ascending aorta, pulmonary trunk and superior vena cava, mm."""
        root = superquadric(
            x - self.root_centre[0],
            y - self.root_centre[1],
            z - self.root_centre[2],
            (self.root_radius_mm, self.root_radius_mm, self.root_radius_mm * 0.8),
        )
        sd = np.minimum(root, polyline_tube(x, y, z, self.aorta_nodes, self.aorta_radius_mm))
        sd = np.minimum(sd, polyline_tube(x, y, z, self.pa_nodes, self.pa_radius_mm))
        return np.minimum(sd, polyline_tube(x, y, z, self.svc_nodes, self.svc_radius_mm))

    def fields(self, x: Array, y: Array, z: Array) -> dict[str, Array]:
        """Signed distances (mm) for painting.

        ``outer`` (heart and great vessels), ``fat`` (outer minus the epicardial fat thickness), ``blood``
        (cavities and vessel lumens), ``chambers`` (four-chamber surface).
        """
        chambers, _, _ = self.ventricles_atria(x, y, z)
        vessels = self.great_vessels(x, y, z)
        outer = smooth_min(chambers, vessels, 3.0)
        a, b, c = self.frame.local(x, y, z)
        rv_cavity = np.maximum(self.rv.cavity(a, b, c), -self.lv.outer(a, b, c) - 1.0)
        blood = np.minimum(self.lv.cavity(a, b, c), rv_cavity)
        blood = np.minimum(blood, np.minimum(self.la.cavity(a, b, c), self.ra.cavity(a, b, c)))
        blood = np.minimum(blood, vessels + 2.0)  # vessel walls 2 mm
        thickness = self.fat_thickness(a, x, y, z)
        return {"outer": outer, "fat": outer - thickness, "blood": blood, "chambers": chambers}

    def fat_thickness(self, a: Array, x: Array, y: Array, z: Array) -> Array:
        """Epicardial fat thickness (mm, >= 0): base + AV-groove ridge + patches."""
        ridge = np.float32(self.fat_groove_mm) * np.exp(-(a * a) / np.float32(2 * 8.0**2))
        return np.maximum(np.float32(self.fat_base_mm) + ridge + self.fat_bumps(x, y, z), 0.0)

    # -- helpers for the coronary tree ---------------------------------------------------------------
    def ray_points(self, a: Array, phi: Array, rho: Array) -> Array:
        """``(N, 3)`` patient points at frame position ``a``, angle ``phi`` (rad) and radius ``rho``."""
        local = np.stack([a, rho * np.cos(phi), rho * np.sin(phi)], axis=-1)
        return self.frame.to_patient(local)

    def project(self, a: Array, phi: Array, target_mm: Array, iterations: int = 22) -> Array:
        """Points on the surface ``chambers = target`` along the radial rays (bisection), ``(N, 3)``."""
        a = np.asarray(a, dtype=float)
        phi = np.asarray(phi, dtype=float)
        lo = np.zeros_like(a)
        hi = np.full_like(a, 110.0)
        for _ in range(iterations):
            mid = (lo + hi) / 2
            p = self.ray_points(a, phi, mid)
            sd, _, _ = self.ventricles_atria(p[:, 0], p[:, 1], p[:, 2])
            inside = sd < target_mm
            lo = np.where(inside, mid, lo)
            hi = np.where(inside, hi, mid)
        return self.ray_points(a, phi, (lo + hi) / 2)

    def outward(self, points: Array) -> Array:
        """Unit gradient of the chamber surface distance at ``(N, 3)`` points (pointing out of the heart)."""
        eps = 0.5
        grads = []
        for k in range(3):
            d = np.zeros(3)
            d[k] = eps
            hi, _, _ = self.ventricles_atria(*(points + d).T)
            lo, _, _ = self.ventricles_atria(*(points - d).T)
            grads.append((hi - lo) / (2 * eps))
        g = np.stack(grads, axis=1).astype(float)
        return g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-6)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def sample_heart(rng: np.random.Generator, origin: Array, top_z_mm: float) -> Heart:
    """Draw a heart with its AV-plane centre at ``origin`` (LPS mm); great vessels reach ``top_z_mm``.

    Long axis 100-140 mm (ventricles 62-88 mm plus atria), tilted 30-60 degrees from the left-right
    axis towards anterior and 18-42 degrees below the axial plane.
    """
    azimuth = np.deg2rad(_u(rng, 30, 60))
    elevation = np.deg2rad(_u(rng, 18, 42))
    axis = np.array(
        [np.cos(elevation) * np.cos(azimuth), -np.cos(elevation) * np.sin(azimuth), -np.sin(elevation)]
    )
    frame = frame_from_axis(origin, axis, towards=np.array([0.0, -1.0, 0.0]))
    if frame.axes[2] @ np.array([-1.0, 0.0, 0.0]) < 0:  # make c point to the patient's right
        frame = Frame(frame.origin, np.stack([frame.axes[0], frame.axes[1], -frame.axes[2]]))
    lv_len = _u(rng, 62, 88)
    r_lv = _u(rng, 23, 31)
    lv = Chamber(
        (0.47 * lv_len, _u(rng, -3, 3), _u(rng, -8, -3)),
        (0.55 * lv_len, r_lv, r_lv * _u(rng, 0.88, 1.0)),
        _u(rng, 8, 12.5),
        _u(rng, 2.0, 2.3),
    )
    rv = Chamber(
        (_u(rng, 0.3, 0.4) * lv_len, _u(rng, 9, 16), _u(rng, 13, 21)),
        (_u(rng, 0.42, 0.5) * lv_len, _u(rng, 16, 22), _u(rng, 24, 31)),
        _u(rng, 3.0, 4.5),
        _u(rng, 2.0, 2.6),
    )
    la = Chamber(
        (_u(rng, -30, -23), _u(rng, -26, -17), _u(rng, -16, -7)),
        (_u(rng, 16, 21), _u(rng, 17, 23), _u(rng, 21, 28)),
        _u(rng, 2.0, 3.0),
        _u(rng, 2.0, 2.4),
    )
    ra = Chamber(
        (_u(rng, -24, -15), _u(rng, -10, -3), _u(rng, 21, 29)),
        (_u(rng, 16, 21), _u(rng, 16, 21), _u(rng, 18, 24)),
        _u(rng, 2.0, 3.0),
        _u(rng, 2.0, 2.4),
    )
    blend = _u(rng, 5, 10)
    centre_patient = frame.to_patient(np.array([[0.3 * lv_len, 0.0, 0.0]]))[0]
    bumps = Bumps.sample(rng, centre_patient, 35.0, 6, (10.0, 22.0), (-2.5, 2.5))
    fat_base = float(
        rng.choice([_u(rng, 0.0, 1.5), _u(rng, 1.5, 4.0), _u(rng, 4.0, 8.0)], p=[0.3, 0.45, 0.25])
    )
    fat_bumps = Bumps.sample(rng, centre_patient, 40.0, 8, (8.0, 22.0), (-4.0, 6.0))

    root_local = np.array([_u(rng, -16, -10), _u(rng, 8, 15), _u(rng, 1, 8)])
    root_centre = frame.to_patient(root_local[None])[0]
    root_r = _u(rng, 12, 16)
    ao_r = _u(rng, 13, 17.5)
    tilt = np.array([_u(rng, -0.35, -0.1), _u(rng, -0.3, 0.0), 1.0])  # up, a little right and anterior
    tilt /= np.linalg.norm(tilt)
    ao_len = max(top_z_mm - root_centre[2], 10.0) / tilt[2] + 30.0
    aorta_nodes = np.stack([root_centre, root_centre + tilt * ao_len * 0.5, root_centre + tilt * ao_len])
    pa_start = frame.to_patient(np.array([[_u(rng, -8, -3), _u(rng, 20, 27), _u(rng, -10, -3)]]))[0]
    pa_dir = np.array([_u(rng, 0.2, 0.5), _u(rng, 0.2, 0.5), 1.0])
    pa_dir /= np.linalg.norm(pa_dir)
    pa_len = max(top_z_mm - pa_start[2], 10.0) / pa_dir[2] + 25.0
    pa_nodes = np.stack([pa_start, pa_start + pa_dir * pa_len])
    svc_start = frame.to_patient(np.array([[ra.centre[0] - 8.0, ra.centre[1], ra.centre[2] + 2.0]]))[0]
    svc_nodes = np.stack([svc_start, svc_start + np.array([_u(rng, -4, 2), _u(rng, -2, 4), 200.0])])
    heart = Heart(
        frame=frame,
        lv_length_mm=lv_len,
        lv=lv,
        rv=rv,
        la=la,
        ra=ra,
        blend_mm=blend,
        bumps=bumps,
        fat_base_mm=fat_base,
        fat_groove_mm=_u(rng, 3.0, 9.0),
        fat_bumps=fat_bumps,
        aorta_nodes=aorta_nodes,
        aorta_radius_mm=ao_r,
        root_centre=root_centre,
        root_radius_mm=root_r,
        pa_nodes=pa_nodes,
        pa_radius_mm=_u(rng, 10.5, 14),
        svc_nodes=svc_nodes,
        svc_radius_mm=_u(rng, 8, 10.5),
    )
    return heart


# --------------------------------------------------------------------------------------------------
# Coronary trees


@dataclass
class Branch:
    """One coronary branch: a dense centreline (0.4 mm steps) with radius and a local frame.

    Attributes
    ----------
    name : str
        Branch name (``LM``, ``LAD``, ``D1``, ``LCX``, ``OM1``, ``RCA``, ``PDA``, ``AM``, ``PL``).
    artery : str
        Artery whose label the branch's calcium takes (``LM``, ``LAD``, ``LCX``, ``RCA``).
    points : (N, 3) ndarray
        Centreline, LPS mm.
    radius_mm : (N,) ndarray
        Lumen radius.
    tangent, normal : (N, 3) ndarray
        Unit tangent and unit normal pointing away from the myocardium.
    s_mm : (N,) ndarray
        Arc length from the branch origin.
    parent : str or None
        Branch it leaves, and ``parent_s_mm`` where.
    """

    name: str
    artery: str
    points: Array
    radius_mm: Array
    tangent: Array
    normal: Array
    s_mm: Array
    parent: str | None = None
    parent_s_mm: float = 0.0

    @property
    def length_mm(self) -> float:
        return float(self.s_mm[-1])


def _resample(points: Array, step: float = 0.4) -> tuple[Array, Array]:
    """Points resampled at equal arc-length steps; returns ``(points, s)``."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(s[-1] / step) + 1, 2)
    s_new = np.linspace(0.0, s[-1], n)
    out = np.stack([np.interp(s_new, s, points[:, k]) for k in range(3)], axis=1)
    return out, s_new


def _smooth(points: Array, passes: int = 3) -> Array:
    out = points.copy()
    for _ in range(passes):
        out[1:-1] = 0.25 * out[:-2] + 0.5 * out[1:-1] + 0.25 * out[2:]
    return out


def _finish(
    heart: Heart,
    name: str,
    artery: str,
    raw: Array,
    r0: float,
    r1: float,
    parent: str | None = None,
    parent_s: float = 0.0,
) -> Branch:
    pts, s = _resample(_smooth(raw, 4))
    tangent = np.gradient(pts, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    out = heart.outward(pts)
    normal = out - np.sum(out * tangent, axis=1, keepdims=True) * tangent
    bad = np.linalg.norm(normal, axis=1) < 1e-3
    if bad.any():
        normal[bad] = np.cross(tangent[bad], [0.0, 0.0, 1.0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    frac = s / max(s[-1], 1e-6)
    radius = r0 + (r1 - r0) * frac**0.8
    return Branch(name, artery, pts, radius, tangent, normal, s, parent, parent_s)


def _wiggle(rng: np.random.Generator, t: Array, amplitude_mm: float) -> Array:
    """A smooth random offset along a path (2-3 sinusoids), mm."""
    out = np.zeros_like(t)
    for _ in range(int(rng.integers(2, 4))):
        out += (
            rng.uniform(0.3, 1.0)
            * amplitude_mm
            * np.sin(2 * np.pi * rng.uniform(1.0, 5.0) * t + rng.uniform(0, 2 * np.pi))
        )
    return out


def _groove_path(
    heart: Heart,
    rng: np.random.Generator,
    a: Array,
    phi: Array,
    radius: Array,
    gap_mm: float,
    tortuosity_mm: float,
) -> Array:
    """Surface path through ``(a, phi)`` samples, lifted to ``sd = radius + gap`` with tortuosity."""
    t = np.linspace(0.0, 1.0, len(a))
    rho_guess = 40.0
    phi = phi + _wiggle(rng, t, tortuosity_mm) / rho_guess
    a = a + _wiggle(rng, t, tortuosity_mm * 0.6)
    target = radius + gap_mm + np.abs(_wiggle(rng, t, 0.4))
    return heart.project(a, phi, target)


def _groove_angles(heart: Heart) -> tuple[float, float]:
    """Angles (rad) of the anterior and posterior interventricular grooves (where LV and RV meet)."""
    lv_len = heart.lv_length_mm
    phis = np.deg2rad(np.arange(-180.0, 180.0, 2.0))
    ant, post = [], []
    for frac in (0.25, 0.4, 0.55, 0.7):
        a = np.full_like(phis, frac * lv_len)
        p = heart.project(a, phis, np.zeros_like(phis), iterations=16)
        _, lv, rv = heart.ventricles_atria(p[:, 0], p[:, 1], p[:, 2])
        rv_side = rv < lv
        change = np.flatnonzero(rv_side != np.roll(rv_side, 1))
        if len(change) < 2:
            continue
        angles = phis[change]
        ant.append(angles[np.argmin(np.abs(np.angle(np.exp(1j * angles))))])
        post.append(angles[np.argmin(np.abs(np.angle(np.exp(1j * (angles - np.pi)))))])
    a_phi = float(np.angle(np.mean(np.exp(1j * np.array(ant))))) if ant else np.deg2rad(-15.0)
    p_phi = float(np.angle(np.mean(np.exp(1j * np.array(post))))) if post else np.deg2rad(175.0)
    return a_phi, p_phi


def build_tree(heart: Heart, rng: np.random.Generator, dominance: str) -> list[Branch]:
    """Coronary branches of one heart: LM, LAD with diagonals, LCX with marginals, RCA with its branches.

    Parameters
    ----------
    heart : Heart
    rng : numpy.random.Generator
    dominance : {"right", "left", "co"}
        Which artery gives the posterior descending artery (PDA): RCA, LCX, or both short.
    """
    lv = heart.lv_length_mm
    phi_ant, phi_post = _groove_angles(heart)
    phi_post_pos = phi_post % (2 * np.pi)  # crux, as an angle > 0 (RCA runs through +90 deg)
    tort = float(rng.uniform(0.5, 3.0))
    gap = float(rng.uniform(0.3, 1.6))
    a_av = float(rng.uniform(-3.0, 2.0))
    branches: list[Branch] = []

    # Ostia on the aortic root: left towards the LAD groove, right towards anterior-right.
    root = heart.root_centre
    bif_phi = phi_ant - np.deg2rad(rng.uniform(15, 35))
    r_lm = float(rng.uniform(1.9, 2.3))
    p_bif = heart.project(np.array([a_av + 3.0]), np.array([bif_phi]), np.array([r_lm + gap + 1.0]))[0]
    to_bif = p_bif - root
    ostium_l = root + to_bif / np.linalg.norm(to_bif) * heart.root_radius_mm * 0.95
    lm_raw = np.linspace(ostium_l, p_bif, 12)
    lm_raw += np.outer(np.sin(np.linspace(0, np.pi, 12)), rng.normal(0, 1.5, 3))
    branches.append(_finish(heart, "LM", "LM", lm_raw, r_lm, r_lm * 0.92))

    # LAD: anterior interventricular groove from the bifurcation to (around) the apex.
    n = 80
    a_lad = np.linspace(a_av + 4.0, lv * float(rng.uniform(0.92, 1.02)), n)
    r_lad0 = float(rng.uniform(1.5, 2.0))
    radius = r_lad0 + (0.8 - r_lad0) * np.linspace(0, 1, n)
    phi = np.linspace(bif_phi, phi_ant, n) + np.deg2rad(rng.uniform(-5, 5))
    lad_raw = np.vstack([p_bif[None], _groove_path(heart, rng, a_lad, phi, radius, gap, tort)])
    lad = _finish(heart, "LAD", "LAD", lad_raw, r_lad0, 0.8, "LM", branches[0].length_mm)
    branches.append(lad)

    # LCX: left AV groove, round to the crux when left-dominant.
    r_lcx0 = float(rng.uniform(1.4, 1.9))
    ends = {"left": phi_post_pos - 2 * np.pi, "co": phi_post_pos - 2 * np.pi + np.deg2rad(25)}
    end = float(ends[dominance]) if dominance in ends else float(np.deg2rad(rng.uniform(-150, -105)))
    phi = np.linspace(bif_phi - np.deg2rad(10), end, n)
    lcx_r_end = 1.1 if dominance == "left" else 0.8
    radius = r_lcx0 + (lcx_r_end - r_lcx0) * np.linspace(0, 1, n)
    a_lcx = np.full(n, a_av) + np.linspace(2.0, 0.0, n)
    lcx_raw = np.vstack([p_bif[None], _groove_path(heart, rng, a_lcx, phi, radius, gap, tort)])
    lcx = _finish(heart, "LCX", "LCX", lcx_raw, r_lcx0, lcx_r_end, "LM", branches[0].length_mm)
    branches.append(lcx)

    # RCA: from the right ostium into the right AV groove, round to the crux unless left-dominant.
    r_rca0 = float(rng.uniform(1.6, 2.2))
    start_phi = np.deg2rad(rng.uniform(25, 55))
    end_phi = phi_post_pos if dominance != "left" else np.deg2rad(rng.uniform(110, 150))
    phi = np.linspace(start_phi, end_phi, n)
    rca_r_end = 1.2 if dominance != "left" else 0.8
    radius = r_rca0 + (rca_r_end - r_rca0) * np.linspace(0, 1, n)
    groove = _groove_path(heart, rng, np.full(n, a_av) + np.linspace(-2.0, 0.5, n), phi, radius, gap, tort)
    to_first = groove[0] - root
    ostium_r = root + to_first / np.linalg.norm(to_first) * heart.root_radius_mm * 0.95
    rca_raw = np.vstack([np.linspace(ostium_r, groove[0], 8)[:-1], groove])
    rca = _finish(heart, "RCA", "RCA", rca_raw, r_rca0, rca_r_end)
    branches.append(rca)

    # PDA (posterior interventricular groove) from the dominant artery; co-dominance: short, from the RCA.
    owner = lcx if dominance == "left" else rca
    m = 40
    pda_len = lv * (rng.uniform(0.55, 0.85) if dominance != "co" else rng.uniform(0.3, 0.45))
    a_pda = np.linspace(a_av + 2.0, a_av + pda_len, m)
    r_pda = float(owner.radius_mm[-1])
    pda_raw = np.vstack(
        [
            owner.points[-1][None],
            _groove_path(heart, rng, a_pda, np.full(m, phi_post), np.full(m, r_pda), gap, tort),
        ]
    )
    branches.append(_finish(heart, "PDA", owner.artery, pda_raw, r_pda, 0.75, owner.name, owner.length_mm))

    # Side branches: diagonals off the LAD, marginals off the LCX, an acute marginal off the RCA.
    def side(parent: Branch, name: str, frac: float, d_phi_deg: float, length: float, r0: float) -> None:
        i = int(frac * (len(parent.s_mm) - 1))
        p0 = parent.points[i]
        local = (p0 - heart.frame.origin) @ heart.frame.axes.T
        a0 = float(local[0])
        phi0 = float(np.arctan2(local[2], local[1]))
        k = 30
        a_path = np.linspace(a0 + 2.0, min(a0 + length, lv * 0.98), k)
        phi_path = phi0 + np.deg2rad(d_phi_deg) * np.linspace(0.15, 1.0, k) ** 0.7
        raw = np.vstack([p0[None], _groove_path(heart, rng, a_path, phi_path, np.full(k, r0), gap, tort)])
        branches.append(
            _finish(heart, name, parent.artery, raw, r0, 0.75, parent.name, float(parent.s_mm[i]))
        )

    lateral = -1.0  # diagonals and marginals run towards the LV's lateral wall (negative phi)
    for j in range(int(rng.integers(1, 4))):
        side(
            lad,
            f"D{j + 1}",
            float(rng.uniform(0.12, 0.6)),
            lateral * rng.uniform(35, 70),
            float(rng.uniform(30, 60)),
            float(rng.uniform(0.9, 1.3)),
        )
    for j in range(int(rng.integers(1, 4))):
        side(
            lcx,
            f"OM{j + 1}",
            float(rng.uniform(0.2, 0.85)),
            rng.uniform(-15, 10),
            float(rng.uniform(30, 60)),
            float(rng.uniform(0.9, 1.3)),
        )
    if rng.random() < 0.7:
        side(
            rca,
            "AM",
            float(rng.uniform(0.35, 0.55)),
            rng.uniform(-10, 10),
            float(rng.uniform(25, 50)),
            float(rng.uniform(0.8, 1.1)),
        )
    if dominance == "co":
        side(lcx, "PL", 0.97, rng.uniform(-10, 10), float(rng.uniform(20, 35)), 0.9)
    return branches
