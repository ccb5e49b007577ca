"""Fine-tuning on one's own data: inherited recipe and vote rules, the lesion filter refitted, replay,
declared mask conventions, caches outside the model folder, the time limit, the starting Dice."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cacscore.cli.main import app
from cacscore.datasets import list_cases
from cacscore.errors import InvalidInputError
from cacscore.io import CTVolume, write_mask, write_volume
from cacscore.model import Plan
from cacscore.model.lesion_filter import FEATURE_NAMES, LesionFilter
from cacscore.phantom import PhantomConfig, generate_cohort
from cacscore.train import TrainConfig, train_model
from cacscore.train import finetune as finetuning
from cacscore.train.augment import Augmentation
from cacscore.train.data import CACHE_ENV, CachedCase, MixedSampler, PatchSampler, cache_file, load_cached
from cacscore.train.loop import run_dir

TINY = {
    "members": 2,
    "epochs": 1,
    "steps_per_epoch": 1,
    "batch": 1,
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
        11,
        fmt="nifti",
        balance=True,
        progress=False,
        config=PhantomConfig(matrix=96, n_slices=(20, 24)),
    )
    return root


@pytest.fixture(scope="module")
def parent(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model with its own recipe, vote rules and a lesion filter, as a shipped model has."""
    out = tmp_path_factory.mktemp("parent") / "model"
    train_model(
        TrainConfig(
            data=cohort,
            out=out,
            loss="dice_topk",
            val_metric="case_dice",
            lr=1e-3,
            augmentation=Augmentation(p_blur=0.9),
            context_fraction=0.1,
            **TINY,
        )
    )  # type: ignore[arg-type]
    plan = json.loads((out / "plan.json").read_text())
    n = len(FEATURE_NAMES)
    lesion_filter = LesionFilter(
        mean=(0.0,) * n,
        scale=(1.0,) * n,
        coefficients=(0.5,) * n,
        intercept=0.0,
        threshold=0.4,
        candidate_votes=1,
        fitted_on={"l2": 2.0},
    )
    plan["inference"].update(
        min_votes=2, min_lesion_voxels=3, small_lesion_votes=2, lesion_filter=lesion_filter.to_dict()
    )
    (out / "plan.json").write_text(json.dumps(plan))
    return out


def test_the_model_folder_holds_only_the_plan_and_the_members(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    train_model(TrainConfig(data=cohort, out=out, **{**TINY, "members": 1}))  # type: ignore[arg-type]
    assert sorted(p.name for p in out.iterdir()) == ["member_0.safetensors", "plan.json"]
    cache = Path(os.environ[CACHE_ENV])
    assert len(list((cache / "preprocessed").glob("*/case_0000-*.npz"))) >= 1
    assert not run_dir(cache, out).exists()  # the checkpoints went with the finished run


def test_a_changed_label_file_is_preprocessed_again(tmp_path: Path) -> None:
    volume = CTVolume(hu=np.zeros((4, 8, 8), np.int16), spacing=(3.0, 1.0, 1.0))
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    write_volume(volume, tmp_path / "images" / "a.nii.gz")
    write_mask(np.zeros((4, 8, 8), np.uint8), volume, tmp_path / "labels" / "a.nii.gz")
    ref = list_cases(tmp_path)[0]
    before = cache_file(tmp_path / "cache", ref)
    label = np.zeros((4, 8, 8), np.uint8)
    label[1, 2, 2] = 3
    time.sleep(0.01)
    write_mask(label, volume, tmp_path / "labels" / "a.nii.gz")
    assert cache_file(tmp_path / "cache", ref) != before
    assert cache_file(tmp_path / "cache", list_cases(tmp_path, mask_labels="binary")[0]) != cache_file(
        tmp_path / "cache", ref
    )
    assert before.name.startswith("a-")


def test_fine_tune_inherits_the_parent_recipe_unless_given(
    parent: Path, cohort: Path, tmp_path: Path
) -> None:
    config = TrainConfig.fine_tune(parent, data=cohort, out=tmp_path / "ft", lr=5e-4)
    assert config.patch == (8, 16, 16) and config.loss == "dice_topk" and config.val_metric == "case_dice"
    assert config.steps_per_epoch == 1 and config.epochs == 1 and config.members == 2 and config.batch == 1
    assert config.filters == (4, 8) and config.head == "arteries"
    assert config.augmentation == Augmentation(p_blur=0.9) and config.context_fraction == 0.1
    assert config.lr == 5e-4 and "lr" not in config.inherited
    assert {"patch", "loss", "steps_per_epoch", "augmentation", "filters"} <= set(config.inherited)
    assert config.max_minutes is None  # a time limit belongs to a machine, not to a recipe


def test_an_augmentation_of_the_first_format_is_not_inherited(
    parent: Path, cohort: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    shutil.copytree(parent, old)
    plan = json.loads((old / "plan.json").read_text())
    plan["training"]["augmentation"] = {
        "p_spatial": 0.33,
        "rotation_deg": 10.0,
        "scale": 0.1,
        "p_intensity": 0.5,
        "intensity_scale": 0.05,
        "intensity_shift": 0.01,
        "p_noise": 0.3,
        "noise_sd": 0.01,
    }
    (old / "plan.json").write_text(json.dumps(plan))
    config = TrainConfig.fine_tune(old, data=cohort, out=tmp_path / "ft")
    assert config.augmentation == Augmentation() and "augmentation" not in config.inherited
    assert config.loss == "dice_topk"  # the rest of the recipe is still the parent's


def test_fine_tune_keeps_the_vote_rules_and_refits_the_lesion_filter(
    parent: Path, cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(80, len(FEATURE_NAMES)))
    truth = np.arange(80) < 40
    features[truth, 0] += 3.0  # true lesions are larger
    seen: dict[str, Any] = {}

    def candidates(ensemble: Any, refs: Any, work: Path, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        seen.update(refs=[ref.case_id for _, ref in refs], votes=kwargs["candidate_votes"], work=work)
        return features, truth

    monkeypatch.setattr(finetuning, "collect_candidates", candidates)
    events: list[tuple[Any, ...]] = []
    out = tmp_path / "ft"
    plan = train_model(
        TrainConfig.fine_tune(parent, data=cohort, out=out, filter_data=(cohort,)),
        report=lambda *e: events.append(e),
    )
    inference = plan.data["inference"]
    assert (inference["min_votes"], inference["min_lesion_voxels"], inference["small_lesion_votes"]) == (
        2,
        3,
        2,
    )
    fitted = inference["lesion_filter"]
    assert fitted["threshold"] == 0.4 and fitted["candidate_votes"] == 1  # the parent's settings
    assert fitted["fitted_on"]["lesions"] == 80 and fitted["fitted_on"]["l2"] == 2.0
    assert fitted["coefficients"][0] > 1.0 and fitted["coefficients"] != [0.5] * len(FEATURE_NAMES)
    # The validation cases, and those of --filter-data (here the same cohort, under their own ids).
    assert seen["refs"] == plan.data["training"]["val_case_ids"] + [f"filter0-case_000{i}" for i in range(5)]
    assert plan.data["training"]["init"]["filter_data"] == [str(cohort)]
    record = plan.data["training"]["post_processing"]
    assert record["lesion_filter"] == "refitted" and record["reliable"] is True
    assert Plan.load(out).lesion_filter(2) is not None
    assert sorted(p.name for p in out.iterdir()) == [
        "member_0.safetensors",
        "member_1.safetensors",
        "plan.json",
    ]
    starts = [e for e in events if e[0] == "start"]
    assert [(e[1], e[2]) for e in starts] == [(0, 0), (1, 1)] and all(0 <= e[3] <= 1 for e in starts)
    assert (
        plan.data["training"]["init"]["inherited"]
        and plan.data["training"]["init"]["lesion_filter"] == "refit"
    )


FEW = (np.random.default_rng(1).normal(size=(12, len(FEATURE_NAMES))), np.arange(12) < 9)


def test_too_few_candidates_say_how_to_refit(
    parent: Path, cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(finetuning, "collect_candidates", lambda *a, **k: FEW)
    plan = train_model(TrainConfig.fine_tune(parent, data=cohort, out=tmp_path / "a", members=1))
    record = plan.data["training"]["post_processing"]
    assert record["lesion_filter"] == "refitted" and record["reliable"] is False
    assert "unreliable" in record["message"] and f"--model {tmp_path / 'a'}" in record["message"]


def test_one_sided_candidates_leave_the_vote_rules(
    parent: Path, cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(finetuning, "collect_candidates", lambda *a, **k: (FEW[0], np.ones(12, bool)))
    plan = train_model(TrainConfig.fine_tune(parent, data=cohort, out=tmp_path / "b", members=1))
    record = plan.data["training"]["post_processing"]
    assert record["lesion_filter"] == "not refitted" and "lesion_filter" not in plan.data["inference"]
    # The parent's votes (2 of 2) are capped at the one member.
    assert "cacscore train-lesion-filter --model" in record["message"] and "min_votes=1" in record["message"]


def test_drop_leaves_the_filter_out(parent: Path, cohort: Path, tmp_path: Path) -> None:
    plan = train_model(TrainConfig.fine_tune(parent, data=cohort, out=tmp_path / "c", lesion_filter="drop"))
    assert plan.data["training"]["post_processing"]["lesion_filter"] == "dropped"
    assert "lesion_filter" not in plan.data["inference"] and plan.data["inference"]["min_votes"] == 2


def _case(value: float) -> CachedCase:
    image = np.full((8, 16, 16), value, np.float32)
    target = np.zeros((8, 16, 16), np.uint8)
    target[4, 8, 8] = 3
    return CachedCase("c", image, target, (3.0, 3.0, 3.0))


@pytest.mark.parametrize(("fraction", "expected"), [(0.0, 0.0), (1.0, 1.0), (0.25, 0.25)])
def test_replay_draws_its_share_of_patches(fraction: float, expected: float) -> None:
    cpu = torch.device("cpu")
    main = PatchSampler([_case(0.1)], (4, 8, 8), cpu)
    replay = PatchSampler([_case(0.9)], (4, 8, 8), cpu)
    images, targets = MixedSampler(main, replay, fraction).batch(np.random.default_rng(0), 400)
    share = float((images[:, 0, 0, 0, 0] > 0.5).float().mean())
    assert share == pytest.approx(expected, abs=0.05)
    assert images.shape == (400, 1, 4, 8, 8) and targets.shape == (400, 4, 8, 8)


def test_replay_is_recorded_and_needs_a_parent(parent: Path, cohort: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="replay .* needs init"):
        TrainConfig(data=cohort, out=tmp_path / "x", replay=cohort).check()
    with pytest.raises(InvalidInputError, match="filter_data .* needs init"):
        TrainConfig(data=cohort, out=tmp_path / "x", filter_data=(cohort,)).check()
    plan = train_model(
        TrainConfig.fine_tune(
            parent,
            data=cohort,
            out=tmp_path / "r",
            replay=cohort,
            replay_fraction=0.5,
            lesion_filter="drop",
            members=1,
        )
    )
    assert plan.data["training"]["replay"] == {"path": str(cohort), "fraction": 0.5}
    assert plan.data["data"]["replay"]["n_cases"] == 5


def _orcascore_dataset(root: Path) -> Path:
    """Three tiny cases in the generic layout whose masks use orCaScore codes (1 LAD, 3 RCA)."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(3):
        hu = np.full((12, 40, 40), -100, np.int16)
        hu[:, 0, :] = -1000
        stored = np.zeros(hu.shape, np.uint8)
        hu[5, 10:14, 10:14] = 400
        stored[5, 10:14, 10:14] = 1
        hu[7, 25:29, 25:29] = 500
        stored[7, 25:29, 25:29] = 3
        volume = CTVolume(hu=hu, spacing=(2.5, 0.5, 0.5))
        write_volume(volume, root / "images" / f"c{i}.nii.gz")
        write_mask(stored, volume, root / "labels" / f"c{i}.nii.gz")
    return root


def test_train_reads_masks_in_the_declared_convention(tmp_path: Path) -> None:
    data = _orcascore_dataset(tmp_path / "data")
    plan = train_model(
        TrainConfig(
            data=data,
            out=tmp_path / "m",
            mask_labels="orcascore",  # type: ignore[arg-type]
            **{**TINY, "members": 1},
        )
    )
    assert plan.data["training"]["mask_labels"] == "orcascore"
    cache = Path(os.environ[CACHE_ENV])
    files = sorted((cache / "preprocessed").glob("*/c0-*.npz"))
    assert files
    with np.load(files[-1]) as saved:
        labels = saved["labels"]
    assert set(np.unique(labels).tolist()) == {0, 3, 5}  # LAD and RCA, not "unspecified" and LAD
    assert set(np.unique(load_cached(files[-1], plan.class_codes).target).tolist()) == {0, 2, 4}


def test_the_time_limit_holds_including_the_lesion_filter(parent: Path, cohort: Path, tmp_path: Path) -> None:
    limit_s = 12.0
    start = time.monotonic()
    plan = train_model(
        TrainConfig.fine_tune(
            parent,
            data=cohort,
            out=tmp_path / "t",
            epochs=100000,
            steps_per_epoch=5,
            max_minutes=limit_s / 60,
        )
    )
    took = time.monotonic() - start
    assert took <= limit_s + 1.5
    assert all(m["epochs_run"] >= 1 for m in plan.members)  # the time was used for training
    assert plan.data["training"]["post_processing"]["lesion_filter"] in ("refitted", "not refitted")


def test_fine_tune_command_prints_what_it_inherits_and_the_starting_dice(
    parent: Path, cohort: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "parent"
    shutil.copytree(parent, copy)
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--data",
            str(cohort),
            "--out",
            str(tmp_path / "m"),
            "--init",
            str(copy),
            "--members",
            "1",
            "--lesion-filter",
            "drop",
            "--lr",
            "1e-4",
        ],
    )
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "inherited" in output and "patch 8,16,16" in output and "loss dice_topk" in output
    assert f"starts from member 0 of {copy}: validation Dice" in output
    assert "post-processing:" in output and "left out" in output
    plan = json.loads((tmp_path / "m" / "plan.json").read_text())
    assert plan["training"]["lr"] == 1e-4 and plan["training"]["patch_zyx"] == [8, 16, 16]


def test_bad_mask_labels_option_is_one_line(cohort: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train", "--data", str(cohort), "--out", str(tmp_path / "m"), "--mask-labels", "nnunet"]
    )
    assert result.exit_code == 1
    assert "unknown mask label convention 'nnunet'" in result.output
    assert not (tmp_path / "m").exists()


def test_candidate_collection_stops_before_a_case_when_time_is_up(tmp_path: Path) -> None:
    from cacscore.datasets import CaseRef
    from cacscore.train.fit_lesion_filter import collect_candidates

    done: list[int] = []
    refs = [(0, CaseRef("a", "generic", tmp_path / "missing.nii.gz"))]
    features, truth = collect_candidates(
        None,
        refs,
        tmp_path,
        stop=lambda: True,  # type: ignore[arg-type]
        report=lambda d, t: done.append(d),
    )
    assert features.shape == (0, len(FEATURE_NAMES)) and truth.shape == (0,) and done == []
