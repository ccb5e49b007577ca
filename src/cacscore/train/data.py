"""Training data: preprocessed low-resolution cases, the validation split, patches and augmentation.

Every case is preprocessed once (:func:`cacscore.preprocess.preprocess_volume`
and :func:`cacscore.preprocess.downsample_labels`) and cached as
``MODEL_DIR/cache/<case_id>.npz`` so that an interrupted run resumes without
reading the scans again. Patches and augmentation run as batched tensor
operations on the training device.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cacscore.datasets.base import CaseRef
from cacscore.errors import CacScoreWarning, InvalidInputError
from cacscore.preprocess import downsample_labels, preprocess_volume, target_spacing_mm

#: Class index used for voxels that must not count in the loss (calcium of unknown artery).
IGNORE = 255


@dataclass
class CachedCase:
    """One preprocessed case on the low-resolution grid.

    Parameters
    ----------
    case_id : str
    image : (Z, Y, X) ndarray of float32
        Network input in [0, 1].
    target : (Z, Y, X) ndarray of uint8
        Class index per voxel (0 background), :data:`IGNORE` where unknown.
    spacing : tuple of 3 float
        Low-resolution spacing, mm.
    """

    case_id: str
    image: np.ndarray
    target: np.ndarray
    spacing: tuple[float, float, float]


def class_lut(class_codes: Sequence[int]) -> np.ndarray:
    """Lookup table project code (0-5) -> class index; codes without a class map to :data:`IGNORE`.

    The binary head (codes ``[0, 1]``) maps every calcium code to class 1.
    """
    lut = np.full(6, IGNORE, dtype=np.uint8)
    lut[0] = 0
    if list(class_codes) == [0, 1]:
        lut[1:] = 1
    else:
        for index, code in enumerate(class_codes):
            lut[code] = index
    return lut


def prepare_case(ref: CaseRef, cache_dir: Path, preprocessing: dict[str, Any]) -> Path:
    """Read, preprocess and cache one case (skipped when the cache file exists).

    The cache holds the image and the downsampled project-code labels, so the
    same cache serves both heads.

    Raises
    ------
    InvalidInputError
        If the case cannot be read or has no reference mask.
    """
    path = cache_dir / f"{ref.case_id}.npz"
    if path.is_file():
        return path
    with warnings.catch_warnings():
        # Read warnings (overlapping reconstruction, kVp...) matter when scoring, not for training input.
        warnings.simplefilter("ignore", CacScoreWarning)
        case = ref.load()
    if case.label is None:
        raise InvalidInputError(f"case {ref.case_id} ({ref.image_path}) has no reference labels to train on")
    volume = case.volume
    target_mm = target_spacing_mm(volume.spacing[0], tuple(preprocessing["target_spacings_mm"]))
    image, grid = preprocess_volume(volume.hu, volume.spacing, target_mm=target_mm,
                                    clip_hu=tuple(preprocessing["clip_hu"]),  # type: ignore[arg-type]
                                    enhance=bool(preprocessing["enhancement"]["enabled"]))
    labels = downsample_labels(case.label, grid)
    tmp = cache_dir / f".{ref.case_id}.tmp.npz"
    np.savez(tmp, image=image.astype(np.float32), labels=labels, spacing=np.asarray(grid.spacing))
    os.replace(tmp, path)
    return path


def _prepare_worker(args: tuple[dict[str, Any], str, dict[str, Any]]) -> str:
    torch.set_num_threads(1)
    ref, cache_dir, preprocessing = args
    return str(prepare_case(CaseRef.from_dict(ref), Path(cache_dir), preprocessing))


def prepare_cases(refs: Sequence[CaseRef], cache_dir: Path, preprocessing: dict[str, Any], *, workers: int = 0,
                  advance: Callable[[], None] | None = None) -> list[Path]:
    """Preprocess every case into ``cache_dir`` (in ``workers`` processes when > 1), in ``refs`` order."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    todo = [r for r in refs if not (cache_dir / f"{r.case_id}.npz").is_file()]
    if workers > 1 and len(todo) > 1:
        import multiprocessing

        jobs = [(r.to_dict(), str(cache_dir), preprocessing) for r in todo]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for _ in pool.map(_prepare_worker, jobs, chunksize=1):
                if advance is not None:
                    advance()
    else:
        for ref in todo:
            prepare_case(ref, cache_dir, preprocessing)
            if advance is not None:
                advance()
    return [cache_dir / f"{r.case_id}.npz" for r in refs]


def load_cached(path: Path, class_codes: Sequence[int]) -> CachedCase:
    """Read a cache file written by :func:`prepare_case`, with labels as class indices of the head."""
    with np.load(path) as data:
        image = data["image"].astype(np.float32)
        labels = data["labels"]
        spacing = tuple(float(v) for v in data["spacing"])
    target = class_lut(class_codes)[labels]
    return CachedCase(path.stem, image, target, spacing)  # type: ignore[arg-type]


def split_cases(case_ids: Sequence[str], n_val: int, seed: int) -> tuple[list[str], list[str]]:
    """Fixed (seeded) split into training and validation ids; ``n_val`` is capped at a fifth of the cases.

    Raises
    ------
    InvalidInputError
        With fewer than two cases.
    """
    ids = list(case_ids)
    if len(ids) < 2:
        raise InvalidInputError(f"training needs at least 2 cases (one for validation), found {len(ids)}")
    n_val = max(1, min(int(n_val), len(ids) // 5 if len(ids) >= 10 else 1))
    order = np.random.default_rng(seed).permutation(len(ids))
    val = sorted(ids[i] for i in order[:n_val])
    train = [ids[i] for i in sorted(order[n_val:])]
    return train, val


class PatchSampler:
    """Random patches of the training cases, 2/3 (``calcium_fraction``) centred on a calcium voxel.

    Volumes are kept on ``device``, zero-padded to at least the patch size.
    """

    def __init__(self, cases: Sequence[CachedCase], patch: tuple[int, int, int], device: torch.device,
                 calcium_fraction: float = 2 / 3) -> None:
        if not cases:
            raise InvalidInputError("no training cases")
        self.patch = tuple(int(p) for p in patch)
        self.calcium_fraction = float(calcium_fraction)
        self.images: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.calcium: list[np.ndarray] = []
        for case in cases:
            pad = [(0, max(0, p - n)) for p, n in zip(self.patch, case.image.shape)]
            image = np.pad(case.image, pad)
            target = np.pad(case.target, pad)
            self.images.append(torch.from_numpy(image).to(device))
            self.targets.append(torch.from_numpy(target).to(device))
            fg = np.argwhere((target > 0) & (target != IGNORE))
            self.calcium.append(fg.astype(np.int64))

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` patches: images ``(B, 1, *patch)`` float32 and targets ``(B, *patch)`` uint8."""
        images, targets = [], []
        for _ in range(size):
            index = int(rng.integers(len(self.images)))
            image, target, fg = self.images[index], self.targets[index], self.calcium[index]
            shape = image.shape
            if fg.size and rng.random() < self.calcium_fraction:
                centre = fg[int(rng.integers(len(fg)))]
                # Jitter so that the calcium is not always at the patch centre.
                start = [int(c) - p // 2 + int(rng.integers(-(p // 4), p // 4 + 1)) for c, p in zip(centre, self.patch)]
            else:
                start = [int(rng.integers(0, n - p + 1)) for n, p in zip(shape, self.patch)]
            start = [min(max(s, 0), n - p) for s, n, p in zip(start, shape, self.patch)]
            sl = tuple(slice(s, s + p) for s, p in zip(start, self.patch))
            images.append(image[sl])
            targets.append(target[sl])
        return torch.stack(images)[:, None], torch.stack(targets)


@dataclass(frozen=True)
class Augmentation:
    """Anatomy-respecting augmentation (no flips: left and right arteries differ).

    Parameters
    ----------
    p_spatial : float
        Probability of an in-plane rotation and isotropic scaling per patch.
    rotation_deg : float
        Maximum in-plane rotation about the z axis, degrees.
    scale : float
        Maximum relative scaling (0.1: 0.9-1.1).
    p_intensity : float
        Probability of an intensity scale and shift per patch.
    intensity_scale, intensity_shift : float
        Maximum relative scale and absolute shift of the [0, 1] values.
    p_noise : float
        Probability of Gaussian noise per patch.
    noise_sd : float
        Maximum noise SD in [0, 1] units (0.01 is 11 HU).
    """

    p_spatial: float = 0.33
    rotation_deg: float = 10.0
    scale: float = 0.1
    p_intensity: float = 0.5
    intensity_scale: float = 0.05
    intensity_shift: float = 0.01
    p_noise: float = 0.3
    noise_sd: float = 0.01

    def to_dict(self) -> dict[str, float]:
        """JSON-ready settings."""
        return dict(self.__dict__)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch ``(B, 1, Z, Y, X)`` / ``(B, Z, Y, X)`` on its device."""
        device = images.device
        b = images.shape[0]

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(b, generator=generator, device=device) * (high - low) + low

        spatial = uniform(0, 1) < self.p_spatial
        if bool(spatial.any()):
            angle = uniform(-1, 1) * math.radians(self.rotation_deg) * spatial
            zoom = 1 + uniform(-1, 1) * self.scale * spatial
            cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
            theta = torch.zeros(b, 3, 4, device=device)
            # affine_grid's coordinates are (x, y, z): rotate x-y, scale all three.
            theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
            theta[:, 1, 0], theta[:, 1, 1] = sin, cos
            theta[:, 2, 2] = 1 / zoom
            grid = F.affine_grid(theta, list(images.shape), align_corners=False)
            moved = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            moved_t = F.grid_sample(targets[:, None].float(), grid, mode="nearest", padding_mode="zeros",
                                    align_corners=False)[:, 0].to(targets.dtype)
            keep = spatial.view(b, 1, 1, 1, 1)
            images = torch.where(keep, moved, images)
            targets = torch.where(keep[:, 0], moved_t, targets)
        intensity = (uniform(0, 1) < self.p_intensity).float()
        gain = 1 + uniform(-1, 1) * self.intensity_scale * intensity
        shift = uniform(-1, 1) * self.intensity_shift * intensity
        images = images * gain.view(b, 1, 1, 1, 1) + shift.view(b, 1, 1, 1, 1)
        noisy = (uniform(0, 1) < self.p_noise).float() * uniform(0, 1) * self.noise_sd
        images = images + torch.randn(images.shape, generator=generator, device=device) * noisy.view(b, 1, 1, 1, 1)
        return images.clamp(0, 1), targets
