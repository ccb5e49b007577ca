"""Training augmentation: batched, on the training device, applied to every patch as it is drawn.

The networks learnt what calcium looks like in one generator's images; these
transforms widen what a training patch can look like, so that they learn
what coronary calcium is. Each transform has its own probability per patch
and its own range, all stored in ``plan.json`` (``training.augmentation``)
through :meth:`Augmentation.to_dict`:

- **spatial** (one resampling of image and labels together, so they stay
  aligned): in-plane rotation about z, small out-of-plane tilts about y and
  x, isotropic scaling, and an elastic deformation (a smooth random
  displacement field). Labels are resampled by nearest neighbour, so they
  stay integer class codes; no flips (left and right arteries differ).
- **intensity**: a linear change of the HU calibration (``HU * scale +
  shift``), and a gamma curve on each side of the 130 HU point that
  changes the contrast of fat, blood and soft tissue (below it) and of
  calcium and bone (above it) but keeps every voxel on its side, so the
  labels (calcium is >= 130 HU) stay true.
- **noise**: white Gaussian noise, and correlated noise (Gaussian-smoothed
  white noise rescaled to its SD) as the texture of smoother or sharper
  reconstruction kernels; SDs in HU.
- **blur**: an anisotropic Gaussian blur (its own sigma in-plane and along
  z), as from softer kernels and thicker slice profiles.

Everything runs as batched tensor operations on the device that trains (the
patches are cut from volumes held there), so there is no data loader to
keep fed: on CPU the whole set costs about 0.1 s per batch of two
64 x 96 x 96 patches (``benchmarks/bench_augmentation.py``) beside about
1.2 s for the training step; on a GPU it is a few milliseconds.

Random numbers come from a :class:`torch.Generator`, so a seed fixes the
result (on one device type).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from cacscore.errors import InvalidInputError
from cacscore.preprocess import CLIP_HU, ENHANCE_THRESHOLD_HU

#: Keys of augmentation blocks written before version 2 (``p_spatial`` ...), read by
#: :meth:`Augmentation.from_dict`.
_V1_KEYS = {"p_spatial", "scale", "intensity_scale", "intensity_shift", "noise_sd"}
#: Format of :meth:`Augmentation.to_dict`.
AUGMENTATION_VERSION = 2


def _range(name: str, value: Any, low: float | None = None) -> tuple[float, float]:
    try:
        pair = (float(value[0]), float(value[1]))
    except (TypeError, ValueError, IndexError, KeyError):
        raise InvalidInputError(f"augmentation {name} must be a [low, high] pair, got {value!r}") from None
    if not (math.isfinite(pair[0]) and math.isfinite(pair[1])) or pair[0] > pair[1]:
        raise InvalidInputError(
            f"augmentation {name} must be a finite [low, high] with low <= high, got {value!r}"
        )
    if low is not None and pair[0] < low:
        raise InvalidInputError(f"augmentation {name} must not go below {low}, got {value!r}")
    return pair


@dataclass(frozen=True)
class Augmentation:
    """Probabilities (per patch) and ranges of each transform; see the module docstring.

    Ranges are ``(low, high)`` and drawn uniformly. Voxel units are those of
    the low-resolution network grid (2.5 or 3 mm, isotropic).

    Parameters
    ----------
    p_rotation : float
        Probability of a rotation.
    rotation_deg : float
        Largest in-plane rotation about the z axis, degrees (either way).
    tilt_deg : float
        Largest out-of-plane rotation about the y and about the x axis, degrees.
    p_scale : float
        Probability of an isotropic scaling.
    scale_range : (float, float)
        Zoom factor (1.1: anatomy 10 % larger).
    p_elastic : float
        Probability of an elastic deformation.
    elastic_voxels : float
        Largest displacement SD of the control points, voxels.
    elastic_spacing_voxels : float
        Distance between the control points of the displacement field, voxels.
    p_intensity : float
        Probability of a change of the HU calibration.
    hu_scale_range : (float, float)
        Factor on HU (about 0 HU, water).
    hu_shift_range : (float, float)
        Offset added to HU.
    p_gamma : float
        Probability of a gamma curve.
    gamma_range : (float, float)
        Exponent, drawn log-uniformly; applied to each side of the 130 HU point.
    p_noise : float
        Probability of white noise.
    noise_sd_hu : (float, float)
        Its SD, HU.
    p_correlated_noise : float
        Probability of correlated noise.
    correlated_noise_sd_hu : (float, float)
        Its SD, HU.
    correlated_noise_sigma_voxels : (float, float)
        Correlation length (Gaussian sigma), voxels.
    p_blur : float
        Probability of a blur.
    blur_sigma_voxels : (float, float)
        In-plane Gaussian sigma, voxels.
    blur_sigma_z_voxels : (float, float)
        Gaussian sigma along z, voxels (drawn independently: anisotropic).

    Raises
    ------
    InvalidInputError
        A probability outside [0, 1] or a malformed range (on construction).
    """

    p_rotation: float = 0.3
    rotation_deg: float = 15.0
    tilt_deg: float = 5.0
    p_scale: float = 0.3
    scale_range: tuple[float, float] = (0.85, 1.15)
    p_elastic: float = 0.2
    elastic_voxels: float = 1.0
    elastic_spacing_voxels: float = 12.0
    p_intensity: float = 0.5
    hu_scale_range: tuple[float, float] = (0.95, 1.05)
    hu_shift_range: tuple[float, float] = (-15.0, 15.0)
    p_gamma: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.4)
    p_noise: float = 0.3
    noise_sd_hu: tuple[float, float] = (0.0, 15.0)
    p_correlated_noise: float = 0.2
    correlated_noise_sd_hu: tuple[float, float] = (0.0, 15.0)
    correlated_noise_sigma_voxels: tuple[float, float] = (0.5, 1.5)
    p_blur: float = 0.2
    blur_sigma_voxels: tuple[float, float] = (0.3, 0.8)
    blur_sigma_z_voxels: tuple[float, float] = (0.3, 1.2)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_"):
                if not 0.0 <= float(value) <= 1.0:
                    raise InvalidInputError(
                        f"augmentation {f.name} must be a probability in [0, 1], got {value!r}"
                    )
                object.__setattr__(self, f.name, float(value))
            elif isinstance(f.default, tuple):
                positive = f.name not in ("hu_shift_range",)
                pair = _range(f.name, value, 0.0 if positive else None)
                if f.name in ("scale_range", "gamma_range", "hu_scale_range") and pair[0] <= 0:
                    raise InvalidInputError(f"augmentation {f.name} must be > 0, got {value!r}")
                object.__setattr__(self, f.name, pair)
            else:
                if not (math.isfinite(float(value)) and float(value) >= 0):
                    raise InvalidInputError(f"augmentation {f.name} must be >= 0, got {value!r}")
                object.__setattr__(self, f.name, float(value))
        if self.elastic_spacing_voxels < 1:
            raise InvalidInputError(
                f"augmentation elastic_spacing_voxels must be >= 1, got {self.elastic_spacing_voxels}"
            )

    @classmethod
    def none(cls) -> Augmentation:
        """No augmentation at all (every probability 0)."""
        off: dict[str, Any] = {f.name: 0.0 for f in fields(cls) if f.name.startswith("p_")}
        return cls(**off)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (ranges as lists), with ``version`` and the units."""
        data: dict[str, Any] = {"version": AUGMENTATION_VERSION}
        for key, value in asdict(self).items():
            data[key] = list(value) if isinstance(value, tuple) else value
        data["units"] = (
            "HU for intensities and noise SDs; low-resolution voxels for lengths; degrees for angles"
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Augmentation:
        """Inverse of :meth:`to_dict`.

        Also reads the first format (``p_spatial``, ``noise_sd``...) of older plans.

        Raises
        ------
        InvalidInputError
            Unknown keys or bad values.
        """
        data = dict(data)
        if "version" not in data and _V1_KEYS & set(data):
            return cls._from_v1(data)
        data.pop("version", None)
        data.pop("units", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"unknown augmentation settings {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    @classmethod
    def _from_v1(cls, data: dict[str, Any]) -> Augmentation:
        """The first format: one spatial probability, relative [0, 1]-scale intensity values."""
        unit_hu = CLIP_HU[1] - CLIP_HU[0]  # HU per unit of the [0, 1] scale
        scale = float(data.get("scale", 0.1))
        shift = float(data.get("intensity_shift", 0.01)) * unit_hu
        gain = float(data.get("intensity_scale", 0.05))
        return cls(
            p_rotation=float(data.get("p_spatial", 0.33)),
            rotation_deg=float(data.get("rotation_deg", 10.0)),
            tilt_deg=0.0,
            p_scale=float(data.get("p_spatial", 0.33)),
            scale_range=(1 - scale, 1 + scale),
            p_elastic=0.0,
            p_intensity=float(data.get("p_intensity", 0.5)),
            hu_scale_range=(1 - gain, 1 + gain),
            hu_shift_range=(-shift, shift),
            p_gamma=0.0,
            p_noise=float(data.get("p_noise", 0.3)),
            noise_sd_hu=(0.0, float(data.get("noise_sd", 0.01)) * unit_hu),
            p_correlated_noise=0.0,
            p_blur=0.0,
        )

    def __call__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        generator: torch.Generator,
        *,
        clip_hu: tuple[float, float] = CLIP_HU,
        threshold_hu: float = ENHANCE_THRESHOLD_HU,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch on its device.

        Parameters
        ----------
        images : (B, 1, Z, Y, X) tensor of float32
            Network input on the [0, 1] scale of ``clip_hu``.
        targets : (B, Z, Y, X) tensor of uint8
            Class indices (255: ignored).
        generator : torch.Generator
            On the tensors' device; fixes the result.
        clip_hu : (float, float)
            The HU window that [0, 1] stands for (the plan's ``preprocessing.clip_hu``).
        threshold_hu : float
            The calcium threshold the gamma curve keeps in place, HU.

        Returns
        -------
        images : (B, 1, Z, Y, X) tensor of float32
            Clamped to [0, 1].
        targets : (B, Z, Y, X) tensor
            Same dtype; every value is one of the input's values.
        """
        if images.ndim != 5 or targets.shape != images.shape[:1] + images.shape[2:]:
            raise InvalidInputError(
                f"expected images (B, 1, Z, Y, X) and targets (B, Z, Y, X), got "
                f"{tuple(images.shape)} and {tuple(targets.shape)}"
            )
        hu_per_unit = float(clip_hu[1] - clip_hu[0])
        level = (min(max(threshold_hu, clip_hu[0]), clip_hu[1]) - clip_hu[0]) / hu_per_unit
        draw = _Draws(images.shape[0], generator, images.device)
        images, targets = self._spatial(images, targets, draw)
        images = self._intensity(images, draw, clip_hu, hu_per_unit, level)
        images = self._noise_and_blur(images, draw, hu_per_unit)
        return images.clamp(0, 1), targets

    # -- the transforms -------------------------------------------------------------------------------

    def _spatial(
        self, images: torch.Tensor, targets: torch.Tensor, draw: _Draws
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = images.shape[0]
        rotate, zoom, elastic = (
            draw.chance(self.p_rotation),
            draw.chance(self.p_scale),
            draw.chance(self.p_elastic),
        )
        angles = (
            draw.uniform(-1, 1, (b, 3))
            * torch.tensor([self.rotation_deg, self.tilt_deg, self.tilt_deg], device=images.device)
            * (math.pi / 180)
        )
        factor = torch.exp(draw.uniform(math.log(self.scale_range[0]), math.log(self.scale_range[1]), (b,)))
        chosen = rotate | zoom | elastic
        if not bool(chosen.any()):
            return images, targets
        idx = torch.nonzero(chosen).flatten()
        angles = angles[idx] * rotate[idx, None]
        factor = torch.where(zoom[idx], factor[idx], torch.ones_like(factor[idx]))
        depth, height, width = images.shape[2:]
        # affine_grid works in coordinates normalised to [-1, 1] per axis, (x, y, z) order; the rotation is
        # built in voxel units and conjugated with the half-sizes so that it stays a rotation in non-cubic
        # patches.
        half = torch.tensor([width / 2, height / 2, depth / 2], device=images.device)
        matrix = (
            _rotation_xyz(angles) / factor[:, None, None]
        )  # output voxel -> input voxel, about the centre
        theta = torch.zeros(len(idx), 3, 4, device=images.device)
        theta[:, :, :3] = matrix * half[None, None, :] / half[None, :, None]
        shape = [len(idx), 1, depth, height, width]
        grid = F.affine_grid(theta, shape, align_corners=False)
        if bool(elastic[idx].any()):
            grid = grid + self._displacement(draw, elastic[idx], (depth, height, width), half)
        moved = F.grid_sample(images[idx], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        moved_t = F.grid_sample(
            targets[idx, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
        )[:, 0]
        images = images.clone()
        targets = targets.clone()
        images[idx] = moved
        targets[idx] = moved_t.round().to(targets.dtype)
        return images, targets

    def _displacement(
        self, draw: _Draws, which: torch.Tensor, shape: tuple[int, int, int], half: torch.Tensor
    ) -> torch.Tensor:
        """A smooth random displacement in normalised (x, y, z) units, ``(n, Z, Y, X, 3)``.

        It is zero where not ``which``.
        """
        coarse = [max(2, math.ceil(n / self.elastic_spacing_voxels) + 1) for n in shape]
        field = draw.normal((len(which), 3, *coarse)) * self.elastic_voxels * which.view(-1, 1, 1, 1, 1)
        field = F.interpolate(field, size=shape, mode="trilinear", align_corners=True)
        return field.permute(0, 2, 3, 4, 1) / half  # voxels -> normalised units, per axis

    def _intensity(
        self,
        images: torch.Tensor,
        draw: _Draws,
        clip_hu: tuple[float, float],
        hu_per_unit: float,
        level: float,
    ) -> torch.Tensor:
        b = images.shape[0]
        linear = draw.chance(self.p_intensity)
        gain = torch.where(linear, draw.uniform(*self.hu_scale_range, (b,)), 1.0)
        shift = torch.where(linear, draw.uniform(*self.hu_shift_range, (b,)), 0.0)
        gamma_on = draw.chance(self.p_gamma)
        gamma = torch.exp(draw.uniform(math.log(self.gamma_range[0]), math.log(self.gamma_range[1]), (b,)))
        if bool(linear.any()):
            hu = images * hu_per_unit + clip_hu[0]
            hu = hu * gain.view(b, 1, 1, 1, 1) + shift.view(b, 1, 1, 1, 1)
            images = torch.where(linear.view(b, 1, 1, 1, 1), (hu - clip_hu[0]) / hu_per_unit, images).clamp(
                0, 1
            )
        if bool(gamma_on.any()) and 0 < level < 1:
            g = gamma.view(b, 1, 1, 1, 1)
            below = level * (images / level).clamp(0, 1) ** g
            above = level + (1 - level) * ((images - level) / (1 - level)).clamp(0, 1) ** g
            curved = torch.where(images < level, below, above)
            images = torch.where(gamma_on.view(b, 1, 1, 1, 1), curved, images)
        return images

    def _noise_and_blur(self, images: torch.Tensor, draw: _Draws, hu_per_unit: float) -> torch.Tensor:
        b = images.shape[0]
        blur = draw.chance(self.p_blur)
        sigma_xy = draw.uniform(*self.blur_sigma_voxels, (b,))
        sigma_z = draw.uniform(*self.blur_sigma_z_voxels, (b,))
        if bool(blur.any()):
            idx = torch.nonzero(blur).flatten()
            images = images.clone()
            images[idx] = _gaussian_blur(
                images[idx], torch.stack([sigma_z[idx], sigma_xy[idx], sigma_xy[idx]], 1)
            )
        white = draw.chance(self.p_noise)
        white_sd = draw.uniform(*self.noise_sd_hu, (b,)) / hu_per_unit
        if bool(white.any()):
            noise = draw.normal(tuple(images.shape))
            images = images + noise * (white_sd * white).view(b, 1, 1, 1, 1)
        coloured = draw.chance(self.p_correlated_noise)
        coloured_sd = draw.uniform(*self.correlated_noise_sd_hu, (b,)) / hu_per_unit
        sigma = draw.uniform(*self.correlated_noise_sigma_voxels, (b,))
        if bool(coloured.any()):
            idx = torch.nonzero(coloured).flatten()
            noise = _gaussian_blur(draw.normal((len(idx), *images.shape[1:])), sigma[idx, None].expand(-1, 3))
            # Smoothing lowers the SD; rescale each patch's noise to the SD drawn for it.
            noise = noise / noise.flatten(1).std(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1, 1)
            images = images.clone()
            images[idx] = images[idx] + noise * coloured_sd[idx].view(-1, 1, 1, 1, 1)
        return images


class _Draws:
    """Random draws for a batch, all from one generator, in a fixed order (so a seed fixes the result)."""

    def __init__(self, batch: int, generator: torch.Generator, device: torch.device) -> None:
        self.batch, self.generator, self.device = batch, generator, device

    def uniform(self, low: float, high: float, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=self.device) * (high - low) + low

    def chance(self, p: float) -> torch.Tensor:
        return torch.rand(self.batch, generator=self.generator, device=self.device) < p

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device)


def _rotation_xyz(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices in (x, y, z) coordinates.

    About z by ``angles[:, 0]``, then y by ``[:, 1]``, x by ``[:, 2]``.
    """
    n = angles.shape[0]
    c, s = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones(n, device=angles.device), torch.zeros(n, device=angles.device)
    rz = torch.stack([c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0], zero, zero, zero, one], 1).view(n, 3, 3)
    ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], 1).view(n, 3, 3)
    rx = torch.stack([one, zero, zero, zero, c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2]], 1).view(n, 3, 3)
    return rx @ ry @ rz


def _gaussian_blur(images: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of each patch with its own sigmas.

    Parameters
    ----------
    images : (N, 1, Z, Y, X) tensor
    sigmas : (N, 3) tensor
        Sigma along z, y, x in voxels; 0 leaves that axis as it is.
    """
    n = images.shape[0]
    radius = max(1, math.ceil(3 * float(sigmas.max())))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    out = images.reshape(1, n, *images.shape[2:])  # patches as channels: one grouped convolution per axis
    for axis in range(3):
        sigma = sigmas[:, axis].to(images.dtype).clamp_min(1e-3)
        kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
        kernel = kernel / kernel.sum(dim=1, keepdim=True)
        shape = [n, 1, 1, 1, 1]
        shape[2 + axis] = 2 * radius + 1
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        out = F.conv3d(F.pad(out, pad, mode="replicate"), kernel.view(shape), groups=n)
    return out.reshape(images.shape)


__all__ = ["AUGMENTATION_VERSION", "Augmentation"]
