"""Untrained ensembles of the project's network for tests: fast (filters 2 and 4), no weights on disk."""

from __future__ import annotations

import json
from pathlib import Path

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


def write_tiny_model(out: Path) -> Path:
    """A model folder ``out``: the shipped plan with two 4-8 filter members of fixed random weights.

    Named ``tiny-test``, version ``0``, vote of one member, no lesion filter: seconds, not minutes, per
    series. Its scores mean nothing; tests compare two ways of running the same model.
    """
    from cacscore.model import default_model_dir, save_member

    out.mkdir(parents=True)
    plan = json.loads((default_model_dir() / "plan.json").read_text(encoding="utf-8"))
    plan["network"]["init_args"]["filters"] = [4, 8]
    plan["members"] = plan["members"][:2]
    plan["inference"] = {**plan["inference"], "min_votes": 1, "lesion_filter": None}
    plan["inference"].pop("small_lesion_votes", None)
    plan["name"], plan["model_version"] = "tiny-test", "0"
    (out / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    torch.manual_seed(0)
    for member in plan["members"]:
        save_member(ResUNet3d(**plan["network"]["init_args"]), out / member["file"], half=False)
    return out
