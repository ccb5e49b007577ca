"""The soft-tissue mass between the lungs (mediastinum and heart) and its blood pool.

In an axial slice through the heart, the heart and the great vessels fill the
space between the right and the left lung. A coarse voxel belongs to that
space when its row holds lung on both sides of it, no farther apart than a
heart is wide. The largest 3-D component of such voxels is the mediastinal
mass; in the abdomen or the pelvis there are no lungs, or only the thin
crescents of the lung bases around the liver, and the mass is small or absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cacscore.anatomy.tissues import IN_PLANE_CROSS, Tissues, largest_component

#: Widest gap between the right and the left lung that still counts as mediastinum, mm. The heart's
#: transverse diameter is 12-14 cm in adults and up to ~18 cm in cardiomegaly (cardiothoracic ratio 0.6
#: of a 30 cm chest); 220 mm leaves room for the pericardial fat beside it. The liver between the lung
#: bases spans the abdomen (25-35 cm) and stays out.
MAX_MEDIASTINUM_WIDTH_MM = 220.0
#: Depth inside the mediastinal mass from which a voxel is blood pool, mm. The cardiac chambers and the
#: aortic root are >= 3 cm wide, so their centres lie >= 15 mm from the pericardial fat and the lungs;
#: the myocardium (<= 12 mm thick) and the spine at the mass's border are shallower.
BLOOD_POOL_DEPTH_MM = 15.0
#: Where no voxel is that deep (a heart cut by the volume), the deepest fraction of the mass is taken.
BLOOD_POOL_DEEPEST_FRACTION = 0.1
#: A z step no in-plane distance reaches, mm: distance transforms with it are per slice.
_APART_MM = 1e6


@dataclass(frozen=True)
class MediastinalMass:
    """The mass between the lungs on the coarse grid.

    Parameters
    ----------
    mask : (Z', Y', X') ndarray of bool
        The largest 3-D component of soft tissue between the lungs, bone excluded.
    with_dense : (Z', Y', X') ndarray of bool
        The same with dense voxels (bone, contrast-filled blood) kept: the blood pool is measured here.
    blood_pool_hu : float or None
        Median block mean of the blood pool (see :data:`BLOOD_POOL_DEPTH_MM`), HU; None without a mass.
    """

    mask: np.ndarray
    with_dense: np.ndarray
    blood_pool_hu: float | None


def between_lungs(lungs: np.ndarray, spacing_x_mm: float, cut_edge: np.ndarray | None = None) -> np.ndarray:
    """Voxels with lung on both sides in their row.

    The nearest lung voxels on the two sides are no more than :data:`MAX_MEDIASTINUM_WIDTH_MM` apart.

    Where a tight field of view cuts the body (``cut_edge``), the edge may stand in for the lung on one side
    (a 180 mm view centred on the heart may show only one lung at mid-heart levels), never on both.

    Parameters
    ----------
    lungs : (Z', Y', X') ndarray of bool
    spacing_x_mm : float
        Coarse voxel width along x, mm.
    cut_edge : (Z', Y', X') ndarray of bool, optional
        Body cut by the edge of the field of view.

    Returns
    -------
    (Z', Y', X') ndarray of bool
        Never true on a lung or edge voxel itself.

    Examples
    --------
    >>> between_lungs(np.array([[[1, 0, 0, 1, 0]]], dtype=bool), 10.0).astype(int)
    array([[[0, 1, 1, 0, 0]]])
    """
    edge = np.zeros_like(lungs) if cut_edge is None else cut_edge
    n = lungs.shape[2]
    lung_left, lung_right = _nearest(lungs)
    any_left, any_right = _nearest(lungs | edge)
    lung_then_any = (
        (lung_left >= 0)
        & (any_right < n)
        & ((any_right - lung_left) * spacing_x_mm <= MAX_MEDIASTINUM_WIDTH_MM)
    )
    any_then_lung = (
        (any_left >= 0)
        & (lung_right < n)
        & ((lung_right - any_left) * spacing_x_mm <= MAX_MEDIASTINUM_WIDTH_MM)
    )
    return ~lungs & ~edge & (lung_then_any | any_then_lung)


def _nearest(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column of the nearest true voxel at or left of each voxel and at or right of it.

    Where there is none, the left column is -1 and the right column is X.
    """
    n = mask.shape[2]
    position = np.arange(n)
    left = np.maximum.accumulate(np.where(mask, position, -1), axis=2)
    right = np.minimum.accumulate(np.where(mask, position, n)[:, :, ::-1], axis=2)[:, :, ::-1]
    return left, right


def mediastinal_mass(
    tissues: Tissues, mean_hu: np.ndarray, spacing: tuple[float, float, float]
) -> MediastinalMass:
    """Find the mass between the lungs and measure its blood pool.

    Parameters
    ----------
    tissues : Tissues
    mean_hu : (Z', Y', X') ndarray of float
        Block means, HU.
    spacing : tuple of 3 float
        Coarse voxel size ``(dz, dy, dx)``, mm.

    Returns
    -------
    MediastinalMass
    """
    between = between_lungs(tissues.lungs, spacing[2], tissues.cut_edge) & tissues.tissue
    # An in-plane opening cuts the thin bridges (a vessel, the chest wall between two lung tips).
    with_dense = largest_component(ndimage.binary_opening(between, structure=IN_PLANE_CROSS))
    mask = largest_component(ndimage.binary_opening(between & ~tissues.bone, structure=IN_PLANE_CROSS))
    return MediastinalMass(mask, with_dense, blood_pool_hu(mean_hu, with_dense, spacing))


def blood_pool_hu(mean_hu: np.ndarray, mass: np.ndarray, spacing: tuple[float, float, float]) -> float | None:
    """Median HU of the deep inside of the mass: the cardiac chambers and the great vessels.

    Parameters
    ----------
    mean_hu : (Z', Y', X') ndarray of float
        Block means, HU.
    mass : (Z', Y', X') ndarray of bool
        The mediastinal mass with its dense voxels.
    spacing : tuple of 3 float
        Coarse voxel size, mm.

    Returns
    -------
    float or None
        None when the mass is empty.
    """
    if not mass.any():
        return None
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(mass))
    inside = mass[box]
    # Depth in 2-D (per slice; a huge z step keeps slices apart): the heart's cut ends are no border. A
    # frame of background around the box makes the box's (and the image's) edge count as the border.
    framed = np.pad(inside, ((0, 0), (1, 1), (1, 1)))
    depth = ndimage.distance_transform_edt(framed, sampling=(_APART_MM, spacing[1], spacing[2]))[
        :, 1:-1, 1:-1
    ]
    values = depth[inside]
    deep = inside & (
        depth >= min(BLOOD_POOL_DEPTH_MM, float(np.quantile(values, 1 - BLOOD_POOL_DEEPEST_FRACTION)))
    )
    return float(np.median(mean_hu[box][deep]))
