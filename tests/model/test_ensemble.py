"""Tests of ensemble voting, confidence, the model folder checks and weight round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cacscore.errors import ModelFolderError, PlanMismatchError
from cacscore.model import (
    PLAN_VERSION,
    Ensemble,
    Plan,
    ResUNet3d,
    load_ensemble,
    majority_artery_per_lesion,
    remove_small_lesions,
    save_member,
)
from cacscore.model.postprocess import vote
from cacscore.preprocess import make_grid, normalize_hu, preprocessing_dict

FILTERS = [2, 4]


def _plan(members: int = 3, **inference: int) -> Plan:
    return Plan(
        {
            "inference": {"precision": "fp32", **inference},
            "plan_version": PLAN_VERSION,
            "name": "test",
            "model_version": "t",
            "head": "arteries",
            "class_codes": [0, 2, 3, 4, 5],
            "network": {
                "class": "ResUNet3d",
                "init_args": {"in_channels": 1, "n_classes": 5, "filters": FILTERS},
            },
            "preprocessing": preprocessing_dict(),
            "members": [{"member": k, "file": f"member_{k}.safetensors"} for k in range(members)],
        }
    )


def _probs(cls: np.ndarray) -> np.ndarray:
    """One-hot probabilities (5, *shape) of a class-index array."""
    return np.moveaxis(np.eye(5)[cls], -1, 0)


def _hand_made() -> tuple[Ensemble, list[np.ndarray], np.ndarray, np.ndarray, object]:
    grid = make_grid((2, 6, 9), (3.0, 1.0, 1.0), target_mm=3.0)  # low-res (2, 2, 3), 3x3 footprints
    hu = np.full((2, 6, 9), 300, np.int16)
    hu[0, 0, 0] = 100  # below 130 HU: never labelled
    member_classes = [np.zeros(grid.shape, int) for _ in range(3)]
    member_classes[0][0, 0, 0] = member_classes[1][0, 0, 0] = 2  # LAD by 2 of 3
    member_classes[2][1, 1, 0] = 4  # RCA by 1 of 3
    member_classes[0][1, 0, 2] = member_classes[1][1, 0, 2] = 1  # LM by 2 ...
    member_classes[2][1, 0, 2] = 3  # ... and LCX by the third: calcium by 3 of 3
    image = normalize_hu(np.full(grid.shape, 300.0))
    ensemble = Ensemble(_plan(), [ResUNet3d(1, 5, FILTERS) for _ in range(3)])
    return ensemble, [_probs(c) for c in member_classes], image, hu, grid


def test_majority_vote_two_of_three_and_artery_of_summed_probabilities() -> None:
    ensemble, probs, image, hu, grid = _hand_made()
    pred = ensemble.combine(probs, image, grid, hu)  # type: ignore[arg-type]
    assert pred.labels.shape == (2, 6, 9)
    assert pred.votes.tolist() == [[[2, 0, 0], [0, 0, 0]], [[0, 0, 3], [1, 0, 0]]]
    lad = np.zeros((2, 6, 9), bool)
    lad[0, :3, :3] = True
    lad[0, 0, 0] = False  # 100 HU
    assert np.array_equal(pred.labels == 3, lad)
    assert np.all(pred.labels[1, :3, 6:] == 2)  # LM: 2 of the 3 artery votes
    assert np.all(pred.labels[1, 3:, :3] == 0)  # RCA by one member only
    assert set(np.unique(pred.labels)) == {0, 2, 3}


def test_confidence_is_the_fraction_of_members_overlapping_each_lesion() -> None:
    ensemble, probs, image, hu, grid = _hand_made()
    pred = ensemble.combine(probs, image, grid, hu)  # type: ignore[arg-type]
    lesions = np.zeros((2, 6, 9), int)
    lesions[0, 1, 1] = 1  # inside the LAD footprint: members 0 and 1
    lesions[1, 1, 7] = 2  # LM footprint: all three
    lesions[1, 4, 1] = 3  # RCA footprint: member 2 only
    lesions[1, 5, 2] = 3
    lesions[0, 4, 4] = 4  # nobody
    conf = pred.lesion_confidence(lesions)
    assert conf == pytest.approx({1: 2 / 3, 2: 1.0, 3: 1 / 3, 4: 0.0})


def test_candidates_below_threshold_are_not_member_calcium() -> None:
    ensemble, probs, image, hu, grid = _hand_made()
    image = image.copy()
    image[0, 0, 0] = normalize_hu(np.array([129.0]))[0]
    pred = ensemble.combine(probs, image, grid, hu)  # type: ignore[arg-type]
    assert not pred.member_masks[:, 0, 0, 0].any()
    assert pred.votes[0, 0, 0] == 0


def test_combine_equals_the_whole_grid_computation() -> None:
    # combine() works inside the box holding the calcium; the result must be that of the whole grid.
    from cacscore.preprocess import restrict_to_calcium, upsample_labels

    rng = np.random.default_rng(4)
    grid = make_grid((13, 40, 37), (2.5, 0.7, 0.7), target_mm=2.5)
    hu = rng.normal(150, 60, grid.source_shape)
    image = normalize_hu(np.full(grid.shape, 300.0))
    classes = [np.where(rng.random(grid.shape) > 0.9, rng.integers(1, 5, grid.shape), 0) for _ in range(3)]
    for c in classes:  # calcium at the far corner, so that the box reaches the grid's edge
        c[-1, -1, -1] = 2
    ensemble = Ensemble(_plan(), [ResUNet3d(1, 5, FILTERS) for _ in range(3)])
    probs = [_probs(c) + rng.random((5, *grid.shape)) * 0.1 for c in classes]
    pred = ensemble.combine(probs, image, grid, hu)
    majority = 2 * pred.votes.astype(int) > 3
    best = np.sum(probs, axis=0)[1:].argmax(axis=0) + 1
    low = np.where(majority, np.array([0, 2, 3, 4, 5])[best], 0).astype(np.uint8)
    whole = majority_artery_per_lesion(restrict_to_calcium(upsample_labels(low, grid), hu))
    assert whole[-1, -1, -1] != 0 or hu[-1, -1, -1] < 130
    assert np.count_nonzero(whole) > 50 and np.array_equal(pred.labels, whole)


def test_min_votes_of_the_plan_replaces_the_majority() -> None:
    ensemble, probs, image, hu, grid = _hand_made()
    ensemble.plan = _plan(min_votes=1)
    pred = ensemble.combine(probs, image, grid, hu)  # type: ignore[arg-type]
    assert np.all(pred.labels[1, 3:, :3] == 5)  # the RCA voxel of one member now counts
    ensemble.plan = _plan(min_votes=3)
    pred = ensemble.combine(probs, image, grid, hu)  # type: ignore[arg-type]
    assert not np.any(pred.labels[0] == 3)  # LAD had 2 votes of 3
    assert np.all(pred.labels[1, :3, 6:] == 2)  # LM had all three


def test_vote_on_selected_voxels_equals_the_vote_on_the_grid() -> None:
    _, probs, image, _, _ = _hand_made()
    whole = vote(probs, image, [0, 2, 3, 4, 5], 0.5, 2)
    picked = np.array([0, 4, 8, 9])  # LAD (2 votes), nothing, LM (3 votes), RCA (1 vote)
    flat = vote(
        [p.reshape(p.shape[0], -1)[:, picked] for p in probs], image.ravel()[picked], [0, 2, 3, 4, 5], 0.5, 2
    )
    for grid_result, flat_result in zip(whole, flat):
        assert np.array_equal(grid_result.reshape(*grid_result.shape[:-3], -1)[..., picked], flat_result)
    assert flat[0].tolist() == [3, 0, 2, 0] and flat[2].tolist() == [2, 0, 3, 1]


def test_min_lesion_voxels_drops_small_lesions_only() -> None:
    ensemble, probs, image, hu, grid = _hand_made()
    hu = hu.copy()
    hu[0, :3, :3] = 100  # the LAD footprint keeps one voxel >= 130 HU: a one-voxel lesion
    hu[0, 2, 2] = 200
    ensemble.plan = _plan(min_lesion_voxels=1)
    assert np.count_nonzero(ensemble.combine(probs, image, grid, hu).labels == 3) == 1  # type: ignore[arg-type]
    ensemble.plan = _plan(min_lesion_voxels=2)
    labels = ensemble.combine(probs, image, grid, hu).labels  # type: ignore[arg-type]
    assert not np.any(labels == 3)
    assert np.count_nonzero(labels == 2) == 9  # the 3 x 3 LM lesion stays


def test_small_lesion_votes_keep_a_small_lesion_that_enough_members_found() -> None:
    ensemble, probs, image, hu, grid = _hand_made()
    hu = hu.copy()
    hu[0, :3, :3] = 100  # a one-voxel LAD lesion, found by 2 of the 3 members
    hu[0, 2, 2] = 200
    ensemble.plan = _plan(min_lesion_voxels=2, small_lesion_votes=2)
    labels = ensemble.combine(probs, image, grid, hu).labels  # type: ignore[arg-type]
    assert np.count_nonzero(labels == 3) == 1 and labels[0, 2, 2] == 3
    ensemble.plan = _plan(min_lesion_voxels=2, small_lesion_votes=3)
    labels = ensemble.combine(probs, image, grid, hu).labels  # type: ignore[arg-type]
    assert not np.any(labels == 3)
    assert np.count_nonzero(labels == 2) == 9  # the LM lesion is large: the rule does not touch it


def test_remove_small_lesions_counts_six_connected_same_code_voxels() -> None:
    labels = np.zeros((2, 4, 4), np.uint8)
    labels[0, 0, 0] = labels[1, 1, 1] = 3  # diagonal neighbours: two one-voxel lesions
    labels[0, 2, 0:2] = 4  # two voxels, one lesion
    labels[0, 3, 2] = 4
    labels[0, 3, 3] = 5  # touches the LCX voxel but is another artery: its own lesion
    out = remove_small_lesions(labels, 2)
    assert out[0, 2, 0:2].tolist() == [4, 4]
    assert np.count_nonzero(out) == 2
    keep = np.zeros(labels.shape, bool)
    keep[1, 1, 1] = True  # one of the two diagonal LAD voxels
    out = remove_small_lesions(labels, 2, keep)
    assert out[1, 1, 1] == 3 and out[0, 0, 0] == 0 and np.count_nonzero(out) == 3
    assert np.array_equal(remove_small_lesions(labels, 1), labels)
    assert labels[0, 0, 0] == 3  # input untouched
    assert remove_small_lesions(np.zeros((0, 4, 4), np.uint8), 3).shape == (0, 4, 4)


def test_plan_inference_settings_are_checked_when_loaded(tmp_path: Path) -> None:
    _write_model(tmp_path / "m")
    path = tmp_path / "m" / "plan.json"
    data = json.loads(path.read_text())
    assert Plan.load(tmp_path / "m").min_votes(2) == 2  # majority of 2 members
    assert Plan.load(tmp_path / "m").min_lesion_voxels == 1
    assert Plan.load(tmp_path / "m").small_lesion_votes(2) is None
    for key, value, message in (
        ("min_votes", 3, r"min_votes must be an integer in 1\.\.2"),
        ("min_votes", 0, "min_votes"),
        ("min_lesion_voxels", 0, "min_lesion_voxels"),
        ("min_lesion_voxels", 1.5, "min_lesion_voxels"),
        ("small_lesion_votes", 3, r"small_lesion_votes must be null or an integer in 1\.\.2"),
        ("small_lesion_votes", 0, "small_lesion_votes"),
    ):
        data["inference"] = {key: value}
        path.write_text(json.dumps(data))
        with pytest.raises(PlanMismatchError, match=message):
            load_ensemble(tmp_path / "m")


def test_majority_artery_per_lesion() -> None:
    labels = np.zeros((1, 3, 6), np.uint8)
    labels[0, 0, :3] = [3, 3, 4]
    labels[0, 2, 4:] = [5, 2]  # tie: lower code wins
    out = majority_artery_per_lesion(labels)
    assert out[0, 0, :3].tolist() == [3, 3, 3]
    assert out[0, 2, 4:].tolist() == [2, 2]


def _write_model(folder: Path, members: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    plan = _plan(members)
    plan.save(folder)
    torch.manual_seed(0)
    for k in range(members):
        save_member(ResUNet3d(1, 5, FILTERS), folder / f"member_{k}.safetensors")


def test_load_ensemble_rebuilds_members_from_the_folder(tmp_path: Path) -> None:
    _write_model(tmp_path / "m")
    ensemble = load_ensemble(tmp_path / "m")
    assert len(ensemble.members) == 2
    assert ensemble.info()["members"] == 2 and ensemble.info()["head"] == "arteries"
    assert oct((tmp_path / "m" / "member_0.safetensors").stat().st_mode & 0o777) == "0o644"


def test_load_ensemble_uses_the_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_model(tmp_path / "env")
    monkeypatch.setenv("CACSCORE_MODEL_DIR", str(tmp_path / "env"))
    assert load_ensemble().folder == tmp_path / "env"


def test_model_folder_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="model folder not found"):
        load_ensemble(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFolderError, match="plan.json is missing"):
        load_ensemble(tmp_path / "empty")
    _write_model(tmp_path / "m")
    (tmp_path / "m" / "member_1.safetensors").unlink()
    with pytest.raises(ModelFolderError, match=r"member_1.safetensors"):
        load_ensemble(tmp_path / "m")


def test_plan_version_and_weight_mismatches_raise(tmp_path: Path) -> None:
    _write_model(tmp_path / "m")
    path = tmp_path / "m" / "plan.json"
    data = json.loads(path.read_text())
    data["plan_version"] = PLAN_VERSION + 1
    path.write_text(json.dumps(data))
    with pytest.raises(PlanMismatchError, match="plan_version"):
        load_ensemble(tmp_path / "m")
    data["plan_version"] = PLAN_VERSION
    data["network"]["init_args"]["filters"] = [3, 6]
    path.write_text(json.dumps(data))
    with pytest.raises(PlanMismatchError, match="do not match the plan"):
        load_ensemble(tmp_path / "m")


def test_the_model_block_names_the_precision_and_an_unknown_one_is_refused() -> None:
    from cacscore.errors import InvalidInputError
    from cacscore.precision import PRECISIONS

    members = [ResUNet3d(1, 5, FILTERS)]
    assert Ensemble(_plan(1), members).info()["precision"] == "fp32"  # the plan's
    assert PRECISIONS == ("fp32", "bf16")
    assert Ensemble(_plan(1), members, precision="fp32").info()["precision"] == "fp32"
    with pytest.raises(InvalidInputError, match="precision must be one of fp32, bf16, got 'fp16'"):
        Ensemble(_plan(1), members, precision="fp16")


def test_bf16_warns_only_where_the_cpu_emulates_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    import cacscore.precision
    from cacscore.errors import CacScoreWarning

    members = [ResUNet3d(1, 5, FILTERS)]
    monkeypatch.setattr(cacscore.precision, "native_bf16", lambda: False)
    with pytest.warns(CacScoreWarning, match="without native bf16 .* emulated and slower than fp32"):
        assert Ensemble(_plan(1), members, precision="bf16").info()["precision"] == "bf16"
    for native in (True, None):  # None: torch cannot say, so nothing is claimed
        monkeypatch.setattr(cacscore.precision, "native_bf16", lambda native=native: native)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            Ensemble(_plan(1), members, precision="bf16")
    monkeypatch.setattr(cacscore.precision, "native_bf16", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Ensemble(_plan(1), members, precision="fp32")  # fp32 never warns


def test_bf16_members_give_nearly_the_fp32_probabilities() -> None:
    torch.manual_seed(3)
    members = [ResUNet3d(1, 5, FILTERS)]
    image = np.random.default_rng(0).random((8, 16, 16)).astype(np.float32)
    fp32 = next(Ensemble(_plan(1), members, precision="fp32").member_probabilities(image))
    bf16 = next(Ensemble(_plan(1), members, precision="bf16").member_probabilities(image))
    assert fp32.dtype == bf16.dtype == np.float32 and fp32.shape == bf16.shape == (5, 8, 16, 16)
    # bf16 keeps 8 bits of mantissa: probabilities agree to about 1e-2, and are not bit-identical.
    assert np.abs(fp32 - bf16).max() < 0.05
    assert not np.array_equal(fp32, bf16)
