"""Training of the ensemble: one member after the other, checkpoint every epoch, resumable.

Each member is a :class:`cacscore.model.network.ResUNet3d` trained from
scratch (or, with ``init``, fine-tuned from member k of an existing model)
with Adam on random, augmented patches (2/3 centred on calcium, 1/5 on
calcium-like voxels near the heart that are not coronary; see
:class:`cacscore.train.data.PatchSampler` and :mod:`cacscore.train.augment`)
of the preprocessed training cases; after every epoch it segments the whole low-resolution
validation volumes, and the epoch with the best mean
calcium-class Dice becomes the member's weights (as the paper chooses its
best epoch on 20 validation cases). Members differ by seed, hence by
initialisation and data order (and by fold with ``folds``).

The loss is computed on the *candidate* voxels only: labelled voxels and
voxels whose scaled value is at least the scaled 130 HU threshold minus a
margin (:data:`CANDIDATE_MARGIN`). The enhancement guarantees that every
other low-resolution voxel holds no source voxel >= 130 HU, so the final
intersection with HU >= 130 removes whatever is predicted there; restricting
the loss to candidates turns a task where calcium is 1 voxel in 10,000 into
a balanced one (calcium vs bone, valves, aortic wall, noise) and makes the
networks learn in minutes instead of stalling at "all background".

The learning rate follows a polynomial decay, ``lr * (1 - progress) ** 0.9``,
where progress is the larger of the epoch fraction and, with a time limit,
the fraction of the member's time share used; a member stops when progress
reaches 1, so a time-limited run still ends with a low learning rate.

Fine-tuning (``init``; :meth:`TrainConfig.fine_tune` inherits the parent's
recipe) ends with the parent's post-processing adapted to the new members
(:mod:`cacscore.train.finetune`). Preprocessed cases and checkpoints live in
the cache folder, never in the model folder.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cacscore import __version__
from cacscore.datasets.base import CaseRef, check_mask_labels
from cacscore.errors import CacScoreError, InvalidInputError, ModelFolderError
from cacscore.io.atomic import atomic_path
from cacscore.labels import ARTERY_NAMES, NAMED_ARTERIES
from cacscore.model.network import HEAD_CLASSES, LOSSES, ResUNet3d, count_parameters, segmentation_loss
from cacscore.model.plan import HEAD_CLASS_CODES, PLAN_VERSION, Plan
from cacscore.model.weights import load_member, save_member
from cacscore.preprocess import CLIP_HU, ENHANCE_THRESHOLD_HU, preprocessing_dict, scaled_threshold
from cacscore.train.data import (
    IGNORE,
    Augmentation,
    CachedCase,
    MixedSampler,
    PatchSampler,
    default_cache_dir,
    load_cached,
    prepare_cases,
    preprocessed_dir,
    split_cases,
)

#: Margin below the scaled threshold still counted as candidate (intensity augmentation moves values).
CANDIDATE_MARGIN = 0.03
#: Keys of a parent's ``training`` block that :meth:`TrainConfig.fine_tune` inherits, and their setting.
INHERITED: dict[str, str] = {
    "members": "members",
    "epochs": "epochs",
    "steps_per_epoch": "steps_per_epoch",
    "batch": "batch",
    "patch_zyx": "patch",
    "lr": "lr",
    "loss": "loss",
    "val_metric": "val_metric",
    "val_cases": "val_cases",
    "folds": "folds",
    "calcium_fraction": "calcium_fraction",
    "context_fraction": "context_fraction",
    "context_radius_mm": "context_radius_mm",
    "augmentation": "augmentation",
    "amp_bf16": "amp",
}
#: Validation metrics that can choose a member's best epoch, and their description in the plan.
VAL_METRICS = {"dice": "Dice pooled over the cases", "case_dice": "mean of the per-case Dice"}

#: Called with a progress event: ("prepare", done, total), ("member", k, n),
#: ("step", step, total_steps, loss), ("epoch", epoch, epochs, loss, val_dice, best, seconds),
#: ("done", k, best_epoch, best_dice).
Reporter = Callable[..., None]


@dataclass
class TrainConfig:
    """Settings of a training run (stored in ``plan.json``).

    Parameters
    ----------
    data : Path
        Dataset root, any layout :func:`cacscore.datasets.list_cases` reads.
    val_data : Path or None
        A separate validation dataset; all of ``data`` is then used for training.
    out : Path
        Model folder to write.
    members : int
        Ensemble size.
    head : {"arteries", "binary"}
        Output head.
    epochs : int
        Maximum epochs per member.
    steps_per_epoch : int or None
        Optimiser steps per epoch; default one pass over the training cases.
    batch : int
        Patches per step.
    patch : tuple of 3 int
        Patch size in low-resolution voxels (z, y, x).
    lr : float
        Initial Adam learning rate.
    loss : {"dice", "dice_ce", "dice_topk"}
        Dice (the paper), Dice + cross-entropy, or Dice + the cross-entropy of
        the hardest 10 % of voxels (see :func:`cacscore.model.segmentation_loss`).
    val_metric : {"dice", "case_dice"}
        What chooses each member's best epoch (see :func:`validation_dice`):
        Dice pooled over the validation cases, or the mean of each case's Dice.
    val_cases : int
        Validation cases (capped at a fifth of the data).
    folds : bool
        Member k also leaves out the k-th of ``members`` folds of the training cases.
    filters : tuple of int
        Filters per level.
    seed : int
        Base seed (split and member k uses ``seed + k``).
    device : {"auto", "cpu", "cuda"}
    amp : bool
        bfloat16 autocast (CPU and CUDA).
    workers : int
        Processes for preprocessing (0: in this process).
    max_minutes : float or None
        Time limit for training all members (preprocessing excluded); None: no limit.
    calcium_fraction : float
        Fraction of patches centred on a calcium voxel.
    context_fraction : float
        Fraction of patches centred on a voxel >= 130 HU that is not coronary
        calcium, near the heart (aortic root and valve, annulus, bone next to
        the heart; see :class:`cacscore.train.data.PatchSampler`).
    context_radius_mm : float
        How near the heart's centre those voxels lie, mm.
    augmentation : Augmentation
        Probabilities and ranges of the transforms (:mod:`cacscore.train.augment`).
    half_weights : bool
        Store member weights as float16.
    cache_dir : Path or None
        Cache folder (preprocessed cases, checkpoints of the running training);
        default :func:`cacscore.train.data.default_cache_dir`. Never the model folder.
    init : Path or None
        A model folder to fine-tune: member k starts from its member ``k mod n``
        instead of random weights. Its head and filters must match.
        :meth:`fine_tune` builds a configuration that inherits its recipe.
    mask_labels : {"project", "orcascore", "binary"} or None
        Label convention of the masks of ``data`` and ``val_data`` (None: each layout's own).
    replay : Path or None
        A dataset of the parent model's data family (fine-tuning): patches are
        drawn from it with probability ``replay_fraction``, so that the
        network does not forget it. Not used for validation.
    replay_fraction : float
        Share of patches from ``replay``.
    lesion_filter : {"refit", "drop"}
        Fine-tuning a parent with a lesion filter: fit a new one for the new
        members on the validation cases at the end ("refit"), or leave it out
        ("drop": the inherited vote rules decide).
    filter_data : tuple of Path
        More labelled datasets the refit also uses (cases that train nothing,
        e.g. phantoms of the parent's family: they hold the aortic root and
        valve calcium the filter learns to drop).
    inherited : tuple of str
        The settings taken from the parent (set by :meth:`fine_tune`; recorded in the plan).
    name, model_version : str
        Model identity written to the plan.
    """

    data: Path
    out: Path
    val_data: Path | None = None
    members: int = 5
    head: str = "arteries"
    epochs: int = 40
    steps_per_epoch: int | None = None
    batch: int = 2
    patch: tuple[int, int, int] = (64, 96, 96)
    lr: float = 2e-3
    loss: str = "dice_ce"
    val_metric: str = "dice"
    val_cases: int = 20
    folds: bool = False
    filters: tuple[int, ...] = (16, 32, 64, 128)
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    workers: int = 0
    max_minutes: float | None = None
    calcium_fraction: float = 2 / 3
    context_fraction: float = 0.2
    context_radius_mm: float = 60.0
    half_weights: bool = True
    name: str = "cacscore-resunet"
    model_version: str = "0"
    cache_dir: Path | None = None
    init: Path | None = None
    augmentation: Augmentation = field(default_factory=Augmentation)
    mask_labels: str | None = None
    replay: Path | None = None
    replay_fraction: float = 0.25
    lesion_filter: str = "refit"
    filter_data: tuple[Path, ...] = ()
    inherited: tuple[str, ...] = ()

    @classmethod
    def fine_tune(cls, init: Path, **settings: Any) -> TrainConfig:
        """A configuration that fine-tunes ``init``.

        Every setting of :data:`INHERITED` not given is the parent's.

        An augmentation block of the first format (models before augmentation
        version 2, such as model version 6) is not inherited: this version's
        defaults replace it. The head and filters are the parent's (they must be); the other
        settings (data, out, time limit, device...) come from ``settings`` or
        the defaults. The inherited names are listed in :attr:`inherited`.

        Raises
        ------
        CacScoreError
            If ``init`` is not a readable model folder, or its stored recipe is malformed.
        """
        parent = Plan.load(init)
        stored = parent.data.get("training") or {}
        taken: dict[str, Any] = {}
        for key, name in INHERITED.items():
            if name in settings or key not in stored or (stored[key] is None and key != "steps_per_epoch"):
                continue
            if name == "augmentation" and isinstance(stored[key], dict) and "version" not in stored[key]:
                # Written before augmentation version 2 (rotation, scaling, intensity, noise only): inheriting
                # it would switch off what this version adds; this version's defaults are used instead.
                continue
            value = stored[key]
            try:
                if name == "patch":
                    value = tuple(int(v) for v in value)
                elif name == "augmentation":
                    value = Augmentation.from_dict(value)
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(f"{init}: training.{key} in plan.json is malformed ({exc})") from None
            taken[name] = value
        for name, value in (("head", parent.head), ("filters", tuple(parent.init_args.get("filters", ())))):
            if name not in settings:
                taken[name] = value
        return cls(init=Path(init), **taken, **settings, inherited=tuple(sorted(taken)))

    def check(self) -> None:
        """Validate the settings.

        Raises
        ------
        InvalidInputError
            Naming the first bad setting.
        """
        if self.head not in HEAD_CLASSES:
            raise InvalidInputError(f"head must be one of {sorted(HEAD_CLASSES)}, got {self.head!r}")
        if self.loss not in LOSSES:
            raise InvalidInputError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.val_metric not in VAL_METRICS:
            raise InvalidInputError(
                f"val_metric must be one of {', '.join(VAL_METRICS)}, got {self.val_metric!r}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise InvalidInputError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        for name in ("members", "epochs", "batch"):
            if int(getattr(self, name)) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise InvalidInputError(f"steps_per_epoch must be >= 1, got {self.steps_per_epoch!r}")
        if len(self.patch) != 3 or min(self.patch) < 1:
            raise InvalidInputError(f"patch must be three positive sizes (z, y, x), got {self.patch!r}")
        divisor = 2 ** (len(self.filters) - 1)
        if any(p % divisor for p in self.patch):
            raise InvalidInputError(
                f"patch sizes must be multiples of {divisor} (network levels), got {self.patch}"
            )
        if not self.lr > 0:
            raise InvalidInputError(f"lr must be > 0, got {self.lr!r}")
        if not (
            0 <= self.calcium_fraction <= 1
            and 0 <= self.context_fraction <= 1
            and self.calcium_fraction + self.context_fraction <= 1 + 1e-9
        ):
            raise InvalidInputError(
                f"calcium_fraction ({self.calcium_fraction}) and context_fraction "
                f"({self.context_fraction}) must be in [0, 1] and add up to at most 1"
            )
        if not self.context_radius_mm > 0:
            raise InvalidInputError(f"context_radius_mm must be > 0, got {self.context_radius_mm!r}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise InvalidInputError(f"max_minutes must be > 0, got {self.max_minutes!r}")
        check_mask_labels(self.mask_labels)
        if not 0 <= self.replay_fraction <= 1:
            raise InvalidInputError(f"replay_fraction must be in [0, 1], got {self.replay_fraction!r}")
        if self.lesion_filter not in ("refit", "drop"):
            raise InvalidInputError(f"lesion_filter must be 'refit' or 'drop', got {self.lesion_filter!r}")
        if self.replay is not None and self.init is None:
            raise InvalidInputError("replay mixes in the data of the model being fine-tuned: it needs init")
        if self.filter_data and self.init is None:
            raise InvalidInputError(
                "filter_data is for refitting a fine-tuned model's lesion filter: it needs init"
            )
        if self.init is not None:
            parent = Plan.load(self.init)
            filters = tuple(parent.init_args.get("filters", ()))
            if parent.head != self.head or filters != tuple(self.filters):
                raise InvalidInputError(
                    f"{self.init}: cannot fine-tune this model (head {parent.head}, filters {list(filters)}) "
                    f"into one with head {self.head}, filters {list(self.filters)}"
                )

    def training_dict(self) -> dict[str, Any]:
        """The plan's ``training`` block."""
        return {
            "members": self.members,
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "batch": self.batch,
            "patch_zyx": list(self.patch),
            "optimizer": "Adam",
            "lr": self.lr,
            "lr_schedule": "poly 0.9 over max(epoch, time) progress",
            "loss": self.loss,
            "val_cases": self.val_cases,
            "folds": self.folds,
            "seed": self.seed,
            "amp_bf16": self.amp,
            "max_minutes": self.max_minutes,
            "calcium_fraction": self.calcium_fraction,
            "context_fraction": self.context_fraction,
            "context_radius_mm": self.context_radius_mm,
            "sampling": "calcium_fraction of patches centred on labelled calcium (jittered), "
            "context_fraction on unlabelled voxels >= threshold_hu within context_radius_mm of the "
            "calcium centroid (volume centre without calcium), the rest anywhere",
            "augmentation": self.augmentation.to_dict(),
            "selection": f"best epoch by validation {VAL_METRICS[self.val_metric]}"
            + ("" if self.init is None else " (epoch 0: the init weights)"),
            "val_metric": self.val_metric,
            "loss_region": f"labelled voxels and voxels >= scaled threshold - {CANDIDATE_MARGIN}",
            "mask_labels": self.mask_labels,
            "replay": None
            if self.replay is None
            else {"path": str(self.replay), "fraction": self.replay_fraction},
            "init": None
            if self.init is None
            else {
                **init_dict(Plan.load(self.init), Path(self.init)),
                "inherited": list(self.inherited),
                "lesion_filter": self.lesion_filter,
                "filter_data": [str(p) for p in self.filter_data],
            },
        }


def init_dict(parent: Plan, folder: Path) -> dict[str, Any]:
    """The plan's ``training.init`` block: which model a fine-tuned run started from, and how it was made.

    Keeps the parent's identity, data and training summary (without case
    lists), so that a fine-tuned model's whole lineage stays in its own plan.
    """
    training = {k: v for k, v in parent.data.get("training", {}).items() if not k.endswith("case_ids")}
    data = {k: v for k, v in parent.data.get("data", {}).items() if k not in ("generation", "val_data")}
    return {
        "path": str(folder),
        "name": parent.name,
        "model_version": parent.model_version,
        "created": parent.data.get("created"),
        "data": data,
        "training": training,
        "members": [
            {k: m.get(k) for k in ("member", "seed", "best_epoch", "val_dice", "train_seconds")}
            for m in parent.members
        ],
    }


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU.

    Raises
    ------
    InvalidInputError
        If CUDA is asked for but not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("--device cuda: no CUDA device is available (use --device cpu)")
    return torch.device(name)


@contextmanager
def _autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    with torch.autocast(device.type, dtype=torch.bfloat16) if enabled else nullcontext():
        yield


def validation_dice(
    net: torch.nn.Module,
    cases: list[CachedCase],
    n_classes: int,
    device: torch.device,
    amp: bool,
    level: float = 0.0,
    per_case: bool = False,
) -> float:
    """Mean Dice over the calcium classes of whole low-resolution validation volumes.

    Predictions count only where the image is >= ``level`` (the scaled
    threshold, as at inference). Classes absent from both reference and
    prediction are left out; 1.0 when all are.

    By default each class's voxels are pooled over the cases, so the cases
    with most calcium dominate. With ``per_case``, the mean is of each case's
    own Dice: a scan without coronary calcium scores 1 when nothing is found
    and 0 for any false positive, which is what moves a risk category.
    """
    net.eval()
    inter = np.zeros((len(cases), n_classes))
    total = np.zeros((len(cases), n_classes))
    with torch.inference_mode(), _autocast(device, amp):
        for i, case in enumerate(cases):
            x = torch.from_numpy(case.image)[None, None].to(device)
            pred = net(x).float().argmax(dim=1)[0].cpu().numpy()
            pred[case.image < level] = 0
            valid = case.target != IGNORE
            for c in range(1, n_classes):
                p = (pred == c) & valid
                g = case.target == c
                inter[i, c] = np.count_nonzero(p & g)
                total[i, c] = np.count_nonzero(p) + np.count_nonzero(g)
    if per_case:
        return float(np.mean([_mean_dice(i, t) for i, t in zip(inter, total)])) if len(cases) else 1.0
    return _mean_dice(inter.sum(axis=0), total.sum(axis=0))


def _mean_dice(inter: np.ndarray, total: np.ndarray) -> float:
    """Mean over the calcium classes (index >= 1) present in reference or prediction; 1.0 if none is."""
    present = total[1:] > 0
    if not present.any():
        return 1.0
    return float(np.mean(2 * inter[1:][present] / total[1:][present]))


def _existing_plan(out: Path) -> dict[str, Any] | None:
    path = out / "plan.json"
    if not path.is_file():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"{path}: cannot read the plan of the run to resume ({exc})") from None
    return data


def _new_plan(
    config: TrainConfig,
    n_cases: int,
    train_ids: list[str],
    val_ids: list[str],
    data_info: dict[str, Any],
    n_params: int,
) -> Plan:
    n_classes = HEAD_CLASSES[config.head]
    return Plan(
        {
            "plan_version": PLAN_VERSION,
            "name": config.name,
            "model_version": config.model_version,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "code_version": __version__,
            "head": config.head,
            "class_codes": HEAD_CLASS_CODES[config.head],
            "class_names": ["background", *(ARTERY_NAMES[code] for code in NAMED_ARTERIES)]
            if config.head == "arteries"
            else ["background", "calcium"],
            "network": {
                "class": "ResUNet3d",
                "init_args": {"in_channels": 1, "n_classes": n_classes, "filters": list(config.filters)},
                "n_parameters": n_params,
            },
            "preprocessing": preprocessing_dict(),
            "training": {**config.training_dict(), "train_case_ids": train_ids, "val_case_ids": val_ids},
            "data": {**data_info, "n_cases": n_cases, "n_train": len(train_ids), "n_val": len(val_ids)},
            "inference": {"precision": "fp32", "candidates": "scaled image >= scaled threshold_hu"},
            "members": [],
        }
    )


def _data_info(root: Path, layout: str) -> dict[str, Any]:
    info: dict[str, Any] = {"path": str(root), "layout": layout}
    generation = root / "generation.json"
    if generation.is_file():
        try:
            settings = json.loads(generation.read_text(encoding="utf-8"))
            info["generation"] = settings
            info["generator_version"] = settings.get("generator_version")
        except (OSError, json.JSONDecodeError):
            info["generation"] = None
    return info


def train_model(
    config: TrainConfig, *, resume: bool = False, report: Reporter | None = None, started: float | None = None
) -> Plan:
    """Train an ensemble and write the model folder (``plan.json``, ``member_<k>.safetensors``).

    The model folder holds nothing else: preprocessed cases and the
    checkpoints of a running training live in the cache
    (``config.cache_dir``, default :func:`cacscore.train.data.default_cache_dir`).
    With ``config.init`` (fine-tuning) the model also takes the parent's vote
    rules (``min_votes``, ``min_lesion_voxels``, ``small_lesion_votes``), and
    the parent's lesion filter, which belongs to the parent's members, is
    fitted again for the new members on the validation cases (or dropped with
    ``lesion_filter="drop"``); ``training.post_processing`` in the plan says
    what was done and what to do next.

    Parameters
    ----------
    config : TrainConfig
        Settings. With ``resume``, the settings stored in the existing plan win
        (except device, workers, cache and the time limit).
    resume : bool
        Continue an interrupted run in ``config.out``: finished members are
        kept, the current member continues from its last checkpoint.
    report : callable, optional
        Progress callback (see :data:`Reporter`).
    started : float, optional
        :func:`time.monotonic` when the command started; ``config.max_minutes``
        counts from it (default: from this call).

    Returns
    -------
    Plan
        The final plan.

    Raises
    ------
    CacScoreError
        Bad settings, unreadable data, or an existing model in ``config.out``
        without ``resume``.
    """
    from cacscore.datasets import detect_layout, list_cases

    started = time.monotonic() if started is None else started
    deadline = None if config.max_minutes is None else started + config.max_minutes * 60
    emit: Reporter = report or (lambda *args: None)
    config.check()
    out = Path(config.out)
    existing = _existing_plan(out)
    if existing is not None and not resume:
        raise CacScoreError(
            f"{out}: already holds a model (plan.json); use --resume to continue it or another --out"
        )
    if resume and existing is not None:
        _restore_settings(config, existing)
    device = resolve_device(config.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    else:
        torch.backends.cudnn.benchmark = True

    cache_root = Path(config.cache_dir) if config.cache_dir is not None else default_cache_dir()
    work = run_dir(cache_root, out)
    if existing is None or not resume:
        shutil.rmtree(work, ignore_errors=True)  # checkpoints of an earlier run into a removed --out
    root = Path(config.data)
    refs = list_cases(root, mask_labels=config.mask_labels)
    val_refs: list[CaseRef] = []
    if config.val_data is not None:
        # Prefixed so that case ids of two cohorts (both case_0000...) do not meet.
        val_refs = [
            replace(r, case_id=f"val-{r.case_id}")
            for r in list_cases(config.val_data, mask_labels=config.mask_labels)
        ]
    replay_refs: list[CaseRef] = []
    if config.replay is not None:
        # The parent's data family, in its own layout's convention.
        replay_refs = [replace(r, case_id=f"replay-{r.case_id}") for r in list_cases(config.replay)]
    ids = [r.case_id for r in refs]
    out.mkdir(parents=True, exist_ok=True)
    if existing is not None and resume:
        plan = Plan(existing)
        train_ids = list(plan.data["training"]["train_case_ids"])
        val_ids = list(plan.data["training"]["val_case_ids"])
        missing = sorted(set(train_ids + val_ids) - set(ids) - {r.case_id for r in val_refs})
        if missing:
            raise InvalidInputError(f"{root}: cases {missing[:5]} of the run to resume are missing")
    elif val_refs:
        train_ids, val_ids = ids, [r.case_id for r in val_refs]
    else:
        train_ids, val_ids = split_cases(ids, config.val_cases, config.seed)
    if existing is None or not resume:
        n_params = count_parameters(ResUNet3d(1, HEAD_CLASSES[config.head], config.filters))
        info = _data_info(root, detect_layout(root))
        if config.val_data is not None:
            info["val_data"] = {
                **_data_info(Path(config.val_data), detect_layout(config.val_data)),
                "n_cases": len(val_refs),
            }
        if config.replay is not None:
            info["replay"] = {
                **_data_info(Path(config.replay), detect_layout(config.replay)),
                "n_cases": len(replay_refs),
                "fraction": config.replay_fraction,
            }
        plan = _new_plan(config, len(ids), train_ids, val_ids, info, n_params)
        plan.save(out)

    by_id = {r.case_id: r for r in [*refs, *val_refs]}
    wanted = [by_id[i] for i in train_ids + val_ids] + replay_refs
    emit("prepare", 0, len(wanted))
    done = [0]

    def advance() -> None:
        done[0] += 1
        emit("prepare", done[0], len(wanted))

    paths = prepare_cases(
        wanted,
        preprocessed_dir(cache_root, plan.data["preprocessing"]),
        plan.data["preprocessing"],
        workers=config.workers,
        advance=advance,
    )
    cached = {
        ref.case_id: load_cached(path, plan.class_codes, ref.case_id) for ref, path in zip(wanted, paths)
    }
    train_cases = [cached[i] for i in train_ids]
    val_cases = [cached[i] for i in val_ids]
    replay_cases = [cached[r.case_id] for r in replay_refs]

    parent = Plan.load(config.init) if config.init is not None else None
    refit = (
        parent is not None
        and parent.data.get("inference", {}).get("lesion_filter") is not None
        and config.lesion_filter == "refit"
    )
    filter_refs = [by_id[i] for i in val_ids]
    if refit:
        for n, folder in enumerate(config.filter_data):
            filter_refs += [
                replace(r, case_id=f"filter{n}-{r.case_id}")
                for r in list_cases(folder, mask_labels=config.mask_labels)
            ]
    # What the end of the run needs, so that the time limit holds with it: reading each case of the lesion
    # filter's refit again (timed on one) and running every member on it (from the validation passes). The
    # training keeps at least half of the time; the refit uses the cases that fit into the rest.
    read_s = _time_read(filter_refs[0]) if refit and deadline is not None else 0.0
    timing: dict[str, float] = {}

    def filter_case_s() -> float:
        return read_s + 1.5 * config.members * timing.get("val_s", 0.0) / max(1, len(val_cases))

    def member_end(members_left: int) -> float | None:
        if deadline is None:
            return None
        now = time.monotonic()
        reserve = 0.0
        if refit:
            cap = timing.setdefault("reserve_cap_s", 0.5 * max(0.0, deadline - now))
            reserve = min(len(filter_refs) * filter_case_s() + 2.0, cap)
        return now + max(0.0, deadline - now - reserve) / max(1, members_left)

    if device.type == "cuda" and config.max_minutes is not None:
        _warm_up(config, train_cases, val_cases, len(plan.class_codes), device)
    finished = {m["member"] for m in plan.members}
    for k in range(config.members):
        if k in finished and (out / f"member_{k}.safetensors").is_file():
            continue
        cases_k = train_cases
        if config.folds:
            cases_k = [c for j, c in enumerate(train_cases) if j % config.members != k] or train_cases
        members_left = config.members - len(finished)
        entry = _train_member(
            config,
            k,
            cases_k,
            val_cases,
            replay_cases,
            len(plan.class_codes),
            device,
            out,
            work,
            lambda left=members_left: member_end(left),  # type: ignore[misc]
            timing,
            emit,
        )
        plan.data["members"] = [m for m in plan.members if m["member"] != k] + [entry]
        plan.data["members"].sort(key=lambda m: m["member"])
        plan.save(out)
        finished.add(k)
    if parent is not None:
        from cacscore.train.finetune import finish_fine_tune

        finish_fine_tune(
            plan,
            parent,
            out,
            filter_refs,
            work / "lesion_candidates",
            refit=refit,
            drop=config.lesion_filter == "drop",
            emit=emit,
            deadline=deadline,
            case_s=filter_case_s() if refit else 0.0,
        )
    shutil.rmtree(work, ignore_errors=True)  # checkpoints and candidates: not part of the model
    return plan


def _restore_settings(config: TrainConfig, existing: dict[str, Any]) -> None:
    """Take the settings of the run to resume from its plan."""
    stored = existing["training"]
    config.members, config.epochs, config.batch = stored["members"], stored["epochs"], stored["batch"]
    config.steps_per_epoch, config.lr, config.loss = stored["steps_per_epoch"], stored["lr"], stored["loss"]
    config.patch = tuple(stored["patch_zyx"])  # type: ignore[assignment]
    config.seed, config.folds = stored["seed"], stored["folds"]
    config.calcium_fraction = stored["calcium_fraction"]
    # Plans written before context sampling existed sampled none.
    config.context_fraction = stored.get("context_fraction", 0.0)
    config.context_radius_mm = stored.get("context_radius_mm", 60.0)
    config.val_metric = stored.get("val_metric", "dice")  # plans before val_metric existed used pooled Dice
    config.augmentation = Augmentation.from_dict(stored["augmentation"])
    config.mask_labels = stored.get("mask_labels")
    replay = stored.get("replay")
    config.replay = Path(replay["path"]) if replay else None
    config.replay_fraction = float(replay["fraction"]) if replay else config.replay_fraction
    config.head = existing["head"]
    config.init = Path(stored["init"]["path"]) if stored.get("init") else None
    if stored.get("init"):
        config.lesion_filter = stored["init"].get("lesion_filter", config.lesion_filter)
        config.filter_data = tuple(Path(p) for p in stored["init"].get("filter_data", []))
    config.filters = tuple(existing["network"]["init_args"]["filters"])
    stored_val = existing.get("data", {}).get("val_data")
    if config.val_data is None and stored_val:
        config.val_data = Path(stored_val["path"])


def run_dir(cache_root: Path, out: Path) -> Path:
    """Working folder of a training into ``out`` (checkpoints, lesion candidates), under ``cache_root``."""
    key = hashlib.sha1(str(Path(out).resolve()).encode()).hexdigest()[:16]
    return Path(cache_root) / "runs" / key


def _time_read(ref: CaseRef) -> float:
    """Seconds to read one case (as the lesion filter's refit will)."""
    import warnings

    from cacscore.errors import CacScoreWarning

    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacScoreWarning)
        ref.load()
    return time.monotonic() - start


def _warm_up(
    config: TrainConfig,
    cases: list[CachedCase],
    val_cases: list[CachedCase],
    n_classes: int,
    device: torch.device,
) -> None:
    """One throwaway step and validation pass, so that cuDNN's autotuning of every shape (~15 s on an
    H200) is not charged to the first member's share of the time limit."""
    net = ResUNet3d(1, n_classes, config.filters).to(device).to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    images, targets = PatchSampler(cases[:1], config.patch, device).batch(
        np.random.default_rng(0), config.batch
    )
    with _autocast(device, config.amp):
        logits = net(images.contiguous(memory_format=torch.channels_last_3d))
    segmentation_loss(logits.float(), targets.long(), config.loss).backward()
    validation_dice(net, val_cases, n_classes, device, config.amp)


def _cpu_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: v.detach().to("cpu").clone() for key, v in net.state_dict().items()}


def _train_member(
    config: TrainConfig,
    k: int,
    cases: list[CachedCase],
    val_cases: list[CachedCase],
    replay_cases: list[CachedCase],
    n_classes: int,
    device: torch.device,
    out: Path,
    work: Path,
    member_end: Callable[[], float | None],
    timing: dict[str, float],
    emit: Reporter,
) -> dict[str, Any]:
    """Train member ``k`` until it is done or ``member_end()`` is reached.

    ``member_end()`` gives the monotonic time by which it must be done (None: no limit).

    The time limit is checked before every step: a step is only started when it
    and the validation pass after it (timed on earlier ones, in ``timing``) end
    in time. A member trained from scratch takes at least one step.
    """
    seed = config.seed + 1000 * (k + 1)
    per_case = config.val_metric == "case_dice"
    torch.manual_seed(seed)
    net = ResUNet3d(1, n_classes, config.filters).to(device)
    ckpt_dir = work / f"member_{k}"
    ckpt_path = ckpt_dir / "checkpoint.pt"
    fine_tune = config.init is not None and not ckpt_path.is_file()  # a checkpoint replaces the init weights
    source_member = 0
    if fine_tune:
        parent = Plan.load(config.init)  # type: ignore[arg-type]
        source = parent.members[k % len(parent.members)]
        source_member = int(source.get("member", k % len(parent.members)))
        net.load_state_dict(
            load_member(Path(str(config.init)) / source["file"], parent.init_args).state_dict()
        )
    # Channels-last: tensor cores on CUDA; on CPU, bf16 convolutions are only fast in it (1.7 s instead of
    # 2.6 s per step of 2 patches of 64x96x96 on 2 cores).
    channels_last = device.type == "cuda" or config.amp
    if channels_last:
        net = net.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    steps = config.steps_per_epoch or max(1, math.ceil(len(cases) / config.batch))
    state: dict[str, Any] = {
        "epoch": 0,
        "best_dice": -1.0,
        "best_epoch": 0,
        "best_state": None,
        "history": [],
        "elapsed_s": 0.0,
    }
    if ckpt_path.is_file():
        saved = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = {key: saved[key] for key in state}
    level = scaled_threshold(ENHANCE_THRESHOLD_HU, CLIP_HU)
    main = PatchSampler(
        cases,
        config.patch,
        device,
        config.calcium_fraction,
        context_fraction=config.context_fraction,
        context_radius_mm=config.context_radius_mm,
        level=level,
    )
    sampler: PatchSampler | MixedSampler = main
    if replay_cases and config.replay_fraction > 0:
        replay = PatchSampler(
            replay_cases,
            config.patch,
            device,
            config.calcium_fraction,
            context_fraction=config.context_fraction,
            context_radius_mm=config.context_radius_mm,
            level=level,
        )
        sampler = MixedSampler(main, replay, config.replay_fraction)
    emit("member", k, config.members)
    if fine_tune:
        # The starting weights compete as epoch 0, so that fine-tuning never ships a member worse on
        # the validation cases than the one it started from (the first steps on new data often are).
        t_val = time.monotonic()
        dice = validation_dice(net, val_cases, n_classes, device, config.amp, level, per_case)
        timing["val_s"] = time.monotonic() - t_val
        state.update(
            best_dice=dice,
            best_epoch=0,
            history=[{"epoch": 0, "loss": None, "val_dice": dice}],
            best_state=_cpu_state(net),
        )
        emit("start", k, source_member, dice)
    end = member_end()
    budget_s = None if end is None else float(state["elapsed_s"]) + max(0.0, end - time.monotonic())
    t0 = time.monotonic() - float(state["elapsed_s"])
    epoch = int(state["epoch"])
    step_s: float | None = None
    out_of_time = False
    while epoch < config.epochs and not out_of_time:
        progress = epoch / config.epochs
        if budget_s is not None:
            progress = max(progress, (time.monotonic() - t0) / max(budget_s, 1e-9))
        if progress >= 1 and (epoch > 0 or fine_tune):
            break
        for group in optimizer.param_groups:
            group["lr"] = config.lr * (1 - min(progress, 0.99)) ** 0.9
        epoch_start = time.monotonic()
        rng = np.random.default_rng([seed, epoch])
        generator = torch.Generator(device=device)
        generator.manual_seed(seed * 7919 + epoch)
        net.train()
        losses: list[float] = []
        for step in range(steps):
            if end is not None and (losses or epoch > 0 or fine_tune):
                needed = (step_s or 0.0) + timing.get("val_s", 0.0)
                if time.monotonic() + needed > end:
                    out_of_time = True
                    break
            t_step = time.monotonic()
            images, targets = sampler.batch(rng, config.batch)
            images, targets = config.augmentation(
                images, targets, generator, clip_hu=CLIP_HU, threshold_hu=ENHANCE_THRESHOLD_HU
            )
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last_3d)
            valid = (targets != IGNORE) & ((targets > 0) | (images[:, 0] >= level - CANDIDATE_MARGIN))
            with _autocast(device, config.amp):
                logits = net(images)
            loss = segmentation_loss(logits.float(), torch.where(valid, targets, 0), config.loss, valid=valid)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            took = time.monotonic() - t_step
            step_s = took if step_s is None else max(took, 0.8 * step_s + 0.2 * took)
            emit("step", step + 1, steps, losses[-1])
        if not losses:
            break
        epoch += 1
        t_val = time.monotonic()
        dice = validation_dice(net, val_cases, n_classes, device, config.amp, level, per_case)
        timing["val_s"] = time.monotonic() - t_val
        best = dice > float(state["best_dice"])
        if best:
            state["best_dice"], state["best_epoch"] = dice, epoch
            state["best_state"] = _cpu_state(net)
        mean_loss = float(np.mean(losses))
        state["history"].append({"epoch": epoch, "loss": mean_loss, "val_dice": dice, "steps": len(losses)})
        state["epoch"] = epoch
        state["elapsed_s"] = time.monotonic() - t0
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(ckpt_path) as tmp:  # a kill while saving leaves the previous epoch's checkpoint
            torch.save({**state, "model": net.state_dict(), "optimizer": optimizer.state_dict()}, tmp)
        emit("epoch", epoch, config.epochs, mean_loss, dice, best, time.monotonic() - epoch_start)
    final = ResUNet3d(1, n_classes, config.filters)
    final.load_state_dict(state["best_state"] if state["best_state"] is not None else net.state_dict())
    save_member(final, out / f"member_{k}.safetensors", half=config.half_weights)
    entry = {
        "member": k,
        "file": f"member_{k}.safetensors",
        "seed": seed,
        "best_epoch": int(state["best_epoch"]),
        "val_dice": round(float(state["best_dice"]), 4),
        "epochs_run": epoch,
        "train_seconds": round(time.monotonic() - t0, 1),
        "history": state["history"],
    }
    if fine_tune or config.init is not None:
        entry["init_member"] = source_member
    emit("done", k, entry["best_epoch"], entry["val_dice"])
    return entry


__all__ = ["TrainConfig", "resolve_device", "run_dir", "train_model", "validation_dice"]
