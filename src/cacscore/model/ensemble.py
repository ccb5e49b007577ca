"""Ensemble inference: five members, majority vote per voxel, back to the original grid.

Member weights are read by :mod:`cacscore.model.weights`, the vote and the lesion rules live in
:mod:`cacscore.model.postprocess`; this module runs the members and chains those steps.

As in Gogin et al. 2021: each member segments the low-resolution volume, a
voxel is calcium when more than half of the members say so, the mask is
mapped back onto the original grid and intersected with HU >= 130. Beyond
the paper, the ``arteries`` head labels each voxel with the artery of the
largest summed probability, each 3-D lesion takes the majority artery of
its voxels, and each lesion reports ``confidence``: the fraction of members
whose own mask overlaps it. A plan may change the vote (``min_votes``) and
drop lesions smaller than ``min_lesion_voxels``: a low-resolution voxel's
footprint (about 6 x 6 source pixels) also holds isolated noise voxels above
130 HU around a calcification, which would otherwise be reported as lesions.
A plan with a lesion filter replaces that rule: every lesion that some
members found is kept or dropped by the filter (:func:`cacscore.model.postprocess.candidate_lesions`,
:mod:`cacscore.model.lesion_filter`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cacscore.arrays import bounding_box
from cacscore.errors import InvalidInputError, ModelFolderError
from cacscore.io.volume import CTVolume
from cacscore.model.network import ResUNet3d
from cacscore.model.plan import Plan, default_model_dir
from cacscore.model.postprocess import (
    CandidateLesions,
    candidate_lesions,
    labels_in_box,
    vote,
)
from cacscore.model.weights import load_member
from cacscore.precision import PRECISIONS, warn_if_emulated
from cacscore.preprocess import (
    Grid,
    preprocess_volume,
    scaled_threshold,
    target_spacing_mm,
)
from cacscore.scoring import ScoreResult, score_volume

if TYPE_CHECKING:
    from cacscore.anatomy import HeartRegion


@dataclass
class EnsemblePrediction:
    """The ensemble's segmentation of one volume.

    Parameters
    ----------
    labels : (Z, Y, X) ndarray of uint8
        Project label codes on the original grid, only where HU >= threshold.
    member_masks : (M, Z', Y', X') ndarray of bool
        Each member's calcium mask on the low-resolution grid.
    votes : (Z', Y', X') ndarray of uint8
        Number of members voting calcium per low-resolution voxel.
    grid : Grid
        The low-resolution grid and its mapping to the original grid.
    candidates : CandidateLesions or None
        Where the plan has a lesion filter: the lesions it judged.
    candidate_probability : (n,) ndarray of float or None
        The filter's probability of each of ``candidates``.
    warnings : list of str
        What the heart region removed (:func:`restrict_to_heart`), for the report.
    """

    labels: np.ndarray
    member_masks: np.ndarray
    votes: np.ndarray
    grid: Grid
    candidates: CandidateLesions | None = None
    candidate_probability: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def n_members(self) -> int:
        """Number of members."""
        return int(self.member_masks.shape[0])

    def _checked(self, lesion_map: np.ndarray) -> np.ndarray:
        lesion_map = np.asarray(lesion_map)
        if lesion_map.shape != self.grid.source_shape:
            raise InvalidInputError(
                f"lesion map shape {lesion_map.shape} does not match the volume {self.grid.source_shape}"
            )
        return lesion_map

    def lesion_confidence(self, lesion_map: np.ndarray) -> dict[int, float]:
        """Fraction of members whose own mask overlaps each lesion of ``lesion_map``.

        Parameters
        ----------
        lesion_map : (Z, Y, X) ndarray of int
            0 outside lesions, lesion id inside, on the original grid.

        Returns
        -------
        dict of int to float
            Lesion id -> confidence in [0, 1].
        """
        lesion_map = self._checked(lesion_map)
        box = bounding_box(lesion_map)
        if box is None:
            return {}
        # np.nonzero over a whole 512 x 512 x 60 grid costs 55 ms; lesions fill a small box.
        inside = lesion_map[box]
        z, y, x = np.nonzero(inside)
        ids = inside[z, y, x].astype(np.int64)
        zi, yi, xi = (index[part] for index, part in zip(self.grid.source_to_low(), box))
        hits = self.member_masks[:, zi[z], yi[y], xi[x]]  # (M, n_voxels)
        n_ids = int(ids.max()) + 1
        found = np.stack([np.bincount(ids, weights=h, minlength=n_ids) > 0 for h in hits])
        present = np.unique(ids)
        return {int(i): float(found[:, i].mean()) for i in present}

    def filter_probability(self, lesion_map: np.ndarray) -> dict[int, float]:
        """The lesion filter's probability of each lesion of ``lesion_map``.

        A lesion's probability is the highest of the candidates it holds.

        Parameters
        ----------
        lesion_map : (Z, Y, X) ndarray of int
            0 outside lesions, lesion id inside, on the original grid.

        Returns
        -------
        dict of int to float
            Lesion id -> probability in [0, 1]; empty where the model has no lesion filter.
        """
        lesion_map = self._checked(lesion_map)
        if self.candidates is None or self.candidate_probability is None:
            return {}
        inside = lesion_map[self.candidates.box]
        both = (inside != 0) & (self.candidates.ids != 0)
        if not both.any():
            return {}
        ids = inside[both].astype(np.int64)
        per_voxel = np.concatenate([[0.0], self.candidate_probability])[self.candidates.ids[both]]
        highest = np.zeros(int(ids.max()) + 1)
        np.maximum.at(highest, ids, per_voxel)
        return {int(i): float(highest[i]) for i in np.unique(ids)}


class Ensemble:
    """A loaded model: the plan and its member networks.

    Use :func:`load_ensemble` to build one from a model folder.

    Parameters
    ----------
    plan : Plan
    members : list of ResUNet3d
    folder : Path, optional
        Where the model was loaded from (reported in :meth:`info`).
    precision : {"fp32", "bf16"}, optional
        Default: the plan's.
    device : str
        Torch device of the forward passes.
    fast : bool
        Run the members with batch normalisation folded into the convolutions,
        channels-last (default). False runs them exactly as trained: the
        reference that ``benchmarks/bench_quality.py`` checks the fast path against.
    """

    def __init__(
        self,
        plan: Plan,
        members: list[ResUNet3d],
        folder: Path | None = None,
        precision: str | None = None,
        device: str = "cpu",
        fast: bool = True,
    ) -> None:
        if not members:
            raise ModelFolderError("an ensemble needs at least one member")
        self.plan = plan
        self.folder = folder
        self.precision = precision or plan.precision
        if self.precision not in PRECISIONS:
            raise InvalidInputError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        self.device = torch.device(device)
        if self.device.type == "cpu":
            warn_if_emulated(self.precision)
        # bf16 convolutions are only fast in the channels-last layout (measured ~10x on AVX512-BF16 CPUs);
        # the fast fp32 path gains most from its oneDNN convolutions (ResUNet3d.fused_for_inference).
        self.memory_format = (
            torch.channels_last_3d if fast or self.precision == "bf16" else torch.contiguous_format
        )
        self.members = [
            (m.fused_for_inference() if fast else m.eval())
            .to(self.device)
            .to(memory_format=self.memory_format)  # type: ignore[call-overload]
            for m in members
        ]

    def info(self) -> dict[str, Any]:
        """The report's ``model`` block: name, version, members, head, precision, path."""
        return {
            "name": self.plan.name,
            "version": self.plan.model_version,
            "members": len(self.members),
            "head": self.plan.head,
            "precision": self.precision,
            "path": None if self.folder is None else str(self.folder),
        }

    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        if self.precision == "bf16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                yield
        else:
            yield

    def member_probabilities(self, image: np.ndarray) -> Iterator[np.ndarray]:
        """Softmax probabilities ``(C, Z', Y', X')`` of each member for a preprocessed image."""
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None].to(self.device)
        x = x.contiguous(memory_format=self.memory_format)
        with torch.inference_mode(), self._precision():
            for net in self.members:
                yield torch.softmax(net(x).float(), dim=1)[0].cpu().numpy()

    def preprocess(self, volume: CTVolume) -> tuple[np.ndarray, Grid]:
        """The network input of ``volume`` and its grid, by the plan's settings."""
        target = target_spacing_mm(volume.spacing[0], self.plan.target_spacings_mm)
        return preprocess_volume(
            volume.hu, volume.spacing, target_mm=target, clip_hu=self.plan.clip_hu, enhance=self.plan.enhance
        )

    def predict(self, volume: CTVolume, *, region: HeartRegion | None = None) -> EnsemblePrediction:
        """Segment ``volume``: majority vote, artery labels, back on the original grid, HU >= threshold.

        Lesions outside the heart region or joined to bone are removed (:func:`restrict_to_heart`).

        Parameters
        ----------
        volume : CTVolume
            The CT.
        region : HeartRegion, optional
            The heart region of ``volume`` if computed already (by :func:`cacscore.anatomy.check_domain`).

        Returns
        -------
        EnsemblePrediction
        """
        image, grid = self.preprocess(volume)
        prediction = self.combine(list(self.member_probabilities(image)), image, grid, volume.hu)
        return restrict_to_heart(prediction, volume, self.plan.threshold_hu, region)

    def combine(
        self, probabilities: list[np.ndarray], image: np.ndarray, grid: Grid, hu: np.ndarray
    ) -> EnsemblePrediction:
        """Vote of member probabilities ``(C, Z', Y', X')`` mapped onto ``hu``'s grid.

        Voting is done by :func:`vote`, mapping by :func:`labels_in_box`.

        The vote needs the plan's ``min_votes`` members (default: a majority).
        Where the plan has a lesion filter and ``probabilities`` come from all
        of its members, the lesions that the filter's ``candidate_votes``
        members found are kept where the filter says so
        (:func:`candidate_lesions`, :mod:`cacscore.model.lesion_filter`).

        Only low-resolution voxels at or above the scaled threshold can be
        calcium (the others hold no source voxel >= the threshold), so each
        member's mask is restricted to them; the networks are trained on
        those voxels alone (see :mod:`cacscore.train.loop`).
        """
        plan = self.plan
        n_members = len(probabilities)
        # The filter's vote and probability features are those of all the plan's members; for another number
        # (one member's own mask, as the Table 1 experiment computes) the vote rule applies.
        lesion_filter = plan.lesion_filter(n_members) if n_members == len(plan.members) else None
        min_votes = plan.min_votes(n_members) if lesion_filter is None else lesion_filter.candidate_votes
        low, member_masks, votes = vote(
            probabilities,
            image,
            plan.class_codes,
            scaled_threshold(plan.threshold_hu, plan.clip_hu),
            min_votes,
        )
        labels = np.zeros(grid.source_shape, np.uint8)
        if lesion_filter is not None:
            candidates = candidate_lesions(low, votes, probabilities, grid, hu, plan.threshold_hu)
            if candidates is None:
                return EnsemblePrediction(labels, member_masks, votes, grid)
            probability = lesion_filter.probability(candidates.features)
            labels[candidates.box] = candidates.kept(probability >= lesion_filter.threshold)
            return EnsemblePrediction(labels, member_masks, votes, grid, candidates, probability)
        # Calcium fills a small box of the original grid; the same work on the whole grid (15 M voxels
        # for 512 x 512 x 60) took 0.24 s per scan instead of 0.03 s.
        box = grid.source_box(low != 0)
        if box is not None:
            small_votes = plan.small_lesion_votes(n_members)
            labels[box] = labels_in_box(
                low,
                grid,
                box,
                np.asarray(hu)[box],
                plan.threshold_hu,
                plan.min_lesion_voxels,
                keep_small=None if small_votes is None else votes >= small_votes,
            )
        return EnsemblePrediction(labels, member_masks, votes, grid)


def restrict_to_heart(
    prediction: EnsemblePrediction, volume: CTVolume, threshold_hu: float, region: HeartRegion | None = None
) -> EnsemblePrediction:
    """The one place where every model's prediction meets the anatomy.

    No calcium is kept outside the heart or on bone.

    See :func:`cacscore.anatomy.exclusion.exclude_outside_heart`; ``region`` defaults to the volume's own
    (:func:`cacscore.anatomy.check_domain`).
    """
    from cacscore.anatomy import check_domain, exclude_outside_heart

    if not prediction.labels.any():
        return prediction
    region = region if region is not None else check_domain(volume).region
    kept = exclude_outside_heart(prediction.labels, volume.hu, volume.spacing, region, threshold_hu)
    if not kept.n_removed:
        return prediction
    return replace(prediction, labels=kept.labels, warnings=[*prediction.warnings, *kept.warnings])


def load_ensemble(
    model_dir: str | Path | None = None,
    *,
    precision: str | None = None,
    device: str = "cpu",
    fast: bool = True,
) -> Ensemble:
    """Rebuild an ensemble from a model folder (``plan.json`` + ``member_<k>.safetensors``).

    Parameters
    ----------
    model_dir : str or Path, optional
        The folder; default ``$CACSCORE_MODEL_DIR`` or the model shipped in the package.
    precision : {"fp32", "bf16"}, optional
        Inference precision; default the plan's.
    device : str
        Torch device for the forward passes (``"cpu"`` or ``"cuda"``).
    fast : bool
        See :class:`Ensemble`.

    Raises
    ------
    ModelFolderError
        If the folder, its plan or a member file is missing or unreadable.
    PlanMismatchError
        If the plan's version or the weights do not match this code.
    """
    folder = Path(model_dir) if model_dir is not None else default_model_dir()
    plan = Plan.load(folder)
    init_args = plan.init_args
    missing = [m["file"] for m in plan.members if not (folder / m["file"]).is_file()]
    if missing:
        raise ModelFolderError(f"{folder}: member weights {missing} listed in plan.json are missing")
    members = [load_member(folder / m["file"], init_args) for m in plan.members]
    return Ensemble(plan, members, folder, precision, device, fast)


def score_with_model(
    volume: CTVolume,
    ensemble: Ensemble,
    *,
    prediction: EnsemblePrediction | None = None,
    **score_options: Any,
) -> ScoreResult:
    """Score a volume with the ensemble's mask; lesions carry ``confidence`` (and ``filter_probability``).

    Parameters
    ----------
    volume : CTVolume
        The CT.
    ensemble : Ensemble
        The model.
    prediction : EnsemblePrediction, optional
        A prediction already made for ``volume`` (avoids running the model twice).
    **score_options
        Passed to :func:`cacscore.scoring.score_volume` (kVp thresholds, area rule...).

    Returns
    -------
    ScoreResult
    """
    prediction = prediction if prediction is not None else ensemble.predict(volume)
    result, lesion_map = score_volume(volume, prediction.labels, return_lesion_map=True, **score_options)
    result = result.with_confidences(prediction.lesion_confidence(lesion_map)).with_filter_probabilities(
        prediction.filter_probability(lesion_map)
    )
    return (
        replace(result, warnings=[*result.warnings, *prediction.warnings]) if prediction.warnings else result
    )
