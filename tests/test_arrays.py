"""Tests of the shared array helpers."""

from __future__ import annotations

import numpy as np

from cacscore.arrays import bounding_box, label_lesions


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


def test_label_lesions_six_connected_per_code_within_the_mask() -> None:
    label = np.zeros((2, 3, 4), np.uint8)
    label[0, 0, 0:2] = 3  # one LAD lesion of two voxels
    label[1, 1, 2] = 3  # diagonal to nothing of its code: a second LAD lesion
    label[0, 0, 2] = 5  # face neighbour of the LAD, other code: its own lesion
    label[0, 2, 3] = 2
    mask = np.ones(label.shape, bool)
    mask[0, 2, 3] = False  # outside the mask (e.g. below 130 HU): no lesion
    ids, codes = label_lesions(label, mask)
    assert codes.tolist() == [0, 3, 3, 5]
    assert ids[0, 0, 0] == ids[0, 0, 1] != ids[1, 1, 2]
    assert ids[0, 2, 3] == 0 and np.count_nonzero(ids) == 4
    empty_ids, empty_codes = label_lesions(np.zeros((1, 2, 2), np.uint8))
    assert not empty_ids.any() and empty_codes.tolist() == [0]
