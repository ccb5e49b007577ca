"""Air, lungs, soft tissue and bone on the coarse grid, by thresholds and connected components.

Each coarse voxel is a ~3 mm block mean (:mod:`cacscore.anatomy.grid`), so
the classes are those of organs, not of single voxels. Lungs are lung-density
regions *inside the body*: per slice, the lung-density voxels that the body's
soft tissue encloses. A tight cardiac field of view cuts the body and the
lungs at the edge of the reconstruction circle; there, the edge of the
field of view closes the body outline, so that the partly seen lungs are
still enclosed, while a full field of view, with the whole body outline in
view, keeps the couch, blankets and the air around the body outside. A lung
that the edge opens to the outside in some slices (a view centred on the
heart, off the body's midline) stays lung where it continues, in 3-D, a lung
enclosed in other slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Below this block mean a coarse voxel is air (outside the body, trachea, bowel gas), HU. Block means of
#: air are -1000 +- 5 HU; lung parenchyma lies at -900..-700 HU in inspiration (mean lung density of healthy
#: adults about -850 HU; the real chest CTs of the test set have lung medians -780..-865 HU); -950 HU is
#: the emphysema threshold of lung densitometry (Gevenois et al., AJRCCM 1996), below which even
#: a diseased lung's tissue rarely lies over a whole 3 mm block.
AIR_MAX_HU = -950.0
#: Below this (and above :data:`AIR_MAX_HU`) a coarse voxel has lung density; above it, soft tissue, HU.
#: Midway between aerated lung (~ -850) and soft tissue (0..60); -400..-500 HU is the usual lung/tissue
#: cut of lung segmentation (Hu, Hoffman, Reinhardt, IEEE TMI 2001).
LUNG_MAX_HU = -400.0
#: From this block mean a coarse voxel is bone, HU. Trabecular bone of adult vertebrae and sternum is
#: 150-300 HU with a denser cortex (vertebral bodies of the real chest CTs: 3 mm block means 200-400 HU);
#: soft tissue and unenhanced blood stay below 80 HU. Only large components count (:data:`MIN_BONE_ML`),
#: so a coronary calcification whose block reaches this value is not bone.
BONE_MIN_HU = 180.0
#: Smallest bone component, mL. The largest coronary calcifications hold < 1 mL (a 1000-Agatston lesion
#: is ~0.8 mL); a rib segment crossing a 200 mm field of view holds several mL.
MIN_BONE_ML = 1.5
#: Smallest lung component, mL: less is partial volume at the skin, bowel gas rims or noise.
MIN_LUNG_PIECE_ML = 5.0
#: A slice is cut by a tight field of view when at least this fraction of the edge of its reconstructed
#: region is body (tissue or lung density): a gated scan of 180-250 mm centred on the heart has the
#: chest wall or lung along most of its edge; a full field of view has air around the body.
TIGHT_EDGE_FRACTION = 0.5

#: Air gaps along the edge of the field of view up to this many coarse voxels on each side are closed (the
#: padding's partial volume turns single blocks at the circle's edge into air); outside air along the
#: edge of a tight view spans tens of blocks.
EDGE_GAP_VOXELS = 2

#: In-plane 8-neighbourhood without links between slices.
IN_PLANE_SQUARE = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE_SQUARE[1] = True
#: In-plane 4-neighbourhood without links between slices: the anatomy is decided slice by slice.
IN_PLANE_CROSS = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE_CROSS[1] = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class Tissues:
    """Tissue classes of the coarse voxels, each a ``(Z', Y', X')`` bool array.

    Parameters
    ----------
    padding : ndarray of bool
        Outside the reconstruction circle: every sample of the block holds the volume's lowest value.
    air : ndarray of bool
        Air-density voxels (outside the body, airways, bowel gas).
    lungs : ndarray of bool
        Lung-density voxels enclosed by the body (see the module docstring).
    tissue : ndarray of bool
        Soft tissue, blood and bone (block mean >= :data:`LUNG_MAX_HU`).
    bone : ndarray of bool
        Large dense components (:data:`BONE_MIN_HU`, :data:`MIN_BONE_ML`).
    tight_slices : ndarray of bool
        ``(Z',)``: slices where the field of view cuts the body.
    cut_edge : ndarray of bool
        Body at the edge of the field of view in those slices: where the view cuts the body, a lung may
        lie beyond it.
    """

    padding: np.ndarray
    air: np.ndarray
    lungs: np.ndarray
    tissue: np.ndarray
    bone: np.ndarray
    tight_slices: np.ndarray
    cut_edge: np.ndarray


def classify_tissues(mean_hu: np.ndarray, padding: np.ndarray, voxel_ml: float) -> Tissues:
    """Classify coarse voxels into air, lungs, tissue and bone.

    Parameters
    ----------
    mean_hu : (Z', Y', X') ndarray of float
        Block means, HU (:meth:`cacscore.anatomy.grid.CoarseGrid.block_mean`).
    padding : (Z', Y', X') ndarray of bool
        Blocks outside the reconstruction circle.
    voxel_ml : float
        Volume of one coarse voxel, mL.

    Returns
    -------
    Tissues
    """
    valid = ~padding
    air = valid & (mean_hu < AIR_MAX_HU)
    tissue = valid & (mean_hu >= LUNG_MAX_HU)
    lung_density = valid & ~air & ~tissue
    bone = _large_components(valid & (mean_hu >= BONE_MIN_HU), MIN_BONE_ML / voxel_ml)

    # The edge of the reconstructed region of each slice: the image border, or next to padding.
    edge = np.zeros_like(valid)
    edge[:, 0, :] = edge[:, -1, :] = edge[:, :, 0] = edge[:, :, -1] = True
    edge = (edge | ndimage.binary_dilation(padding, structure=IN_PLANE_CROSS)) & valid
    n_edge = edge.sum(axis=(1, 2))
    body_on_edge = (edge & ~air).sum(axis=(1, 2))
    tight_slices = body_on_edge >= TIGHT_EDGE_FRACTION * np.maximum(n_edge, 1)

    # Lung density is lung where the body encloses it: not connected, within its slice, to the image
    # border through anything but the body. Where the field of view cuts the body or a lung, the edge
    # closes the outline. The body is the largest tissue component; the couch and blankets are apart from it.
    body = largest_component(ndimage.binary_opening(tissue, structure=IN_PLANE_CROSS))
    # A few air blocks along the edge (partial volume with the padding) do not open a lung to the outside.
    seal = ndimage.binary_dilation(
        edge & ~air, structure=IN_PLANE_SQUARE, iterations=EDGE_GAP_VOXELS, mask=edge
    )
    solid = body | padding | seal | (edge & tight_slices[:, None, None])
    open_space, _ = ndimage.label(~solid, structure=IN_PLANE_CROSS)
    frame = np.zeros_like(valid)
    frame[:, 0, :] = frame[:, -1, :] = frame[:, :, 0] = frame[:, :, -1] = True
    touching = np.unique(open_space[frame & ~solid])
    touching = touching[touching > 0]
    outside = np.isin(open_space, touching)
    enclosed = lung_density & ~outside
    # A space that reaches the image border but has lung density as a whole may be a lung cut by the
    # view: a view centred on the heart, left of the body's midline, has half its edge on the body and
    # half in outside air, and lung blocks darker than AIR_MAX_HU (emphysema, a coarse lung texture) open
    # the lung to the border between the body blocks that seal it. Such a space is lung where it continues
    # (in 3-D) a lung that is enclosed in other slices; the couch's foam and the skin's partial-volume rim
    # outside the body continue no lung.
    medians = np.asarray(ndimage.median(mean_hu, open_space, touching), dtype=float).reshape(-1)
    cut_lung = np.isin(open_space, touching[medians >= AIR_MAX_HU]) & lung_density
    lungs = _large_components(
        ndimage.binary_opening(enclosed, structure=IN_PLANE_CROSS), MIN_LUNG_PIECE_ML / voxel_ml
    )
    cut_lung = ndimage.binary_opening(cut_lung, structure=IN_PLANE_CROSS)
    lungs = ndimage.binary_propagation(lungs, mask=lungs | cut_lung)
    cut_edge = edge & ~air & tight_slices[:, None, None]
    return Tissues(padding, air, lungs, tissue, bone, tight_slices, cut_edge)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected 3-D component of ``mask`` (all false when empty)."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _large_components(mask: np.ndarray, min_voxels: float) -> np.ndarray:
    """The 3-D components (6-connected) of ``mask`` with at least ``min_voxels`` voxels."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]
