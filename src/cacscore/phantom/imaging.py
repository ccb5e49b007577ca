"""The imaging chain: reconstruction blur, correlated noise, metal streaks, the reconstruction circle.

The slice profile and the partial volume of small objects are applied when
they are drawn (:func:`cacscore.phantom.render.occupancy`); this module
works on whole slices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

#: Scanner vendors of the output (DICOM Manufacturer), with a model, a soft-tissue kernel and the
#: value written outside the reconstruction circle (HU).
SCANNERS: dict[str, dict[str, Any]] = {
    "GE MEDICAL SYSTEMS": {
        "models": ["Revolution CT", "LightSpeed VCT", "Discovery CT750 HD"],
        "kernel": "STANDARD",
        "outside_hu": -3024,
    },
    "SIEMENS": {
        "models": ["SOMATOM Force", "SOMATOM Definition Flash", "SOMATOM Drive"],
        "kernel": "Qr36d",
        "outside_hu": -1024,
    },
    "Philips": {
        "models": ["iCT 256", "Brilliance 64", "IQon - Spectral CT"],
        "kernel": "XCB",
        "outside_hu": -1024,
    },
    "CANON_MEC": {"models": ["Aquilion ONE", "Aquilion Prime SP"], "kernel": "FC12", "outside_hu": -2048},
}


def blur_inplane(volume: np.ndarray, sigma_px: tuple[float, float]) -> np.ndarray:
    """Separable Gaussian blur along y and x (axes 1 and 2), float32."""
    out = ndimage.gaussian_filter1d(volume, sigma_px[0], axis=1, mode="nearest", output=np.float32)
    return ndimage.gaussian_filter1d(out, sigma_px[1], axis=2, mode="nearest", output=np.float32)


def wide_blur_inplane(volume: np.ndarray, sigma_px: float) -> np.ndarray:
    """Approximate Gaussian blur along y and x for a wide ``sigma_px``: two box filters per axis, float32.

    Two passes of a box of width ``w`` have the variance ``(w^2 - 1) / 6`` of a Gaussian; their
    cost does not grow with the width, unlike a Gaussian kernel (used for low-pass fields, where
    the exact shape does not matter).
    """
    width = max(1, round(np.sqrt(6.0 * sigma_px**2 + 1.0)))
    out = volume.astype(np.float32, copy=True)
    for axis in (1, 2):
        for _ in range(2):
            ndimage.uniform_filter1d(out, width, axis=axis, mode="nearest", output=out)
    return out


def white_noise_sd_for(sd_hu: float, sigma_px: tuple[float, float]) -> float:
    """Standard deviation of white noise that has ``sd_hu`` after :func:`blur_inplane` with ``sigma_px``.

    Adding the noise before the reconstruction blur correlates it the way a
    reconstruction kernel does, at no extra filtering cost.
    """
    gain = 1.0
    for sigma in sigma_px:
        impulse = np.zeros(64)
        impulse[32] = 1.0
        kernel = ndimage.gaussian_filter1d(impulse, sigma, mode="constant")
        gain *= float(np.sum(kernel**2))
    return sd_hu / np.sqrt(gain)


def metal_streaks(
    rng: np.random.Generator,
    shape_yx: tuple[int, int],
    center_yx: tuple[float, float],
    pixel_mm: float,
    strength_hu: float,
) -> np.ndarray:
    """Bright and dark streaks radiating from a metal object on one slice, float32 ``(Y, X)``."""
    ny, nx = shape_yx
    y = (np.arange(ny, dtype=np.float32)[:, None] - center_yx[0]) * pixel_mm
    x = (np.arange(nx, dtype=np.float32)[None, :] - center_yx[1]) * pixel_mm
    theta = np.arctan2(y, x)
    r = np.sqrt(x * x + y * y) + 1.0
    pattern = np.zeros(shape_yx, dtype=np.float32)
    for _ in range(int(rng.integers(4, 9))):
        phi = rng.uniform(0, np.pi)
        width = rng.uniform(0.01, 0.035)
        sign = rng.choice([-1.0, 1.0])
        d = np.angle(np.exp(1j * 2 * (theta - phi))) / 2  # streak lines run through the centre both ways
        pattern += sign * np.exp(-0.5 * (d / width) ** 2).astype(np.float32)
    return strength_hu * pattern * np.exp(-r / 60.0) * np.clip(r / 4.0, 0, 1)


def reconstruction_circle(shape_yx: tuple[int, int]) -> np.ndarray:
    """Bool ``(Y, X)``: pixels inside the circle inscribed in the matrix (the scanner's field of view)."""
    ny, nx = shape_yx
    y = np.arange(ny)[:, None] - (ny - 1) / 2
    x = np.arange(nx)[None, :] - (nx - 1) / 2
    return (y / (ny / 2)) ** 2 + (x / (nx / 2)) ** 2 <= 1.0
