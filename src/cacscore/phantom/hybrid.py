"""Real-anatomy hybrids: calcium lesions inserted into a real non-contrast chest CT.

A hybrid keeps every voxel of a real scan except those an inserted lesion touches. Each lesion is
modelled in a finer continuous space (an ellipsoid along the artery with a density that falls from
its core), then brought to the background's grid the way the scanner would have: integrated over
the background's slice thickness (box profile), averaged over each pixel, blurred in-plane with a
Gaussian estimated from the background's own edges, and given noise at the background's own level
where the lesion replaces tissue. Lesions go into epicardial fat next to the heart surface, in the
sectors of the heart where the LM, LAD, LCX and RCA run (found by :mod:`.hybrid_anatomy`).

The reference mask is computed from the rendered image: voxels >= 130 HU within an inserted lesion's
support, labelled with its artery, plus the patient's own coronary calcium as a reader annotated it
with points (``cacscore annotations to-mask``). The patient's other calcium (aortic root, valves,
aorta) stays label 0, so evaluation treats it as background. See ``docs/hybrids.md``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from cacscore.errors import InvalidInputError
from cacscore.io.atomic import atomic_open, write_json_atomic
from cacscore.io.volume import CTVolume
from cacscore.labels import ARTERY_NAMES, LAD, LCX, LM, RCA
from cacscore.phantom.generate import CATEGORIES, TARGET_RANGES
from cacscore.phantom.hybrid_anatomy import HeartRegion, locate_heart
from cacscore.phantom.imaging import white_noise_sd_for
from cacscore.scoring import risk_category, score_calcium
from cacscore.scoring.conventions import AGATSTON_THRESHOLD_HU, FULL_26, risk_category_bounds

#: Version of the hybrid generator (recorded in every case; changes when the same seed would give
#: another image).
HYBRID_VERSION = "hybrid-1"
#: Family name recorded in the metadata of every hybrid case.
FAMILY = "hybrid"
#: Rendered lesion fraction below which a voxel is left exactly as it was (the support's edge).
SUPPORT_FRACTION = 1e-3
#: Sub-samples per pixel (in-plane) and fine slice step of the continuous lesion model.
SUBSAMPLE = 3
FINE_DZ_MM = 0.25

#: Where each artery runs, as a sector of the heart: (angle range in degrees, measured in the axial
#: plane from anterior (0) towards the patient's left (+90); relative height range in the heart,
#: 0 its lowest slice, 1 its highest). LM: near the top, left of centre; LAD: anterior interventricular
#: groove; LCX: left atrioventricular groove; RCA: right atrioventricular groove.
ARTERY_SECTORS: dict[int, tuple[tuple[float, float], tuple[float, float]]] = {
    LM: ((10.0, 110.0), (0.75, 1.0)),
    LAD: ((-10.0, 60.0), (0.2, 0.85)),
    LCX: ((70.0, 160.0), (0.4, 0.9)),
    RCA: ((-150.0, -25.0), (0.15, 0.85)),
}
#: Relative frequency of lesions per artery (LAD most, LM least, as in patients).
ARTERY_WEIGHTS: dict[int, float] = {LM: 0.08, LAD: 0.42, LCX: 0.22, RCA: 0.28}


@dataclass(frozen=True)
class ImagingEstimate:
    """How the background was imaged, estimated from the image itself.

    Attributes
    ----------
    noise_sd_hu : float
        Noise standard deviation in homogeneous soft tissue, HU.
    blur_sigma_mm : float
        In-plane Gaussian blur (sigma), mm, from the body-air edge.
    slice_thickness_mm : float
        Slice thickness, mm (the file's, or the slice increment when the file has none).
    """

    noise_sd_hu: float
    blur_sigma_mm: float
    slice_thickness_mm: float

    def to_dict(self) -> dict[str, float]:
        """JSON-ready."""
        return {
            "noise_sd_hu": round(self.noise_sd_hu, 3),
            "blur_sigma_mm": round(self.blur_sigma_mm, 4),
            "slice_thickness_mm": self.slice_thickness_mm,
        }


@dataclass(frozen=True)
class Lesion:
    """An inserted lesion in the continuous model (positions in grid mm: ``index x spacing``).

    Attributes
    ----------
    artery : int
        Label code (2 LM, 3 LAD, 4 LCX, 5 RCA).
    centre_mm : tuple of 3 float
        Centre ``(z, y, x)`` in grid mm.
    axes : (3, 3) tuple
        Unit vectors (rows) of the ellipsoid's axes in ``(z, y, x)``; the first runs along the artery.
    semi_axes_mm : tuple of 3 float
        Semi-axes along ``axes``, mm.
    peak_hu : float
        Density at the core, HU; it falls to half of that at the border.
    """

    artery: int
    centre_mm: tuple[float, float, float]
    axes: tuple[tuple[float, float, float], ...]
    semi_axes_mm: tuple[float, float, float]
    peak_hu: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "artery": ARTERY_NAMES[self.artery],
            "centre_grid_mm": [round(v, 3) for v in self.centre_mm],
            "axes": [[round(v, 4) for v in a] for a in self.axes],
            "semi_axes_mm": [round(v, 3) for v in self.semi_axes_mm],
            "peak_hu": round(self.peak_hu, 1),
        }


@dataclass
class Background:
    """A real CT to insert lesions into, with the reader's annotation of the patient's own calcium.

    Attributes
    ----------
    volume : CTVolume
        The CT.
    path : str
        Where it was read from (recorded in the case metadata).
    sha256 : str
        SHA-256 of the file (of the first file of a DICOM folder's sorted listing).
    calcium : (Z, Y, X) ndarray of uint8
        The patient's own coronary calcium, project label codes (zeros when not annotated).
    points_path : str or None
        The annotation file the calcium mask was made from.
    region : HeartRegion
        Heart, fat and bone masks.
    imaging : ImagingEstimate
        Noise, blur and slice thickness of the background.
    """

    volume: CTVolume
    path: str
    sha256: str
    calcium: np.ndarray
    points_path: str | None
    region: HeartRegion
    imaging: ImagingEstimate
    _sites: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def own_score(self) -> Any:
        """ScoreResult of the patient's own annotated coronary calcium (cached)."""
        if "own" not in self._cache:
            self._cache["own"] = _score(self.volume, self.volume.hu, self.calcium)
        return self._cache["own"]

    @property
    def name(self) -> str:
        """File name without extension (``lung1_image``)."""
        name = Path(self.path).name
        for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return name


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, or of the first file (sorted) of a folder."""
    p = Path(path)
    if p.is_dir():
        files = sorted(q for q in p.rglob("*") if q.is_file())
        if not files:
            raise InvalidInputError(f"{p}: empty folder")
        p = files[0]
    digest = hashlib.sha256()
    with p.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- imaging estimates


def estimate_noise_sd(hu: np.ndarray, region: HeartRegion, spacing: tuple[float, float, float]) -> float:
    """Noise SD of the background, HU: median local SD (5 x 5 pixels) inside the eroded heart.

    The heart's blood and muscle are the largest homogeneous soft tissue of a non-contrast chest CT;
    the median over it ignores the few windows that straddle an edge.
    """
    inner = ndi.binary_erosion(region.heart, structure=np.ones((1, 9, 9), bool))
    if inner.sum() < 50:
        inner = region.heart
    img = hu.astype(np.float32)
    mean = ndi.uniform_filter(img, size=(1, 5, 5))
    sq = ndi.uniform_filter(img * img, size=(1, 5, 5))
    local = np.sqrt(np.maximum(sq - mean * mean, 0.0)) * math.sqrt(25.0 / 24.0)
    return float(np.median(local[inner])) if inner.any() else 15.0


def estimate_blur_sigma_mm(hu: np.ndarray, region: HeartRegion, spacing: tuple[float, float, float]) -> float:
    """In-plane blur of the background (Gaussian sigma, mm) from the lateral body-air edges.

    Along rows through the middle of the body in every slice, the skin edge is a step from air to
    tissue; its 10-90 % rise distance is 2.563 sigma for a Gaussian blur. The median over edges is
    returned, clipped to 0.2-2.0 mm (0.6 mm when no clean edge is found).
    """
    dx = spacing[2]
    rises: list[float] = []
    z_count, ny, _ = hu.shape
    for k in range(z_count):
        rows = np.flatnonzero(region.body[k].any(axis=1))
        if rows.size < 20:
            continue
        for y in rows[rows.size // 3 : 2 * rows.size // 3 : max(1, rows.size // 12)]:
            line = hu[k, y].astype(float)
            inside = np.flatnonzero(region.body[k, y])
            if inside.size < 20:
                continue
            for start, step in ((inside[0], 1), (inside[-1], -1)):
                idx = start + step * np.arange(-8, 9)
                if idx.min() < 0 or idx.max() >= line.size:
                    continue
                prof = line[idx]
                lo_v, hi_v = prof[:4].mean(), prof[-4:].mean()
                if hi_v - lo_v < 500 or prof[:4].std() > 30 or prof[-4:].std() > 60:
                    continue  # not a clean air-to-tissue step
                norm = (prof - lo_v) / (hi_v - lo_v)
                pos = np.arange(norm.size, dtype=float)
                if np.any(np.diff(norm[3:-3]) < -0.15):
                    continue
                x10 = float(np.interp(0.1, np.maximum.accumulate(norm), pos))
                x90 = float(np.interp(0.9, np.maximum.accumulate(norm), pos))
                rises.append((x90 - x10) * dx)
    if len(rises) < 5:
        return 0.6
    return float(np.clip(np.median(rises) / 2.563, 0.2, 2.0))


# --------------------------------------------------------------------------- rendering


def slice_weights(n_slices: int, dz_mm: float, thickness_mm: float, fine_z_mm: np.ndarray) -> np.ndarray:
    """Box slice profile: weight of each fine z sample in each output slice (rows sum to 1 or 0).

    Parameters
    ----------
    n_slices : int
        Output slices, centred at ``k x dz_mm``.
    dz_mm, thickness_mm : float
        Slice increment and thickness, mm.
    fine_z_mm : (N,) ndarray
        Positions of the fine samples, mm (equally spaced).

    Returns
    -------
    (n_slices, N) ndarray of float
    """
    centres = np.arange(n_slices) * dz_mm
    inside = np.abs(fine_z_mm[None, :] - centres[:, None]) <= thickness_mm / 2 + 1e-9
    counts = inside.sum(axis=1, keepdims=True)
    return inside / np.maximum(counts, 1)


def render_fine(
    occupancy: np.ndarray,
    density_hu: np.ndarray,
    fine_z_mm: np.ndarray,
    *,
    n_slices: int,
    dz_mm: float,
    thickness_mm: float,
    subsample: int,
    blur_sigma_px: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Bring a fine lesion model to the scanner's grid: slice profile, pixel integration, blur.

    Parameters
    ----------
    occupancy : (N, Y*s, X*s) ndarray of float
        Fraction of each fine sample the lesion fills (0-1).
    density_hu : (N, Y*s, X*s) ndarray of float
        Lesion density where it is, HU.
    fine_z_mm : (N,) ndarray
        z of each fine slice relative to output slice 0's centre, mm.
    n_slices : int
        Output slices.
    dz_mm, thickness_mm : float
        Slice increment and thickness, mm.
    subsample : int
        Fine samples per pixel along y and along x.
    blur_sigma_px : float
        In-plane Gaussian blur of the background, pixels (0: none).

    Returns
    -------
    fraction : (n_slices, Y, X) ndarray of float
        Lesion fraction of each voxel after imaging.
    signal : (n_slices, Y, X) ndarray of float
        Lesion HU x fraction after imaging (the voxel is ``(1 - fraction) x background + signal``).
    """
    w = slice_weights(n_slices, dz_mm, thickness_mm, fine_z_mm)
    s = subsample
    out = []
    for field_ in (occupancy, occupancy * density_hu):
        sliced = np.tensordot(w, field_, axes=(1, 0))
        ny, nx = sliced.shape[1] // s, sliced.shape[2] // s
        pix = sliced[:, : ny * s, : nx * s].reshape(n_slices, ny, s, nx, s).mean(axis=(2, 4))
        if blur_sigma_px > 0:
            pix = ndi.gaussian_filter(pix, sigma=(0.0, blur_sigma_px, blur_sigma_px), mode="constant")
        out.append(pix)
    return out[0], out[1]


def lesion_fine_model(
    lesion: Lesion,
    box_start: tuple[int, int, int],
    box_shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    thickness_mm: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample a lesion on the fine grid of a voxel box (see :func:`render_fine` for the outputs)."""
    dz, dy, dx = spacing
    s = SUBSAMPLE
    z_lo = box_start[0] * dz - thickness_mm / 2
    z_hi = (box_start[0] + box_shape[0] - 1) * dz + thickness_mm / 2
    n_fine = int(math.ceil((z_hi - z_lo) / FINE_DZ_MM))
    fz = z_lo + (np.arange(n_fine) + 0.5) * FINE_DZ_MM
    fy = (box_start[1] - 0.5 + (np.arange(box_shape[1] * s) + 0.5) / s) * dy
    fx = (box_start[2] - 0.5 + (np.arange(box_shape[2] * s) + 0.5) / s) * dx
    zz, yy, xx = np.meshgrid(fz, fy, fx, indexing="ij")
    rel = np.stack([zz - lesion.centre_mm[0], yy - lesion.centre_mm[1], xx - lesion.centre_mm[2]], axis=-1)
    local = rel @ np.asarray(lesion.axes).T / np.asarray(lesion.semi_axes_mm)
    r2 = (local**2).sum(axis=-1)
    occupancy = (r2 <= 1.0).astype(np.float32)
    density = (lesion.peak_hu * (1.0 - 0.5 * np.clip(r2, 0.0, 1.0))).astype(np.float32)
    return occupancy, density, fz - box_start[0] * dz


@dataclass(frozen=True)
class Inserted:
    """One lesion after insertion: its voxel box, fraction and new values there."""

    lesion: Lesion
    box: tuple[slice, slice, slice]
    fraction: np.ndarray
    values: np.ndarray


def insert_lesion(
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    lesion: Lesion,
    imaging: ImagingEstimate,
    rng: np.random.Generator,
) -> Inserted:
    """Render ``lesion`` into ``hu`` (returned as its new box values; ``hu`` is not changed).

    Voxels where the rendered fraction is below :data:`SUPPORT_FRACTION` keep their value exactly.
    Inside the support a voxel becomes ``(1 - f) x background + signal + noise``, with noise of SD
    ``noise_sd x sqrt(1 - (1 - f)^2)`` correlated by the background's blur, so that the total noise
    stays at the background's level where the lesion replaces tissue.

    Raises
    ------
    InvalidInputError
        If the lesion's box leaves the volume.
    """
    dz, dy, dx = spacing
    sigma_px = imaging.blur_sigma_mm / dx
    reach = max(lesion.semi_axes_mm) + 4 * imaging.blur_sigma_mm + dx
    centre_idx = [c / s for c, s in zip(lesion.centre_mm, spacing, strict=True)]
    z_reach = max(lesion.semi_axes_mm) + imaging.slice_thickness_mm / 2
    start = (
        int(math.floor(centre_idx[0] - z_reach / dz)),
        int(math.floor(centre_idx[1] - reach / dy)),
        int(math.floor(centre_idx[2] - reach / dx)),
    )
    stop = (
        int(math.ceil(centre_idx[0] + z_reach / dz)) + 1,
        int(math.ceil(centre_idx[1] + reach / dy)) + 1,
        int(math.ceil(centre_idx[2] + reach / dx)) + 1,
    )
    start = tuple(max(0, v) for v in start)  # type: ignore[assignment]
    stop = tuple(min(n, v) for n, v in zip(hu.shape, stop, strict=True))  # type: ignore[assignment]
    shape = tuple(b - a for a, b in zip(start, stop, strict=True))
    if min(shape) <= 0:
        raise InvalidInputError(f"lesion at {lesion.centre_mm} mm lies outside the volume")
    occ, dens, fz = lesion_fine_model(lesion, start, shape, spacing, imaging.slice_thickness_mm)  # type: ignore[arg-type]
    fraction, signal = render_fine(
        occ,
        dens,
        fz,
        n_slices=shape[0],
        dz_mm=dz,
        thickness_mm=imaging.slice_thickness_mm,
        subsample=SUBSAMPLE,
        blur_sigma_px=sigma_px,
    )
    box = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
    values, fraction = compose(hu[box], fraction, signal, imaging.noise_sd_hu, sigma_px, rng)
    return Inserted(lesion, box, fraction, values)  # type: ignore[arg-type]


def compose(
    background: np.ndarray,
    fraction: np.ndarray,
    signal: np.ndarray,
    noise_sd_hu: float,
    noise_sigma_px: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Put a rendered lesion into background voxels.

    Parameters
    ----------
    background : (Z, Y, X) ndarray of int
        Background values, HU.
    fraction, signal : (Z, Y, X) ndarray of float
        From :func:`render_fine`.
    noise_sd_hu : float
        Background noise SD, HU.
    noise_sigma_px : float
        In-plane correlation of the added noise (the background's blur), pixels.
    rng : numpy.random.Generator
        Noise source.

    Returns
    -------
    values : (Z, Y, X) ndarray, ``background``'s dtype
        ``round((1 - f) x background + signal + noise)`` inside the support (``f >=``
        :data:`SUPPORT_FRACTION`), the background unchanged outside it. The noise has SD
        ``noise_sd_hu x sqrt(1 - (1 - f)^2)``, which restores the background's noise level where
        the lesion replaced tissue (and its noise).
    fraction : (Z, Y, X) ndarray of float
        ``f`` inside the support, 0 outside.
    """
    support = fraction >= SUPPORT_FRACTION
    bg = background.astype(np.float64)
    noise = rng.standard_normal(fraction.shape)
    if noise_sigma_px > 0:
        noise = ndi.gaussian_filter(noise, sigma=(0.0, noise_sigma_px, noise_sigma_px))
        noise *= 1.0 / white_noise_sd_for(1.0, (noise_sigma_px, noise_sigma_px))
    extra_sd = noise_sd_hu * np.sqrt(np.clip(1.0 - (1.0 - fraction) ** 2, 0.0, 1.0))
    new = (1.0 - fraction) * bg + signal + noise * extra_sd
    values = np.where(support, np.clip(np.rint(new), -1024, 3071), bg).astype(background.dtype)
    return values, np.where(support, fraction, 0.0)


# --------------------------------------------------------------------------- placing lesions


def load_background(
    path: str | Path, points: str | Path | None = None, *, volume: CTVolume | None = None
) -> Background:
    """Read a background CT, find its heart and estimate its imaging; mask the annotated calcium.

    Parameters
    ----------
    path : str or Path
        The CT (any format :func:`cacscore.io.read_volume` reads).
    points : str or Path, optional
        The reader's point annotation of the patient's own coronary calcium (``cacscore annotations
        to-mask`` format). Without it the patient's calcium is not in the reference.
    volume : CTVolume, optional
        The CT already read (then ``path`` is only recorded).

    Raises
    ------
    InvalidInputError
        Unreadable input, points that do not fit the CT, or no heart found.
    """
    import warnings

    from cacscore.annotations import mask_from_points, read_points
    from cacscore.errors import CacScoreWarning
    from cacscore.io import read_volume

    if volume is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacScoreWarning)  # 5 mm slices etc.: recorded in the volume
            volume = read_volume(path)
    try:
        region = locate_heart(volume.hu, volume.spacing)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path}: {exc}") from None
    calcium = np.zeros(volume.shape, np.uint8)
    if points is not None:
        pts = read_points(points)
        if pts:
            calcium, _ = mask_from_points(volume, pts)
    thickness = float(volume.slice_thickness_mm or volume.spacing[0])
    imaging = ImagingEstimate(
        noise_sd_hu=estimate_noise_sd(volume.hu, region, volume.spacing),
        blur_sigma_mm=estimate_blur_sigma_mm(volume.hu, region, volume.spacing),
        slice_thickness_mm=thickness,
    )
    sha = file_sha256(path) if Path(path).exists() else ""
    return Background(
        volume=volume,
        path=str(path),
        sha256=sha,
        calcium=calcium,
        points_path=None if points is None else str(points),
        region=region,
        imaging=imaging,
    )


def candidate_sites(background: Background) -> dict[int, np.ndarray]:
    """Voxels ``(z, y, x)`` where a lesion of each artery may be centred.

    A site is epicardial fat within 5 mm (in-plane) of the heart, at least 4 mm from lung, at least
    6 mm from any voxel >= 100 HU (bone, the patient's own calcium), inside the artery's sector
    (:data:`ARTERY_SECTORS`). Cached on the background.
    """
    if background._sites:
        return background._sites
    from cacscore.phantom.hybrid_anatomy import _box

    vol, region = background.volume, background.region
    spacing = vol.spacing
    flat = (1e3, spacing[1], spacing[2])
    # Sites lie beside the heart: the distance maps are computed in its bounding box grown by 20 mm.
    box = _box(region.heart, spacing, 20.0)
    near_heart = ndi.distance_transform_edt(~region.heart[box], sampling=flat) <= 5.0
    far_lung = ndi.distance_transform_edt(~region.lungs[box], sampling=flat) >= 4.0
    dense = vol.hu[box] >= 100
    far_dense = ndi.distance_transform_edt(~dense, sampling=spacing) >= 6.0 if dense.any() else True
    ok = np.zeros(vol.shape, bool)
    ok[box] = region.fat[box] & near_heart & far_lung & far_dense
    lo, hi = region.heart_slices
    ok[:lo] = False
    ok[hi + 1 :] = False
    zyx = np.argwhere(ok)
    sites: dict[int, np.ndarray] = {code: np.zeros((0, 3), int) for code in ARTERY_SECTORS}
    if zyx.size:
        centres = np.array(
            [
                np.argwhere(region.heart[k]).mean(axis=0) if region.heart[k].any() else (np.nan, np.nan)
                for k in range(vol.shape[0])
            ]
        )
        # Anterior is -y in LPS, the patient's left +x; rows/columns follow y/x for an axial series.
        sign_y = float(np.sign(vol.direction[1, 1]) or 1.0)
        sign_x = float(np.sign(vol.direction[0, 0]) or 1.0)
        dy_mm = (zyx[:, 1] - centres[zyx[:, 0], 0]) * spacing[1] * sign_y
        dx_mm = (zyx[:, 2] - centres[zyx[:, 0], 1]) * spacing[2] * sign_x
        angle = np.degrees(np.arctan2(dx_mm, -dy_mm))
        height = (zyx[:, 0] - lo) / max(1, hi - lo)
        for code, ((a0, a1), (h0, h1)) in ARTERY_SECTORS.items():
            keep = (angle >= a0) & (angle <= a1) & (height >= h0) & (height <= h1)
            sites[code] = zyx[keep]
    background._sites = sites
    return sites


def _direction(background: Background, site: np.ndarray, artery: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vector (z, y, x) along the artery at ``site``: around the heart in the AV grooves, down
    towards the apex for the LAD (tilted in-plane)."""
    region = background.region
    k = int(site[0])
    centre = np.argwhere(region.heart[k]).mean(axis=0) if region.heart[k].any() else site[1:]
    radial = (site[1:] - centre) * np.asarray(background.volume.spacing[1:])
    radial = radial / (np.linalg.norm(radial) or 1.0)
    tangent = np.array([0.0, -radial[1], radial[0]])
    if artery == LAD:
        v = 0.7 * np.array([1.0, 0.0, 0.0]) + 0.7 * tangent
    else:
        v = tangent + np.array([rng.normal(0, 0.25), 0.0, 0.0])
    v = v + rng.normal(0, 0.1, 3)
    return np.asarray(v / np.linalg.norm(v))


def _axes_from(direction: np.ndarray, rng: np.random.Generator) -> tuple[tuple[float, float, float], ...]:
    a = direction / np.linalg.norm(direction)
    helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    b = np.cross(a, helper)
    b /= np.linalg.norm(b)
    c = np.cross(a, b)
    angle = rng.uniform(0, np.pi)
    b, c = np.cos(angle) * b + np.sin(angle) * c, -np.sin(angle) * b + np.cos(angle) * c
    rows: list[tuple[float, float, float]] = [(float(r[0]), float(r[1]), float(r[2])) for r in (a, b, c)]
    return tuple(rows)


def draw_lesion(
    background: Background, rng: np.random.Generator, *, size: float, artery: int | None = None
) -> Lesion | None:
    """Draw one lesion at a candidate site: ``size`` 0-1 scales length (2-16 mm), width (1-4 mm) and density.

    Returns None when the background has no site for the artery.
    """
    sites = candidate_sites(background)
    if artery is None:
        codes = [c for c in ARTERY_WEIGHTS if len(sites[c])]
        if not codes:
            return None
        p = np.array([ARTERY_WEIGHTS[c] for c in codes])
        artery = int(rng.choice(codes, p=p / p.sum()))
    if not len(sites[artery]):
        return None
    site = sites[artery][int(rng.integers(len(sites[artery])))]
    spacing = background.volume.spacing
    # Physical calcium is 400-2500 HU; at 5 mm slices partial volume divides what the image shows.
    length = 2.0 + 14.0 * size * rng.uniform(0.7, 1.0)
    width = 1.0 + 3.0 * size**0.5 * rng.uniform(0.7, 1.0)
    peak = float(np.clip(rng.normal(600 + 1400 * size, 200), 400, 2500))
    direction = _direction(background, site, artery, rng)
    jitter = rng.uniform(-0.5, 0.5, 3) * np.asarray(spacing)
    return Lesion(
        artery=artery,
        centre_mm=tuple(float(v) for v in site * np.asarray(spacing) + jitter),  # type: ignore[arg-type]
        axes=_axes_from(direction, rng),
        semi_axes_mm=(length / 2, width / 2, width / 2 * rng.uniform(0.7, 1.0)),
        peak_hu=peak,
    )


# --------------------------------------------------------------------------- one case


@dataclass
class HybridCase:
    """One hybrid: image, reference label, points, truth and reference score (as a phantom case)."""

    seed: int
    volume: CTVolume
    label: np.ndarray
    points: list[tuple[float, float, float, str]]
    truth: dict[str, Any]
    reference: Any  # ScoreResult


def _score(volume: CTVolume, hu: np.ndarray, label: np.ndarray) -> Any:
    return score_calcium(
        hu, volume.spacing, mask=label, kvp=volume.kvp if volume.kvp else 120.0, affine=volume.affine
    )


def feasible_categories(background: Background) -> list[str]:
    """Categories a hybrid of this background can reach: the patient's own and the higher ones."""
    own = risk_category(background.own_score().agatston)
    return list(CATEGORIES[CATEGORIES.index(own) :])


def generate_hybrid(
    background: Background, seed: int, *, target_category: str | None = None, max_rounds: int = 40
) -> HybridCase:
    """Insert lesions into ``background`` until the reference falls in ``target_category``.

    Parameters
    ----------
    background : Background
        From :func:`load_background`.
    seed : int
        Non-negative; the same background and seed give an identical case.
    target_category : {"A", "B", "C", "D", "E"}, optional
        Risk category of the reference (inserted lesions + the patient's annotated calcium). None
        draws 0-6 lesions of natural sizes. A category below the patient's own is refused.
    max_rounds : int
        Lesions drawn at most before giving up (``truth["target_met"]`` says whether it was met).

    Returns
    -------
    HybridCase

    Raises
    ------
    InvalidInputError
        Bad seed or category, or a category the background cannot reach.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    if target_category is not None and target_category not in CATEGORIES:
        raise InvalidInputError(f"target_category must be one of {list(CATEGORIES)}, got {target_category!r}")
    feasible = feasible_categories(background)
    if target_category is not None and target_category not in feasible:
        raise InvalidInputError(
            f"{background.path}: the patient's own calcium is category {feasible[0]}; "
            f"a hybrid cannot be category {target_category}"
        )
    vol = background.volume
    rng_les, rng_noise = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    hu = vol.hu.copy()
    label = background.calcium.copy()
    inserted: list[Inserted] = []
    occupied = background.calcium > 0

    def total() -> float:
        # Agatston sums 2-D components of labelled voxels: scoring the labelled bounding box is exact.
        if not label.any():
            return 0.0
        idx = np.argwhere(label > 0)
        box = tuple(slice(int(a), int(b) + 1) for a, b in zip(idx.min(axis=0), idx.max(axis=0), strict=True))
        return float(score_calcium(hu[box], vol.spacing, mask=label[box], kvp=vol.kvp or 120.0).agatston)

    if target_category is None:
        n = int(rng_les.poisson(2.5)) if rng_les.random() > 0.3 else 0
        goal_lo, goal_hi = -1.0, math.inf
        sizes = [float(rng_les.beta(1.2, 3.0)) for _ in range(n)]
    else:
        goal_lo, goal_hi = TARGET_RANGES[target_category]
        goal = 0.0 if goal_hi == 0 else float(np.exp(rng_les.uniform(np.log(goal_lo), np.log(goal_hi))))
        sizes = []
    rounds = 0
    score = total()
    if target_category not in (None, "A") and score >= goal_lo:
        # The patient's own calcium already reaches the target range: insert lesions of their own on
        # top, as long as the total stays in the category (for E: 50-800 Agatston more).
        upper = risk_category_bounds(target_category)[1]
        room = min(upper - score, 800.0)
        if room >= 1.5:
            extra = float(np.exp(rng_les.uniform(np.log(min(50.0, room / 2)), np.log(room))))
            goal = score + extra
            goal_lo, goal_hi = goal, min(upper, goal + max(0.5 * extra, 1.0))
    while rounds < max_rounds:
        if target_category is None:
            if not sizes:
                break
            size = sizes.pop()
        else:
            if goal_lo <= score <= goal_hi or (goal_hi == 0 and score == 0):
                break
            if score > goal_hi:
                if not inserted:
                    break
                last = inserted.pop()  # too much: take the last lesion out and try a smaller one
                hu[last.box] = _restore(vol.hu, inserted, last.box)
                label[last.box] = np.where(
                    background.calcium[last.box] > 0,
                    background.calcium[last.box],
                    _relabel(inserted, last.box),
                )
                occupied[last.box] = (background.calcium[last.box] > 0) | _supports(inserted, last.box)
                score = total()
                rounds += 1
                continue
            missing = max(goal - score, 1.0)
            # Measured on lung1 (5 mm slices): size 0.35 gives ~10 Agatston, 0.5 ~50, 0.75 ~120, 1.0 ~290;
            # below ~0.3 partial volume keeps a lesion under 130 HU. Large totals take several lesions.
            size = float(
                np.clip(
                    (0.27 + 0.72 * math.sqrt(min(missing, 200.0) / 300.0)) * rng_les.uniform(0.85, 1.1),
                    0.25,
                    1.0,
                )
            )
        rounds += 1
        lesion = draw_lesion(background, rng_les, size=size)
        if lesion is None:
            break
        ins = insert_lesion(hu, vol.spacing, lesion, background.imaging, rng_noise)
        support = ins.fraction > 0
        if np.any(occupied[ins.box] & _grow_box(support)):
            continue  # would touch another lesion or the patient's calcium: draw again
        hu[ins.box] = ins.values
        calcium_here = (ins.values >= AGATSTON_THRESHOLD_HU) & support
        label[ins.box][calcium_here] = lesion.artery
        occupied[ins.box] |= support
        inserted.append(ins)
        score = total()
    result = _score(vol, hu, label)
    met = target_category is None or result.risk_category == target_category
    out_volume = vol.with_hu(hu)
    return HybridCase(
        seed=seed,
        volume=out_volume,
        label=label,
        points=_points(out_volume, label, inserted, background),
        truth=_truth(background, seed, target_category, met, inserted, hu, label),
        reference=result,
    )


def _grow_box(mask: np.ndarray) -> np.ndarray:
    return np.asarray(ndi.binary_dilation(mask, structure=np.ones((1, 5, 5), bool)))


def _restore(original: np.ndarray, kept: list[Inserted], box: tuple[slice, ...]) -> np.ndarray:
    """Values of ``box`` with only the ``kept`` lesions in it (lesion supports never overlap)."""
    region = original[box].copy()
    for ins in kept:
        inter = [slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(ins.box, box, strict=True)]
        if any(s.stop <= s.start for s in inter):
            continue
        src = tuple(slice(s.start - a.start, s.stop - a.start) for s, a in zip(inter, ins.box, strict=True))
        dst = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(inter, box, strict=True))
        sup = ins.fraction[src] > 0
        region[dst][sup] = ins.values[src][sup]
    return region


def _supports(kept: list[Inserted], box: tuple[slice, ...]) -> np.ndarray:
    """Where the ``kept`` lesions' supports cover ``box``."""
    out = np.zeros(tuple(s.stop - s.start for s in box), bool)
    for ins in kept:
        inter = [slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(ins.box, box, strict=True)]
        if any(s.stop <= s.start for s in inter):
            continue
        src = tuple(slice(s.start - a.start, s.stop - a.start) for s, a in zip(inter, ins.box, strict=True))
        dst = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(inter, box, strict=True))
        out[dst] |= ins.fraction[src] > 0
    return out


def _relabel(kept: list[Inserted], box: tuple[slice, ...]) -> np.ndarray:
    """Label values of ``box`` from the ``kept`` lesions only."""
    out = np.zeros(tuple(s.stop - s.start for s in box), np.uint8)
    for ins in kept:
        inter = [slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(ins.box, box, strict=True)]
        if any(s.stop <= s.start for s in inter):
            continue
        src = tuple(slice(s.start - a.start, s.stop - a.start) for s, a in zip(inter, ins.box, strict=True))
        dst = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(inter, box, strict=True))
        hit = (ins.fraction[src] > 0) & (ins.values[src] >= AGATSTON_THRESHOLD_HU)
        out[dst][hit] = ins.lesion.artery
    return out


def _points(
    volume: CTVolume, label: np.ndarray, inserted: list[Inserted], background: Background
) -> list[tuple[float, float, float, str]]:
    """One point per inserted lesion that left calcium (its peak voxel) and per annotated component."""
    points = []
    for ins in inserted:
        hit = (label[ins.box] == ins.lesion.artery) & (ins.fraction > 0)
        if not hit.any():
            continue
        local = np.argwhere(hit)
        vals = volume.hu[ins.box][hit]
        zyx = local[int(np.argmax(vals))] + np.array([s.start for s in ins.box])
        x, y, z = volume.index_to_patient(zyx[None])[0]
        points.append((float(x), float(y), float(z), ARTERY_NAMES[ins.lesion.artery]))
    comps, n = ndi.label(background.calcium > 0, structure=FULL_26)
    for i in range(1, n + 1):
        vox = np.argwhere(comps == i)
        zyx = vox[int(np.argmax(volume.hu[tuple(vox.T)]))]
        x, y, z = volume.index_to_patient(zyx[None])[0]
        points.append((float(x), float(y), float(z), ARTERY_NAMES[int(background.calcium[tuple(zyx)])]))
    return points


def _truth(
    background: Background,
    seed: int,
    target: str | None,
    met: bool,
    inserted: list[Inserted],
    hu: np.ndarray,
    label: np.ndarray,
) -> dict[str, Any]:
    vol = background.volume
    own = background.own_score()
    lesions = []
    for i, ins in enumerate(inserted, start=1):
        hit = (label[ins.box] == ins.lesion.artery) & (ins.fraction > 0)
        sc = score_calcium(
            hu[ins.box], vol.spacing, mask=hit.astype(np.uint8) * ins.lesion.artery, kvp=vol.kvp or 120.0
        )
        lesions.append(
            {
                "id": i,
                **ins.lesion.to_dict(),
                "survived": bool(hit.any()),
                "n_voxels": int(hit.sum()),
                "agatston": round(float(sc.agatston), 4),
            }
        )
    return {
        "family": FAMILY,
        "seed": seed,
        "generator_version": HYBRID_VERSION,
        "target_category": target,
        "target_met": met,
        "background": {
            "path": background.path,
            "name": background.name,
            "sha256": background.sha256,
            "points": background.points_path,
            "shape_zyx": list(vol.shape),
            "spacing_zyx_mm": list(vol.spacing),
            "heart_slices": list(background.region.heart_slices),
        },
        "imaging": {**background.imaging.to_dict(), "manufacturer": vol.manufacturer or "unknown"},
        "lesions": lesions,
        "background_calcium": {
            "agatston": round(float(own.agatston), 4),
            "risk_category": own.risk_category,
            "arteries": {name: round(float(a.agatston), 4) for name, a in own.arteries.items()},
            "n_lesions": len(own.lesions),
            "note": "the patient's own coronary calcium as annotated; other calcium is background (label 0)",
        },
        "distractors": [],
    }


# --------------------------------------------------------------------------- cohorts

#: Extra columns of a hybrid cohort's ``cases.csv`` (after the phantom cohort's columns).
HYBRID_COLUMNS = ["family", "background"]


def write_hybrid_case(case: HybridCase, folder: str | Path, *, fmt: str = "nifti") -> Path:
    """Write one hybrid into ``folder`` in the phantom cohort's case layout (reference.json last).

    Raises
    ------
    InvalidInputError
        If ``fmt`` is not ``"nifti"`` or ``"mha"``.
    """
    from cacscore.io import write_mask, write_volume
    from cacscore.phantom.cohort import FORMATS, points_csv
    from cacscore.scoring import score_report

    if fmt not in ("nifti", "mha"):
        raise InvalidInputError(f"hybrid format must be 'nifti' or 'mha', got {fmt!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    image_name, label_name = FORMATS[fmt]
    write_volume(case.volume, folder / image_name)
    write_mask(case.label, case.volume, folder / label_name)
    (folder / "points.csv").write_text(points_csv(case.points))
    write_json_atomic(folder / "truth.json", case.truth, indent=1)
    report = score_report(
        case.volume,
        case.reference,
        input_path=image_name,
        extra={
            "generator": {
                "name": "cacscore.phantom.hybrid",
                "version": HYBRID_VERSION,
                "seed": case.seed,
                "family": FAMILY,
                "background": case.truth["background"]["path"],
            }
        },
    )
    write_json_atomic(folder / "reference.json", report, indent=1)
    return folder


def _manifest_row(out: Path, index: int, fmt: str) -> dict[str, Any]:
    """The phantom layout's ``cases.csv`` row, with the background's own slice thickness and source."""
    import json

    from cacscore.phantom.cohort import manifest_row

    row = manifest_row(out, index, fmt)
    truth = json.loads((out / row["case_id"] / "truth.json").read_text())
    # The reference's input may not know the thickness (NRRD, NIfTI); the background's was recorded.
    row["slice_thickness_mm"] = truth["imaging"]["slice_thickness_mm"]
    return {**row, "family": FAMILY, "background": truth["background"]["path"]}


def generate_hybrid_cohort(
    out: str | Path,
    backgrounds: list[tuple[str | Path, str | Path | None]],
    n: int,
    seed: int,
    *,
    fmt: str = "nifti",
    balance: bool = True,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Write ``n`` hybrids into ``out`` (resumable), the backgrounds taken in turn.

    Case ``i`` uses background ``i % len(backgrounds)`` and the seed :func:`case_seed` ``(seed, i)``;
    with ``balance`` its target category goes round robin over the categories that background can
    reach (its patient's own calcium and above). ``cases.csv`` and ``generation.json`` (with
    ``"family": "hybrid"``) are written as for a phantom cohort, so every command that reads phantom
    cohorts reads this one.

    Parameters
    ----------
    out : str or Path
        Cohort folder.
    backgrounds : list of (path, points or None)
        Background CTs and the annotation of their own coronary calcium.
    n, seed : int
        Number of cases and cohort seed.
    fmt : {"nifti", "mha"}
        Image format.
    balance : bool
        Balance target categories (else natural lesion counts).
    progress : bool
        Print one line per case on stderr.

    Returns
    -------
    list of dict
        The ``cases.csv`` rows.

    Raises
    ------
    InvalidInputError
        Bad arguments, an unreadable background, or an ``out`` that holds another cohort.
    """
    import csv
    import json
    import shutil
    import sys

    from cacscore.phantom.cohort import MANIFEST_COLUMNS, case_id, case_seed

    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidInputError(f"n must be a non-negative integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    if not backgrounds:
        raise InvalidInputError("give at least one background CT")
    if fmt not in ("nifti", "mha"):
        raise InvalidInputError(f"hybrid format must be 'nifti' or 'mha', got {fmt!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"{out}: output path exists and is not a folder")
    settings = {
        "family": FAMILY,
        "n": n,
        "seed": seed,
        "format": fmt,
        "balance": balance,
        "generator_version": HYBRID_VERSION,
        "backgrounds": [
            {
                "path": str(p),
                "sha256": file_sha256(p),
                "points": None if q is None else str(q),
                "points_sha256": None if q is None else file_sha256(q),
            }
            for p, q in backgrounds
        ],
    }
    path = out / "generation.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidInputError(
                f"{path}: unreadable ({exc}); remove it or choose another --out"
            ) from None
        for key in ("family", "seed", "format", "balance", "generator_version", "backgrounds"):
            if old.get(key) != settings.get(key):
                raise InvalidInputError(
                    f"{out}: holds a cohort generated with {key}={old.get(key)!r}, "
                    f"not {settings.get(key)!r}; resume with the same settings or choose another --out"
                )
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, settings, indent=1)
    loaded: dict[int, Background] = {}
    per_background = [0] * len(backgrounds)
    for i in range(n):
        b = i % len(backgrounds)
        j = per_background[b]
        per_background[b] += 1
        folder = out / case_id(i)
        if (folder / "reference.json").exists():
            continue
        if b not in loaded:
            loaded[b] = load_background(*backgrounds[b])
        bg = loaded[b]
        feasible = feasible_categories(bg)
        target = feasible[j % len(feasible)] if balance else None
        if folder.exists():
            shutil.rmtree(folder)  # an incomplete case from an interrupted run
        case = generate_hybrid(bg, case_seed(seed, i), target_category=target)
        write_hybrid_case(case, folder, fmt=fmt)
        if progress:
            print(
                f"{case_id(i)}: {bg.name}, target {target}, reference {case.reference.agatston:.1f} "
                f"({case.reference.risk_category})",
                file=sys.stderr,
                flush=True,
            )
    rows = [_manifest_row(out, i, fmt) for i in range(n) if (out / case_id(i) / "reference.json").exists()]
    columns = MANIFEST_COLUMNS + [c for c in HYBRID_COLUMNS if c not in MANIFEST_COLUMNS]
    with atomic_open(out / "cases.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return rows
