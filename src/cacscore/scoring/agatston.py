"""The calcium scoring engine: Agatston, volume and mass scores, 3-D lesions, per artery.

Pure NumPy/SciPy and vectorised: one 2-D labelling pass and one 3-D labelling
pass over the whole volume, per-component statistics with :func:`numpy.bincount`;
no Python loop over slices or components. The conventions are documented in
``docs/scoring.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from cacscore.arrays import bounding_box
from cacscore.errors import InvalidInputError
from cacscore.io.volume import normalize_spacing
from cacscore.labels import ARTERY_NAMES, UNSPECIFIED, majority_artery
from cacscore.scoring.conventions import (
    AGATSTON_THRESHOLD_HU,
    AREA_TOLERANCE_MM2,
    FULL_26,
    IN_PLANE_8,
    REFERENCES,
    Thresholds,
    cac_drs,
    risk_category,
    thresholds_for,
)
from cacscore.scoring.results import ARTERY_ORDER, VESSELS, ArteryScore, Lesion, ScoreResult

if TYPE_CHECKING:
    from cacscore.io.volume import CTVolume

#: Room for label codes 0-7 when a 2-D component id and a label code share one integer key.
_CODE_SLOTS = 8


@dataclass(frozen=True)
class _ScoredVoxels:
    """Scored voxels (those in counted 2-D components) of a cropped box, one entry per voxel."""

    offset: tuple[int, int, int]  # (z, y, x) index of the box's first voxel in the volume
    box: np.ndarray  # (z, y, x) bool of scored voxels inside the box
    flat: np.ndarray  # int64 flat indices into `box`, ascending
    code: np.ndarray  # int64 label codes
    hu: np.ndarray  # float64 HU
    weight: np.ndarray  # int64 density weight of the voxel's 2-D component
    n_split: int  # 2-D components that held several label codes and were split


def _check_volume_array(hu: npt.ArrayLike, name: str = "hu") -> np.ndarray:
    array = np.asarray(hu)
    if array.ndim != 3:
        raise InvalidInputError(f"{name} must be a 3-D (z, y, x) array, got shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise InvalidInputError(f"{name} must hold numbers (HU), got dtype {array.dtype}")
    return array


def _check_mask(mask: npt.ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(mask)
    if array.shape != shape:
        raise InvalidInputError(
            f"mask shape {array.shape} does not match the volume "
            f"shape {shape}; the mask must be on the CT grid"
        )
    if not (array.dtype == bool or np.issubdtype(array.dtype, np.number)):
        raise InvalidInputError(f"mask must hold integer label codes, got dtype {array.dtype}")
    if array.size and array.dtype != bool:
        low, high = array.min(), array.max()
        if (
            low < 0
            or high > max(ARTERY_NAMES)
            or (not np.issubdtype(array.dtype, np.integer) and not np.all(np.mod(array, 1) == 0))
        ):
            raise InvalidInputError(
                f"mask must hold label codes 0-{max(ARTERY_NAMES)} "
                "(0 background, 1 unspecified, 2 LM, 3 LAD, "
                f"4 LCX, 5 RCA), found values in [{low}, {high}]; convert other conventions with "
                "cacscore.labels.to_project_labels"
            )
    return array.astype(np.uint8, copy=False)


def _check_options(min_area_mm2: float, min_voxels: int | None, mass_calibration: float) -> None:
    if not math.isfinite(min_area_mm2) or min_area_mm2 < 0:
        raise InvalidInputError(f"min_area_mm2 must be a finite area >= 0 in mm^2, got {min_area_mm2!r}")
    if min_voxels is not None and (
        isinstance(min_voxels, bool) or int(min_voxels) != min_voxels or min_voxels < 1
    ):
        raise InvalidInputError(f"min_voxels must be a positive integer or None, got {min_voxels!r}")
    if not math.isfinite(mass_calibration) or mass_calibration <= 0:
        raise InvalidInputError(f"mass_calibration must be a finite factor > 0, got {mass_calibration!r}")


def _paste(box: np.ndarray, offset: tuple[int, int, int], shape: tuple[int, ...]) -> np.ndarray:
    """Full-size zero array of ``box``'s dtype with ``box`` placed at ``offset`` (z, y, x)."""
    full = np.zeros(shape, dtype=box.dtype)
    z, y, x = offset
    nz, ny, nx = box.shape
    full[z : z + nz, y : y + ny, x : x + nx] = box
    return full


def _scored_voxels(
    hu: np.ndarray,
    codes: np.ndarray | None,
    spacing: tuple[float, float, float],
    thresholds: Thresholds,
    min_area_mm2: float,
    min_voxels: int | None,
) -> _ScoredVoxels | None:
    """Apply threshold, 2-D 8-connected components per label, area/size rules and density weights.

    ``codes`` None means one label everywhere (plain thresholding). Returns None
    when no voxel reaches the threshold inside the mask.
    """
    candidate = hu >= thresholds.threshold_hu
    if codes is not None:
        candidate &= codes != 0
    box = bounding_box(candidate)
    if box is None:
        return None
    candidate = candidate[box]
    components, n_components = ndimage.label(candidate, structure=IN_PLANE_8)
    flat = np.flatnonzero(candidate)
    component = components.ravel()[flat].astype(np.int64)
    code = (
        codes[box].ravel()[flat].astype(np.int64)
        if codes is not None
        else np.full(flat.size, UNSPECIFIED, np.int64)
    )
    values = hu[box].ravel()[flat].astype(np.float64)

    # A component is per label: (2-D component, code) pairs are the scored units, numbered densely.
    key = component * _CODE_SLOTS + code
    key_count = np.bincount(key, minlength=(n_components + 1) * _CODE_SLOTS)
    present = key_count > 0
    part_of_key = np.cumsum(present) - 1
    part = part_of_key[key]
    n_pixels = key_count[present]
    parts_per_component = np.bincount(np.flatnonzero(present) // _CODE_SLOTS, minlength=n_components + 1)
    n_split = int(np.count_nonzero(parts_per_component > 1))

    peak = np.full(n_pixels.size, -np.inf)
    np.maximum.at(peak, part, values)
    _, dy, dx = spacing
    counted = n_pixels * (dy * dx) >= min_area_mm2 - AREA_TOLERANCE_MM2
    if min_voxels is not None:
        counted &= n_pixels >= min_voxels
    weight = np.where(counted, thresholds.weights(peak), 0)

    keep = counted[part]
    scored = np.zeros(candidate.shape, dtype=bool)
    scored.ravel()[flat[keep]] = True
    offset = (box[0].start, box[1].start, box[2].start)
    return _ScoredVoxels(offset, scored, flat[keep], code[keep], values[keep], weight[part][keep], n_split)


def label_lesions_3d(scored: npt.ArrayLike) -> tuple[np.ndarray, int]:
    """Label 26-connected groups of scored voxels (3-D lesions).

    Parameters
    ----------
    scored : (Z, Y, X) ndarray of bool
        Scored calcium voxels.

    Returns
    -------
    labels : (Z, Y, X) ndarray of int32
        0 outside lesions, lesion ids 1..n in raster order of each lesion's first voxel.
    n : int
        Number of lesions.

    Raises
    ------
    InvalidInputError
        If ``scored`` is not 3-D.

    Examples
    --------
    >>> scored = np.zeros((2, 2, 2), bool); scored[0, 0, 0] = scored[1, 1, 1] = True
    >>> label_lesions_3d(scored)[1]
    1
    """
    array = np.asarray(scored)
    if array.ndim != 3:
        raise InvalidInputError(f"scored must be a 3-D (z, y, x) array, got shape {array.shape}")
    labels, n = ndimage.label(array != 0, structure=FULL_26, output=np.int32)
    return labels, int(n)


def candidate_mask(
    hu: npt.ArrayLike,
    spacing: object,
    *,
    threshold_hu: float = AGATSTON_THRESHOLD_HU,
    min_area_mm2: float = 1.0,
    min_voxels: int | None = None,
) -> np.ndarray:
    """Voxels that Agatston scoring would count if they were coronary: thresholded 2-D components.

    Voxels with HU >= ``threshold_hu`` grouped in 2-D 8-connected components per
    axial slice; a component is kept when its area (pixels x dy x dx) is at
    least ``min_area_mm2`` and, if given, it has at least ``min_voxels`` pixels.

    Parameters
    ----------
    hu : (Z, Y, X) ndarray
        Attenuation, HU.
    spacing : tuple of 3 float or float
        ``(dz, dy, dx)`` in mm.
    threshold_hu : float
        Calcium threshold, HU.
    min_area_mm2 : float
        Minimum component area, mm^2.
    min_voxels : int, optional
        Minimum number of pixels per component.

    Returns
    -------
    (Z, Y, X) ndarray of bool

    Raises
    ------
    InvalidInputError
        On a non-3-D array, a bad spacing or a bad option.

    Examples
    --------
    >>> hu = np.zeros((1, 3, 3)); hu[0, :2, :2] = 300; hu[0, 2, 2] = 300
    >>> int(candidate_mask(hu, (3, 0.5, 0.5)).sum())  # 2x2 block + its diagonal neighbour: 1.25 mm^2
    5
    """
    array = _check_volume_array(hu)
    spacing_zyx = normalize_spacing(spacing)
    _check_options(min_area_mm2, min_voxels, 1.0)
    thresholds = thresholds_for(120.0, threshold_hu=threshold_hu)
    scored = _scored_voxels(array, None, spacing_zyx, thresholds, min_area_mm2, min_voxels)
    if scored is None:
        return np.zeros(array.shape, dtype=bool)
    return _paste(scored.box, scored.offset, array.shape)


@overload
def score_calcium(
    hu: npt.ArrayLike,
    spacing: object,
    mask: npt.ArrayLike,
    *,
    kvp: float | None = ...,
    kvp_thresholds: bool = ...,
    threshold_hu: float | None = ...,
    min_area_mm2: float = ...,
    min_voxels: int | None = ...,
    mass_calibration: float = ...,
    affine: npt.ArrayLike | None = ...,
    return_lesion_map: Literal[False] = ...,
) -> ScoreResult: ...


@overload
def score_calcium(
    hu: npt.ArrayLike,
    spacing: object,
    mask: npt.ArrayLike,
    *,
    kvp: float | None = ...,
    kvp_thresholds: bool = ...,
    threshold_hu: float | None = ...,
    min_area_mm2: float = ...,
    min_voxels: int | None = ...,
    mass_calibration: float = ...,
    affine: npt.ArrayLike | None = ...,
    return_lesion_map: Literal[True],
) -> tuple[ScoreResult, np.ndarray]: ...


def score_calcium(
    hu: npt.ArrayLike,
    spacing: object,
    mask: npt.ArrayLike,
    *,
    kvp: float | None = 120.0,
    kvp_thresholds: bool = False,
    threshold_hu: float | None = None,
    min_area_mm2: float = 1.0,
    min_voxels: int | None = None,
    mass_calibration: float = 1.0,
    affine: npt.ArrayLike | None = None,
    return_lesion_map: bool = False,
) -> ScoreResult | tuple[ScoreResult, np.ndarray]:
    """Agatston, volume and mass scores, per artery and per 3-D lesion.

    A voxel is calcium when HU >= the threshold (130 HU at 120 kV) and the mask
    is non-zero. Lesions for the Agatston score are 2-D 8-connected components
    per axial slice and per label code; one counts when its area is
    >= ``min_area_mm2`` (and it has >= ``min_voxels`` pixels, if given). Its
    density weight comes from its own peak HU (1: 130-199, 2: 200-299, 3:
    300-399, 4: >= 400 at 120 kV). Agatston = sum(area x weight) x dz / 3 with
    dz the slice increment. See ``docs/scoring.md`` for every convention.

    Parameters
    ----------
    hu : (Z, Y, X) ndarray
        Attenuation, HU.
    spacing : tuple of 3 float
        ``(dz, dy, dx)`` in mm; ``dz`` is the slice increment.
    mask : (Z, Y, X) ndarray of int
        Label codes in the project convention (0 background, 1 unspecified,
        2 LM, 3 LAD, 4 LCX, 5 RCA); a bool or 0/1 mask is all "unspecified".
    kvp : float or None
        Tube voltage, kV; None means unknown (scored as 120 kV, with a warning).
    kvp_thresholds : bool
        Use the kV-specific threshold and weight table (70/80/100/120/135 kV).
    threshold_hu : float, optional
        Calcium threshold override, HU (weight bands are kept).
    min_area_mm2 : float
        Minimum 2-D component area, mm^2 (boundary included).
    min_voxels : int, optional
        Minimum pixels per 2-D component (Gogin et al. 2021 use 3).
    mass_calibration : float
        Mass calibration factor, mg per (HU x mL); 1.0 means uncalibrated.
    affine : (4, 4) array, optional
        Homogeneous ``(z, y, x, 1)`` index -> LPS ``(x, y, z, 1)`` mm
        (:attr:`CTVolume.affine`) for lesion centroids; default: origin 0,
        identity direction (``x = x_index x dx`` etc.).
    return_lesion_map : bool
        Also return the (Z, Y, X) int32 lesion map (0 outside lesions,
        ``Lesion.id`` inside).

    Returns
    -------
    ScoreResult, or (ScoreResult, (Z, Y, X) ndarray of int32) with ``return_lesion_map``

    Raises
    ------
    InvalidInputError
        On arrays of the wrong shape, a mask with codes outside 0-5, a bad
        spacing or affine, or an option out of range.

    Examples
    --------
    >>> hu = np.zeros((1, 4, 4), np.int16); hu[0, 1:3, 1:3] = 250
    >>> score_calcium(hu, (3.0, 0.5, 0.5), hu > 0).agatston  # 1 mm^2 x weight 2 x 3 mm / 3
    2.0
    """
    values = _check_volume_array(hu)
    spacing_zyx = normalize_spacing(spacing)
    codes = _check_mask(mask, values.shape)
    _check_options(min_area_mm2, min_voxels, mass_calibration)
    matrix = _affine_matrix(affine, spacing_zyx)
    warnings: list[str] = []
    if kvp is None:
        warnings.append("tube voltage (kVp) unknown; scored with the 120 kV thresholds")
    used_kvp = 120.0 if kvp is None else float(kvp)
    thresholds = thresholds_for(used_kvp, kvp_thresholds=kvp_thresholds, threshold_hu=threshold_hu)
    warnings.extend(_threshold_warnings(thresholds, kvp_thresholds))

    scored = _scored_voxels(values, codes, spacing_zyx, thresholds, min_area_mm2, min_voxels)
    lesion_map = np.zeros(values.shape, dtype=np.int32) if return_lesion_map and scored is None else None
    if scored is None:
        lesions: list[Lesion] = []
        per_code = _per_code_totals(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
    else:
        if scored.n_split:
            warnings.append(
                f"{scored.n_split} 2-D component(s) spanned several artery labels and were split by label"
            )
        box_labels, n_lesions = label_lesions_3d(scored.box)
        if return_lesion_map:  # a full-size int32 volume: built only on request
            lesion_map = _paste(box_labels, scored.offset, values.shape)
        lesion = box_labels.ravel()[scored.flat].astype(np.int64)
        zyx = np.stack(np.unravel_index(scored.flat, box_labels.shape), axis=1) + np.array(scored.offset)
        lesions = _lesions(lesion, n_lesions, scored, zyx, spacing_zyx, matrix, mass_calibration)
        per_code = _per_code_totals(scored.code, scored.hu, scored.weight)

    totals = _assemble(per_code, lesions, spacing_zyx, mass_calibration)
    conventions = _conventions(
        thresholds, kvp_thresholds, spacing_zyx, min_area_mm2, min_voxels, mass_calibration
    )
    result = ScoreResult(**totals, lesions=lesions, conventions=conventions, warnings=warnings)
    return (result, lesion_map) if lesion_map is not None else result


@overload
def score_volume(
    volume: CTVolume,
    mask: npt.ArrayLike,
    *,
    kvp_thresholds: bool = ...,
    threshold_hu: float | None = ...,
    min_area_mm2: float = ...,
    min_voxels: int | None = ...,
    mass_calibration: float = ...,
    return_lesion_map: Literal[False] = ...,
) -> ScoreResult: ...


@overload
def score_volume(
    volume: CTVolume,
    mask: npt.ArrayLike,
    *,
    kvp_thresholds: bool = ...,
    threshold_hu: float | None = ...,
    min_area_mm2: float = ...,
    min_voxels: int | None = ...,
    mass_calibration: float = ...,
    return_lesion_map: Literal[True],
) -> tuple[ScoreResult, np.ndarray]: ...


def score_volume(
    volume: CTVolume,
    mask: npt.ArrayLike,
    *,
    kvp_thresholds: bool = False,
    threshold_hu: float | None = None,
    min_area_mm2: float = 1.0,
    min_voxels: int | None = None,
    mass_calibration: float = 1.0,
    return_lesion_map: bool = False,
) -> ScoreResult | tuple[ScoreResult, np.ndarray]:
    """Score a :class:`~cacscore.io.CTVolume`: :func:`score_calcium` with its spacing, affine and kVp.

    Returns and raises as :func:`score_calcium`. The volume's own read
    warnings are not copied into the result; :func:`cacscore.scoring.report.score_report`
    merges both.
    """
    return score_calcium(
        volume.hu,
        volume.spacing,
        mask,
        kvp=volume.kvp,
        kvp_thresholds=kvp_thresholds,
        threshold_hu=threshold_hu,
        min_area_mm2=min_area_mm2,
        min_voxels=min_voxels,
        mass_calibration=mass_calibration,
        affine=volume.affine,
        return_lesion_map=return_lesion_map,  # type: ignore[call-overload]
    )


def _affine_matrix(affine: npt.ArrayLike | None, spacing: tuple[float, float, float]) -> np.ndarray:
    if affine is None:
        dz, dy, dx = spacing
        matrix = np.zeros((4, 4))
        matrix[0, 2], matrix[1, 1], matrix[2, 0], matrix[3, 3] = dx, dy, dz, 1.0
        return matrix
    matrix = np.asarray(affine, dtype=float)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise InvalidInputError(f"affine must be a finite 4x4 matrix, got shape {matrix.shape}")
    return matrix


def _threshold_warnings(thresholds: Thresholds, kvp_thresholds: bool) -> list[str]:
    edges = "/".join(f"{edge:g}" for edge in thresholds.weight_edges_hu)
    used = f"calcium >= {thresholds.threshold_hu:g} HU, density weights from {edges} HU"
    if thresholds.kvp == 120.0:
        return []
    if kvp_thresholds:
        return [f"tube voltage {thresholds.kvp:g} kV: scored with kV-specific thresholds ({used})"]
    return [
        (
            f"tube voltage {thresholds.kvp:g} kV but scored with the 120 kV thresholds ({used}); "
            "kV-specific thresholds are available (--kvp-thresholds)"
        )
    ]


def _per_code_totals(code: np.ndarray, hu: np.ndarray, weight: np.ndarray) -> dict[str, np.ndarray]:
    """Per label code: scored voxel count, sum of HU, sum of density weights."""
    size = max(ARTERY_NAMES) + 1
    return {
        "n_voxels": np.bincount(code, minlength=size),
        "hu_sum": np.bincount(code, weights=hu, minlength=size),
        "weight_sum": np.bincount(code, weights=weight, minlength=size),
    }


def _lesions(
    lesion: np.ndarray,
    n: int,
    scored: _ScoredVoxels,
    zyx: np.ndarray,
    spacing: tuple[float, float, float],
    matrix: np.ndarray,
    mass_calibration: float,
) -> list[Lesion]:
    dz, dy, dx = spacing
    voxel_mm3 = dz * dy * dx
    size = n + 1
    n_voxels = np.bincount(lesion, minlength=size)
    weight_sum = np.bincount(lesion, weights=scored.weight, minlength=size)
    hu_sum = np.bincount(lesion, weights=scored.hu, minlength=size)
    peak = np.full(size, -np.inf)
    np.maximum.at(peak, lesion, scored.hu)
    first = np.full(size, np.iinfo(np.int64).max)
    last = np.full(size, -1)
    np.minimum.at(first, lesion, zyx[:, 0])
    np.maximum.at(last, lesion, zyx[:, 0])
    safe_count = np.maximum(n_voxels, 1)[:, None]
    centroid = (
        np.stack([np.bincount(lesion, weights=zyx[:, k], minlength=size) for k in range(3)], 1) / safe_count
    )
    centroid_mm = (np.c_[centroid, np.ones(size)] @ matrix.T)[:, :3]
    votes = np.bincount(lesion * _CODE_SLOTS + scored.code, minlength=size * _CODE_SLOTS).reshape(size, -1)
    majority = majority_artery(votes)
    agatston = weight_sum * (dy * dx) * dz / 3.0
    return [
        Lesion(
            id=i,
            artery=ARTERY_NAMES[int(majority[i])],
            label=int(majority[i]),
            agatston=float(agatston[i]),
            volume_mm3=float(n_voxels[i] * voxel_mm3),
            mass_mg=float(mass_calibration * hu_sum[i] * voxel_mm3 / 1000.0),
            peak_hu=float(peak[i]),
            centroid_mm=(float(centroid_mm[i, 0]), float(centroid_mm[i, 1]), float(centroid_mm[i, 2])),
            centroid_zyx=(float(centroid[i, 0]), float(centroid[i, 1]), float(centroid[i, 2])),
            slices=(int(first[i]), int(last[i])),
            n_voxels=int(n_voxels[i]),
        )
        for i in range(1, size)
    ]


def _assemble(
    per_code: dict[str, np.ndarray],
    lesions: list[Lesion],
    spacing: tuple[float, float, float],
    mass_calibration: float,
) -> dict[str, Any]:
    dz, dy, dx = spacing
    voxel_mm3 = dz * dy * dx
    lesion_counts = {name: 0 for name in ARTERY_ORDER}
    for item in lesions:
        lesion_counts[item.artery] += 1
    arteries = {}
    for code, name in sorted(ARTERY_NAMES.items(), key=lambda item: ARTERY_ORDER.index(item[1])):
        arteries[name] = ArteryScore(
            agatston=float(per_code["weight_sum"][code] * (dy * dx) * dz / 3.0),
            volume_mm3=float(per_code["n_voxels"][code] * voxel_mm3),
            mass_mg=float(mass_calibration * per_code["hu_sum"][code] * voxel_mm3 / 1000.0),
            n_lesions=lesion_counts[name],
        )
    # Totals are the sums of the per-artery values so that they add up exactly.
    agatston = math.fsum(a.agatston for a in arteries.values())
    n_vessels = sum(1 for name in VESSELS if arteries[name].agatston > 0)
    return {
        "agatston": agatston,
        "volume_mm3": math.fsum(a.volume_mm3 for a in arteries.values()),
        "mass_mg": math.fsum(a.mass_mg for a in arteries.values()),
        "risk_category": risk_category(agatston),
        "cac_drs": cac_drs(agatston, n_vessels),
        "n_vessels": n_vessels,
        "arteries": arteries,
    }


def _conventions(
    thresholds: Thresholds,
    kvp_thresholds: bool,
    spacing: tuple[float, float, float],
    min_area_mm2: float,
    min_voxels: int | None,
    mass_calibration: float,
) -> dict[str, Any]:
    dz, dy, dx = spacing
    return {
        "threshold_hu": thresholds.threshold_hu,
        "weight_edges_hu": list(thresholds.weight_edges_hu),
        "threshold_source": thresholds.source,
        "kvp": thresholds.kvp,
        "kvp_thresholds": kvp_thresholds,
        "min_area_mm2": float(min_area_mm2),
        "area_tolerance_mm2": AREA_TOLERANCE_MM2,
        "min_voxels": None if min_voxels is None else int(min_voxels),
        "connectivity_2d": 8,
        "connectivity_3d": 26,
        "components_per_label": True,
        "lesion_artery": "majority of voxels",
        "slice_increment_mm": dz,
        "pixel_spacing_mm": [dy, dx],
        "mass_calibration": float(mass_calibration),
        "mass_calibrated": mass_calibration != 1.0,
        "references": dict(REFERENCES),
    }
