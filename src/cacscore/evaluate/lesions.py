"""Lesion-level detection metrics as in the orCaScore framework (Wolterink et al., Med Phys 2016).

A *lesion* is a 3-D 6-connected group of voxels >= 130 HU that carry the same
non-zero label. A predicted lesion is a true positive when it overlaps (shares
at least one voxel with) a reference lesion of a compatible artery; a reference
lesion is detected when a compatible predicted lesion overlaps it. Arteries are
compatible when equal, or when either side is label 1 (calcium of unspecified
artery, e.g. a binary prediction), which matches any artery.

Counts are kept from both sides because one predicted lesion may cover two
reference lesions (or the reverse). Per artery, each lesion is filed under its
own artery; a lesion of unspecified artery that overlaps named calcium on the
other side is filed under that artery (the most frequent one it overlaps).
sensitivity = detected reference lesions / reference lesions, PPV = true predicted
lesions / predicted lesions. The volume variant does the same voxel by voxel:
sensitivity by volume = reference calcium volume covered by compatible predicted
calcium / reference volume, PPV by volume = predicted volume on compatible
reference calcium / predicted volume.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from cacscore.arrays import bounding_box, label_lesions
from cacscore.errors import InvalidInputError
from cacscore.io.volume import normalize_spacing
from cacscore.labels import ARTERY_NAMES, UNSPECIFIED
from cacscore.scoring.conventions import AGATSTON_THRESHOLD_HU

#: Calcium threshold of the lesion definition, HU (120 kVp).
LESION_THRESHOLD_HU = AGATSTON_THRESHOLD_HU
_CODES = tuple(ARTERY_NAMES)  # 1..5


@dataclass(frozen=True)
class ArteryCounts:
    """Lesion tallies of one artery (or of all arteries together).

    Attributes
    ----------
    n_ref, n_ref_detected : int
        Reference lesions, and those overlapped by a compatible predicted lesion.
    n_pred, n_pred_true : int
        Predicted lesions, and those overlapping a compatible reference lesion.
    ref_volume_mm3, ref_detected_volume_mm3 : float
        Reference lesion volume, and the part of it covered by compatible predicted calcium, mm^3.
    pred_volume_mm3, pred_true_volume_mm3 : float
        Predicted lesion volume, and the part of it on compatible reference calcium, mm^3.
    """

    n_ref: int = 0
    n_ref_detected: int = 0
    n_pred: int = 0
    n_pred_true: int = 0
    ref_volume_mm3: float = 0.0
    ref_detected_volume_mm3: float = 0.0
    pred_volume_mm3: float = 0.0
    pred_true_volume_mm3: float = 0.0

    def __add__(self, other: ArteryCounts) -> ArteryCounts:
        return ArteryCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def tp(self) -> int:
        """Detected reference lesions (true positives counted on the reference side)."""
        return self.n_ref_detected

    @property
    def fp(self) -> int:
        """Predicted lesions overlapping no compatible reference lesion."""
        return self.n_pred - self.n_pred_true

    @property
    def fn(self) -> int:
        """Reference lesions that no compatible predicted lesion overlaps."""
        return self.n_ref - self.n_ref_detected

    def metrics(self, n_scans: int) -> dict[str, float]:
        """Sensitivity, PPV, F1 (by count and by volume) and false positives per scan.

        Ratios with a zero denominator are ``nan`` (e.g. sensitivity without
        reference lesions), except F1, which is 1 when there is neither a
        reference nor a predicted lesion (nothing to find, nothing found).
        """
        sens = _ratio(self.n_ref_detected, self.n_ref)
        ppv = _ratio(self.n_pred_true, self.n_pred)
        sens_v = _ratio(self.ref_detected_volume_mm3, self.ref_volume_mm3)
        ppv_v = _ratio(self.pred_true_volume_mm3, self.pred_volume_mm3)
        return {
            "sensitivity": sens,
            "ppv": ppv,
            "f1": _f1(sens, ppv, self.n_ref, self.n_pred),
            "fp_per_scan": _ratio(self.fp, n_scans),
            "sensitivity_volume": sens_v,
            "ppv_volume": ppv_v,
            "f1_volume": _f1(sens_v, ppv_v, self.ref_volume_mm3, self.pred_volume_mm3),
        }


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else math.nan


def _f1(sens: float, ppv: float, n_ref: float, n_pred: float) -> float:
    if not n_ref and not n_pred:
        return 1.0
    if not n_ref or not n_pred:
        return 0.0
    return 0.0 if sens + ppv == 0 else 2 * sens * ppv / (sens + ppv)


@dataclass(frozen=True)
class LesionCounts:
    """Lesion detection tallies over ``n_scans`` scans, per artery label code (1-5) and overall.

    Attributes
    ----------
    n_scans : int
        Number of scans summed.
    arteries : dict of str to ArteryCounts
        Keyed by artery name (``"unspecified"``, ``"LM"``, ``"LAD"``, ``"LCX"``, ``"RCA"``).
        Reference-side counts are filed under the reference lesion's artery,
        prediction-side counts under the predicted lesion's artery (an
        unspecified lesion under the named artery it overlaps, if any).
    """

    n_scans: int
    arteries: dict[str, ArteryCounts] = field(default_factory=dict)

    @property
    def overall(self) -> ArteryCounts:
        """Counts summed over all arteries."""
        total = ArteryCounts()
        for counts in self.arteries.values():
            total = total + counts
        return total

    def metrics(self) -> dict[str, Any]:
        """``{"n_scans", "overall": {...}, "per_artery": {name: {...}}}`` of :meth:`ArteryCounts.metrics`."""
        return {
            "n_scans": self.n_scans,
            "overall": self.overall.metrics(self.n_scans),
            "per_artery": {name: c.metrics(self.n_scans) for name, c in self.arteries.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary (counts only; metrics are derived)."""
        return {
            "n_scans": self.n_scans,
            "arteries": {
                name: {f.name: getattr(c, f.name) for f in fields(c)} for name, c in self.arteries.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LesionCounts:
        """Inverse of :meth:`to_dict`."""
        return cls(int(data["n_scans"]), {name: ArteryCounts(**c) for name, c in data["arteries"].items()})


def aggregate_lesions(counts: Iterable[LesionCounts]) -> LesionCounts:
    """Sum per-case :class:`LesionCounts` over a cohort (lesions pooled, as orCaScore does)."""
    n_scans = 0
    arteries = {name: ArteryCounts() for name in ARTERY_NAMES.values()}
    for case in counts:
        n_scans += case.n_scans
        for name, c in case.arteries.items():
            arteries[name] = arteries[name] + c
    return LesionCounts(n_scans, arteries)


def _check_label(label: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.asarray(label)
    if array.shape != shape:
        raise InvalidInputError(f"{name} shape {array.shape} does not match hu shape {shape}")
    if array.dtype.kind not in "iub":
        raise InvalidInputError(f"{name} must hold integer label codes, got dtype {array.dtype}")
    if array.size and (int(array.min()) < 0 or int(array.max()) > max(_CODES)):
        raise InvalidInputError(
            f"{name} holds label codes {int(array.min())}..{int(array.max())}; allowed 0-5"
        )
    return array


def lesion_detection(
    hu: np.ndarray, ref_label: np.ndarray, pred_label: np.ndarray, spacing: object
) -> LesionCounts:
    """Lesion-level detection tallies of one scan.

    Parameters
    ----------
    hu : (Z, Y, X) ndarray
        CT in HU.
    ref_label, pred_label : (Z, Y, X) ndarray of int
        Reference and predicted label masks in the project's codes (0
        background, 1 unspecified, 2 LM, 3 LAD, 4 LCX, 5 RCA). Voxels below
        130 HU are ignored.
    spacing : tuple of 3 float
        ``(dz, dy, dx)`` in mm (volumes are in mm^3).

    Returns
    -------
    LesionCounts
        With ``n_scans`` = 1.

    Raises
    ------
    InvalidInputError
        Shapes differ, non-integer labels or codes outside 0-5, bad spacing.

    Examples
    --------
    >>> hu = np.full((1, 1, 5), 300)
    >>> ref = np.array([[[3, 3, 0, 5, 0]]])
    >>> pred = np.array([[[0, 3, 0, 4, 1]]])
    >>> c = lesion_detection(hu, ref, pred, (1, 1, 1)).overall
    >>> c.tp, c.fp, c.fn
    (1, 2, 1)
    """
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise InvalidInputError(f"hu must be a 3-D (z, y, x) array, got shape {hu.shape}")
    ref = _check_label(ref_label, hu.shape, "ref_label")
    pred = _check_label(pred_label, hu.shape, "pred_label")
    voxel_mm3 = float(np.prod(normalize_spacing(spacing)))
    # Lesions only exist where a mask is non-zero: work inside that bounding box (masks are sparse).
    box = bounding_box((ref != 0) | (pred != 0)) or (slice(0, 0),) * 3
    hu, ref, pred = hu[box], ref[box].astype(np.int64), pred[box].astype(np.int64)
    calcium = hu >= LESION_THRESHOLD_HU
    ref = np.where(calcium, ref, 0)
    pred = np.where(calcium, pred, 0)
    ref_ids, ref_artery = label_lesions(ref, calcium)
    pred_ids, pred_artery = label_lesions(pred, calcium)

    compatible = (ref > 0) & (pred > 0) & ((ref == pred) | (ref == UNSPECIFIED) | (pred == UNSPECIFIED))
    ref_tally = _tally(ref_ids, ref_artery, compatible, pred)
    pred_tally = _tally(pred_ids, pred_artery, compatible, ref)
    arteries = {}
    for code, name in ARTERY_NAMES.items():
        n_ref, n_ref_hit, ref_vox, ref_hit_vox = ref_tally[code]
        n_pred, n_pred_hit, pred_vox, pred_hit_vox = pred_tally[code]
        arteries[name] = ArteryCounts(
            n_ref=n_ref,
            n_ref_detected=n_ref_hit,
            n_pred=n_pred,
            n_pred_true=n_pred_hit,
            ref_volume_mm3=ref_vox * voxel_mm3,
            ref_detected_volume_mm3=ref_hit_vox * voxel_mm3,
            pred_volume_mm3=pred_vox * voxel_mm3,
            pred_true_volume_mm3=pred_hit_vox * voxel_mm3,
        )
    return LesionCounts(1, arteries)


def _tally(
    ids: np.ndarray, artery: np.ndarray, compatible: np.ndarray, other: np.ndarray
) -> dict[int, tuple[int, int, int, int]]:
    """Per artery code: lesions, lesions hit, voxels, voxels hit, for one side (reference or prediction).

    A lesion of unspecified artery (code 1) that overlaps named calcium on the
    other side is filed under the most frequent named artery it overlaps, so
    that a binary prediction (or reference) still gets per-artery figures
    where the calcium really is.
    """
    n = artery.size
    max_code = max(_CODES) + 1
    overlap = np.bincount(ids[compatible] * max_code + other[compatible], minlength=n * max_code).reshape(
        n, max_code
    )
    named = overlap[:, UNSPECIFIED + 1 :]
    effective = artery.copy()
    adopt = (artery == UNSPECIFIED) & (named.sum(axis=1) > 0)
    effective[adopt] = named[adopt].argmax(axis=1) + UNSPECIFIED + 1
    voxels = np.bincount(ids.ravel(), minlength=n)
    hit_voxels = overlap.sum(axis=1)
    tally = {}
    for code in _CODES:
        mine = effective == code
        mine[0] = False  # id 0 is background
        tally[code] = (
            int(np.count_nonzero(mine)),
            int(np.count_nonzero(mine & (hit_voxels > 0))),
            int(voxels[mine].sum()),
            int(hit_voxels[mine].sum()),
        )
    return tally
