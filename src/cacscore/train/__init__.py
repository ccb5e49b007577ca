"""Training of the segmentation ensemble (``cacscore train``)."""

from __future__ import annotations

from cacscore.train.data import Augmentation, PatchSampler, prepare_cases, split_cases
from cacscore.train.loop import TrainConfig, resolve_device, train_model, validation_dice

__all__ = [
    "Augmentation",
    "PatchSampler",
    "TrainConfig",
    "prepare_cases",
    "resolve_device",
    "split_cases",
    "train_model",
    "validation_dice",
]
