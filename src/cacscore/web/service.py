"""Review logic without HTTP: candidates, automatic results, replaying edits, rescoring.

A *candidate* is a 26-connected group of the voxels that Agatston scoring
would count if they were coronary (:func:`cacscore.scoring.candidate_mask`:
>= 130 HU in 2-D components of >= 1 mm^2). Candidates are the units a
reviewer clicks: an edit sets every voxel of one candidate to an artery code
(or to 0). Because Agatston's 2-D components never cross a candidate's
border, a candidate's share of the score is exact: removing it lowers the
total by precisely that share. Every total shown comes from
:func:`cacscore.scoring.score_volume` on the edited mask, never from sums
kept on the side.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy import ndimage

from cacscore.errors import CacScoreWarning, InvalidInputError
from cacscore.io import CTVolume, read_volume
from cacscore.labels import ARTERY_CODES, ARTERY_COLOURS_BY_NAME, ARTERY_NAMES, BACKGROUND, majority_artery
from cacscore.render import orientation_labels  # noqa: F401  (served to the viewer; one home)
from cacscore.scoring import ScoreResult, candidate_mask, label_lesions_3d, score_volume

#: Edit actions recorded in the audit trail.
ACTIONS = ("add", "remove", "reassign", "trim", "undo")

#: Display colour of each calcium label by artery name (viewer and PDF): the project's one table.
ARTERY_COLOURS: dict[str, str] = ARTERY_COLOURS_BY_NAME

#: Standard interpretation of each risk category (Rumberger et al., Mayo Clin Proc 1999).
RISK_INTERPRETATION: dict[str, str] = {
    "A": "Agatston 0: no identifiable plaque; very low cardiovascular risk.",
    "B": "Agatston 1-10: minimal identifiable plaque; low cardiovascular risk.",
    "C": "Agatston 11-100: mild atherosclerotic plaque; moderate cardiovascular risk.",
    "D": "Agatston 101-400: moderate atherosclerotic plaque; moderately high cardiovascular risk.",
    "E": "Agatston > 400: extensive atherosclerotic plaque; high cardiovascular risk.",
}

#: Meaning of each CAC-DRS grade (Hecht et al., J Cardiovasc Comput Tomogr 2018); N is the number of vessels.
CAC_DRS_INTERPRETATION: dict[str, str] = {
    "A0": "CAC-DRS A0 (Agatston 0): very low risk.",
    "A1": "CAC-DRS A1 (Agatston 1-99): mildly increased risk.",
    "A2": "CAC-DRS A2 (Agatston 100-299): moderately increased risk.",
    "A3": "CAC-DRS A3 (Agatston >= 300): moderately to severely increased risk.",
}


def interpretation(result: ScoreResult) -> dict[str, str]:
    """Texts of the result's risk category and CAC-DRS grade (``N``: vessels with calcium)."""
    grade = result.cac_drs.split("/")[0]
    drs = CAC_DRS_INTERPRETATION[grade]
    if "/N" in result.cac_drs:
        drs += f" N{result.n_vessels}: calcium in {result.n_vessels} of 4 coronary arteries."
    return {"risk_category": RISK_INTERPRETATION[result.risk_category], "cac_drs": drs}


@dataclass(frozen=True)
class AutoResult:
    """What the automatic scorer proposes for one volume.

    Parameters
    ----------
    mask : (Z, Y, X) ndarray of uint8
        Project label codes (0 background, 1 unspecified, 2 LM, 3 LAD, 4 LCX, 5 RCA).
    method : str
        ``"model"`` or ``"candidates only"`` (no model: nothing counted until a reviewer adds it).
    model_version : str or None
        Version of the model that made the mask.
    confidence : (Z, Y, X) ndarray of float32 or None
        Model confidence per voxel in [0, 1] (e.g. each lesion's confidence
        painted over its voxels); a candidate shows the maximum over its voxels.
    domain : dict or None
        The input-domain check's ``domain`` block (:meth:`cacscore.anatomy.DomainCheck.to_dict`), when
        the scorer ran it.
    refusal : str or None
        Why the scorer did not run: the scan is not a non-contrast CT with a heart in view (the mask is
        empty). A reader may analyse it anyway (``skip_domain_check``); the audit log keeps who did.
    """

    mask: np.ndarray
    method: str
    model_version: str | None = None
    confidence: np.ndarray | None = None
    domain: dict[str, Any] | None = None
    refusal: str | None = None


#: ``AutoResult.method`` of a scan the domain check refused (no automatic result).
REFUSED_METHOD = "refused by the domain check"
#: ``AutoResult.method`` of a refused scan that a reader had analysed anyway.
OVERRIDDEN_METHOD = "model, domain check skipped"


class Scorer(Protocol):
    """Turns a volume into an :class:`AutoResult` (the FastAPI dependency ``get_scorer`` returns one).

    ``skip_domain_check`` is passed (true) only to analyse a scan that the scorer refused.
    """

    def __call__(self, volume: CTVolume, *, skip_domain_check: bool = False) -> AutoResult: ...

    def __hash__(self) -> int: ...  # stores are cached per scorer


def candidates_only(volume: CTVolume, *, skip_domain_check: bool = False) -> AutoResult:
    """The scorer used without a model: an empty mask, every candidate left for the reviewer."""
    return AutoResult(mask=np.zeros(volume.shape, dtype=np.uint8), method="candidates only")


def read_study_volume(path: str) -> CTVolume:
    """Read a volume; quality warnings stay in ``volume.warnings`` (the viewer shows them) instead of warning.

    Raises
    ------
    VolumeReadError
        As :func:`cacscore.io.read_volume`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacScoreWarning)
        return read_volume(path)


@dataclass
class Candidates:
    """Candidate components of one volume.

    Attributes
    ----------
    labels : (Z, Y, X) ndarray of uint16 (int32 above 65534 candidates)
        0 outside candidates, ids 1..n inside.
    n : int
        Number of candidates.
    boxes : list of tuple of slice
        ``boxes[i - 1]`` is the bounding box of candidate ``i``.
    """

    labels: np.ndarray
    n: int
    boxes: list[tuple[slice, slice, slice]] = field(default_factory=list)

    def check(self, lesion: int) -> None:
        """Raise :class:`InvalidInputError` unless ``lesion`` is a candidate id."""
        if isinstance(lesion, bool) or not 1 <= int(lesion) <= self.n:
            raise InvalidInputError(f"lesion {lesion!r} is not a candidate of this study (ids 1..{self.n})")

    def voxels(self, lesion: int) -> tuple[tuple[slice, slice, slice], np.ndarray]:
        """Bounding box of candidate ``lesion`` and its boolean footprint inside the box."""
        self.check(lesion)
        box = self.boxes[lesion - 1]
        return box, self.labels[box] == lesion


def find_candidates(volume: CTVolume) -> Candidates:
    """Label the candidate components of ``volume`` (same rules as the scoring of a mask).

    Examples
    --------
    >>> hu = np.zeros((2, 6, 6), np.int16); hu[:, 1:3, 1:3] = 300; hu[0, 4:6, 4:6] = 300
    >>> find_candidates(CTVolume(hu, (3.0, 0.5, 0.5))).n
    2
    """
    mask = candidate_mask(volume.hu, volume.spacing)
    labels, n = label_lesions_3d(mask)
    if n < np.iinfo(np.uint16).max:
        labels = labels.astype(np.uint16)  # half the memory of a large scan's id map
    # Ids are consecutive, so every id has a box.
    boxes = ndimage.find_objects(labels)
    return Candidates(labels=labels, n=n, boxes=boxes)  # type: ignore[arg-type]


def lesion_label(mask: np.ndarray, candidates: Candidates, lesion: int) -> int:
    """Majority non-zero label code of a candidate's voxels in ``mask`` (0 when none is labelled)."""
    box, inside = candidates.voxels(lesion)
    codes = mask[box][inside]
    codes = codes[codes != BACKGROUND]
    if codes.size == 0:
        return BACKGROUND
    return int(majority_artery(np.bincount(codes, minlength=len(ARTERY_NAMES) + 1)))


def set_lesion(mask: np.ndarray, candidates: Candidates, lesion: int, code: int) -> None:
    """Set every voxel of candidate ``lesion`` to label ``code`` in place."""
    if code != BACKGROUND and code not in ARTERY_NAMES:
        raise InvalidInputError(f"label code {code!r} is not a calcium label (0-5)")
    box, inside = candidates.voxels(lesion)
    mask[box][inside] = code


@dataclass(frozen=True)
class EditRecord:
    """The part of an audit row needed to replay it.

    ``voxels`` (trims only): the slice ``z`` and the flat ``y * X + x``
    indices, inside that slice, of the candidate's voxels set to ``after``.
    """

    id: int
    action: str
    lesion: int
    after: int
    undoes: int | None = None
    voxels: tuple[int, tuple[int, ...]] | None = None


def active_edits(edits: Sequence[EditRecord]) -> list[EditRecord]:
    """Edits in effect: every non-undo row not cancelled by a later undo row, in order."""
    undone = {edit.undoes for edit in edits if edit.action == "undo"}
    return [edit for edit in edits if edit.action != "undo" and edit.id not in undone]


def replay(auto_mask: np.ndarray, candidates: Candidates, edits: Sequence[EditRecord]) -> np.ndarray:
    """The edited mask: a copy of ``auto_mask`` with the active edits applied in order.

    ``add`` and ``remove`` set every voxel of the candidate; ``reassign``
    relabels only the voxels counted now (a trimmed part stays out); ``trim``
    sets the voxels it lists.
    """
    mask = np.array(auto_mask, dtype=np.uint8, copy=True)
    for edit in active_edits(edits):
        if edit.action == "trim" and edit.voxels is not None:
            z, flat = edit.voxels
            ys, xs = np.divmod(np.asarray(flat, dtype=np.int64), mask.shape[2])
            inside = candidates.labels[z, ys, xs] == edit.lesion  # a trim never reaches beyond its lesion
            mask[z, ys[inside], xs[inside]] = edit.after
        elif edit.action == "reassign":
            box, inside = candidates.voxels(edit.lesion)
            region = mask[box]
            region[inside & (region != BACKGROUND)] = edit.after
        else:
            set_lesion(mask, candidates, edit.lesion, edit.after)
    return mask


def trim_voxels(
    mask: np.ndarray,
    candidates: Candidates,
    lesion: int,
    z: int,
    center_yx: tuple[float, float],
    radius_px: float,
    *,
    erase: bool,
) -> np.ndarray:
    """Flat in-slice indices (``y * X + x``) of lesion ``lesion``'s voxels on slice ``z`` under a round brush.

    Parameters
    ----------
    mask : (Z, Y, X) ndarray of uint8
        The edited mask now.
    candidates : Candidates
        The study's candidates.
    lesion : int
        Candidate id; only its voxels are touched.
    z : int
        Slice index.
    center_yx : tuple of 2 float
        Brush centre (row, column) in pixels.
    radius_px : float
        Brush radius in pixels: voxels whose centre lies within it are taken.
    erase : bool
        True: the counted voxels (to take out); False: the uncounted ones (to paint back).

    Returns
    -------
    ndarray of int64
        Sorted flat indices; empty when the brush misses.
    """
    box = candidates.boxes[lesion - 1]
    rows = np.arange(box[1].start, box[1].stop)[:, None]
    cols = np.arange(box[2].start, box[2].stop)[None, :]
    circle = (rows - center_yx[0]) ** 2 + (cols - center_yx[1]) ** 2 <= radius_px**2
    ours = candidates.labels[z, box[1], box[2]] == lesion
    counted = mask[z, box[1], box[2]] != BACKGROUND
    chosen = circle & ours & (counted if erase else ~counted)
    ys, xs = np.nonzero(chosen)
    return np.sort((ys + box[1].start) * mask.shape[2] + (xs + box[2].start)).astype(np.int64)


def reader_voxels(mask: np.ndarray, auto_mask: np.ndarray, candidates: Candidates) -> np.ndarray:
    """The counted voxels of every lesion the reader added or changed: what a DICOM SEG marks ``MANUAL``.

    A candidate whose labels differ anywhere between ``mask`` and ``auto_mask`` (added, removed,
    reassigned or trimmed) is the reader's as a whole; voxels outside every candidate are never edited.

    Parameters
    ----------
    mask, auto_mask : (Z, Y, X) ndarray of uint8
        The edited and the automatic label masks.
    candidates : Candidates
        The study's candidates.

    Returns
    -------
    (Z, Y, X) ndarray of bool
        True on the counted voxels (``mask`` non-zero) of the changed candidates.

    Examples
    --------
    >>> hu = np.zeros((1, 4, 6), np.int16); hu[0, :2, :2] = 300; hu[0, :2, 4:] = 300
    >>> volume = CTVolume(hu, (3.0, 1.0, 1.0)); found = find_candidates(volume)
    >>> auto = np.zeros(hu.shape, np.uint8); auto[0, :2, :2] = 3
    >>> edited = auto.copy(); edited[0, :2, 4:] = 5
    >>> int(reader_voxels(edited, auto, found).sum())
    4
    """
    changed = np.unique(candidates.labels[np.asarray(mask) != np.asarray(auto_mask)])
    changed = changed[changed != 0]
    return np.isin(candidates.labels, changed) & (np.asarray(mask) != BACKGROUND)


def classify_edit(before: int, after: int) -> str:
    """Audit action name of changing a lesion's label from ``before`` to ``after``."""
    if after == BACKGROUND:
        return "remove"
    return "add" if before == BACKGROUND else "reassign"


def artery_code(artery: str | None) -> int:
    """Label code of an artery name; None (or ``"none"``) means not counted (0).

    Raises
    ------
    InvalidInputError
        For an unknown name.
    """
    if artery is None or artery == "none":
        return BACKGROUND
    if artery not in ARTERY_CODES:
        raise InvalidInputError(f"artery {artery!r} is not one of {', '.join(ARTERY_CODES)} or none")
    return ARTERY_CODES[artery]


def rescore(volume: CTVolume, mask: np.ndarray) -> tuple[ScoreResult, np.ndarray]:
    """Score the (edited) mask with :func:`cacscore.scoring.score_volume`; also its lesion map."""
    return score_volume(volume, mask, return_lesion_map=True)


def candidate_confidence(
    candidates: Candidates, auto: np.ndarray, confidence: np.ndarray | None
) -> dict[int, float]:
    """Maximum model confidence over the automatically labelled voxels of each candidate."""
    if confidence is None:
        return {}
    result: dict[int, float] = {}
    for lesion in np.unique(candidates.labels[auto != BACKGROUND]):
        if lesion == 0:
            continue
        box, inside = candidates.voxels(int(lesion))
        values = confidence[box][inside & (auto[box] != BACKGROUND)]
        if values.size:
            result[int(lesion)] = round(float(values.max()), 3)
    return result


def lesion_table(
    candidates: Candidates,
    mask: np.ndarray,
    auto_mask: np.ndarray,
    result: ScoreResult,
    lesion_map: np.ndarray,
    confidence: dict[int, float],
) -> list[dict[str, Any]]:
    """One row per candidate that is labelled now or was labelled automatically.

    ``agatston``, ``volume_mm3`` and ``mass_mg`` are the candidate's share of
    ``result`` (sums of the scoring lesions inside it). ``key_slice`` is the
    slice where it has most voxels (where the viewer jumps to) and
    ``center_yx`` its centre (row, column) on that slice.
    """
    owner = _lesion_owners(candidates, lesion_map, result)
    shares: dict[int, list[float]] = {}
    peaks: dict[int, float] = {}
    for item in result.lesions:
        cand = owner[item.id]
        share = shares.setdefault(cand, [0.0, 0.0, 0.0])
        share[0] += item.agatston
        share[1] += item.volume_mm3
        share[2] += item.mass_mg
        peaks[cand] = max(peaks.get(cand, -np.inf), item.peak_hu)
    touched = np.union1d(candidates.labels[mask != BACKGROUND], candidates.labels[auto_mask != BACKGROUND])
    rows = []
    for lesion in (int(v) for v in touched if v != 0):
        box, inside = candidates.voxels(lesion)
        per_slice = inside.sum(axis=(1, 2))
        key = int(np.argmax(per_slice))
        rows_, cols_ = np.nonzero(inside[key])
        now = lesion_label(mask, candidates, lesion)
        auto = lesion_label(auto_mask, candidates, lesion)
        agatston, volume, mass = shares.get(lesion, [0.0, 0.0, 0.0])
        rows.append(
            {
                "id": lesion,
                "artery": ARTERY_NAMES.get(now),
                "auto_artery": ARTERY_NAMES.get(auto),
                "confidence": confidence.get(lesion),
                "agatston": agatston,
                "volume_mm3": volume,
                "mass_mg": mass,
                "peak_hu": peaks.get(lesion),
                "slices": [box[0].start, box[0].stop - 1],
                "key_slice": box[0].start + key,
                "center_yx": [
                    round(box[1].start + float(rows_.mean()), 1),
                    round(box[2].start + float(cols_.mean()), 1),
                ],
                "n_voxels": int(inside.sum()),
            }
        )
    return rows


#: Largest candidate listed for review, mm^3: bigger ones are bone or valve, never one coronary lesion.
MAX_LISTED_VOLUME_MM3 = 3000.0
#: Most candidates listed (the image still shows and accepts every one).
MAX_LISTED_CANDIDATES = 500

#: Plausibility limits of one coronary calcium candidate. A candidate beyond any of them is listed last,
#: marked, and counting it needs the reader's confirmation (it is still allowed: heavy calcification
#: exists). Volume: large coronary plaques measure tens to a few hundred mm^3; ribs, vertebrae and
#: valve rings measure thousands. Extent: a coronary segment seen in one connected calcification is
#: rarely longer than 40 mm, a rib or the sternum is. Distance: the coronary tree spans about 100 mm,
#: so a candidate whose centre lies further than 80 mm from every automatically counted lesion is
#: outside it (checked only when the automatic result counts something).
PLAUSIBLE_VOLUME_MM3 = 500.0
PLAUSIBLE_EXTENT_MM = 40.0
PLAUSIBLE_DISTANCE_MM = 80.0


#: A region mask (heart region, bone) cut to a bounding box of the source grid: ``(Z, Y, X)`` bool.
BoxMask = Callable[[tuple[slice, slice, slice]], np.ndarray]


def plausibility_warnings(
    volume: CTVolume,
    candidates: Candidates,
    auto_mask: np.ndarray,
    *,
    heart: BoxMask | None = None,
    bone: BoxMask | None = None,
) -> dict[int, list[str]]:
    """Why each implausible candidate is unlikely to be coronary calcium (plausible ones are absent).

    Parameters
    ----------
    volume : CTVolume
        The scan (spacing in mm).
    candidates : Candidates
        Its candidate components.
    auto_mask : (Z, Y, X) ndarray of uint8
        The automatic result: counted candidates define where the coronary tree is.
    heart, bone : callable, optional
        The heart region and the bone mask of :mod:`cacscore.anatomy`, cut to a box: a candidate
        with most of its voxels outside the heart region, or in bone, is marked.

    Returns
    -------
    dict of int to list of str
        Candidate id -> readable reasons, checked against :data:`PLAUSIBLE_VOLUME_MM3`,
        :data:`PLAUSIBLE_EXTENT_MM` and :data:`PLAUSIBLE_DISTANCE_MM`.
    """
    if candidates.n == 0:
        return {}
    spacing = np.asarray(volume.spacing, dtype=float)
    voxel_mm3 = float(np.prod(spacing))
    counts = np.bincount(candidates.labels.ravel(), minlength=candidates.n + 1)
    ids = np.arange(1, candidates.n + 1)
    # Bounding-box centres: exact enough against an 80 mm limit, and no volume-sized temporary arrays.
    centres = np.array(
        [[(sl.start + sl.stop - 1) / 2 for sl in box] for box in candidates.boxes], dtype=float
    )
    centres_mm = centres.reshape(-1, 3) * spacing
    counted = np.unique(candidates.labels[auto_mask != BACKGROUND])
    counted = counted[counted != 0]
    reasons: dict[int, list[str]] = {}
    for lesion in (int(v) for v in ids):
        box = candidates.boxes[lesion - 1]
        extent_mm = max((sl.stop - sl.start) * step for sl, step in zip(box, spacing, strict=True))
        volume_mm3 = float(counts[lesion]) * voxel_mm3
        found: list[str] = []
        if volume_mm3 > PLAUSIBLE_VOLUME_MM3:
            found.append(
                f"volume {volume_mm3:.0f} mm³ is above {PLAUSIBLE_VOLUME_MM3:.0f} mm³ (bone or valve?)"
            )
        if extent_mm > PLAUSIBLE_EXTENT_MM:
            found.append(
                f"{extent_mm:.0f} mm long, more than {PLAUSIBLE_EXTENT_MM:.0f} mm (rib, sternum, spine?)"
            )
        others = counted[counted != lesion]
        if others.size:
            distance = float(np.min(np.linalg.norm(centres_mm[others - 1] - centres_mm[lesion - 1], axis=1)))
            if distance > PLAUSIBLE_DISTANCE_MM:
                found.append(
                    f"{distance:.0f} mm from the nearest automatically counted lesion, more than "
                    f"{PLAUSIBLE_DISTANCE_MM:.0f} mm (outside the coronary tree?)"
                )
        _, inside = candidates.voxels(lesion)
        if heart is not None and float(np.mean(~heart(box)[inside])) > 0.5:
            found.append("outside the heart region (anatomy: mediastinum between the lungs)")
        if bone is not None and float(np.mean(bone(box)[inside])) > 0.5:
            found.append("in bone (anatomy: rib, sternum or vertebra)")
        if found:
            reasons[lesion] = found
    return reasons


def candidate_table(
    volume: CTVolume, candidates: Candidates, warnings_of: dict[int, list[str]] | None = None
) -> list[dict[str, Any]]:
    """Each candidate as if it were counted: its Agatston share, volume, peak HU and where to find it.

    Candidates above :data:`MAX_LISTED_VOLUME_MM3` are left out and at most
    :data:`MAX_LISTED_CANDIDATES` are returned: plausible ones first, then
    those with ``warnings`` (from ``warnings_of``, see :func:`plausibility_warnings`),
    each group by highest Agatston share.
    """
    warnings_of = warnings_of or {}
    everything = (candidates.labels > 0).astype(np.uint8)
    result, lesion_map = rescore(volume, everything)
    rows = lesion_table(candidates, everything, np.zeros_like(everything), result, lesion_map, {})
    keys = ("id", "agatston", "volume_mm3", "peak_hu", "slices", "key_slice", "center_yx")
    listed = [
        {**{key: row[key] for key in keys}, "warnings": warnings_of.get(row["id"], [])}
        for row in rows
        if row["volume_mm3"] <= MAX_LISTED_VOLUME_MM3
    ]
    ordered = sorted(listed, key=lambda row: (bool(row["warnings"]), -row["agatston"], row["id"]))
    return ordered[:MAX_LISTED_CANDIDATES]


def _lesion_owners(candidates: Candidates, lesion_map: np.ndarray, result: ScoreResult) -> dict[int, int]:
    """Candidate id holding each scoring lesion (scored voxels always lie inside candidates)."""
    flat = np.flatnonzero(lesion_map)
    owners: dict[int, int] = {}
    if flat.size:
        pairs = np.unique(np.stack([lesion_map.ravel()[flat], candidates.labels.ravel()[flat]], 1), axis=0)
        owners = {int(a): int(b) for a, b in pairs}
    missing = [item.id for item in result.lesions if item.id not in owners]
    if missing:
        raise InvalidInputError(
            f"scoring lesions {missing} lie outside every candidate; candidates are stale"
        )
    return owners


def key_slices(lesions: Iterable[dict[str, Any]], limit: int) -> list[int]:
    """Up to ``limit`` slices to illustrate a report: the key slices of the highest-scoring counted lesions.

    The best slice of each artery's highest-scoring lesion first, then those of
    the next highest lesions; returned in slice order.
    """
    counted = sorted((row for row in lesions if row["artery"]), key=lambda row: -row["agatston"])
    chosen: list[int] = []
    seen_arteries: set[str] = set()
    for row in counted:
        if row["artery"] not in seen_arteries and row["key_slice"] not in chosen:
            chosen.append(row["key_slice"])
            seen_arteries.add(row["artery"])
    for row in counted:
        if len(chosen) >= limit:
            break
        if row["key_slice"] not in chosen:
            chosen.append(row["key_slice"])
    return sorted(chosen[:limit])


def window(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """Map HU to grey levels 0-255 (uint8) with a window ``width`` and ``level`` in HU."""
    low = level - width / 2.0
    scaled = (hu.astype(np.float32) - low) * (255.0 / max(width, 1.0))
    return np.clip(scaled, 0, 255).astype(np.uint8)
