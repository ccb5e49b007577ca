"""The heart region: where coronary calcium can be, in the volume's own grid.

The region is the mediastinal mass between the lungs
(:mod:`cacscore.anatomy.mediastinum`), grown by a margin that keeps the
epicardial fat and the coronary arteries on the heart's surface inside, with
bone taken out. It is computed on the coarse grid and read on the source grid
box by box (:meth:`HeartRegion.source_mask`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cacscore.anatomy.grid import CoarseGrid
from cacscore.anatomy.tissues import IN_PLANE_CROSS
from cacscore.arrays import bounding_box, grow_box

#: Margin added around the mediastinal mass, mm. The coronary arteries run in the epicardial fat on the
#: heart's surface, inside the pericardium, a few mm from the lung's edge; a 3 mm coarse voxel at that
#: edge may count as lung. Two coarse voxels (~6 mm) keep them inside and stay short of the chest wall
#: and ribs, which lie beyond the lungs or behind the sternum.
REGION_MARGIN_MM = 6.0


@dataclass(frozen=True)
class HeartRegion:
    """Where coronary calcium can lie.

    Parameters
    ----------
    grid : CoarseGrid
        The coarse grid and its way back to the source grid.
    mask : (Z', Y', X') ndarray of bool
        The region on the coarse grid (all false when no heart was found).
    found : bool
        Whether a heart-sized mass was found; without one no lesion is coronary calcium.
    reason : str
        Why not, when ``found`` is false (else empty).
    """

    grid: CoarseGrid
    mask: np.ndarray
    found: bool
    reason: str = ""

    def source_mask(self, box: tuple[slice, slice, slice] | None = None) -> np.ndarray:
        """The region on the source grid, or on a box of it, ``(Z, Y, X)`` bool."""
        return self.grid.to_source(self.mask, box)

    def outline_slice(self, z: int) -> np.ndarray:
        """The region's border in source slice ``z``, ``(Y, X)`` bool: the outline the review page draws."""
        z = int(z)
        region = self.source_mask((slice(z, z + 1), slice(None), slice(None)))[0]
        return region & ~ndimage.binary_erosion(region, structure=IN_PLANE_CROSS[1])


def grow_region(mass: np.ndarray, bone: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """The mediastinal mass grown by :data:`REGION_MARGIN_MM` in each direction, without bone.

    Parameters
    ----------
    mass, bone : (Z', Y', X') ndarray of bool
    spacing : tuple of 3 float
        Coarse voxel size ``(dz, dy, dx)``, mm.

    Returns
    -------
    (Z', Y', X') ndarray of bool
    """
    if not mass.any():
        return np.zeros(mass.shape, dtype=bool)
    margin = [int(np.ceil(REGION_MARGIN_MM / s)) for s in spacing]
    box = grow_box(bounding_box(mass), margin, mass.shape)  # type: ignore[arg-type]
    # Distance (mm) from the mass, anisotropic: a 5 mm slice grows by one slice at most.
    distance = ndimage.distance_transform_edt(~mass[box], sampling=spacing)
    region = np.zeros(mass.shape, dtype=bool)
    region[box] = distance <= REGION_MARGIN_MM
    return region & ~bone
