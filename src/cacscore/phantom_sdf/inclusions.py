"""Small dense objects: calcified plaques on vessel walls, and the distractors; their rendering.

An :class:`Inclusion` is either a *wall shape* around a centreline (a plaque,
a ring, a stent, a lead or wire as a solid tube) or a union of ellipsoids
(nodules, lymph nodes, cartilage or breast calcifications). It is sampled at
the output pixel size with supersampling (2 x 2 in-plane, 3 per sub-plane in
z), mixed into the anatomy by its occupancy, passed through the slice profile
and the in-plane point spread, and kept as a *contribution* in a box, so that
lesions can be added or removed without redrawing the case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from cacscore.phantom_sdf.scanner import SliceGrid

Array = np.ndarray


@dataclass(frozen=True)
class Centreline:
    """A centreline for wall shapes: points, unit tangents and normals, arc length (mm)."""

    points: Array
    tangent: Array
    normal: Array
    s_mm: Array

    @classmethod
    def from_points(cls, points: Array, normal_hint: Array | None = None) -> Centreline:
        """Centreline through ``(N, 3)`` points; normals from ``normal_hint`` (N, 3) or any perpendicular."""
        pts = np.asarray(points, dtype=float)
        tangent = np.gradient(pts, axis=0)
        tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
        hint = (
            np.tile([0.0, 0.0, 1.0], (len(pts), 1)) if normal_hint is None else np.asarray(normal_hint, float)
        )
        normal = hint - np.sum(hint * tangent, axis=1, keepdims=True) * tangent
        weak = np.linalg.norm(normal, axis=1) < 1e-3
        normal[weak] = np.cross(tangent[weak], [1.0, 0.0, 0.0])
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        return cls(pts, tangent, normal, s)

    def window(self, s0: float, s1: float, step_mm: float = 1.0) -> Centreline:
        """The part between arc lengths ``s0`` and ``s1`` (clamped), subsampled to about ``step_mm``."""
        keep = np.flatnonzero((self.s_mm >= s0) & (self.s_mm <= s1))
        if len(keep) == 0:
            keep = np.array([int(np.argmin(np.abs(self.s_mm - (s0 + s1) / 2)))])
        stride = max(
            1,
            int(
                round(
                    step_mm / max(float(np.median(np.diff(self.s_mm))) if len(self.s_mm) > 1 else 1.0, 1e-3)
                )
            ),
        )
        idx = np.unique(np.concatenate([keep[::stride], keep[-1:]]))
        return Centreline(self.points[idx], self.tangent[idx], self.normal[idx], self.s_mm[idx])


@dataclass(frozen=True)
class WallShape:
    """A shape around a centreline, in the coordinates (s, rho, theta) of the centreline.

    The shape covers ``|s - s_centre| <= half_length``, ``|theta - theta0| <= half_span``
    and ``r_inner <= rho <= r_inner + thickness * dome``, where ``dome`` falls from 1
    at the centre to 0 at the ends (``solid`` keeps it 1: tubes, rings, stents).
    ``fragment_period_mm`` > 0 breaks it into pieces along ``s``.
    """

    line: Centreline
    s_centre: float
    half_length: float
    theta0: float
    half_span: float
    r_inner: float
    thickness: float
    solid: bool = False
    fragment_period_mm: float = 0.0
    fragment_phase: float = 0.0

    def inside(self, x: Array, y: Array, z: Array) -> Array:
        """Membership of the grid points ``x`` (1, 1, X), ``y`` (1, Y, 1), ``z`` (Z, 1, 1).

        The axes are ascending.
        """
        xs, ys, zs = x.ravel(), y.ravel(), z.ravel()
        shape = (len(zs), len(ys), len(xs))
        reach = self.r_inner + self.thickness + 0.5
        best = np.full(shape, reach * reach, dtype=np.float32)
        idx = np.full(shape, -1, dtype=np.int32)
        line = self.line
        window = np.abs(line.s_mm - self.s_centre) <= self.half_length + 2.0
        # Nearest centreline point, sample by sample in the box each one can reach (a sphere sweep).
        for j, c in enumerate(line.points):
            if not window[j]:
                continue
            i0, i1 = np.searchsorted(xs, c[0] - reach), np.searchsorted(xs, c[0] + reach)
            j0, j1 = np.searchsorted(ys, c[1] - reach), np.searchsorted(ys, c[1] + reach)
            k0, k1 = np.searchsorted(zs, c[2] - reach), np.searchsorted(zs, c[2] + reach)
            if i0 >= i1 or j0 >= j1 or k0 >= k1:
                continue
            d2 = (
                (zs[k0:k1, None, None] - c[2]) ** 2
                + (ys[None, j0:j1, None] - c[1]) ** 2
                + (xs[None, None, i0:i1] - c[0]) ** 2
            )
            sub_best = best[k0:k1, j0:j1, i0:i1]
            closer = d2 < sub_best
            sub_best[closer] = d2[closer]
            idx[k0:k1, j0:j1, i0:i1][closer] = j
        out = np.zeros(shape, dtype=bool)
        where = np.nonzero(idx >= 0)
        if len(where[0]) == 0:
            return out
        near = idx[where]
        p = np.stack([xs[where[2]], ys[where[1]], zs[where[0]]], axis=-1).astype(float)
        c = line.points[near]
        t = line.tangent[near]
        n = line.normal[near]
        dx = p - c
        along = np.sum(dx * t, axis=-1)
        s = line.s_mm[near] + along
        radial = dx - along[:, None] * t
        rho = np.linalg.norm(radial, axis=-1)
        u_s = (s - self.s_centre) / max(self.half_length, 1e-6)
        ok = np.abs(u_s) <= 1.0
        if self.half_span < np.pi:
            b = np.cross(t, n)
            theta = np.arctan2(np.sum(radial * b, axis=-1), np.sum(radial * n, axis=-1))
            u_t = np.angle(np.exp(1j * (theta - self.theta0))) / self.half_span
            ok &= np.abs(u_t) <= 1.0
        else:
            u_t = np.zeros_like(u_s)
        dome = np.ones_like(u_s) if self.solid else np.sqrt(np.clip(1.0 - u_s**2 - 0.6 * u_t**2, 0.0, 1.0))
        if self.fragment_period_mm > 0:
            dome *= (
                np.abs(np.sin(np.pi * (s - self.s_centre) / self.fragment_period_mm + self.fragment_phase))
                > 0.3
            )
        out[where] = ok & (rho >= self.r_inner) & (rho <= self.r_inner + self.thickness * dome)
        return out

    def extent(self) -> tuple[Array, Array]:
        """Bounding box (LPS mm) of the shape, from points sampled over its (s, theta, rho) range."""
        line = self.line
        s = np.linspace(self.s_centre - self.half_length, self.s_centre + self.half_length, 12)
        near = np.clip(np.searchsorted(line.s_mm, s), 0, len(line.s_mm) - 1)
        span = min(self.half_span, np.pi)
        theta = np.linspace(self.theta0 - span, self.theta0 + span, 16)
        rho = np.array([self.r_inner, self.r_inner + self.thickness])
        c, t, n = line.points[near], line.tangent[near], line.normal[near]
        b = np.cross(t, n)
        base = c + (s - line.s_mm[near])[:, None] * t
        ring = np.cos(theta)[None, :, None] * n[:, None, :] + np.sin(theta)[None, :, None] * b[:, None, :]
        pts = base[:, None, None, :] + rho[None, None, :, None] * ring[:, :, None, :]
        pts = pts.reshape(-1, 3)
        return pts.min(axis=0) - 0.6, pts.max(axis=0) + 0.6


@dataclass(frozen=True)
class Blobs:
    """A union of ellipsoids: centres (N, 3) LPS mm, radii (N, 3) mm along x, y, z."""

    centres: Array
    radii: Array

    def inside(self, x: Array, y: Array, z: Array) -> Array:
        """Membership of the (broadcastable) points in any of the ellipsoids."""
        out = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), dtype=bool)
        for c, r in zip(self.centres, self.radii, strict=True):
            out |= ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1.0
        return out


@dataclass
class Inclusion:
    """A calcified lesion or a distractor, with its shape, density (HU) and bounding box (LPS mm)."""

    kind: str
    shape: WallShape | Blobs
    density_hu: float
    lo: Array
    hi: Array
    artery: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def centre(self) -> Array:
        return (self.lo + self.hi) / 2


def wall_inclusion(kind: str, shape: WallShape, density_hu: float, **kw: Any) -> Inclusion:
    """An inclusion around ``shape``'s centreline window, with a box that surely holds it."""
    lo, hi = shape.extent()
    return Inclusion(kind, shape, density_hu, lo, hi, **kw)


def blob_inclusion(kind: str, shape: Blobs, density_hu: float, **kw: Any) -> Inclusion:
    return Inclusion(
        kind,
        shape,
        density_hu,
        (shape.centres - shape.radii).min(axis=0),
        (shape.centres + shape.radii).max(axis=0),
        **kw,
    )


@dataclass
class Rendered:
    """An inclusion drawn into the series: ``box`` (slices of the output array), its HU contribution
    and its blurred occupancy (0-1) after the slice profile and the point spread."""

    inclusion: Inclusion
    box: tuple[slice, slice, slice]
    contribution: Array
    occupancy: Array


def render(
    inc: Inclusion,
    grid: SliceGrid,
    planes: Array,
    psf_sigma_px: float,
    *,
    supersample: int = 2,
    z_samples: int = 3,
) -> Rendered | None:
    """Draw one inclusion (see module doc); None when it misses the series."""
    nz, ny, nx = grid.shape
    dz, dy, dx = grid.spacing
    x0, y0, z0 = grid.origin
    margin_px = int(np.ceil(3 * psf_sigma_px)) + 1
    i0 = max(int(np.floor((inc.lo[0] - x0) / dx)) - margin_px, 0)
    i1 = min(int(np.ceil((inc.hi[0] - x0) / dx)) + margin_px + 1, nx)
    j0 = max(int(np.floor((inc.lo[1] - y0) / dy)) - margin_px, 0)
    j1 = min(int(np.ceil((inc.hi[1] - y0) / dy)) + margin_px + 1, ny)
    h = grid.sub_step_mm
    m = grid.margin
    s0 = max(int(np.floor((inc.lo[2] - z0) / h)) + m - 1, 0)
    s1 = min(int(np.ceil((inc.hi[2] - z0) / h)) + m + 2, grid.n_sub)
    if i0 >= i1 or j0 >= j1 or s0 >= s1:
        return None
    ss, zs_n = supersample, z_samples
    xs = x0 + (np.arange(i0 * ss, i1 * ss) + 0.5) / ss * dx - dx / 2
    ys = y0 + (np.arange(j0 * ss, j1 * ss) + 0.5) / ss * dy - dy / 2
    zsub = z0 + (np.arange(s0, s1) - m) * h
    zz = (zsub[:, None] + ((np.arange(zs_n) + 0.5) / zs_n - 0.5)[None, :] * h).ravel()
    X = xs[None, None, :].astype(np.float32)
    Y = ys[None, :, None].astype(np.float32)
    Z = zz[:, None, None].astype(np.float32)
    hit = inc.shape.inside(X, Y, Z)
    hit = np.broadcast_to(hit, (len(zz), len(ys), len(xs)))
    occ = hit.reshape(s1 - s0, zs_n, j1 - j0, ss, i1 - i0, ss).mean(axis=(1, 3, 5), dtype=np.float32)
    if not occ.any():
        return None
    f = grid.coarse
    cy = np.minimum(np.arange(j0, j1) // f, planes.shape[1] - 1)
    cx = np.minimum(np.arange(i0, i1) // f, planes.shape[2] - 1)
    background = planes[s0:s1][:, cy][:, :, cx]
    delta = occ * (np.float32(inc.density_hu) - background)
    k0, contribution = grid.integrate(delta, first_sub=s0)
    _, occupancy = grid.integrate(occ, first_sub=s0)
    if contribution.shape[0] == 0:
        return None
    contribution = ndimage.gaussian_filter(contribution, (0, psf_sigma_px, psf_sigma_px), mode="constant")
    occupancy = ndimage.gaussian_filter(occupancy, (0, psf_sigma_px, psf_sigma_px), mode="constant")
    box = (slice(k0, k0 + contribution.shape[0]), slice(j0, j1), slice(i0, i1))
    return Rendered(inc, box, contribution.astype(np.float32), occupancy.astype(np.float32))
