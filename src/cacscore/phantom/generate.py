"""One synthetic calcium-scoring CT case: anatomy, coronaries, calcium, imaging, ground truth.

:func:`generate_case` is pure and deterministic: the same seed and
configuration give the same arrays. The ground truth is taken from the
rendered image (voxels >= 130 HU in the components reached from each true
calcification), so lesions lost to partial volume or noise are absent from
the reference, as they would be for a reader.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from cacscore import labels
from cacscore.errors import InvalidInputError
from cacscore.io.volume import CTVolume
from cacscore.phantom.anatomy import Anatomy, render_anatomy, sample_anatomy
from cacscore.phantom.calcium import (
    DISTRACTOR_KINDS,
    LESION_POSITION_BETA,
    CalciumObject,
    estimate_agatston,
    pick_artery,
    sample_distractors,
    sample_lesion,
    too_close,
)
from cacscore.phantom.coronary import Artery, build_coronary_tree, render_coronaries
from cacscore.phantom.imaging import (
    SCANNERS,
    blur_inplane,
    metal_streaks,
    reconstruction_circle,
    white_noise_sd_for,
)
from cacscore.phantom.render import Box, Grid
from cacscore.scoring import ScoreResult, score_calcium
from cacscore.scoring.conventions import (
    AGATSTON_THRESHOLD_HU,
    FULL_26,
    RISK_CATEGORIES,
    risk_category,
    risk_category_bounds,
)

#: Version of the generator written into every case; bump when the same seed gives other images.
GENERATOR_VERSION = "1.3"
CATEGORIES = RISK_CATEGORIES
#: Target Agatston ranges drawn (log-uniform) for each category when a category is asked for.
TARGET_RANGES: dict[str, tuple[float, float]] = dict(
    zip(RISK_CATEGORIES, ((0.0, 0.0), (1.5, 9.0), (14.0, 90.0), (115.0, 380.0), (430.0, 1600.0)), strict=True)
)
#: Rounds of render -> score -> add/drop lesions before giving up on a target category.
_MAX_ROUNDS = 14


@dataclass(frozen=True)
class PhantomConfig:
    """Settings of the phantom generator (defaults: a realistic 512 x 512 calcium-scoring series).

    Parameters
    ----------
    matrix : int
        Rows and columns of every slice.
    pixel_spacing_mm : tuple of 2 float
        Range of the in-plane pixel size, mm (FOV = matrix x pixel size).
    slice_options : tuple of (thickness_mm, increment_mm, weight)
        Reconstructions to draw from; increment < thickness is an
        overlapping reconstruction.
    n_slices : tuple of 2 int
        Fewest and most slices.
    blur_fwhm_mm : tuple of 2 float
        Range of the in-plane reconstruction blur, FWHM mm.
    noise_sd_hu : tuple of 2 float
        Image noise range, HU; a case's noise rises with its body size.
    motion_probability : float
        Probability of residual cardiac motion: coronary calcium smeared in-plane by 0.4-1.4 mm
        (RCA fully, LCX 70 %, LAD 50 %, LM 20 %).
    zero_fraction : float
        Probability of a patient without coronary calcium (natural mode).
    mean_lesions : float
        Mean lesion count of calcified patients (natural mode; heavy tailed).
    distractor_probabilities : dict of str to float
        Probability of each distractor kind per patient.
    lesion_position_beta : tuple of 2 float
        Beta(a, b) of a lesion's position along its artery, as a fraction of the length from
        the ostium. The default is biased proximally, as calcium is; a training cohort may
        use e.g. (1.0, 1.5) for more distal lesions than patients have.
    manufacturers : tuple of str
        Vendors to draw from (keys of :data:`cacscore.phantom.imaging.SCANNERS`).
    """

    matrix: int = 512
    pixel_spacing_mm: tuple[float, float] = (0.35, 0.5)
    slice_options: tuple[tuple[float, float, float], ...] = (
        (2.5, 2.5, 0.4),
        (3.0, 3.0, 0.4),
        (3.0, 1.5, 0.2),
    )
    n_slices: tuple[int, int] = (40, 70)
    blur_fwhm_mm: tuple[float, float] = (0.6, 1.0)
    noise_sd_hu: tuple[float, float] = (12.0, 35.0)
    motion_probability: float = 0.25
    zero_fraction: float = 0.35
    mean_lesions: float = 5.0
    distractor_probabilities: dict[str, float] = field(
        default_factory=lambda: {
            "aortic_valve": 0.35,
            "aortic_root": 0.3,
            "mitral_annulus": 0.3,
            "aortic_wall": 0.4,
            "sternal_wire": 0.07,
        }
    )
    manufacturers: tuple[str, ...] = tuple(SCANNERS)
    lesion_position_beta: tuple[float, float] = LESION_POSITION_BETA

    def __post_init__(self) -> None:
        if not 32 <= self.matrix <= 1024:
            raise InvalidInputError(f"matrix must be 32-1024 pixels, got {self.matrix}")
        _check_range("pixel_spacing_mm", self.pixel_spacing_mm, zero_allowed=False)
        _check_range("blur_fwhm_mm", self.blur_fwhm_mm, zero_allowed=False)
        _check_range("noise_sd_hu", self.noise_sd_hu, zero_allowed=True)
        if not self.slice_options or any(t <= 0 or inc <= 0 or w < 0 for t, inc, w in self.slice_options):
            raise InvalidInputError(
                f"slice_options needs (thickness, increment, weight) > 0, got {self.slice_options}"
            )
        for name in ("motion_probability", "zero_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidInputError(f"{name} must be 0-1, got {getattr(self, name)}")
        if not (math.isfinite(self.mean_lesions) and self.mean_lesions > 0):
            raise InvalidInputError(f"mean_lesions must be > 0, got {self.mean_lesions}")
        if not 1 <= self.n_slices[0] <= self.n_slices[1]:
            raise InvalidInputError(
                f"n_slices must be (low, high) with 1 <= low <= high, got {self.n_slices}"
            )
        unknown = set(self.distractor_probabilities) - set(DISTRACTOR_KINDS)
        if unknown:
            raise InvalidInputError(
                f"unknown distractor kinds {sorted(unknown)}; use {list(DISTRACTOR_KINDS)}"
            )
        bad_p = {k: p for k, p in self.distractor_probabilities.items() if not 0.0 <= p <= 1.0}
        if bad_p:
            raise InvalidInputError(f"distractor_probabilities must be 0-1, got {bad_p}")
        if len(self.lesion_position_beta) != 2 or not all(
            math.isfinite(v) and v > 0 for v in self.lesion_position_beta
        ):
            raise InvalidInputError(
                f"lesion_position_beta must be (a, b) with a, b > 0, got {self.lesion_position_beta}"
            )
        bad = [m for m in self.manufacturers if m not in SCANNERS]
        if bad or not self.manufacturers:
            raise InvalidInputError(
                f"manufacturers must be among {list(SCANNERS)}, got {list(self.manufacturers)}"
            )

    @classmethod
    def reduced(cls) -> PhantomConfig:
        """A small, fast configuration for tests: 128 x 128 pixels of 1.5-1.9 mm, 16-24 slices."""
        return cls(matrix=128, pixel_spacing_mm=(1.5, 1.9), n_slices=(16, 24))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        out = asdict(self)
        out["pixel_spacing_mm"] = list(self.pixel_spacing_mm)
        out["slice_options"] = [list(o) for o in self.slice_options]
        out["n_slices"] = list(self.n_slices)
        out["blur_fwhm_mm"] = list(self.blur_fwhm_mm)
        out["noise_sd_hu"] = list(self.noise_sd_hu)
        out["manufacturers"] = list(self.manufacturers)
        out["lesion_position_beta"] = list(self.lesion_position_beta)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhantomConfig:
        """Rebuild a configuration written by :meth:`to_dict`."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise InvalidInputError(f"unknown phantom configuration keys {sorted(unknown)}")
        kw: dict[str, Any] = dict(data)
        for key in (
            "pixel_spacing_mm",
            "n_slices",
            "blur_fwhm_mm",
            "noise_sd_hu",
            "manufacturers",
            "lesion_position_beta",
        ):
            if key in kw:
                kw[key] = tuple(kw[key])
        if "slice_options" in kw:
            kw["slice_options"] = tuple(tuple(o) for o in kw["slice_options"])
        return cls(**kw)


@dataclass
class PhantomCase:
    """One generated case.

    Attributes
    ----------
    volume : CTVolume
        The rendered series: int16 HU ``(Z, Y, X)``, geometry, 120 kVp, slice thickness, vendor.
    label : (Z, Y, X) ndarray of uint8
        Reference mask in the project's codes (2 LM, 3 LAD, 4 LCX, 5 RCA).
    points : list of (x_mm, y_mm, z_mm, artery)
        One LPS position per calcification that survived rendering (its peak voxel).
    truth : dict
        Ideal lesions (all, with ``survived``), distractors and the case's drawn parameters.
    reference : ScoreResult
        Scores of the rendered image with ``label``.
    distractor_mask : (Z, Y, X) ndarray of bool
        Voxels covered by a distractor object (for checks; not written to disk).
    seed : int
        The seed the case was generated from.
    timings_s : dict of str to float
        Wall time of each generation stage, s (for benchmarks; not part of the truth).
    """

    volume: CTVolume
    label: np.ndarray
    points: list[tuple[float, float, float, str]]
    truth: dict[str, Any]
    reference: ScoreResult
    distractor_mask: np.ndarray
    seed: int
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def distractor_kinds(self) -> list[str]:
        """Distractor kinds present, in :data:`DISTRACTOR_KINDS` order."""
        present = {d["type"] for d in self.truth["distractors"]}
        return [k for k in DISTRACTOR_KINDS if k in present]


#: How much of the cardiac motion each artery shows (the RCA moves most, the LM least).
MOTION_SHARE = {"LM": 0.2, "LAD": 0.5, "LCX": 0.7, "RCA": 1.0}


@dataclass(frozen=True)
class _Motion:
    """Residual cardiac motion of one case: an in-plane smear of the coronary calcium, mm and degrees."""

    amplitude_mm: float
    angle_deg: float
    pixel_mm: float

    @classmethod
    def sample(cls, rng: np.random.Generator, probability: float, pixel_mm: float) -> _Motion:
        moving = rng.random() < probability
        amplitude, angle = float(rng.uniform(0.4, 1.4)), float(rng.uniform(0, 180))
        return cls(amplitude if moving else 0.0, angle if moving else 0.0, pixel_mm)

    def sigma_px(self, artery: str | None, kernel_sigma_px: float) -> tuple[float, float]:
        """Blur of a lesion on ``artery``: the kernel's and the motion's, combined per axis (y, x), pixels."""
        share = MOTION_SHARE.get(artery or "", 0.0) * self.amplitude_mm / self.pixel_mm
        rad = np.deg2rad(self.angle_deg)
        return (
            float(np.hypot(kernel_sigma_px, share * abs(np.sin(rad)))),
            float(np.hypot(kernel_sigma_px, share * abs(np.cos(rad)))),
        )


@dataclass
class _Rendered:
    """A lesion drawn into the image: its box, supersampled occupancy and blurred HU contribution."""

    obj: CalciumObject
    box: Box
    occ: np.ndarray
    contribution: np.ndarray


def _check_range(name: str, pair: tuple[float, ...], *, zero_allowed: bool) -> None:
    """Raise unless ``pair`` is (low, high) of finite numbers with low <= high and low > 0 (or >= 0)."""
    ok = (
        len(pair) == 2
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in pair)
        and (pair[0] >= 0 if zero_allowed else pair[0] > 0)
        and pair[0] <= pair[1]
    )
    if not ok:
        bound = "0 <= low" if zero_allowed else "0 < low"
        raise InvalidInputError(f"{name} must be (low, high) with {bound} <= high, got {tuple(pair)}")


def _uid(seed: int, kind: str) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[f"cacscore-phantom-{GENERATOR_VERSION}", str(seed), kind]))


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _grid(rng: np.random.Generator, config: PhantomConfig, anatomy: Anatomy) -> Grid:
    px = round(float(rng.uniform(*config.pixel_spacing_mm)), 4)
    weights = np.array([w for _, _, w in config.slice_options], dtype=float)
    choice = config.slice_options[int(rng.choice(len(weights), p=weights / weights.sum()))]
    thickness, increment = float(choice[0]), float(choice[1])
    top = anatomy.top_z_mm + rng.uniform(5, 20)
    bottom = anatomy.apex_z_mm - rng.uniform(5, 25)
    n = int(np.clip(round((top - bottom) / increment) + 1, *config.n_slices))
    z0 = round((top - (n - 1) * increment) * 4) / 4
    center = anatomy.heart_center[:2] + rng.uniform(-10, 10, 2)
    half = (config.matrix - 1) / 2 * px
    return Grid(
        (n, config.matrix, config.matrix),
        (increment, px, px),
        (round(center[0] - half, 3), round(center[1] - half, 3), z0),
        thickness,
    )


def _draw_lesion(
    rng: np.random.Generator,
    arteries: list[Artery],
    lesions: list[CalciumObject],
    distractors: list[CalciumObject],
    position_beta: tuple[float, float],
    **kwargs: float,
) -> CalciumObject | None:
    """A lesion clear of the distractors (3 mm, so labels never touch them) and of the other lesions."""
    for _ in range(16):
        lesion = sample_lesion(rng, pick_artery(rng, arteries), position_beta=position_beta, **kwargs)  # type: ignore[arg-type]
        if not too_close(lesion, distractors, gap_mm=3.0) and not too_close(lesion, lesions, gap_mm=0.5):
            return lesion
    return None


def _natural_lesions(
    rng: np.random.Generator, config: PhantomConfig, arteries: list[Artery], distractors: list[CalciumObject]
) -> list[CalciumObject]:
    """Zero-inflated, heavy-tailed lesions for an untargeted case.

    A patient-level burden (log-normal) scales both the lesion count (1 + negative binomial with
    mean ``config.mean_lesions - 1`` at burden 1) and the lesion size, as plaque burden does.
    """
    if rng.random() < config.zero_fraction:
        return []
    burden = float(rng.lognormal(0.0, 0.8))
    mean = max((config.mean_lesions - 1) * burden, 0.1)
    count = 1 + int(rng.negative_binomial(0.6, 0.6 / (0.6 + mean)))
    lesions: list[CalciumObject] = []
    for _ in range(min(count, 60)):
        size = float(np.clip(rng.lognormal(np.log(2.6 * burden**0.4), 0.6), 0.5, 10.0))
        lesion = _draw_lesion(rng, arteries, lesions, distractors, config.lesion_position_beta, size_mm=size)
        if lesion is not None:
            lesions.append(lesion)
    return lesions


def _lesions_for(
    rng: np.random.Generator,
    target: float,
    arteries: list[Artery],
    distractors: list[CalciumObject],
    existing: list[CalciumObject],
    position_beta: tuple[float, float],
    *,
    min_size_mm: float = 0.6,
) -> list[CalciumObject]:
    """New lesions, besides ``existing``, whose estimated Agatston adds up to about ``target``."""
    lesions: list[CalciumObject] = []
    need = target
    while need > 0.3 and len(lesions) < 60:
        # Of a few candidates, keep the one whose estimate fits the remaining need best.
        best: CalciumObject | None = None
        typical = max(1.5, min(2.0 * need ** (1 / 3), 8.0))
        for _ in range(6):
            size = float(np.clip(rng.lognormal(np.log(typical), 0.35), min_size_mm, 10.0))
            cand = _draw_lesion(rng, arteries, existing + lesions, distractors, position_beta, size_mm=size)
            if cand is None:
                continue
            if best is None or abs(estimate_agatston(cand) - need) < abs(estimate_agatston(best) - need):
                best = cand
        if best is None:
            break
        lesions.append(best)
        need -= estimate_agatston(best)
    return lesions


def _render_lesion(
    obj: CalciumObject, grid: Grid, base: np.ndarray, sigma_yx_px: tuple[float, float]
) -> _Rendered | None:
    """Draw one lesion (z partial volume) and blur its HU change with ``sigma_yx_px`` (kernel and motion)."""
    margin = 3.0 * max(sigma_yx_px) * grid.spacing[2] + 1.5
    found = obj.occupancy(grid, margin)
    if found is None:
        return None
    box, occ = found
    delta = occ * (np.float32(obj.density_hu) - base[box])
    return _Rendered(obj, box, occ, blur_inplane(delta, sigma_yx_px))


def _compose(
    background: np.ndarray, rendered: list[_Rendered], outside: np.ndarray, outside_hu: int
) -> np.ndarray:
    image = background.copy()
    for r in rendered:
        image[r.box] += r.contribution
    hu = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
    hu[:, outside] = outside_hu
    return hu


def _reference_label(
    hu: np.ndarray, rendered: list[_Rendered], forbidden: np.ndarray, grow_px: int
) -> tuple[np.ndarray, list[tuple[int, int, int] | None]]:
    """Label the >= 130 HU components reached from each lesion; return the label and each lesion's peak voxel."""
    label = np.zeros(hu.shape, dtype=np.uint8)
    peaks: list[tuple[int, int, int] | None] = []
    structure = FULL_26
    grow = np.zeros((3, 2 * grow_px + 1, 2 * grow_px + 1), dtype=bool)
    grow[1] = True
    grow[0, grow_px, grow_px] = grow[2, grow_px, grow_px] = True
    for r in rendered:
        support = ndimage.binary_dilation(r.occ > 0.01, structure=grow)
        bright = (hu[r.box] >= AGATSTON_THRESHOLD_HU) & support & ~forbidden[r.box]
        comps, n = ndimage.label(bright, structure=structure)
        if n == 0:
            peaks.append(None)
            continue
        touched = np.unique(comps[(r.occ > 0.0) & bright])
        # A voxel already claimed by a neighbouring lesion keeps its artery (and that lesion its point).
        keep = np.isin(comps, touched[touched > 0]) & (label[r.box] == 0)
        if not keep.any():
            peaks.append(None)
            continue
        code = labels.ARTERY_CODES[r.obj.artery or "unspecified"]
        label[r.box][keep] = code
        values = np.where(keep, hu[r.box], np.iinfo(np.int16).min)
        local = np.unravel_index(int(np.argmax(values)), values.shape)
        zs, ys, xs = r.box
        peaks.append((int(local[0]) + zs.start, int(local[1]) + ys.start, int(local[2]) + xs.start))
    return label, peaks


def _unmarked_pieces(
    label: np.ndarray, hu: np.ndarray, marked: list[tuple[int, int, int]]
) -> list[tuple[tuple[int, int, int], int]]:
    """Peak voxel and artery code of each 26-connected piece of ``label`` that holds none of ``marked``.

    A rendered lesion can break into separate pieces above 130 HU (noise, motion smear). An annotator
    marks every calcification they see, so each piece needs its own point, or masks rebuilt from the
    points (``cacscore annotations to-mask``) would miss it.
    """
    pieces, n = ndimage.label(label > 0, structure=FULL_26)
    if n == 0:
        return []
    has_point = np.zeros(n + 1, dtype=bool)
    for zyx in marked:
        has_point[pieces[zyx]] = True
    missing = np.flatnonzero(~has_point[1:]) + 1
    if missing.size == 0:
        return []
    peaks = ndimage.maximum_position(hu, pieces, missing)
    return [(tuple(int(v) for v in zyx), int(label[zyx])) for zyx in peaks]  # type: ignore[misc]


def _adjust(
    rng: np.random.Generator,
    lesions: list[CalciumObject],
    rendered: list[_Rendered],
    peaks: list[tuple[int, int, int] | None],
    score: float,
    category: str,
    goal: float,
    arteries: list[Artery],
    distractors: list[CalciumObject],
    attempt: int,
    position_beta: tuple[float, float],
) -> list[CalciumObject]:
    """One round of moving the reference score towards ``category``: add lesions, or drop one."""
    if score <= risk_category_bounds(category)[0] and category != "A":
        # Too little survived partial volume: keep at most two lost lesions, add larger ones.
        lost = [r.obj for r, p in zip(rendered, peaks, strict=True) if p is None]
        kept = [o for o in lesions if all(o is not x for x in lost[2:])]
        return kept + _lesions_for(
            rng,
            max(goal - score, 1.0),
            arteries,
            distractors,
            kept,
            position_beta,
            min_size_mm=min(2.0 + 0.6 * attempt, 6.0),
        )
    survivors = [r.obj for r, p in zip(rendered, peaks, strict=True) if p is not None]
    if category == "A" or len(survivors) <= 1:
        drop = survivors[0] if survivors else (lesions[0] if lesions else None)
    else:
        drop = min(survivors, key=lambda o: abs(estimate_agatston(o) - (score - goal)))
    kept = [o for o in lesions if o is not drop]
    if category != "A" and not kept:
        return _lesions_for(rng, goal, arteries, distractors, [], position_beta)
    return kept


def _paint_distractors(
    base: np.ndarray, grid: Grid, distractors: list[CalciumObject]
) -> tuple[np.ndarray, list[tuple[int, tuple[float, float]]]]:
    """Draw the distractors into ``base`` (z partial volume).

    Returns the voxels no label may take (each distractor grown by the blur's
    reach, so bloomed distractor voxels are never labelled) and the
    ``(slice, (row, col))`` centres of metal for the streaks.
    """
    forbidden = np.zeros(grid.shape, dtype=bool)
    wire_slices: list[tuple[int, tuple[float, float]]] = []
    grow = np.ones((1, 5, 5), dtype=bool)
    for obj in distractors:
        found = obj.occupancy(grid, 2.0)
        if found is None:
            continue
        box, occ = found
        region = base[box]
        region += occ * (np.float32(obj.density_hu) - region)
        forbidden[box] |= ndimage.binary_dilation(occ > 0.0, structure=grow)
        if obj.kind == "sternal_wire" and occ.max() > 0.05:
            zz = np.nonzero(occ.max(axis=(1, 2)) > 0.05)[0]
            yx = np.argwhere(occ.max(axis=0) > 0).mean(axis=0)
            wire_slices += [(int(z + box[0].start), (yx[0] + box[1].start, yx[1] + box[2].start)) for z in zz]
    return forbidden, wire_slices


def _in_category(score: float, category: str) -> bool:
    return risk_category(score) == category


def generate_case(
    seed: int,
    *,
    config: PhantomConfig | None = None,
    target_category: str | None = None,
) -> PhantomCase:
    """Generate one synthetic non-contrast ECG-gated calcium-scoring CT with its ground truth.

    Parameters
    ----------
    seed : int
        Non-negative seed; the same seed and configuration give identical arrays.
    config : PhantomConfig, optional
        Generator settings; default :class:`PhantomConfig()` (512 x 512, realistic).
    target_category : {"A", "B", "C", "D", "E"}, optional
        Risk category the reference Agatston score must fall into: lesions
        are drawn, rendered, scored and added or removed until it does (a
        few rounds; ``truth["target_met"]`` says if it did). None draws a
        natural, zero-inflated lesion count.

    Returns
    -------
    PhantomCase
        Image, reference label, points, truth and reference score.

    Raises
    ------
    InvalidInputError
        If ``seed`` is negative or not an integer, or ``target_category`` is not A-E.
    """
    seed = _check_seed(seed)
    config = config if config is not None else PhantomConfig()
    if target_category is not None and target_category not in CATEGORIES:
        raise InvalidInputError(
            f"target_category must be one of {list(CATEGORIES)} or None, got {target_category!r}"
        )
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7)]
    rng_anat, rng_grid, rng_cor, rng_calc, rng_noise, rng_les, rng_motion = streams
    clock = _StageClock()
    size = float(rng_anat.beta(2.0, 2.0))
    anatomy = sample_anatomy(rng_anat, size=size)
    grid = _grid(rng_grid, config, anatomy)
    base = render_anatomy(grid, anatomy, rng_anat)
    clock.lap("anatomy")
    arteries = build_coronary_tree(anatomy, rng_cor)
    render_coronaries(base, grid, anatomy, arteries)
    clock.lap("coronaries")

    distractors = sample_distractors(rng_calc, anatomy, arteries, config.distractor_probabilities)
    forbidden, wire_slices = _paint_distractors(base, grid, distractors)
    clock.lap("distractors")
    scanner = config.manufacturers[int(rng_noise.integers(len(config.manufacturers)))]
    fwhm = float(rng_noise.uniform(*config.blur_fwhm_mm))
    sigma_px = fwhm / 2.3548 / grid.spacing[2]
    noise_lo, noise_hi = config.noise_sd_hu
    noise_sd = float(
        np.clip(
            noise_lo + (noise_hi - noise_lo) * (0.15 + 0.75 * size) + rng_noise.normal(0, 2.5),
            noise_lo,
            noise_hi,
        )
    )
    noisy = rng_noise.standard_normal(grid.shape, dtype=np.float32)
    noisy *= np.float32(white_noise_sd_for(noise_sd, (sigma_px, sigma_px)))
    noisy += base
    background = blur_inplane(noisy, (sigma_px, sigma_px))
    del noisy
    for z, (cy, cx) in wire_slices:
        background[z] += metal_streaks(rng_noise, grid.shape[1:], (cy, cx), grid.spacing[2], 350.0)
    outside = ~reconstruction_circle(grid.shape[1:])
    outside_hu = int(SCANNERS[scanner]["outside_hu"])
    motion = _Motion.sample(rng_motion, config.motion_probability, grid.spacing[2])

    clock.lap("blur and noise")
    goal: float | None = None  # target Agatston score
    if target_category is None:
        lesions = _natural_lesions(rng_les, config, arteries, distractors)
    else:
        lo, hi = TARGET_RANGES[target_category]
        goal = 0.0 if hi == 0 else float(np.exp(rng_les.uniform(np.log(lo), np.log(hi))))
        lesions = _lesions_for(rng_les, goal, arteries, distractors, [], config.lesion_position_beta)
        if target_category == "A" and rng_les.random() < 0.3:
            # A faint speck that partial volume hides: category A with a true (unscorable) lesion.
            faint = _draw_lesion(
                rng_les,
                arteries,
                lesions,
                distractors,
                config.lesion_position_beta,
                size_mm=float(rng_les.uniform(0.5, 1.0)),
                density_hu=float(rng_les.uniform(150, 220)),
            )
            lesions += [faint] if faint is not None else []

    # Keyed by the object itself (identity hash), which also keeps dropped lesions alive so ids never clash.
    rendered_cache: dict[CalciumObject, _Rendered | None] = {}

    def render(objs: list[CalciumObject]) -> list[_Rendered]:
        for obj in objs:
            if obj not in rendered_cache:
                rendered_cache[obj] = _render_lesion(obj, grid, base, motion.sigma_px(obj.artery, sigma_px))
        return [r for r in (rendered_cache[o] for o in objs) if r is not None]

    spacing = grid.spacing
    affine = CTVolume(np.zeros((1, 1, 1), np.int16), spacing, origin=grid.origin).affine
    for attempt in range(_MAX_ROUNDS):
        rendered = render(lesions)
        hu = _compose(background, rendered, outside, outside_hu)
        label, peaks = _reference_label(hu, rendered, forbidden, grow_px=max(1, int(np.ceil(2 * sigma_px))))
        reference = score_calcium(hu, spacing, label, kvp=120.0, affine=affine)
        if target_category is None or goal is None or _in_category(reference.agatston, target_category):
            break
        if attempt < _MAX_ROUNDS - 1:
            lesions = _adjust(
                rng_les,
                lesions,
                rendered,
                peaks,
                reference.agatston,
                target_category,
                goal,
                arteries,
                distractors,
                attempt,
                config.lesion_position_beta,
            )
    target_met = target_category is None or _in_category(reference.agatston, target_category)

    clock.lap("calcium, truth and scoring")
    volume = CTVolume(
        hu=hu,
        spacing=spacing,
        origin=grid.origin,
        slice_thickness_mm=grid.thickness_mm,
        kvp=120.0,
        study_uid=_uid(seed, "study"),
        series_uid=_uid(seed, "series"),
        modality="CT",
        manufacturer=scanner,
        patient_id=f"PHANTOM-{seed}",
        series_description=f"CaSc {grid.thickness_mm:g} mm {SCANNERS[scanner]['kernel']}",
    )
    points: list[tuple[float, float, float, str]] = []
    lesion_truth = []
    for r, peak in zip(rendered, peaks, strict=True):
        item = r.obj.to_dict()
        item["survived"] = peak is not None
        if peak is not None:
            xyz = volume.index_to_patient(np.array(peak))[0]
            item["point_mm"] = [round(float(v), 3) for v in xyz]
            points.append((float(xyz[0]), float(xyz[1]), float(xyz[2]), str(r.obj.artery)))
        lesion_truth.append(item)
    for zyx, code in _unmarked_pieces(label, hu, [p for p in peaks if p is not None]):
        xyz = volume.index_to_patient(np.array(zyx))[0]
        points.append((float(xyz[0]), float(xyz[1]), float(xyz[2]), labels.ARTERY_NAMES[code]))
    truth = {
        "schema": "cacscore.phantom-truth/1",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "target_category": target_category,
        "target_agatston": goal,
        "target_met": target_met,
        "lesions": lesion_truth,
        "distractors": [d.to_dict() for d in distractors],
        "bone": ["vertebrae", "ribs", "sternum"]
        + (["calcified costal cartilage"] if anatomy.cartilage_calcified else []),
        "imaging": {
            "manufacturer": scanner,
            "blur_fwhm_mm": round(fwhm, 3),
            "motion_mm": round(motion.amplitude_mm, 3),
            "motion_angle_deg": round(motion.angle_deg, 1),
            "noise_sd_hu": round(noise_sd, 2),
            "slice_thickness_mm": grid.thickness_mm,
            "slice_increment_mm": grid.spacing[0],
            "pixel_spacing_mm": grid.spacing[2],
            "kvp": 120.0,
        },
        "anatomy": {
            "body_size": round(size, 3),
            "body_radii_mm": [round(float(v), 1) for v in anatomy.body_radii],
            "heart_center_mm": [round(float(v), 2) for v in anatomy.heart_center],
            "rotation_deg": round(float(np.rad2deg(anatomy.angle)), 2),
            "arteries": {
                a.name: {
                    "length_mm": round(float(a.arclength[-1]), 1),
                    "proximal_radius_mm": round(float(a.radii[0]), 2),
                }
                for a in arteries
            },
        },
    }
    return PhantomCase(
        volume=volume,
        label=label,
        points=points,
        truth=truth,
        reference=reference,
        distractor_mask=forbidden,
        seed=seed,
        timings_s=clock.laps,
    )


class _StageClock:
    """Wall time per generation stage (``laps``, s)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now
