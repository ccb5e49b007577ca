"""Synthetic non-contrast, ECG-gated calcium-scoring CT: anatomy, coronary calcium, distractors, ground truth.

``generate_case(seed)`` builds one case in memory; ``generate_cohort(out, n, seed)``
writes a cohort in the layout that :mod:`cacscore.datasets` reads. See ``docs/phantom.md``.
"""

from __future__ import annotations

from cacscore.phantom.cohort import case_seed, generate_cohort, write_case
from cacscore.phantom.generate import CATEGORIES, GENERATOR_VERSION, PhantomCase, PhantomConfig, generate_case

__all__ = [
    "CATEGORIES",
    "GENERATOR_VERSION",
    "PhantomCase",
    "PhantomConfig",
    "case_seed",
    "generate_case",
    "generate_cohort",
    "write_case",
]
