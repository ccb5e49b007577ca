"""Hand-made chest CTs for the anatomy tests: body, two lungs, a heart between them, spine and a rib."""

from __future__ import annotations

import numpy as np

from cacscore.io.volume import CTVolume

#: Voxel size of the synthetic volumes (dz, dy, dx), mm.
SPACING = (3.0, 1.6, 1.6)


def ellipsoid(
    shape: tuple[int, int, int],
    centre_mm: tuple[float, float, float],
    radii_mm: tuple[float, float, float],
    spacing: tuple[float, float, float] = SPACING,
) -> np.ndarray:
    """Bool mask of an axis-aligned ellipsoid; centre and radii (z, y, x) in mm from the volume's centre."""
    axes = [(np.arange(n) - (n - 1) / 2) * s - c for n, s, c in zip(shape, spacing, centre_mm)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return (z / radii_mm[0]) ** 2 + (y / radii_mm[1]) ** 2 + (x / radii_mm[2]) ** 2 <= 1.0


def chest(
    *,
    fov_mm: float = 400.0,
    n_slices: int = 40,
    heart_z_mm: float = 0.0,
    blood_hu: float = 40.0,
    lungs: bool = True,
    padding_hu: float | None = None,
) -> CTVolume:
    """A chest CT: a body with two lungs and a heart between them.

    The body is 40 HU in air, the lungs -850 HU and 20 mm apart, and the heart (fat, 40 HU wall, blood)
    pushes them apart.

    Parameters
    ----------
    fov_mm : float
        In-plane field of view; below ~260 mm the body outline leaves the view, as in a gated scan.
    heart_z_mm : float
        Heart centre along z from the volume's centre, mm.
    blood_hu : float
        HU of the blood inside the heart (350 for a contrast-enhanced scan).
    lungs : bool
        False fills the lungs with soft tissue (an abdomen has none).
    padding_hu : float, optional
        Value outside the reconstruction circle (e.g. -3024); None: no circle.
    """
    n = int(round(fov_mm / SPACING[1]))
    shape = (n_slices, n, n)
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[ellipsoid(shape, (0, 0, 0), (1e4, 130, 170))] = 40.0  # body
    hu[ellipsoid(shape, (0, 0, 0), (1e4, 80, 45))] = -100.0  # mediastinal fat
    if lungs:
        for side in (-1, 1):
            hu[ellipsoid(shape, (0, 0, side * 70), (1e4, 75, 58))] = -850.0
    hu[ellipsoid(shape, (heart_z_mm, 0, 0), (50, 52, 52))] = -100.0  # epicardial fat
    hu[ellipsoid(shape, (heart_z_mm, 0, 0), (45, 45, 45))] = 40.0  # myocardium
    hu[ellipsoid(shape, (heart_z_mm, 0, 0), (40, 39, 39))] = blood_hu
    hu[ellipsoid(shape, (0, 95, 0), (1e4, 16, 16))] = 400.0  # spine
    if padding_hu is not None:
        hu[:, ~ellipsoid((1, n, n), (0, 0, 0), (1, fov_mm / 2, fov_mm / 2))[0]] = padding_hu
    return CTVolume(hu.astype(np.int16), SPACING)


def index_of(volume: CTVolume, zyx_mm: tuple[float, float, float]) -> tuple[int, int, int]:
    """Voxel index of a point (z, y, x) in mm from the volume's centre."""
    return tuple(int(round(c / s + (n - 1) / 2)) for c, s, n in zip(zyx_mm, volume.spacing, volume.shape))  # type: ignore[return-value]
