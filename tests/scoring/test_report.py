"""The cacscore.score/1 report and the lesion CSV."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from cacscore.errors import InvalidInputError
from cacscore.io import CTVolume
from cacscore.scoring import SCORE_SCHEMA, ScoreResult, lesions_csv, score_report, score_volume
from cacscore.scoring.report import LESION_COLUMNS


def example() -> tuple[CTVolume, ScoreResult]:
    hu = np.full((2, 8, 8), -20, np.int16)
    hu[1, 2:4, 2:4] = 330
    volume = CTVolume(
        hu=hu,
        spacing=(3.0, 0.5, 0.5),
        kvp=80.0,
        slice_thickness_mm=3.0,
        series_uid="1.2.3",
        warnings=["ct.nii: kVp is 80"],
    )
    return volume, score_volume(volume, hu > 0)


def test_report_has_the_schema_keys() -> None:
    volume, result = example()
    report = score_report(volume, result, "ct.nii", extra={"mask": {"path": "m.nii"}})
    assert report["schema"] == SCORE_SCHEMA
    assert report["input"] == {
        "path": "ct.nii",
        "shape_zyx": [2, 8, 8],
        "spacing_zyx_mm": [3.0, 0.5, 0.5],
        "slice_thickness_mm": 3.0,
        "kvp": 80.0,
        "study_uid": None,
        "series_uid": "1.2.3",
    }
    for key in (
        "agatston",
        "volume_mm3",
        "mass_mg",
        "risk_category",
        "cac_drs",
        "arteries",
        "lesions",
        "conventions",
        "warnings",
    ):
        assert key in report
    assert report["agatston"] == pytest.approx(3.0)
    assert set(report["lesions"][0]) >= {
        "id",
        "artery",
        "agatston",
        "volume_mm3",
        "mass_mg",
        "peak_hu",
        "centroid_mm",
    }
    assert report["warnings"][0] == "ct.nii: kVp is 80" and len(report["warnings"]) == 2
    assert report["mask"] == {"path": "m.nii"}
    again = ScoreResult.from_dict(report)
    assert (again.lesions, again.arteries, again.conventions) == (
        result.lesions,
        result.arteries,
        result.conventions,
    )


def test_extra_keys_cannot_replace_schema_fields() -> None:
    volume, result = example()
    with pytest.raises(InvalidInputError, match="'agatston' would replace"):
        score_report(volume, result, extra={"agatston": 0})


def test_lesions_csv() -> None:
    volume, result = example()
    rows = list(csv.DictReader(io.StringIO(lesions_csv(result))))
    assert tuple(rows[0]) == LESION_COLUMNS
    assert len(rows) == 1
    assert (rows[0]["artery"], float(rows[0]["agatston"]), rows[0]["confidence"]) == ("unspecified", 3.0, "")
    assert lesions_csv(score_report(volume, result)) == lesions_csv(result)
