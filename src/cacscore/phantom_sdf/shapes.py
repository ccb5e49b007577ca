"""Signed-distance primitives, smooth blending and frames in continuous patient space (mm).

Every function takes coordinates as arrays that broadcast against each other
(``x``, ``y``, ``z`` in LPS mm) and returns a float32 signed distance: negative
inside, zero on the surface, positive outside. The superquadric distance is the
first-order estimate ``(f - 1) / |grad f|``, exact on the surface and close to
it, which is all the blending, offsets and partial-volume sampling need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Array = np.ndarray


def superquadric(
    x: Array, y: Array, z: Array, radii: tuple[float, float, float], exponent: float = 2.0
) -> Array:
    """Signed distance (mm, first order) to a superquadric ``|x/rx|^e + |y/ry|^e + |z/rz|^e = 1``.

    Parameters
    ----------
    x, y, z : ndarray
        Coordinates in the primitive's own frame, mm (broadcastable).
    radii : tuple of 3 float
        Semi-axes, mm.
    exponent : float
        2 is an ellipsoid; larger values square the shape off (2-4 used here).

    Examples
    --------
    >>> float(superquadric(np.array(13.0), np.array(0.0), np.array(0.0), (10.0, 5.0, 5.0)))
    3.0
    """
    e = float(exponent)
    ax = np.abs(x) / radii[0] + 1e-9
    ay = np.abs(y) / radii[1] + 1e-9
    az = np.abs(z) / radii[2] + 1e-9
    if e == 2.0:
        s = ax * ax + ay * ay + az * az
        f = np.sqrt(s)
        gx, gy, gz = ax / radii[0], ay / radii[1], az / radii[2]
        grad = np.sqrt(gx * gx + gy * gy + gz * gz) / f
    else:
        px, py, pz = ax ** (e - 1), ay ** (e - 1), az ** (e - 1)
        s = px * ax + py * ay + pz * az
        f = s ** (1.0 / e)
        scale = f ** (1.0 - e)
        gx, gy, gz = px / radii[0], py / radii[1], pz / radii[2]
        grad = scale * np.sqrt(gx * gx + gy * gy + gz * gz)
    return ((f - 1.0) / np.maximum(grad, 1e-6)).astype(np.float32)


def smooth_min(a: Array, b: Array, k: float) -> Array:
    """Polynomial smooth minimum of two distances (union with a fillet of about ``k`` mm).

    Examples
    --------
    >>> float(smooth_min(np.array(1.0), np.array(1.0), 4.0))
    0.0
    """
    if k <= 0:
        return np.minimum(a, b)
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return (np.minimum(a, b) - h * h * k * 0.25).astype(np.float32)


def segment_distance(x: Array, y: Array, z: Array, p0: Array, p1: Array) -> Array:
    """Unsigned distance (mm) from points to the segment ``p0``-``p1`` (LPS mm)."""
    d = np.asarray(p1, dtype=float) - np.asarray(p0, dtype=float)
    length2 = float(d @ d) or 1e-9
    rx, ry, rz = x - p0[0], y - p0[1], z - p0[2]
    t = np.clip((rx * d[0] + ry * d[1] + rz * d[2]) / length2, 0.0, 1.0)
    ex, ey, ez = rx - t * d[0], ry - t * d[1], rz - t * d[2]
    return np.sqrt(ex * ex + ey * ey + ez * ez).astype(np.float32)


def polyline_tube(x: Array, y: Array, z: Array, nodes: Array, radius: float) -> Array:
    """Signed distance (mm) to a tube of constant ``radius`` around a polyline of ``(N, 3)`` nodes."""
    out: Array | None = None
    for p0, p1 in zip(nodes[:-1], nodes[1:], strict=True):
        d = segment_distance(x, y, z, p0, p1)
        out = d if out is None else np.minimum(out, d)
    if out is None:
        raise ValueError("a tube needs at least two nodes")
    return out - np.float32(radius)


@dataclass(frozen=True)
class Frame:
    """An orthonormal frame: ``origin`` (LPS mm) and ``axes`` (3, 3), rows are the frame's unit vectors."""

    origin: Array
    axes: Array

    def local(self, x: Array, y: Array, z: Array) -> tuple[Array, Array, Array]:
        """Coordinates of patient points in this frame, mm."""
        dx, dy, dz = x - self.origin[0], y - self.origin[1], z - self.origin[2]
        a, b, c = self.axes
        return (
            (dx * a[0] + dy * a[1] + dz * a[2]).astype(np.float32),
            (dx * b[0] + dy * b[1] + dz * b[2]).astype(np.float32),
            (dx * c[0] + dy * c[1] + dz * c[2]).astype(np.float32),
        )

    def to_patient(self, local: Array) -> Array:
        """``(N, 3)`` frame coordinates to LPS mm."""
        return np.asarray(local, dtype=float) @ self.axes + self.origin


def frame_from_axis(origin: Array, axis: Array, towards: Array) -> Frame:
    """Frame whose first axis is ``axis`` and whose second lies in the plane of ``axis`` and ``towards``."""
    u = np.asarray(axis, dtype=float)
    u = u / np.linalg.norm(u)
    v = np.asarray(towards, dtype=float)
    v = v - (v @ u) * u
    v = v / np.linalg.norm(v)
    w = np.cross(u, v)
    return Frame(np.asarray(origin, dtype=float), np.stack([u, v, w]))


@dataclass(frozen=True)
class Bumps:
    """A smooth random field: a sum of Gaussian bumps (centres LPS mm, widths mm, amplitudes)."""

    centres: Array
    widths: Array
    amplitudes: Array

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        centre: Array,
        spread_mm: float,
        n: int,
        width_mm: tuple[float, float],
        amplitude: tuple[float, float],
    ) -> Bumps:
        """``n`` bumps around ``centre`` (normal, ``spread_mm``).

        Widths and amplitudes are uniform in the ranges.
        """
        return cls(
            np.asarray(centre, dtype=float) + rng.normal(0.0, spread_mm, (n, 3)),
            rng.uniform(*width_mm, n),
            rng.uniform(*amplitude, n),
        )

    def __call__(self, x: Array, y: Array, z: Array) -> Array:
        out = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), dtype=np.float32)
        for c, w, a in zip(self.centres, self.widths, self.amplitudes, strict=True):
            r2 = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2
            out += np.float32(a) * np.exp(-r2 / np.float32(2 * w * w)).astype(np.float32)
        return out
