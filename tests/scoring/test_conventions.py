"""Risk categories, CAC-DRS and the threshold table."""

from __future__ import annotations

import pytest

from cacscore.errors import InvalidInputError
from cacscore.scoring import KVP_TABLE, cac_drs, risk_category, thresholds_for


@pytest.mark.parametrize(
    ("score", "category"),
    [
        (0, "A"),
        (1e-9, "B"),
        (10, "B"),
        (10.0001, "C"),
        (100, "C"),
        (100.0001, "D"),
        (400, "D"),
        (400.01, "E"),
    ],
)
def test_risk_category_boundaries(score: float, category: str) -> None:
    assert risk_category(score) == category


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_risk_category_rejects_bad_scores(bad: float) -> None:
    with pytest.raises(InvalidInputError, match="agatston must be a finite score >= 0"):
        risk_category(bad)


@pytest.mark.parametrize(
    ("score", "n_vessels", "expected"),
    [
        (0, 0, "A0"),
        (1e-9, 1, "A1/N1"),
        (1, 1, "A1/N1"),
        (99.99, 4, "A1/N4"),
        (100, 2, "A2/N2"),
        (299.99, 1, "A2/N1"),
        (300, 3, "A3/N3"),
        (5000, 4, "A3/N4"),
        (50, 0, "A1"),  # all calcium of unspecified artery: N unknown
    ],
)
def test_cac_drs(score: float, n_vessels: int, expected: str) -> None:
    assert cac_drs(score, n_vessels) == expected


@pytest.mark.parametrize("n_vessels", [-1, 5, 1.5, True])
def test_cac_drs_rejects_bad_vessel_counts(n_vessels: int) -> None:
    with pytest.raises(InvalidInputError, match="n_vessels must be an integer 0-4"):
        cac_drs(10, n_vessels)


def test_thresholds_table() -> None:
    assert thresholds_for(120).threshold_hu == 130
    assert thresholds_for(120, kvp_thresholds=True).weight_edges_hu == (200, 300, 400)
    for kvp, row in KVP_TABLE.items():
        chosen = thresholds_for(kvp, kvp_thresholds=True)
        assert (chosen.threshold_hu, *chosen.weight_edges_hu) == row
        # Every row is the 120 kV row scaled by one factor (to within rounding to whole HU).
        factors = [value / base for value, base in zip(row, KVP_TABLE[120.0], strict=True)]
        assert max(factors) - min(factors) < 0.02
    # Without kvp_thresholds the tube voltage does not change the threshold.
    assert thresholds_for(80).threshold_hu == 130
    assert thresholds_for(80, kvp_thresholds=True, threshold_hu=150).threshold_hu == 150


def test_weights_vectorised() -> None:
    chosen = thresholds_for(70, kvp_thresholds=True)
    assert chosen.weights([206, 207, 317, 318, 477, 636]).tolist() == [0, 1, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kvp": 90, "kvp_thresholds": True}, "no kVp-specific calcium thresholds for 90 kV"),
        ({"kvp": 0}, "kvp must be a positive tube voltage"),
        ({"threshold_hu": float("nan")}, "threshold_hu must be a finite HU value"),
    ],
)
def test_thresholds_for_rejects(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        thresholds_for(**kwargs)  # type: ignore[arg-type]
