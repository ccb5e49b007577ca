"""One synthetic calcium-scoring CT case: anatomy, coronaries, calcium, imaging, ground truth.

:func:`generate_case` is pure and deterministic: the same seed and
configuration give the same arrays. The ground truth is taken from the
rendered image (voxels >= 130 HU in the components reached from each true
calcification), so lesions lost to partial volume or noise are absent from
the reference, as they would be for a reader.
"""

from __future__ import annotations

import dataclasses
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
    sample_lesion_v2,
    too_close,
)
from cacscore.phantom.coronary import Artery, build_coronary_tree, render_coronaries
from cacscore.phantom.imaging import (
    SCANNERS,
    blur_inplane,
    metal_streaks,
    reconstruction_circle,
    white_noise_sd_for,
    wide_blur_inplane,
)
from cacscore.phantom.mimics import (
    DEFAULT_PROBABILITIES_V2,
    DISTRACTOR_KINDS_V2,
    METAL_KINDS,
    breast_entries,
    sample_breasts,
    sample_distractors_v2,
)
from cacscore.phantom.render import Box, Grid
from cacscore.phantom.variation import LesionStyle, Variation
from cacscore.scoring import ScoreResult, score_calcium
from cacscore.scoring.conventions import (
    AGATSTON_THRESHOLD_HU,
    FULL_26,
    RISK_CATEGORIES,
    risk_category,
    risk_category_bounds,
)

#: Version of the generator written into every version 1 case; bump when the same seed gives other images.
GENERATOR_VERSION = "1.3"
#: Full version string of each generator version (``PhantomConfig.generator_version``).
GENERATOR_VERSIONS = {1: GENERATOR_VERSION, 2: "2.0"}
CATEGORIES = RISK_CATEGORIES
#: Target Agatston ranges drawn (log-uniform) for each category when a category is asked for.
TARGET_RANGES: dict[str, tuple[float, float]] = dict(
    zip(RISK_CATEGORIES, ((0.0, 0.0), (1.5, 9.0), (14.0, 90.0), (115.0, 380.0), (430.0, 1600.0)), strict=True)
)
#: Rounds of render -> score -> add/drop lesions before giving up on a target category.
_MAX_ROUNDS = 14
#: Version 2 may need more: its lesions vary more (faint, large, smeared), so a narrow category (B) is
#: overshot and undershot more often. Cases that meet their target sooner are the same either way.
_MAX_ROUNDS_V2 = 24


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
    generator_version : {1, 2}
        1: the realistic generator of version 1.x (same seed, same case). 2: domain randomisation
        (:mod:`cacscore.phantom.variation`): wider anatomy, coronary trees, lesions, imaging chains,
        artefacts and more distractor kinds; use :meth:`for_version` for its wide default ranges.
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
    generator_version: int = 1

    def __post_init__(self) -> None:
        if self.generator_version not in GENERATOR_VERSIONS:
            raise InvalidInputError(
                f"generator_version must be one of {sorted(GENERATOR_VERSIONS)}, "
                f"got {self.generator_version!r}"
            )
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
        kinds = DISTRACTOR_KINDS if self.generator_version == 1 else DISTRACTOR_KINDS_V2
        unknown = set(self.distractor_probabilities) - set(kinds)
        if unknown:
            raise InvalidInputError(
                f"unknown distractor kinds {sorted(unknown)} for generator version {self.generator_version}; "
                f"use {list(kinds)}"
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

    @property
    def version_string(self) -> str:
        """Full generator version written into each case (``"1.3"``, ``"2.0"``)."""
        return GENERATOR_VERSIONS[self.generator_version]

    @classmethod
    def for_version(cls, version: int, *, matrix: int = 512, **changes: Any) -> PhantomConfig:
        """The default configuration of generator ``version`` for ``matrix`` pixels per row.

        The pixel size range scales with ``matrix`` so that the field of view stays the same
        (version 1: 180-256 mm; version 2: 154-410 mm). Version 2's defaults are wide on purpose:
        slice thickness 1.5-5 mm, blur 0.4-1.6 mm FWHM, noise 6-60 HU, motion in 45 % of cases and
        every distractor kind of :data:`cacscore.phantom.mimics.DISTRACTOR_KINDS_V2`.
        ``changes`` override any field.
        """
        if version == 1:
            # Written as the command line always did, so that resumed cohorts compare equal.
            base = cls(matrix=matrix, pixel_spacing_mm=(0.35 * 512 / matrix, 0.5 * 512 / matrix))
        elif version == 2:
            base = cls(
                matrix=matrix,
                pixel_spacing_mm=(0.3 * 512 / matrix, 0.8 * 512 / matrix),
                slice_options=(
                    (1.5, 1.5, 0.08),
                    (2.0, 2.0, 0.1),
                    (2.5, 2.5, 0.22),
                    (3.0, 3.0, 0.3),
                    (3.0, 1.5, 0.1),
                    (5.0, 5.0, 0.1),
                    (5.0, 2.5, 0.1),
                ),
                n_slices=(24, 90),
                blur_fwhm_mm=(0.4, 1.6),
                noise_sd_hu=(6.0, 60.0),
                motion_probability=0.45,
                zero_fraction=0.3,
                distractor_probabilities=dict(DEFAULT_PROBABILITIES_V2),
                lesion_position_beta=(1.0, 1.3),
                generator_version=2,
            )
        else:
            raise InvalidInputError(
                f"generator version must be one of {sorted(GENERATOR_VERSIONS)}, got {version!r}"
            )
        return dataclasses.replace(base, **changes) if changes else base

    @classmethod
    def reduced(cls, version: int = 1) -> PhantomConfig:
        """A small, fast configuration for tests: 128 x 128 pixels of 1.5-1.9 mm, 16-24 slices.

        Version 2 keeps its wide ranges at this matrix (1.2-2.4 mm pixels, 12-40 slices).
        """
        if version == 1:
            return cls(matrix=128, pixel_spacing_mm=(1.5, 1.9), n_slices=(16, 24))
        return cls.for_version(version, matrix=128, pixel_spacing_mm=(1.2, 2.4), n_slices=(12, 40))

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
        Ideal lesions (all, with ``survived``), distractors and the case's drawn parameters
        (generator version 2 adds ``variation``: every setting its domain randomisation drew).
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
        """Distractor kinds present, in :data:`~cacscore.phantom.mimics.DISTRACTOR_KINDS_V2` order."""
        present = {d["type"] for d in self.truth["distractors"]}
        return [k for k in DISTRACTOR_KINDS_V2 if k in present]


#: How much of the cardiac motion each artery shows (the RCA moves most, the LM least).
MOTION_SHARE = {"LM": 0.2, "LAD": 0.5, "LCX": 0.7, "RCA": 1.0}


@dataclass(frozen=True)
class _Motion:
    """Residual cardiac motion of one case: an in-plane smear of the coronary calcium, mm and degrees."""

    amplitude_mm: float
    angle_deg: float
    pixel_mm: float

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        probability: float,
        pixel_mm: float,
        amplitude_mm: tuple[float, float] = (0.4, 1.4),
    ) -> _Motion:
        moving = rng.random() < probability
        amplitude, angle = float(rng.uniform(*amplitude_mm)), float(rng.uniform(0, 180))
        return cls(amplitude if moving else 0.0, angle if moving else 0.0, pixel_mm)

    def sigma_px(self, artery: str | None, kernel_sigma_px: float) -> tuple[float, float]:
        """Blur of a lesion on ``artery``: the kernel's and the motion's, combined per axis (y, x), pixels."""
        share = MOTION_SHARE.get(artery or "", 0.0) * self.amplitude_mm / self.pixel_mm
        rad = np.deg2rad(self.angle_deg)
        return (
            float(np.hypot(kernel_sigma_px, share * abs(np.sin(rad)))),
            float(np.hypot(kernel_sigma_px, share * abs(np.cos(rad)))),
        )


@dataclass(frozen=True)
class _Kernel:
    """In-plane reconstruction kernel: Gaussian blur, plus edge enhancement (unsharp mask) in version 2."""

    sharpen: float = 0.0
    sharpen_sigma_px: float = 1.0

    def apply(self, image: np.ndarray, sigma_yx_px: tuple[float, float]) -> np.ndarray:
        """Blur ``image`` (axes 1, 2) with ``sigma_yx_px`` and enhance edges; float32."""
        out = blur_inplane(image, sigma_yx_px)
        if self.sharpen > 0:
            low = wide_blur_inplane(out, self.sharpen_sigma_px)
            low -= out
            low *= np.float32(-self.sharpen)
            out += low
        return out

    def reach_px(self) -> float:
        """Extra reach of the edge enhancement beyond the blur, pixels."""
        return 3.0 * self.sharpen_sigma_px if self.sharpen > 0 else 0.0


@dataclass(frozen=True)
class _StairStep:
    """Step-and-shoot misregistration: the heart region of each block of slices shifted in-plane.

    ``shifts_px`` ``(Z, 2)`` (rows, columns) per slice; ``box`` the rows and columns of the heart
    region; ``weight`` ``(Y', X')`` 1 on the heart, fading to 0 at the box edge, so that the chest
    wall and spine stay put while the heart jumps at block borders.
    """

    shifts_px: np.ndarray
    box: tuple[slice, slice]
    weight: np.ndarray

    @classmethod
    def sample(
        cls, rng: np.random.Generator, grid: Grid, anatomy: Anatomy, step_mm: float, block: int
    ) -> _StairStep | None:
        if step_mm <= 0:
            return None
        nz = grid.shape[0]
        shifts = np.zeros((nz, 2))
        for start in range(block, nz, block):
            angle, radius = rng.uniform(0, 2 * np.pi), step_mm * np.sqrt(rng.uniform(0.2, 1.0))
            shifts[start:] = np.array([np.sin(angle), np.cos(angle)]) * radius / grid.spacing[2]
        lo, hi = anatomy.heart_bounds(5.0)
        box3 = grid.box(lo - 12.0, hi + 12.0)
        if box3 is None:
            return None
        ramps = []
        for axis, sl, centre_lo, centre_hi in (
            (1, box3[1], lo[1], hi[1]),
            (2, box3[2], lo[0], hi[0]),
        ):
            pos = (grid.ys if axis == 1 else grid.xs)[sl]
            inside = np.clip(np.minimum(pos - (centre_lo - 12.0), (centre_hi + 12.0) - pos) / 12.0, 0.0, 1.0)
            ramps.append(inside.astype(np.float32))
        return cls(shifts, (box3[1], box3[2]), ramps[0][:, None] * ramps[1][None, :])

    def apply(self, image: np.ndarray) -> None:
        """Shift the heart region of every slice of ``image`` (float, in place), blended by ``weight``."""
        ys, xs = self.box
        for z in range(image.shape[0]):
            dy, dx = self.shifts_px[z]
            if dy == 0 and dx == 0:
                continue
            region = image[z, ys, xs]
            moved = ndimage.shift(region, (dy, dx), order=1, mode="nearest")
            region += self.weight * (moved - region)

    def apply_mask(self, mask: np.ndarray) -> None:
        """Grow ``mask`` (bool, in place) by its shifted copy.

        Growing is conservative for the voxels no label may take.
        """
        ys, xs = self.box
        for z in range(mask.shape[0]):
            dy, dx = self.shifts_px[z]
            if dy == 0 and dx == 0:
                continue
            region = mask[z, ys, xs]
            moved = ndimage.shift(region.astype(np.float32), (dy, dx), order=1, mode="constant") > 0.0
            region |= moved & (self.weight > 0)

    def shift_box(self, array: np.ndarray, box: Box, centre_yx: tuple[float, float]) -> np.ndarray:
        """``array`` (a lesion's box) shifted per slice as the heart at ``centre_yx`` (pixels) moves."""
        ys, xs = self.box
        iy, ix = round(centre_yx[0]) - ys.start, round(centre_yx[1]) - xs.start
        inside = 0 <= iy < self.weight.shape[0] and 0 <= ix < self.weight.shape[1]
        w = float(self.weight[iy, ix]) if inside else 0.0
        if w == 0.0:
            return array
        out = np.empty_like(array)
        for k, z in enumerate(range(box[0].start, box[0].stop)):
            dy, dx = self.shifts_px[z] * w
            out[k] = ndimage.shift(array[k], (dy, dx), order=1, mode="constant") if (dy or dx) else array[k]
        return out

    def reach_mm(self, pixel_mm: float) -> float:
        """Largest shift, mm."""
        return float(np.abs(self.shifts_px).max() * pixel_mm)


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


def _uid(seed: int, kind: str, version: str = GENERATOR_VERSION) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[f"cacscore-phantom-{version}", str(seed), kind]))


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _grid(rng: np.random.Generator, config: PhantomConfig, anatomy: Anatomy, profile: str = "rect") -> Grid:
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
        profile,
    )


@dataclass
class _Round:
    """One render -> label -> score round of the category search."""

    lesions: list[CalciumObject]
    rendered: list[_Rendered]
    peaks: list[tuple[int, int, int] | None]
    score: float


@dataclass
class _LesionPlanner:
    """Draws a case's coronary lesions, clear of the distractors.

    The lesions have version 1 shapes, or version 2's ``style``.
    """

    rng: np.random.Generator
    arteries: list[Artery]
    distractors: list[CalciumObject]
    position_beta: tuple[float, float]
    style: LesionStyle | None = None

    @property
    def max_size_mm(self) -> float:
        return 10.0 if self.style is None else 15.0

    def draw(
        self,
        existing: list[CalciumObject],
        *,
        size_mm: float | None = None,
        density_hu: float | None = None,
        min_density_hu: float | None = None,
    ) -> CalciumObject | None:
        """A lesion 3 mm clear of the distractors (so labels never touch them) and 0.5 mm of ``existing``."""
        for _ in range(16):
            if self.style is None:
                artery = pick_artery(self.rng, self.arteries)
                lesion = sample_lesion(
                    self.rng, artery, position_beta=self.position_beta, size_mm=size_mm, density_hu=density_hu
                )
            else:
                lesion = sample_lesion_v2(
                    self.rng,
                    self.arteries,
                    self.style,
                    size_mm=size_mm,
                    density_hu=density_hu,
                    min_density_hu=min_density_hu,
                )
            if not too_close(lesion, self.distractors, gap_mm=3.0) and not too_close(
                lesion, existing, gap_mm=0.5
            ):
                return lesion
        return None

    def natural(self, config: PhantomConfig) -> list[CalciumObject]:
        """Zero-inflated, heavy-tailed lesions for an untargeted case.

        A patient-level burden (log-normal) scales both the lesion count (1 + negative binomial with
        mean ``config.mean_lesions - 1`` at burden 1) and the lesion size, as plaque burden does.
        """
        rng = self.rng
        if rng.random() < config.zero_fraction:
            return []
        burden = float(rng.lognormal(0.0, 0.8))
        mean = max((config.mean_lesions - 1) * burden, 0.1)
        count = 1 + int(rng.negative_binomial(0.6, 0.6 / (0.6 + mean)))
        median = 2.6 if self.style is None else self.style.size_median_mm
        lesions: list[CalciumObject] = []
        for _ in range(min(count, 60)):
            size = float(np.clip(rng.lognormal(np.log(median * burden**0.4), 0.6), 0.5, self.max_size_mm))
            lesion = self.draw(lesions, size_mm=size)
            if lesion is not None:
                lesions.append(lesion)
        return lesions

    def lesions_for(
        self,
        target: float,
        existing: list[CalciumObject],
        *,
        min_size_mm: float = 0.6,
        min_density_hu: float | None = None,
    ) -> list[CalciumObject]:
        """New lesions, besides ``existing``, whose estimated Agatston adds up to about ``target``.

        ``min_density_hu`` (version 2) makes them solid (chain or blob) and at least that dense.
        """
        lesions: list[CalciumObject] = []
        need = target
        while need > 0.3 and len(lesions) < 60:
            # Of a few candidates, keep the one whose estimate fits the remaining need best.
            best: CalciumObject | None = None
            typical = max(1.5, min(2.0 * need ** (1 / 3), 8.0))
            for _ in range(6):
                size = float(
                    np.clip(self.rng.lognormal(np.log(typical), 0.35), min_size_mm, self.max_size_mm)
                )
                cand = self.draw(existing + lesions, size_mm=size, min_density_hu=min_density_hu)
                if cand is None:
                    continue
                if best is None or abs(estimate_agatston(cand) - need) < abs(estimate_agatston(best) - need):
                    best = cand
            if best is None:
                break
            lesions.append(best)
            need -= estimate_agatston(best)
        return lesions

    def adjust(self, last: _Round, category: str, goal: float, attempt: int) -> list[CalciumObject]:
        """One round of moving the reference score towards ``category``: add lesions, or drop one."""
        lesions, score = last.lesions, last.score
        if score <= risk_category_bounds(category)[0] and category != "A":
            # Too little survived partial volume: keep at most two lost lesions, add larger ones.
            lost = [r.obj for r, p in zip(last.rendered, last.peaks, strict=True) if p is None]
            kept = [o for o in lesions if all(o is not x for x in lost[2:])]
            # Version 2 patients may have faint calcium only (low density, motion, thick slices): after a
            # few rounds, add solid lesions of rising density so that the category can still be reached.
            floor = None if self.style is None or attempt < 3 else min(250.0 + 60.0 * attempt, 900.0)
            return kept + self.lesions_for(
                max(goal - score, 1.0), kept, min_size_mm=min(2.0 + 0.6 * attempt, 6.0), min_density_hu=floor
            )
        survivors = [r.obj for r, p in zip(last.rendered, last.peaks, strict=True) if p is not None]
        if category == "A" or len(survivors) <= 1:
            drop = survivors[0] if survivors else (lesions[0] if lesions else None)
        else:
            drop = min(survivors, key=lambda o: abs(estimate_agatston(o) - (score - goal)))
        kept = [o for o in lesions if o is not drop]
        if category != "A" and not kept:
            return self.lesions_for(goal, [])
        return kept


def _lesion_texture(obj: CalciumObject, shape: tuple[int, ...]) -> np.ndarray:
    """Smooth multiplicative density texture (mean 1, spread ``obj.heterogeneity``) of a lesion's box."""
    rng = np.random.default_rng(obj.texture_seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.2, mode="nearest")
    sd = float(field.std()) or 1.0
    return 1.0 + obj.heterogeneity * np.clip(field / sd, -2.0, 2.0)


def _render_lesion(
    obj: CalciumObject,
    grid: Grid,
    base: np.ndarray,
    sigma_yx_px: tuple[float, float],
    kernel: _Kernel | None = None,
    stair: _StairStep | None = None,
) -> _Rendered | None:
    """Draw one lesion (z partial volume) and blur its HU change with ``sigma_yx_px`` (kernel and motion).

    Version 2 adds the kernel's edge enhancement, the lesion's density texture and the stair-step
    shift of the slice block it lies in.
    """
    margin = 3.0 * max(sigma_yx_px) * grid.spacing[2] + 1.5
    if kernel is not None:
        margin += kernel.reach_px() * grid.spacing[2]
    if stair is not None:
        margin += stair.reach_mm(grid.spacing[2])
    found = obj.occupancy(grid, margin)
    if found is None:
        return None
    box, occ = found
    delta = occ * (np.float32(obj.density_hu) - base[box])
    if obj.heterogeneity > 0:
        delta *= _lesion_texture(obj, delta.shape)
    contribution = blur_inplane(delta, sigma_yx_px) if kernel is None else kernel.apply(delta, sigma_yx_px)
    if stair is not None:
        centre = grid.box(obj.position_mm, obj.position_mm)
        if centre is not None:
            yx = (float(centre[1].start), float(centre[2].start))
            occ, contribution = stair.shift_box(occ, box, yx), stair.shift_box(contribution, box, yx)
    return _Rendered(obj, box, occ, contribution)


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
    """Label the >= 130 HU components reached from each lesion.

    Returns the label and each lesion's peak voxel.
    """
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
    # Per piece in its own bounding box: maximum_position with labels sorts the whole volume.
    boxes = ndimage.find_objects(pieces)
    out = []
    for k in missing:
        box = boxes[k - 1]
        values = np.where(pieces[box] == k, hu[box], np.iinfo(np.int16).min)
        local = np.unravel_index(int(np.argmax(values)), values.shape)
        zyx = tuple(int(i) + s.start for i, s in zip(local, box, strict=True))
        out.append((zyx, int(label[zyx])))
    return out  # type: ignore[return-value]


def _paint_distractors(
    base: np.ndarray, grid: Grid, distractors: list[CalciumObject], *, version: int = 1, grow_px: int = 2
) -> tuple[np.ndarray, list[tuple[int, tuple[float, float], float]]]:
    """Draw the distractors into ``base`` (z partial volume).

    Returns the voxels no label may take (each distractor grown by the blur's reach, ``grow_px``,
    so bloomed distractor voxels are never labelled) and the ``(slice, (row, col), strength HU)``
    sources of streaks: sternal wires in version 1; every metal object (a lead at its tip) and
    calcium denser than 700 HU in version 2.
    """
    forbidden = np.zeros(grid.shape, dtype=bool)
    sources: list[tuple[int, tuple[float, float], float]] = []
    grow = np.ones((1, 2 * grow_px + 1, 2 * grow_px + 1), dtype=bool)
    for obj in distractors:
        found = obj.occupancy(grid, 2.0)
        if found is None:
            continue
        box, occ = found
        region = base[box]
        region += occ * (np.float32(obj.density_hu) - region)
        forbidden[box] |= ndimage.binary_dilation(occ > 0.0, structure=grow)
        strength = _streak_strength(obj, version)
        if strength > 0 and occ.max() > 0.05:
            zz = np.nonzero(occ.max(axis=(1, 2)) > 0.05)[0]
            if obj.kind == "pacemaker_lead":
                # Only the electrode at the tip streaks noticeably.
                tip_z = (obj.position_mm[2] - grid.origin[2]) / grid.spacing[0] - box[0].start
                zz = zz[np.abs(zz - tip_z) * grid.spacing[0] <= 4.0]
            yx = np.argwhere(occ.max(axis=0) > 0).mean(axis=0)
            sources += [
                (int(z + box[0].start), (yx[0] + box[1].start, yx[1] + box[2].start), strength) for z in zz
            ]
    return forbidden, sources


def _streak_strength(obj: CalciumObject, version: int) -> float:
    """Streak amplitude (HU) next to a distractor: metal 350 HU, dense calcium less (version 2 only)."""
    if obj.kind == "sternal_wire":
        return 350.0
    if version == 1:
        return 0.0
    if obj.kind in METAL_KINDS:
        return 300.0
    # Beam hardening next to dense calcium is mild: at most ~40 HU at 1100 HU (before the case's factor).
    return 0.1 * (obj.density_hu - 700.0) if obj.density_hu > 700 else 0.0


def _add_streaks(
    image: np.ndarray,
    rng: np.random.Generator,
    sources: list[tuple[int, tuple[float, float], float]],
    pixel_mm: float,
    scale: float,
) -> None:
    """Version 2 streaks: each source on a window of +-100 mm around it (they fade within ~60 mm)."""
    half = int(np.ceil(80.0 / pixel_mm))
    ny, nx = image.shape[1:]
    # The strongest 12 sources: more slices would cost time without changing what the network sees.
    for z, (cy, cx), strength in sorted(sources, key=lambda s: -s[2])[:12]:
        y0, y1 = max(int(cy) - half, 0), min(int(cy) + half, ny)
        x0, x1 = max(int(cx) - half, 0), min(int(cx) + half, nx)
        pattern = metal_streaks(rng, (y1 - y0, x1 - x0), (cy - y0, cx - x0), pixel_mm, strength * scale)
        # Fade to 0 at the window's edge (80 mm) so that no window border shows.
        r_mm = np.hypot(
            (np.arange(y0, y1, dtype=np.float32)[:, None] - cy),
            (np.arange(x0, x1, dtype=np.float32)[None, :] - cx),
        ) * np.float32(pixel_mm)
        pattern *= np.clip((80.0 - r_mm) / 30.0, 0.0, 1.0)
        image[z, y0:y1, x0:x1] += pattern


def _in_category(score: float, category: str) -> bool:
    return risk_category(score) == category


@dataclass
class _Scene:
    """A case before imaging: anatomy painted in ``base`` (float HU), coronaries and distractors."""

    size: float
    anatomy: Anatomy
    grid: Grid
    base: np.ndarray
    arteries: list[Artery]
    distractors: list[CalciumObject]
    forbidden: np.ndarray
    streak_sources: list[tuple[int, tuple[float, float], float]]
    breasts: list[dict[str, Any]]


@dataclass
class _Imaging:
    """The imaging chain of a case: vendor, kernel, noisy blurred background and artefacts."""

    scanner: str
    fwhm_mm: float
    sigma_px: float
    noise_sd_hu: float
    background: np.ndarray
    outside: np.ndarray
    outside_hu: int
    motion: _Motion
    kernel: _Kernel | None = None
    stair: _StairStep | None = None


@dataclass(frozen=True)
class _NoiseTexture:
    """Noise of a version 2 reconstruction: white noise, grain blur, the image kernel, IR blotches.

    ``"fbp"`` (filtered back projection) keeps the kernel's fine grain; ``"ir"`` (iterative
    reconstruction) adds blotchy low-frequency noise, a third of the variance.
    """

    kind: str
    extra_sigma_px: float
    kernel: _Kernel
    sigma_px: float

    def pre_filter(self, white: np.ndarray) -> np.ndarray:
        if self.extra_sigma_px < 0.2:
            return white
        return blur_inplane(white, (self.extra_sigma_px, self.extra_sigma_px))

    def gain(self, rng: np.random.Generator) -> float:
        """Standard deviation of unit white noise after :meth:`pre_filter` and the kernel.

        It is measured on a 64 x 64 patch.
        """
        patch = rng.standard_normal((4, 96, 96)).astype(np.float32)
        out = self.kernel.apply(self.pre_filter(patch), (self.sigma_px, self.sigma_px))[:, 16:-16, 16:-16]
        fine = float(out.std()) or 1.0
        # The blotches add half the fine variance again: share the requested SD between them.
        return fine * (np.sqrt(1.5) if self.kind == "ir" else 1.0)

    def blotches(self, rng: np.random.Generator, shape: tuple[int, int, int], sd_hu: float) -> np.ndarray:
        """Low-frequency noise (about 4 mm blobs) with SD ``sd_hu / sqrt(3)``: drawn coarse, interpolated."""
        nz, ny, nx = shape
        coarse = rng.standard_normal((nz, ny // 8 + 2, nx // 8 + 2)).astype(np.float32)
        coarse = ndimage.gaussian_filter1d(coarse, 0.8, axis=1)
        coarse = ndimage.gaussian_filter1d(coarse, 0.8, axis=2)
        # Blocks of 8 x 8 pixels smoothed by an 8-pixel box: piecewise-linear interpolation, cheaply.
        fine = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)[:, : ny + 8, : nx + 8]
        for axis in (1, 2):
            ndimage.uniform_filter1d(fine, 8, axis=axis, mode="nearest", output=fine)
        fine = fine[:, 4 : ny + 4, 4 : nx + 4]
        fine *= np.float32(sd_hu / np.sqrt(3.0) / (float(fine[:, ::4, ::4].std()) or 1.0))
        return fine


def _build_scene(
    streams: list[np.random.Generator],
    config: PhantomConfig,
    variation: Variation | None,
    clock: _StageClock,
) -> _Scene:
    """Anatomy, grid, coronaries and distractors (painted).

    They are drawn from the anatomy, grid, coronary and calcium streams.
    """
    rng_anat, rng_grid, rng_cor, rng_calc = streams[:4]
    size = float(rng_anat.beta(2.0, 2.0))
    anatomy = sample_anatomy(
        rng_anat,
        size=size,
        heart=None if variation is None else variation.heart,
        tissue=None if variation is None else variation.tissue,
    )
    breasts: list[dict[str, Any]] = []
    if variation is not None:
        anatomy.breasts = sample_breasts(
            rng_calc, anatomy, config.distractor_probabilities.get("breast", 0.0)
        )
        anatomy.breast_hu = float(rng_calc.uniform(5, 45))
        breasts = breast_entries(anatomy.breasts, anatomy.breast_hu)
    grid = _grid(rng_grid, config, anatomy, "rect" if variation is None else variation.imaging.profile)
    base = render_anatomy(grid, anatomy, rng_anat)
    clock.lap("anatomy")
    arteries = build_coronary_tree(anatomy, rng_cor, None if variation is None else variation.coronary)
    render_coronaries(base, grid, anatomy, arteries)
    clock.lap("coronaries")
    if variation is None:
        distractors = sample_distractors(rng_calc, anatomy, arteries, config.distractor_probabilities)
        forbidden, sources = _paint_distractors(base, grid, distractors)
    else:
        distractors = sample_distractors_v2(rng_calc, anatomy, arteries, config.distractor_probabilities)
        # Blooming reaches further with wide kernels and edge enhancement: grow the no-label zone with it.
        reach = variation.imaging.fwhm_mm * (1.0 + variation.imaging.sharpen) / grid.spacing[2]
        forbidden, sources = _paint_distractors(
            base, grid, distractors, version=2, grow_px=max(2, int(np.ceil(reach)))
        )
    clock.lap("distractors")
    return _Scene(size, anatomy, grid, base, arteries, distractors, forbidden, sources, breasts)


def _imaging_v1(
    rng_noise: np.random.Generator, rng_motion: np.random.Generator, config: PhantomConfig, scene: _Scene
) -> _Imaging:
    """Version 1: white noise blurred with the image (one kernel), sternal wire streaks, motion smear."""
    grid = scene.grid
    scanner = config.manufacturers[int(rng_noise.integers(len(config.manufacturers)))]
    fwhm = float(rng_noise.uniform(*config.blur_fwhm_mm))
    sigma_px = fwhm / 2.3548 / grid.spacing[2]
    noise_lo, noise_hi = config.noise_sd_hu
    noise_sd = float(
        np.clip(
            noise_lo + (noise_hi - noise_lo) * (0.15 + 0.75 * scene.size) + rng_noise.normal(0, 2.5),
            noise_lo,
            noise_hi,
        )
    )
    noisy = rng_noise.standard_normal(grid.shape, dtype=np.float32)
    noisy *= np.float32(white_noise_sd_for(noise_sd, (sigma_px, sigma_px)))
    noisy += scene.base
    background = blur_inplane(noisy, (sigma_px, sigma_px))
    del noisy
    for z, (cy, cx), strength in scene.streak_sources:
        background[z] += metal_streaks(rng_noise, grid.shape[1:], (cy, cx), grid.spacing[2], strength)
    outside = ~reconstruction_circle(grid.shape[1:])
    outside_hu = int(SCANNERS[scanner]["outside_hu"])
    motion = _Motion.sample(rng_motion, config.motion_probability, grid.spacing[2])
    return _Imaging(scanner, fwhm, sigma_px, noise_sd, background, outside, outside_hu, motion)


def _imaging_v2(
    rng_noise: np.random.Generator,
    rng_motion: np.random.Generator,
    config: PhantomConfig,
    scene: _Scene,
    variation: Variation,
) -> _Imaging:
    """Version 2: kernel with edge enhancement, noise of its own grain and texture, streaks, stair-step."""
    grid, chain = scene.grid, variation.imaging
    px = grid.spacing[2]
    scanner = config.manufacturers[int(rng_noise.integers(len(config.manufacturers)))]
    sigma_px = chain.fwhm_mm / 2.3548 / px
    kernel = _Kernel(chain.sharpen, max(2.0 * sigma_px, 1.0))
    lo, hi = config.noise_sd_hu
    # Log-uniform between low-dose and high-quality scans, larger patients noisier.
    u = float(np.clip(0.75 * rng_noise.random() + 0.25 * scene.size, 0.0, 1.0))
    noise_sd = float(np.exp(np.log(max(lo, 0.5)) + u * (np.log(max(hi, 0.5)) - np.log(max(lo, 0.5)))))
    if hi == 0:
        noise_sd = 0.0
    if noise_sd > 0:
        # Noise goes through the same kernel as the image (as in a reconstruction), after an extra
        # grain blur where the kernel's noise is coarser than its resolution.
        extra = np.sqrt(max((chain.noise_grain_mm / 2.3548 / px) ** 2 - sigma_px**2, 0.0))
        texture = _NoiseTexture(chain.noise_texture, float(extra), kernel, sigma_px)
        white = rng_noise.standard_normal(grid.shape, dtype=np.float32)
        white *= np.float32(noise_sd / texture.gain(np.random.default_rng(rng_noise.integers(2**31))))
        noisy = texture.pre_filter(white)
        del white
        if chain.noise_texture == "ir":
            noisy += texture.blotches(rng_noise, grid.shape, noise_sd)
        noisy += scene.base
        background = kernel.apply(noisy, (sigma_px, sigma_px))
        del noisy
    else:
        background = kernel.apply(scene.base, (sigma_px, sigma_px))
    _add_streaks(background, rng_noise, scene.streak_sources, px, variation.artefacts.streak_scale)
    outside = ~reconstruction_circle(grid.shape[1:])
    outside_hu = int(SCANNERS[scanner]["outside_hu"])
    motion = _Motion.sample(rng_motion, config.motion_probability, px, amplitude_mm=(0.3, 3.0))
    stair = _StairStep.sample(
        rng_motion,
        grid,
        scene.anatomy,
        variation.artefacts.stair_step_mm,
        variation.artefacts.stair_block_slices,
    )
    if stair is not None:
        stair.apply(background)
        stair.apply_mask(scene.forbidden)
    return _Imaging(
        scanner, chain.fwhm_mm, sigma_px, noise_sd, background, outside, outside_hu, motion, kernel, stair
    )


def _initial_lesions(
    planner: _LesionPlanner, config: PhantomConfig, target_category: str | None
) -> tuple[list[CalciumObject], float | None]:
    """The first lesion set and the target Agatston score (None without a target category)."""
    rng = planner.rng
    if target_category is None:
        return planner.natural(config), None
    lo, hi = TARGET_RANGES[target_category]
    goal = 0.0 if hi == 0 else float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    lesions = planner.lesions_for(goal, [])
    if target_category == "A" and rng.random() < 0.3:
        # A faint speck that partial volume hides: category A with a true (unscorable) lesion.
        faint = planner.draw(
            lesions, size_mm=float(rng.uniform(0.5, 1.0)), density_hu=float(rng.uniform(150, 220))
        )
        lesions += [faint] if faint is not None else []
    return lesions, goal


def _fit_category(
    planner: _LesionPlanner,
    lesions: list[CalciumObject],
    scene: _Scene,
    imaging: _Imaging,
    target_category: str | None,
    goal: float | None,
) -> tuple[np.ndarray, np.ndarray, _Round, ScoreResult]:
    """Render, label and score; add or drop lesions until the reference falls in ``target_category``.

    Returns the image (int16 HU), the label, the last round and its reference score.
    """
    grid = scene.grid
    # Keyed by the object itself (identity hash), which also keeps dropped lesions alive so ids never clash.
    cache: dict[CalciumObject, _Rendered | None] = {}

    def render(objs: list[CalciumObject]) -> list[_Rendered]:
        for obj in objs:
            if obj not in cache:
                cache[obj] = _render_lesion(
                    obj,
                    grid,
                    scene.base,
                    imaging.motion.sigma_px(obj.artery, imaging.sigma_px),
                    imaging.kernel,
                    imaging.stair,
                )
        return [r for r in (cache[o] for o in objs) if r is not None]

    affine = CTVolume(np.zeros((1, 1, 1), np.int16), grid.spacing, origin=grid.origin).affine
    grow_px = max(1, int(np.ceil(2 * imaging.sigma_px)))
    max_rounds = _MAX_ROUNDS if imaging.kernel is None else _MAX_ROUNDS_V2
    for attempt in range(max_rounds):
        rendered = render(lesions)
        hu = _compose(imaging.background, rendered, imaging.outside, imaging.outside_hu)
        label, peaks = _reference_label(hu, rendered, scene.forbidden, grow_px=grow_px)
        reference = score_calcium(hu, grid.spacing, label, kvp=120.0, affine=affine)
        last = _Round(lesions, rendered, peaks, reference.agatston)
        if target_category is None or goal is None or _in_category(reference.agatston, target_category):
            break
        if attempt < max_rounds - 1:
            lesions = planner.adjust(last, target_category, goal, attempt)
    return hu, label, last, reference


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
        Generator settings; default :class:`PhantomConfig()` (version 1, 512 x 512, realistic).
        ``PhantomConfig.for_version(2)`` selects the domain-randomised generator version 2.
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
    v2 = config.generator_version == 2
    # Version 2 adds an eighth stream for its variation, so that it shifts none of the others.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(8 if v2 else 7)]
    rng_noise, rng_les, rng_motion = streams[4], streams[5], streams[6]
    variation = (
        Variation.sample(
            streams[7], position_beta=config.lesion_position_beta, fwhm_range_mm=config.blur_fwhm_mm
        )
        if v2
        else None
    )
    clock = _StageClock()
    scene = _build_scene(streams, config, variation, clock)
    if variation is None:
        imaging = _imaging_v1(rng_noise, rng_motion, config, scene)
    else:
        imaging = _imaging_v2(rng_noise, rng_motion, config, scene, variation)
    clock.lap("blur and noise")
    planner = _LesionPlanner(
        rng_les,
        scene.arteries,
        scene.distractors,
        config.lesion_position_beta,
        None if variation is None else variation.lesions,
    )
    lesions, goal = _initial_lesions(planner, config, target_category)
    hu, label, last, reference = _fit_category(planner, lesions, scene, imaging, target_category, goal)
    clock.lap("calcium, truth and scoring")
    return _assemble_case(
        seed, config, target_category, goal, scene, imaging, variation, hu, label, last, reference, clock
    )


def _assemble_case(
    seed: int,
    config: PhantomConfig,
    target_category: str | None,
    goal: float | None,
    scene: _Scene,
    imaging: _Imaging,
    variation: Variation | None,
    hu: np.ndarray,
    label: np.ndarray,
    last: _Round,
    reference: ScoreResult,
    clock: _StageClock,
) -> PhantomCase:
    """The CT volume, points and ``truth.json`` of a finished case."""
    grid, anatomy, version = scene.grid, scene.anatomy, config.version_string
    scanner = imaging.scanner
    kernel_name = SCANNERS[scanner]["kernel"]
    volume = CTVolume(
        hu=hu,
        spacing=grid.spacing,
        origin=grid.origin,
        slice_thickness_mm=grid.thickness_mm,
        kvp=120.0,
        study_uid=_uid(seed, "study", version),
        series_uid=_uid(seed, "series", version),
        modality="CT",
        manufacturer=scanner,
        patient_id=f"PHANTOM-{seed}",
        series_description=f"CaSc {grid.thickness_mm:g} mm {kernel_name}",
    )
    points: list[tuple[float, float, float, str]] = []
    lesion_truth = []
    for r, peak in zip(last.rendered, last.peaks, strict=True):
        item = r.obj.to_dict()
        item["survived"] = peak is not None
        if peak is not None:
            xyz = volume.index_to_patient(np.array(peak))[0]
            item["point_mm"] = [round(float(v), 3) for v in xyz]
            points.append((float(xyz[0]), float(xyz[1]), float(xyz[2]), str(r.obj.artery)))
        lesion_truth.append(item)
    for zyx, code in _unmarked_pieces(label, hu, [p for p in last.peaks if p is not None]):
        xyz = volume.index_to_patient(np.array(zyx))[0]
        points.append((float(xyz[0]), float(xyz[1]), float(xyz[2]), labels.ARTERY_NAMES[code]))
    motion = imaging.motion
    imaging_truth: dict[str, Any] = {
        "manufacturer": scanner,
        "blur_fwhm_mm": round(imaging.fwhm_mm, 3),
        "motion_mm": round(motion.amplitude_mm, 3),
        "motion_angle_deg": round(motion.angle_deg, 1),
        "noise_sd_hu": round(imaging.noise_sd_hu, 2),
        "slice_thickness_mm": grid.thickness_mm,
        "slice_increment_mm": grid.spacing[0],
        "pixel_spacing_mm": grid.spacing[2],
        "kvp": 120.0,
    }
    if variation is not None:
        imaging_truth["slice_profile"] = grid.profile
        imaging_truth["stair_step_max_mm"] = (
            0.0 if imaging.stair is None else round(imaging.stair.reach_mm(grid.spacing[2]), 3)
        )
    truth = {
        "schema": "cacscore.phantom-truth/1",
        "generator_version": version,
        "seed": seed,
        "target_category": target_category,
        "target_agatston": goal,
        "target_met": target_category is None or _in_category(reference.agatston, target_category),
        "lesions": lesion_truth,
        "distractors": [d.to_dict() for d in scene.distractors] + scene.breasts,
        "bone": ["vertebrae", "ribs", "sternum"]
        + (["calcified costal cartilage"] if anatomy.cartilage_calcified else []),
        "imaging": imaging_truth,
        "anatomy": {
            "body_size": round(scene.size, 3),
            "body_radii_mm": [round(float(v), 1) for v in anatomy.body_radii],
            "heart_center_mm": [round(float(v), 2) for v in anatomy.heart_center],
            "rotation_deg": round(float(np.rad2deg(anatomy.angle)), 2),
            "arteries": {
                a.segment_name: {
                    "length_mm": round(float(a.arclength[-1]), 1),
                    "proximal_radius_mm": round(float(a.radii[0]), 2),
                }
                for a in scene.arteries
            },
        },
    }
    if variation is not None:
        truth["variation"] = variation.to_dict()
    return PhantomCase(
        volume=volume,
        label=label,
        points=points,
        truth=truth,
        reference=reference,
        distractor_mask=scene.forbidden,
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
