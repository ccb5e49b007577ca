"""Lesion-level detection on hand-built label volumes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cacscore.errors import InvalidInputError
from cacscore.evaluate.lesions import LesionCounts, aggregate_lesions, lesion_detection


def _case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hu = np.zeros((2, 6, 6), dtype=np.int16)
    ref = np.zeros(hu.shape, dtype=np.uint8)
    pred = np.zeros(hu.shape, dtype=np.uint8)
    hu[0, 0, 0:2] = 300
    ref[0, 0, 0:2] = 3  # LAD lesion, 2 voxels
    pred[0, 0, 1] = 3  # overlaps it: TP, 1 voxel
    hu[1, 4, 4] = 500
    ref[1, 4, 4] = 5  # RCA lesion, missed: prediction calls it LCX
    pred[1, 4, 4] = 4
    hu[0, 3, 3] = 200
    pred[0, 3, 3] = 1  # unspecified prediction on no reference: FP
    hu[0, 5, 0] = 100
    pred[0, 5, 0] = 3  # below 130 HU: not a lesion at all
    return hu, ref, pred


def test_counts_hand_computed() -> None:
    hu, ref, pred = _case()
    counts = lesion_detection(hu, ref, pred, (2.0, 0.5, 0.5))
    overall = counts.overall
    assert (overall.n_ref, overall.n_ref_detected, overall.n_pred, overall.n_pred_true) == (2, 1, 3, 1)
    assert (overall.tp, overall.fp, overall.fn) == (1, 2, 1)
    voxel = 0.5  # mm^3
    assert overall.ref_volume_mm3 == pytest.approx(3 * voxel)
    assert overall.ref_detected_volume_mm3 == pytest.approx(1 * voxel)
    assert overall.pred_volume_mm3 == pytest.approx(3 * voxel)
    assert overall.pred_true_volume_mm3 == pytest.approx(1 * voxel)
    m = counts.metrics()
    assert m["overall"]["sensitivity"] == pytest.approx(0.5)
    assert m["overall"]["ppv"] == pytest.approx(1 / 3)
    assert m["overall"]["f1"] == pytest.approx(2 * 0.5 / 3 / (0.5 + 1 / 3))
    assert m["overall"]["fp_per_scan"] == 2.0
    assert m["overall"]["sensitivity_volume"] == pytest.approx(1 / 3)
    assert m["per_artery"]["LAD"]["sensitivity"] == 1.0
    assert m["per_artery"]["LAD"]["ppv"] == 1.0
    assert m["per_artery"]["RCA"]["sensitivity"] == 0.0
    assert math.isnan(m["per_artery"]["RCA"]["ppv"])  # no predicted RCA lesion
    assert m["per_artery"]["LCX"]["ppv"] == 0.0
    assert m["per_artery"]["LM"]["f1"] == 1.0  # nothing to find, nothing found


def test_unspecified_matches_any_artery_and_6_connectivity() -> None:
    hu = np.full((1, 3, 3), 400, dtype=np.int16)
    ref = np.zeros(hu.shape, dtype=np.uint8)
    ref[0, 0, 0] = 2
    ref[0, 1, 1] = 2  # diagonal neighbour: a separate lesion under 6-connectivity
    pred = np.zeros_like(ref)
    pred[0, 0, 0] = 1
    pred[0, 1, 1] = 1
    counts = lesion_detection(hu, ref, pred, 1.0)
    c = counts.overall
    assert (c.n_ref, c.n_ref_detected, c.n_pred, c.n_pred_true) == (2, 2, 2, 2)
    # A binary prediction is filed under the artery it overlaps, so per-artery figures stay meaningful.
    assert counts.arteries["LM"].n_pred_true == 2 and counts.arteries["unspecified"].n_pred == 0
    assert counts.metrics()["per_artery"]["LM"]["f1"] == 1.0


def test_one_prediction_covering_two_reference_lesions() -> None:
    hu = np.full((1, 1, 3), 400, dtype=np.int16)
    ref = np.array([[[3, 0, 3]]], dtype=np.uint8)
    hu[0, 0, 1] = 150
    pred = np.array([[[3, 3, 3]]], dtype=np.uint8)
    c = lesion_detection(hu, ref, pred, 1.0).overall
    assert (c.n_ref, c.n_ref_detected, c.n_pred, c.n_pred_true) == (2, 2, 1, 1)
    assert c.pred_true_volume_mm3 == 2.0 and c.pred_volume_mm3 == 3.0


def test_perfect_and_empty() -> None:
    hu, ref, _ = _case()
    perfect = lesion_detection(hu, ref, ref, 1.0).metrics()["overall"]
    assert perfect["f1"] == perfect["f1_volume"] == 1.0
    assert perfect["fp_per_scan"] == 0.0
    empty = np.zeros_like(ref)
    none = lesion_detection(hu, empty, empty, 1.0).metrics()["overall"]
    assert none["f1"] == 1.0 and math.isnan(none["sensitivity"])


def test_aggregate_and_round_trip() -> None:
    hu, ref, pred = _case()
    one = lesion_detection(hu, ref, pred, 1.0)
    total = aggregate_lesions([one, one])
    assert total.n_scans == 2
    assert total.overall.n_ref == 4 and total.overall.fp == 4
    assert total.metrics()["overall"]["fp_per_scan"] == 2.0
    assert LesionCounts.from_dict(json.loads(json.dumps(total.to_dict()))) == total


def test_bad_input_named() -> None:
    hu, ref, pred = _case()
    with pytest.raises(InvalidInputError, match="pred_label shape"):
        lesion_detection(hu, ref, pred[:1], 1.0)
    with pytest.raises(InvalidInputError, match="ref_label holds label codes"):
        lesion_detection(hu, ref + 6, pred, 1.0)
    with pytest.raises(InvalidInputError, match="spacing"):
        lesion_detection(hu, ref, pred, (1.0, -1.0, 1.0))
