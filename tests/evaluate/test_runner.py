"""Per-case evaluation, failure accounting and the metrics summary."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cacscore.datasets import list_cases
from cacscore.evaluate.runner import (
    METRICS_SCHEMA,
    CaseEvaluation,
    evaluate_case,
    evaluate_cases,
    summarize,
    threshold_baseline,
)

from .conftest import EXPECTED_AGATSTON, LESIONS, synthetic_case


def test_evaluate_case_perfect_and_round_trip() -> None:
    volume, label = synthetic_case("case_3")
    e = evaluate_case("case_3", volume, label, label)
    assert e.ref_agatston == e.pred_agatston == pytest.approx(144.0)
    assert (e.ref_category, e.pred_category) == ("D", "D")
    assert e.ref_arteries["RCA"] == pytest.approx(144.0)
    assert e.lesions.overall.tp == 1 and e.lesions.overall.fp == 0
    assert CaseEvaluation.from_dict(json.loads(json.dumps(e.to_dict()))) == e


def test_threshold_baseline_counts_bone() -> None:
    volume, label = synthetic_case("case_0")

    @dataclass
    class Case:
        volume: Any

    e = evaluate_case("case_0", volume, label, threshold_baseline(Case(volume)))
    # bone: 16 px * 0.25 mm^2 * weight 4 * 8 slices = 128
    assert e.pred_agatston == pytest.approx(128.0)
    assert e.pred_category == "D" and e.lesions.overall.fp == 1


def test_failures_are_recorded_not_dropped(cohort: Path) -> None:
    cases = list_cases(cohort)

    def predictor(case: Any) -> np.ndarray:
        if case.case_id == "case_2":
            raise RuntimeError("model crashed\non this case")
        return case.label

    seen: list[str] = []
    evaluations, failures = evaluate_cases(cases, predictor, on_case=seen.append)
    assert [e.case_id for e in evaluations] == ["case_0", "case_1", "case_3", "case_4"]
    assert [(f.case_id, f.reason) for f in failures] == [
        ("case_2", "RuntimeError: model crashed on this case")
    ]
    assert seen == list(LESIONS)
    metrics = summarize(evaluations, failures, n_bootstrap=50, seed=1, source="test")
    assert metrics["schema"] == METRICS_SCHEMA
    assert (metrics["n_cases"], metrics["n_evaluated"], metrics["n_failed"]) == (5, 4, 1)
    assert metrics["failures"][0]["case_id"] == "case_2"


def test_summary_perfect(cohort: Path) -> None:
    evaluations, failures = evaluate_cases(list_cases(cohort), lambda case: case.label)
    assert {e.case_id: e.ref_agatston for e in evaluations} == pytest.approx(EXPECTED_AGATSTON)
    m = summarize(evaluations, failures, n_bootstrap=100, seed=0)
    json.dumps(m, allow_nan=False)  # standard JSON: no nan
    cat = m["category"]
    assert cat["accuracy"]["value"] == 1.0 and cat["accuracy"]["ci95"] == [1.0, 1.0]
    assert cat["accuracy"]["n"] == m["agatston"]["icc"]["n"] == 5
    assert cat["harrell_c"]["value"] == 1.0
    assert cat["paper_c_index"]["value"] == 1.0  # no ties: one case per category
    assert cat["kappa_linear"]["value"] == 1.0
    assert np.trace(cat["confusion_matrix"]) == 5
    assert m["agatston"]["icc"]["value"] == pytest.approx(1.0)
    assert m["agatston"]["bland_altman"]["mean_diff"] == 0.0
    assert m["lesions"]["overall"]["f1"] == 1.0
    assert m["arteries_agatston"]["LM"] == {"ref_total": 500.0, "pred_total": 500.0}


def test_summary_empty_cohort() -> None:
    m = summarize([], [], n_bootstrap=10)
    assert m["n_evaluated"] == 0 and m["category"]["accuracy"]["value"] is None
