"""Training data: preprocessed low-resolution cases, the validation split, patches and augmentation.

Every case is preprocessed once (:func:`cacscore.preprocess.preprocess_volume`
and :func:`cacscore.preprocess.downsample_labels`) and cached as
``CACHE/preprocessed/<preprocessing key>/<case_id>-<case key>.npz``, outside
the model folder (:func:`default_cache_dir`; ``--cache``), so that an
interrupted run, a second run on the same data or a fine-tune resumes without
reading the scans again. The case key changes with the files (paths, sizes,
modification times) and the declared mask convention, so an edited label is
preprocessed again. Patches and augmentation run as batched tensor operations
on the training device.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cacscore.datasets.base import CaseRef
from cacscore.errors import CacScoreWarning, InvalidInputError
from cacscore.io.atomic import atomic_open
from cacscore.preprocess import downsample_labels, preprocess_volume, scaled_threshold, target_spacing_mm
from cacscore.train.augment import Augmentation

#: Class index used for voxels that must not count in the loss (calcium of unknown artery).
IGNORE = 255
#: Environment variable naming the cache folder (preprocessed cases, checkpoints of running trainings).
CACHE_ENV = "CACSCORE_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$CACSCORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/cacscore``, else ``~/.cache/cacscore``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cacscore"


def _digest(value: Any, length: int = 12) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]


def preprocessed_dir(cache_root: Path, preprocessing: dict[str, Any]) -> Path:
    """Folder of the cases preprocessed with ``preprocessing`` (the plan's block) under ``cache_root``."""
    return Path(cache_root) / "preprocessed" / _digest(preprocessing)


def _stat(path: Path | None) -> list[Any]:
    if path is None:
        return [None]
    try:
        info = path.stat()
    except OSError:
        return [str(path), None]
    return [str(path.resolve()), info.st_size, info.st_mtime_ns]


def cache_file(cache_dir: Path, ref: CaseRef) -> Path:
    """The cache file of ``ref``: its id and a key of its files and declared mask convention."""
    key = _digest([_stat(ref.image_path), _stat(ref.reference_path), ref.mask_labels, ref.layout])
    return cache_dir / f"{ref.case_id}-{key}.npz"


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
    path = cache_file(cache_dir, ref)
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
    image, grid = preprocess_volume(
        volume.hu,
        volume.spacing,
        target_mm=target_mm,
        clip_hu=tuple(preprocessing["clip_hu"]),  # type: ignore[arg-type]
        enhance=bool(preprocessing["enhancement"]["enabled"]),
    )
    labels = downsample_labels(case.label, grid)
    with atomic_open(path) as fh:  # a file object: np.savez would add ".npz" to the temporary's name
        np.savez(fh, image=image.astype(np.float32), labels=labels, spacing=np.asarray(grid.spacing))
    return path


def _prepare_worker(args: tuple[dict[str, Any], str, dict[str, Any]]) -> str:
    torch.set_num_threads(1)
    ref, cache_dir, preprocessing = args
    return str(prepare_case(CaseRef.from_dict(ref), Path(cache_dir), preprocessing))


def prepare_cases(
    refs: Sequence[CaseRef],
    cache_dir: Path,
    preprocessing: dict[str, Any],
    *,
    workers: int = 0,
    advance: Callable[[], None] | None = None,
) -> list[Path]:
    """Preprocess every case into ``cache_dir`` (in ``workers`` processes when > 1), in ``refs`` order."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    todo = [r for r in refs if not cache_file(cache_dir, r).is_file()]
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
    return [cache_file(cache_dir, r) for r in refs]


def load_cached(path: Path, class_codes: Sequence[int], case_id: str | None = None) -> CachedCase:
    """Read a cache file written by :func:`prepare_case`, with labels as class indices of the head.

    ``case_id`` names the case (default: the file name).
    """
    with np.load(path) as data:
        image = data["image"].astype(np.float32)
        labels = data["labels"]
        spacing = tuple(float(v) for v in data["spacing"])
    target = class_lut(class_codes)[labels]
    return CachedCase(case_id or path.stem, image, target, spacing)  # type: ignore[arg-type]


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
    """Random patches of the training cases, of three kinds.

    - ``calcium_fraction`` of them centred on a labelled calcium voxel (jittered by up to a quarter patch
      each way, so that the calcium is not always in the middle);
    - ``context_fraction`` centred on a voxel at or above the calcium threshold (``level`` on the [0, 1]
      scale) that is *not* labelled calcium and lies within ``context_radius_mm`` of the heart: aortic
      root and valve, mitral annulus, pericardium, sternum and spine next to the heart; the
      look-alikes the network must learn to leave out, seen with the coronary arteries around them.
      Where the heart is: the centroid of the case's calcium, or the volume's centre in a case
      without calcium (cardiac scans are centred on the heart);
    - the rest anywhere in the volume.

    A patch of the default 64 x 96 x 96 voxels at 2.5-3 mm spans 160-190 mm along z and 240-290 mm
    in-plane, the whole heart with the aortic root, so every kind sees its surroundings.
    Volumes are kept on ``device``, zero-padded to at least the patch size.

    Raises
    ------
    InvalidInputError
        No cases, or fractions outside [0, 1] or adding up to more than 1.
    """

    def __init__(
        self,
        cases: Sequence[CachedCase],
        patch: tuple[int, int, int],
        device: torch.device,
        calcium_fraction: float = 2 / 3,
        *,
        context_fraction: float = 0.0,
        context_radius_mm: float = 60.0,
        level: float | None = None,
    ) -> None:
        if not cases:
            raise InvalidInputError("no training cases")
        if not (
            0 <= calcium_fraction <= 1
            and 0 <= context_fraction <= 1
            and calcium_fraction + context_fraction <= 1 + 1e-9
        ):
            raise InvalidInputError(
                f"calcium_fraction ({calcium_fraction}) and context_fraction "
                f"({context_fraction}) must be in [0, 1] and add up to at most 1"
            )
        self.patch = tuple(int(p) for p in patch)
        self.calcium_fraction = float(calcium_fraction)
        self.context_fraction = float(context_fraction)
        level = scaled_threshold() if level is None else float(level)
        self.images: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.calcium: list[np.ndarray] = []
        self.context: list[np.ndarray] = []
        for case in cases:
            pad = [(0, max(0, p - n)) for p, n in zip(self.patch, case.image.shape)]
            image = np.pad(case.image, pad)
            target = np.pad(case.target, pad)
            self.images.append(torch.from_numpy(image).to(device))
            self.targets.append(torch.from_numpy(target).to(device))
            fg = np.argwhere((target > 0) & (target != IGNORE))
            self.calcium.append(fg.astype(np.int64))
            self.context.append(context_voxels(case, level, context_radius_mm, fg))

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` patches: images ``(B, 1, *patch)`` float32 and targets ``(B, *patch)`` uint8."""
        images, targets = [], []
        for _ in range(size):
            index = int(rng.integers(len(self.images)))
            image, target = self.images[index], self.targets[index]
            shape = image.shape
            draw = rng.random()
            centres = None
            if draw < self.calcium_fraction:
                centres = self.calcium[index]
            elif draw < self.calcium_fraction + self.context_fraction:
                centres = self.context[index]
            if centres is not None and centres.size:
                centre = centres[int(rng.integers(len(centres)))]
                start = [
                    int(c) - p // 2 + int(rng.integers(-(p // 4), p // 4 + 1))
                    for c, p in zip(centre, self.patch)
                ]
            else:
                start = [int(rng.integers(0, n - p + 1)) for n, p in zip(shape, self.patch)]
            start = [min(max(s, 0), n - p) for s, n, p in zip(start, shape, self.patch)]
            sl = tuple(slice(s, s + p) for s, p in zip(start, self.patch))
            images.append(image[sl])
            targets.append(target[sl])
        return torch.stack(images)[:, None], torch.stack(targets)


#: Most context voxels kept per case (a random subset beyond), to bound memory on large cohorts.
MAX_CONTEXT_VOXELS = 20000


def context_voxels(
    case: CachedCase, level: float, radius_mm: float, calcium: np.ndarray | None = None
) -> np.ndarray:
    """Voxels at or above ``level`` that are not labelled and lie within ``radius_mm`` of the heart.

    Parameters
    ----------
    case : CachedCase
    level : float
        Calcium threshold on the [0, 1] scale.
    radius_mm : float
        Largest distance from the heart's centre (the centroid of the labelled
        calcium, else the volume's centre), mm.
    calcium : (N, 3) ndarray of int, optional
        The labelled voxels (computed when not given).

    Returns
    -------
    (M, 3) ndarray of int64
        ``(z, y, x)`` indices, at most :data:`MAX_CONTEXT_VOXELS` (a fixed subset).
    """
    if calcium is None:
        calcium = np.argwhere((case.target > 0) & (case.target != IGNORE))
    centre = calcium.mean(axis=0) if len(calcium) else (np.asarray(case.image.shape) - 1) / 2
    candidates = np.argwhere((case.image >= level) & (case.target == 0))
    distance_mm = np.sqrt((((candidates - centre) * np.asarray(case.spacing)) ** 2).sum(axis=1))
    near = candidates[distance_mm <= radius_mm].astype(np.int64)
    if len(near) > MAX_CONTEXT_VOXELS:
        near = near[np.sort(np.random.default_rng(0).choice(len(near), MAX_CONTEXT_VOXELS, replace=False))]
    return near


class MixedSampler:
    """Patches from ``main``, each drawn from ``replay`` instead with probability ``fraction``.

    Replay mixes cases of the parent model's data into a fine-tune so that the
    network does not forget them.
    """

    def __init__(self, main: PatchSampler, replay: PatchSampler, fraction: float) -> None:
        if not 0 <= fraction <= 1:
            raise InvalidInputError(f"replay fraction must be in [0, 1], got {fraction}")
        self.main, self.replay, self.fraction = main, replay, float(fraction)

    def batch(self, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`PatchSampler.batch`."""
        parts = [
            (self.replay if rng.random() < self.fraction else self.main).batch(rng, 1) for _ in range(size)
        ]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


__all__ = [
    "Augmentation",
    "CachedCase",
    "MixedSampler",
    "PatchSampler",
    "cache_file",
    "context_voxels",
    "default_cache_dir",
    "prepare_cases",
    "preprocessed_dir",
    "split_cases",
]
