"""Post-processing of the members' probabilities: the vote, candidate lesions, majority artery, small lesions.

Pure functions on arrays; :class:`cacscore.model.ensemble.Ensemble` chains them (and the lesion filter of
:mod:`cacscore.model.lesion_filter`) into a prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from cacscore.arrays import grow_box, label_lesions
from cacscore.labels import MAJORITY_ORDER, majority_artery
from cacscore.model.lesion_filter import lesion_features, shell_margin_voxels
from cacscore.preprocess import (
    Grid,
    restrict_to_calcium,
    upsample_labels,
)
from cacscore.scoring.conventions import FULL_26

if TYPE_CHECKING:
    pass


def vote(
    probabilities: list[np.ndarray], image: np.ndarray, class_codes: list[int], level: float, min_votes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The vote of the members on the low-resolution grid.

    The vote is per voxel, so any set of voxels will do: ``(Z', Y', X')``
    below may be any shape, e.g. ``(N,)`` for N selected voxels.

    Parameters
    ----------
    probabilities : list of (C, Z', Y', X') ndarray
        Each member's softmax.
    image : (Z', Y', X') ndarray
        The network input; only voxels >= ``level`` can be calcium.
    class_codes : list of int
        Project label code of each class.
    level : float
        The scaled HU threshold.
    min_votes : int
        Members that must call a voxel calcium.

    Returns
    -------
    low : (Z', Y', X') ndarray of uint8
        Label codes: the class of the largest summed probability where enough members call calcium.
    member_masks : (M, Z', Y', X') ndarray of bool
    votes : (Z', Y', X') ndarray of uint8
    """
    codes = np.asarray(class_codes, dtype=np.uint8)
    candidates = image >= level
    member_masks = np.stack([(p.argmax(axis=0) != 0) & candidates for p in probabilities])
    votes = member_masks.sum(axis=0).astype(np.uint8)
    best = np.sum(probabilities, axis=0)[1:].argmax(axis=0) + 1
    low = np.where(votes >= min_votes, codes[best], 0).astype(np.uint8)
    return low, member_masks, votes


def labels_in_box(
    low: np.ndarray,
    grid: Grid,
    box: tuple[slice, slice, slice],
    hu: np.ndarray,
    threshold_hu: float,
    min_lesion_voxels: int,
    keep_small: np.ndarray | None = None,
) -> np.ndarray:
    """Map the voted low-resolution codes onto a box of the original grid and make lesions of them.

    Upsampled codes are kept where ``hu`` >= ``threshold_hu``, each 26-connected
    lesion takes its majority artery, and lesions under ``min_lesion_voxels``
    are dropped unless one of their voxels lies in ``keep_small``.

    Parameters
    ----------
    low : (Z', Y', X') ndarray of uint8
        From :func:`vote`.
    grid : Grid
    box : tuple of 3 slice
        A box of the original grid holding every source voxel of ``low``'s calcium.
    hu : ndarray
        The CT inside ``box``, HU.
    threshold_hu : float
    min_lesion_voxels : int
    keep_small : (Z', Y', X') ndarray of bool, optional
        Low-resolution voxels whose small lesions are kept, e.g. where the plan's
        ``small_lesion_votes`` members agree.

    Returns
    -------
    ndarray of uint8
        Label codes inside ``box``.
    """
    inside = restrict_to_calcium(upsample_labels(low, grid, box), hu, threshold_hu)
    keep = None if keep_small is None else upsample_labels(keep_small.astype(np.uint8), grid, box) != 0
    return remove_small_lesions(majority_artery_per_lesion(inside), min_lesion_voxels, keep)


@dataclass
class CandidateLesions:
    """The lesions found by at least some members, before the lesion filter judges them.

    Parameters
    ----------
    box : tuple of 3 slice
        Where the arrays below lie in the original grid: every candidate and
        its surroundings (:func:`cacscore.model.lesion_filter.shell_margin_voxels`).
    labels : ndarray of uint8
        Label codes inside ``box`` (each lesion its majority artery).
    ids : ndarray of int64
        Lesion ids 1..n inside ``box`` (6-connected, same code), 0 elsewhere.
    features : (n, len(FEATURE_NAMES)) ndarray of float64
        Row ``i - 1`` describes lesion ``i`` (:func:`cacscore.model.lesion_filter.lesion_features`).
    """

    box: tuple[slice, slice, slice]
    labels: np.ndarray
    ids: np.ndarray
    features: np.ndarray

    def kept(self, keep: np.ndarray) -> np.ndarray:
        """Label codes inside :attr:`box` of the lesions where ``keep`` (one bool per lesion) is True."""
        keep = np.concatenate([[False], np.asarray(keep, dtype=bool)])
        return np.where(keep[self.ids], self.labels, 0).astype(np.uint8)


def candidate_lesions(
    low: np.ndarray,
    votes: np.ndarray,
    probabilities: list[np.ndarray],
    grid: Grid,
    hu: np.ndarray,
    threshold_hu: float,
) -> CandidateLesions | None:
    """The lesions of a vote (:func:`vote`) on the original grid, with no size limit, and their features.

    Parameters
    ----------
    low, votes : (Z', Y', X') ndarray of uint8
        From :func:`vote` with the lesion filter's ``candidate_votes``.
    probabilities : list of (C, Z', Y', X') ndarray
        Each member's softmax.
    grid : Grid
    hu : (Z, Y, X) ndarray
        The CT on the original grid, HU.
    threshold_hu : float

    Returns
    -------
    CandidateLesions, or None where the vote found no calcium.
    """
    box = grid.source_box(low != 0)
    if box is None:
        return None
    box = grow_box(box, shell_margin_voxels(grid.source_spacing), grid.source_shape)  # type: ignore[assignment]
    hu_box = np.asarray(hu)[box]
    labels = labels_in_box(low, grid, box, hu_box, threshold_hu, 1)
    ids, _ = label_lesions(labels)
    probability = 1.0 - np.mean([p[0] for p in probabilities], axis=0)
    features = lesion_features(
        ids, hu_box, grid.source_spacing, votes / len(probabilities), probability, grid, box
    )
    return CandidateLesions(box, labels, ids, features)


def majority_artery_per_lesion(labels: np.ndarray) -> np.ndarray:
    """Give every 26-connected lesion of a label mask its majority artery code.

    The tie rule is the project's one (:func:`cacscore.labels.majority_artery`): a
    named artery beats unspecified, then the lower code wins. The input is not modified.

    Examples
    --------
    >>> majority_artery_per_lesion(np.array([[[3, 3, 4, 0, 5]]], np.uint8)).tolist()
    [[[3, 3, 3, 0, 5]]]
    """
    labels = np.asarray(labels)
    nonzero = np.flatnonzero(labels)
    if nonzero.size == 0:
        return labels.copy()
    components, n = ndimage.label(labels != 0, structure=FULL_26)
    comp = components.ravel()[nonzero].astype(np.int64)
    code = labels.ravel()[nonzero].astype(np.int64)
    slots = max(int(code.max()) + 1, max(MAJORITY_ORDER) + 1)
    counts = np.bincount(comp * slots + code, minlength=(n + 1) * slots).reshape(n + 1, slots)
    winner = majority_artery(counts).astype(labels.dtype)
    out = np.zeros_like(labels)
    out.ravel()[nonzero] = winner[comp]
    return out


def remove_small_lesions(labels: np.ndarray, min_voxels: int, keep: np.ndarray | None = None) -> np.ndarray:
    """Zero the lesions (6-connected, same code) of fewer than ``min_voxels`` voxels.

    A small lesion with a voxel in ``keep`` (same shape as ``labels``) stays.
    The input is not modified.

    Examples
    --------
    >>> remove_small_lesions(np.array([[[3, 3, 0, 3, 5, 5]]], np.uint8), 2).tolist()
    [[[3, 3, 0, 0, 5, 5]]]
    >>> keep = np.array([[[0, 0, 1]]], bool)
    >>> remove_small_lesions(np.array([[[3, 0, 4]]], np.uint8), 2, keep=keep).tolist()
    [[[0, 0, 4]]]
    """
    labels = np.asarray(labels)
    if min_voxels <= 1:
        return labels.copy()
    ids, _ = label_lesions(labels)
    small = np.bincount(ids.ravel(), minlength=1) < min_voxels  # minlength: an empty array has no id 0
    if keep is not None:
        small[np.unique(ids[np.asarray(keep, dtype=bool)])] = False
    small[0] = False
    return np.where(small[ids], 0, labels).astype(labels.dtype, copy=False)
