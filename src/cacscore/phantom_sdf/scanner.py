"""The imaging chain of the signed-distance family: sampling, slice profile, PSF, textured noise, streaks.

The object is continuous; it is sampled on *sub-planes* ``q`` per slice
increment and each reconstructed slice is the weighted sum of the sub-planes
under its slice sensitivity profile (a trapezoid with FWHM = slice thickness
and random edge width). Large anatomy is sampled on a coarser in-plane grid
(``coarse`` pixels per output pixel) and interpolated; small dense objects are
sampled at the output resolution with supersampling (:mod:`.inclusions`).
Noise is white noise shaped in the frequency domain by a band-pass noise
power spectrum ``f^alpha exp(-(f/fc)^beta)`` (the mid-frequency peak of
filtered back-projection), not a blurred white noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage


@dataclass(frozen=True)
class SliceGrid:
    """Output sampling of one series.

    Parameters
    ----------
    shape : tuple of 3 int
        ``(n_slices, rows, columns)``.
    spacing : tuple of 3 float
        ``(increment, dy, dx)``, mm.
    origin : tuple of 3 float
        LPS position (x, y, z) mm of voxel (0, 0, 0); rows run to +y (posterior), columns to +x (left).
    thickness_mm : float
        Nominal slice thickness (FWHM of the slice profile), mm.
    sub : int
        Sub-planes per increment.
    edge : float
        Edge share of the trapezoidal profile (0 rectangular, 1 triangular).
    coarse : int
        Output pixels per coarse anatomy pixel (1 or 2).
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    thickness_mm: float
    sub: int
    edge: float
    coarse: int

    @property
    def sub_step_mm(self) -> float:
        """Distance between sub-planes, mm."""
        return self.spacing[0] / self.sub

    @property
    def profile(self) -> np.ndarray:
        """Weights (sum 1) of the sub-planes at offsets ``-m..m`` sub-steps from a slice centre."""
        t, e, h = self.thickness_mm, self.edge, self.sub_step_mm
        half_top, ramp = t * (1 - e) / 2, max(t * e, 1e-6)
        m = int(np.ceil((half_top + ramp) / h))
        offsets = np.arange(-m, m + 1) * h
        w = np.clip((half_top + ramp - np.abs(offsets)) / ramp, 0.0, 1.0)
        w = w[w > 0] if np.count_nonzero(w) else np.ones(1)
        return (w / w.sum()).astype(np.float32)

    @property
    def margin(self) -> int:
        """Sub-planes on either side of the slice range that the profile reaches."""
        return (len(self.profile) - 1) // 2

    @property
    def n_sub(self) -> int:
        """Number of sub-planes sampled."""
        return (self.shape[0] - 1) * self.sub + 2 * self.margin + 1

    def sub_z(self) -> np.ndarray:
        """z (mm) of every sub-plane."""
        return self.origin[2] + (np.arange(self.n_sub) - self.margin) * self.sub_step_mm

    def fine_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """x of every column and y of every row, mm."""
        return (
            self.origin[0] + np.arange(self.shape[2]) * self.spacing[2],
            self.origin[1] + np.arange(self.shape[1]) * self.spacing[1],
        )

    def coarse_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y (mm) of the coarse anatomy grid (centred on each block of ``coarse`` output pixels)."""
        f = self.coarse
        nx, ny = -(-self.shape[2] // f), -(-self.shape[1] // f)
        return (
            self.origin[0] + (np.arange(nx) * f + (f - 1) / 2) * self.spacing[2],
            self.origin[1] + (np.arange(ny) * f + (f - 1) / 2) * self.spacing[1],
        )

    def integrate(self, planes: np.ndarray, first_sub: int = 0) -> tuple[int, np.ndarray]:
        """Slices reconstructed from sub-planes ``first_sub..`` (those of a box): ``(first_slice, slices)``.

        Sub-plane ``s`` (global index) lies at ``z0 + (s - margin) * sub_step``;
        slice ``k`` sums sub-planes ``k * sub .. k * sub + 2 * margin``. Every
        slice that any given sub-plane reaches is returned; sub-planes outside
        the box count as zero (the caller's object is absent there).
        """
        w = self.profile
        m = self.margin
        n = planes.shape[0]
        k0 = max(0, -(-(first_sub - 2 * m) // self.sub))
        k1 = min(self.shape[0] - 1, (first_sub + n - 1) // self.sub)
        out = np.zeros((max(k1 - k0 + 1, 0),) + planes.shape[1:], dtype=np.float32)
        for i, k in enumerate(range(k0, k1 + 1)):
            start = k * self.sub - first_sub
            for j in range(len(w)):
                s = start + j
                if 0 <= s < n:
                    out[i] += w[j] * planes[s]
        return k0, out

    def centre_mm(self) -> np.ndarray:
        """LPS (x, y) of the matrix centre, mm."""
        return np.array(
            [
                self.origin[0] + (self.shape[2] - 1) / 2 * self.spacing[2],
                self.origin[1] + (self.shape[1] - 1) / 2 * self.spacing[1],
            ]
        )


def upsample(slices: np.ndarray, factor: int, shape_yx: tuple[int, int]) -> np.ndarray:
    """Linear interpolation of coarse slices to the output matrix.

    Coarse pixel centres lie between output pixels.

    Parameters
    ----------
    slices : (Z, Yc, Xc) ndarray of float32
    factor : int
        1 (returned as is) or 2.
    shape_yx : tuple of 2 int
        Output rows and columns.
    """
    if factor == 1:
        return slices[:, : shape_yx[0], : shape_yx[1]]
    if factor != 2:
        raise ValueError(f"coarse factor must be 1 or 2, got {factor}")

    nz, ny, nx = slices.shape
    a = slices.astype(np.float32, copy=False)
    prev_y = np.concatenate([a[:, :1], a[:, :-1]], axis=1)
    next_y = np.concatenate([a[:, 1:], a[:, -1:]], axis=1)
    out = np.empty((nz, ny, 2, nx, 2), dtype=np.float32)
    q, h = np.float32(0.25), np.float32(0.75)
    for dy_i, side in ((0, prev_y), (1, next_y)):
        rows = h * a + q * side  # (nz, ny, nx) at output rows 2j + dy_i
        prev_x = np.concatenate([rows[:, :, :1], rows[:, :, :-1]], axis=2)
        next_x = np.concatenate([rows[:, :, 1:], rows[:, :, -1:]], axis=2)
        np.add(h * rows, q * prev_x, out=out[:, :, dy_i, :, 0])
        np.add(h * rows, q * next_x, out=out[:, :, dy_i, :, 1])
    return out.reshape(nz, 2 * ny, 2 * nx)[:, : shape_yx[0], : shape_yx[1]]


def psf_blur(image: np.ndarray, sigma_px: float, tail_share: float, tail_sigma_px: float) -> np.ndarray:
    """In-plane point spread: a Gaussian core plus a wider Gaussian tail of ``tail_share`` (axes 1, 2)."""
    core = ndimage.gaussian_filter(image, (0, sigma_px, sigma_px), mode="nearest", output=np.float32)
    if tail_share <= 0:
        return core
    tail = ndimage.gaussian_filter(
        image, (0, tail_sigma_px, tail_sigma_px), mode="nearest", output=np.float32
    )
    return ((1 - tail_share) * core + tail_share * tail).astype(np.float32)


@dataclass(frozen=True)
class NoiseTexture:
    """Band-pass noise power spectrum ``f^alpha exp(-(f/fc)^beta)`` (f in cycles/mm) and its SD (HU)."""

    sd_hu: float
    alpha: float
    fc_per_mm: float
    beta: float
    lateral_gain: float

    def sample(self, rng: np.random.Generator, shape: tuple[int, int, int], pixel_mm: float) -> np.ndarray:
        """Correlated noise ``(Z, Y, X)`` float32 with SD ``sd_hu`` at the matrix centre."""
        nz, ny, nx = shape
        fy = sp_fft.fftfreq(ny, d=pixel_mm)[:, None]
        fx = sp_fft.rfftfreq(nx, d=pixel_mm)[None, :]
        f = np.sqrt(fx * fx + fy * fy)
        nps = (f + 1e-3) ** self.alpha * np.exp(-((f / self.fc_per_mm) ** self.beta))
        gain = np.sqrt(nps).astype(np.float32)
        # White noise drawn directly in the frequency domain (a complex Gaussian per coefficient).
        spec = np.empty((nz, ny, nx // 2 + 1), dtype=np.complex64)
        spec.real = rng.standard_normal(spec.shape, dtype=np.float32)
        spec.imag = rng.standard_normal(spec.shape, dtype=np.float32)
        spec *= gain[None]
        noise = sp_fft.irfft2(spec, s=(ny, nx), axes=(1, 2), workers=1).astype(np.float32, copy=False)
        del spec
        noise *= np.float32(self.sd_hu / max(float(noise[nz // 2].std()), 1e-6))
        # Longer paths through the body laterally: noise rises towards the left and right edges.
        x = np.linspace(-1.0, 1.0, nx, dtype=np.float32)
        noise *= (1.0 + np.float32(self.lateral_gain) * x * x)[None, None, :]
        return noise


def streaks(
    rng: np.random.Generator,
    shape_yx: tuple[int, int],
    centre_yx: tuple[float, float],
    pixel_mm: float,
    strength_hu: float,
    n_lines: int,
) -> np.ndarray:
    """Alternating dark and bright lines through a dense object on one slice (beam hardening), ``(Y, X)``.

    Lines decay with distance (``exp(-r / 45 mm)``) and are dark along the
    lines joining the object's strongest projections, bright in between.
    """
    ny, nx = shape_yx
    y = (np.arange(ny, dtype=np.float32)[:, None] - centre_yx[0]) * pixel_mm
    x = (np.arange(nx, dtype=np.float32)[None, :] - centre_yx[1]) * pixel_mm
    r = np.sqrt(x * x + y * y)
    theta = np.arctan2(y, x)
    out = np.zeros(shape_yx, dtype=np.float32)
    for _ in range(n_lines):
        phi = float(rng.uniform(0, np.pi))
        width = float(rng.uniform(0.006, 0.02))
        sign = -1.0 if rng.random() < 0.6 else 1.0
        d = np.abs(np.sin(theta - phi)).astype(np.float32)
        out += np.float32(sign) * np.exp(-0.5 * (d / width) ** 2).astype(np.float32)
    return (strength_hu * out * np.exp(-r / 45.0) * np.clip(r / 3.0, 0, 1)).astype(np.float32)


def inside_circle(shape_yx: tuple[int, int], diameter_share: float = 1.0) -> np.ndarray:
    """Bool ``(Y, X)``: the reconstruction circle (inscribed in the matrix, times ``diameter_share``)."""
    ny, nx = shape_yx
    y = (np.arange(ny) - (ny - 1) / 2)[:, None] / (ny / 2 * diameter_share)
    x = (np.arange(nx) - (nx - 1) / 2)[None, :] / (nx / 2 * diameter_share)
    return np.asarray(x * x + y * y <= 1.0)
