"""Coronary tree: centre lines in the heart's grooves, tapered lumens in epicardial fat.

The grooves are found on the phantom's own heart surface: the anterior
interventricular groove is where the LV and RV surfaces meet on the
anterior side, the atrioventricular groove where the atria meet the
ventricles. The LM leaves the left aortic sinus and splits into the LAD
(anterior interventricular groove) and the LCX (left AV groove); the RCA
leaves the right sinus and follows the right AV groove.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cacscore.labels import ARTERY_NAMES, NAMED_ARTERIES
from cacscore.phantom.anatomy import Anatomy, epicardial_fat_hu
from cacscore.phantom.render import Grid, capsule_distance, occupancy, paint

if TYPE_CHECKING:
    from cacscore.phantom.variation import CoronaryShape

#: Artery names in label-code order.
ARTERIES = tuple(ARTERY_NAMES[code] for code in NAMED_ARTERIES)


@dataclass
class Artery:
    """A coronary artery: ``points`` ``(N, 3)`` LPS mm about 1 mm apart, lumen ``radii`` ``(N,)`` mm.

    ``name`` is the artery whose label code its calcium takes (a diagonal is ``"LAD"``);
    ``segment`` names a side branch (``"D1"``, ``"OM1"``, ``"PDA"``; empty for a main artery),
    which leaves its ``parent`` at ``branch_at_mm`` along the parent's centre line.
    """

    name: str
    points: np.ndarray
    radii: np.ndarray
    segment: str = ""
    parent: str | None = None
    branch_at_mm: float | None = None

    @property
    def segment_name(self) -> str:
        """``segment`` for a side branch, else ``name``."""
        return self.segment or self.name

    @property
    def arclength(self) -> np.ndarray:
        """Distance along the centre line from the origin, mm, ``(N,)``."""
        steps = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        return np.concatenate([[0.0], np.cumsum(steps)])

    @functools.cached_property
    def tangents(self) -> np.ndarray:
        """Unit tangent at every point, ``(N, 3)``."""
        t = np.gradient(self.points, axis=0)
        return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)


def _heart_frame(anatomy: Anatomy) -> np.ndarray:
    return anatomy.heart_parts[0].axes


def _surface_radius(anatomy: Anatomy, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Distance (mm) from each origin along each unit direction to the heart's outermost surface.

    Marches inwards from 90 mm in 1 mm steps to the first point inside the heart (so an origin in a
    fat cleft still finds the outer surface), then bisects. A ray that misses the heart gives 0.
    """
    steps = np.arange(90.0, -0.5, -1.0)
    p = origins[:, None, :] + directions[:, None, :] * steps[None, :, None]
    hard, _ = anatomy.heart_distance(p[..., 0], p[..., 1], p[..., 2])
    inside = hard < 0
    first = np.argmax(inside, axis=1)
    hit = inside[np.arange(len(origins)), first]
    lo = np.where(hit, steps[first], 0.0)
    hi = np.where(hit, lo + 1.0, 0.0)
    for _ in range(8):
        mid = (lo + hi) / 2
        q = origins + directions * mid[:, None]
        d, _ = anatomy.heart_distance(q[:, 0], q[:, 1], q[:, 2])
        lo = np.where(d < 0, mid, lo)
        hi = np.where(d < 0, hi, mid)
    return (lo + hi) / 2


def project_to_surface(anatomy: Anatomy, points: np.ndarray, offsets_mm: np.ndarray) -> np.ndarray:
    """Move points radially (from the heart's long axis) to ``offsets_mm`` outside the heart surface."""
    frame = _heart_frame(anatomy)
    axis = frame[:, 0]
    rel = points - anatomy.heart_base
    t = rel @ axis
    foot = anatomy.heart_base + t[:, None] * axis
    radial = points - foot
    radial /= np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-9)
    rho = _surface_radius(anatomy, foot, radial)
    return foot + radial * (rho + offsets_mm)[:, None]


def _ring_directions(frame: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return np.cos(theta)[:, None] * frame[:, 1] + np.sin(theta)[:, None] * frame[:, 2]


def _iv_groove(anatomy: Anatomy) -> np.ndarray:
    """Anterior interventricular groove, base to apex, on the surface (``(N, 3)`` LPS mm)."""
    frame = _heart_frame(anatomy)
    lv, rv = anatomy.heart_parts[0], anatomy.heart_parts[1]
    ts = np.linspace(0.1, 1.0, 40) * anatomy.heart_length_mm
    theta = np.linspace(0, 2 * np.pi, 120, endpoint=False)
    dirs = np.broadcast_to(_ring_directions(frame, theta)[None], (len(ts), len(theta), 3)).reshape(-1, 3)
    origins = np.repeat(anatomy.heart_base + ts[:, None] * frame[:, 0], len(theta), axis=0)
    p = origins + dirs * _surface_radius(anatomy, origins, dirs)[:, None]
    gap = np.abs(lv.distance()(p[:, 0], p[:, 1], p[:, 2]) - rv.distance()(p[:, 0], p[:, 1], p[:, 2]))
    gap = gap.reshape(len(ts), len(theta))
    y = p[:, 1].reshape(len(ts), len(theta))
    # Two junctions per ring (anterior and posterior groove): start on the anterior half, then follow
    # the groove within +-15 degrees per step so that the path cannot jump between grooves.
    # The junction is clearest mid-ventricle: start there, track towards base and apex.
    mid = len(ts) // 3
    index = np.zeros(len(ts), dtype=int)
    index[mid] = int(np.argmin(np.where(y[mid] < np.median(y[mid]), gap[mid], np.inf)))
    window = 5  # samples of 3 degrees
    for step in (1, -1):
        k = mid + step
        while 0 <= k < len(ts):
            candidates = (index[k - step] + np.arange(-window, window + 1)) % len(theta)
            index[k] = int(candidates[np.argmin(gap[k][candidates])])
            k += step
    angles = np.unwrap(theta[index])
    angles = np.convolve(np.pad(angles, 3, mode="edge"), np.ones(7) / 7, mode="valid")
    dirs = _ring_directions(frame, angles)
    origins = anatomy.heart_base + ts[:, None] * frame[:, 0]
    return origins + dirs * _surface_radius(anatomy, origins, dirs)[:, None]


def _av_groove(anatomy: Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """Atrioventricular groove as a closed ring: angles ``(M,)`` and surface points ``(M, 3)``."""
    frame = _heart_frame(anatomy)
    lv, rv, atria = anatomy.heart_parts
    theta = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    ring_dirs = _ring_directions(frame, theta)
    ts = np.linspace(-25, 20, 31)
    dirs = np.repeat(ring_dirs, len(ts), axis=0)
    origins = np.tile(anatomy.heart_base + ts[:, None] * frame[:, 0], (len(theta), 1))
    p = origins + dirs * _surface_radius(anatomy, origins, dirs)[:, None]
    dv = np.minimum(lv.distance()(p[:, 0], p[:, 1], p[:, 2]), rv.distance()(p[:, 0], p[:, 1], p[:, 2]))
    gap = np.abs(atria.distance()(p[:, 0], p[:, 1], p[:, 2]) - dv).reshape(len(theta), len(ts))
    t_sm = ts[np.argmin(gap, axis=1)]
    t_sm = np.convolve(np.concatenate([t_sm[-3:], t_sm, t_sm[:3]]), np.ones(7) / 7, mode="valid")
    origins = anatomy.heart_base + t_sm[:, None] * frame[:, 0]
    points = origins + ring_dirs * _surface_radius(anatomy, origins, ring_dirs)[:, None]
    return theta, points


def _resample(points: np.ndarray, step_mm: float = 1.0, smooth: int = 5) -> np.ndarray:
    """Resample a polyline at ``step_mm`` and smooth it with a moving average of ``smooth`` points."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(s[-1] / step_mm) + 1, 2)
    si = np.linspace(0, s[-1], n)
    out = np.stack([np.interp(si, s, points[:, k]) for k in range(3)], axis=1)
    if smooth > 1 and n > smooth:
        pad = smooth // 2
        padded = np.concatenate([np.repeat(out[:1], pad, 0), out, np.repeat(out[-1:], pad, 0)])
        kernel = np.ones(smooth) / smooth
        out = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(3)], axis=1)
    return out


def _ring_walk(points: np.ndarray, start: int, direction: int, length_mm: float) -> np.ndarray:
    """Follow a closed ring of points from index ``start`` in ``direction`` for about ``length_mm``."""
    out = [points[start]]
    total = 0.0
    i = start
    while total < length_mm and len(out) < len(points):
        j = (i + direction) % len(points)
        total += float(np.linalg.norm(points[j] - points[i]))
        out.append(points[j])
        i = j
    return np.array(out)


#: Lengths (mm) of the LCX and RCA walks along the atrioventricular groove per dominance (version 2).
_DOMINANCE_WALKS_MM = {
    "right": ((55, 85), (100, 140)),
    "left": ((105, 145), (35, 60)),
    "co": ((80, 105), (80, 110)),
}


def build_coronary_tree(
    anatomy: Anatomy, rng: np.random.Generator, shape: CoronaryShape | None = None
) -> list[Artery]:
    """Centre lines and lumen radii of LM, LAD, LCX and RCA for one patient.

    With ``shape`` (generator version 2), the dominance sets the LCX and RCA lengths, the
    centre lines wave in the heart's surface (tortuosity), the calibre is scaled and side
    branches (diagonals, obtuse marginal, posterior descending) follow the main arteries.
    """
    _, ring = _av_groove(anatomy)
    iv = _iv_groove(anatomy)
    left = anatomy.left_ostium
    right = anatomy.right_ostium
    i_left = int(np.argmin(np.linalg.norm(ring - left, axis=1)))
    i_right = int(np.argmin(np.linalg.norm(ring - right, axis=1)))
    # Walk towards the patient's left (+x) for the LCX and right (-x) for the RCA.
    step_left = 1 if ring[(i_left + 3) % len(ring), 0] > ring[(i_left - 3) % len(ring), 0] else -1
    lm_len = rng.uniform(7, 14)
    bif_dir = ring[i_left] - left
    bif_dir /= np.linalg.norm(bif_dir)
    bif = left + bif_dir * lm_len
    lm_points = _resample(np.array([left, bif]), smooth=1)
    calibre = 1.0 if shape is None else shape.calibre_scale
    arteries = [Artery("LM", lm_points, np.full(len(lm_points), rng.uniform(2.0, 2.5) * calibre))]

    def surface_path(
        control: np.ndarray, r0: float, r1: float, keep_start: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        pts = _resample(control, smooth=9)
        radii = np.linspace(r0, r1, len(pts))
        if shape is not None and shape.tortuosity_mm > 0:
            pts = _wave(anatomy, pts, shape, rng)
        moved = project_to_surface(anatomy, pts, radii + 0.4)
        if keep_start:
            # Blend from the fixed origin onto the surface over the first 10 mm.
            w = np.clip(np.arange(len(pts)) / 10.0, 0, 1)[:, None]
            moved = (1 - w) * pts + w * moved
        return _resample(moved, smooth=5), radii

    lad_ctrl = np.concatenate([[bif], iv])
    lcx_mm, rca_mm = rng.uniform(55, 85), rng.uniform(100, 140)
    if shape is not None:
        walks = _DOMINANCE_WALKS_MM[shape.dominance]
        lcx_mm, rca_mm = rng.uniform(*walks[0]), rng.uniform(*walks[1])
    lcx_ctrl = np.concatenate([[bif], _ring_walk(ring, i_left, step_left, lcx_mm)])
    rca_ctrl = np.concatenate(
        [
            [right, right + (right - anatomy.aortic_root) * 0.3],
            _ring_walk(ring, i_right, -step_left, rca_mm),
        ]
    )
    for name, ctrl, r0, r1 in (
        ("LAD", lad_ctrl, rng.uniform(1.6, 1.9), rng.uniform(0.85, 1.0)),
        ("LCX", lcx_ctrl, rng.uniform(1.5, 1.8), rng.uniform(0.9, 1.05)),
        ("RCA", rca_ctrl, rng.uniform(1.7, 2.0), rng.uniform(0.9, 1.05)),
    ):
        pts, _ = surface_path(ctrl, r0 * calibre, r1 * calibre, keep_start=True)
        arteries.append(Artery(name, pts, np.linspace(r0 * calibre, r1 * calibre, len(pts))))
    if shape is not None:
        by_name = {a.name: a for a in arteries}
        for segment in shape.branches:
            branch = _side_branch(anatomy, by_name, segment, shape, rng)
            if branch is not None:
                ctrl, r0, r1, parent, at_mm = branch
                pts, _ = surface_path(ctrl, r0, r1, keep_start=True)
                radii = np.linspace(r0, r1, len(pts))
                arteries.append(
                    Artery(parent, pts, radii, segment=segment, parent=parent, branch_at_mm=at_mm)
                )
    return arteries


def _wave(anatomy: Anatomy, pts: np.ndarray, shape: CoronaryShape, rng: np.random.Generator) -> np.ndarray:
    """Displace a centre line sideways within the heart surface: a sine of random phase (tortuosity)."""
    if len(pts) < 3:
        return pts
    tangent = np.gradient(pts, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    axis = _heart_frame(anatomy)[:, 0]
    rel = pts - anatomy.heart_base
    radial = rel - (rel @ axis)[:, None] * axis
    side = np.cross(tangent, radial)
    side /= np.maximum(np.linalg.norm(side, axis=1, keepdims=True), 1e-9)
    s = np.arange(len(pts), dtype=float)  # points are about 1 mm apart
    # Fade in over the first 10 mm so that the ostium stays where it is.
    amp = shape.tortuosity_mm * np.clip(s / 10.0, 0.0, 1.0)
    phase = rng.uniform(0, 2 * np.pi)
    return pts + (amp * np.sin(2 * np.pi * s / shape.tortuosity_wavelength_mm + phase))[:, None] * side


def _side_branch(
    anatomy: Anatomy,
    arteries: dict[str, Artery],
    segment: str,
    shape: CoronaryShape,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float, float, str, float] | None:
    """Control points, radii and origin ``(parent, arclength mm)`` of one side branch.

    A branch leaves its parent and runs towards the apex over the ventricle it supplies:
    diagonals over the LV's anterolateral wall, the obtuse marginal down the lateral wall, the
    posterior descending artery from the dominant artery's end towards the apex.
    """
    frame = _heart_frame(anatomy)
    axis = frame[:, 0]
    if segment == "PDA":
        parent = "LCX" if shape.dominance == "left" else "RCA"
        at = 0.97
        turn, drop = rng.uniform(-0.15, 0.15), rng.uniform(45, 75)
    elif segment in ("D1", "D2"):
        parent = "LAD"
        at = rng.uniform(0.15, 0.3) if segment == "D1" else rng.uniform(0.4, 0.55)
        # Towards the LV: the LV centre lies on the -e2 side of the long axis.
        turn, drop = rng.uniform(0.5, 0.9), rng.uniform(30, 55)
    else:
        parent = "LCX"
        at = rng.uniform(0.35, 0.7)
        turn, drop = rng.uniform(-0.2, 0.2), rng.uniform(35, 60)
    trunk = arteries[parent]
    i = int(np.clip(round(at * (len(trunk.points) - 1)), 0, len(trunk.points) - 1))
    start = trunk.points[i]
    rel = start - anatomy.heart_base
    t = float(rel @ axis)
    theta = float(np.arctan2(rel @ frame[:, 2], rel @ frame[:, 1]))
    if segment in ("D1", "D2"):
        # Turn away from the RV side (towards theta = pi, where the LV lies).
        turn = turn * float(np.sign(np.sin(theta)) or 1.0)
    t_end = min(t + drop, anatomy.heart_length_mm * 0.95)
    if t_end - t < 10:
        return None
    ts = np.linspace(t, t_end, 12)
    thetas = theta + np.linspace(0, turn, 12)
    ctrl = (
        anatomy.heart_base
        + ts[:, None] * axis
        + 30.0 * (np.cos(thetas)[:, None] * frame[:, 1] + np.sin(thetas)[:, None] * frame[:, 2])
    )
    ctrl[0] = start
    r0 = float(trunk.radii[i]) * rng.uniform(0.6, 0.8)
    return ctrl, r0, max(r0 * 0.55, 0.5), parent, float(trunk.arclength[i])


def _segments(artery: Artery, step: int = 4) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    idx = list(range(0, len(artery.points) - 1, step)) + [len(artery.points) - 1]
    return [
        (artery.points[i], artery.points[j], float(artery.radii[i]), float(artery.radii[j]))
        for i, j in itertools.pairwise(idx)
        if j > i
    ]


def render_coronaries(volume: np.ndarray, grid: Grid, anatomy: Anatomy, arteries: list[Artery]) -> None:
    """Paint a fat cuff around each artery (slice centres), then its lumen with z partial volume."""
    fat = epicardial_fat_hu(anatomy)
    segments = [seg for artery in arteries for seg in _segments(artery)]
    for a, b, ra, rb in segments:
        cuff = max(ra, rb) + 3.0
        lo, hi = np.minimum(a, b) - cuff - 1, np.maximum(a, b) + cuff + 1
        paint(volume, grid, grid.box(lo, hi), capsule_distance(a, b, ra + 2.8, rb + 2.8), fat)
    for a, b, ra, rb in segments:
        r = max(ra, rb) + 1.0
        box = grid.box(np.minimum(a, b) - r, np.maximum(a, b) + r, z_extra_mm=grid.profile_half_width_mm)
        if box is None:
            continue
        occ = occupancy(grid, box, capsule_distance(a, b, ra, rb), n_z=4)
        region = volume[box]
        region += occ * (anatomy.blood_hu - region)
