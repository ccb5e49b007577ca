"""Member selection (cacscore.model.selection, cacscore choose-members) on tiny networks and 3 cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cacscore.cli.main import app
from cacscore.errors import InvalidInputError
from cacscore.io import CTVolume, write_mask, write_volume
from cacscore.labels import LAD, RCA
from cacscore.model import PLAN_VERSION, Plan, ResUNet3d, save_member
from cacscore.model.selection import choose_members, lesion_rules, objective, vote_rules
from cacscore.preprocess import preprocessing_dict


def _write_model(folder: Path, seed: int, members: int = 2, filters: tuple[int, ...] = (2, 4)) -> Path:
    folder.mkdir(parents=True)
    Plan(
        {
            "inference": {"precision": "fp32"},
            "plan_version": PLAN_VERSION,
            "name": folder.name,
            "model_version": "t",
            "head": "arteries",
            "class_codes": [0, 2, 3, 4, 5],
            "network": {
                "class": "ResUNet3d",
                "init_args": {"in_channels": 1, "n_classes": 5, "filters": list(filters)},
            },
            "preprocessing": preprocessing_dict(),
            "members": [{"member": k, "file": f"member_{k}.safetensors"} for k in range(members)],
        }
    ).save(folder)
    torch.manual_seed(seed)
    for k in range(members):
        save_member(ResUNet3d(1, 5, list(filters)), folder / f"member_{k}.safetensors")
    return folder


def _write_cohort(folder: Path, n: int = 3) -> Path:
    """Phantom layout (cases.csv): 12 x 40 x 40 at 2.5 x 0.7 x 0.7 mm, one or two 400 HU plaques each."""
    rows = ["case_id,image,label"]
    for i in range(n):
        hu = np.full((12, 40, 40), 40, dtype=np.int16)
        label = np.zeros(hu.shape, dtype=np.uint8)
        hu[5:7, 10:14, 10:14] = 400
        label[5:7, 10:14, 10:14] = LAD
        if i % 2:
            hu[8, 25:30, 25:30] = 300
            label[8, 25:30, 25:30] = RCA
        volume = CTVolume(hu=hu, spacing=(2.5, 0.7, 0.7))
        case = folder / f"case_{i:04d}"
        case.mkdir(parents=True)
        write_volume(volume, case / "image.nii.gz")
        write_mask(label, volume, case / "label.nii.gz")
        rows.append(f"case_{i:04d},case_{i:04d}/image.nii.gz,case_{i:04d}/label.nii.gz")
    (folder / "cases.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def test_rules_and_objective_by_hand() -> None:
    assert vote_rules(5) == [2, 3] and vote_rules(2) == [1, 2] and vote_rules(1) == [1]
    assert lesion_rules(5) == [(1, None), (2, None), (3, None)]
    assert lesion_rules(5, keep_small=True) == [(1, None), (2, None), (3, None), (2, 5), (3, 5)]
    # 0.9 + 0.8 - 0.01 x 2 %
    assert objective(
        {"accuracy": 0.9, "lesion_f1": 0.8, "valve_or_annulus_counted_pct": 2.0}
    ) == pytest.approx(1.68)


def test_choose_members_writes_a_model_folder_and_resumes_from_its_cache(tmp_path: Path) -> None:
    models = [_write_model(tmp_path / "run_a", seed=1), _write_model(tmp_path / "run_b", seed=2)]
    cohort = _write_cohort(tmp_path / "dev")
    cache = tmp_path / "cache"
    lines: list[str] = []
    chosen = choose_members(
        [cohort],
        models,
        tmp_path / "chosen",
        n_members=2,
        cache=cache,
        model_version="9",
        report=lines.append,
    )
    plan = json.loads((tmp_path / "chosen" / "plan.json").read_text())
    assert plan["model_version"] == "9"
    assert len(plan["members"]) == 2 and len(chosen["members"]) == 2
    # Each written member is the chosen source member, byte for byte.
    sources = [(m, k) for m in models for k in range(2)]
    for k, index in enumerate(chosen["members"]):
        model, member = sources[index]
        assert (tmp_path / "chosen" / f"member_{k}.safetensors").read_bytes() == (
            model / f"member_{member}.safetensors"
        ).read_bytes()
        assert plan["members"][k]["picked_from"] == {"run": models.index(model), "member": member}
    assert plan["inference"]["min_votes"] in vote_rules(2)
    assert plan["selection"]["n_cases"] == 3 and len(plan["selection"]["steps"]) == 2
    assert len(plan["selection"]["whole_runs"]) == 2  # both runs have 2 members, as many as asked for
    assert "lesion_filter" not in plan["inference"]
    assert len(lines) == 4  # two greedy steps, two whole runs
    assert 0.0 <= chosen["figures"]["accuracy"] <= 1.0
    # The cache holds one file per model and case; a second selection reads them instead of recomputing.
    cached = sorted(cache.rglob("*.npz"))
    assert len(cached) == 6
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = choose_members([cohort], models, tmp_path / "again", n_members=2, cache=cache)
    assert again["members"] == chosen["members"]
    assert [p.stat().st_mtime_ns for p in cached] == stamps


def test_bad_requests_name_the_problem(tmp_path: Path) -> None:
    one = _write_model(tmp_path / "one", seed=1)
    other = _write_model(tmp_path / "other", seed=1, filters=(2, 4, 8))
    cohort = _write_cohort(tmp_path / "dev", n=1)
    (tmp_path / "taken").mkdir()
    with pytest.raises(InvalidInputError, match="already exists"):
        choose_members([cohort], [one], tmp_path / "taken", cache=tmp_path / "cache")
    with pytest.raises(InvalidInputError, match="differ in network"):
        choose_members([cohort], [one, other], tmp_path / "new", cache=tmp_path / "cache")


def test_choose_members_command(tmp_path: Path) -> None:
    model = _write_model(tmp_path / "run", seed=3)
    cohort = _write_cohort(tmp_path / "dev", n=2)
    result = CliRunner().invoke(
        app,
        [
            "choose-members",
            "--data",
            str(cohort),
            "--model",
            str(model),
            "--out",
            str(tmp_path / "new"),
            "--members",
            "2",
            "--workers",
            "1",
            "--cache",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"model written to {tmp_path / 'new'}" in result.output
    assert (tmp_path / "new" / "plan.json").is_file()
    again = CliRunner().invoke(
        app,
        [
            "choose-members",
            "--data",
            str(cohort),
            "--model",
            str(model),
            "--out",
            str(tmp_path / "new"),
            "--cache",
            str(tmp_path / "cache"),
        ],
    )
    assert again.exit_code == 1 and "already exists" in again.output
