"""Quality figures of a model on a labelled phantom cohort, and the targets they are judged by.

Used by ``benchmarks/bench_quality.py`` (one cohort) and ``benchmarks/pool_quality.py`` (several pooled).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cacscore.evaluate.lesions import aggregate_lesions
from cacscore.evaluate.metrics import category_accuracy, harrell_c
from cacscore.evaluate.runner import CaseEvaluation

#: The quality targets: category accuracy, Harrell's C and lesion F1 at least, valve/annulus % at most.
TARGETS = (
    "targets: accuracy >= 0.95, Harrell C >= 0.98, lesion F1 >= 0.90, valve/MAC <= 2 % (root %: no target)"
)


def summarise(
    name: str, evaluations: Sequence[CaseEvaluation], hits: Sequence[bool], root_hits: Sequence[bool]
) -> dict[str, Any]:
    """One row of quality figures: category accuracy, Harrell's C, lesion F1, sensitivity, PPV, false
    positives per scan (lesions pooled over the cases, as orCaScore does), and the % of cases with valve or
    annulus (``hits``) and aortic root (``root_hits``) calcium counted (nan without cases)."""
    ref = [e.ref_category for e in evaluations]
    pred = [e.pred_category for e in evaluations]
    lesions = aggregate_lesions(e.lesions for e in evaluations).metrics()["overall"]
    return {
        "method": name,
        "n": len(evaluations),
        "category_accuracy": category_accuracy(ref, pred),
        "harrell_c": harrell_c(ref, pred),
        "lesion_f1": lesions["f1"],
        "lesion_sensitivity": lesions["sensitivity"],
        "lesion_ppv": lesions["ppv"],
        "fp_per_scan": lesions["fp_per_scan"],
        "valve_or_annulus_counted_pct": 100.0 * float(np.mean(hits)) if hits else float("nan"),
        "aortic_root_counted_pct": 100.0 * float(np.mean(root_hits)) if root_hits else float("nan"),
    }


def print_rows(rows: list[dict[str, Any]]) -> None:
    """The table of :func:`summarise` rows, and the targets."""
    print(
        f"{'method':36s} {'n':>4s} {'accuracy':>9s} {'Harrell C':>10s} {'lesion F1':>10s} "
        f"{'sens':>6s} {'PPV':>6s} {'FP/scan':>8s} {'valve/MAC %':>12s} {'root %':>7s}"
    )
    for r in rows:
        print(
            f"{r['method']:36s} {r['n']:4d} {r['category_accuracy']:9.3f} {r['harrell_c']:10.3f} "
            f"{r['lesion_f1']:10.3f} {r['lesion_sensitivity']:6.3f} {r['lesion_ppv']:6.3f} "
            f"{r['fp_per_scan']:8.2f} {r['valve_or_annulus_counted_pct']:12.1f} "
            f"{r['aortic_root_counted_pct']:7.1f}"
        )
    print(TARGETS)
