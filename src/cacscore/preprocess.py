"""Preprocessing for the segmentation network (pure functions, no I/O).

Gogin et al. 2021 downsample each CT volume to an isotropic 2.5 mm or 3 mm
grid (chosen by the original slice spacing), "enhance" the intensities above
130 HU that the downsampling would wash out, clip to [-300, 800] HU and scale
to [0, 1]. The network runs on that low-resolution volume; its prediction is
mapped back onto the original grid and intersected with HU >= 130.

Grid mapping
------------
Each low-resolution voxel ``j`` along an axis of ``n_in`` source voxels and
``n_out`` low-resolution voxels covers the source voxels
``floor(j * n_in / n_out) <= i < ceil((j + 1) * n_in / n_out)`` (its
*footprint*; PyTorch's adaptive pooling uses exactly these bounds). With
``n_out = round(n_in * spacing_in / target)``, the actual low-resolution
spacing is ``n_in * spacing_in / n_out`` (within half a voxel of the target
over the field of view). Back-projection maps source voxel ``i`` to the
low-resolution voxel ``floor(i * n_out / n_in)``, whose footprint contains
``i``.

Enhancement
-----------
Area averaging (or trilinear interpolation) of a 0.4 x 0.4 mm calcification
of 1-2 mm^2 into a 2.5 mm voxel divides its excess over the background by
the ~40 source pixels of the footprint, so most small scorable lesions fall
below 130 HU. Here the low-resolution value is the footprint mean, except
where the footprint's maximum is >= 130 HU: there it is the footprint's
maximum. Every source voxel >= 130 HU therefore leaves a low-resolution
voxel >= 130 HU, i.e. no candidate calcium is lost (at the price of
showing it at least one low-resolution voxel large, which the mask
downsampling below mirrors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cacscore.arrays import bounding_box
from cacscore.errors import InvalidInputError
from cacscore.io.volume import Spacing, normalize_spacing
from cacscore.scoring.conventions import AGATSTON_THRESHOLD_HU

#: Isotropic target spacings in mm (the paper's 2.5 mm and 3 mm).
TARGET_SPACINGS_MM: tuple[float, ...] = (2.5, 3.0)
#: HU window mapped linearly onto [0, 1].
CLIP_HU: tuple[float, float] = (-300.0, 800.0)
#: Intensities at or above this (HU) are kept by the enhancement.
ENHANCE_THRESHOLD_HU = AGATSTON_THRESHOLD_HU


def target_spacing_mm(slice_increment_mm: float, choices: tuple[float, ...] = TARGET_SPACINGS_MM) -> float:
    """Isotropic low-resolution spacing for a series: the choice nearest its slice increment.

    Ties go to the finer spacing. 2.5 mm series stay at 2.5 mm and 3 mm series
    at 3 mm as in the paper; an overlapping reconstruction (3 mm slices every
    1.5 mm) goes to 2.5 mm.

    Parameters
    ----------
    slice_increment_mm : float
        Distance between slice centres, mm (``spacing[0]``).
    choices : tuple of float
        Candidate spacings in mm.

    Raises
    ------
    InvalidInputError
        If the increment is not a positive finite number.

    Examples
    --------
    >>> target_spacing_mm(3.0), target_spacing_mm(2.5), target_spacing_mm(1.5), target_spacing_mm(2.75)
    (3.0, 2.5, 2.5, 2.5)
    """
    if not np.isfinite(slice_increment_mm) or slice_increment_mm <= 0:
        raise InvalidInputError(
            f"slice_increment_mm must be a positive finite number, got {slice_increment_mm!r}"
        )
    ordered = sorted(float(c) for c in choices)
    return min(ordered, key=lambda c: abs(c - slice_increment_mm))


@dataclass(frozen=True)
class Grid:
    """The mapping between an original grid and its low-resolution grid.

    Parameters
    ----------
    source_shape : tuple of 3 int
        Original ``(Z, Y, X)`` shape.
    source_spacing : tuple of 3 float
        Original ``(dz, dy, dx)`` in mm.
    shape : tuple of 3 int
        Low-resolution ``(Z, Y, X)`` shape.
    target_spacing_mm : float
        Requested isotropic spacing, mm.
    """

    source_shape: tuple[int, int, int]
    source_spacing: Spacing
    shape: tuple[int, int, int]
    target_spacing_mm: float

    @property
    def spacing(self) -> Spacing:
        """Actual low-resolution spacing ``(dz, dy, dx)`` in mm (close to the target)."""
        return tuple(  # type: ignore[return-value]
            n_in * s / n_out for n_in, s, n_out in zip(self.source_shape, self.source_spacing, self.shape)
        )

    def source_to_low(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Low-resolution index of every source index, one int array per axis (z, y, x)."""
        return tuple(  # type: ignore[return-value]
            (np.arange(n_in, dtype=np.int64) * n_out) // n_in
            for n_in, n_out in zip(self.source_shape, self.shape)
        )

    def source_box(self, low_mask: np.ndarray) -> tuple[slice, slice, slice] | None:
        """The smallest box of the original grid holding every source voxel of the True low voxels.

        Parameters
        ----------
        low_mask : (Z', Y', X') ndarray of bool
            On :attr:`shape`.

        Returns
        -------
        tuple of 3 slice, or None
            ``(z, y, x)`` slices of the original grid; None when ``low_mask`` is all False.
        """
        low_mask = np.asarray(low_mask, dtype=bool)
        if low_mask.shape != self.shape:
            raise InvalidInputError(
                f"low-resolution mask has shape {low_mask.shape}, the grid has {self.shape}"
            )
        low_box = bounding_box(low_mask)
        if low_box is None:
            return None
        return tuple(  # type: ignore[return-value]
            slice(
                int(np.searchsorted(index, part.start, "left")),
                int(np.searchsorted(index, part.stop - 1, "right")),
            )
            for index, part in zip(self.source_to_low(), low_box)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "source_shape": list(self.source_shape),
            "source_spacing": list(self.source_spacing),
            "shape": list(self.shape),
            "target_spacing_mm": self.target_spacing_mm,
        }


def make_grid(shape: tuple[int, ...], spacing: object, target_mm: float | None = None) -> Grid:
    """Low-resolution grid of a volume of ``shape`` and ``spacing``.

    Parameters
    ----------
    shape : tuple of 3 int
        ``(Z, Y, X)``.
    spacing : tuple of 3 float
        ``(dz, dy, dx)`` in mm.
    target_mm : float, optional
        Isotropic spacing in mm; default :func:`target_spacing_mm` of ``dz``.

    Raises
    ------
    InvalidInputError
        On a bad shape or spacing.
    """
    if len(shape) != 3 or any(int(n) < 1 for n in shape):
        raise InvalidInputError(f"shape must be three positive sizes (Z, Y, X), got {shape!r}")
    spacing_t = normalize_spacing(spacing)
    target = target_spacing_mm(spacing_t[0]) if target_mm is None else float(target_mm)
    if not np.isfinite(target) or target <= 0:
        raise InvalidInputError(f"target_mm must be a positive finite number, got {target_mm!r}")
    out = tuple(max(1, round(int(n) * s / target)) for n, s in zip(shape, spacing_t))
    return Grid(
        source_shape=(int(shape[0]), int(shape[1]), int(shape[2])),
        source_spacing=spacing_t,
        shape=out,  # type: ignore[arg-type]
        target_spacing_mm=target,
    )


def downsample_hu(
    hu: np.ndarray, grid: Grid, *, enhance: bool = True, threshold_hu: float = ENHANCE_THRESHOLD_HU
) -> np.ndarray:
    """Area-average a volume onto ``grid``, keeping footprints that reach ``threshold_hu`` at their maximum.

    Parameters
    ----------
    hu : (Z, Y, X) ndarray
        Intensities in HU on ``grid.source_shape``.
    grid : Grid
        Target grid (from :func:`make_grid`).
    enhance : bool
        False gives plain area averaging (for comparison).
    threshold_hu : float
        Footprints whose maximum is at or above this (HU) take their maximum.

    Returns
    -------
    (Z', Y', X') ndarray of float32
        Low-resolution HU.

    Raises
    ------
    InvalidInputError
        If ``hu`` does not have the grid's source shape.
    """
    hu = np.asarray(hu)
    if hu.shape != grid.source_shape:
        raise InvalidInputError(f"hu has shape {hu.shape}, the grid expects {grid.source_shape}")
    with torch.inference_mode():
        src = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))[None, None]
        mean = F.adaptive_avg_pool3d(src, grid.shape)
        if enhance:
            peak = F.adaptive_max_pool3d(src, grid.shape)
            mean = torch.where(peak >= threshold_hu, peak, mean)
        return mean[0, 0].numpy()


def normalize_hu(hu: np.ndarray, clip_hu: tuple[float, float] = CLIP_HU) -> np.ndarray:
    """Clip to ``clip_hu`` and scale linearly to [0, 1] (float32).

    Examples
    --------
    >>> normalize_hu(np.array([-1000, -300, 250, 800, 3000])).tolist()
    [0.0, 0.0, 0.5, 1.0, 1.0]
    """
    low, high = clip_hu
    if not high > low:
        raise InvalidInputError(f"clip_hu must be (low, high) with high > low, got {clip_hu!r}")
    arr = np.clip(np.asarray(hu, dtype=np.float32), low, high)
    return ((arr - low) / (high - low)).astype(np.float32)


def scaled_threshold(
    threshold_hu: float = ENHANCE_THRESHOLD_HU, clip_hu: tuple[float, float] = CLIP_HU
) -> float:
    """``threshold_hu`` on the [0, 1] scale of :func:`normalize_hu`.

    After the enhancement, a low-resolution voxel whose footprint holds a
    voxel >= ``threshold_hu`` is itself >= this value, and every other voxel is
    below it: the voxels below can hold no scorable calcium.

    Examples
    --------
    >>> round(scaled_threshold(130.0), 4)
    0.3909
    """
    low, high = clip_hu
    return float((np.clip(threshold_hu, low, high) - low) / (high - low))


def preprocess_volume(
    hu: np.ndarray,
    spacing: object,
    *,
    target_mm: float | None = None,
    clip_hu: tuple[float, float] = CLIP_HU,
    enhance: bool = True,
) -> tuple[np.ndarray, Grid]:
    """The network input of a CT volume: enhanced downsampling, clipping and scaling.

    Parameters
    ----------
    hu : (Z, Y, X) ndarray
        Intensities in HU.
    spacing : tuple of 3 float
        ``(dz, dy, dx)`` in mm.
    target_mm : float, optional
        Isotropic spacing in mm; default by :func:`target_spacing_mm`.
    clip_hu : tuple of 2 float
        HU window mapped onto [0, 1].
    enhance : bool
        Keep footprints reaching 130 HU at their maximum (see module docstring).

    Returns
    -------
    image : (Z', Y', X') ndarray of float32
        Values in [0, 1].
    grid : Grid
        The mapping back to the original grid.
    """
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise InvalidInputError(f"hu must be a 3-D (z, y, x) array, got shape {hu.shape}")
    grid = make_grid(hu.shape, spacing, target_mm)
    return normalize_hu(downsample_hu(hu, grid, enhance=enhance), clip_hu), grid


def downsample_labels(labels: np.ndarray, grid: Grid, codes: tuple[int, ...] = (1, 2, 3, 4, 5)) -> np.ndarray:
    """Downsample a label mask: a low-resolution voxel is labelled if any source voxel is.

    Its code is the most frequent non-zero code among its source voxels (ties
    go to the lower code), so an artery keeps its calcium even where it is a
    minority of the footprint.

    Parameters
    ----------
    labels : (Z, Y, X) ndarray of int
        Label codes (0 background) on ``grid.source_shape``.
    grid : Grid
        Target grid.
    codes : tuple of int
        The non-zero codes to consider; others raise.

    Returns
    -------
    (Z', Y', X') ndarray of uint8

    Raises
    ------
    InvalidInputError
        On a shape mismatch or codes outside ``codes``.
    """
    labels = np.asarray(labels)
    if labels.shape != grid.source_shape:
        raise InvalidInputError(f"labels have shape {labels.shape}, the grid expects {grid.source_shape}")
    present = [int(v) for v in np.unique(labels) if v != 0]
    unknown = sorted(set(present) - set(codes))
    if unknown:
        raise InvalidInputError(f"labels hold codes {unknown} outside {list(codes)}")
    out = np.zeros(grid.shape, dtype=np.uint8)
    if not present:
        return out
    with torch.inference_mode():
        src = torch.from_numpy(np.ascontiguousarray(labels))
        fractions = torch.stack(
            [F.adaptive_avg_pool3d((src == code).float()[None, None], grid.shape)[0, 0] for code in present]
        )
        best = fractions.argmax(dim=0)
        labelled = fractions.amax(dim=0) > 0
        code_of = torch.tensor(present, dtype=torch.uint8)
        out = torch.where(labelled, code_of[best], torch.zeros((), dtype=torch.uint8)).numpy()
    return out


def upsample_labels(low: np.ndarray, grid: Grid, box: tuple[slice, slice, slice] | None = None) -> np.ndarray:
    """Map a low-resolution label array back onto the original grid (nearest footprint).

    Parameters
    ----------
    low : (Z', Y', X') ndarray
        Values on ``grid.shape``.
    grid : Grid
        The grid used to make ``low``.
    box : tuple of 3 slice, optional
        Only this part of the original grid (e.g. :meth:`Grid.source_box`);
        default all of it.

    Returns
    -------
    (Z, Y, X) ndarray
        Same dtype as ``low``, on ``grid.source_shape`` (or the box's shape).

    Raises
    ------
    InvalidInputError
        If ``low`` does not have the grid's shape.
    """
    low = np.asarray(low)
    if low.shape != grid.shape:
        raise InvalidInputError(f"low-resolution array has shape {low.shape}, the grid has {grid.shape}")
    zi, yi, xi = (index[part] for index, part in zip(grid.source_to_low(), box or (slice(None),) * 3))
    # Two-step gather: the in-plane table is reused for every slice.
    return low[zi][:, yi[:, None], xi[None, :]]


def restrict_to_calcium(
    labels: np.ndarray, hu: np.ndarray, threshold_hu: float = ENHANCE_THRESHOLD_HU
) -> np.ndarray:
    """Zero every label voxel below ``threshold_hu`` HU (the paper's final thresholding)."""
    labels = np.asarray(labels)
    if labels.shape != np.shape(hu):
        raise InvalidInputError(f"labels shape {labels.shape} does not match hu shape {np.shape(hu)}")
    return np.where(np.asarray(hu) >= threshold_hu, labels, 0).astype(labels.dtype, copy=False)


def preprocessing_dict() -> dict[str, Any]:
    """The ``preprocessing`` block of a model's ``plan.json``: this module's settings in words and numbers."""
    return {
        "target_spacings_mm": list(TARGET_SPACINGS_MM),
        "target_spacing_rule": "the choice nearest the slice increment, ties to the finer",
        "clip_hu": list(CLIP_HU),
        "scale": "linear to [0, 1]",
        "enhancement": {
            "enabled": True,
            "kind": "footprint max where footprint max >= threshold",
            "threshold_hu": ENHANCE_THRESHOLD_HU,
        },
        "label_downsampling": "any source voxel labelled; most frequent non-zero code",
        "upsampling": "nearest footprint",
        "threshold_hu": ENHANCE_THRESHOLD_HU,
    }
