"""Voxel grid and primitive painters shared by the phantom's anatomy, vessels and calcium.

Every primitive (ellipsoid, elliptic cylinder, tapered capsule) gives an
approximate signed distance in mm (negative inside) evaluated only in its own
bounding box, so that drawing a small object never touches the full volume.
Two sampling modes:

* slice-centre sampling with an in-plane anti-aliased edge, for large
  anatomy whose partial volume along z hardly matters;
* z-supersampled occupancy (several positions across the slice profile,
  optionally 2x2 in-plane), for the small objects whose partial volume
  decides whether they survive the 130 HU threshold (calcium, coronaries).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Signed-distance callable: (x, y, z) LPS mm arrays (broadcastable) -> distance in mm, negative inside.
DistanceFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
Box = tuple[slice, slice, slice]
#: Full width of each slice profile's support in slice thicknesses (FWHM = thickness for all).
_PROFILE_REACH = {"rect": 1.0, "triangle": 2.0, "gaussian": 2.5}


@dataclass(frozen=True)
class Grid:
    """Axial voxel grid with identity direction.

    Parameters
    ----------
    shape : tuple of 3 int
        ``(Z, Y, X)``.
    spacing : tuple of 3 float
        ``(dz, dy, dx)`` in mm; ``dz`` is the slice increment.
    origin : tuple of 3 float
        LPS ``(x, y, z)`` in mm of the centre of voxel ``(0, 0, 0)``.
    thickness_mm : float
        Reconstructed slice thickness (the FWHM of the slice profile), mm.
    profile : {"rect", "triangle", "gaussian"}
        Slice sensitivity profile (generator version 1 uses only the rectangle).
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    thickness_mm: float
    profile: str = "rect"

    @property
    def profile_half_width_mm(self) -> float:
        """Half the z extent the slice profile reaches (mm): where supersampled objects still count."""
        return self.thickness_mm * _PROFILE_REACH[self.profile] / 2

    @property
    def xs(self) -> np.ndarray:
        """Column centres, LPS x in mm, ``(X,)`` float32."""
        return (self.origin[0] + self.spacing[2] * np.arange(self.shape[2])).astype(np.float32)

    @property
    def ys(self) -> np.ndarray:
        """Row centres, LPS y in mm, ``(Y,)`` float32."""
        return (self.origin[1] + self.spacing[1] * np.arange(self.shape[1])).astype(np.float32)

    @property
    def zs(self) -> np.ndarray:
        """Slice centres, LPS z in mm, ``(Z,)`` float32."""
        return (self.origin[2] + self.spacing[0] * np.arange(self.shape[0])).astype(np.float32)

    def box(self, lo_xyz: np.ndarray, hi_xyz: np.ndarray, *, z_extra_mm: float = 0.0) -> Box | None:
        """Index box of the voxels whose centres (or slice profile) may meet ``[lo, hi]`` (mm).

        ``z_extra_mm`` widens the z range by half a slice profile so that
        z-supersampled objects reach every slice they touch. Returns None if
        the box misses the grid.
        """
        lo = np.asarray(lo_xyz, dtype=float)
        hi = np.asarray(hi_xyz, dtype=float)
        extra = np.array([0.0, 0.0, z_extra_mm])
        lo, hi = lo - extra, hi + extra
        size_xyz = (self.shape[2], self.shape[1], self.shape[0])
        step_xyz = (self.spacing[2], self.spacing[1], self.spacing[0])
        slices: list[slice] = []
        for axis in range(3):
            start = int(np.floor((lo[axis] - self.origin[axis]) / step_xyz[axis]))
            stop = int(np.ceil((hi[axis] - self.origin[axis]) / step_xyz[axis])) + 1
            start, stop = max(start, 0), min(stop, size_xyz[axis])
            if start >= stop:
                return None
            slices.append(slice(start, stop))
        return (slices[2], slices[1], slices[0])

    def centres(self, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LPS coordinates (mm) of the voxel centres in ``box``.

        Shaped to broadcast: ``x (1,1,X)``, ``y (1,Y,1)``, ``z (Z,1,1)``.
        """
        zs, ys, xs = box
        return (
            self.xs[xs][None, None, :],
            self.ys[ys][None, :, None],
            self.zs[zs][:, None, None],
        )


def ellipsoid_distance(center: np.ndarray, axes: np.ndarray, radii: np.ndarray) -> DistanceFn:
    """Approximate signed distance (mm) to an ellipsoid.

    ``axes`` columns are the ellipsoid's unit axes (LPS), ``radii`` the
    semi-axes in mm. First-order distance ``(F - 1) / |grad F|`` with
    ``F = sum(q_i^2)``: exact on the surface, good within a few mm of it.
    """
    c = np.asarray(center, dtype=np.float32)
    a = np.asarray(axes, dtype=np.float32)
    inv_r = 1.0 / np.asarray(radii, dtype=np.float32)

    def distance(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        px, py, pz = x - c[0], y - c[1], z - c[2]
        f = np.zeros(np.broadcast_shapes(px.shape, py.shape, pz.shape), dtype=np.float32)
        g = np.zeros_like(f)
        for i in range(3):
            q = (px * a[0, i] + py * a[1, i] + pz * a[2, i]) * inv_r[i]
            f += q * q
            g += (q * inv_r[i]) ** 2
        return (f - 1.0) / (2.0 * np.sqrt(g) + 1e-6)

    return distance


def ellipse_distance(center_xy: np.ndarray, angle_rad: float, radii_xy: np.ndarray) -> DistanceFn:
    """Signed distance (mm, first order) to an elliptic cylinder along z.

    The cylinder is rotated in-plane by ``angle_rad``.
    """
    cos, sin = float(np.cos(angle_rad)), float(np.sin(angle_rad))
    axes = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    center = np.array([center_xy[0], center_xy[1], 0.0])
    big = np.array([radii_xy[0], radii_xy[1], 1e9])
    return ellipsoid_distance(center, axes, big)


def capsule_distance(a: np.ndarray, b: np.ndarray, radius_a: float, radius_b: float) -> DistanceFn:
    """Signed distance (mm) to a segment ``a-b`` swept by a tapering radius.

    The radius tapers from ``radius_a`` to ``radius_b``.
    """
    pa = np.asarray(a, dtype=np.float32)
    ab = np.asarray(b, dtype=np.float32) - pa
    denom = float(ab @ ab) or 1e-6

    def distance(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        px, py, pz = x - pa[0], y - pa[1], z - pa[2]
        t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / denom, 0.0, 1.0)
        dx, dy, dz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
        return np.sqrt(dx * dx + dy * dy + dz * dz) - (radius_a + t * (radius_b - radius_a))

    return distance


def paint(
    volume: np.ndarray,
    grid: Grid,
    box: Box | None,
    distance: DistanceFn,
    value: float | np.ndarray,
    *,
    where: np.ndarray | None = None,
    z_invariant: bool = False,
) -> None:
    """Composite ``value`` (HU) into ``volume`` inside a primitive, sampled at slice centres.

    The edge is anti-aliased over one pixel in-plane. ``where`` (broadcastable
    to the box, bool) limits the change to some voxels (e.g. lung only).
    ``z_invariant`` evaluates the distance once per box (vertical columns).
    """
    if box is None:
        return
    x, y, z = grid.centres(box)
    if z_invariant:
        z = z[:1]
    occ = np.clip(0.5 - distance(x, y, z) / grid.spacing[2], 0.0, 1.0)
    if where is not None:
        occ = occ * where
    region = volume[box]
    region += occ * (value - region)


def occupancy(
    grid: Grid,
    box: Box,
    distance: DistanceFn,
    *,
    n_z: int = 6,
    n_xy: int = 1,
) -> np.ndarray:
    """Fraction (0-1) of each voxel's slice profile and pixel covered by a primitive, ``float32`` box-shaped.

    The slice profile (``grid.profile``, FWHM ``grid.thickness_mm``) centred on each slice is
    sampled at ``n_z`` positions (1.5 times as many for the wider triangle and Gaussian profiles,
    weighted); ``n_xy`` x ``n_xy`` samples per pixel in-plane.
    """
    if grid.profile != "rect":
        return _weighted_occupancy(grid, box, distance, n_z=n_z * 3 // 2, n_xy=n_xy)
    zs, ys, xs = box
    _, dy, dx = grid.spacing
    offs_z = ((np.arange(n_z) + 0.5) / n_z - 0.5) * grid.thickness_mm
    offs_y = ((np.arange(n_xy) + 0.5) / n_xy - 0.5) * dy
    offs_x = ((np.arange(n_xy) + 0.5) / n_xy - 0.5) * dx
    z = (grid.zs[zs][:, None] + offs_z[None, :]).reshape(-1).astype(np.float32)
    y = (grid.ys[ys][:, None] + offs_y[None, :]).reshape(-1).astype(np.float32)
    x = (grid.xs[xs][:, None] + offs_x[None, :]).reshape(-1).astype(np.float32)
    inside = distance(x[None, None, :], y[None, :, None], z[:, None, None]) < 0.0
    nzb, nyb, nxb = zs.stop - zs.start, ys.stop - ys.start, xs.stop - xs.start
    return inside.reshape(nzb, n_z, nyb, n_xy, nxb, n_xy).mean(axis=(1, 3, 5), dtype=np.float32)


def _weighted_occupancy(grid: Grid, box: Box, distance: DistanceFn, *, n_z: int, n_xy: int) -> np.ndarray:
    """:func:`occupancy` for a triangle or Gaussian slice profile: weighted samples across its reach."""
    zs, ys, xs = box
    _, dy, dx = grid.spacing
    reach = 2 * grid.profile_half_width_mm
    u = (np.arange(n_z) + 0.5) / n_z - 0.5  # -0.5 .. 0.5 of the reach
    offs_z = u * reach
    if grid.profile == "triangle":
        weights = np.clip(1.0 - np.abs(offs_z) / grid.thickness_mm, 0.0, None)
    else:
        sigma = grid.thickness_mm / 2.3548
        weights = np.exp(-0.5 * (offs_z / sigma) ** 2)
    weights = (weights / weights.sum()).astype(np.float32)
    offs_y = ((np.arange(n_xy) + 0.5) / n_xy - 0.5) * dy
    offs_x = ((np.arange(n_xy) + 0.5) / n_xy - 0.5) * dx
    z = (grid.zs[zs][:, None] + offs_z[None, :]).reshape(-1).astype(np.float32)
    y = (grid.ys[ys][:, None] + offs_y[None, :]).reshape(-1).astype(np.float32)
    x = (grid.xs[xs][:, None] + offs_x[None, :]).reshape(-1).astype(np.float32)
    inside = distance(x[None, None, :], y[None, :, None], z[:, None, None]) < 0.0
    nzb, nyb, nxb = zs.stop - zs.start, ys.stop - ys.start, xs.stop - xs.start
    per_z = inside.reshape(nzb, n_z, nyb, n_xy, nxb, n_xy).mean(axis=(3, 5), dtype=np.float32)
    return np.einsum("azyx,z->ayx", per_z, weights).astype(np.float32)


def orthonormal_frame(direction: np.ndarray) -> np.ndarray:
    """(3, 3) matrix whose first column is ``direction`` (normalised).

    The other columns complete a right-handed frame.
    """
    u = np.asarray(direction, dtype=float)
    u = u / np.linalg.norm(u)
    helper = np.array([0.0, 0.0, 1.0]) if abs(u[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    v = np.cross(u, helper)
    v /= np.linalg.norm(v)
    w = np.cross(u, v)
    return np.stack([u, v, w], axis=1)
