"""Tests of cacscore.preprocess: spacing rule, enhancement, clip/scale, label down/upsampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cacscore.errors import InvalidInputError
from cacscore.preprocess import (
    downsample_hu,
    downsample_labels,
    make_grid,
    normalize_hu,
    preprocess_volume,
    restrict_to_calcium,
    target_spacing_mm,
    upsample_labels,
)

SPACING = (3.0, 0.4, 0.4)


@pytest.mark.parametrize(
    ("increment", "expected"),
    [(3.0, 3.0), (2.5, 2.5), (1.5, 2.5), (1.25, 2.5), (2.75, 2.5), (2.76, 3.0), (5.0, 3.0)],
)
def test_target_spacing_is_nearest_choice_ties_to_finer(increment: float, expected: float) -> None:
    assert target_spacing_mm(increment) == expected


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_target_spacing_rejects_bad_increment(bad: float) -> None:
    with pytest.raises(InvalidInputError, match="slice_increment_mm"):
        target_spacing_mm(bad)


def test_grid_shape_and_actual_spacing() -> None:
    grid = make_grid((60, 512, 512), (3.0, 0.45, 0.45))
    assert grid.target_spacing_mm == 3.0
    assert grid.shape == (60, 77, 77)  # 512 * 0.45 / 3 = 76.8
    assert grid.spacing[1] == pytest.approx(512 * 0.45 / 77)


def _small_lesions(seed: int = 0) -> tuple[np.ndarray, list[tuple[np.ndarray, ...]]]:
    """A 0.4 x 0.4 x 3 mm volume with 30 of the smallest scorable lesions (7 pixels = 1.12 mm^2)."""
    rng = np.random.default_rng(seed)
    hu = np.clip(rng.normal(40, 10, (12, 240, 240)), -100, 100).astype(np.int16)
    shape = np.array([[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2], [2, 1]])
    lesions = []
    for i in range(30):
        z = 1 + (i % 10)
        y = 12 + 70 * ((i // 10) % 3) + int(rng.integers(0, 8))
        x = 12 + 7 * (i % 30) + int(rng.integers(0, 3))
        ys, xs = y + shape[:, 0], x + shape[:, 1]
        hu[z, ys, xs] = int(rng.integers(130, 260))
        lesions.append((np.full(len(ys), z), ys, xs))
    return hu, lesions


def _kept(low: np.ndarray, grid: object, lesions: list[tuple[np.ndarray, ...]]) -> int:
    zi, yi, xi = grid.source_to_low()  # type: ignore[attr-defined]
    return sum(int(low[zi[z], yi[y], xi[x]].max() >= 130) for z, y, x in lesions)


def test_enhancement_keeps_all_30_small_lesions_and_plain_downsampling_loses_most() -> None:
    hu, lesions = _small_lesions()
    grid = make_grid(hu.shape, SPACING, target_mm=2.5)
    assert _kept(downsample_hu(hu, grid), grid, lesions) == 30
    assert _kept(downsample_hu(hu, grid, enhance=False), grid, lesions) <= 10
    trilinear = F.interpolate(
        torch.from_numpy(hu.astype(np.float32))[None, None],
        size=grid.shape,
        mode="trilinear",
        align_corners=False,
    )[0, 0].numpy()
    assert _kept(trilinear, grid, lesions) <= 10


def test_enhancement_does_not_touch_footprints_below_threshold() -> None:
    hu = np.full((3, 12, 12), 50, np.int16)
    hu[1, 0, 0] = 129
    grid = make_grid(hu.shape, (3.0, 0.5, 0.5), target_mm=3.0)
    low = downsample_hu(hu, grid)
    assert low.shape == (3, 2, 2)
    assert low[1, 0, 0] == pytest.approx(50 + 79 / 36)
    hu[1, 0, 0] = 130
    assert downsample_hu(hu, grid)[1, 0, 0] == 130


def test_normalize_clips_and_scales() -> None:
    values = normalize_hu(np.array([-2000, -300, -25, 250, 800, 2500]))
    np.testing.assert_allclose(values, [0, 0, 0.25, 0.5, 1, 1], atol=1e-6)
    assert values.dtype == np.float32


def test_preprocess_volume_range_and_grid() -> None:
    hu = np.full((10, 30, 30), -1000, np.int16)
    hu[5, 10:15, 10:15] = 1500
    image, grid = preprocess_volume(hu, (2.5, 0.5, 0.5))
    assert grid.shape == (10, 6, 6)
    assert image.min() == 0.0 and image.max() == 1.0


def test_label_downsampling_any_voxel_and_majority_code() -> None:
    labels = np.zeros((1, 6, 6), np.uint8)
    labels[0, 0, 0] = 5  # one voxel in the first footprint is enough
    labels[0, 3:6, 3:5] = 3  # 6 LAD voxels
    labels[0, 5, 5] = 4  # 1 LCX voxel: minority in the same footprint
    grid = make_grid(labels.shape, (3.0, 1.0, 1.0), target_mm=3.0)
    low = downsample_labels(labels, grid)
    assert low.tolist() == [[[5, 0], [0, 3]]]


def test_label_downsampling_rejects_unknown_codes() -> None:
    grid = make_grid((1, 3, 3), (3.0, 1.0, 1.0), target_mm=3.0)
    with pytest.raises(InvalidInputError, match=r"codes \[7\]"):
        downsample_labels(np.full((1, 3, 3), 7), grid)


def test_upsampling_maps_each_voxel_to_its_footprint() -> None:
    grid = make_grid((7, 10, 9), (1.5, 1.0, 1.0), target_mm=2.5)
    low = np.arange(np.prod(grid.shape)).reshape(grid.shape)
    full = upsample_labels(low, grid)
    assert full.shape == (7, 10, 9)
    zi, yi, xi = grid.source_to_low()
    for z, y, x in [(0, 0, 0), (6, 9, 8), (3, 4, 5)]:
        assert full[z, y, x] == low[zi[z], yi[y], xi[x]]
    # Each source index lies inside the adaptive-pooling footprint of the voxel it maps to.
    for n_in, n_out, mapping in zip(grid.source_shape, grid.shape, (zi, yi, xi)):
        for i, j in enumerate(mapping):
            assert (j * n_in) // n_out <= i < -((-(j + 1) * n_in) // n_out)


def test_source_box_holds_exactly_the_footprints_of_the_marked_voxels() -> None:
    grid = make_grid((10, 9, 9), (1.0, 1.0, 1.0), target_mm=3.0)  # z: 10 -> 3, uneven footprints
    assert grid.shape == (3, 3, 3)
    assert grid.source_box(np.zeros(grid.shape, bool)) is None
    low = np.zeros(grid.shape, bool)
    low[1, 2, 0] = True
    zi, _, _ = grid.source_to_low()
    assert zi.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert grid.source_box(low) == (slice(4, 7), slice(6, 9), slice(0, 3))
    low[2, 0, 0] = True
    assert grid.source_box(low) == (slice(4, 10), slice(0, 9), slice(0, 3))
    codes = np.arange(27).reshape(grid.shape)
    box = grid.source_box(low)
    assert np.array_equal(upsample_labels(codes, grid, box), upsample_labels(codes, grid)[box])
    with pytest.raises(InvalidInputError, match="low-resolution mask"):
        grid.source_box(np.zeros((3, 3, 2), bool))


def test_downsample_then_upsample_covers_every_labelled_voxel() -> None:
    rng = np.random.default_rng(1)
    labels = (rng.random((9, 40, 40)) > 0.995).astype(np.uint8) * 3
    grid = make_grid(labels.shape, (3.0, 0.4, 0.4), target_mm=3.0)
    back = upsample_labels(downsample_labels(labels, grid), grid)
    assert np.all(back[labels > 0] == 3)


def test_restrict_to_calcium() -> None:
    hu = np.array([[[129, 130, 500]]])
    assert restrict_to_calcium(np.array([[[2, 2, 2]]], np.uint8), hu).tolist() == [[[0, 2, 2]]]


def test_shape_mismatch_raises() -> None:
    grid = make_grid((2, 4, 4), (3.0, 1.0, 1.0))
    with pytest.raises(InvalidInputError, match="grid expects"):
        downsample_hu(np.zeros((2, 4, 5)), grid)
    with pytest.raises(InvalidInputError, match="low-resolution array"):
        upsample_labels(np.zeros((9, 9, 9)), grid)
