"""Fixtures of the batch tests: a small DICOM phantom cohort and a tiny model (random weights, fast)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped plan with two 4-8 filter members of fixed random weights: seconds, not minutes, per series.

    Its scores mean nothing; the tests compare the batch with ``cacscore score`` on the same model.
    """
    import torch

    from cacscore.model import ResUNet3d, default_model_dir, save_member

    out = tmp_path_factory.mktemp("model") / "tiny"
    out.mkdir()
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


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three DICOM phantoms (96 x 96, 40-44 slices: the heart fully in view) in ``case_000k/image``."""
    from cacscore.phantom import PhantomConfig, generate_cohort

    root = tmp_path_factory.mktemp("cohort")
    generate_cohort(
        root,
        3,
        7,
        fmt="dicom",
        balance=True,
        progress=False,
        config=PhantomConfig.for_version(1, matrix=96, n_slices=(40, 44)),
    )
    return root


@pytest.fixture()
def cohort_copy(cohort: Path, tmp_path: Path) -> Path:
    """A copy of the cohort's images only (the tests may add or break series)."""
    root = tmp_path / "cohort"
    for image in sorted(cohort.glob("case_*/image")):
        shutil.copytree(image, root / image.parent.name)
    return root
