"""Agreement statistics between reference and predicted calcium scores (pure functions).

Risk categories are the Agatston categories A-E (A: 0, B: (0, 10], C: (10, 100],
D: (100, 400], E: > 400). Every function here accepts them as letters ``"A".."E"``
or as integer codes ``0..4`` and always works on the five categories, whether
or not the data contain each of them.

Degenerate inputs whose statistic is mathematically undefined (e.g. Harrell's C
when every reference category is the same) return ``nan`` rather than raising,
so that bootstrap resamples of small cohorts can be summarised with
nan-aware percentiles; malformed inputs (wrong lengths, unknown categories,
non-finite scores) raise :class:`~cacscore.errors.InvalidInputError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cacscore.errors import InvalidInputError
from cacscore.scoring.conventions import RISK_CATEGORIES

#: Risk category letters in order; the index of a letter is its integer code.
CATEGORIES: tuple[str, ...] = RISK_CATEGORIES
N_CATEGORIES = len(CATEGORIES)


def category_codes(values: npt.ArrayLike | Sequence[str], name: str = "categories") -> np.ndarray:
    """Convert risk categories given as letters ``"A".."E"`` or codes ``0..4`` to int64 codes.

    Raises
    ------
    InvalidInputError
        If a value is neither a category letter nor an integer 0-4.

    Examples
    --------
    >>> category_codes(["A", "c", "E"]).tolist()
    [0, 2, 4]
    >>> category_codes([0, 4]).tolist()
    [0, 4]
    """
    # A string such as "AABE" is a sequence of letters.
    array = np.asarray(list(values) if isinstance(values, str) else values)
    if array.ndim != 1:
        raise InvalidInputError(f"{name} must be a 1-D sequence of risk categories, got shape {array.shape}")
    if array.dtype.kind in "UO":
        lookup = {letter: code for code, letter in enumerate(CATEGORIES)}
        codes = []
        for value in array.tolist():
            key = str(value).strip().upper()
            if key not in lookup:
                raise InvalidInputError(f"{name}: unknown risk category {value!r}; use A-E or 0-4")
            codes.append(lookup[key])
        return np.asarray(codes, dtype=np.int64)
    if array.dtype.kind == "b" or array.dtype.kind not in "iuf":
        raise InvalidInputError(f"{name} must hold risk categories A-E or codes 0-4, got dtype {array.dtype}")
    if array.size and (
        not np.all(np.isfinite(array))
        or np.any(array != np.rint(array))
        or array.min() < 0
        or array.max() >= N_CATEGORIES
    ):
        bad = [v for v in array.tolist() if not (float(v).is_integer() and 0 <= v < N_CATEGORIES)]
        raise InvalidInputError(f"{name}: risk category codes must be integers 0-4, got {bad[:5]}")
    return array.astype(np.int64)


def _pair(ref: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    ref_codes = category_codes(ref, "ref")
    pred_codes = category_codes(pred, "pred")
    if ref_codes.shape != pred_codes.shape:
        raise InvalidInputError(
            f"ref and pred must have the same length, got {ref_codes.size} and {pred_codes.size}"
        )
    return ref_codes, pred_codes


def _scores(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise InvalidInputError(
            f"the two score vectors must be 1-D of the same length, got {a.shape} and {b.shape}"
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise InvalidInputError("scores must be finite numbers; found nan or inf")
    return a, b


def category_accuracy(ref: Any, pred: Any) -> float:
    """Fraction of cases whose predicted risk category equals the reference one.

    Parameters
    ----------
    ref, pred : (N,) sequence of str or int
        Risk categories as letters A-E or codes 0-4.

    Returns
    -------
    float
        Accuracy in [0, 1]; ``nan`` for empty input.

    Raises
    ------
    InvalidInputError
        Unknown categories or different lengths.

    Examples
    --------
    >>> category_accuracy("AABE", "ABBE")
    0.75
    """
    r, p = _pair(ref, pred)
    return float(np.mean(r == p)) if r.size else math.nan


def confusion_matrix(ref: Any, pred: Any) -> np.ndarray:
    """The 5 x 5 confusion matrix of risk categories, rows = reference, columns = prediction.

    Rows and columns are always A, B, C, D, E in that order, also when a
    category is absent from the data.

    Returns
    -------
    (5, 5) ndarray of int64
        ``matrix[i, j]`` = number of cases with reference ``i`` predicted as ``j``.

    Examples
    --------
    >>> confusion_matrix(["A", "E"], ["B", "E"])[[0, 4]].tolist()
    [[0, 1, 0, 0, 0], [0, 0, 0, 0, 1]]
    """
    r, p = _pair(ref, pred)
    matrix = np.zeros((N_CATEGORIES, N_CATEGORIES), dtype=np.int64)
    np.add.at(matrix, (r, p), 1)
    return matrix


def _pair_signs(r: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signs of reference and prediction differences over the upper-triangle pairs i < j."""
    i, j = np.triu_indices(r.size, k=1)
    return np.sign(r[j] - r[i]), np.sign(p[j] - p[i])


def harrell_c(ref: Any, pred: Any) -> float:
    """Harrell's concordance index of predicted against reference risk categories.

    Over all pairs of cases whose *reference* categories differ, a pair
    counts 1 when the predictions are ordered the same way, 1/2 when the
    predictions are tied, and 0 when they are ordered the other way; the
    C-index is the mean over those pairs. It is 1 for perfect ranking, 0.5
    for a constant or random prediction.

    This is the statistic we report as "C-index". The formula printed in
    Gogin et al. 2021 is :func:`paper_c_index`; see there for why the two
    differ and why the paper's 0.951 can only be this one.

    Returns
    -------
    float
        C in [0, 1]; ``nan`` when no pair has different reference categories.

    Examples
    --------
    >>> harrell_c([0, 1, 2], [0, 2, 2])  # pairs (0,1): 1, (0,2): 1, (1,2): prediction tie 1/2
    0.8333333333333334
    """
    r, p = _pair(ref, pred)
    sr, sp = _pair_signs(r, p)
    comparable = sr != 0
    if not np.any(comparable):
        return math.nan
    credit = np.where(sp[comparable] == 0, 0.5, (sr[comparable] == sp[comparable]).astype(float))
    return float(credit.mean())


def paper_c_index(ref: Any, pred: Any) -> float:
    """The C-index formula as printed in Gogin et al. 2021: concordant pairs over all n(n-1)/2 pairs.

    ``#{(i, j): p_i < p_j and t_i < t_j} / (n choose 2)``, counting each
    unordered pair once (concordant when both differences have the same
    non-zero sign). Pairs tied in the reference and prediction ties earn
    nothing.

    Why this differs from :func:`harrell_c`: the denominator counts every
    pair, but pairs tied in the reference category can never be concordant.
    With five categories most data have many such ties, so even a perfect
    prediction scores far below 1: on 98 cases balanced over A-E (20, 20,
    20, 19, 19) the maximum is 3841 / 4753 = 0.808. The paper reports 0.951
    on its balanced 98-case test set, which this formula cannot reach; the
    paper must therefore have credited ties (as Harrell's C does, e.g. via
    the usual ``lifelines``/``sksurv`` implementations). We report both and
    label them: ``harrell_c`` is the comparable one, ``paper_c_index`` the
    literal formula.

    Returns
    -------
    float
        Value in [0, 1); ``nan`` for fewer than two cases.

    Examples
    --------
    >>> paper_c_index([0, 0, 1], [0, 0, 1])  # the tied pair (0, 0) counts in the denominator only
    0.6666666666666666
    """
    r, p = _pair(ref, pred)
    if r.size < 2:
        return math.nan
    sr, sp = _pair_signs(r, p)
    concordant = np.count_nonzero((sr != 0) & (sr == sp))
    return float(concordant / sr.size)


def linear_weighted_kappa(ref: Any, pred: Any, n_categories: int = N_CATEGORIES) -> float:
    """Cohen's kappa with linear weights over the fixed categories ``0 .. n_categories - 1``.

    ``kappa = 1 - sum(w * O) / sum(w * E)`` with disagreement weights
    ``w_ij = |i - j| / (k - 1)``, ``O`` the observed confusion proportions
    and ``E`` the outer product of the two marginal distributions. The
    categories are fixed (not inferred from the data), so an empty category
    changes nothing and results are comparable between cohorts.

    Returns
    -------
    float
        Kappa in [-1, 1]; ``nan`` when the expected disagreement is 0 (both
        raters put every case in the same single category) or for empty input.

    Raises
    ------
    InvalidInputError
        ``n_categories`` < 2, or codes outside ``0 .. n_categories - 1``.

    Examples
    --------
    >>> linear_weighted_kappa([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])
    1.0
    """
    if isinstance(n_categories, bool) or int(n_categories) != n_categories or n_categories < 2:
        raise InvalidInputError(f"n_categories must be an integer >= 2, got {n_categories!r}")
    r, p = _pair(ref, pred)
    if r.size == 0:
        return math.nan
    k = int(n_categories)
    if max(int(r.max()), int(p.max())) >= k:
        raise InvalidInputError(
            f"category codes must be below n_categories={k}, got up to {max(r.max(), p.max())}"
        )
    observed = np.zeros((k, k))
    np.add.at(observed, (r, p), 1.0)
    observed /= r.size
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    codes = np.arange(k)
    weights = np.abs(codes[:, None] - codes[None, :]) / (k - 1)
    expected_disagreement = float(np.sum(weights * expected))
    if expected_disagreement == 0:
        return math.nan
    return float(1.0 - np.sum(weights * observed) / expected_disagreement)


def icc_2_1(ratings: npt.ArrayLike) -> float:
    """ICC(2,1) of Shrout & Fleiss (1979): two-way random effects, absolute agreement, single rater.

    ``ICC = (MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)`` from the
    two-way ANOVA of ``n`` subjects (rows) by ``k`` raters (columns), with
    MSR, MSC and MSE the row, column and residual mean squares. Systematic
    differences between raters lower it (absolute agreement), unlike a
    correlation.

    Parameters
    ----------
    ratings : (N, K) array_like of float
        One row per subject, one column per rater; N >= 2, K >= 2.

    Returns
    -------
    float
        ICC in (-1, 1]; ``nan`` when all ratings are equal (no variance).

    Raises
    ------
    InvalidInputError
        Wrong shape or non-finite values.

    Examples
    --------
    >>> ratings = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    >>> round(icc_2_1(ratings), 2)
    0.29
    """
    table = np.asarray(ratings, dtype=float)
    if table.ndim != 2 or table.shape[0] < 2 or table.shape[1] < 2:
        raise InvalidInputError(
            f"ratings must be an (N subjects, K raters) array with N, K >= 2, got {table.shape}"
        )
    if not np.all(np.isfinite(table)):
        raise InvalidInputError("ratings must be finite numbers; found nan or inf")
    n, k = table.shape
    grand = table.mean()
    ss_rows = k * np.sum((table.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((table.mean(axis=0) - grand) ** 2)
    ss_total = np.sum((table - grand) ** 2)
    ss_error = ss_total - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_error / ((n - 1) * (k - 1))
    denominator = msr + (k - 1) * mse + k * (msc - mse) / n
    # Relative tolerance: identical ratings leave only rounding noise in the sums of squares.
    if denominator <= 1e-12 * max(ss_total, 1.0) or ss_total == 0:
        return math.nan
    return float((msr - mse) / denominator)


def icc_absolute(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """ICC(2,1) between two raters (e.g. reference and predicted Agatston): see :func:`icc_2_1`.

    Parameters
    ----------
    x, y : (N,) array_like of float
        Paired measurements (any unit, the same for both), N >= 2.

    Examples
    --------
    >>> icc_absolute([0.0, 10.0, 100.0], [0.0, 10.0, 100.0])
    1.0
    """
    a, b = _scores(x, y)
    if a.size < 2:
        raise InvalidInputError(f"icc_absolute needs at least 2 paired values, got {a.size}")
    return icc_2_1(np.column_stack([a, b]))


@dataclass(frozen=True)
class BlandAltman:
    """Bland-Altman agreement of a prediction with a reference.

    Attributes
    ----------
    n : int
        Number of pairs.
    mean_diff : float
        Mean of ``pred - ref`` (the bias), in the unit of the scores.
    sd_diff : float
        Sample standard deviation (ddof = 1) of ``pred - ref``; 0 for n = 1.
    loa_low, loa_high : float
        95 % limits of agreement ``mean_diff -/+ 1.96 sd_diff``.
    """

    n: int
    mean_diff: float
    sd_diff: float
    loa_low: float
    loa_high: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary of the fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlandAltman:
        """Inverse of :meth:`to_dict`."""
        return cls(int(data["n"]), *(float(data[k]) for k in ("mean_diff", "sd_diff", "loa_low", "loa_high")))


def bland_altman(ref: npt.ArrayLike, pred: npt.ArrayLike) -> BlandAltman:
    """Mean difference (pred - ref) and 95 % limits of agreement with the sample SD (ddof = 1).

    Raises
    ------
    InvalidInputError
        Empty, mismatched or non-finite inputs.

    Examples
    --------
    >>> bland_altman([1.0, 2.0, 3.0], [2.0, 2.0, 5.0]).mean_diff
    1.0
    """
    r, p = _scores(ref, pred)
    if r.size == 0:
        raise InvalidInputError("bland_altman needs at least one pair of scores, got none")
    diff = p - r
    mean = float(diff.mean())
    sd = float(diff.std(ddof=1)) if diff.size > 1 else 0.0
    return BlandAltman(int(diff.size), mean, sd, mean - 1.96 * sd, mean + 1.96 * sd)
