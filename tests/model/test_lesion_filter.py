"""Tests of the lesion filter: features against hand-computed values, the fit, the plan block, inference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cacscore.errors import ModelFolderError, PlanMismatchError
from cacscore.model import PLAN_VERSION, Ensemble, Plan, ResUNet3d
from cacscore.model.lesion_filter import (
    FEATURE_NAMES,
    SHELL_MM,
    LesionFilter,
    fit_lesion_filter,
    lesion_features,
    shell_margin_voxels,
)
from cacscore.model.postprocess import candidate_lesions, vote
from cacscore.preprocess import make_grid, normalize_hu, preprocessing_dict

F = {name: k for k, name in enumerate(FEATURE_NAMES)}
FILTERS = [2, 4]


def _scene() -> tuple[np.ndarray, np.ndarray, object]:
    """Two lesions on a 1 x 0.5 x 0.5 mm grid: A in fat (-100 HU), B in soft tissue (40 HU)."""
    hu = np.full((9, 40, 60), -100.0)
    hu[:, :, 30:] = 40.0
    ids = np.zeros(hu.shape, int)
    ids[4, 10:12, 10:13] = 1  # 6 voxels on one slice
    hu[4, 10:12, 10:13] = [[200, 300, 400], [250, 350, 450]]
    ids[3:5, 20:22, 44:46] = 2  # 2 slices x 4 voxels
    hu[3:5, 20:22, 44:46] = 500.0
    grid = make_grid(hu.shape, (1.0, 0.5, 0.5), target_mm=3.0)
    return ids, hu, grid


def test_features_of_hand_made_lesions() -> None:
    ids, hu, grid = _scene()
    vote_fraction = np.zeros(grid.shape)
    probability = np.zeros(grid.shape)
    zi, yi, xi = grid.source_to_low()
    vote_fraction[zi[4], yi[10], xi[10]] = 0.4
    probability[zi[4], yi[10], xi[10]] = 0.35
    vote_fraction[zi[3], yi[20], xi[44]] = 1.0
    probability[zi[3], yi[20], xi[44]] = 0.9
    box = (slice(0, 9), slice(0, 40), slice(0, 60))
    got = lesion_features(ids, hu, (1.0, 0.5, 0.5), vote_fraction, probability, grid, box)
    assert got.shape == (2, len(FEATURE_NAMES))
    a, b = got
    assert a[F["log_volume_mm3"]] == pytest.approx(math.log(6 * 0.25))
    assert a[F["max_area_mm2"]] == pytest.approx(1.5)
    assert a[F["peak_hu"]] == 450 and a[F["mean_hu"]] == pytest.approx(325)
    assert a[F["max_vote_fraction"]] == pytest.approx(0.4) and a[F["max_probability"]] == pytest.approx(0.35)
    # A lies 17 voxels (8.5 mm) from the soft tissue: its whole shell is fat.
    assert a[F["shell_mean_hu"]] == pytest.approx(-100)
    assert a[F["shell_fat_fraction"]] == 1.0 and a[F["shell_soft_tissue_fraction"]] == 0.0
    assert b[F["log_volume_mm3"]] == pytest.approx(math.log(8 * 0.25))
    assert b[F["max_area_mm2"]] == pytest.approx(1.0)
    assert b[F["max_vote_fraction"]] == 1.0 and b[F["max_probability"]] == pytest.approx(0.9)
    assert b[F["shell_mean_hu"]] == pytest.approx(40)
    assert b[F["shell_fat_fraction"]] == 0.0 and b[F["shell_soft_tissue_fraction"]] == 1.0


def test_shell_is_the_voxels_1_to_4_mm_away() -> None:
    # One voxel lesion; the ring of voxels 1-4 mm away holds 0 HU, everything else 1000 HU.
    hu = np.full((15, 21, 21), 1000.0)
    spacing = (1.0, 1.0, 1.0)
    z, y, x = np.indices(hu.shape)
    distance = np.sqrt((z - 7) ** 2 + (y - 10) ** 2 + (x - 10) ** 2)
    ring = (distance > SHELL_MM[0]) & (distance <= SHELL_MM[1])
    hu[ring] = 0.0
    hu[7, 10, 10] = 300.0
    ids = np.zeros(hu.shape, int)
    ids[7, 10, 10] = 1
    grid = make_grid(hu.shape, spacing, target_mm=3.0)
    low = np.zeros(grid.shape)
    got = lesion_features(ids, hu, spacing, low, low, grid, tuple(slice(0, n) for n in hu.shape))[0]  # type: ignore[arg-type]
    assert got[F["shell_mean_hu"]] == 0.0 and got[F["shell_soft_tissue_fraction"]] == 1.0
    assert shell_margin_voxels((3.0, 0.5, 0.5)) == (3, 9, 9)


def test_fit_reaches_the_penalised_optimum() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(FEATURE_NAMES))) * np.arange(1, len(FEATURE_NAMES) + 1)
    y = x[:, 0] / 1 - x[:, 6] / 7 + rng.normal(size=400) > 0
    fitted = fit_lesion_filter(x, y, l2=2.0)
    z = (x - np.asarray(fitted.mean)) / np.asarray(fitted.scale)
    p = fitted.probability(x)
    # Stationarity of sum(log loss) + l2 / 2 |w|^2: the gradient is zero at the optimum.
    assert np.abs(z.T @ (p - y) + 2.0 * np.asarray(fitted.coefficients)).max() < 1e-3
    assert abs(np.sum(p - y)) < 1e-3
    assert fitted.coefficients[0] > 1 and fitted.coefficients[6] < -1
    assert np.mean((p >= fitted.threshold) == y) > 0.75
    assert fitted.fitted_on == {"lesions": 400, "true_lesions": int(y.sum())}


def test_fit_refuses_one_class_and_nan() -> None:
    x = np.ones((5, len(FEATURE_NAMES)))
    with pytest.raises(ValueError, match="one class"):
        fit_lesion_filter(x, np.ones(5, bool))
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_lesion_filter(x, np.arange(5) % 2 == 0)
    with pytest.raises(ValueError, match="features must be"):
        fit_lesion_filter(np.ones((5, 3)), np.arange(5) % 2 == 0)


def _peak_filter(threshold_hu: float, candidate_votes: int = 1) -> LesionFilter:
    """Keeps the lesions whose peak is above ``threshold_hu`` (steeply)."""
    n = len(FEATURE_NAMES)
    coefficients = [0.0] * n
    coefficients[F["peak_hu"]] = 1.0
    return LesionFilter(
        mean=(0.0,) * n,
        scale=(1.0,) * n,
        coefficients=tuple(coefficients),
        intercept=-threshold_hu,
        candidate_votes=candidate_votes,
    )


def test_block_round_trip_and_checks() -> None:
    block = _peak_filter(300).to_dict()
    assert json.loads(json.dumps(block)) == block
    assert LesionFilter.from_dict(block, 5) == _peak_filter(300)
    with pytest.raises(PlanMismatchError, match="features"):
        LesionFilter.from_dict({**block, "features": ["peak_hu"]}, 5)
    with pytest.raises(PlanMismatchError, match="threshold"):
        LesionFilter.from_dict({**block, "threshold": 1.5}, 5)
    with pytest.raises(PlanMismatchError, match="candidate_votes"):
        LesionFilter.from_dict({**block, "candidate_votes": 6}, 5)
    with pytest.raises(PlanMismatchError, match="malformed"):
        LesionFilter.from_dict({k: v for k, v in block.items() if k != "coefficients"}, 5)


def _plan(lesion_filter: dict | None) -> Plan:
    inference = {"precision": "fp32", "min_lesion_voxels": 100}
    if lesion_filter is not None:
        inference["lesion_filter"] = lesion_filter
    return Plan(
        {
            "inference": inference,
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
            "members": [{"member": k, "file": f"member_{k}.safetensors"} for k in range(3)],
        }
    )


def _three_members() -> tuple[list[np.ndarray], np.ndarray, np.ndarray, object]:
    """A dim lesion (250 HU) found by one member, a bright one (400 HU) by one, another bright one by all."""
    grid = make_grid((3, 12, 12), (3.0, 1.0, 1.0), target_mm=3.0)  # low-res (3, 4, 4), 3x3 footprints
    hu = np.full(grid.source_shape, -100, np.int16)
    hu[0, 0:3, 0:3] = 250
    hu[1, 9:12, 9:12] = 400
    hu[2, 0:3, 9:12] = 400
    classes = [np.zeros(grid.shape, int) for _ in range(3)]
    classes[0][0, 0, 0] = 1  # dim: member 0 only
    classes[1][1, 3, 3] = 2  # bright: member 1 only
    for c in classes:
        c[2, 0, 3] = 3  # bright: everyone
    probs = [np.moveaxis(np.eye(5)[c], -1, 0) for c in classes]
    image = normalize_hu(np.full(grid.shape, 300.0))
    return probs, image, hu, grid


def test_combine_with_a_filter_keeps_the_lesions_it_accepts_among_any_member_s() -> None:
    probs, image, hu, grid = _three_members()
    ensemble = Ensemble(_plan(_peak_filter(300).to_dict()), [ResUNet3d(1, 5, FILTERS) for _ in range(3)])
    labels = ensemble.combine(probs, image, grid, hu).labels
    assert np.all(labels[0] == 0)  # 250 HU: refused although a member found it
    assert np.all(
        labels[1, 9:12, 9:12] == 3
    )  # one member's lesion, kept (the plan's 100-voxel limit is not used)
    assert np.all(labels[2, 0:3, 9:12] == 4)
    # Without the filter, the plan's vote rule holds: the majority's lesion of 9 voxels is under 100 voxels.
    ensemble.plan = _plan(None)
    assert not ensemble.combine(probs, image, grid, hu).labels.any()


def test_candidate_votes_narrow_the_candidates() -> None:
    probs, image, hu, grid = _three_members()
    ensemble = Ensemble(
        _plan(_peak_filter(300, candidate_votes=2).to_dict()), [ResUNet3d(1, 5, FILTERS) for _ in range(3)]
    )
    labels = ensemble.combine(probs, image, grid, hu).labels
    assert not labels[:2].any() and np.all(labels[2, 0:3, 9:12] == 4)


def test_candidate_lesions_box_holds_the_surroundings() -> None:
    probs, image, hu, grid = _three_members()
    low, _, votes = vote(probs, image, [0, 2, 3, 4, 5], 0.0, 1)
    candidates = candidate_lesions(low, votes, probs, grid, hu, 130.0)
    assert candidates is not None
    assert candidates.box == (
        slice(0, 3),
        slice(0, 12),
        slice(0, 12),
    )  # grown by 3 slices, 5 pixels: the grid
    assert candidates.features.shape == (3, len(FEATURE_NAMES))
    assert sorted(candidates.features[:, F["peak_hu"]]) == [250, 400, 400]
    assert sorted(candidates.features[:, F["max_vote_fraction"]]) == pytest.approx([1 / 3, 1 / 3, 1.0])
    kept = candidates.kept(candidates.features[:, F["peak_hu"]] > 300)
    assert np.count_nonzero(kept) == 18


def test_plan_with_a_malformed_filter_fails_to_load(tmp_path: Path) -> None:
    data = _plan({"features": list(FEATURE_NAMES)}).data
    (tmp_path / "plan.json").write_text(json.dumps(data))
    with pytest.raises(PlanMismatchError, match="lesion_filter is malformed"):
        Plan.load(tmp_path)
    data["inference"]["lesion_filter"] = [1, 2]
    (tmp_path / "plan.json").write_text(json.dumps(data))
    with pytest.raises((PlanMismatchError, ModelFolderError), match="lesion_filter must be a JSON object"):
        Plan.load(tmp_path)


def test_features_in_a_box_equal_those_on_the_whole_grid() -> None:
    # The box maps lesion voxels to low-resolution voxels through its offset; a wrong offset changes the
    # votes.
    ids, hu, grid = _scene()
    rng = np.random.default_rng(3)
    vote_fraction = rng.random(grid.shape)
    probability = rng.random(grid.shape)
    whole = lesion_features(
        ids, hu, (1.0, 0.5, 0.5), vote_fraction, probability, grid, (slice(0, 9), slice(0, 40), slice(0, 60))
    )
    box = (slice(0, 9), slice(2, 30), slice(2, 54))  # both lesions and their 4 mm surroundings, offset
    part = lesion_features(ids[box], hu[box], (1.0, 0.5, 0.5), vote_fraction, probability, grid, box)
    assert np.array_equal(whole, part)


def test_candidate_box_is_grown_to_hold_the_surroundings() -> None:
    grid = make_grid((12, 60, 60), (3.0, 1.0, 1.0), target_mm=3.0)  # low-res (12, 20, 20)
    hu = np.full(grid.source_shape, -100, np.int16)
    hu[6, 30:33, 30:33] = 400
    classes = np.zeros(grid.shape, int)
    classes[6, 10, 10] = 1
    probs = [np.moveaxis(np.eye(5)[classes], -1, 0)]
    image = normalize_hu(np.full(grid.shape, 300.0))
    low, _, votes = vote(probs, image, [0, 2, 3, 4, 5], 0.0, 1)
    candidates = candidate_lesions(low, votes, probs, grid, hu, 130.0)
    assert candidates is not None
    # The calcium's footprint is slice 6, rows and columns 30-32; the shell needs 3 slices and 5 pixels more.
    assert candidates.box == (slice(3, 10), slice(25, 38), slice(25, 38))
    assert candidates.features[0, F["shell_fat_fraction"]] == 1.0


def test_a_filter_with_nan_or_a_boolean_vote_count_is_refused() -> None:
    block = _peak_filter(300).to_dict()
    with pytest.raises(PlanMismatchError, match="NaN or infinite"):
        LesionFilter.from_dict({**block, "intercept": float("nan")}, 5)
    with pytest.raises(PlanMismatchError, match="candidate_votes"):
        LesionFilter.from_dict({**block, "candidate_votes": True}, 5)
    with pytest.raises(ValueError, match="no candidate lesions"):
        fit_lesion_filter(np.zeros((0, len(FEATURE_NAMES))), np.zeros(0, bool))


def test_one_member_s_mask_uses_the_vote_rule() -> None:
    # The filter's features are those of all the plan's members; one member's own mask (Table 1) is not
    # filtered.
    probs, image, hu, grid = _three_members()
    ensemble = Ensemble(_plan(_peak_filter(300).to_dict()), [ResUNet3d(1, 5, FILTERS) for _ in range(3)])
    single = ensemble.combine(probs[:1], image, grid, hu).labels
    assert not single.any()  # the plan's 100-voxel minimum of the vote rule drops member 0's 9-voxel lesions
    ensemble.plan.data["inference"]["min_lesion_voxels"] = 1
    single = ensemble.combine(probs[:1], image, grid, hu).labels
    assert np.all(single[0, 0:3, 0:3] == 2)  # 250 HU: the filter would have refused it


def test_prediction_reports_the_filter_probability_of_each_scored_lesion() -> None:
    probs, image, hu, grid = _three_members()
    ensemble = Ensemble(_plan(_peak_filter(300).to_dict()), [ResUNet3d(1, 5, FILTERS) for _ in range(3)])
    prediction = ensemble.combine(probs, image, grid, hu)
    assert prediction.candidate_probability is not None
    # Peak 400 HU, intercept -300, coefficient 1 per HU: sigmoid(100) for both kept lesions.
    lesion_map = np.zeros(grid.source_shape, int)
    lesion_map[1, 9:12, 9:12] = 1
    lesion_map[2, 0:3, 9:12] = 2
    lesion_map[0, 0:3, 0:3] = 3  # the refused 250 HU candidate is not in the mask: a map may still name it
    got = prediction.filter_probability(lesion_map)
    assert got == pytest.approx({1: 1.0, 2: 1.0, 3: 1 / (1 + math.exp(50))})
    ensemble.plan = _plan(None)
    assert ensemble.combine(probs, image, grid, hu).filter_probability(lesion_map) == {}


def test_scored_lesions_carry_confidence_and_filter_probability() -> None:
    from cacscore.io import CTVolume
    from cacscore.model import score_with_model

    probs, image, hu, grid = _three_members()
    n = len(FEATURE_NAMES)
    coefficients = [0.0] * n
    coefficients[F["peak_hu"]] = 0.01  # gentle: 400 HU -> sigmoid(1)
    lesion_filter = LesionFilter(
        mean=(0.0,) * n, scale=(1.0,) * n, coefficients=tuple(coefficients), intercept=-3.0
    )
    ensemble = Ensemble(_plan(lesion_filter.to_dict()), [ResUNet3d(1, 5, FILTERS) for _ in range(3)])
    prediction = ensemble.combine(probs, image, grid, hu)
    result = score_with_model(CTVolume(hu, grid.source_spacing), ensemble, prediction=prediction)
    by_confidence = sorted((lesion.confidence, lesion.filter_probability) for lesion in result.lesions)
    np.testing.assert_allclose(
        by_confidence, [(1 / 3, 1 / (1 + math.exp(-1))), (1.0, 1 / (1 + math.exp(-1)))]
    )
    assert "filter_probability" in result.to_dict()["lesions"][0]
