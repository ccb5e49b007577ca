"""Calcium label masks from point annotations, as in Gogin et al. 2021.

Challenge data such as the SFR 2020 set annotate each calcification with one
3-D position (and often its artery) instead of a voxel mask. The paper built
its training masks by keeping the connected components of voxels >= 130 HU
that contain an annotated position, then computing the Agatston category of
that mask and reviewing the cases where it disagreed with the annotated
category. :func:`mask_from_points` does exactly that and reports every point
that could not be used as it was, so that a person reviews only those.

Point files (:func:`read_points`) are CSV or JSON with one point per row:

* ``x_mm, y_mm, z_mm``: patient position in mm (DICOM LPS), or
* ``i, j, k``: voxel indices in ITK order (i = column, j = row, k = slice), or
* ``z, y, x``: voxel indices in the array's axis order (slice, row, column),

plus an optional ``artery`` column holding a name (``LM``, ``LAD``, ``LCX``,
``RCA``, common spellings such as ``Left Circumflex Artery`` or ``CX``) or a
project label code (1-5). A missing or empty artery is 1 (unspecified). The
bare ``x, y, z`` names always mean voxel indices; positions in mm must use the
``_mm`` names so that the two can never be confused.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cacscore.errors import InvalidInputError
from cacscore.io.volume import CTVolume
from cacscore.labels import (  # noqa: F401  (ARTERY_ALIASES, parse_artery: their former home)
    ARTERY_ALIASES,
    ARTERY_NAMES,
    LAD,
    NAMED_ARTERIES,
    UNSPECIFIED,
    majority_artery,
    parse_artery,
)
from cacscore.scoring.conventions import AGATSTON_THRESHOLD_HU, FULL_26, RISK_CATEGORIES

PointSpace = Literal["patient_mm", "voxel"]
PointStatus = Literal["ok", "moved", "no_component", "outside", "bone", "conflict"]

#: Statuses of points whose calcium went into the mask.
LABELLED_STATUSES: tuple[str, ...] = ("ok", "moved", "conflict")

_COORDINATE_COLUMNS: tuple[tuple[tuple[str, str, str], PointSpace, tuple[int, int, int]], ...] = (
    # (column names, space, order of those columns in the stored position)
    (("x_mm", "y_mm", "z_mm"), "patient_mm", (0, 1, 2)),
    (("i", "j", "k"), "voxel", (2, 1, 0)),
    (("z", "y", "x"), "voxel", (0, 1, 2)),
)


@dataclass(frozen=True)
class AnnotationPoint:
    """One annotated calcification.

    Parameters
    ----------
    position : tuple of 3 float
        ``(x, y, z)`` in patient LPS mm when ``space == "patient_mm"``;
        fractional voxel indices ``(z, y, x)`` when ``space == "voxel"``.
    space : {"patient_mm", "voxel"}
        Coordinate system of ``position``.
    artery : int
        Project label code 1-5 (1: unspecified).
    """

    position: tuple[float, float, float]
    space: PointSpace = "patient_mm"
    artery: int = UNSPECIFIED

    def __post_init__(self) -> None:
        values = tuple(float(v) for v in self.position)
        if len(values) != 3 or not all(math.isfinite(v) for v in values):
            raise InvalidInputError(f"point position must be three finite numbers, got {self.position!r}")
        if self.space not in ("patient_mm", "voxel"):
            raise InvalidInputError(f"point space must be 'patient_mm' or 'voxel', got {self.space!r}")
        if self.artery not in ARTERY_NAMES:
            raise InvalidInputError(
                f"point artery must be a label code {sorted(ARTERY_NAMES)}, got {self.artery!r}"
            )
        object.__setattr__(self, "position", values)

    def voxel_index(self, volume: CTVolume) -> np.ndarray:
        """Fractional voxel index ``(z, y, x)`` of the point in ``volume``, shape (3,)."""
        if self.space == "voxel":
            return np.asarray(self.position, dtype=float)
        return volume.patient_to_index(np.asarray(self.position, dtype=float))[0]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` inverts it."""
        return {"position": list(self.position), "space": self.space, "artery": ARTERY_NAMES[self.artery]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnnotationPoint:
        """Inverse of :meth:`to_dict`."""
        x, y, z = (float(v) for v in data["position"])
        return cls((x, y, z), data.get("space", "patient_mm"), parse_artery(data.get("artery")))


def _point_from_record(record: dict[str, Any], where: str) -> AnnotationPoint:
    keys = {str(key).strip().lower(): value for key, value in record.items() if key is not None}
    for names, space, order in _COORDINATE_COLUMNS:
        if all(name in keys for name in names):
            try:
                values = [float(keys[name]) for name in names]
            except (TypeError, ValueError):
                raise InvalidInputError(
                    f"{where}: coordinates {[keys[name] for name in names]!r} are not numbers"
                ) from None
            x, y, z = (values[order.index(axis)] for axis in range(3))
            return AnnotationPoint((x, y, z), space, parse_artery(keys.get("artery"), where=where))
    raise InvalidInputError(
        f"{where}: no coordinate columns; expected x_mm,y_mm,z_mm "
        "(patient mm), i,j,k or z,y,x (voxel indices), "
        f"found {sorted(keys)}"
    )


def read_points(path: str | Path) -> list[AnnotationPoint]:
    """Read point annotations from a CSV or JSON file.

    CSV: a header row naming the coordinate columns (see the module
    docstring) and optionally ``artery``. JSON: a list of objects with the
    same keys, or an object whose ``"points"`` holds that list.

    Parameters
    ----------
    path : str or Path
        ``.csv`` or ``.json`` file.

    Returns
    -------
    list of AnnotationPoint
        In file order (an empty file gives an empty list).

    Raises
    ------
    InvalidInputError
        Missing or unreadable file, unknown type, missing coordinate
        columns, non-numeric coordinates or an unknown artery; the message
        names the file and the row.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: point annotation file not found")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: cannot read point annotations ({exc})") from None
    if suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        return [_point_from_record(row, f"{path}, row {n}") for n, row in enumerate(rows, start=2)]
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path}: not valid JSON ({exc})") from None
        records = data.get("points") if isinstance(data, dict) else data
        if not isinstance(records, list) or not all(isinstance(item, dict) for item in records):
            raise InvalidInputError(f'{path}: expected a list of point objects or {{"points": [...]}}')
        return [_point_from_record(item, f"{path}, point {n}") for n, item in enumerate(records)]
    raise InvalidInputError(f"{path}: unsupported point annotation file; use .csv or .json")


def read_annotated_category(path: str | Path) -> str | None:
    """Risk category stated in a JSON point file (``{"risk_category": "C", "points": [...]}``), else None.

    CSV files hold no category and give None.

    Raises
    ------
    InvalidInputError
        If the file is unreadable JSON or the category is not A-E.
    """
    path = Path(path)
    if path.suffix.lower() != ".json":
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path}: cannot read point annotations ({exc})") from None
    category = data.get("risk_category") if isinstance(data, dict) else None
    if category is not None and category not in RISK_CATEGORIES:
        raise InvalidInputError(f"{path}: risk_category must be one of A-E, got {category!r}")
    return category


@dataclass(frozen=True)
class PointResult:
    """What became of one annotated point.

    Parameters
    ----------
    index : int
        0-based position of the point in the input list.
    position : tuple of 3 float
        The point as given (see :class:`AnnotationPoint`).
    space : {"patient_mm", "voxel"}
        Coordinate system of ``position``.
    artery : str
        The point's artery name ("unspecified" when none was given).
    status : {"ok", "moved", "no_component", "outside", "bone", "conflict"}
        ``ok``: on a voxel >= threshold; ``moved``: snapped to the nearest
        voxel >= threshold within the search radius; ``no_component``: no
        such voxel; ``outside``: outside the volume; ``bone``: its component
        looks like bone and was not labelled (see :func:`mask_from_points`);
        ``conflict``: its component also holds points of another artery.
    distance_mm : float or None
        Distance from the point to the voxel it was attached to, mm (0 when
        ``ok``; None when not attached).
    component : int or None
        Id of the attached 3-D component (its value in the component map).
    component_volume_mm3 : float or None
        Volume of that component, mm^3.
    assigned_artery : str or None
        Artery the component received in the mask (None if not labelled).
    """

    index: int
    position: tuple[float, float, float]
    space: str
    artery: str
    status: str
    distance_mm: float | None = None
    component: int | None = None
    component_volume_mm3: float | None = None
    assigned_artery: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` inverts it."""
        data = asdict(self)
        data["position"] = list(self.position)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PointResult:
        """Inverse of :meth:`to_dict`."""
        x, y, z = (float(v) for v in data["position"])
        return cls(**{**data, "position": (x, y, z)})


@dataclass(frozen=True)
class AnnotationReport:
    """The discrepancy report of :func:`mask_from_points`.

    Parameters
    ----------
    points : list of PointResult
        One entry per input point, in input order.
    agatston : float
        Agatston score of the produced mask.
    risk_category : str
        Its risk category "A".."E".
    reference_category : str or None
        The annotated category, if given.
    discrepancy : bool
        True when ``reference_category`` is given and differs from
        ``risk_category``: the case needs review (as in the paper).
    n_components : int
        Number of 3-D components labelled in the mask.
    labelled_volume_mm3 : float
        Volume of the labelled voxels, mm^3.
    settings : dict
        threshold_hu, search_radius_mm, bone_check, max_component_mm3,
        max_extent_mm as used.
    """

    points: list[PointResult]
    agatston: float
    risk_category: str
    reference_category: str | None
    discrepancy: bool
    n_components: int
    labelled_volume_mm3: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def status_counts(self) -> dict[str, int]:
        """Number of points per status (every status listed, zeros included)."""
        counts = Counter(point.status for point in self.points)
        return {status: counts.get(status, 0) for status in PointStatus.__args__}  # type: ignore[attr-defined]

    @property
    def needs_review(self) -> bool:
        """True when the category disagrees or any point could not be used as given."""
        return self.discrepancy or any(point.status not in ("ok", "moved") for point in self.points)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` inverts it."""
        return {
            "schema": "cacscore.annotations/1",
            "agatston": self.agatston,
            "risk_category": self.risk_category,
            "reference_category": self.reference_category,
            "discrepancy": self.discrepancy,
            "needs_review": self.needs_review,
            "n_components": self.n_components,
            "labelled_volume_mm3": self.labelled_volume_mm3,
            "status_counts": self.status_counts,
            "settings": dict(self.settings),
            "points": [point.to_dict() for point in self.points],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnnotationReport:
        """Inverse of :meth:`to_dict` (derived keys are recomputed)."""
        return cls(
            points=[PointResult.from_dict(item) for item in data["points"]],
            agatston=float(data["agatston"]),
            risk_category=str(data["risk_category"]),
            reference_category=data.get("reference_category"),
            discrepancy=bool(data["discrepancy"]),
            n_components=int(data["n_components"]),
            labelled_volume_mm3=float(data["labelled_volume_mm3"]),
            settings=dict(data.get("settings", {})),
        )

    def to_json(self, **kwargs: Any) -> str:
        """JSON text of :meth:`to_dict` (``kwargs`` go to :func:`json.dumps`)."""
        return json.dumps(self.to_dict(), **kwargs)


def _nearest_candidate(
    labels: np.ndarray, index: np.ndarray, spacing: np.ndarray, radius_mm: float
) -> tuple[tuple[int, int, int], float] | None:
    """Nearest labelled voxel to the fractional ``index`` within ``radius_mm``, and its distance in mm."""
    reach = np.ceil(radius_mm / spacing).astype(int) + 1
    centre = np.rint(index).astype(int)
    low = np.maximum(centre - reach, 0)
    high = np.minimum(centre + reach + 1, labels.shape)
    if np.any(high <= low):
        return None
    window = labels[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
    found = np.argwhere(window > 0)
    if found.size == 0:
        return None
    voxels = found + low
    distances = np.sqrt((((voxels - index) * spacing) ** 2).sum(axis=1))
    best = int(np.argmin(distances))
    if distances[best] > radius_mm:
        return None
    z, y, x = (int(v) for v in voxels[best])
    return (z, y, x), float(distances[best])


def _majority_artery(arteries: list[int]) -> int:
    """Majority artery of a component's points (:func:`cacscore.labels.majority_artery`).

    A point of unspecified artery only says "calcium here", so it never outvotes a named one.
    """
    counts = np.bincount(arteries, minlength=len(ARTERY_NAMES) + 1)
    if counts[list(NAMED_ARTERIES)].any():
        counts[UNSPECIFIED] = 0
    return int(majority_artery(counts))


def _check_settings(
    search_radius_mm: float, max_component_mm3: float, max_extent_mm: float, reference_category: str | None
) -> None:
    """Raise InvalidInputError for a setting of :func:`mask_from_points` out of range."""
    if not math.isfinite(search_radius_mm) or search_radius_mm < 0:
        raise InvalidInputError(f"search_radius_mm must be a finite value >= 0, got {search_radius_mm!r}")
    for name, value in (("max_component_mm3", max_component_mm3), ("max_extent_mm", max_extent_mm)):
        if not value > 0:
            raise InvalidInputError(f"{name} must be > 0, got {value!r}")
    if reference_category is not None and reference_category not in RISK_CATEGORIES:
        raise InvalidInputError(f"reference_category must be one of A-E, got {reference_category!r}")


def _attach_points(
    volume: CTVolume, points: list[AnnotationPoint], components: np.ndarray, search_radius_mm: float
) -> tuple[list[tuple[int, float] | None], list[bool]]:
    """Each point's (component, distance moved in mm), None when it has none; and whether it lies outside."""
    spacing = np.asarray(volume.spacing, dtype=float)
    attached: list[tuple[int, float] | None] = []
    outside: list[bool] = []
    for point in points:
        index = point.voxel_index(volume)
        is_outside = bool(np.any(index < -0.5) or np.any(index > np.asarray(components.shape) - 0.5))
        outside.append(is_outside)
        if is_outside:
            attached.append(None)
            continue
        # Clipped because a point exactly on the outer face rounds half to even, one voxel past the edge.
        voxel = tuple(int(v) for v in np.clip(np.rint(index), 0, np.asarray(components.shape) - 1))
        if components[voxel] > 0:
            attached.append((int(components[voxel]), 0.0))
            continue
        nearest = _nearest_candidate(components, index, spacing, search_radius_mm)
        attached.append(None if nearest is None else (int(components[nearest[0]]), nearest[1]))
    return attached, outside


def _point_result(
    number: int,
    points: list[AnnotationPoint],
    hit: tuple[int, float] | None,
    outside: bool,
    members: dict[int, list[int]],
    bone: set[int],
    lut: np.ndarray,
    component_mm3: float,
) -> PointResult:
    """The report line of point ``number``: its status and the component it labelled."""
    point = points[number]
    common: dict[str, Any] = {
        "index": number,
        "position": point.position,
        "space": point.space,
        "artery": ARTERY_NAMES[point.artery],
    }
    if hit is None:
        return PointResult(**common, status="outside" if outside else "no_component")
    component, distance = hit
    named = {points[n].artery for n in members[component]} - {UNSPECIFIED}
    if component in bone:
        status = "bone"
    elif len(named) > 1:
        status = "conflict"
    else:
        status = "ok" if distance == 0.0 else "moved"
    assigned = int(lut[component])
    return PointResult(
        **common,
        status=status,
        distance_mm=round(distance, 4),
        component=component,
        component_volume_mm3=round(float(component_mm3), 4),
        assigned_artery=ARTERY_NAMES[assigned] if assigned else None,
    )


def mask_from_points(
    volume: CTVolume,
    points: list[AnnotationPoint],
    *,
    threshold_hu: float = AGATSTON_THRESHOLD_HU,
    search_radius_mm: float = 2.0,
    bone_check: bool = True,
    max_component_mm3: float = 1500.0,
    max_extent_mm: float = 50.0,
    reference_category: str | None = None,
) -> tuple[np.ndarray, AnnotationReport]:
    """Label mask from point annotations: the 3-D components >= threshold that hold a point.

    Voxels >= ``threshold_hu`` are grouped into 26-connected 3-D components.
    Each point is attached to the component of its voxel; a point whose
    voxel is below the threshold (annotations often land a voxel off a small
    calcification) is moved to the nearest voxel >= threshold within
    ``search_radius_mm`` (status ``moved``). Points with no such voxel are
    reported (``no_component``, or ``outside`` the volume) and add nothing.

    A component that looks like bone rather than a calcification is
    reported (``bone``) and, with ``bone_check`` on, not labelled: coronary
    calcium is isolated in the epicardial fat, so a component holding more
    than ``max_component_mm3`` (the largest coronary calcifications are a
    few hundred mm^3) or reaching further than ``max_extent_mm`` along any
    axis has leaked into the spine, sternum, ribs or the aortic wall.

    Each labelled component gets the artery of its points. When its points
    name different arteries (status ``conflict`` for all of them), the
    majority artery wins (:func:`cacscore.labels.majority_artery`: a tie goes to
    the lower code); points of unspecified artery never outvote a named one.

    Finally the Agatston score and risk category of the mask are computed
    with :func:`cacscore.scoring.score_volume` and compared with
    ``reference_category``: a difference sets ``discrepancy``, which the
    paper used to pick the cases to review by hand.

    Parameters
    ----------
    volume : CTVolume
        The CT, HU (Z, Y, X).
    points : list of AnnotationPoint
        Annotated calcifications.
    threshold_hu : float
        Calcium threshold, HU (130 at 120 kVp).
    search_radius_mm : float
        How far a point below threshold may be moved, mm (>= 0).
    bone_check : bool
        Leave bone-like components out of the mask (they are reported either way).
    max_component_mm3 : float
        Volume above which a component counts as bone, mm^3.
    max_extent_mm : float
        Bounding-box length along any axis above which a component counts as bone, mm.
    reference_category : str or None
        Annotated risk category "A".."E" to compare with.

    Returns
    -------
    mask : (Z, Y, X) ndarray of uint8
        Project label codes (1 unspecified, 2 LM, 3 LAD, 4 LCX, 5 RCA).
    report : AnnotationReport
        Per-point statuses, score, category and discrepancy.

    Raises
    ------
    InvalidInputError
        If a setting is out of range or ``reference_category`` is not A-E.

    Examples
    --------
    >>> hu = np.zeros((3, 5, 5), dtype=np.int16); hu[1, 2, 2:4] = 300
    >>> vol = CTVolume(hu=hu, spacing=(3.0, 1.0, 1.0))
    >>> mask, report = mask_from_points(vol, [AnnotationPoint((1, 2, 1), "voxel", LAD)])
    >>> int(mask.sum()), report.points[0].status, report.points[0].distance_mm
    (6, 'moved', 1.0)
    """
    from scipy import ndimage

    from cacscore.scoring import score_volume

    _check_settings(search_radius_mm, max_component_mm3, max_extent_mm, reference_category)
    spacing = np.asarray(volume.spacing, dtype=float)
    voxel_mm3 = float(np.prod(spacing))
    components, n_components = ndimage.label(volume.hu >= threshold_hu, structure=FULL_26)
    counts = np.bincount(components.ravel(), minlength=n_components + 1)
    boxes = ndimage.find_objects(components)
    attached, outside = _attach_points(volume, points, components, search_radius_mm)

    members: dict[int, list[int]] = {}
    for number, hit in enumerate(attached):
        if hit is not None:
            members.setdefault(hit[0], []).append(number)

    lut = np.zeros(n_components + 1, dtype=np.uint8)
    bone: set[int] = set()
    for component, numbers in members.items():
        box = boxes[component - 1]
        extent_mm = max((s.stop - s.start) * step for s, step in zip(box, spacing)) if box else 0.0
        if counts[component] * voxel_mm3 > max_component_mm3 or extent_mm > max_extent_mm:
            bone.add(component)
            if bone_check:
                continue
        lut[component] = _majority_artery([points[n].artery for n in numbers])
    mask = lut[components]

    results = [
        _point_result(
            number,
            points,
            hit,
            outside[number],
            members,
            bone,
            lut,
            counts[hit[0]] * voxel_mm3 if hit is not None else 0.0,
        )
        for number, hit in enumerate(attached)
    ]

    score = score_volume(volume, mask, threshold_hu=threshold_hu)
    labelled = [c for c in members if lut[c]]
    report = AnnotationReport(
        points=results,
        agatston=float(score.agatston),
        risk_category=score.risk_category,
        reference_category=reference_category,
        discrepancy=reference_category is not None and score.risk_category != reference_category,
        n_components=len(labelled),
        labelled_volume_mm3=round(float(sum(counts[c] for c in labelled) * voxel_mm3), 4),
        settings={
            "threshold_hu": float(threshold_hu),
            "search_radius_mm": float(search_radius_mm),
            "bone_check": bool(bone_check),
            "max_component_mm3": float(max_component_mm3),
            "max_extent_mm": float(max_extent_mm),
            "connectivity": 26,
        },
    )
    return mask, report
