"""``cacscore series DIR`` through the Typer app."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pydicom
from typer.testing import CliRunner

from cacscore.cli.main import app
from cacscore.io import CTVolume, write_dicom_series

Factory = Callable[..., CTVolume]


def _two_series(root: Path, make_volume: Factory) -> tuple[str, str]:
    write_dicom_series(make_volume((6, 16, 16)), root / "a", uid_seed="a")
    write_dicom_series(
        make_volume((6, 16, 16), modality="MR", series_description="T1 cine"), root / "b", uid_seed="b"
    )
    uid_a = pydicom.dcmread(next((root / "a").glob("*.dcm"))).SeriesInstanceUID
    uid_b = pydicom.dcmread(next((root / "b").glob("*.dcm"))).SeriesInstanceUID
    return uid_a, uid_b


def test_series_table(tmp_path: Path, make_volume: Factory) -> None:
    uid_a, uid_b = _two_series(tmp_path, make_volume)
    result = CliRunner().invoke(app, ["series", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert uid_a in result.output and uid_b in result.output
    assert "read by default: axial CT series" in result.output
    assert "modality MR, not CT" in result.output and "T1 cine" in result.output


def test_series_json(tmp_path: Path, make_volume: Factory) -> None:
    uid_a, uid_b = _two_series(tmp_path, make_volume)
    result = CliRunner().invoke(app, ["series", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema"] == "cacscore.series/1"
    assert [s["series_uid"] for s in data["series"]] == [uid_a, uid_b]
    assert data["series"][0] | {"series_uid": "", "study_uid": ""} == {
        "series_uid": "",
        "study_uid": "",
        "modality": "CT",
        "description": "Calcium score 3 mm",
        "n_slices": 6,
        "slice_thickness_mm": 3.0,
        "kvp": 120.0,
        "rows": 16,
        "cols": 16,
        "image_type": "ORIGINAL\\PRIMARY\\AXIAL",
        "orientation": "axial",
        "is_candidate": True,
        "reason": "axial CT series",
    }


def test_series_missing_folder_is_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["series", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "error:" in result.output and "nope: folder not found" in result.output
    assert "Traceback" not in result.output
