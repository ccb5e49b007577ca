"""The input-domain check and the heart region's lesion rule on hand-made chest CTs.

The chest CTs are built by tests/anatomy/anatomy_volumes.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from anatomy_volumes import chest, index_of

from cacscore.anatomy import NoHeartError, check_domain, exclude_outside_heart
from cacscore.anatomy.mediastinum import between_lungs, blood_pool_hu
from cacscore.io.volume import CTVolume
from cacscore.scoring.conventions import AGATSTON_THRESHOLD_HU


def test_a_chest_with_a_heart_passes_and_a_full_field_of_view_warns() -> None:
    check = check_domain(chest(fov_mm=400))
    assert check.refusal is None and check.heart_in_view and not check.contrast_enhanced
    assert check.field_of_view == "full-chest"
    assert any(w.startswith("full-chest field of view (400 mm") for w in check.warnings)
    # Lungs: two ellipses of 75 x 58 mm over 40 slices of 3 mm, less the heart's dent: ~1.2-1.6 L each.
    assert 1000 < check.lung_left_ml < 1700 and 1000 < check.lung_right_ml < 1700
    assert 30 < check.blood_pool_hu < 50  # type: ignore[operator]
    assert check.to_dict()["heart_in_view"] is True


@pytest.mark.parametrize(("fov_mm", "padding_hu"), [(200, -3024), (220, -1024)])
def test_a_tight_gated_field_of_view_with_padding_passes_without_warnings(
    fov_mm: float, padding_hu: float
) -> None:
    check = check_domain(chest(fov_mm=fov_mm, padding_hu=padding_hu))
    assert check.refusal is None and check.field_of_view == "gated" and check.warnings == []


def test_no_lungs_means_no_heart_and_a_one_line_error_naming_the_file() -> None:
    check = check_domain(chest(lungs=False))
    assert check.refused and not check.heart_in_view and not check.region.found
    with pytest.raises(NoHeartError, match=r"^scan.nii: no heart in the field of view: lungs 0 mL left"):
        check.require("scan.nii")
    skipped = check.skip()
    assert skipped.skipped
    skipped.require("scan.nii")  # no longer raises
    assert skipped.warnings[0].startswith("domain check skipped: no heart in the field of view")


def test_a_heart_cut_at_the_top_is_a_warning() -> None:
    check = check_domain(chest(heart_z_mm=45))  # heart 45 mm above the centre of a 120 mm volume
    assert check.refusal is None and check.heart_cut_top and check.partial_coverage
    assert any("heart cut at the top" in w for w in check.warnings)


def test_blood_pool_is_the_median_of_the_deep_inside() -> None:
    # A 60 x 60 mm square mass of 3 mm voxels: depth >= 15 mm is the central 10 x 10 block.
    mass = np.zeros((1, 40, 40), dtype=bool)
    mass[0, 10:30, 10:30] = True
    hu = np.full(mass.shape, 40.0, dtype=np.float32)
    hu[0, 14:26, 14:26] = 350.0  # a contrast-filled chamber, covering the deep part
    assert blood_pool_hu(hu, mass, (3.0, 3.0, 3.0)) == 350.0
    assert blood_pool_hu(hu, np.zeros_like(mass), (3.0, 3.0, 3.0)) is None


def test_between_lungs_needs_lung_on_both_sides_within_the_width_limit() -> None:
    lungs = np.zeros((1, 1, 100), dtype=bool)
    lungs[0, 0, [10, 60]] = True  # 50 voxels of 4 mm = 200 mm apart: inside the 220 mm limit
    assert between_lungs(lungs, 4.0).sum() == 49
    assert between_lungs(lungs, 5.0).sum() == 0  # 250 mm apart


def _with_lesion(volume, centre_mm, peak_hu=400.0):  # type: ignore[no-untyped-def]
    z, y, x = index_of(volume, centre_mm)
    hu = volume.hu.copy()
    hu[z, y - 1 : y + 2, x - 1 : x + 2] = peak_hu
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[z, y - 1 : y + 2, x - 1 : x + 2] = 3
    return volume.with_hu(hu), labels


def test_a_lesion_in_the_heart_is_kept_one_in_the_lung_beside_it_is_not() -> None:
    volume = chest()
    # In the epicardial fat, 48 mm from the heart's centre (heart radius 45, fat to 52).
    inside, labels = _with_lesion(volume, (0, 0, 48))
    check = check_domain(inside)
    kept = exclude_outside_heart(labels, inside.hu, inside.spacing, check.region, AGATSTON_THRESHOLD_HU)
    assert kept.n_removed == 0 and np.array_equal(kept.labels, labels)
    # In the lung, 25 mm beyond the heart's fat: outside the region (margin 6 mm).
    outside, labels = _with_lesion(volume, (0, 0, 80))
    kept = exclude_outside_heart(
        labels, outside.hu, outside.spacing, check_domain(outside).region, AGATSTON_THRESHOLD_HU
    )
    assert kept.n_removed == 1 and not kept.labels.any()


def test_a_lesion_joined_to_bone_at_the_threshold_is_removed() -> None:
    volume = chest()
    # The spine (400 HU, radius 16 mm at y = 95 mm); a "lesion" in the fat in front of it, joined by a bridge.
    hu = volume.hu.copy()
    z, y, x = index_of(volume, (0, 72, 0))
    _, y_bone, _ = index_of(volume, (0, 80, 0))
    hu[z, y - 1 : y_bone + 1, x - 1 : x + 2] = 300
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[z, y - 1 : y + 2, x - 1 : x + 2] = 3
    scan = volume.with_hu(hu)
    check = check_domain(scan)
    kept = exclude_outside_heart(labels, scan.hu, scan.spacing, check.region, AGATSTON_THRESHOLD_HU)
    assert kept.n_removed == 1 and not kept.labels.any()
    # The same spot without the bridge (fat, -100 HU, between it and the bone) is kept.
    hu[z, y + 2 : y_bone + 1, x - 1 : x + 2] = -100
    scan = volume.with_hu(hu)
    kept = exclude_outside_heart(
        labels, scan.hu, scan.spacing, check_domain(scan).region, AGATSTON_THRESHOLD_HU
    )
    assert kept.n_removed == 0


def test_without_a_heart_no_lesion_counts_and_a_warning_says_why() -> None:
    volume, labels = _with_lesion(chest(lungs=False), (0, 0, 0))
    kept = exclude_outside_heart(
        labels, volume.hu, volume.spacing, check_domain(volume).region, AGATSTON_THRESHOLD_HU
    )
    assert kept.n_removed == 1 and not kept.labels.any()
    assert kept.warnings[0].startswith("heart region not found")


def test_the_outline_is_the_region_border_in_one_slice() -> None:
    volume = chest()
    region = check_domain(volume).region
    z = volume.shape[0] // 2
    outline = region.outline_slice(z)
    inside = region.source_mask()[z]
    assert outline.shape == inside.shape and outline.any()
    assert not (outline & ~inside).any()  # on the region, never beside it
    # The heart's centre row crosses the border exactly twice (left and right).
    row = outline[volume.shape[1] // 2]
    assert 2 <= int(row.sum()) <= 4


def test_a_view_centred_off_the_midline_keeps_a_cut_lung_whose_edge_blocks_are_air_dark() -> None:
    # A 290 mm wide view from 90 mm right of the midline to 200 mm left of it: the right lung is cut by the
    # view's edge, the left chest wall and the air beyond it are in view. In every other slice the cut
    # lung's outer 15 mm are darker than AIR_MAX_HU (an emphysematous rim): there, only the lung's
    # continuation from the neighbouring slices tells it from the air around the body.
    full = chest(fov_mm=400)
    x_mm = (np.arange(full.shape[2]) - (full.shape[2] - 1) / 2) * full.spacing[2]
    hu = full.hu[:, :, (x_mm >= -90) & (x_mm <= 200)].copy()
    rim = (hu[1::2, :, :10] > -900) & (hu[1::2, :, :10] < -800)  # lung within 16 mm of the cut edge
    hu[1::2, :, :10][rim] = -990
    check = check_domain(CTVolume(hu, full.spacing))
    assert check.refusal is None and check.heart_in_view, check.refusal
    # The right lung keeps its dark-rimmed slices: about 1/3 of its ellipse is cut away by the view, so
    # ~0.6-1.0 L remain (without the rimmed slices it would be half of that).
    assert 600 < check.lung_right_ml < 1100
