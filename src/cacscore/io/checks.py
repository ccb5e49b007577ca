"""Checks shared by every reader: canonical orientation and quality warnings.

Every reader hands its volume to :func:`canonical_orientation` so that the
rest of cacscore sees one orientation whatever the file stored: axis 0 runs
head-ward (increasing LPS z), axis 1 posterior (rows, anterior to
posterior), axis 2 to the patient's left (columns, right to left). The
voxels are only permuted and flipped (never resampled), and origin and
direction are changed with them, so every voxel keeps its patient position.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import replace

import numpy as np

from cacscore.errors import CacScoreWarning, VolumeReadError
from cacscore.io.volume import CTVolume

#: Largest angle (degrees) between the slice normal and the patient z axis
#: (or between the slice-to-slice step and the normal: gantry tilt) that is
#: still treated as axial. DICOM stores directions with 6+ decimals, so real
#: axial series are far below this.
ANGLE_TOLERANCE_DEG = 1.0
#: Slice thickness range (mm) for which Agatston's method is defined.
AGATSTON_THICKNESS_MM = (2.5, 3.0)
#: Tube voltage (kV) at which Agatston's 130 HU threshold is defined.
AGATSTON_KVP = 120.0
#: A chest CT in HU always holds fat (about -100 HU) or air (-1000 HU), so values below this (HU); a
#: volume whose lowest value is above it is not one: a label mask, or stored pixel values without their
#: rescale intercept (air at 0). Even a crop to the heart without lung keeps epicardial fat below it.
LOWEST_PLAUSIBLE_MIN_HU = -50


def axis_angle_deg(vector: np.ndarray, axis: np.ndarray) -> float:
    """Angle in degrees between the line of ``vector`` and the line of ``axis`` (sign ignored)."""
    vector = np.asarray(vector, dtype=float)
    axis = np.asarray(axis, dtype=float)
    cosine = abs(float(vector @ axis)) / float(np.linalg.norm(vector) * np.linalg.norm(axis))
    return float(np.degrees(np.arccos(min(1.0, cosine))))


def canonical_orientation(volume: CTVolume, *, name: str) -> CTVolume:
    """Permute and flip the voxel axes so that the direction matrix is closest to identity.

    Parameters
    ----------
    volume : CTVolume
        Volume as stored in its file (any axis order and sign).
    name : str
        File or folder named in error messages.

    Returns
    -------
    CTVolume
        The same voxels at the same patient positions, with axis 0 along
        patient z (head-ward), axis 1 along patient y (posterior) and axis 2
        along patient x (left). A volume already in that order is returned
        with its array untouched (no copy).

    Raises
    ------
    VolumeReadError
        If the axis closest to patient z is more than
        :data:`ANGLE_TOLERANCE_DEG` away from it (oblique or non-axial).
    """
    direction = volume.direction
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise VolumeReadError(
            f"{name}: direction matrix is not orthonormal (sheared grid): {direction.tolist()}"
        )
    # perm[j]: ITK index axis (0 x, 1 y, 2 z) that becomes ITK index axis j.
    perm = max(itertools.permutations(range(3)), key=lambda p: sum(abs(direction[j, p[j]]) for j in range(3)))
    signs = [1.0 if direction[j, perm[j]] >= 0 else -1.0 for j in range(3)]
    new_direction = np.stack([signs[j] * direction[:, perm[j]] for j in range(3)], axis=1)
    angle = axis_angle_deg(new_direction[:, 2], np.array([0.0, 0.0, 1.0]))
    if angle > ANGLE_TOLERANCE_DEG:
        raise VolumeReadError(
            f"{name}: non-axial orientation: the slice axis is {angle:.1f} degrees from the patient's "
            f"head-feet axis (at most {ANGLE_TOLERANCE_DEG} allowed); calcium scoring needs axial slices"
        )
    if list(perm) == [0, 1, 2] and all(s > 0 for s in signs):
        return volume
    spacing_itk = volume.spacing[::-1]
    size_itk = volume.hu.shape[::-1]
    origin = np.asarray(volume.origin, dtype=float)
    for j in range(3):
        if signs[j] < 0:
            axis = perm[j]
            origin = origin + direction[:, axis] * spacing_itk[axis] * (size_itk[axis] - 1)
    # NumPy axis k is ITK axis 2 - k.
    hu = np.transpose(volume.hu, [2 - perm[2 - k] for k in range(3)])
    flip_axes = tuple(k for k in range(3) if signs[2 - k] < 0)
    if flip_axes:
        hu = np.flip(hu, axis=flip_axes)
    return replace(
        volume,
        hu=np.ascontiguousarray(hu),
        spacing=tuple(spacing_itk[perm[2 - k]] for k in range(3)),  # type: ignore[arg-type]
        origin=tuple(origin),  # type: ignore[arg-type]
        direction=new_direction,
        warnings=list(volume.warnings),
    )


def add_quality_warnings(volume: CTVolume, *, name: str) -> None:
    """Warn (and record in ``volume.warnings``) about acquisition settings outside Agatston's conditions.

    Checks kVp other than 120, slice thickness outside 2.5-3 mm (the slice
    increment where the thickness is unknown, as in most NIfTI files), an
    overlapping reconstruction (slice increment smaller than the thickness),
    and values that cannot be a CT in HU (nothing below
    :data:`LOWEST_PLAUSIBLE_MIN_HU`: a label mask, or pixel values stored
    without their rescale intercept, which would put soft tissue above the
    calcium threshold). Unknown values (``None``) are not warned about.

    Warns
    -----
    CacScoreWarning
        Once per finding; the message starts with ``name``.
    """
    messages = []
    if volume.kvp is not None and abs(volume.kvp - AGATSTON_KVP) > 0.5:
        messages.append(
            f"kVp is {volume.kvp:g}; Agatston's 130 HU threshold is defined at {AGATSTON_KVP:g} kVp "
            "(kVp-specific thresholds are used only when asked for)"
        )
    thickness = volume.slice_thickness_mm
    low, high = AGATSTON_THICKNESS_MM
    if thickness is not None and not (low - 1e-3 <= thickness <= high + 1e-3):
        messages.append(
            f"slice thickness is {thickness:g} mm; Agatston scoring is defined for {low:g}-{high:g} mm slices"
        )
    increment = volume.spacing[0]
    if thickness is None and not (low - 1e-3 <= increment <= high + 1e-3):
        # Without a thickness the increment is the best guide: 0.6 mm slices score higher than 3 mm ones,
        # and a larger step leaves gaps or thick slices.
        messages.append(
            f"slice thickness unknown and slice increment {increment:g} mm; Agatston scoring is defined for "
            f"{low:g}-{high:g} mm slices"
        )
    if thickness is not None and increment < thickness - 1e-3:
        messages.append(
            f"overlapping reconstruction: slice increment {increment:g} mm is smaller than the slice "
            f"thickness {thickness:g} mm (scores use the increment, so overlap is not counted twice)"
        )
    lowest_hu = int(volume.hu.min()) if volume.hu.size else None
    if lowest_hu is not None and lowest_hu > LOWEST_PLAUSIBLE_MIN_HU:
        messages.append(
            f"no voxel below {LOWEST_PLAUSIBLE_MIN_HU} HU (lowest {lowest_hu}): a CT in HU holds fat "
            "(about -100 HU) and air (-1000 HU); is this a label mask, "
            "or an image without its rescale intercept?"
        )
    for message in messages:
        text = f"{name}: {message}"
        volume.warnings.append(text)
        warnings.warn(text, CacScoreWarning, stacklevel=3)
