"""Training a tiny model on a tiny phantom cohort: files, resume, reload, inference end to end, commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cacscore.cli.main import app
from cacscore.errors import CacScoreError, InvalidInputError
from cacscore.io import read_volume
from cacscore.model import load_ensemble, score_with_model
from cacscore.phantom import PhantomConfig, generate_cohort
from cacscore.train import TrainConfig, train_model, validation_dice
from cacscore.train.data import CachedCase, split_cases

TINY = {
    "members": 2,
    "epochs": 2,
    "steps_per_epoch": 2,
    "batch": 2,
    "patch": (8, 16, 16),
    "filters": (4, 8),
    "val_cases": 1,
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    generate_cohort(
        root,
        5,
        5,
        fmt="nifti",
        balance=True,
        progress=False,
        config=PhantomConfig(matrix=96, n_slices=(20, 24)),
    )
    return root


@pytest.fixture(scope="module")
def tiny_model(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "tiny"
    train_model(TrainConfig(data=cohort, out=out, **TINY))  # type: ignore[arg-type]
    return out


def test_training_writes_plan_and_safetensors(tiny_model: Path) -> None:
    plan = json.loads((tiny_model / "plan.json").read_text())
    assert [m["file"] for m in plan["members"]] == ["member_0.safetensors", "member_1.safetensors"]
    assert all(1 <= m["best_epoch"] <= 2 and 0 <= m["val_dice"] <= 1 for m in plan["members"])
    assert plan["network"]["init_args"] == {"in_channels": 1, "n_classes": 5, "filters": [4, 8]}
    assert len(plan["training"]["val_case_ids"]) == 1 and len(plan["training"]["train_case_ids"]) == 4
    assert plan["data"]["layout"] == "phantom" and plan["data"]["generator_version"] is not None
    assert plan["preprocessing"]["clip_hu"] == [-300.0, 800.0]
    assert (tiny_model / "member_1.safetensors").stat().st_size > 0
    training = plan["training"]
    augmentation = training["augmentation"]
    assert augmentation["version"] == 2 and augmentation["p_elastic"] == 0.2
    assert augmentation["scale_range"] == [0.85, 1.15] and augmentation["noise_sd_hu"] == [0.0, 15.0]
    assert training["context_fraction"] == 0.2 and training["context_radius_mm"] == 60.0


def test_load_ensemble_rebuilds_the_trained_model(tiny_model: Path) -> None:
    ensemble = load_ensemble(tiny_model)
    assert len(ensemble.members) == 2 and ensemble.members[0].init_args["filters"] == [4, 8]


def test_inference_gives_labels_on_the_original_grid_only_above_130_hu(
    tiny_model: Path, cohort: Path
) -> None:
    volume = read_volume(cohort / "case_0002" / "image.nii.gz")
    ensemble = load_ensemble(tiny_model)
    prediction = ensemble.predict(volume)
    assert prediction.labels.shape == volume.shape and prediction.labels.dtype == np.uint8
    assert np.all(volume.hu[prediction.labels > 0] >= 130)
    assert set(np.unique(prediction.labels)) <= {0, 2, 3, 4, 5}
    result = score_with_model(volume, ensemble, prediction=prediction)
    assert all(lesion.confidence is not None and 0.5 < lesion.confidence <= 1 for lesion in result.lesions)


def test_bf16_inference_runs_channels_last_and_keeps_the_grid(tiny_model: Path, cohort: Path) -> None:
    volume = read_volume(cohort / "case_0002" / "image.nii.gz")
    ensemble = load_ensemble(tiny_model, precision="bf16")
    assert ensemble.members[0].head.weight.is_contiguous(memory_format=torch.channels_last_3d)
    labels = ensemble.predict(volume).labels
    assert labels.shape == volume.shape and np.all(volume.hu[labels > 0] >= 130)


def test_existing_model_needs_resume(tiny_model: Path, cohort: Path) -> None:
    with pytest.raises(CacScoreError, match="use --resume"):
        train_model(TrainConfig(data=cohort, out=tiny_model, **TINY))  # type: ignore[arg-type]


def test_resume_keeps_finished_members_and_continues_the_current_one(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    events: list[tuple[Any, ...]] = []

    def interrupt_member_1(kind: str, *args: Any) -> None:
        events.append((kind, *args))
        if kind == "epoch" and events[-1] and any(e[:2] == ("member", 1) for e in events):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(TrainConfig(data=cohort, out=out, **TINY), report=interrupt_member_1)  # type: ignore[arg-type]
    assert (out / "member_0.safetensors").is_file() and not (out / "member_1.safetensors").exists()
    first = (out / "member_0.safetensors").stat().st_mtime_ns
    resumed: list[tuple[Any, ...]] = []
    plan = train_model(
        TrainConfig(data=cohort, out=out, **TINY),
        resume=True,  # type: ignore[arg-type]
        report=lambda kind, *args: resumed.append((kind, *args)),
    )
    assert ("member", 0, 2) not in resumed
    assert [e[1] for e in resumed if e[0] == "epoch"] == [2]  # member 1 continues at its second epoch
    assert (out / "member_0.safetensors").stat().st_mtime_ns == first
    assert [m["member"] for m in plan.members] == [0, 1]


def test_init_fine_tunes_from_the_members_of_another_model(
    tiny_model: Path, cohort: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    # A learning rate too small to move float16 weights: the result must be the parent's convolutions.
    config = TrainConfig(
        data=cohort,
        out=tmp_path / "ft",
        init=tiny_model,
        lr=1e-12,  # type: ignore[arg-type]
        **{**TINY, "epochs": 1},
    )
    plan = train_model(config)
    for k in range(2):
        parent = load_file(str(tiny_model / f"member_{k}.safetensors"))
        child = load_file(str(tmp_path / "ft" / f"member_{k}.safetensors"))
        conv = [key for key in parent if key.endswith("conv1.weight")]
        assert conv and all(torch.equal(parent[key], child[key]) for key in conv)
    train_model(TrainConfig(data=cohort, out=tmp_path / "scratch", lr=1e-12, **{**TINY, "epochs": 1}))  # type: ignore[arg-type]
    scratch = load_file(str(tmp_path / "scratch" / "member_0.safetensors"))
    parent0 = load_file(str(tiny_model / "member_0.safetensors"))
    assert not torch.equal(scratch["encoders.0.conv1.weight"], parent0["encoders.0.conv1.weight"])
    lineage = plan.data["training"]["init"]
    assert lineage["name"] == "cacscore-resunet" and lineage["path"] == str(tiny_model)
    assert [m["member"] for m in lineage["members"]] == [0, 1]
    assert "train_case_ids" not in lineage["training"]


def test_init_weights_compete_as_epoch_0(
    tiny_model: Path, cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    from cacscore.train import loop

    scores = iter([0.9, 0.5, 0.6] * 2)  # per member: the init weights, then two fine-tuned epochs
    monkeypatch.setattr(loop, "validation_dice", lambda *args, **kwargs: next(scores))
    config = TrainConfig(data=cohort, out=tmp_path / "ft", init=tiny_model, lr=0.05, **TINY)  # type: ignore[arg-type]
    plan = train_model(config)
    assert [m["best_epoch"] for m in plan.members] == [0, 0]
    assert [[h["epoch"] for h in m["history"]] for m in plan.members] == [[0, 1, 2], [0, 1, 2]]
    parent = load_file(str(tiny_model / "member_1.safetensors"))
    child = load_file(str(tmp_path / "ft" / "member_1.safetensors"))
    assert all(torch.equal(parent[key], child[key]) for key in parent)  # BN statistics included
    assert plan.data["training"]["selection"].endswith("(epoch 0: the init weights)")


def test_init_with_another_network_is_refused(tiny_model: Path, cohort: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        data=cohort,
        out=tmp_path / "x",
        init=tiny_model,  # type: ignore[arg-type]
        **{**TINY, "filters": (4, 8, 16)},
    )
    with pytest.raises(InvalidInputError, match=r"cannot fine-tune .* \(head arteries, filters \[4, 8\]\)"):
        train_model(config)
    assert not (tmp_path / "x").exists()


class _FixedNet(torch.nn.Module):
    """Returns the logits of the next case, whatever the input."""

    def __init__(self, logits: list[torch.Tensor]) -> None:
        super().__init__()
        self.logits = iter(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return next(self.logits)


def test_validation_dice_pooled_or_per_case() -> None:
    shape = (1, 2, 10)
    empty = CachedCase("a", np.ones(shape, np.float32), np.zeros(shape, np.uint8), (3.0, 3.0, 3.0))
    full = CachedCase("b", np.ones(shape, np.float32), np.ones(shape, np.uint8), (3.0, 3.0, 3.0))
    # Case "a": one false-positive voxel; case "b": its 20 calcium voxels exactly.
    fp = torch.zeros(1, 2, *shape)
    fp[0, 1, 0, 0, 0] = 1.0
    exact = torch.zeros(1, 2, *shape)
    exact[0, 1] = 1.0

    def dice(per_case: bool) -> float:
        net = _FixedNet([fp, exact])
        return validation_dice(net, [empty, full], 2, torch.device("cpu"), False, per_case=per_case)

    assert dice(False) == pytest.approx(2 * 20 / (1 + 40))  # pooled: the false positive hardly counts
    assert dice(True) == pytest.approx((0.0 + 1.0) / 2)  # per case: the empty scan scores 0


def test_split_is_fixed_by_seed_and_capped() -> None:
    ids = [f"c{i}" for i in range(30)]
    train, val = split_cases(ids, 20, seed=3)
    assert len(val) == 6 and len(train) == 24 and not set(train) & set(val)
    assert split_cases(ids, 20, seed=3) == (train, val)
    with pytest.raises(InvalidInputError, match="at least 2 cases"):
        split_cases(["only"], 1, seed=0)


def test_bad_settings_are_named(cohort: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="multiples of 2"):
        train_model(TrainConfig(data=cohort, out=tmp_path / "x", **{**TINY, "patch": (7, 16, 16)}))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="head must be"):
        train_model(TrainConfig(data=cohort, out=tmp_path / "x", head="coronary"))
    with pytest.raises(InvalidInputError, match="val_metric must be one of dice, case_dice"):
        train_model(TrainConfig(data=cohort, out=tmp_path / "x", val_metric="f1"))


def test_train_command(cohort: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--data",
            str(cohort),
            "--out",
            str(tmp_path / "m"),
            "--members",
            "1",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "1",
            "--batch",
            "1",
            "--patch",
            "8,16,16",
            "--filters",
            "4,8",
            "--val-cases",
            "1",
            "--head",
            "binary",
            "--loss",
            "dice_topk",
            "--val-metric",
            "case_dice",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "member 0: best epoch 1" in result.output
    plan = json.loads((tmp_path / "m" / "plan.json").read_text())
    assert plan["head"] == "binary" and plan["class_codes"] == [0, 1]
    assert plan["training"]["loss"] == "dice_topk" and plan["training"]["val_metric"] == "case_dice"
    assert plan["training"]["selection"] == "best epoch by validation mean of the per-case Dice"


def test_train_command_bad_patch_is_one_line(cohort: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train", "--data", str(cohort), "--out", str(tmp_path / "m"), "--patch", "8,16"]
    )
    assert result.exit_code == 1
    assert "--patch must be three integers" in result.output
