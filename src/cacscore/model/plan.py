"""``plan.json``: everything needed to rebuild and run a trained model (nnU-Net style).

A model folder holds ``plan.json`` and one ``member_<k>.safetensors`` per
ensemble member; nothing else is needed to rebuild the networks. Keys of
``plan.json`` (all written by :mod:`cacscore.train`):

``plan_version``
    Format version of this file; :data:`PLAN_VERSION` must match.
``name``, ``model_version``, ``created``, ``code_version``
    Identity of the model and of the cacscore version that trained it.
``head``
    ``"arteries"`` (background, LM, LAD, LCX, RCA) or ``"binary"``.
``class_codes``
    Project label code of each output class, e.g. ``[0, 2, 3, 4, 5]``.
``network``
    ``{"class": "ResUNet3d", "init_args": {...}}``.
``preprocessing``
    Target spacing rule and choices (mm), HU clip window, enhancement and the
    post-processing threshold (HU).
``training``
    Epochs, steps per epoch, patch size (voxels, z y x), batch, optimiser,
    learning rate, loss, augmentation, seeds, validation case ids.
``data``
    Dataset path and layout, number of cases, phantom generator version.
``members``
    One entry per member: ``file``, ``seed``, ``best_epoch``, ``val_dice``.
    A model whose members were chosen among several runs
    (:mod:`cacscore.model.selection`, ``cacscore choose-members``) has ``training.runs`` (each run's
    identity, data and settings), ``members[].picked_from`` (run and member)
    and ``selection`` (the cohort, objective and figures of the choice).
``inference``
    ``precision`` (``"fp32"`` or ``"bf16"``) used on CPU; ``min_votes``, the
    members that must call a low-resolution voxel calcium (default: more than
    half, the paper's majority vote); ``min_lesion_voxels``, the smallest
    lesion (6-connected, same artery, >= the HU threshold, in voxels of the
    original grid) the model reports (default 1: all); ``small_lesion_votes``,
    the members that must vote for a low-resolution voxel of a lesion under
    ``min_lesion_voxels`` for it to be reported all the same (default null:
    never); ``lesion_filter`` (optional), a logistic regression that judges
    each candidate lesion instead of the vote rule
    (:mod:`cacscore.model.lesion_filter`; where it is present, ``min_votes``,
    ``min_lesion_voxels`` and ``small_lesion_votes`` are not used).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cacscore.errors import ModelFolderError, PlanMismatchError
from cacscore.io.atomic import write_text_atomic
from cacscore.labels import ARTERY_NAMES, LAD, LCX, LM, RCA, UNSPECIFIED
from cacscore.model.lesion_filter import LesionFilter
from cacscore.model.network import HEAD_CLASSES

#: Version of the plan.json format this code reads and writes.
PLAN_VERSION = 1
#: Environment variable naming the default model folder.
MODEL_DIR_ENV = "CACSCORE_MODEL_DIR"
#: Project label code of each output class, per head.
HEAD_CLASS_CODES: dict[str, list[int]] = {"arteries": [0, LM, LAD, LCX, RCA], "binary": [0, UNSPECIFIED]}


def default_model_dir() -> Path:
    """``$CACSCORE_MODEL_DIR`` if set, else the model shipped in the package."""
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "default"


@dataclass
class Plan:
    """Typed view of ``plan.json``; :attr:`data` is the full JSON document."""

    data: dict[str, Any] = field(default_factory=dict)

    @property
    def head(self) -> str:
        """Output head name."""
        return str(self.data["head"])

    @property
    def class_codes(self) -> list[int]:
        """Project label code of each output class."""
        return [int(c) for c in self.data["class_codes"]]

    @property
    def init_args(self) -> dict[str, Any]:
        """Keyword arguments of :class:`cacscore.model.network.ResUNet3d`."""
        return dict(self.data["network"]["init_args"])

    @property
    def members(self) -> list[dict[str, Any]]:
        """Member entries (file, seed, best epoch, validation Dice)."""
        return list(self.data.get("members", []))

    @property
    def clip_hu(self) -> tuple[float, float]:
        """HU window mapped onto [0, 1]."""
        low, high = self.data["preprocessing"]["clip_hu"]
        return (float(low), float(high))

    @property
    def target_spacings_mm(self) -> tuple[float, ...]:
        """Isotropic spacing choices, mm."""
        return tuple(float(v) for v in self.data["preprocessing"]["target_spacings_mm"])

    @property
    def enhance(self) -> bool:
        """Whether the >= 130 HU footprint enhancement is applied."""
        return bool(self.data["preprocessing"]["enhancement"]["enabled"])

    @property
    def threshold_hu(self) -> float:
        """HU threshold of the final intersection."""
        return float(self.data["preprocessing"]["threshold_hu"])

    @property
    def precision(self) -> str:
        """CPU inference precision, "fp32" or "bf16"."""
        return str(self.data.get("inference", {}).get("precision", "fp32"))

    def min_votes(self, n_members: int) -> int:
        """Members that must call a low-resolution voxel calcium (default: majority of ``n_members``).

        Raises
        ------
        PlanMismatchError
            If the plan asks for fewer than 1 or more than ``n_members`` votes.
        """
        votes = self.data.get("inference", {}).get("min_votes")
        if votes is None:
            return n_members // 2 + 1
        if not isinstance(votes, int) or not 1 <= votes <= n_members:
            raise PlanMismatchError(
                f"inference.min_votes must be an integer in 1..{n_members}, got {votes!r}"
            )
        return votes

    @property
    def min_lesion_voxels(self) -> int:
        """Smallest reported lesion, voxels of the original grid (1: no lower limit)."""
        voxels = self.data.get("inference", {}).get("min_lesion_voxels", 1)
        if not isinstance(voxels, int) or voxels < 1:
            raise PlanMismatchError(f"inference.min_lesion_voxels must be an integer >= 1, got {voxels!r}")
        return voxels

    def small_lesion_votes(self, n_members: int) -> int | None:
        """Votes that keep a lesion under :attr:`min_lesion_voxels` (None: such lesions are dropped).

        Raises
        ------
        PlanMismatchError
            If the plan asks for fewer than 1 or more than ``n_members`` votes.
        """
        votes = self.data.get("inference", {}).get("small_lesion_votes")
        if votes is not None and (not isinstance(votes, int) or not 1 <= votes <= n_members):
            raise PlanMismatchError(
                f"inference.small_lesion_votes must be null or an integer in 1..{n_members}, got {votes!r}"
            )
        return votes

    def lesion_filter(self, n_members: int) -> LesionFilter | None:
        """The plan's lesion filter, or None where it has none.

        Raises
        ------
        PlanMismatchError
            If the ``inference.lesion_filter`` block is malformed.
        """
        block = self.data.get("inference", {}).get("lesion_filter")
        if block is None:
            return None
        if not isinstance(block, dict):
            raise PlanMismatchError("inference.lesion_filter must be a JSON object")
        return LesionFilter.from_dict(block, n_members)

    @property
    def name(self) -> str:
        """Model name."""
        return str(self.data.get("name", "unnamed"))

    @property
    def model_version(self) -> str:
        """Model version string."""
        return str(self.data.get("model_version", "0"))

    def to_json(self) -> str:
        """The JSON document, indented."""
        return json.dumps(self.data, indent=2, sort_keys=False) + "\n"

    def save(self, folder: str | Path) -> Path:
        """Write ``plan.json`` into ``folder`` atomically (:mod:`cacscore.io.atomic`)."""
        return write_text_atomic(Path(folder) / "plan.json", self.to_json())

    @classmethod
    def load(cls, folder: str | Path) -> Plan:
        """Read and check ``folder/plan.json``.

        Raises
        ------
        ModelFolderError
            If the folder or its plan is missing or not valid JSON, or a key is missing.
        PlanMismatchError
            If the plan version or head is not one this code supports.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise ModelFolderError(f"{folder}: model folder not found (train one with `cacscore train`)")
        path = folder / "plan.json"
        if not path.is_file():
            raise ModelFolderError(f"{folder}: plan.json is missing; not a cacscore model folder")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFolderError(f"{path}: cannot read plan ({exc})") from None
        if not isinstance(data, dict):
            raise ModelFolderError(f"{path}: plan must be a JSON object")
        version = data.get("plan_version")
        if version != PLAN_VERSION:
            raise PlanMismatchError(
                f"{path}: plan_version {version!r} is not supported "
                f"by this cacscore (expects {PLAN_VERSION}); "
                "retrain the model or use a matching cacscore version"
            )
        missing = [k for k in ("head", "class_codes", "network", "preprocessing", "members") if k not in data]
        if missing:
            raise ModelFolderError(f"{path}: plan lacks the keys {missing}")
        plan = cls(data)
        if plan.head not in HEAD_CLASSES:
            raise PlanMismatchError(
                f"{path}: unknown head {plan.head!r}; expected one of {sorted(HEAD_CLASSES)}"
            )
        if len(plan.class_codes) != plan.init_args.get("n_classes"):
            raise PlanMismatchError(
                f"{path}: {len(plan.class_codes)} class codes but the network has "
                f"{plan.init_args.get('n_classes')} outputs"
            )
        unknown = [c for c in plan.class_codes[1:] if c not in ARTERY_NAMES]
        if unknown:
            raise PlanMismatchError(f"{path}: class codes {unknown} are not project label codes")
        if not plan.members:
            raise ModelFolderError(f"{path}: plan lists no trained members")
        try:
            plan.min_votes(len(plan.members))
            plan.min_lesion_voxels  # noqa: B018 -- checked here so a bad plan fails when loaded
            plan.small_lesion_votes(len(plan.members))
            plan.lesion_filter(len(plan.members))
        except PlanMismatchError as exc:
            raise PlanMismatchError(f"{path}: {exc}") from None
        return plan
