"""``cacscore annotations to-mask`` through the Typer app."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cacscore.cli.main import app
from cacscore.io import CTVolume, read_mask, read_volume, write_volume


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    hu = np.full((6, 32, 32), 40, dtype=np.int16)
    hu[:, 0, :] = -1000  # a row of air: a CT in HU (read_volume warns about one without)
    hu[2, 10:14, 10:14] = 300  # Agatston 4 mm^2 x 3 x 3 mm / 3 = 12, category C
    volume_path = write_volume(CTVolume(hu=hu, spacing=(3.0, 0.5, 0.5), kvp=120.0), tmp_path / "ct.nii.gz")
    points = tmp_path / "points.csv"
    points.write_text("z,y,x,artery\n2,14,12,LAD\n5,30,30,RCA\n")
    return volume_path, points


def test_to_mask_writes_mask_and_report(tmp_path: Path) -> None:
    volume_path, points = _inputs(tmp_path)
    out, report = tmp_path / "out" / "mask.nii.gz", tmp_path / "out" / "report.json"
    result = CliRunner().invoke(
        app,
        [
            "annotations",
            "to-mask",
            str(volume_path),
            str(points),
            "--out",
            str(out),
            "--report",
            str(report),
            "--category",
            "b",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "agatston: 12.0, category C" in result.output
    assert "DISCREPANCY" in result.output
    assert "point 1 (RCA)" in result.output and "no_component" in result.output
    mask = read_mask(out, read_volume(volume_path))
    assert int((mask == 3).sum()) == 16 and int(mask.astype(bool).sum()) == 16
    data = json.loads(report.read_text())
    assert data["discrepancy"] is True and data["status_counts"]["moved"] == 1


def test_to_mask_refuses_to_overwrite(tmp_path: Path) -> None:
    volume_path, points = _inputs(tmp_path)
    out = tmp_path / "mask.nii.gz"
    out.write_bytes(b"precious")
    args = ["annotations", "to-mask", str(volume_path), str(points), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "already exists; use --force" in result.output
    assert out.read_bytes() == b"precious"
    assert CliRunner().invoke(app, [*args, "--force"]).exit_code == 0
    assert out.read_bytes() != b"precious"


def test_to_mask_bad_points_is_one_line_error(tmp_path: Path) -> None:
    volume_path, _ = _inputs(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = CliRunner().invoke(
        app, ["annotations", "to-mask", str(volume_path), str(bad), "--out", str(tmp_path / "m.nii.gz")]
    )
    assert result.exit_code == 1
    assert "error:" in result.output and "no coordinate columns" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.nii.gz").exists()


def test_to_mask_uses_category_stated_in_json(tmp_path: Path) -> None:
    volume_path, _ = _inputs(tmp_path)
    points = tmp_path / "points.json"
    points.write_text(
        json.dumps({"risk_category": "C", "points": [{"i": 11, "j": 11, "k": 2, "artery": "LCX"}]})
    )
    out = tmp_path / "mask.mha"
    result = CliRunner().invoke(
        app, ["annotations", "to-mask", str(volume_path), str(points), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "annotated category: C (agrees)" in result.output
    assert int((read_mask(out, read_volume(volume_path)) == 4).sum()) == 16
