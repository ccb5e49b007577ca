"""Untrained ensembles of the project's network for tests: fast (filters 2 and 4), no weights on disk."""

from __future__ import annotations

import torch

from cacscore.model import PLAN_VERSION, Ensemble, Plan, ResUNet3d
from cacscore.preprocess import preprocessing_dict


def tiny_ensemble(members: int = 1, seed: int | None = None) -> Ensemble:
    """An ensemble named ``tiny``, version ``0.1``, of ``members`` untrained members (fp32, artery head).

    ``seed`` fixes the members' random weights (and so their masks); None leaves torch's generator as it is.
    """
    plan = Plan(
        {
            "inference": {"precision": "fp32"},
            "plan_version": PLAN_VERSION,
            "name": "tiny",
            "model_version": "0.1",
            "head": "arteries",
            "class_codes": [0, 2, 3, 4, 5],
            "network": {
                "class": "ResUNet3d",
                "init_args": {"in_channels": 1, "n_classes": 5, "filters": [2, 4]},
            },
            "preprocessing": preprocessing_dict(),
            "members": [{"member": k, "file": f"member_{k}.safetensors"} for k in range(members)],
        }
    )
    if seed is not None:
        torch.manual_seed(seed)
    return Ensemble(plan, [ResUNet3d(1, 5, [2, 4]) for _ in range(members)])
