"""A second look at each candidate lesion: a logistic regression on what surrounds it.

The ensemble sees the scan at 2.5-3 mm, where a coronary ostial plaque and
calcium in the aortic root wall beside it, or a faint 1 mm^2 lesion and a
noise speck, look alike. At the original resolution they differ in what
surrounds them: coronary calcium lies in epicardial fat, aortic root and
valve calcium against blood and soft tissue. The lesion filter takes every
lesion that at least ``candidate_votes`` members found (a wider net than the
majority vote), describes it by :data:`FEATURE_NAMES` and keeps it where a
logistic regression fitted on labelled cases (:func:`fit_lesion_filter`)
gives it a probability of at least ``threshold`` of being reference calcium.
It is stored in ``plan.json`` (``inference.lesion_filter``); a model without
one uses the vote rule alone.

Features of one lesion (a 6-connected group of voxels >= the HU threshold
with one label code, on the original grid):

``log_volume_mm3``
    Natural logarithm of its volume, mm^3.
``max_area_mm2``
    Its largest area on one slice, mm^2.
``peak_hu``, ``mean_hu``
    Highest and mean HU of its voxels.
``max_vote_fraction``
    Largest fraction of members that call one of its low-resolution voxels calcium.
``max_probability``
    Largest members' mean probability of calcium (1 - P(background)) of its low-resolution voxels.
``shell_mean_hu``
    Mean HU of the voxels 1-4 mm from it (:data:`SHELL_MM`), the lesion's surroundings.
``shell_fat_fraction``
    Fraction of those voxels below -30 HU (fat).
``shell_soft_tissue_fraction``
    Fraction of them from 0 HU to below 130 HU (blood, myocardium, vessel wall).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage, optimize

from cacscore.arrays import grow_box
from cacscore.errors import PlanMismatchError
from cacscore.preprocess import Grid
from cacscore.scoring.conventions import AGATSTON_THRESHOLD_HU

#: Names of the features, in the order of :func:`lesion_features`' columns.
FEATURE_NAMES: tuple[str, ...] = (
    "log_volume_mm3",
    "max_area_mm2",
    "peak_hu",
    "mean_hu",
    "max_vote_fraction",
    "max_probability",
    "shell_mean_hu",
    "shell_fat_fraction",
    "shell_soft_tissue_fraction",
)
#: Inner and outer distance of a lesion's surroundings, mm.
SHELL_MM = (1.0, 4.0)
#: HU below which a surrounding voxel counts as fat.
FAT_BELOW_HU = -30.0
#: HU range of a surrounding voxel that counts as soft tissue or blood, [low, high).
SOFT_TISSUE_HU = (0.0, AGATSTON_THRESHOLD_HU)


def shell_margin_voxels(spacing: tuple[float, float, float]) -> tuple[int, int, int]:
    """Voxels per axis that hold a lesion's surroundings (:data:`SHELL_MM`) beyond its bounding box."""
    return tuple(math.ceil(SHELL_MM[1] / s) + 1 for s in spacing)  # type: ignore[return-value]


def lesion_features(
    ids: np.ndarray,
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    vote_fraction: np.ndarray,
    probability: np.ndarray,
    grid: Grid,
    box: tuple[slice, slice, slice],
) -> np.ndarray:
    """The :data:`FEATURE_NAMES` of every lesion of ``ids``.

    Parameters
    ----------
    ids : (Z, Y, X) ndarray of int
        Lesion ids 1..n (0 outside lesions) inside ``box`` of the original grid.
    hu : (Z, Y, X) ndarray
        The CT inside ``box``, HU. Surroundings beyond it are not seen: give a
        box that extends :func:`shell_margin_voxels` past the lesions.
    spacing : tuple of 3 float
        ``(dz, dy, dx)`` of the original grid, mm.
    vote_fraction, probability : (Z', Y', X') ndarray of float
        Fraction of members calling each low-resolution voxel calcium, and the
        members' mean probability of calcium there.
    grid : Grid
        The mapping between the original and the low-resolution grid.
    box : tuple of 3 slice
        Where ``ids`` and ``hu`` lie in the original grid.

    Returns
    -------
    (n, len(FEATURE_NAMES)) ndarray of float64
        Row ``i - 1`` describes lesion ``i``.
    """
    ids = np.asarray(ids)
    hu = np.asarray(hu)
    low_index = [index[part] for index, part in zip(grid.source_to_low(), box)]
    margin = shell_margin_voxels(spacing)
    voxel_mm3 = float(np.prod(spacing))
    rows = []
    for i, found in enumerate(ndimage.find_objects(ids), start=1):
        if found is None:  # ids need not be consecutive
            rows.append([np.nan] * len(FEATURE_NAMES))
            continue
        crop = grow_box(found, margin, ids.shape)
        inside = ids[crop] == i
        z, y, x = np.nonzero(inside)
        z, y, x = z + crop[0].start, y + crop[1].start, x + crop[2].start
        values = hu[z, y, x].astype(np.float64)
        low = (low_index[0][z], low_index[1][y], low_index[2][x])
        distance = ndimage.distance_transform_edt(~inside, sampling=spacing)
        around = hu[crop][(distance > SHELL_MM[0]) & (distance <= SHELL_MM[1])].astype(np.float64)
        rows.append(
            [
                math.log(values.size * voxel_mm3),
                float(np.bincount(z).max()) * spacing[1] * spacing[2],
                values.max(),
                values.mean(),
                float(vote_fraction[low].max()),
                float(probability[low].max()),
                around.mean() if around.size else 0.0,
                float(np.mean(around < FAT_BELOW_HU)) if around.size else 0.0,
                float(np.mean((around >= SOFT_TISSUE_HU[0]) & (around < SOFT_TISSUE_HU[1])))
                if around.size
                else 0.0,
            ]
        )
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(FEATURE_NAMES))


@dataclass(frozen=True)
class LesionFilter:
    """A fitted logistic regression over standardised lesion features.

    Parameters
    ----------
    mean, scale : tuple of float
        Per feature, subtracted and divided by before the regression.
    coefficients : tuple of float
        Per standardised feature.
    intercept : float
    threshold : float
        Lesions with a probability at least this are kept.
    candidate_votes : int
        Members that must find a lesion for it to be a candidate.
    features : tuple of str
        Must equal :data:`FEATURE_NAMES` (checked when read from a plan).
    fitted_on : dict
        Where it was fitted (cases, lesions), for the record.
    """

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coefficients: tuple[float, ...]
    intercept: float
    threshold: float = 0.5
    candidate_votes: int = 1
    features: tuple[str, ...] = FEATURE_NAMES
    fitted_on: dict[str, Any] | None = None

    def probability(self, features: np.ndarray) -> np.ndarray:
        """Probability that each lesion (row of :func:`lesion_features`) is reference calcium."""
        z = (np.asarray(features, np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return _sigmoid(z @ np.asarray(self.coefficients) + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        """The ``inference.lesion_filter`` block of ``plan.json``."""
        return {
            **asdict(self),
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coefficients": list(self.coefficients),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], n_members: int) -> LesionFilter:
        """Read and check an ``inference.lesion_filter`` block.

        Raises
        ------
        PlanMismatchError
            If the block is malformed or names other features than this code computes.
        """
        try:
            lesion_filter = cls(
                mean=tuple(float(v) for v in data["mean"]),
                scale=tuple(float(v) for v in data["scale"]),
                coefficients=tuple(float(v) for v in data["coefficients"]),
                intercept=float(data["intercept"]),
                threshold=float(data.get("threshold", 0.5)),
                candidate_votes=data.get("candidate_votes", 1),
                features=tuple(data["features"]),
                fitted_on=data.get("fitted_on"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanMismatchError(f"inference.lesion_filter is malformed ({exc!r})") from None
        if lesion_filter.features != FEATURE_NAMES:
            raise PlanMismatchError(
                f"inference.lesion_filter uses the features {list(lesion_filter.features)}; "
                f"this cacscore computes {list(FEATURE_NAMES)}"
            )
        n = len(FEATURE_NAMES)
        if not (len(lesion_filter.mean) == len(lesion_filter.scale) == len(lesion_filter.coefficients) == n):
            raise PlanMismatchError(f"inference.lesion_filter needs {n} means, scales and coefficients")
        values = (
            *lesion_filter.mean,
            *lesion_filter.scale,
            *lesion_filter.coefficients,
            lesion_filter.intercept,
        )
        if not all(math.isfinite(v) for v in values):
            # NaN probabilities would drop every lesion: every scan would score 0.
            raise PlanMismatchError("inference.lesion_filter holds NaN or infinite values")
        if not all(s > 0 for s in lesion_filter.scale) or not 0 < lesion_filter.threshold < 1:
            raise PlanMismatchError("inference.lesion_filter needs positive scales and a threshold in (0, 1)")
        votes = lesion_filter.candidate_votes
        if isinstance(votes, bool) or not isinstance(votes, int) or not 1 <= votes <= n_members:
            raise PlanMismatchError(
                f"inference.lesion_filter.candidate_votes must be an integer in 1..{n_members}, got {votes!r}"
            )
        return lesion_filter


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def fit_lesion_filter(
    features: np.ndarray,
    truth: np.ndarray,
    *,
    l2: float = 1.0,
    threshold: float = 0.5,
    candidate_votes: int = 1,
) -> LesionFilter:
    """Fit the regression by maximum likelihood with an L2 penalty on the coefficients.

    Minimises ``sum(log loss) + l2 / 2 * |coefficients|^2`` over the
    standardised features (scikit-learn's ``LogisticRegression(C=1 / l2)``).

    Parameters
    ----------
    features : (n, len(FEATURE_NAMES)) ndarray
        From :func:`lesion_features`, lesions of many cases stacked.
    truth : (n,) ndarray of bool
        Whether each lesion holds reference calcium.
    l2 : float
        Penalty weight.
    threshold, candidate_votes
        Stored in the result (see :class:`LesionFilter`).

    Returns
    -------
    LesionFilter

    Raises
    ------
    ValueError
        If the shapes disagree, there are no lesions, a feature is not finite,
        ``truth`` holds one class only, or ``l2`` or ``threshold`` is out of range.
    """
    x = np.asarray(features, np.float64)
    y = np.asarray(truth, bool).astype(np.float64)
    if x.ndim != 2 or x.shape[1] != len(FEATURE_NAMES) or y.shape != (x.shape[0],):
        raise ValueError(
            f"features must be (n, {len(FEATURE_NAMES)}) and truth (n,); got {x.shape} and {y.shape}"
        )
    if y.size == 0:
        raise ValueError("there are no candidate lesions to fit on")
    if not np.all(np.isfinite(x)):
        raise ValueError("features hold NaN or infinite values")
    if not (l2 > 0 and 0 < threshold < 1):
        raise ValueError(f"l2 must be > 0 and threshold in (0, 1), got {l2} and {threshold}")
    if y.min() == y.max():
        raise ValueError("truth holds one class only; a filter needs true and false candidate lesions")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        margin = z @ w[1:] + w[0]
        p = _sigmoid(margin)
        value = np.sum(np.logaddexp(0.0, margin) - y * margin) + 0.5 * l2 * w[1:] @ w[1:]
        grad = np.concatenate([[np.sum(p - y)], z.T @ (p - y) + l2 * w[1:]])
        return float(value), grad

    w = optimize.minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B").x
    return LesionFilter(
        mean=tuple(mean.tolist()),
        scale=tuple(scale.tolist()),
        coefficients=tuple(w[1:].tolist()),
        intercept=float(w[0]),
        threshold=threshold,
        candidate_votes=candidate_votes,
        fitted_on={"lesions": int(y.size), "true_lesions": int(y.sum())},
    )
