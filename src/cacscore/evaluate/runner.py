"""Evaluate predicted label masks against references, case by case, and summarise a cohort.

:func:`evaluate_case` is pure (arrays in, record out). :func:`evaluate_cases`
loads cases, asks a *predictor* for each predicted mask and keeps going when a
case fails: the failure is recorded with its reason, never dropped.
:func:`summarize` turns the records into the ``metrics.json`` dictionary
(schema in ``docs/evaluation.md``), with the headline figures again for each
data source (:data:`GROUP_KEYS`: the dataset folder, and the generator family
and version that a phantom cohort records per case; ``"unknown"`` where the
data does not say), so that a model is judged on each source by itself, not
only on the pool.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from cacscore.evaluate.bootstrap import bootstrap_ci
from cacscore.evaluate.lesions import LesionCounts, aggregate_lesions, lesion_detection
from cacscore.evaluate.metrics import (
    CATEGORIES,
    bland_altman,
    category_accuracy,
    category_codes,
    confusion_matrix,
    harrell_c,
    icc_absolute,
    linear_weighted_kappa,
    paper_c_index,
)
from cacscore.io.volume import CTVolume
from cacscore.labels import UNSPECIFIED
from cacscore.scoring.conventions import AGATSTON_THRESHOLD_HU

#: Schema name written into ``metrics.json``.
METRICS_SCHEMA = "cacscore.evaluation/1"
#: HU threshold of the naive baseline (every voxel at or above it is called calcium).
BASELINE_THRESHOLD_HU = AGATSTON_THRESHOLD_HU
#: What evaluation reports figures by: the dataset folder (``--data``), and each case's generator
#: family and version where the dataset states them (:meth:`cacscore.datasets.CaseRef.attribute`).
GROUP_KEYS: tuple[str, ...] = ("dataset", "family", "generator_version")
#: Value of a group that the data does not state.
UNKNOWN = "unknown"
#: Reference categories whose median predicted/reference Agatston ratio is reported (large scores).
RATIO_CATEGORIES: tuple[str, ...] = ("D", "E")


class LoadedCaseLike(Protocol):
    """What :func:`evaluate_cases` needs of a loaded case (:class:`cacscore.datasets.LoadedCase`)."""

    case_id: str
    volume: CTVolume
    label: np.ndarray | None


class CaseRefLike(Protocol):
    """What :func:`evaluate_cases` needs of a listed case (:class:`cacscore.datasets.CaseRef`)."""

    @property
    def case_id(self) -> str:
        """Case identifier."""

    def load(self) -> Any:
        """Read the case (returns a :class:`LoadedCaseLike`)."""


#: Predicted (Z, Y, X) label mask in project codes for a loaded case.
Predictor = Callable[[Any], np.ndarray]


@dataclass(frozen=True)
class CaseEvaluation:
    """Reference and predicted scores of one case and its lesion detection tallies.

    Attributes
    ----------
    case_id : str
    ref_agatston, pred_agatston : float
        Agatston scores.
    ref_volume_mm3, pred_volume_mm3 : float
        Volume scores, mm^3.
    ref_category, pred_category : str
        Risk categories A-E.
    ref_arteries, pred_arteries : dict of str to float
        Agatston score per artery name (LM, LAD, LCX, RCA, unspecified).
    lesions : LesionCounts
        Lesion-level tallies (``n_scans`` = 1).
    groups : dict of str to str
        The case's value of each of :data:`GROUP_KEYS` (data source).
    """

    case_id: str
    ref_agatston: float
    pred_agatston: float
    ref_volume_mm3: float
    pred_volume_mm3: float
    ref_category: str
    pred_category: str
    ref_arteries: dict[str, float]
    pred_arteries: dict[str, float]
    lesions: LesionCounts
    groups: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` inverts it."""
        return {
            "case_id": self.case_id,
            "ref_agatston": self.ref_agatston,
            "pred_agatston": self.pred_agatston,
            "ref_volume_mm3": self.ref_volume_mm3,
            "pred_volume_mm3": self.pred_volume_mm3,
            "ref_category": self.ref_category,
            "pred_category": self.pred_category,
            "ref_arteries": dict(self.ref_arteries),
            "pred_arteries": dict(self.pred_arteries),
            "lesions": self.lesions.to_dict(),
            "groups": dict(self.groups),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseEvaluation:
        """Inverse of :meth:`to_dict`."""
        return cls(
            case_id=str(data["case_id"]),
            ref_agatston=float(data["ref_agatston"]),
            pred_agatston=float(data["pred_agatston"]),
            ref_volume_mm3=float(data["ref_volume_mm3"]),
            pred_volume_mm3=float(data["pred_volume_mm3"]),
            ref_category=str(data["ref_category"]),
            pred_category=str(data["pred_category"]),
            ref_arteries={k: float(v) for k, v in data["ref_arteries"].items()},
            pred_arteries={k: float(v) for k, v in data["pred_arteries"].items()},
            lesions=LesionCounts.from_dict(data["lesions"]),
            groups={str(k): str(v) for k, v in (data.get("groups") or {}).items()},
        )


@dataclass(frozen=True)
class CaseFailure:
    """A case that could not be evaluated, with the reason (one line)."""

    case_id: str
    reason: str
    groups: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {"case_id": self.case_id, "reason": self.reason, "groups": dict(self.groups)}


def case_groups(ref: Any, dataset: str | None = None) -> dict[str, str]:
    """The value of each of :data:`GROUP_KEYS` for a listed case (``"unknown"`` where not stated).

    ``dataset`` names the dataset the case was listed from; the other keys come
    from ``ref.attribute(key)`` where the case has that method.
    """
    attribute = getattr(ref, "attribute", None)
    groups = {"dataset": dataset or UNKNOWN}
    for key in GROUP_KEYS[1:]:
        value = attribute(key) if callable(attribute) else None
        groups[key] = UNKNOWN if value is None or str(value).strip() == "" else str(value)
    return groups


def evaluate_case(
    case_id: str, volume: CTVolume, ref_label: np.ndarray, pred_label: np.ndarray
) -> CaseEvaluation:
    """Score the reference and the predicted mask of one CT and count lesion detections.

    Both masks are scored with :func:`cacscore.scoring.score_calcium` at the
    volume's kVp-independent default conventions (130 HU, 1 mm^2).

    Raises
    ------
    InvalidInputError
        Masks that do not match the volume or hold codes outside 0-5.
    """
    from cacscore.scoring import score_calcium

    ref = score_calcium(volume.hu, volume.spacing, ref_label, affine=volume.affine)
    pred = score_calcium(volume.hu, volume.spacing, pred_label, affine=volume.affine)
    return CaseEvaluation(
        case_id=case_id,
        ref_agatston=ref.agatston,
        pred_agatston=pred.agatston,
        ref_volume_mm3=ref.volume_mm3,
        pred_volume_mm3=pred.volume_mm3,
        ref_category=ref.risk_category,
        pred_category=pred.risk_category,
        ref_arteries={name: a.agatston for name, a in ref.arteries.items()},
        pred_arteries={name: a.agatston for name, a in pred.arteries.items()},
        lesions=lesion_detection(volume.hu, ref_label, pred_label, volume.spacing),
    )


def threshold_baseline(case: LoadedCaseLike) -> np.ndarray:
    """Naive baseline prediction: every voxel >= 130 HU is coronary calcium of unspecified artery.

    The scorer then keeps the components that Agatston counts (>= 1 mm^2), so
    bone, valve calcium and metal all count: a floor that any model must beat.
    """
    return np.where(case.volume.hu >= BASELINE_THRESHOLD_HU, UNSPECIFIED, 0).astype(np.uint8)


def evaluate_cases(
    cases: Sequence[CaseRefLike],
    predictor: Predictor,
    *,
    on_case: Callable[[str], None] | None = None,
    dataset: str | None = None,
) -> tuple[list[CaseEvaluation], list[CaseFailure]]:
    """Evaluate every case; a case that fails is recorded in the failures and skipped.

    Parameters
    ----------
    cases : sequence of CaseRef
        Cases with references (``load()`` gives ``case_id``, ``volume``, ``label``).
    predictor : callable
        Loaded case -> predicted (Z, Y, X) label mask in project codes.
    on_case : callable, optional
        Called with each case id after it is done (progress bars).
    dataset : str, optional
        Name of the dataset the cases come from, recorded in each result's
        ``groups`` (see :func:`case_groups`).

    Returns
    -------
    evaluations : list of CaseEvaluation
    failures : list of CaseFailure
        One per case that could not be read, predicted or scored, with the reason.
    """
    evaluations: list[CaseEvaluation] = []
    failures: list[CaseFailure] = []
    for ref in cases:
        groups = case_groups(ref, dataset)
        try:
            case = ref.load()
            if case.label is None:
                raise ValueError("case has no reference label mask")
            pred = np.asarray(predictor(case))
            result = evaluate_case(ref.case_id, case.volume, case.label, pred)
            evaluations.append(replace(result, groups=groups))
        # One bad case (unreadable file, odd mask, model error) must not end a cohort run; it is reported
        # instead.
        except Exception as exc:  # noqa: BLE001
            message = " ".join(str(exc).split()) or type(exc).__name__
            failures.append(CaseFailure(ref.case_id, f"{type(exc).__name__}: {message}", groups))
        if on_case is not None:
            on_case(ref.case_id)
    return evaluations, failures


def _value(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _icc_or_nan(x: np.ndarray, y: np.ndarray) -> float:
    return icc_absolute(x, y) if x.size >= 2 else math.nan


def median_ratio(
    evaluations: Sequence[CaseEvaluation], categories: Sequence[str] = RATIO_CATEGORIES
) -> tuple[float, int]:
    """Median predicted/reference Agatston over the cases whose reference category is in ``categories``.

    Returns
    -------
    median : float
        ``nan`` without such cases.
    n : int
        Cases it is taken over.

    Examples
    --------
    >>> from cacscore.evaluate.lesions import LesionCounts
    >>> def case(ref, pred, cat):
    ...     return CaseEvaluation("c", ref, pred, 0, 0, cat, cat, {}, {}, LesionCounts(1))
    >>> median_ratio([case(200, 100, "D"), case(500, 550, "E"), case(800, 880, "E"), case(5, 50, "B")])
    (1.1, 3)
    """
    ratios = [
        e.pred_agatston / e.ref_agatston
        for e in evaluations
        if e.ref_category in categories and e.ref_agatston > 0
    ]
    return (float(np.median(ratios)) if ratios else math.nan), len(ratios)


def summarize_groups(
    evaluations: Sequence[CaseEvaluation],
    failures: Iterable[CaseFailure] = (),
    *,
    keys: Sequence[str] = GROUP_KEYS,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, Any]]]:
    """The headline figures of each data source: ``{key: {value: figures}}`` for each of ``keys``.

    The figures of a group are those of :func:`summarize` on its cases alone:
    ``n_evaluated``, ``n_failed``, ``accuracy``, ``harrell_c``, ``kappa_linear``
    and ``icc_agatston`` (each ``{"value", "ci95"}``), ``median_ratio_de``
    (``{"value", "n"}``: median predicted/reference Agatston of the D and E
    cases) and the lesion ``sensitivity``, ``ppv``, ``f1`` and ``fp_per_scan``.
    """
    failures = list(failures)
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for key in keys:
        values = sorted(
            {e.groups.get(key, UNKNOWN) for e in evaluations} | {f.groups.get(key, UNKNOWN) for f in failures}
        )
        table[key] = {}
        for value in values:
            chosen = [e for e in evaluations if e.groups.get(key, UNKNOWN) == value]
            failed = [f for f in failures if f.groups.get(key, UNKNOWN) == value]
            full = summarize(chosen, failed, n_bootstrap=n_bootstrap, seed=seed, groups=False)
            cat = full["category"]
            lesions = full["lesions"]["overall"]
            table[key][value] = {
                "n_evaluated": full["n_evaluated"],
                "n_failed": full["n_failed"],
                **{
                    name: {"value": cat[name]["value"], "ci95": cat[name]["ci95"]}
                    for name in ("accuracy", "harrell_c", "kappa_linear")
                },
                "icc_agatston": {
                    "value": full["agatston"]["icc"]["value"],
                    "ci95": full["agatston"]["icc"]["ci95"],
                },
                "median_ratio_de": full["agatston"]["median_ratio_de"],
                **{f"lesion_{name}": lesions[name] for name in ("sensitivity", "ppv", "f1")},
                "fp_per_scan": lesions["fp_per_scan"],
            }
    return _json_safe(table)  # type: ignore[no-any-return]


def summarize(
    evaluations: Sequence[CaseEvaluation],
    failures: Iterable[CaseFailure] = (),
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    source: str = "",
    groups: bool = True,
) -> dict[str, Any]:
    """Cohort metrics as the ``metrics.json`` dictionary (``nan`` written as ``null``).

    Parameters
    ----------
    evaluations : sequence of CaseEvaluation
    failures : iterable of CaseFailure
        Listed with their reasons and counted in ``n_failed``.
    n_bootstrap : int
        Bootstrap resamples for the 95 % intervals; 0 leaves ``ci95`` null.
    seed : int
        Bootstrap seed.
    source : str
        What produced the predictions (e.g. ``"pred:DIR"``, ``"model:DIR"``, ``"baseline:threshold"``).
    groups : bool
        Add ``groups``: the figures of each data source (:func:`summarize_groups`).
    """
    failures = list(failures)
    n = len(evaluations)
    ref_cat = category_codes([e.ref_category for e in evaluations], "ref_category")
    pred_cat = category_codes([e.pred_category for e in evaluations], "pred_category")
    ref_ag = np.array([e.ref_agatston for e in evaluations], dtype=float)
    pred_ag = np.array([e.pred_agatston for e in evaluations], dtype=float)
    ref_vol = np.array([e.ref_volume_mm3 for e in evaluations], dtype=float)
    pred_vol = np.array([e.pred_volume_mm3 for e in evaluations], dtype=float)

    statistics: dict[str, Callable[..., float]] = {
        "accuracy": lambda r, p, *_: category_accuracy(r, p),
        "harrell_c": lambda r, p, *_: harrell_c(r, p),
        "paper_c_index": lambda r, p, *_: paper_c_index(r, p),
        "kappa_linear": lambda r, p, *_: linear_weighted_kappa(r, p),
        "icc_agatston": lambda r, p, ra, pa, *_: _icc_or_nan(ra, pa),
        "icc_volume": lambda r, p, ra, pa, rv, pv: _icc_or_nan(rv, pv),
    }
    columns = (ref_cat, pred_cat, ref_ag, pred_ag, ref_vol, pred_vol)
    estimates = (
        {name: fn(*columns) for name, fn in statistics.items()} if n else dict.fromkeys(statistics, math.nan)
    )
    cis = bootstrap_ci(statistics, *columns, n_resamples=n_bootstrap, seed=seed) if n and n_bootstrap else {}

    def metric(name: str, description: str) -> dict[str, Any]:
        ci = cis.get(name)
        return {
            "value": _value(estimates[name]),
            "n": n,
            "ci95": None if ci is None else [_value(ci.low), _value(ci.high)],
            "description": description,
        }

    lesions = aggregate_lesions(e.lesions for e in evaluations)
    artery_names = list(evaluations[0].ref_arteries) if evaluations else []
    return _json_safe(
        {
            "schema": METRICS_SCHEMA,
            "source": source,
            "n_cases": n + len(failures),
            "n_evaluated": n,
            "n_failed": len(failures),
            "failures": [f.to_dict() for f in failures],
            "bootstrap": {"n_resamples": n_bootstrap, "seed": seed, "method": "percentile, cases resampled"},
            "category": {
                "labels": list(CATEGORIES),
                "accuracy": metric("accuracy", "fraction of cases with the reference risk category"),
                "harrell_c": metric(
                    "harrell_c",
                    "Harrell's C over pairs with different reference categories, prediction ties = 1/2",
                ),
                "paper_c_index": metric(
                    "paper_c_index",
                    "formula printed in Gogin 2021: concordant pairs / (n choose 2), no tie credit",
                ),
                "kappa_linear": metric("kappa_linear", "Cohen's kappa, linear weights, categories A-E fixed"),
                "confusion_matrix": confusion_matrix(ref_cat, pred_cat).tolist(),
                "reference_counts": np.bincount(ref_cat, minlength=len(CATEGORIES)).tolist(),
            },
            "agatston": {
                "icc": metric("icc_agatston", "ICC(2,1) two-way random, absolute agreement, single rater"),
                "bland_altman": bland_altman(ref_ag, pred_ag).to_dict() if n else None,
                "ref_total": float(ref_ag.sum()),
                "pred_total": float(pred_ag.sum()),
                "median_ratio_de": dict(zip(("value", "n"), median_ratio(evaluations), strict=True)),
            },
            "volume_mm3": {
                "icc": metric("icc_volume", "ICC(2,1) on volume scores, mm^3"),
                "bland_altman": bland_altman(ref_vol, pred_vol).to_dict() if n else None,
            },
            "arteries_agatston": {
                name: {
                    "ref_total": float(sum(e.ref_arteries[name] for e in evaluations)),
                    "pred_total": float(sum(e.pred_arteries[name] for e in evaluations)),
                }
                for name in artery_names
            },
            "lesions": {**lesions.metrics(), "counts": lesions.to_dict()},
            **(
                {"groups": summarize_groups(evaluations, failures, n_bootstrap=n_bootstrap, seed=seed)}
                if groups
                else {}
            ),
        }
    )


def _json_safe(value: Any) -> Any:
    """Replace nan/inf by None recursively so that the JSON is standard."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
