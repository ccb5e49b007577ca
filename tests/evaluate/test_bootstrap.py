"""Bootstrap intervals: seedable, consistent, nan-aware."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cacscore.errors import InvalidInputError
from cacscore.evaluate.bootstrap import ConfidenceInterval, bootstrap_ci
from cacscore.evaluate.metrics import category_accuracy, harrell_c


def test_same_seed_same_interval_and_covers_estimate() -> None:
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 5, 60)
    pred = np.where(rng.random(60) < 0.8, ref, rng.integers(0, 5, 60))
    stats = {"accuracy": category_accuracy, "harrell_c": harrell_c}
    a = bootstrap_ci(stats, ref, pred, n_resamples=200, seed=4)
    b = bootstrap_ci(stats, ref, pred, n_resamples=200, seed=4)
    c = bootstrap_ci(stats, ref, pred, n_resamples=200, seed=5)
    assert a == b and a != c
    for name, fn in stats.items():
        assert a[name].low <= fn(ref, pred) <= a[name].high
        assert a[name].n_defined == 200


def test_perfect_agreement_gives_degenerate_interval() -> None:
    ref = np.arange(5).repeat(3)
    ci = bootstrap_ci({"accuracy": category_accuracy}, ref, ref, n_resamples=50)["accuracy"]
    assert (ci.low, ci.high) == (1.0, 1.0)


def test_undefined_resamples_are_counted_and_round_trip() -> None:
    ci = bootstrap_ci({"c": harrell_c}, np.array([0, 0]), np.array([0, 1]), n_resamples=20)["c"]
    assert ci.n_defined == 0 and math.isnan(ci.low)
    back = ConfidenceInterval.from_dict(json.loads(json.dumps(ci.to_dict())))
    assert math.isnan(back.low) and back.n_resamples == 20


def test_bad_arguments() -> None:
    with pytest.raises(InvalidInputError, match="equal length"):
        bootstrap_ci({"m": np.mean}, np.zeros(3), np.zeros(2))
    with pytest.raises(InvalidInputError, match="n_resamples"):
        bootstrap_ci({"m": np.mean}, np.zeros(3), n_resamples=0)
