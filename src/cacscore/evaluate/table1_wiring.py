"""The real training, prediction and cohorts of the Table 1 experiment (the protocol takes them injected).

:func:`train_with_cacscore` and :func:`predict_with_cacscore` are the ``train_fn`` and
``predict_fn`` of :func:`cacscore.evaluate.experiment.run_table1`; :func:`make_cohort`
generates its phantom cohorts. ``cacscore experiment table1`` (:mod:`cacscore.cli.experiment`)
puts them together.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cacscore.evaluate.experiment import MemberPredictions, TrainRequest


def hardware_description() -> str:
    """One line describing this machine (CPU count, platform, CUDA device if any)."""
    text = f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores"
    try:
        import torch

        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:  # torch is a dependency; this only guards odd installs
        pass
    return text


def train_with_cacscore(request: TrainRequest) -> None:
    """The real ``train_fn``: :func:`cacscore.train.train_model`, resuming finished members.

    The validation split is drawn by :func:`cacscore.train.split_cases` from
    the set's cases (``len(request.val_ids)`` of them, capped at a fifth), so
    it is not pinned to ``request.val_ids``; see ``docs/evaluation.md``.
    """
    from cacscore.train import TrainConfig, train_model

    s = request.scale
    config = TrainConfig(
        data=request.data_dir,
        out=request.model_dir,
        members=request.n_members,
        epochs=s.epochs,
        steps_per_epoch=s.steps_per_epoch,
        batch=s.batch,
        patch=s.patch,
        val_cases=len(request.val_ids),
        seed=request.seed,
        device=request.device,
        name=f"table1-{s.name}-{request.data_dir.name}",
        workers=os.cpu_count() or 1,
        max_minutes=s.max_minutes,
    )
    train_model(config, resume=(request.model_dir / "plan.json").is_file())


def predict_with_cacscore(model_dir: Path, device: str = "cpu") -> Callable[[Any], MemberPredictions]:
    """The real ``predict_fn``: one forward pass per member, each member alone and the majority vote.

    The forward passes are the ensemble's own (:meth:`cacscore.model.Ensemble.member_probabilities`);
    ``device`` ``"cuda"`` (or ``"auto"`` with a GPU) runs them there in bf16, as training does, since
    15 members x the test cohort is the experiment's slowest part. Every mask, each member's and the
    vote's, goes through the heart region's lesion rule as ``cacscore score`` applies it
    (:func:`cacscore.model.ensemble.restrict_to_heart`, one domain check per case): the table
    compares what the tool would report.
    """
    from cacscore.anatomy import check_domain
    from cacscore.model import load_ensemble
    from cacscore.model.ensemble import restrict_to_heart
    from cacscore.train import resolve_device

    target = resolve_device(device)
    on_gpu = target.type != "cpu"
    ensemble = load_ensemble(model_dir, device=str(target), precision="bf16" if on_gpu else None)

    def predict(case: Any) -> MemberPredictions:
        volume = case.volume
        image, grid = ensemble.preprocess(volume)
        member_probabilities = list(ensemble.member_probabilities(image))
        region = check_domain(volume).region
        threshold_hu = ensemble.plan.threshold_hu

        def labels(probabilities: list[Any]) -> Any:
            combined = ensemble.combine(probabilities, image=image, grid=grid, hu=volume.hu)
            return restrict_to_heart(combined, volume, threshold_hu, region).labels

        return MemberPredictions([labels([p]) for p in member_probabilities], labels(member_probabilities))

    return predict


#: Seeds of the generated cohorts: training and test never share a seed.
TRAIN_COHORT_SEED = 1000
TEST_COHORT_SEED = 2000


def make_cohort(folder: Path, n: int, seed: int, *, balance: bool, progress: bool = False) -> list[Any]:
    """Generate (or complete) a NIfTI phantom cohort on all CPU cores and list its cases.

    Resumable: the generator keeps complete cases already in ``folder``.
    """
    from cacscore.datasets import list_cases
    from cacscore.phantom.cohort import generate_cohort

    generate_cohort(
        folder, n, seed, fmt="nifti", balance=balance, workers=os.cpu_count() or 1, progress=progress
    )
    return list_cases(folder)[:n]
