"""Inputs that coverage-guided fuzzing found, read again as the fuzzer reads them.

The fuzzer is benchmarks/fuzz_dicom_reader.py.

Each file is one mode byte and one DICOM file's bytes (see the script's docstring):

- ``multiline_series_uid``: a damaged SeriesInstanceUID holding line breaks made a multi-line error;
- ``unknown_vr_in_sequence``: an element with an unknown VR inside a sequence raised NotImplementedError
  from pydicom when the header was printed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FINDINGS = sorted((Path(__file__).parent / "data" / "fuzz_findings").iterdir())


def _fuzz_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "fuzz_dicom_reader", ROOT / "benchmarks" / "fuzz_dicom_reader.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("finding", FINDINGS, ids=[path.name for path in FINDINGS])
def test_fuzz_finding_reads_with_a_one_line_error_or_a_volume(finding: Path) -> None:
    # one_input raises on anything but a one-line CacScoreError and on raw library warnings.
    _fuzz_script().one_input(finding.read_bytes())
