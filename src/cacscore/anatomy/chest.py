"""The chest anatomy of one CT volume: coarse grid, tissues, mediastinal mass, heart region.

One pure function, :func:`analyse_chest`, from a :class:`~cacscore.io.volume.CTVolume`
to everything the input-domain check (:mod:`cacscore.anatomy.domain`) and the
heart region's lesion rule (:mod:`cacscore.anatomy.exclusion`) need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cacscore.anatomy.grid import CoarseGrid
from cacscore.anatomy.heart_region import grow_region
from cacscore.anatomy.mediastinum import MediastinalMass, mediastinal_mass
from cacscore.anatomy.tissues import IN_PLANE_CROSS, Tissues, classify_tissues
from cacscore.io.volume import CTVolume

#: Padding outside the reconstruction circle holds one value at or below the air of a 12-bit CT (-1024 HU;
#: vendors use -1024, -2000, -2048 or -3024). Block means are floored here so that padding counts as air.
PADDING_MAX_HU = -1024.0


@dataclass(frozen=True)
class ChestAnatomy:
    """Anatomy of a volume on its coarse grid.

    Parameters
    ----------
    grid : CoarseGrid
    mean_hu : (Z', Y', X') ndarray of float32
        Block means, HU, floored at :data:`PADDING_MAX_HU`.
    tissues : Tissues
    mass : MediastinalMass
    region : (Z', Y', X') ndarray of bool
        The mass grown by the heart region's margin, bone excluded
        (:func:`cacscore.anatomy.heart_region.grow_region`).
    """

    grid: CoarseGrid
    mean_hu: np.ndarray
    tissues: Tissues
    mass: MediastinalMass
    region: np.ndarray


def analyse_chest(volume: CTVolume) -> ChestAnatomy:
    """Compute body, lungs, bone, the mediastinal mass and the heart region of ``volume``.

    Parameters
    ----------
    volume : CTVolume

    Returns
    -------
    ChestAnatomy
    """
    grid = CoarseGrid.for_volume(volume.shape, volume.spacing)
    mean = grid.block_mean(volume.hu)
    lowest = float(mean.min())
    # A block whose mean is the lowest value holds that value everywhere: padding, if that value is padding.
    padding = (mean <= lowest + 0.5) if lowest <= PADDING_MAX_HU else np.zeros(mean.shape, dtype=bool)
    # Blocks across the circle's edge mix padding with lung or tissue into air-like means; they join the
    # padding.
    padding = ndimage.binary_dilation(padding, structure=IN_PLANE_CROSS)
    mean = np.maximum(mean, np.float32(PADDING_MAX_HU))
    tissues = classify_tissues(mean, padding, grid.voxel_ml)
    mass = mediastinal_mass(tissues, mean, grid.spacing)
    return ChestAnatomy(
        grid, mean, tissues, mass, grow_region(mass.mask, tissues.bone, tissues.tissue, grid.spacing)
    )
