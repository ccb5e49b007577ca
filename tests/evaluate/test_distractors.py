"""Distractor calcium counted as coronary: hand-placed voxels against spheres and oriented ellipsoids."""

from __future__ import annotations

import numpy as np
import pytest

from cacscore.evaluate.distractors import MARGIN_MM, ROOT_KINDS, VALVE_KINDS, distractor_hit
from cacscore.io import CTVolume

VOLUME = CTVolume(hu=np.zeros((1, 1, 40), np.int16), spacing=(1.0, 1.0, 1.0))  # x = column index, mm


def _labels(*columns: int) -> np.ndarray:
    labels = np.zeros((1, 1, 40), np.uint8)
    labels[0, 0, list(columns)] = 3
    return labels


@pytest.mark.parametrize(("column", "hit"), [(13, True), (14, False)])
def test_sphere_with_margin(column: int, hit: bool) -> None:
    # A 10 mm annulus centred at x = 7 mm: radius 5 + margin 1.5 reaches x = 13.5 mm.
    annulus = {"type": "mitral_annulus", "position_mm": [7.0, 0.0, 0.0], "size_mm": 10.0}
    assert 7.0 + 5.0 + MARGIN_MM == 13.5  # the last column inside
    assert distractor_hit(VOLUME, _labels(column), np.zeros((1, 1, 40)), [annulus], VALVE_KINDS) is hit


def test_oriented_ellipsoid_parts() -> None:
    # An ellipsoid 10 mm long along x (radii 10, 1, 1) centred at x = 20 mm: x = 31 is inside (10 + 1.5).
    root = {
        "type": "aortic_root",
        "parts": [{"center_mm": [20.0, 0.0, 0.0], "axes": np.eye(3).tolist(), "radii_mm": [10.0, 1.0, 1.0]}],
    }
    assert distractor_hit(VOLUME, _labels(31), np.zeros((1, 1, 40)), [root], ROOT_KINDS)
    assert not distractor_hit(VOLUME, _labels(32), np.zeros((1, 1, 40)), [root], ROOT_KINDS)
    # The same calcium is not a valve hit: only the asked kinds count.
    assert not distractor_hit(VOLUME, _labels(31), np.zeros((1, 1, 40)), [root], VALVE_KINDS)


def test_reference_calcium_and_empty_predictions_are_not_hits() -> None:
    valve = {"type": "aortic_valve", "position_mm": [5.0, 0.0, 0.0], "size_mm": 4.0}
    assert not distractor_hit(VOLUME, _labels(5), _labels(5), [valve], VALVE_KINDS)
    assert not distractor_hit(VOLUME, _labels(), np.zeros((1, 1, 40)), [valve], VALVE_KINDS)
