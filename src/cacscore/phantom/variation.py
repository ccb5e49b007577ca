"""Domain randomisation of generator version 2: the settings drawn once per case, grouped by stage.

Version 1 draws its anatomy, vessels, lesions and imaging from narrow, realistic ranges. Version 2
draws, per case, a :class:`Variation` whose groups widen every stage far beyond what one scanner or
one population shows (heart shape and layout, fat, tissue HU, coronary dominance, tortuosity and
calibre, lesion shapes and densities, reconstruction kernel, noise texture, slice profile, motion
and stair-step artefacts, streaks). A model trained on that spread has to learn what coronary
calcium is rather than how one generator draws it. Each group is a frozen dataclass written into
``truth.json`` (``variation``), so a case says how it was made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Coronary dominance: which artery supplies the posterior descending artery.
DOMINANCE = ("right", "left", "co")
#: Lesion shapes of version 2 (see :func:`cacscore.phantom.calcium.sample_lesion_v2`).
LESION_SHAPES = ("chain", "blob", "arc", "ring", "spotty", "streak")
#: Reconstruction kernels: (in-plane FWHM range mm, edge enhancement range, noise grain range mm).
KERNELS: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "smooth": ((0.9, 1.6), (0.0, 0.1), (0.7, 1.4)),
    "standard": ((0.6, 1.1), (0.0, 0.35), (0.45, 0.9)),
    "sharp": ((0.4, 0.75), (0.3, 0.9), (0.25, 0.5)),
}
#: Slice sensitivity profiles: rectangle (v1), triangle and Gaussian, all with FWHM = slice thickness.
SLICE_PROFILES = ("rect", "triangle", "gaussian")


@dataclass(frozen=True)
class HeartShape:
    """Size, orientation and chamber layout of the heart, and the fat around it.

    Attributes
    ----------
    scale : float
        Factor on every heart dimension (0.8-1.2).
    azimuth_deg, tilt_deg : float
        Long axis azimuth (from anterior towards the left, 25-70 deg) and caudal tilt (12-50 deg).
    body_rotation_deg : float
        In-plane rotation of the patient on the table (-15 to 15 deg).
    lv_radius_scale, rv_scale, atria_scale : float
        Chamber sizes relative to the version 1 layout (hypertrophy, dilated RV or atria).
    rv_offset : float
        Lateral position of the RV centre, in LV radii (0.5-0.95).
    epicardial_fat_mm, paracardial_fat_mm : float
        Fat thickness from thin (0.3 mm) to thick (10 mm), and paracardial fat (0-8 mm). Thicker fat
        and larger hearts widen the mediastinum past what a heart between two lungs measures (220 mm).
    surface_bump_mm : float
        Amplitude of the gentle bumps of the heart outline (0-3 mm).
    """

    scale: float
    azimuth_deg: float
    tilt_deg: float
    body_rotation_deg: float
    lv_radius_scale: float
    rv_scale: float
    atria_scale: float
    rv_offset: float
    epicardial_fat_mm: float
    paracardial_fat_mm: float
    surface_bump_mm: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> HeartShape:
        """Draw one heart; the epicardial fat is log-uniform so that thin and thick are equally common."""
        return cls(
            scale=float(rng.uniform(0.8, 1.2)),
            azimuth_deg=float(rng.uniform(25, 70)),
            tilt_deg=float(rng.uniform(12, 50)),
            body_rotation_deg=float(rng.uniform(-15, 15)),
            lv_radius_scale=float(rng.uniform(0.85, 1.2)),
            rv_scale=float(rng.uniform(0.75, 1.25)),
            atria_scale=float(rng.uniform(0.8, 1.25)),
            rv_offset=float(rng.uniform(0.5, 0.95)),
            epicardial_fat_mm=float(np.exp(rng.uniform(np.log(0.3), np.log(10.0)))),
            paracardial_fat_mm=float(rng.uniform(0.0, 8.0)),
            surface_bump_mm=float(rng.uniform(0.0, 3.0)),
        )


@dataclass(frozen=True)
class TissueHU:
    """Tissue densities, HU: fat, muscle, heart (blood = myocardium without contrast), lung."""

    fat_hu: float
    epicardial_fat_hu: float
    muscle_hu: float
    heart_hu: float
    lung_hu: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> TissueHU:
        """Draw densities that keep the heart a non-contrast blood pool (30-65 HU) between lungs."""
        return cls(
            fat_hu=float(rng.uniform(-130, -70)),
            epicardial_fat_hu=float(rng.uniform(-125, -55)),
            muscle_hu=float(rng.uniform(30, 70)),
            heart_hu=float(rng.uniform(30, 65)),
            lung_hu=float(rng.uniform(-920, -760)),
        )


@dataclass(frozen=True)
class CoronaryShape:
    """Coronary tree: dominance, tortuosity (in-surface waviness), calibre and side branches."""

    dominance: str
    tortuosity_mm: float
    tortuosity_wavelength_mm: float
    calibre_scale: float
    branches: tuple[str, ...]

    @classmethod
    def sample(cls, rng: np.random.Generator) -> CoronaryShape:
        """Right dominance 70 %, left 15 %, co-dominance 15 %; side branches D1, OM1 (and D2) usually."""
        dominance = str(rng.choice(DOMINANCE, p=[0.7, 0.15, 0.15]))
        branches = ["PDA"]
        branches += ["D1"] if rng.random() < 0.9 else []
        branches += ["OM1"] if rng.random() < 0.85 else []
        branches += ["D2"] if rng.random() < 0.4 else []
        return cls(
            dominance=dominance,
            tortuosity_mm=float(rng.uniform(0.0, 4.0) * (rng.random() < 0.8)),
            tortuosity_wavelength_mm=float(rng.uniform(8.0, 30.0)),
            calibre_scale=float(rng.uniform(0.7, 1.4)),
            branches=tuple(branches),
        )


@dataclass(frozen=True)
class LesionStyle:
    """How this patient's coronary calcium looks: where, what shape, how big and how dense.

    Density is drawn independently of size (large, moderately dense plaques exist: a size-density
    link would let a model ignore them).
    """

    position_beta: tuple[float, float]
    bifurcation_fraction: float
    shape_weights: tuple[float, ...]
    size_median_mm: float
    density_median_hu: float
    density_sigma: float
    wall_offset: tuple[float, float]
    heterogeneity: float

    @classmethod
    def sample(cls, rng: np.random.Generator, position_beta: tuple[float, float]) -> LesionStyle:
        """Draw a style around ``position_beta`` (a, b of the lesions' position along the artery)."""
        weights = rng.dirichlet(np.full(len(LESION_SHAPES), 0.8))
        lo = float(rng.uniform(0.2, 0.8))
        return cls(
            position_beta=(
                float(position_beta[0] * rng.uniform(0.8, 1.25)),
                float(position_beta[1] * rng.uniform(0.7, 1.5)),
            ),
            bifurcation_fraction=float(rng.uniform(0.05, 0.45)),
            shape_weights=tuple(float(w) for w in weights),
            size_median_mm=float(rng.uniform(1.5, 4.5)),
            density_median_hu=float(np.exp(rng.uniform(np.log(200), np.log(750)))),
            density_sigma=float(rng.uniform(0.25, 0.6)),
            wall_offset=(lo, float(lo + rng.uniform(0.2, 0.6))),
            heterogeneity=float(rng.uniform(0.0, 0.35)),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the shape weights named."""
        out = asdict(self)
        out["shape_weights"] = dict(zip(LESION_SHAPES, self.shape_weights, strict=True))
        out["position_beta"] = list(self.position_beta)
        out["wall_offset"] = list(self.wall_offset)
        return out


@dataclass(frozen=True)
class ImagingChain:
    """Reconstruction: kernel (resolution, edge enhancement, noise grain and texture), slice profile.

    Attributes
    ----------
    kernel : {"smooth", "standard", "sharp"}
    fwhm_mm : float
        In-plane resolution (Gaussian FWHM), mm.
    sharpen : float
        Edge enhancement (unsharp mask gain, 0 = none); sharp kernels overshoot at edges.
    noise_grain_mm : float
        Correlation length of the noise (small = fine grain of a sharp kernel), mm.
    noise_texture : {"fbp", "ir"}
        Filtered back projection gives band-pass noise (no low frequencies); iterative
        reconstruction gives blotchy low-frequency noise.
    profile : {"rect", "triangle", "gaussian"}
        Slice sensitivity profile (FWHM = slice thickness).
    """

    kernel: str
    fwhm_mm: float
    sharpen: float
    noise_grain_mm: float
    noise_texture: str
    profile: str

    @classmethod
    def sample(cls, rng: np.random.Generator, fwhm_range_mm: tuple[float, float]) -> ImagingChain:
        """Draw a kernel; its FWHM is also kept inside the configuration's ``fwhm_range_mm``."""
        kernel = str(rng.choice(list(KERNELS), p=[0.35, 0.4, 0.25]))
        fwhm, sharpen, grain = KERNELS[kernel]
        lo, hi = max(fwhm[0], fwhm_range_mm[0]), min(fwhm[1], fwhm_range_mm[1])
        if lo > hi:
            lo = hi = float(np.clip((fwhm[0] + fwhm[1]) / 2, *fwhm_range_mm))
        return cls(
            kernel=kernel,
            fwhm_mm=float(rng.uniform(lo, hi)),
            sharpen=float(rng.uniform(*sharpen)),
            noise_grain_mm=float(rng.uniform(*grain)),
            noise_texture=str(rng.choice(["fbp", "ir"], p=[0.55, 0.45])),
            profile=str(rng.choice(SLICE_PROFILES, p=[0.4, 0.3, 0.3])),
        )


@dataclass(frozen=True)
class Artefacts:
    """Motion (calcium smear), stair-step at slice-block borders, and streak strength.

    Attributes
    ----------
    stair_step_mm : float
        Largest in-plane shift of the heart between acquisition blocks (0 = none), mm.
    stair_block_slices : int
        Slices per acquisition block (one heart beat of a step-and-shoot scan).
    streak_scale : float
        Factor on the streaks next to metal and dense calcium.
    """

    stair_step_mm: float
    stair_block_slices: int
    streak_scale: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Artefacts:
        """Stair-step in 30 % of cases (0.5-3 mm), streaks 0.5-2 x the version 1 strength."""
        step = float(rng.uniform(0.5, 3.0)) if rng.random() < 0.3 else 0.0
        return cls(
            stair_step_mm=step,
            stair_block_slices=int(rng.integers(4, 13)),
            streak_scale=float(rng.uniform(0.5, 2.0)),
        )


@dataclass(frozen=True)
class Variation:
    """Everything version 2 draws once per case beyond version 1's parameters."""

    heart: HeartShape
    tissue: TissueHU
    coronary: CoronaryShape
    lesions: LesionStyle
    imaging: ImagingChain
    artefacts: Artefacts

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        *,
        position_beta: tuple[float, float],
        fwhm_range_mm: tuple[float, float],
    ) -> Variation:
        """Draw every group from ``rng`` (its own stream, so the groups do not shift the others)."""
        return cls(
            heart=HeartShape.sample(rng),
            tissue=TissueHU.sample(rng),
            coronary=CoronaryShape.sample(rng),
            lesions=LesionStyle.sample(rng, position_beta),
            imaging=ImagingChain.sample(rng, fwhm_range_mm),
            artefacts=Artefacts.sample(rng),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every group (rounded to 4 decimals)."""

        def rounded(value: Any) -> Any:
            if isinstance(value, float):
                return round(value, 4)
            if isinstance(value, dict):
                return {k: rounded(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [rounded(v) for v in value]
            return value

        return rounded(
            {
                "heart": asdict(self.heart),
                "tissue": asdict(self.tissue),
                "coronary": asdict(self.coronary),
                "lesions": self.lesions.to_dict(),
                "imaging": asdict(self.imaging),
                "artefacts": asdict(self.artefacts),
            }
        )
