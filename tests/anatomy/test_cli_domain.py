"""``cacscore score`` and the domain check.

A given mask is only warned about; the report has a domain block.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from anatomy_volumes import chest, index_of
from typer.testing import CliRunner

from cacscore.cli.main import app
from cacscore.io import write_volume


def test_a_mask_outside_the_heart_region_is_scored_with_a_warning(tmp_path: Path) -> None:
    volume = chest(fov_mm=220, padding_hu=-3024)
    z, y, x = index_of(volume, (0, 0, 80))  # in the lung, beside the heart
    hu = volume.hu.copy()
    hu[z, y - 1 : y + 2, x - 1 : x + 2] = 400
    mask = np.zeros(hu.shape, dtype=np.uint8)
    mask[z, y - 1 : y + 2, x - 1 : x + 2] = 3
    write_volume(volume.with_hu(hu), tmp_path / "ct.nii.gz")
    write_volume(volume.with_hu(mask), tmp_path / "mask.nii.gz")
    result = CliRunner().invoke(
        app, ["score", str(tmp_path / "ct.nii.gz"), "--mask", str(tmp_path / "mask.nii.gz"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["lesions"]) == 1  # counted: the mask is the user's decision
    assert any("1 lesion(s) of the mask lie outside the heart region" in w for w in report["warnings"])
    assert report["domain"]["heart_in_view"] is True and report["domain"]["field_of_view"] == "gated"


def test_a_mask_on_a_scan_without_a_heart_is_scored_with_the_refusal_as_a_warning(tmp_path: Path) -> None:
    volume = chest(lungs=False)
    write_volume(volume, tmp_path / "ct.nii.gz")
    write_volume(volume.with_hu(np.zeros(volume.shape, dtype=np.uint8)), tmp_path / "mask.nii.gz")
    result = CliRunner().invoke(
        app, ["score", str(tmp_path / "ct.nii.gz"), "--mask", str(tmp_path / "mask.nii.gz"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["domain"]["refusal"].startswith("no heart in the field of view")
    assert any(
        w.startswith("no heart in the field of view") and w.endswith("(the given mask is scored anyway)")
        for w in report["warnings"]
    )


def test_without_a_mask_a_scan_without_a_heart_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    write_volume(chest(lungs=False), tmp_path / "ct.nii.gz")
    # The model folder does not exist: the refusal comes first, so the model is never looked at.
    result = CliRunner().invoke(
        app, ["score", str(tmp_path / "ct.nii.gz"), "--model", str(tmp_path / "none")]
    )
    assert result.exit_code == 1
    assert "no heart in the field of view" in result.stderr and "model folder" not in result.stderr
