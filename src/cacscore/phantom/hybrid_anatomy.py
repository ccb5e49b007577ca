"""Where the heart and its epicardial fat are in a real non-contrast chest CT (classical image analysis).

A minimal localisation for real-anatomy hybrids (:mod:`cacscore.phantom.hybrid`): no learning, only
thresholds, morphology and geometry, so that it works on any non-contrast chest CT with the heart in
view and can be checked by eye. Steps, per axial slice and then in 3-D:

1. body: the largest component of voxels > -500 HU, holes filled;
2. lungs: air (< -400 HU) inside the body;
3. mediastinum: the convex hull of the lungs, minus the lungs;
4. heart: smoothed soft tissue (-40-160 HU) inside the mediastinum, opened with an 8 mm ball so
   that vessels and the oesophagus fall away, the 3-D component around the thickest part of it
   (most distance from its border) in slices where both lungs are present;
5. epicardial fat: fat (-190 to -30 HU) inside the mediastinum within 12 mm of the heart;
6. bone: >= 150 HU voxels outside the lungs' hull, or in a dense structure larger than 3 cm^3
   (ribs, sternum, spine; not mediastinal calcium), closed.

The result is approximate by design: lesions are inserted only where every test agrees (fat next to
the heart surface, far from lung and from anything >= 100 HU), and ``docs/hybrids.md`` shows the
masks on the two real backgrounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

from cacscore.errors import InvalidInputError
from cacscore.scoring.conventions import FULL_26

#: HU bands of the tissues the localisation separates.
AIR_MAX_HU = -400.0
FAT_HU = (-190.0, -30.0)
SOFT_TISSUE_HU = (-40.0, 160.0)
BONE_MIN_HU = 150.0
#: A dense structure this large is bone even inside the mediastinum (a vertebra is ~30 000 mm^3; the
#: largest coronary calcification seen on the real backgrounds ~1 000 mm^3).
LARGE_BONE_MM3 = 3000.0


@dataclass(frozen=True)
class HeartRegion:
    """Masks of a chest CT that place inserted lesions (all ``(Z, Y, X)`` bool, the volume's grid).

    Attributes
    ----------
    body, lungs, mediastinum, heart, fat, bone : (Z, Y, X) ndarray of bool
        See the module docstring for how each is found.
    heart_slices : tuple of 2 int
        First and last slice holding heart.
    """

    body: np.ndarray
    lungs: np.ndarray
    mediastinum: np.ndarray
    heart: np.ndarray
    fat: np.ndarray
    bone: np.ndarray
    heart_slices: tuple[int, int]

    def heart_neighbourhood(self, spacing: tuple[float, float, float], margin_mm: float = 10.0) -> np.ndarray:
        """Heart and epicardial fat grown by ``margin_mm`` (the region a found lesion may lie in)."""
        return _grow(self.heart | self.fat, spacing, margin_mm)


def _ball(radius_mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    r = [max(0, int(np.floor(radius_mm / s))) for s in spacing]
    zz, yy, xx = np.ogrid[-r[0] : r[0] + 1, -r[1] : r[1] + 1, -r[2] : r[2] + 1]
    return np.asarray(
        (zz * spacing[0]) ** 2 + (yy * spacing[1]) ** 2 + (xx * spacing[2]) ** 2 <= radius_mm**2 + 1e-9
    )


def _grow(mask: np.ndarray, spacing: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    """``mask`` dilated by ``radius_mm`` (exact Euclidean distance, anisotropic spacing)."""
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    return np.asarray(ndi.distance_transform_edt(~mask, sampling=spacing) <= radius_mm)


def _box(mask: np.ndarray, spacing: tuple[float, float, float], margin_mm: float) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown by ``margin_mm`` (clipped to the volume)."""
    idx = np.argwhere(mask)
    lo = [max(0, int(v - margin_mm // s - 1)) for v, s in zip(idx.min(axis=0), spacing, strict=True)]
    hi = [
        min(n, int(v + margin_mm // s + 2))
        for v, s, n in zip(idx.max(axis=0), spacing, mask.shape, strict=True)
    ]
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def _largest_2d(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.asarray(labels == int(np.argmax(sizes)))


def _hull(mask: np.ndarray, step: int = 2) -> np.ndarray:
    """Filled 2-D convex hull of ``mask`` (points sampled every ``step`` pixels for speed)."""
    pts = np.argwhere(mask[::step, ::step]) * step
    out = np.zeros(mask.shape, bool)
    if len(pts) < 4:
        return out
    try:
        hull = ConvexHull(pts)
    except QhullError:  # collinear points: no area
        return out
    lo, hi = pts.min(axis=0), pts.max(axis=0) + 1
    yy, xx = np.mgrid[lo[0] : hi[0], lo[1] : hi[1]]
    # Inside = on the inner side of every facet (a few dozen half-planes).
    normals, offsets = hull.equations[:, :2], hull.equations[:, 2]
    inside = np.ones(yy.shape, bool)
    for (ny_, nx_), b in zip(normals, offsets, strict=True):
        inside &= ny_ * yy + nx_ * xx + b <= 1e-9
    out[lo[0] : hi[0], lo[1] : hi[1]] = inside
    return out


def locate_heart(hu: np.ndarray, spacing: tuple[float, float, float]) -> HeartRegion:
    """Find the body, lungs, heart, epicardial fat and bone of a non-contrast chest CT.

    Parameters
    ----------
    hu : (Z, Y, X) ndarray
        Attenuation, HU; axial slices, rows anterior to posterior.
    spacing : tuple of 3 float
        ``(dz, dy, dx)``, mm.

    Returns
    -------
    HeartRegion

    Raises
    ------
    InvalidInputError
        If no heart is found: no slice with lung on both sides of soft tissue (not a chest CT, or
        the heart is out of view).
    """
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise InvalidInputError(f"hu must be a 3-D (z, y, x) array, got shape {hu.shape}")
    # The heart is found on a ~2 mm in-plane grid (block means): 10-20x faster, and nothing it needs is
    # smaller. Fat and bone are then thresholded at full resolution.
    f = max(1, int(round(2.0 / min(spacing[1], spacing[2]))))
    shape = hu.shape
    ny, nx = -(-shape[1] // f), -(-shape[2] // f)
    padded = np.pad(
        hu.astype(np.float32), ((0, 0), (0, ny * f - shape[1]), (0, nx * f - shape[2])), mode="edge"
    )
    coarse = padded.reshape(shape[0], ny, f, nx, f).mean(axis=(2, 4))
    cs = (spacing[0], spacing[1] * f, spacing[2] * f)
    smooth = ndi.gaussian_filter(coarse, sigma=[0.0, 1.5 / cs[1], 1.5 / cs[2]])
    body = np.zeros(coarse.shape, bool)
    lungs = np.zeros(coarse.shape, bool)
    mediastinum = np.zeros(coarse.shape, bool)
    both_lungs = np.zeros(shape[0], bool)
    px_mm2 = cs[1] * cs[2]
    for k in range(shape[0]):
        b = ndi.binary_fill_holes(_largest_2d(smooth[k] > -500))
        body[k] = b
        air = ndi.binary_opening((smooth[k] < AIR_MAX_HU) & b)
        labels, n = ndi.label(air)
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel())[1:] * px_mm2
        keep = [i + 1 for i in np.argsort(sizes)[::-1][:2] if sizes[i] >= 400.0]
        lung = np.isin(labels, keep)
        lungs[k] = lung
        if len(keep) == 2:
            # Both lungs, one each side of the midline: the mediastinum lies between them.
            cx = [np.argwhere(labels == i)[:, 1].mean() for i in keep]
            both_lungs[k] = abs(cx[0] - cx[1]) * cs[2] > 80.0
        mediastinum[k] = _hull(lung, step=1) & ~lung & b
    if not both_lungs.any():
        raise InvalidInputError("no slice with lung on both sides of the mediastinum: heart not in view")
    soft = (smooth >= SOFT_TISSUE_HU[0]) & (smooth <= SOFT_TISSUE_HU[1]) & mediastinum
    soft[~both_lungs] = False
    # In-plane opening (slices are up to 5 mm apart, so a 3-D ball would erase thin slabs).
    disk = _ball(8.0, (1e9, cs[1], cs[2]))[0]
    core = np.zeros_like(soft)
    for kk in np.flatnonzero(soft.any(axis=(1, 2))):
        core[kk] = ndi.binary_opening(soft[kk], structure=disk)
    if not core.any():
        raise InvalidInputError("no soft tissue between the lungs thick enough for a heart")
    depth = ndi.distance_transform_edt(core, sampling=(1e3, cs[1], cs[2]))
    seed = np.unravel_index(int(np.argmax(depth)), depth.shape)
    labels, _ = ndi.label(core)
    heart = labels == labels[seed]
    # Below the heart the liver joins it through the diaphragm: the component then grows and its centre
    # moves to the patient's right (the heart lies left of the midline). Above the heart the great
    # vessels are much narrower than the heart.
    area = heart.sum(axis=(1, 2)).astype(float)
    cols = np.arange(coarse.shape[2], dtype=float)

    def centre_x(mask: np.ndarray) -> float:
        return float((mask.sum(axis=0) * cols).sum() / max(1, mask.sum())) * cs[2]

    top = int(seed[0])
    lo = top
    while (
        lo > 0
        and 0.3 * area[top] <= area[lo - 1] <= 1.25 * area[lo : top + 1].max()
        and centre_x(heart[lo - 1]) >= centre_x(body[lo - 1]) - 5.0
    ):
        lo -= 1
    hi = top
    while hi < len(area) - 1 and area[hi + 1] >= 0.5 * area[top]:
        hi += 1
    heart[:lo] = False
    heart[hi + 1 :] = False
    for k in range(lo, hi + 1):
        heart[k] = ndi.binary_fill_holes(_largest_2d(heart[k]))

    def full(mask: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(mask, f, axis=1), f, axis=2)[:, : shape[1], : shape[2]]

    body, lungs, mediastinum, heart = full(body), full(lungs), full(mediastinum), full(heart)
    # Fat and the 3 mm margin that keeps the heart's own calcium out of the bone mask are only needed
    # near the heart: work in its bounding box grown by 20 mm.
    box = _box(heart, spacing, 20.0)
    fine = ndi.gaussian_filter(hu[box].astype(np.float32), sigma=[0.0, 0.7 / spacing[1], 0.7 / spacing[2]])
    fat_band = (fine >= FAT_HU[0]) & (fine <= FAT_HU[1]) & mediastinum[box]
    near = ndi.distance_transform_edt(~heart[box], sampling=(1e3, spacing[1], spacing[2])) <= 12.0
    fat = np.zeros(shape, bool)
    fat[box] = fat_band & near & ~heart[box]
    margin = np.zeros(shape, bool)
    margin[box] = _grow(heart[box], spacing, 3.0)
    # Bone: dense voxels outside the lungs' hull (ribs, sternum, scapulae), or in a large dense structure
    # (the spine reaches into the hull). Calcium in the mediastinum (coronary, aortic, valve) is in
    # neither: its components are far smaller than a vertebra.
    dense = (hu >= BONE_MIN_HU) & body & ~margin
    comps, _ = ndi.label(dense, structure=FULL_26)
    volume_mm3 = np.bincount(comps.ravel()) * float(np.prod(spacing))
    large = (volume_mm3 >= LARGE_BONE_MM3)[comps] & (comps > 0)
    bone = dense & (~(mediastinum | lungs) | large)
    bone = ndi.binary_closing(bone, structure=np.ones((1, 3, 3), bool))
    return HeartRegion(
        body=body,
        lungs=lungs,
        mediastinum=mediastinum,
        heart=heart,
        fat=fat,
        bone=bone,
        heart_slices=(lo, hi),
    )
