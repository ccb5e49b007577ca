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
#: How far the region grows from the mass between the lungs through soft tissue (never through lung or
#: bone), in-plane, mm. Where the left lung's cardiac notch leaves the front of the heart against the
#: chest wall, no row has lung on both sides of it: phantoms put the distal LAD up to ~35 mm in front of
#: the mass between the lungs (10 of 360 reference lesions of cohort 122001 fell outside without it).
TISSUE_GROWTH_MM = 40.0


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


def grow_region(
    mass: np.ndarray, bone: np.ndarray, tissue: np.ndarray, spacing: tuple[float, float, float]
) -> np.ndarray:
    """The mediastinal mass grown into the heart region, without bone.

    The mass grows through soft tissue by :data:`TISSUE_GROWTH_MM`, then by :data:`REGION_MARGIN_MM`.

    Parameters
    ----------
    mass, bone, tissue : (Z', Y', X') ndarray of bool
    spacing : tuple of 3 float
        Coarse voxel size ``(dz, dy, dx)``, mm.

    Returns
    -------
    (Z', Y', X') ndarray of bool
    """
    if not mass.any():
        return np.zeros(mass.shape, dtype=bool)
    steps = int(np.ceil(TISSUE_GROWTH_MM / min(spacing[1:])))
    margin = [int(np.ceil(REGION_MARGIN_MM / s)) for s in spacing]
    outer = [m + (steps if axis else 0) for axis, m in enumerate(margin)]
    box = grow_box(bounding_box(mass), outer, mass.shape)  # type: ignore[arg-type]
    # In-plane growth through soft tissue (not bone, not lung): the heart's front where it meets the chest
    # wall without lung beside it (the cardiac notch of the left lung), slice by slice.
    grown = ndimage.binary_dilation(
        mass[box], structure=IN_PLANE_CROSS, iterations=steps, mask=tissue[box] & ~bone[box]
    )
    # Distance (mm) from the grown mass, anisotropic: a 5 mm slice grows by one slice at most.
    distance = ndimage.distance_transform_edt(~grown, sampling=spacing)
    region = np.zeros(mass.shape, dtype=bool)
    region[box] = distance <= REGION_MARGIN_MM
    return region & ~bone
