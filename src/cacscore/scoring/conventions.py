"""Clinical conventions of calcium scoring: thresholds, density weights and categories.

Everything here is a small pure function or a constant so that the scoring
engine, the reports and the documentation (``docs/scoring.md``) share one
source of truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cacscore.errors import InvalidInputError

#: Reference strings recorded in every result's ``conventions``.
REFERENCES: dict[str, str] = {
    "agatston": (
        "Agatston AS, Janowitz WR, Hildner FJ, et al. Quantification of coronary artery calcium using "
        "ultrafast computed tomography. J Am Coll Cardiol 1990;15:827-832. doi:10.1016/0735-1097(90)90282-T"
    ),
    "pipeline": (
        "Gogin N, Viti M, Nicodeme L, et al. Automatic coronary "
        "artery calcium scoring from unenhanced-ECG-gated "
        "CT using deep learning. Diagn Interv Imaging 2021;102:683-690. doi:10.1016/j.diii.2021.05.004"
    ),
    "kvp_thresholds": (
        "Graeni C, Vontobel J, Benz DC, et al. Ultra-low-dose coronary artery calcium scoring using novel "
        "scoring thresholds for low tube voltage protocols - a pilot study. Eur Heart J Cardiovasc Imaging "
        "2018;19:1362-1371. doi:10.1093/ehjci/jey019 (table as implemented in MolloiLab CalciumScoring.jl)"
    ),
    "risk_category": (
        "Rumberger JA, Brundage BH, Rader DJ, Kondos G. Electron beam computed tomographic coronary calcium "
        "scanning: a review and guidelines for use in asymptomatic persons. Mayo Clin Proc 1999;74:243-252"
    ),
    "cac_drs": (
        "Hecht HS, Blaha MJ, Kazerooni EA, et al. CAC-DRS: "
        "Coronary Artery Calcium Data and Reporting System. "
        "J Cardiovasc Comput Tomogr 2018;12:185-191. doi:10.1016/j.jcct.2018.03.008"
    ),
    "mass": (
        "McCollough CH, Ulzheimer S, Halliburton SS, et al. Coronary artery calcium: a multi-institutional, "
        "multimanufacturer international standard for quantification at cardiac CT. Radiology "
        "2007;243:527-538. doi:10.1148/radiol.2432050808"
    ),
}

#: Agatston's calcium threshold at 120 kV, HU: a voxel is calcium when its HU >= this value.
AGATSTON_THRESHOLD_HU = 130.0

#: Risk categories and the upper bound of each, Agatston (inclusive; the lower bound is the
#: previous category's, exclusive): A 0, B (0, 10], C (10, 100], D (100, 400], E > 400
#: (Rumberger et al. 1999).
RISK_CATEGORY_UPPER: dict[str, float] = {"A": 0.0, "B": 10.0, "C": 100.0, "D": 400.0, "E": math.inf}
#: The risk category letters in order of increasing score.
RISK_CATEGORIES: tuple[str, ...] = tuple(RISK_CATEGORY_UPPER)

#: Connectivity of the 2-D components that Agatston scores: the 8 in-plane neighbours and nothing
#: across slices, so one :func:`scipy.ndimage.label` call yields the components of every slice.
IN_PLANE_8 = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE_8[1] = True
#: Connectivity of a 3-D lesion in reports, review and models: the full 26-neighbourhood.
FULL_26 = np.ones((3, 3, 3), dtype=bool)
#: Face connectivity: the lesion definition of the orCaScore framework (Wolterink et al. 2016),
#: used by the lesion-detection statistics.
SIX_CONNECTED = np.zeros((3, 3, 3), dtype=bool)
SIX_CONNECTED[1, 1, :] = SIX_CONNECTED[1, :, 1] = SIX_CONNECTED[:, 1, 1] = True

#: Slack on the area rule, mm^2. Pixel areas such as 0.1 x 0.1 x 100 land a few ULPs
#: below 1.0; 1e-6 mm^2 is five orders of magnitude below any clinical pixel area
#: (>= ~0.1 mm^2), so it only absorbs rounding and never admits a smaller component.
AREA_TOLERANCE_MM2 = 1e-6


@dataclass(frozen=True)
class Thresholds:
    """Calcium threshold and density-weight band edges for one tube voltage.

    Parameters
    ----------
    threshold_hu : float
        A voxel is calcium when its HU >= this value.
    weight_edges_hu : tuple of 3 float
        Peak HU from which the density weight becomes 2, 3 and 4. A component
        whose peak is >= ``threshold_hu`` and below the first edge weighs 1.
    kvp : float
        Tube voltage the values belong to, kV.
    source : str
        Where the values come from (``"agatston"``, ``"kvp_table"``, ``"override"``).
    """

    threshold_hu: float
    weight_edges_hu: tuple[float, float, float]
    kvp: float
    source: str

    def weights(self, peak_hu: npt.ArrayLike) -> np.ndarray:
        """Density weights (int64, 1-4; 0 below the threshold) of components with these peak HU.

        Examples
        --------
        >>> thresholds_for(120.0).weights([129, 130, 199, 200, 299, 300, 399, 400]).tolist()
        [0, 1, 1, 2, 2, 3, 3, 4]
        """
        peak = np.asarray(peak_hu, dtype=float)
        weight = 1 + sum((peak >= edge).astype(np.int64) for edge in self.weight_edges_hu)
        return np.where(peak >= self.threshold_hu, weight, 0).astype(np.int64)


#: kVp -> (threshold, weight-2 edge, weight-3 edge, weight-4 edge), HU. The 120 kVp
#: row is Agatston's. The other rows scale all four values by one kVp-specific factor
#: (about 1.59 at 70, 1.36 at 80, 1.11 at 100, 0.915 at 135 kV).
KVP_TABLE: dict[float, tuple[float, float, float, float]] = {
    70.0: (207.0, 318.0, 477.0, 636.0),
    80.0: (177.0, 271.0, 408.0, 544.0),
    100.0: (145.0, 222.0, 334.0, 446.0),
    120.0: (AGATSTON_THRESHOLD_HU, 200.0, 300.0, 400.0),
    135.0: (119.0, 183.0, 274.0, 364.0),
}


def thresholds_for(
    kvp: float = 120.0, *, kvp_thresholds: bool = False, threshold_hu: float | None = None
) -> Thresholds:
    """Pick the calcium threshold and density-weight edges.

    Parameters
    ----------
    kvp : float
        Tube voltage, kV.
    kvp_thresholds : bool
        Use the kVp-specific row of :data:`KVP_TABLE` (70, 80, 100, 120 or 135 kV)
        instead of Agatston's 130/200/300/400 HU. At 120 kV both are the same.
    threshold_hu : float, optional
        Calcium threshold override, HU. The weight edges stay those of the
        chosen row (so a 150 HU threshold at 120 kV keeps 200/300/400).

    Returns
    -------
    Thresholds

    Raises
    ------
    InvalidInputError
        If ``kvp_thresholds`` is set and ``kvp`` is not a row of the table, or if a
        value is not finite.

    Examples
    --------
    >>> thresholds_for(80, kvp_thresholds=True).threshold_hu
    177.0
    """
    if not math.isfinite(kvp) or kvp <= 0:
        raise InvalidInputError(f"kvp must be a positive tube voltage in kV, got {kvp!r}")
    row, source = KVP_TABLE[120.0], "agatston"
    if kvp_thresholds:
        key = float(kvp)
        if key not in KVP_TABLE:
            raise InvalidInputError(
                f"no kVp-specific calcium thresholds for {kvp:g} kV (table has "
                f"{', '.join(f'{k:g}' for k in KVP_TABLE)} kV); "
                "score without kvp_thresholds or set threshold_hu"
            )
        row, source = KVP_TABLE[key], "kvp_table"
    threshold = row[0]
    if threshold_hu is not None:
        if not math.isfinite(threshold_hu):
            raise InvalidInputError(f"threshold_hu must be a finite HU value, got {threshold_hu!r}")
        threshold, source = float(threshold_hu), "override"
    return Thresholds(float(threshold), (row[1], row[2], row[3]), float(kvp), source)


def _check_score(agatston: float) -> float:
    value = float(agatston)
    if not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"agatston must be a finite score >= 0, got {agatston!r}")
    return value


def risk_category_bounds(category: str) -> tuple[float, float]:
    """Agatston range ``(lower, upper]`` of a risk category (A: exactly 0, so ``(0.0, 0.0)``).

    Raises
    ------
    InvalidInputError
        If ``category`` is not one of A-E.

    Examples
    --------
    >>> risk_category_bounds("C"), risk_category_bounds("A"), risk_category_bounds("E")
    ((10.0, 100.0), (0.0, 0.0), (400.0, inf))
    """
    if category not in RISK_CATEGORY_UPPER:
        raise InvalidInputError(f"risk category must be one of {list(RISK_CATEGORIES)}, got {category!r}")
    index = RISK_CATEGORIES.index(category)
    lower = RISK_CATEGORY_UPPER[RISK_CATEGORIES[index - 1]] if index else 0.0
    return lower, RISK_CATEGORY_UPPER[category]


def risk_category(agatston: float) -> str:
    """Risk category A-E of an Agatston score, on the unrounded score.

    A: 0, B: (0, 10], C: (10, 100], D: (100, 400], E: > 400.

    Raises
    ------
    InvalidInputError
        If ``agatston`` is negative or not finite.

    Examples
    --------
    >>> [risk_category(s) for s in (0, 0.2, 10, 10.5, 400, 400.01)]
    ['A', 'B', 'B', 'C', 'D', 'E']
    """
    value = _check_score(agatston)
    return next(category for category, upper in RISK_CATEGORY_UPPER.items() if value <= upper)


def cac_drs(agatston: float, n_vessels: int) -> str:
    """CAC-DRS 2018 category: ``"A0"`` or ``"A<k>/N<n>"``.

    A0: 0, A1: (0, 100), A2: [100, 300), A3: >= 300, on the unrounded score (so
    any score above 0 is at least A1). ``N`` is the number of vessels with
    calcium (LM, LAD, LCX, RCA; 1-4). It is omitted for A0 and when no vessel
    is named (all calcium of unspecified artery), since it is then unknown.

    Parameters
    ----------
    agatston : float
        Total Agatston score.
    n_vessels : int
        Arteries among LM, LAD, LCX, RCA with a score > 0 (0-4).

    Raises
    ------
    InvalidInputError
        If the score is negative or not finite, or ``n_vessels`` is not 0-4.

    Examples
    --------
    >>> cac_drs(0, 0), cac_drs(150.0, 2), cac_drs(3.0, 0)
    ('A0', 'A2/N2', 'A1')
    """
    value = _check_score(agatston)
    if isinstance(n_vessels, bool) or int(n_vessels) != n_vessels or not 0 <= n_vessels <= 4:
        raise InvalidInputError(f"n_vessels must be an integer 0-4, got {n_vessels!r}")
    if value == 0:
        return "A0"
    grade = 1 if value < 100 else 2 if value < 300 else 3
    return f"A{grade}/N{int(n_vessels)}" if n_vessels else f"A{grade}"
