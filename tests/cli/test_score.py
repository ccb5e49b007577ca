"""``cacscore score`` through real NIfTI files, against hand-computed scores."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from cacscore.cli.main import app

SPACING_ZYX = (3.0, 0.5, 0.5)
# Hand-computed, 0.25 mm^2 pixels, 3 mm slice increment (dz / 3 = 1):
#   LAD lesion: slice 1 2x2 at 250 HU (1 mm^2 x 2) + slice 2 2x2 at 450 HU (1 mm^2 x 4) = 6;
#               8 voxels x 0.75 mm^3 = 6 mm^3; (4 x 250 + 4 x 450) x 0.75 / 1000 = 2.1 mg
#   RCA lesion: slice 3 3x2 at 150 HU: 1.5 mm^2 x 1 = 1.5; 4.5 mm^3; 6 x 150 x 0.75 / 1000 = 0.675 mg
#   LCX: one 600 HU pixel (0.25 mm^2): below the area rule, not scored.
EXPECTED = {"agatston": 7.5, "volume_mm3": 10.5, "mass_mg": 2.775}


def write_image(
    array: np.ndarray, path: Path, origin_lps: tuple[float, float, float] = (-12.0, 30.0, 100.0)
) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING_ZYX[::-1])
    image.SetOrigin(origin_lps)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture(name="case")
def case_fixture(tmp_path: Path) -> dict[str, Path]:
    hu = np.full((4, 10, 10), -40, np.int16)
    project = np.zeros(hu.shape, np.uint8)
    orcascore = np.zeros(hu.shape, np.uint8)
    hu[1, 2:4, 2:4], hu[2, 2:4, 2:4] = 250, 450
    project[1:3, 2:4, 2:4], orcascore[1:3, 2:4, 2:4] = 3, 1
    hu[3, 6:9, 6:8] = 150
    project[3, 6:9, 6:8], orcascore[3, 6:9, 6:8] = 5, 3
    hu[0, 8, 1] = 600
    project[0, 8, 1], orcascore[0, 8, 1] = 4, 2
    return {
        "ct": write_image(hu, tmp_path / "ct.nii.gz"),
        "mask": write_image(project, tmp_path / "mask.nii.gz"),
        "orcascore": write_image(orcascore, tmp_path / "orcascore.nii.gz"),
        "small": write_image(project[:, :9], tmp_path / "small.nii.gz"),
    }


def run(*args: object) -> object:
    return CliRunner().invoke(app, ["score", *(str(a) for a in args)])


def test_json_reproduces_hand_computed_scores(case: dict[str, Path]) -> None:
    result = run(case["ct"], "--mask", case["mask"], "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["schema"] == "cacscore.score/1"
    assert report["input"]["path"] == str(case["ct"])
    assert report["input"]["shape_zyx"] == [4, 10, 10]
    assert report["input"]["spacing_zyx_mm"] == pytest.approx(list(SPACING_ZYX))
    for key, value in EXPECTED.items():
        assert report[key] == pytest.approx(value)
    assert (report["risk_category"], report["cac_drs"], report["n_vessels"]) == ("B", "A1/N2", 2)
    assert report["arteries"]["LAD"] == pytest.approx(
        {"agatston": 6.0, "volume_mm3": 6.0, "mass_mg": 2.1, "n_lesions": 1}
    )
    assert report["arteries"]["RCA"]["agatston"] == pytest.approx(1.5)
    assert report["arteries"]["LCX"]["agatston"] == 0
    lad, rca = report["lesions"]
    assert (lad["id"], lad["artery"], lad["peak_hu"], lad["slices"]) == (1, "LAD", 450, [1, 2])
    # Centroid in LPS mm: origin + index x spacing (identity direction).
    assert lad["centroid_mm"] == pytest.approx([-12.0 + 2.5 * 0.5, 30.0 + 2.5 * 0.5, 100.0 + 1.5 * 3.0])
    assert rca["artery"] == "RCA" and rca["mass_mg"] == pytest.approx(0.675)
    assert report["conventions"]["threshold_hu"] == 130
    assert any("kVp) unknown" in w for w in report["warnings"])  # plain NIfTI carries no kVp
    assert "warning:" in result.stderr


def test_table_output(case: dict[str, Path]) -> None:
    result = run(case["ct"], "--mask", case["mask"])
    assert result.exit_code == 0, result.output
    assert "Calcium scores" in result.stdout and "LAD" in result.stdout
    assert "7.5" in result.stdout and "A1/N2" in result.stdout


def test_orcascore_labels(case: dict[str, Path]) -> None:
    result = run(case["ct"], "--mask", case["orcascore"], "--mask-labels", "orcascore", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["agatston"] == pytest.approx(EXPECTED["agatston"])
    assert report["arteries"]["LAD"]["agatston"] == pytest.approx(6.0)
    assert report["mask"] == {"path": str(case["orcascore"]), "labels": "orcascore"}


def test_binary_labels_and_options(case: dict[str, Path]) -> None:
    result = run(
        case["ct"],
        "--mask",
        case["mask"],
        "--mask-labels",
        "binary",
        "--json",
        "--min-voxels",
        "5",
        "--mass-calibration",
        "2",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # Only the 6-pixel RCA slice passes min_voxels=5; everything is "unspecified".
    assert report["agatston"] == pytest.approx(1.5)
    assert report["arteries"]["unspecified"]["mass_mg"] == pytest.approx(2 * 0.675)
    assert (report["n_vessels"], report["cac_drs"]) == (0, "A1")
    assert report["conventions"]["min_voxels"] == 5


def test_out_writes_files_and_refuses_to_overwrite(case: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "result"
    first = run(case["ct"], "--mask", case["mask"], "--out", out)
    assert first.exit_code == 0, first.output
    report = json.loads((out / "score.json").read_text())
    assert report["agatston"] == pytest.approx(EXPECTED["agatston"])
    rows = list(csv.DictReader((out / "lesions.csv").read_text().splitlines()))
    assert [row["artery"] for row in rows] == ["LAD", "RCA"]
    # The closing line names every file written, and only those (a NIfTI input has no DICOM outputs).
    assert f"wrote {out}: score.json, lesions.csv" in " ".join(first.stdout.split())
    assert sorted(p.name for p in out.iterdir()) == ["lesions.csv", "score.json"]
    (out / "score.json").write_text("{}")
    again = run(case["ct"], "--mask", case["mask"], "--out", out)
    assert again.exit_code == 1
    assert "already holds score.json" in again.stderr and "--force" in again.stderr
    assert (out / "score.json").read_text() == "{}"
    forced = run(case["ct"], "--mask", case["mask"], "--out", out, "--force")
    assert forced.exit_code == 0, forced.output
    assert json.loads((out / "score.json").read_text())["agatston"] == pytest.approx(EXPECTED["agatston"])


def test_output_folder_that_cannot_be_made_is_a_one_line_error(case: dict[str, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    result = run(case["ct"], "--mask", case["mask"], "--out", blocker / "result")
    assert result.exit_code == 1
    assert "cannot create the output folder" in result.stderr and "Traceback" not in result.output
    assert blocker.read_text() == "keep me"


def test_os_errors_become_one_line_errors_naming_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from cacscore.cli.common import user_errors

    with pytest.raises(typer.Exit) as info, user_errors():
        raise PermissionError(13, "Permission denied", "/data/[site]/score.json")
    assert info.value.exit_code == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: /data/[site]/score.json: Permission denied"  # brackets are not markup


def test_mask_on_another_grid_is_an_error(case: dict[str, Path]) -> None:
    result = run(case["ct"], "--mask", case["small"])
    assert result.exit_code == 1
    assert "error:" in result.stderr and str(case["small"]) in result.stderr
    assert "Traceback" not in result.output


def test_bad_labels_missing_model_and_kvp_table(case: dict[str, Path], tmp_path: Path) -> None:
    bad = run(case["ct"], "--mask", case["mask"], "--mask-labels", "orcascore")
    assert bad.exit_code == 1 and "does not define" in bad.stderr
    # Without --mask the model segments; a model folder that does not exist is a one-line error. The scan is
    # read and checked first (this tiny array has no heart: --skip-domain-check gets past that).
    refused = run(case["ct"], "--model", tmp_path / "no-model")
    assert refused.exit_code == 1 and "no heart in the field of view" in refused.stderr
    no_model = run(case["ct"], "--model", tmp_path / "no-model", "--skip-domain-check")
    assert no_model.exit_code == 1 and "model folder not found" in no_model.stderr
    assert "Traceback" not in no_model.output
    nothing = run(case["ct"].with_name("absent.nii.gz"), "--mask", case["mask"])
    assert nothing.exit_code == 1 and "no such file" in nothing.stderr
    negative = run(case["ct"], "--mask", case["mask"], "--min-area-mm2", "-1")
    assert negative.exit_code == 1 and "min_area_mm2" in negative.stderr


def test_dicom_series_with_kvp_thresholds(tmp_path: Path) -> None:
    from cacscore.io import CTVolume, write_dicom_series

    hu = np.full((3, 8, 8), -40, np.int16)
    hu[1, 2:4, 2:4] = 140  # below the 145 HU threshold of 100 kV: scored only at 130 HU
    hu[2, 4:6, 4:6] = 230  # 100 kV edges 222/334/446: weight 2 (also 2 at 120 kV)
    volume = CTVolume(
        hu=hu, spacing=SPACING_ZYX, kvp=100.0, slice_thickness_mm=3.0, series_uid="1.2.826.0.1.7"
    )
    write_dicom_series(volume, tmp_path / "dicom", uid_seed="score-test")
    write_image((hu > 0).astype(np.uint8) * 2, tmp_path / "lm.nii.gz", origin_lps=volume.origin)
    series_uid = json.loads(run(tmp_path / "dicom", "--mask", tmp_path / "lm.nii.gz", "--json").stdout)[
        "input"
    ]["series_uid"]

    plain = run(tmp_path / "dicom", "--mask", tmp_path / "lm.nii.gz", "--json", "--series", series_uid)
    assert plain.exit_code == 0, plain.output
    report = json.loads(plain.stdout)
    assert (report["input"]["kvp"], report["agatston"], report["arteries"]["LM"]["agatston"]) == (
        100.0,
        3.0,
        3.0,
    )
    assert any("100 kV but scored with the 120 kV thresholds" in w for w in report["warnings"])

    adapted = run(tmp_path / "dicom", "--mask", tmp_path / "lm.nii.gz", "--json", "--kvp-thresholds")
    assert adapted.exit_code == 0, adapted.output
    report = json.loads(adapted.stdout)
    assert report["agatston"] == pytest.approx(2.0)
    assert (
        report["conventions"]["threshold_hu"] == 145
        and report["conventions"]["threshold_source"] == "kvp_table"
    )
    assert "calcium >= 145 HU" in adapted.stderr


def _table_text(report: dict) -> str:
    from rich.console import Console

    from cacscore.cli.score import print_report

    console = Console(record=True, width=200)
    print_report(report, console)
    return console.export_text()


def test_lesion_table_shows_confidence_only_for_model_results() -> None:
    lesion = {
        "id": 1,
        "artery": "LAD",
        "agatston": 12.0,
        "volume_mm3": 9.0,
        "mass_mg": 2.0,
        "peak_hu": 410,
        "slices": [3, 4],
        "centroid_mm": [1.0, 2.0, 3.0],
        "confidence": None,
    }
    report = {
        "input": {"path": "ct.nii.gz", "shape_zyx": [5, 8, 8], "spacing_zyx_mm": [3.0, 0.5, 0.5], "kvp": 120},
        "arteries": {},
        "agatston": 12.0,
        "volume_mm3": 9.0,
        "mass_mg": 2.0,
        "risk_category": "C",
        "cac_drs": "A1/N1",
        "n_vessels": 1,
        "lesions": [lesion],
    }
    assert "confidence" not in _table_text(report)
    report["lesions"] = [{**lesion, "confidence": 0.8}]
    text = _table_text(report)
    assert "confidence" in text and "80%" in text
