"""Damaged copies of phantom DICOM series.

The reader never hangs, never tracebacks, never changes a volume silently.

Each case is read twice in a worker process (default, and with
``skip_unreadable``), with :data:`dicom_fuzz.CASE_TIMEOUT_S` per read; see
:func:`dicom_fuzz.judge` for what a read must do. The CI subset covers every
kind of damage on every base series; the full set adds randomly drawn cases.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from dicom_fuzz import KINDS, make_cases, run_cases, write_bases

SEED = 20261204


def _check(n_cases: int, tmp_path: Path) -> list[dict[str, object]]:
    start = time.perf_counter()
    bases = write_bases(tmp_path / "bases")
    cases = make_cases(n_cases, SEED, bases, tmp_path / "cases")
    records = run_cases(cases, bases)
    failures = [
        f"case {r['index']} {r['base']} {r['kind']} ({r['detail']}), skip_unreadable={r['skip_unreadable']}: "
        f"{r['failure']}"
        for r in records
        if r["failure"]
    ]
    assert failures == [], "\n".join(failures)
    assert len(records) == 2 * n_cases
    assert {r["kind"] for r in records} == set(KINDS)
    statuses = Counter(r["result"]["status"] for r in records)  # type: ignore[index]
    assert statuses["error"] > 0 and statuses["volume"] > 0
    assert time.perf_counter() - start < 60 + 2 * n_cases  # far below a hang per case
    return records


def test_damaged_series_ci_subset(tmp_path: Path) -> None:
    """40 cases (every kind of damage at least three times), reading only."""
    records = _check(40, tmp_path)
    # The end slices that used to vanish silently: each is an error by default, named.
    end_damage = [
        r for r in records if r["kind"] in ("zero_file", "random_file") and not r["skip_unreadable"]
    ]
    assert end_damage and all(r["result"]["status"] == "error" for r in end_damage)  # type: ignore[index]


@pytest.mark.slow
def test_damaged_series_full_set(tmp_path: Path) -> None:
    """160 cases: the subset's kinds, then kinds, targets and details drawn at random."""
    _check(160, tmp_path)
