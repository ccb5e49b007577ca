"""Tests of the shared array helpers."""

from __future__ import annotations

import numpy as np

from cacscore.arrays import bounding_box


def test_bounding_box_of_a_3d_mask() -> None:
    mask = np.zeros((4, 5, 6), bool)
    mask[1, 2, 3] = True
    mask[2, 4, 0] = True
    assert bounding_box(mask) == (slice(1, 3), slice(2, 5), slice(0, 4))
    assert mask[bounding_box(mask)].sum() == 2


def test_bounding_box_of_labels_and_of_nothing() -> None:
    labels = np.zeros((3, 3, 3), np.int32)
    labels[-1, -1, -1] = 7
    assert bounding_box(labels) == (slice(2, 3),) * 3
    assert bounding_box(np.zeros((3, 3, 3))) is None
