"""``cacscore score`` with risk-context inputs: the report's ``risk`` block, its sources, errors and PDF."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from cacscore.cli.main import app

SPACING_ZYX = (3.0, 0.5, 0.5)
#: One LAD lesion: slice 1 2x2 at 250 HU (1 mm^2 x weight 2) + slice 2 2x2 at 450 HU (1 mm^2 x 4)
#: = 6 Agatston.
AGATSTON = 6.0
#: Every MESA input for a 60-year-old non-Hispanic white man, TC 200, HDL 50, SBP 130, nothing else.
ALL_INPUTS = [
    "--age",
    "60",
    "--sex",
    "male",
    "--race",
    "white",
    "--total-cholesterol",
    "200",
    "--hdl",
    "50",
    "--systolic-bp",
    "130",
    "--no-diabetes",
    "--no-smoker",
    "--no-lipid-lowering",
    "--no-bp-medication",
    "--no-family-history",
]


def _arrays() -> tuple[np.ndarray, np.ndarray]:
    hu = np.full((4, 10, 10), -40, np.int16)
    mask = np.zeros(hu.shape, np.uint8)
    hu[1, 2:4, 2:4], hu[2, 2:4, 2:4] = 250, 450
    mask[1:3, 2:4, 2:4] = 3  # LAD
    return hu, mask


def _write(array: np.ndarray, path: Path, origin: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING_ZYX[::-1])
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture(name="nifti")
def nifti_fixture(tmp_path: Path) -> tuple[Path, Path]:
    hu, mask = _arrays()
    return _write(hu, tmp_path / "ct.nii.gz"), _write(mask, tmp_path / "mask.nii.gz")


@pytest.fixture(name="dicom")
def dicom_fixture(tmp_path: Path) -> tuple[Path, Path]:
    """A DICOM series whose header says PatientAge 063Y, PatientSex F, and a mask on its grid."""
    from cacscore.io import CTVolume, write_dicom_series

    hu, mask = _arrays()
    volume = CTVolume(hu=hu, spacing=SPACING_ZYX, kvp=120.0, slice_thickness_mm=3.0)
    write_dicom_series(
        volume, tmp_path / "dicom", uid_seed="risk-test", extra_tags={"PatientAge": "063Y", "PatientSex": "F"}
    )
    return tmp_path / "dicom", _write(mask, tmp_path / "lm.nii.gz", origin=volume.origin)


def run(*args: object) -> object:
    return CliRunner().invoke(app, ["score", *(str(a) for a in args)])


def test_every_input_on_the_command_line_gives_the_hand_computed_figures(nifti: tuple[Path, Path]) -> None:
    ct, mask = nifti
    result = run(ct, "--mask", mask, "--json", *ALL_INPUTS)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    risk = report["risk"]
    assert report["agatston"] == pytest.approx(AGATSTON) and risk["agatston"] == pytest.approx(AGATSTON)
    # X = 0.0172 x 60 + 0.4079 + 0.0043 x 200 - 0.0114 x 50 + 0.0066 x 130 + 0.2743 ln 7 = 3.1217
    x = 2.5879 + 0.2743 * math.log(AGATSTON + 1)
    assert risk["mesa_chd_10y"]["value"] == pytest.approx(100 * (1 - 0.99833 ** math.exp(x)))
    assert round(risk["mesa_chd_10y"]["value"], 2) == 3.72
    assert risk["arterial_age"]["value"] == pytest.approx(39.1 + 7.25 * math.log(AGATSTON + 1))  # 53.2
    assert all(item["source"] == "command line" for item in risk["inputs"].values())
    assert risk["inputs"]["diabetes"] == {"value": False, "source": "command line"}
    assert len(risk["inputs"]) == 11


def test_no_inputs_no_risk_block(nifti: tuple[Path, Path]) -> None:
    ct, mask = nifti
    result = run(ct, "--mask", mask, "--json")
    assert result.exit_code == 0, result.output
    assert "risk" not in json.loads(result.stdout)
    table = run(ct, "--mask", mask)
    assert table.exit_code == 0 and "risk:" not in table.stdout


def test_table_has_one_risk_line(nifti: tuple[Path, Path]) -> None:
    ct, mask = nifti
    result = run(ct, "--mask", mask, "--age", "70")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("risk:")]
    assert len(lines) == 1
    assert (
        lines[0]
        == "risk: MESA 10-year CHD risk not computed (10 of 11 inputs missing); arterial age 53 years"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--age", "abc"], "error: --age must be a number in years, got 'abc'"),
        (["--total-cholesterol", "-5"], "error: --total-cholesterol must be a positive number in mg/dL"),
        (["--sex", "x"], "error: --sex must be male or female"),
        (["--race", "martian"], "error: --race must be one of white, chinese-american"),
        (["--total-cholesterol", "180", "--hdl", "190"], "must be below total cholesterol"),
    ],
)
def test_invalid_values_are_one_line_errors(nifti: tuple[Path, Path], args: list[str], message: str) -> None:
    ct, mask = nifti
    result = run(ct, "--mask", mask, "--json", *args)
    assert result.exit_code == 1
    assert message in " ".join(result.stderr.split())
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert result.stdout == ""


def test_age_outside_validity_is_reported_as_not_computed(nifti: tuple[Path, Path]) -> None:
    ct, mask = nifti
    result = run(ct, "--mask", mask, "--json", *ALL_INPUTS[2:], "--age", "40")
    assert result.exit_code == 0, result.output
    risk = json.loads(result.stdout)["risk"]
    assert risk["mesa_chd_10y"]["value"] is None
    assert risk["mesa_chd_10y"]["not_computed"] == (
        "age 40 years is outside the MESA risk score's validity (45-85 years)"
    )
    assert risk["arterial_age"]["value"] is None


def test_age_and_sex_from_the_dicom_header(dicom: tuple[Path, Path]) -> None:
    folder, mask = dicom
    result = run(folder, "--mask", mask, "--json")
    assert result.exit_code == 0, result.output
    risk = json.loads(result.stdout)["risk"]
    assert risk["inputs"] == {
        "age_years": {"value": 63.0, "source": "DICOM header PatientAge '063Y'"},
        "sex": {"value": "female", "source": "DICOM header PatientSex 'F'"},
    }
    assert risk["arterial_age"]["value"] == pytest.approx(39.1 + 7.25 * math.log(AGATSTON + 1))
    assert risk["mesa_chd_10y"]["not_computed"].startswith("missing inputs: race/ethnicity,")


def test_command_line_wins_over_the_dicom_header(dicom: tuple[Path, Path]) -> None:
    folder, mask = dicom
    result = run(folder, "--mask", mask, "--json", "--age", "58", "--sex", "female", "--race", "hispanic")
    assert result.exit_code == 0, result.output
    risk = json.loads(result.stdout)["risk"]
    assert risk["inputs"]["age_years"] == {"value": 58.0, "source": "command line"}
    assert risk["inputs"]["sex"] == {"value": "female", "source": "command line"}
    assert risk["notes"] == [
        "DICOM header PatientAge '063Y' differs from the age given (58 years); the given age is used"
    ]


def test_the_pdf_of_a_dicom_input_has_the_risk_section(
    dicom: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pydicom
    from reportlab import rl_config

    monkeypatch.setattr(rl_config, "pageCompression", 0)  # page text readable in the PDF bytes
    folder, mask = dicom
    out = tmp_path / "out"
    result = run(folder, "--mask", mask, "--out", out, *ALL_INPUTS[2:], "--age", "62")
    assert result.exit_code == 0, result.output
    assert "risk" in json.loads((out / "score.json").read_text())
    document = pydicom.dcmread(out / "report_pdf.dcm")
    pdf = bytes(document.EncapsulatedDocument)
    # 39.1 + 7.25 ln 7 = 53.2 years; the MESA figure is shown to one decimal.
    for text in (b"Risk context", b"MESA 10-year coronary heart disease risk", b"Arterial age", b"53 years"):
        assert text in pdf
