"""One case of the signed-distance family: anatomy, coronary tree, plaques, distractors, imaging, truth.

:func:`generate_case` is pure and deterministic for a seed and a
configuration. The reference label is read from the *rendered* image: the
voxels >= 130 HU inside each lesion's support (where its blurred occupancy
exceeds 1 %) that are connected to the lesion's core, minus the voxels that
any distractor reaches. The reference scores come from
:func:`cacscore.scoring.score_calcium` on that image and label.
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
from cacscore.phantom_sdf.distractors import (
    DISTRACTOR_PROBABILITIES,
    METAL,
    check_probabilities,
    sample_distractors,
)
from cacscore.phantom_sdf.heart import Branch, build_tree, sample_heart
from cacscore.phantom_sdf.inclusions import Inclusion, Rendered, render
from cacscore.phantom_sdf.plaques import estimate_agatston, make_lesion, sample_lesion
from cacscore.phantom_sdf.scanner import NoiseTexture, SliceGrid, inside_circle, streaks, upsample
from cacscore.phantom_sdf.thorax import Tissues, heart_extent, paint_anatomy, sample_thorax
from cacscore.scoring import ScoreResult, risk_category, score_calcium, thresholds_for
from cacscore.scoring.conventions import FULL_26, RISK_CATEGORIES, risk_category_bounds

#: Name of this generator family (``cacscore phantom --family``).
FAMILY = "sdf"
#: Version written into every case; bump when the same seed gives other images.
GENERATOR_VERSION = "sdf-1.2"
#: Agatston ranges (log-uniform) a balanced case aims at, per risk category.
TARGET_RANGES: dict[str, tuple[float, float]] = dict(
    zip(RISK_CATEGORIES, ((0.0, 0.0), (1.0, 9.5), (12.0, 95.0), (110.0, 390.0), (420.0, 1800.0)), strict=True)
)
#: Scanner vendors of this family: models, reconstruction kernels, value outside the reconstruction circle.
VENDORS: dict[str, dict[str, Any]] = {
    "GE MEDICAL SYSTEMS": {
        "models": ["Revolution Apex", "Discovery CT750 HD"],
        "kernels": ["STANDARD", "SOFT"],
        "outside_hu": -3024,
    },
    "SIEMENS": {
        "models": ["SOMATOM Force", "SOMATOM go.Top"],
        "kernels": ["Sa36f", "Qr36"],
        "outside_hu": -2048,
    },
    "Philips": {
        "models": ["IQon - Spectral CT", "Brilliance iCT"],
        "kernels": ["XCA", "B"],
        "outside_hu": -1024,
    },
    "TOSHIBA": {
        "models": ["Aquilion ONE", "Aquilion Prime"],
        "kernels": ["FC12", "FC03"],
        "outside_hu": -2000,
    },
}
_ROUNDS = 20


@dataclass(frozen=True)
class SdfConfig:
    """Settings of the signed-distance family (defaults: 512 x 512, field of view 180-250 mm).

    Parameters
    ----------
    matrix : int
        Rows and columns (the pixel size is the field of view / matrix).
    fov_mm : tuple of 2 float
        Range of the reconstruction field of view, mm, centred on the heart.
    slice_options : tuple of (thickness_mm, increment_mm, weight)
        Reconstructions to draw from.
    psf_fwhm_mm : tuple of 2 float
        Range of the in-plane point-spread FWHM, mm.
    noise_sd_hu : tuple of 2 float
        Range of the noise SD at the matrix centre, HU.
    zero_fraction : float
        Probability of no coronary calcium when no category is asked for.
    mean_lesions : float
        Mean lesion count of calcified patients when no category is asked for.
    distractor_probabilities : dict of str to float
        Probability per patient of each distractor kind (:data:`DISTRACTOR_PROBABILITIES`).
    streak_probability : float
        Probability that dense calcium (>= 700 HU) casts streaks in a case.
    """

    matrix: int = 512
    fov_mm: tuple[float, float] = (180.0, 250.0)
    slice_options: tuple[tuple[float, float, float], ...] = (
        (2.5, 2.5, 0.45),
        (3.0, 3.0, 0.4),
        (3.0, 2.5, 0.15),
    )
    psf_fwhm_mm: tuple[float, float] = (0.5, 1.0)
    noise_sd_hu: tuple[float, float] = (10.0, 40.0)
    zero_fraction: float = 0.35
    mean_lesions: float = 5.0
    distractor_probabilities: dict[str, float] = field(default_factory=lambda: dict(DISTRACTOR_PROBABILITIES))
    streak_probability: float = 0.5

    def __post_init__(self) -> None:
        if not 32 <= self.matrix <= 1024:
            raise InvalidInputError(f"matrix must be 32-1024 pixels, got {self.matrix}")
        for name, low in (("fov_mm", 50.0), ("psf_fwhm_mm", 0.0), ("noise_sd_hu", 0.0)):
            pair = getattr(self, name)
            if len(pair) != 2 or not all(math.isfinite(v) for v in pair) or not low <= pair[0] <= pair[1]:
                raise InvalidInputError(f"{name} must be (low, high) with {low:g} <= low <= high, got {pair}")
        if not self.slice_options or any(t <= 0 or i <= 0 or w < 0 for t, i, w in self.slice_options):
            raise InvalidInputError(
                f"slice_options needs (thickness, increment, weight) > 0, got {self.slice_options}"
            )
        for name in ("zero_fraction", "streak_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidInputError(f"{name} must be 0-1, got {getattr(self, name)}")
        if not (math.isfinite(self.mean_lesions) and self.mean_lesions > 0):
            raise InvalidInputError(f"mean_lesions must be > 0, got {self.mean_lesions}")
        check_probabilities(self.distractor_probabilities)

    @classmethod
    def reduced(cls) -> SdfConfig:
        """A small, fast configuration for tests: 128 x 128 pixels (1.4-1.95 mm)."""
        return cls(matrix=128)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        out = asdict(self)
        out["fov_mm"] = list(self.fov_mm)
        out["slice_options"] = [list(o) for o in self.slice_options]
        out["psf_fwhm_mm"] = list(self.psf_fwhm_mm)
        out["noise_sd_hu"] = list(self.noise_sd_hu)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SdfConfig:
        """Rebuild a configuration written by :meth:`to_dict`."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidInputError(f"unknown phantom configuration keys {sorted(unknown)}")
        kw: dict[str, Any] = dict(data)
        for key in ("fov_mm", "psf_fwhm_mm", "noise_sd_hu"):
            if key in kw:
                kw[key] = tuple(kw[key])
        if "slice_options" in kw:
            kw["slice_options"] = tuple(tuple(o) for o in kw["slice_options"])
        return cls(**kw)


@dataclass
class SdfCase:
    """One generated case (the same attributes as the classic family's case).

    Attributes
    ----------
    volume : CTVolume
        int16 HU ``(Z, Y, X)`` with geometry, 120 kVp, slice thickness and vendor.
    label : (Z, Y, X) ndarray of uint8
        Reference mask (2 LM, 3 LAD, 4 LCX, 5 RCA).
    points : list of (x_mm, y_mm, z_mm, artery)
        One LPS point per labelled calcification (its peak voxel).
    truth : dict
        Lesions (with ``survived``), distractors, imaging and anatomy parameters.
    reference : ScoreResult
        Scores of the image with ``label``.
    distractor_mask : (Z, Y, X) ndarray of bool
        Voxels a distractor reaches (never labelled).
    seed : int
    timings_s : dict of str to float
        Wall time per stage, s.
    dicom_tags : dict
        Vendor attributes for the DICOM writer (model, kernel, FOV, padding).
    """

    volume: CTVolume
    label: np.ndarray
    points: list[tuple[float, float, float, str]]
    truth: dict[str, Any]
    reference: ScoreResult
    distractor_mask: np.ndarray
    seed: int
    timings_s: dict[str, float] = field(default_factory=dict)
    dicom_tags: dict[str, Any] = field(default_factory=dict)


class _Clock:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(self.laps.get(name, 0.0) + now - self._last, 4)
        self._last = now


def _uid(seed: int, kind: str) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[f"cacscore-phantom-{GENERATOR_VERSION}", str(seed), kind]))


def _grid(
    rng: np.random.Generator, config: SdfConfig, hlo: np.ndarray, hhi: np.ndarray, top_z: float
) -> SliceGrid:
    fov = float(rng.uniform(*config.fov_mm))
    px = round(fov / config.matrix, 4)
    weights = np.array([w for _, _, w in config.slice_options], dtype=float)
    thickness, increment, _ = config.slice_options[int(rng.choice(len(weights), p=weights / weights.sum()))]
    top = top_z + float(rng.uniform(20, 40))  # from about the pulmonary bifurcation
    bottom = float(hlo[2]) - float(rng.uniform(5, 20))
    n = int(round((top - bottom) / increment)) + 1
    centre = (hlo[:2] + hhi[:2]) / 2 + rng.uniform(-8, 8, 2)
    half = (config.matrix - 1) / 2 * px
    origin = (round(float(centre[0] - half), 3), round(float(centre[1] - half), 3), round(bottom * 4) / 4)
    return SliceGrid(
        shape=(n, config.matrix, config.matrix),
        spacing=(float(increment), px, px),
        origin=origin,
        thickness_mm=float(thickness),
        sub=2,
        edge=float(rng.uniform(0.2, 0.8)),
        coarse=2 if px < 0.6 else 1,
    )


def _boxes_touch(a: Inclusion, b: Inclusion, gap_mm: float) -> bool:
    return bool(np.all(a.lo - gap_mm <= b.hi) and np.all(b.lo - gap_mm <= a.hi))


def _clear(parts: list[Inclusion], others: list[Inclusion], distractors: list[Inclusion]) -> bool:
    """True when no part comes within 3 mm of a distractor (8 mm of a stent) or touches another lesion."""
    for p in parts:
        for d in distractors:
            if _boxes_touch(p, d, 8.0 if d.kind == "stent" else 3.0):
                return False
        for o in others:
            if _boxes_touch(p, o, 0.3):
                return False
    return True


class _Lesions:
    """The lesions of a case: sampling, rendering (cached), adjusting towards a target score."""

    def __init__(
        self, rng: np.random.Generator, branches: list[Branch], distractors: list[Inclusion], render_one: Any
    ) -> None:
        self.rng = rng
        self.branches = branches
        self.distractors = distractors
        self.render_one = render_one
        self.items: list[Inclusion] = []
        self.cache: dict[int, Rendered | None] = {}
        self.next_id = 1

    def add(self, size: float) -> bool:
        for _ in range(20):
            parts = sample_lesion(self.rng, self.branches, size, self.next_id)
            if _clear(parts, self.items, self.distractors):
                self.items += parts
                self.next_id += 1
                return True
        return False

    def add_faint(self) -> None:
        branch = self.branches[int(self.rng.integers(len(self.branches)))]
        s = float(self.rng.uniform(1.0, max(branch.length_mm - 1.0, 1.5)))
        part = make_lesion(
            self.rng,
            branch,
            s,
            "speck",
            0.0,
            density_hu=float(self.rng.uniform(140, 190)),
            lesion_id=self.next_id,
        )
        if _clear([part], self.items, self.distractors):
            self.items.append(part)
            self.next_id += 1

    def fill(self, goal: float, size_bias: float) -> None:
        """Add lesions until their rough estimate reaches ``goal`` Agatston."""
        est = sum(estimate_agatston(i) for i in self.items)
        for _ in range(60):
            if est >= goal:
                break
            need = goal - est
            size = float(
                np.clip(np.log10(max(need, 1.0)) / 3.2 + size_bias + self.rng.normal(0, 0.12), 0.0, 1.0)
            )
            before = len(self.items)
            if not self.add(size):
                break
            est += sum(estimate_agatston(i) for i in self.items[before:])

    def rendered(self) -> list[Rendered]:
        out = []
        for inc in self.items:
            key = id(inc)
            if key not in self.cache:
                self.cache[key] = self.render_one(inc)
            r = self.cache[key]
            if r is not None:
                out.append(r)
        return out

    def drop_group(self, lesion_id: int) -> None:
        self.items = [i for i in self.items if i.info["id"] != lesion_id]


def _label(
    hu: np.ndarray, rendered: list[Rendered], forbidden: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int] | None], list[float]]:
    """Reference label, lesion-id map, each part's peak voxel and each part's rough Agatston.

    See the module docstring.
    """
    label = np.zeros(hu.shape, dtype=np.uint8)
    ids = np.zeros(hu.shape, dtype=np.int32)
    strength = np.zeros(hu.shape, dtype=np.float32)
    peaks: list[tuple[int, int, int] | None] = []
    estimates: list[float] = []
    for n, r in enumerate(rendered, start=1):
        box = r.box
        support = (r.occupancy > 0.01) & ~forbidden[box]
        bright = (hu[box] >= threshold) & support
        comps, _ = ndimage.label(bright, structure=FULL_26)
        core = bright & (r.occupancy >= 0.5 * float(r.occupancy.max()))
        touched = np.unique(comps[core])
        keep = np.isin(comps, touched[touched > 0]) & (r.occupancy > strength[box])
        if not keep.any():
            peaks.append(None)
            estimates.append(0.0)
            continue
        code = labels.ARTERY_CODES[r.inclusion.artery or "unspecified"]
        label[box][keep] = code
        ids[box][keep] = n
        strength[box][keep] = r.occupancy[keep]
        values = np.where(keep, hu[box], np.iinfo(np.int16).min)
        local = np.unravel_index(int(np.argmax(values)), values.shape)
        peaks.append(
            (int(local[0]) + box[0].start, int(local[1]) + box[1].start, int(local[2]) + box[2].start)
        )
        estimates.append(float(keep.sum()))
    return label, ids, peaks, estimates


@dataclass
class _Scene:
    """Everything of a case but its lesions: geometry, the image without calcium, distractors, imaging."""

    grid: SliceGrid
    heart: Any
    branches: list[Branch]
    planes: np.ndarray
    base: np.ndarray
    forbidden: np.ndarray
    distractors: list[Inclusion]
    sigma_px: float
    vendor: str
    outside: np.ndarray
    streaky: bool
    imaging: dict[str, Any]
    anatomy: dict[str, Any]


def _scene(seed: int, config: SdfConfig, clock: _Clock) -> _Scene:
    rng_anat, rng_tree, rng_grid, rng_dis, rng_img = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, 0x5DF]).spawn(5)
    )
    origin = np.array([rng_anat.uniform(5, 20), rng_anat.uniform(-10, 10), 0.0])
    heart = sample_heart(rng_anat, origin, top_z_mm=200.0)
    dominance = str(rng_tree.choice(["right", "left", "co"], p=[0.8, 0.1, 0.1]))
    branches = build_tree(heart, rng_tree, dominance)
    hlo, hhi = heart_extent(heart, branches)
    female = bool(rng_anat.random() < 0.45)
    thorax = sample_thorax(rng_anat, hlo, hhi, female)
    tissues = Tissues.sample(rng_anat)
    ostia_z = max(float(b.points[0, 2]) for b in branches if b.parent is None)
    grid = _grid(rng_grid, config, hlo, hhi, max(ostia_z, float(heart.root_centre[2])))
    clock.lap("anatomy")
    planes, _ = paint_anatomy(grid, thorax, heart, branches, tissues, rng_anat, extent=(hlo, hhi))
    clock.lap("painting")
    base, sigma_px, imaging = _imaging_chain(rng_img, config, grid, planes)
    clock.lap("profile and blur")

    z_range = (grid.origin[2], grid.origin[2] + (grid.shape[0] - 1) * grid.spacing[0])
    distractors = sample_distractors(
        rng_dis, config.distractor_probabilities, heart, branches, thorax, z_range
    )
    forbidden = np.zeros(grid.shape, dtype=bool)
    kept = []
    for inc in distractors:
        r = render(inc, grid, planes, sigma_px)
        if r is None:
            continue
        kept.append(inc)
        base[r.box] += r.contribution
        forbidden[r.box] |= ndimage.binary_dilation(r.occupancy > 0.003, iterations=1)
        if inc.kind in METAL:
            _metal_streaks(rng_img, base, r, grid.spacing[2])
    clock.lap("distractors")

    vendor = str(rng_img.choice(list(VENDORS)))
    noise = NoiseTexture(
        sd_hu=float(rng_img.uniform(*config.noise_sd_hu)),
        alpha=float(rng_img.uniform(0.4, 1.3)),
        fc_per_mm=float(rng_img.uniform(0.35, 0.75)),
        beta=float(rng_img.uniform(2.0, 4.0)),
        lateral_gain=float(rng_img.uniform(0.0, 0.4)),
    )
    base += noise.sample(rng_img, grid.shape, grid.spacing[2])
    streaky = bool(rng_img.random() < config.streak_probability)
    models = VENDORS[vendor]["models"]
    kernels = VENDORS[vendor]["kernels"]
    imaging.update(
        {
            "manufacturer": vendor,
            "model": models[seed % len(models)],
            "kernel": kernels[seed % len(kernels)],
            "noise_sd_hu": round(noise.sd_hu, 2),
            "noise_alpha": round(noise.alpha, 3),
            "noise_fc_per_mm": round(noise.fc_per_mm, 3),
            "noise_lateral_gain": round(noise.lateral_gain, 3),
            "calcium_streaks": streaky,
            "outside_hu": int(VENDORS[vendor]["outside_hu"]),
            "kvp": 120.0,
        }
    )
    clock.lap("noise")
    anatomy = {
        "dominance": dominance,
        "female": female,
        "long_axis_mm": round(heart.lv_length_mm + abs(heart.la.centre[0]) + heart.la.radii[0], 1),
        "long_axis_direction": [round(float(v), 3) for v in heart.frame.axes[0]],
        "epicardial_fat_base_mm": round(heart.fat_base_mm, 2),
        "tissues_hu": tissues.to_dict(),
        "branches": {
            b.name: {
                "artery": b.artery,
                "length_mm": round(b.length_mm, 1),
                "proximal_radius_mm": round(float(b.radius_mm[0]), 2),
            }
            for b in branches
        },
    }
    outside = ~inside_circle(grid.shape[1:])
    return _Scene(
        grid,
        heart,
        branches,
        planes,
        base,
        forbidden,
        kept,
        sigma_px,
        vendor,
        outside,
        streaky,
        imaging,
        anatomy,
    )


def _imaging_chain(
    rng: np.random.Generator, config: SdfConfig, grid: SliceGrid, planes: np.ndarray
) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Slice profile, point spread (core and tail, on the coarse grid) and upsampling of the anatomy."""
    px = grid.spacing[2]
    fwhm = float(rng.uniform(*config.psf_fwhm_mm))
    sigma_px = fwhm / 2.3548 / px
    tail_share = float(rng.uniform(0.0, 0.15))
    tail_sigma_px = sigma_px * float(rng.uniform(2.5, 4.0))
    _, slices = grid.integrate(planes, 0)
    coarse_sigma = sigma_px / grid.coarse
    blurred = ndimage.gaussian_filter(slices, (0, coarse_sigma, coarse_sigma), mode="nearest")
    if tail_share > 0:
        tail = tail_sigma_px / grid.coarse
        wide = ndimage.gaussian_filter(slices, (0, tail, tail), mode="nearest")
        blurred = (1 - tail_share) * blurred + tail_share * wide
    base = upsample(blurred.astype(np.float32), grid.coarse, grid.shape[1:])
    info = {
        "fov_mm": round(grid.shape[2] * px, 2),
        "pixel_spacing_mm": px,
        "slice_thickness_mm": grid.thickness_mm,
        "slice_increment_mm": grid.spacing[0],
        "slice_profile_edge": round(grid.edge, 3),
        "psf_fwhm_mm": round(fwhm, 3),
        "psf_tail_share": round(tail_share, 3),
    }
    return base, sigma_px, info


def _initial_lesions(
    rng: np.random.Generator, config: SdfConfig, lesions: _Lesions, target: str | None
) -> float | None:
    """Draw the first lesions; return the Agatston goal of a targeted case (None: natural)."""
    if target is None:
        if rng.random() >= config.zero_fraction:
            burden = float(rng.lognormal(0.0, 0.8))
            mean = max((config.mean_lesions - 1) * burden, 0.1)
            count = 1 + int(rng.negative_binomial(0.7, 0.7 / (0.7 + mean)))
            for _ in range(min(count, 40)):
                lesions.add(float(np.clip(rng.beta(1.5, 3.0) * burden**0.5, 0.0, 1.0)))
        return None
    lo, hi = TARGET_RANGES[target]
    goal = 0.0 if hi == 0 else float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    if target == "A":
        if rng.random() < 0.3:
            lesions.add_faint()  # a true speck that partial volume hides: category A all the same
    else:
        lesions.fill(goal, size_bias=-0.1)
    return goal


def _adjust(
    lesions: _Lesions,
    target: str,
    goal: float,
    score: float,
    measured: dict[int, float],
    attempt: int,
) -> None:
    """One round towards the target category.

    Lesions are added when the score is too low; the best-fitting one is dropped when it is too high.
    """
    low, _ = risk_category_bounds(target)
    if score <= low:
        # Larger lesions when partial volume keeps hiding them, but not for the low categories.
        growth = 0.1 if target in ("D", "E") else 0.03
        lesions.fill(
            sum(estimate_agatston(i) for i in lesions.items) + max(goal - score, 1.0),
            size_bias=min(growth * attempt, 0.6),
        )
        return
    excess = score - goal
    if not measured:
        lesions.items = lesions.items[1:]
        return
    lesions.drop_group(min(measured, key=lambda k: abs(measured[k] - excess)))
    if target != "A" and not lesions.items:
        lesions.fill(goal, size_bias=-0.2)


def _measured(
    rendered: list[Rendered],
    voxels: list[float],
    peaks: list[tuple[int, int, int] | None],
    hu: np.ndarray,
    spacing: tuple[float, float, float],
) -> dict[int, float]:
    """Rough Agatston of each lesion (by id) from its labelled voxels and peak: volume x weight / 3."""
    weights = thresholds_for(120.0)
    out: dict[int, float] = {}
    for r, v, p in zip(rendered, voxels, peaks, strict=True):
        if p is not None:
            w = int(weights.weights([float(hu[p])])[0])
            key = int(r.inclusion.info["id"])
            out[key] = out.get(key, 0.0) + v * float(np.prod(spacing)) * w / 3
    return out


def generate_case(
    seed: int, *, config: SdfConfig | None = None, target_category: str | None = None
) -> SdfCase:
    """Generate one case of the signed-distance family.

    Parameters
    ----------
    seed : int
        Non-negative seed; the same seed and configuration give identical arrays.
    config : SdfConfig, optional
        Generator settings (default 512 x 512).
    target_category : {"A", "B", "C", "D", "E"}, optional
        Risk category the reference score must fall into (lesions are added or removed
        over a few rounds; ``truth["target_met"]`` says whether it did). None draws a
        natural, zero-inflated lesion count.

    Returns
    -------
    SdfCase

    Raises
    ------
    InvalidInputError
        If ``seed`` is not a non-negative integer or ``target_category`` is not A-E.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    if target_category is not None and target_category not in RISK_CATEGORIES:
        raise InvalidInputError(
            f"target_category must be one of {list(RISK_CATEGORIES)} or None, got {target_category!r}"
        )
    config = config if config is not None else SdfConfig()
    clock = _Clock()
    scene = _scene(seed, config, clock)
    grid = scene.grid
    rng_les = np.random.default_rng(np.random.SeedSequence([seed, 0x5DF, 1]))
    lesions = _Lesions(
        rng_les,
        scene.branches,
        scene.distractors,
        lambda inc: render(inc, grid, scene.planes, scene.sigma_px),
    )
    goal = _initial_lesions(rng_les, config, lesions, target_category)

    threshold = thresholds_for(120.0).threshold_hu
    affine = CTVolume(np.zeros((1, 1, 1), np.int16), grid.spacing, origin=grid.origin).affine
    outside_hu = int(scene.imaging["outside_hu"])
    for attempt in range(_ROUNDS):
        rendered = lesions.rendered()
        hu = _compose(scene.base, rendered, scene.outside, outside_hu, scene.streaky, grid.spacing[2])
        label, ids, peaks, voxels = _label(hu, rendered, scene.forbidden, threshold)
        reference = score_calcium(hu, grid.spacing, label, kvp=120.0, affine=affine)
        if target_category is None or goal is None or risk_category(reference.agatston) == target_category:
            break
        if attempt < _ROUNDS - 1:
            measured = _measured(rendered, voxels, peaks, hu, grid.spacing)
            _adjust(lesions, target_category, goal, reference.agatston, measured, attempt)
    target_met = target_category is None or risk_category(reference.agatston) == target_category
    clock.lap("lesions, truth and scoring")

    volume = CTVolume(
        hu=hu,
        spacing=grid.spacing,
        origin=grid.origin,
        slice_thickness_mm=grid.thickness_mm,
        kvp=120.0,
        study_uid=_uid(seed, "study"),
        series_uid=_uid(seed, "series"),
        modality="CT",
        manufacturer=scene.vendor,
        patient_id=f"PHANTOM-SDF-{seed}",
        series_description=f"Calcium score {grid.thickness_mm:g} mm",
    )
    points, lesion_truth = _lesion_truth(volume, lesions.items, rendered, peaks, ids, label)
    truth = {
        "schema": "cacscore.phantom-truth/1",
        "family": FAMILY,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "target_category": target_category,
        "target_agatston": goal,
        "target_met": target_met,
        "lesions": lesion_truth,
        "distractors": [d.info for d in scene.distractors],
        "imaging": scene.imaging,
        "anatomy": scene.anatomy,
    }
    tags: dict[str, Any] = {
        "ManufacturerModelName": scene.imaging["model"],
        "ConvolutionKernel": scene.imaging["kernel"],
        "PatientName": f"PhantomSDF^{seed}",
        "ScanOptions": "CARDIAC",
        "ReconstructionDiameter": scene.imaging["fov_mm"],
        "ContrastBolusAgent": "",
    }
    if outside_hu < -1024:
        # Padding below air is unambiguous; readers that honour it mask the outside of the circle.
        tags["PixelPaddingValue"] = outside_hu + 1024
    return SdfCase(volume, label, points, truth, reference, scene.forbidden, seed, clock.laps, tags)


def _lesion_truth(
    volume: CTVolume,
    items: list[Inclusion],
    rendered: list[Rendered],
    peaks: list[tuple[int, int, int] | None],
    ids: np.ndarray,
    label: np.ndarray,
) -> tuple[list[tuple[float, float, float, str]], list[dict[str, Any]]]:
    """Points (one per labelled lesion part, plus one per unmarked piece) and the lesions' truth entries."""
    points: list[tuple[float, float, float, str]] = []
    entries = []
    position = {id(r.inclusion): n for n, r in enumerate(rendered)}
    for inc in items:
        item: dict[str, Any] = {
            **inc.info,
            "artery": inc.artery,
            "density_hu": round(inc.density_hu, 1),
            "position_mm": [round(float(v), 2) for v in inc.centre],
            "survived": False,
        }
        n = position.get(id(inc))
        peak = None if n is None else peaks[n]
        if n is not None and peak is not None:
            xyz = volume.index_to_patient(np.array(peak))[0]
            item["survived"] = True
            item["point_mm"] = [round(float(v), 3) for v in xyz]
            item["n_voxels"] = int(np.count_nonzero(ids == n + 1))
            points.append((float(xyz[0]), float(xyz[1]), float(xyz[2]), str(inc.artery)))
        entries.append(item)
    for zyx, code in _unmarked_pieces(label, volume.hu, [p for p in peaks if p is not None]):
        xyz = volume.index_to_patient(np.array(zyx))[0]
        points.append((float(xyz[0]), float(xyz[1]), float(xyz[2]), labels.ARTERY_NAMES[code]))
    return points, entries


def _metal_streaks(rng: np.random.Generator, image: np.ndarray, r: Rendered, px: float) -> None:
    """Streaks through each slice of a metal object, in a window of +-60 mm around it."""
    nz, ny, nx = image.shape
    half = int(60.0 / px)
    for k in range(r.contribution.shape[0]):
        c = r.contribution[k]
        if c.max() < 300.0:
            continue
        jy, jx = np.unravel_index(int(np.argmax(c)), c.shape)
        cy, cx = jy + r.box[1].start, jx + r.box[2].start
        y0, y1, x0, x1 = max(cy - half, 0), min(cy + half, ny), max(cx - half, 0), min(cx + half, nx)
        z = k + r.box[0].start
        image[z, y0:y1, x0:x1] += streaks(
            rng,
            (y1 - y0, x1 - x0),
            (cy - y0, cx - x0),
            px,
            float(rng.uniform(120, 300)),
            int(rng.integers(4, 9)),
        )


def _compose(
    base: np.ndarray, rendered: list[Rendered], outside: np.ndarray, outside_hu: int, streaky: bool, px: float
) -> np.ndarray:
    image = base.copy()
    for r in rendered:
        image[r.box] += r.contribution
    if streaky:
        # Beam hardening next to dense calcium: faint dark and bright lines (seeded by the lesion's place).
        for r in rendered:
            if r.inclusion.density_hu < 700 or r.contribution.max() < 350:
                continue
            local = np.random.default_rng(
                [
                    int(r.inclusion.info.get("id", 0)),
                    *np.abs(np.rint(r.inclusion.centre * 10)).astype(int).tolist(),
                ]
            )
            strength = float(min((r.inclusion.density_hu - 600) / 20.0, 40.0))
            for k in range(r.contribution.shape[0]):
                c = r.contribution[k]
                if c.max() < 350:
                    continue
                jy, jx = np.unravel_index(int(np.argmax(c)), c.shape)
                cy, cx = jy + r.box[1].start, jx + r.box[2].start
                half = int(25.0 / px)
                ny, nx = image.shape[1:]
                y0, y1, x0, x1 = max(cy - half, 0), min(cy + half, ny), max(cx - half, 0), min(cx + half, nx)
                image[k + r.box[0].start, y0:y1, x0:x1] += streaks(
                    local, (y1 - y0, x1 - x0), (cy - y0, cx - x0), px, strength, 3
                )
    hu = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
    hu[:, outside] = outside_hu
    return hu


def _unmarked_pieces(
    label: np.ndarray, hu: np.ndarray, marked: list[tuple[int, int, int]]
) -> list[tuple[tuple[int, int, int], int]]:
    """Peak voxel and code of each 26-connected piece of ``label`` without a point.

    With them, the points rebuild the mask.
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
