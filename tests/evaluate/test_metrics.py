"""Metrics against hand-computed vectors, published examples and independent formulas."""

from __future__ import annotations

import json
import math
from itertools import combinations

import numpy as np
import pytest

from cacscore.errors import InvalidInputError
from cacscore.evaluate.metrics import (
    BlandAltman,
    bland_altman,
    category_accuracy,
    category_codes,
    confusion_matrix,
    harrell_c,
    icc_2_1,
    icc_absolute,
    linear_weighted_kappa,
    paper_c_index,
)


def test_category_codes_accept_letters_and_codes() -> None:
    assert category_codes(["a", "B", " e "]).tolist() == [0, 1, 4]
    assert category_codes(np.array([0.0, 3.0])).tolist() == [0, 3]
    assert category_codes("ACE").tolist() == [0, 2, 4]


@pytest.mark.parametrize("bad", [["F"], [5], [-1], [1.5], [True]])
def test_category_codes_reject_unknown(bad: list) -> None:
    with pytest.raises(InvalidInputError, match="categor"):
        category_codes(bad)


def test_length_mismatch_is_named() -> None:
    with pytest.raises(InvalidInputError, match="same length, got 2 and 3"):
        category_accuracy("AB", "ABC")


def test_accuracy_hand_computed() -> None:
    assert category_accuracy("ABCDE", "ABCDE") == 1.0
    assert category_accuracy(["A", "A", "B", "E"], [0, 1, 1, 4]) == 0.75
    assert math.isnan(category_accuracy([], []))


def test_confusion_matrix_always_5x5_in_order() -> None:
    m = confusion_matrix(["B", "B", "D"], ["B", "C", "B"])
    expected = np.zeros((5, 5), dtype=int)
    expected[1, 1] = 1
    expected[1, 2] = 1
    expected[3, 1] = 1
    np.testing.assert_array_equal(m, expected)
    assert confusion_matrix([], []).shape == (5, 5)


def _harrell_by_hand(ref: list[int], pred: list[int]) -> float:
    total, n = 0.0, 0
    for i, j in combinations(range(len(ref)), 2):
        if ref[i] == ref[j]:
            continue
        n += 1
        hi, lo = (i, j) if ref[i] > ref[j] else (j, i)
        total += 1.0 if pred[hi] > pred[lo] else 0.5 if pred[hi] == pred[lo] else 0.0
    return total / n


def test_harrell_c_hand_computed_with_ties() -> None:
    # pairs with different ref: (0,1): ref 0<1, pred 0<2 -> 1; (0,2): 0<2, pred 0<2 -> 1;
    # (0,3): 0<2, pred 0=0 -> 1/2; (1,2): ref 1<2, pred 2=2 -> 1/2; (1,3): ref 1<2, pred 2>0 -> 0;
    # (2,3): ref tied -> skipped. C = 3 / 5.
    assert harrell_c([0, 1, 2, 2], [0, 2, 2, 0]) == pytest.approx(0.6)
    rng = np.random.default_rng(3)
    ref, pred = rng.integers(0, 5, 30).tolist(), rng.integers(0, 5, 30).tolist()
    assert harrell_c(ref, pred) == pytest.approx(_harrell_by_hand(ref, pred))


def test_harrell_c_extremes() -> None:
    assert harrell_c("ABCDE", "ABCDE") == 1.0
    assert harrell_c("ABCDE", "EDCBA") == 0.0
    assert harrell_c("ABCDE", "CCCCC") == 0.5
    assert math.isnan(harrell_c("BBB", "ABC"))  # no comparable pair


def test_paper_c_index_hand_computed() -> None:
    # 4 cases, 6 pairs; concordant (both strictly ordered the same way): (0,1), (0,2) -> 2/6.
    assert paper_c_index([0, 1, 2, 2], [0, 2, 2, 0]) == pytest.approx(2 / 6)
    assert paper_c_index("ABCDE", "ABCDE") == 1.0
    assert math.isnan(paper_c_index("A", "A"))


def test_paper_c_index_cannot_reach_one_on_balanced_98() -> None:
    # The docstring's claim: 98 cases balanced over A-E, perfect prediction.
    ref = np.repeat(np.arange(5), [20, 20, 20, 19, 19])
    value = paper_c_index(ref, ref)
    assert value == pytest.approx(3841 / 4753)
    assert round(value, 2) == 0.81
    assert harrell_c(ref, ref) == 1.0


def _kappa_by_hand(ref: list[int], pred: list[int], k: int) -> float:
    # Agreement-weight form (1 - |i-j|/(k-1)), as in Cohen 1968 / sklearn's weights="linear".
    n = len(ref)
    w = [[1 - abs(i - j) / (k - 1) for j in range(k)] for i in range(k)]
    po = sum(w[r][p] for r, p in zip(ref, pred)) / n
    row = [ref.count(i) / n for i in range(k)]
    col = [pred.count(j) / n for j in range(k)]
    pe = sum(w[i][j] * row[i] * col[j] for i in range(k) for j in range(k))
    return (po - pe) / (1 - pe)


def test_kappa_hand_computed() -> None:
    # ref 0,0,1,2 pred 0,1,1,1 with k = 3: weights w=1-|i-j|/2.
    # po = (1 + 0.5 + 1 + 0.5)/4 = 0.75; row = (.5,.25,.25), col = (.25,.75,0)
    # pe = .5*(.25*1 + .75*.5) + .25*(.25*.5 + .75*1) + .25*(.25*0 + .75*.5) = .3125 + .21875 + .09375 = .625
    # kappa = (.75 - .625) / (1 - .625) = 1/3
    assert linear_weighted_kappa([0, 0, 1, 2], [0, 1, 1, 1], n_categories=3) == pytest.approx(1 / 3)
    rng = np.random.default_rng(5)
    ref, pred = rng.integers(0, 5, 40).tolist(), rng.integers(0, 5, 40).tolist()
    assert linear_weighted_kappa(ref, pred) == pytest.approx(_kappa_by_hand(ref, pred, 5))


def test_kappa_categories_are_fixed_not_inferred() -> None:
    # With only A and B present, k = 5 weights differ from k = 2; the result must use k = 5.
    ref, pred = [0, 0, 1, 1], [0, 1, 1, 1]
    assert linear_weighted_kappa(ref, pred) == pytest.approx(_kappa_by_hand(ref, pred, 5))
    assert linear_weighted_kappa(ref, pred) == pytest.approx(0.5)  # 2x2 with 1/4 disagreement
    assert linear_weighted_kappa("ABCDE", "ABCDE") == 1.0
    assert math.isnan(linear_weighted_kappa("AAA", "AAA"))
    with pytest.raises(InvalidInputError, match="n_categories"):
        linear_weighted_kappa([0], [0], n_categories=1)
    with pytest.raises(InvalidInputError, match="below n_categories=3"):
        linear_weighted_kappa([0, 4], [0, 0], n_categories=3)


def test_icc_shrout_fleiss_published_example() -> None:
    # Shrout & Fleiss 1979, Table 2 (6 targets x 4 judges): ICC(2,1) = 0.29.
    table = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    assert icc_2_1(table) == pytest.approx(0.2898, abs=5e-4)


def test_icc_two_raters_hand_computed() -> None:
    # x = (1,2,3), y = (2,3,4): constant bias 1. Rows means 1.5,2.5,3.5; grand 2.5.
    # SSR = 2*(1+0+1) = 4, MSR = 2; SSC = 3*(0.25+0.25) = 1.5, MSC = 1.5; SSE = 0.
    # ICC = (2 - 0) / (2 + 0 + 2*1.5/3) = 2/3: the bias lowers absolute agreement.
    assert icc_absolute([1, 2, 3], [2, 3, 4]) == pytest.approx(2 / 3)
    assert icc_absolute([0.0, 5.0, 300.0], [0.0, 5.0, 300.0]) == pytest.approx(1.0)
    assert math.isnan(icc_absolute([1, 1], [1, 1]))
    with pytest.raises(InvalidInputError, match="at least 2"):
        icc_absolute([1.0], [1.0])
    with pytest.raises(InvalidInputError, match="finite"):
        icc_absolute([1.0, math.nan], [1.0, 2.0])


def test_bland_altman_hand_computed() -> None:
    # diffs 1, 0, 2: mean 1, sd (ddof=1) = 1, LoA = 1 -/+ 1.96.
    ba = bland_altman([1.0, 2.0, 3.0], [2.0, 2.0, 5.0])
    assert (ba.n, ba.mean_diff, ba.sd_diff) == (3, 1.0, 1.0)
    assert (ba.loa_low, ba.loa_high) == pytest.approx((-0.96, 2.96))
    perfect = bland_altman([0.0, 7.0], [0.0, 7.0])
    assert (perfect.mean_diff, perfect.sd_diff, perfect.loa_low, perfect.loa_high) == (0.0, 0.0, 0.0, 0.0)
    assert BlandAltman.from_dict(json.loads(json.dumps(ba.to_dict()))) == ba
    with pytest.raises(InvalidInputError, match="at least one"):
        bland_altman([], [])
