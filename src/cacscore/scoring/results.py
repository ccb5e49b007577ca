"""Result records of calcium scoring, with their JSON form.

All records are frozen dataclasses; derive changed copies with
:func:`dataclasses.replace` (or :meth:`ScoreResult.with_confidences` for the
per-lesion confidences a model adds).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cacscore.errors import InvalidInputError
from cacscore.labels import ARTERY_CODES, ARTERY_NAMES, LAD, LCX, LM, RCA, UNSPECIFIED

#: Order of arteries in results and reports: named arteries first, then unspecified.
ARTERY_ORDER: tuple[str, ...] = tuple(ARTERY_NAMES[code] for code in (LM, LAD, LCX, RCA, UNSPECIFIED))
#: Arteries that count as vessels for ``n_vessels`` and CAC-DRS ``N``.
VESSELS: tuple[str, ...] = tuple(ARTERY_NAMES[code] for code in (LM, LAD, LCX, RCA))


@dataclass(frozen=True)
class ArteryScore:
    """Scores of the calcium voxels labelled with one artery.

    Parameters
    ----------
    agatston : float
        Agatston score of the artery's voxels.
    volume_mm3 : float
        Volume of its scored voxels, mm^3.
    mass_mg : float
        Mass score of its scored voxels, mg (uncalibrated unless a calibration factor was given).
    n_lesions : int
        Number of 3-D lesions whose majority artery is this one.
    """

    agatston: float = 0.0
    volume_mm3: float = 0.0
    mass_mg: float = 0.0
    n_lesions: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArteryScore:
        """Inverse of :meth:`to_dict`."""
        return cls(
            agatston=float(data["agatston"]),
            volume_mm3=float(data["volume_mm3"]),
            mass_mg=float(data["mass_mg"]),
            n_lesions=int(data["n_lesions"]),
        )


@dataclass(frozen=True)
class Lesion:
    """One 3-D lesion: a 26-connected group of scored calcium voxels.

    Parameters
    ----------
    id : int
        1-based id, equal to the lesion's value in the lesion map.
    artery : str
        Majority artery name of its voxels ("LM", "LAD", "LCX", "RCA", "unspecified").
    label : int
        Project label code of ``artery``.
    agatston : float
        Its share of the Agatston score (sum over its 2-D components' pixels).
    volume_mm3 : float
        Scored voxels x voxel volume, mm^3.
    mass_mg : float
        Calibration x sum of HU x voxel volume / 1000, mg.
    peak_hu : float
        Highest HU of its voxels.
    centroid_mm : tuple of 3 float
        Unweighted voxel centroid in patient LPS ``(x, y, z)`` mm.
    centroid_zyx : tuple of 3 float
        The same centroid as fractional voxel indices ``(z, y, x)``.
    slices : tuple of 2 int
        First and last slice index ``(z)`` it spans, inclusive.
    n_voxels : int
        Number of scored voxels.
    confidence : float or None
        Model confidence in [0, 1], filled by model-based scoring; None otherwise.
    filter_probability : float or None
        Where the model has a lesion filter (:mod:`cacscore.model.lesion_filter`),
        its probability in [0, 1] that the lesion is coronary calcium (the
        highest of the candidate lesions it holds); None otherwise.
    """

    id: int
    artery: str
    label: int
    agatston: float
    volume_mm3: float
    mass_mg: float
    peak_hu: float
    centroid_mm: tuple[float, float, float]
    centroid_zyx: tuple[float, float, float]
    slices: tuple[int, int]
    n_voxels: int
    confidence: float | None = None
    filter_probability: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        data = asdict(self)
        for key in ("centroid_mm", "centroid_zyx", "slices"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lesion:
        """Inverse of :meth:`to_dict`."""
        confidence = data.get("confidence")
        filter_probability = data.get("filter_probability")
        return cls(
            id=int(data["id"]),
            artery=str(data["artery"]),
            label=int(data.get("label", ARTERY_CODES.get(str(data["artery"]), 0))),
            agatston=float(data["agatston"]),
            volume_mm3=float(data["volume_mm3"]),
            mass_mg=float(data["mass_mg"]),
            peak_hu=float(data["peak_hu"]),
            centroid_mm=_triple(data["centroid_mm"]),
            centroid_zyx=_triple(data["centroid_zyx"]),
            slices=(int(data["slices"][0]), int(data["slices"][1])),
            n_voxels=int(data["n_voxels"]),
            confidence=None if confidence is None else float(confidence),
            filter_probability=None if filter_probability is None else float(filter_probability),
        )


def _triple(values: Any) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in values)
    return (x, y, z)


@dataclass(frozen=True)
class ScoreResult:
    """Calcium scores of one CT volume.

    Parameters
    ----------
    agatston : float
        Total Agatston score (sum of the per-artery scores).
    volume_mm3 : float
        Total volume score, mm^3.
    mass_mg : float
        Total mass score, mg.
    risk_category : str
        "A".."E", see :func:`cacscore.scoring.risk_category`.
    cac_drs : str
        CAC-DRS category, see :func:`cacscore.scoring.cac_drs`.
    n_vessels : int
        Number of LM, LAD, LCX, RCA with an Agatston score > 0.
    arteries : dict of str to ArteryScore
        Keys "LM", "LAD", "LCX", "RCA", "unspecified", always all five.
    lesions : list of Lesion
        3-D lesions ordered by id.
    conventions : dict
        Every parameter the scores depend on (threshold, weights, area rule,
        connectivity, slice increment, calibration, references).
    warnings : list of str
        Non-fatal remarks (e.g. tube voltage other than 120 kV scored with 130 HU).
    """

    agatston: float
    volume_mm3: float
    mass_mg: float
    risk_category: str
    cac_drs: str
    n_vessels: int
    arteries: dict[str, ArteryScore]
    lesions: list[Lesion] = field(default_factory=list)
    conventions: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` inverts it."""
        return {
            "agatston": self.agatston,
            "volume_mm3": self.volume_mm3,
            "mass_mg": self.mass_mg,
            "risk_category": self.risk_category,
            "cac_drs": self.cac_drs,
            "n_vessels": self.n_vessels,
            "arteries": {name: score.to_dict() for name, score in self.arteries.items()},
            "lesions": [lesion.to_dict() for lesion in self.lesions],
            "conventions": json.loads(json.dumps(self.conventions)),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreResult:
        """Rebuild a result from :meth:`to_dict` output (or a ``cacscore.score/1`` report).

        Raises
        ------
        InvalidInputError
            If a required key is missing.
        """
        try:
            return cls(
                agatston=float(data["agatston"]),
                volume_mm3=float(data["volume_mm3"]),
                mass_mg=float(data["mass_mg"]),
                risk_category=str(data["risk_category"]),
                cac_drs=str(data["cac_drs"]),
                n_vessels=int(data["n_vessels"]),
                arteries={name: ArteryScore.from_dict(v) for name, v in data["arteries"].items()},
                lesions=[Lesion.from_dict(v) for v in data.get("lesions", [])],
                conventions=dict(data.get("conventions", {})),
                warnings=[str(w) for w in data.get("warnings", [])],
            )
        except KeyError as exc:
            raise InvalidInputError(f"score result is missing the key {exc.args[0]!r}") from None

    def to_json(self, **kwargs: Any) -> str:
        """JSON text of :meth:`to_dict`; ``kwargs`` go to :func:`json.dumps` (e.g. ``indent=2``)."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> ScoreResult:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def with_confidences(self, confidences: Mapping[int, float]) -> ScoreResult:
        """Copy with ``Lesion.confidence`` set from ``{lesion id: confidence}`` (others unchanged).

        Raises
        ------
        InvalidInputError
            If an id is not a lesion of this result.
        """
        return self._with_lesion_values("confidence", confidences)

    def with_filter_probabilities(self, probabilities: Mapping[int, float]) -> ScoreResult:
        """Copy with ``Lesion.filter_probability`` set from ``{lesion id: probability}`` (others unchanged).

        Raises
        ------
        InvalidInputError
            If an id is not a lesion of this result.
        """
        return self._with_lesion_values("filter_probability", probabilities)

    def _with_lesion_values(self, name: str, values: Mapping[int, float]) -> ScoreResult:
        ids = {lesion.id for lesion in self.lesions}
        unknown = sorted(set(values) - ids)
        if unknown:
            raise InvalidInputError(
                f"{name} values given for lesion ids {unknown} that the result does not have"
            )
        changes: dict[int, dict[str, Any]] = {i: {name: float(v)} for i, v in values.items()}
        lesions = [
            replace(lesion, **changes[lesion.id]) if lesion.id in changes else lesion
            for lesion in self.lesions
        ]
        return replace(self, lesions=lesions)
