"""The scoring engine against hand-computed arrays, one convention per test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cacscore.errors import InvalidInputError
from cacscore.io import CTVolume
from cacscore.labels import LAD, LCX, LM, RCA, UNSPECIFIED
from cacscore.scoring import candidate_mask, label_lesions_3d, score_calcium, score_volume

BG = -50  # soft-tissue HU around the calcium


def blank(shape: tuple[int, int, int] = (1, 8, 8)) -> np.ndarray:
    return np.full(shape, BG, dtype=np.int16)


def score(hu: np.ndarray, spacing: tuple[float, float, float], mask: np.ndarray | None = None, **kw: object):
    return score_calcium(hu, spacing, (hu >= 130) if mask is None else mask, **kw)  # type: ignore[arg-type]


# --- area rule ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spacing", "n_pixels", "expected"),
    [
        ((3.0, 0.5, 0.5), 4, 1.0),  # exactly 1.0 mm^2 counts: 1 mm^2 x weight 1 x 3/3
        ((3.0, 0.5, 0.5), 3, 0.0),  # 0.75 mm^2
        ((3.0, 0.49, 0.49), 4, 0.0),  # 0.9604 mm^2, just below
        ((3.0, 0.6, 1 / 3), 5, 1.0),  # 5 x 0.6 x 1/3 = 0.9999999999999999 in floats: still 1.0 mm^2
    ],
)
def test_area_boundary(spacing: tuple[float, float, float], n_pixels: int, expected: float) -> None:
    hu = blank()
    hu[0, 2, 1 : 1 + n_pixels] = 150  # one row: a single 8-connected component
    assert score(hu, spacing).agatston == pytest.approx(expected, abs=1e-12)


def test_min_area_option_and_zero() -> None:
    hu = blank()
    hu[0, 2, 2] = 150  # 0.25 mm^2
    assert score(hu, (3.0, 0.5, 0.5)).agatston == 0
    assert score(hu, (3.0, 0.5, 0.5), min_area_mm2=0.0).agatston == pytest.approx(0.25)


def test_min_voxels() -> None:
    hu = blank()
    hu[0, 2, 2:4] = 150  # 2 pixels of 1 mm^2: area 2 mm^2
    assert score(hu, (3.0, 1.0, 1.0)).agatston == pytest.approx(2.0)
    assert score(hu, (3.0, 1.0, 1.0), min_voxels=3).agatston == 0
    hu[0, 2, 4] = 150
    assert score(hu, (3.0, 1.0, 1.0), min_voxels=3).agatston == pytest.approx(3.0)


# --- density weight ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peak", "weight"),
    [(129, 0), (130, 1), (199, 1), (200, 2), (299, 2), (300, 3), (399, 3), (400, 4), (1500, 4)],
)
def test_weight_from_peak(peak: int, weight: int) -> None:
    hu = blank()
    hu[0, 2:4, 2:4] = min(peak, 130) if peak >= 130 else peak  # 2x2 = 1 mm^2 at 0.5 mm pixels
    hu[0, 3, 3] = peak
    mask = np.ones_like(hu, dtype=np.uint8)
    result = score(hu, (3.0, 0.5, 0.5), mask)
    assert result.agatston == pytest.approx(weight)
    assert len(result.lesions) == (1 if weight else 0)


def test_each_component_has_its_own_peak() -> None:
    hu = blank()
    hu[0, 0:2, 0:2] = 450  # weight 4
    hu[0, 5:7, 5:7] = 150  # weight 1, same slice, not touching
    result = score(hu, (3.0, 0.5, 0.5))
    assert result.agatston == pytest.approx(5.0)
    assert [les.agatston for les in result.lesions] == pytest.approx([4.0, 1.0])


# --- connectivity ------------------------------------------------------------------------------------------


def test_diagonal_pixels_form_one_2d_component() -> None:
    hu = blank()
    hu[0, 2, 2] = hu[0, 3, 3] = 250  # 0.5 mm^2 each: counted only together (8-connected)
    result = score(hu, (3.0, 0.5, 1.0))
    assert result.agatston == pytest.approx(1.0 * 2)
    assert len(result.lesions) == 1


def test_diagonal_blocks_in_adjacent_slices_form_one_3d_lesion() -> None:
    hu = blank((2, 8, 8))
    hu[0, 0:2, 0:2] = 250
    hu[1, 2:4, 2:4] = 450  # touches slice 0's block only at a corner: 26-connected
    result = score(hu, (3.0, 0.5, 0.5))
    assert len(result.lesions) == 1
    (lesion,) = result.lesions
    assert lesion.agatston == pytest.approx(2.0 + 4.0)
    assert lesion.slices == (0, 1)
    assert lesion.n_voxels == 8
    assert lesion.peak_hu == 450


def test_components_do_not_connect_across_slices_in_2d() -> None:
    # A column of single pixels over 4 slices: 4 separate 0.25 mm^2 components, none counted,
    # although the 3-D group would hold 1 mm^2 of pixels.
    hu = blank((4, 8, 8))
    hu[:, 2, 2] = 400
    assert score(hu, (3.0, 0.5, 0.5)).agatston == 0


# --- slice increment ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dz", "expected"), [(3.0, 2.0), (2.5, 2.0 * 2.5 / 3)])
def test_slice_increment(dz: float, expected: float) -> None:
    hu = blank()
    hu[0, 2:4, 2:4] = 250
    result = score(hu, (dz, 0.5, 0.5))
    assert result.agatston == pytest.approx(expected)
    assert result.volume_mm3 == pytest.approx(4 * dz * 0.25)
    assert result.conventions["slice_increment_mm"] == dz


def test_overlapping_reconstruction_is_not_double_counted() -> None:
    contiguous = blank((3, 8, 8))
    contiguous[1, 2:4, 2:4] = 250
    # 3 mm slices every 1.5 mm: the same calcification appears in two slices.
    overlapping = blank((6, 8, 8))
    overlapping[2:4, 2:4, 2:4] = 250
    per_slice = score(overlapping, (1.5, 0.5, 0.5))
    assert per_slice.agatston == pytest.approx(score(contiguous, (3.0, 0.5, 0.5)).agatston)
    assert per_slice.agatston == pytest.approx(2 * (1.0 * 2 * 1.5 / 3))


def test_anisotropic_pixels() -> None:
    hu = blank()
    hu[0, 2, 1:6] = 350  # 5 pixels of 0.4 x 0.6 = 0.24 mm^2: 1.2 mm^2, weight 3
    result = score(hu, (3.0, 0.4, 0.6))
    assert result.agatston == pytest.approx(1.2 * 3)
    assert result.volume_mm3 == pytest.approx(5 * 3.0 * 0.24)
    hu[0, 2, 5] = BG  # 4 pixels: 0.96 mm^2, excluded
    assert score(hu, (3.0, 0.4, 0.6)).agatston == 0


def test_lesion_over_several_slices_weighted_slice_by_slice() -> None:
    hu = blank((5, 8, 8))
    for z, peak in zip((1, 2, 3), (150, 250, 450), strict=True):
        hu[z, 2:4, 2:4] = peak
    result, lesion_map = score_calcium(hu, (3.0, 0.5, 0.5), hu > 0, return_lesion_map=True)
    assert result.agatston == pytest.approx(1 + 2 + 4)
    assert result.volume_mm3 == pytest.approx(12 * 0.75)
    assert result.mass_mg == pytest.approx(4 * (150 + 250 + 450) * 0.75 / 1000)
    (lesion,) = result.lesions
    assert (lesion.id, lesion.slices, lesion.n_voxels, lesion.peak_hu) == (1, (1, 3), 12, 450.0)
    assert lesion.centroid_zyx == pytest.approx((2.0, 2.5, 2.5))
    assert lesion.centroid_mm == pytest.approx((2.5 * 0.5, 2.5 * 0.5, 2.0 * 3.0))  # (x, y, z)
    assert lesion_map.dtype == np.int32
    assert np.array_equal(lesion_map == 1, hu > 0)
    assert result.risk_category == "B"
    assert result.cac_drs == "A1"  # unspecified artery: vessel count unknown


def test_volume_counts_only_scored_voxels_and_mass_uses_their_hu() -> None:
    hu = blank()
    hu[0, 2:4, 2:4] = [[140, 160], [180, 520]]
    hu[0, 6, 6] = 900  # lone pixel: below 1 mm^2, neither scored nor counted in volume/mass
    result = score(hu, (2.5, 0.5, 0.5), mass_calibration=0.8)
    assert result.agatston == pytest.approx(1.0 * 4 * 2.5 / 3)
    assert result.volume_mm3 == pytest.approx(4 * 2.5 * 0.25)
    assert result.mass_mg == pytest.approx(0.8 * (140 + 160 + 180 + 520) * 0.625 / 1000)


def test_threshold_applies_per_voxel_within_a_component() -> None:
    hu = blank()
    hu[0, 2, 1:7] = [150, 150, 129, 150, 150, 150]  # 129 splits the row into 2 + 3 pixels
    result = score(hu, (3.0, 1.0, 1.0), np.ones_like(hu, np.uint8), min_area_mm2=2.5)
    assert result.agatston == pytest.approx(3.0)


# --- masks and arteries ------------------------------------------------------------------------------------


def test_empty_volume_and_empty_mask() -> None:
    hu = blank((3, 8, 8))
    for mask in (np.zeros(hu.shape, np.uint8), np.ones(hu.shape, np.uint8)):
        result = score_calcium(hu, (3.0, 0.5, 0.5), mask)
        assert (result.agatston, result.volume_mm3, result.mass_mg) == (0, 0, 0)
        assert (result.risk_category, result.cac_drs, result.n_vessels, result.lesions) == ("A", "A0", 0, [])
        assert set(result.arteries) == {"LM", "LAD", "LCX", "RCA", "unspecified"}
    bright = np.full((2, 4, 4), 800, np.int16)
    result, lesion_map = score_calcium(
        bright, (3, 1, 1), np.zeros(bright.shape, bool), return_lesion_map=True
    )
    assert result.agatston == 0
    assert lesion_map.shape == bright.shape and lesion_map.dtype == np.int32 and not lesion_map.any()


def test_calcium_outside_the_mask_is_ignored() -> None:
    hu = blank()
    hu[0, 0:2, 0:2] = 450
    hu[0, 5:7, 5:7] = 250
    mask = np.zeros(hu.shape, np.uint8)
    mask[0, 5:7, 5:7] = RCA
    assert score(hu, (3.0, 0.5, 0.5), mask).agatston == pytest.approx(2.0)


def test_per_artery_totals_sum_to_total_exactly() -> None:
    hu = blank((3, 12, 12))
    mask = np.zeros(hu.shape, np.uint8)
    blocks = [(LM, 0, 0, 137), (LAD, 0, 4, 233), (LAD, 1, 4, 333), (LCX, 2, 8, 401), (UNSPECIFIED, 0, 8, 199)]
    for code, z, y, peak in blocks:
        hu[z, y : y + 3, 1:4] = peak  # 9 pixels of 0.7 x 0.45 mm
        mask[z, y : y + 3, 1:4] = code
    result = score(hu, (3.0, 0.7, 0.45), mask)
    area = 9 * 0.7 * 0.45
    assert result.arteries["LM"].agatston == pytest.approx(area * 1)
    assert result.arteries["LAD"].agatston == pytest.approx(area * (2 + 3))
    assert result.arteries["LCX"].agatston == pytest.approx(area * 4)
    assert result.arteries["RCA"].agatston == 0
    assert result.arteries["unspecified"].agatston == pytest.approx(area * 1)
    assert result.arteries["LAD"].n_lesions == 1  # two slices, one 3-D lesion
    for field in ("agatston", "volume_mm3", "mass_mg"):
        assert math.fsum(getattr(a, field) for a in result.arteries.values()) == getattr(result, field)
    assert sum(a.n_lesions for a in result.arteries.values()) == len(result.lesions) == 4
    assert result.n_vessels == 3  # LM, LAD, LCX; unspecified names no vessel
    assert result.cac_drs == "A1/N3"


def test_component_spanning_two_labels_is_split_by_label() -> None:
    hu = blank()
    hu[0, 2:4, 2:4] = 250
    hu[0, 2:4, 4:6] = 450
    mask = np.zeros(hu.shape, np.uint8)
    mask[0, 2:4, 2:4] = LAD
    mask[0, 2:4, 4:6] = RCA
    result = score(hu, (3.0, 0.5, 0.5), mask)
    # Split: LAD 1 mm^2 x 2 + RCA 1 mm^2 x 4 (unsplit it would be 2 mm^2 x 4 = 8).
    assert result.arteries["LAD"].agatston == pytest.approx(2.0)
    assert result.arteries["RCA"].agatston == pytest.approx(4.0)
    assert result.agatston == pytest.approx(6.0)
    assert any("split by label" in w for w in result.warnings)
    (lesion,) = result.lesions  # one 3-D lesion regardless of label; tie -> LAD before RCA
    assert (lesion.artery, lesion.label, lesion.agatston) == ("LAD", LAD, pytest.approx(6.0))
    mask[0, 2:4, 5] = 0  # the RCA part shrinks to 0.5 mm^2 and drops out on its own
    assert score(hu, (3.0, 0.5, 0.5), mask).agatston == pytest.approx(2.0)


def test_lesion_artery_is_the_majority_label() -> None:
    hu = blank()
    hu[0, 2:4, 2:5] = 250
    mask = np.zeros(hu.shape, np.uint8)
    mask[0, 2:4, 2:5] = LCX
    mask[0, 2, 2] = UNSPECIFIED
    (lesion,) = score(hu, (3.0, 1.0, 1.0), mask).lesions
    assert lesion.artery == "LCX"


def test_bool_mask_is_unspecified() -> None:
    hu = blank()
    hu[0, 2:4, 2:4] = 250
    result = score(hu, (3.0, 0.5, 0.5), hu > 0)
    assert result.arteries["unspecified"].agatston == pytest.approx(2.0)
    assert result.n_vessels == 0


# --- thresholds and kVp ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("peak", "weight"), [(176, 0), (177, 1), (270, 1), (271, 2), (408, 3), (544, 4)])
def test_kvp_thresholds_at_80_kv(peak: int, weight: int) -> None:
    hu = blank()
    hu[0, 2:4, 2:4] = peak
    result = score_calcium(hu, (3.0, 0.5, 0.5), np.ones_like(hu, np.uint8), kvp=80, kvp_thresholds=True)
    assert result.agatston == pytest.approx(weight)
    assert result.conventions["threshold_hu"] == 177
    assert result.conventions["weight_edges_hu"] == [271, 408, 544]
    assert any("kV-specific thresholds" in w and "177 HU" in w for w in result.warnings)


def test_non_120_kv_without_kvp_thresholds_uses_130_and_warns() -> None:
    hu = blank()
    hu[0, 2:4, 2:4] = 150
    result = score_calcium(hu, (3.0, 0.5, 0.5), hu > 0, kvp=100)
    assert result.agatston == pytest.approx(1.0)
    assert result.conventions["threshold_hu"] == 130
    assert any("100 kV but scored with the 120 kV thresholds" in w for w in result.warnings)


def test_120_kv_is_always_130_hu_and_unknown_kvp_warns() -> None:
    hu = blank()
    hu[0, 2:4, 2:4] = 130
    assert score_calcium(hu, (3, 0.5, 0.5), hu > 0, kvp=120, kvp_thresholds=True).agatston == pytest.approx(1)
    unknown = score_calcium(hu, (3, 0.5, 0.5), hu > 0, kvp=None)
    assert unknown.agatston == pytest.approx(1)
    assert any("unknown" in w for w in unknown.warnings)
    assert score_calcium(hu, (3, 0.5, 0.5), hu > 0, kvp=120).warnings == []


def test_threshold_override_keeps_weight_edges() -> None:
    hu = blank()
    hu[0, 2:4, 2:4] = 150
    assert score(hu, (3, 0.5, 0.5), threshold_hu=160).agatston == 0
    hu[0, 2:4, 2:4] = 250
    result = score(hu, (3, 0.5, 0.5), threshold_hu=160)
    assert result.agatston == pytest.approx(2.0)
    assert result.conventions["threshold_source"] == "override"


def test_unsupported_kvp_with_kvp_thresholds_raises() -> None:
    hu = blank()
    with pytest.raises(InvalidInputError, match="no kVp-specific calcium thresholds for 110 kV"):
        score_calcium(hu, (3, 0.5, 0.5), hu > 0, kvp=110, kvp_thresholds=True)


# --- geometry, lesion map, helpers -------------------------------------------------------------------------


def test_score_volume_uses_affine_and_kvp() -> None:
    hu = blank((2, 6, 6))
    hu[1, 2:4, 2:4] = 250
    direction = np.diag([-1.0, 1.0, 1.0])  # columns flipped along x
    volume = CTVolume(
        hu=hu, spacing=(2.5, 0.5, 0.5), origin=(10.0, -20.0, 30.0), direction=direction, kvp=100.0
    )
    result, lesion_map = score_volume(volume, hu > 0, kvp_thresholds=True, return_lesion_map=True)
    (lesion,) = result.lesions
    assert lesion.centroid_mm == pytest.approx(tuple(volume.index_to_patient(lesion.centroid_zyx)[0]))
    assert lesion.centroid_mm == pytest.approx((10.0 - 2.5 * 0.5, -20.0 + 2.5 * 0.5, 30.0 + 2.5))
    assert result.conventions["kvp"] == 100.0 and result.conventions["threshold_hu"] == 145
    assert int(lesion_map.max()) == 1 and int((lesion_map == 1).sum()) == lesion.n_voxels


def test_lesion_ids_match_lesion_map() -> None:
    hu = blank((3, 10, 10))
    hu[0, 0:2, 0:2] = 300
    hu[2, 6:9, 6:9] = 500
    hu[0, 6:8, 0:2] = 200
    result, lesion_map = score_calcium(hu, (3, 0.5, 0.5), hu > 0, return_lesion_map=True)
    assert [les.id for les in result.lesions] == [1, 2, 3]
    for lesion in result.lesions:
        voxels = np.argwhere(lesion_map == lesion.id)
        assert len(voxels) == lesion.n_voxels
        assert voxels.mean(axis=0) == pytest.approx(lesion.centroid_zyx)
        assert hu[lesion_map == lesion.id].max() == lesion.peak_hu


def test_label_lesions_3d() -> None:
    scored = np.zeros((3, 3, 3), bool)
    scored[0, 0, 0] = scored[1, 1, 1] = scored[2, 2, 2] = True  # corner-to-corner chain
    scored[0, 2, 0] = True  # touches (1,1,1) at a corner as well
    labels, n = label_lesions_3d(scored)
    assert (n, labels.dtype) == (1, np.int32)
    scored[1, 1, 1] = False
    assert label_lesions_3d(scored)[1] == 3


def test_candidate_mask() -> None:
    hu = blank((2, 8, 8))
    hu[0, 2:4, 2:4] = 300  # 1 mm^2: kept
    hu[0, 6, 6] = 900  # 0.25 mm^2: dropped
    hu[1, 0, 0:3] = 140  # 0.75 mm^2: dropped unless min_area lowered
    kept = candidate_mask(hu, (3, 0.5, 0.5))
    assert kept.dtype == bool and int(kept.sum()) == 4 and kept[0, 2:4, 2:4].all()
    assert int(candidate_mask(hu, (3, 0.5, 0.5), min_area_mm2=0.7).sum()) == 7
    assert int(candidate_mask(hu, (3, 0.5, 0.5), threshold_hu=150).sum()) == 4
    assert int(candidate_mask(hu, (3, 0.5, 0.5), min_voxels=5, min_area_mm2=0).sum()) == 0


# --- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask": np.zeros((1, 8, 7), np.uint8)}, r"mask shape \(1, 8, 7\) does not match the volume shape"),
        ({"mask": np.full((1, 8, 8), 7, np.uint8)}, "label codes 0-5"),
        ({"mask": np.full((1, 8, 8), 0.5)}, "label codes 0-5"),
        ({"spacing": (3.0, -0.5, 0.5)}, "spacing must be three positive finite values"),
        ({"min_area_mm2": -1.0}, "min_area_mm2 must be"),
        ({"min_voxels": 0}, "min_voxels must be a positive integer"),
        ({"mass_calibration": 0.0}, "mass_calibration must be"),
        ({"affine": np.eye(3)}, "affine must be a finite 4x4 matrix"),
        ({"hu": np.zeros((8, 8))}, r"hu must be a 3-D \(z, y, x\) array, got shape \(8, 8\)"),
    ],
)
def test_bad_input_raises(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "hu": blank(),
        "spacing": (3.0, 0.5, 0.5),
        "mask": np.zeros((1, 8, 8), np.uint8),
    }
    args.update(kwargs)
    hu, spacing, mask = args.pop("hu"), args.pop("spacing"), args.pop("mask")
    with pytest.raises(InvalidInputError, match=message):
        score_calcium(hu, spacing, mask, **args)  # type: ignore[arg-type]
