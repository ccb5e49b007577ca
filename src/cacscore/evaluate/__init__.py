"""Evaluation of calcium scoring: the paper's metrics, orCaScore lesion metrics, agreement statistics.

Pure metric functions live in :mod:`cacscore.evaluate.metrics`,
:mod:`cacscore.evaluate.lesions` and :mod:`cacscore.evaluate.bootstrap`; the
cohort runner in :mod:`cacscore.evaluate.runner`; the report files and plots in
:mod:`cacscore.evaluate.report` and :mod:`cacscore.evaluate.plots`; the Table 1
experiment in :mod:`cacscore.evaluate.experiment`; distractor calcium counted as
coronary in :mod:`cacscore.evaluate.distractors`. See ``docs/evaluation.md``.
"""

from __future__ import annotations

from cacscore.evaluate.bootstrap import ConfidenceInterval, bootstrap_ci
from cacscore.evaluate.lesions import ArteryCounts, LesionCounts, aggregate_lesions, lesion_detection
from cacscore.evaluate.metrics import (
    CATEGORIES,
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

__all__ = [
    "CATEGORIES",
    "ArteryCounts",
    "BlandAltman",
    "ConfidenceInterval",
    "LesionCounts",
    "aggregate_lesions",
    "bland_altman",
    "bootstrap_ci",
    "category_accuracy",
    "category_codes",
    "confusion_matrix",
    "harrell_c",
    "icc_2_1",
    "icc_absolute",
    "lesion_detection",
    "linear_weighted_kappa",
    "paper_c_index",
]
