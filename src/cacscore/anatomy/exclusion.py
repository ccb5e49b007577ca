"""The heart region's lesion rule: no coronary calcium outside the heart or on bone.

A predicted lesion is dropped when its calcium (the 26-connected voxels at or
above the calcium threshold that hold it) leaves the heart region: it lies
outside the region, or it is joined at >= 130 HU to bone (ribs, sternum,
vertebrae, calcified costal cartilage), which the region excludes. This runs
after the networks of every model, so no model can put calcium there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cacscore.anatomy.heart_region import HeartRegion
from cacscore.arrays import bounding_box, grow_box
from cacscore.scoring.conventions import FULL_26

#: How far beyond the predicted voxels the calcium they belong to is followed, mm. Calcium that reaches
#: farther than this beyond the predicted voxels is larger than a coronary plaque; bone, whose cortex
#: runs for centimetres, is the usual case, so it counts as leaving the region.
FOLLOW_MM = 15.0


@dataclass(frozen=True)
class Exclusion:
    """Labels with the lesions outside the heart region removed.

    Parameters
    ----------
    labels : (Z, Y, X) ndarray
        The kept labels (same dtype as the input).
    n_removed : int
        Number of calcium components removed.
    warnings : list of str
        What was removed and why, for the report.
    """

    labels: np.ndarray
    n_removed: int
    warnings: list[str]


def exclude_outside_heart(
    labels: np.ndarray,
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    region: HeartRegion,
    threshold_hu: float,
) -> Exclusion:
    """Drop predicted calcium that lies outside the heart region or is joined to bone.

    Parameters
    ----------
    labels : (Z, Y, X) ndarray of int
        Predicted label codes (0 background) on the volume's grid.
    hu : (Z, Y, X) ndarray
        The volume, HU.
    spacing : tuple of 3 float
        ``(dz, dy, dx)``, mm.
    region : HeartRegion
        From :func:`cacscore.anatomy.domain.check_domain`; without a heart every lesion is removed.
    threshold_hu : float
        Calcium threshold, HU.

    Returns
    -------
    Exclusion
    """
    box = bounding_box(labels)
    if box is None:
        return Exclusion(labels, 0, [])
    if not region.found:
        removed = int(ndimage.label(labels[box] != 0, structure=FULL_26)[1])
        return Exclusion(
            np.zeros_like(labels),
            removed,
            [
                f"heart region not found ({region.reason}); no lesion is counted as coronary calcium "
                f"({removed} predicted removed)"
            ],
        )
    margin = tuple(int(np.ceil(FOLLOW_MM / s)) for s in spacing)
    outer = grow_box(box, margin, labels.shape)
    predicted = labels[outer] != 0
    calcium = (np.asarray(hu[outer]) >= threshold_hu) | predicted
    components, _ = ndimage.label(calcium, structure=FULL_26)
    inside = region.source_mask(outer)  # type: ignore[arg-type]
    leaving = set(np.unique(components[calcium & ~inside]).tolist())
    # Calcium reaching the box's faces (where they are not the volume's) goes on beyond FOLLOW_MM.
    for axis, part in enumerate(outer):
        for index, at_volume_edge in ((0, part.start == 0), (-1, part.stop == labels.shape[axis])):
            if not at_volume_edge:
                leaving |= set(np.unique(np.take(components, index, axis=axis)).tolist())
    leaving.discard(0)
    hit = set(np.unique(components[predicted]).tolist()) & leaving
    if not hit:
        return Exclusion(labels, 0, [])
    kept = labels.copy()
    kept[outer][np.isin(components, sorted(hit)) & predicted] = 0
    return Exclusion(
        kept,
        len(hit),
        [f"{len(hit)} predicted lesion(s) outside the heart region or joined to bone were not counted"],
    )
