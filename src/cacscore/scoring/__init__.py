"""Calcium scoring: Agatston, volume and mass scores, 3-D lesions, per-artery totals, categories.

Pure NumPy/SciPy, no I/O. Conventions and references: ``docs/scoring.md``.
"""

from __future__ import annotations

from cacscore.scoring.agatston import (
    candidate_mask,
    label_lesions_3d,
    score_calcium,
    score_volume,
)
from cacscore.scoring.conventions import (
    KVP_TABLE,
    REFERENCES,
    Thresholds,
    cac_drs,
    risk_category,
    thresholds_for,
)
from cacscore.scoring.report import SCORE_SCHEMA, lesions_csv, score_report
from cacscore.scoring.results import ARTERY_ORDER, VESSELS, ArteryScore, Lesion, ScoreResult

__all__ = [
    "ARTERY_ORDER",
    "KVP_TABLE",
    "REFERENCES",
    "SCORE_SCHEMA",
    "VESSELS",
    "ArteryScore",
    "Lesion",
    "ScoreResult",
    "Thresholds",
    "cac_drs",
    "candidate_mask",
    "label_lesions_3d",
    "lesions_csv",
    "risk_category",
    "score_calcium",
    "score_report",
    "score_volume",
    "thresholds_for",
]
