"""The domain check on real CT: refusals and speed.

The CT volumes are TotalSegmentator 2.18.0's reference files, see conftest.py.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from cacscore.anatomy import check_domain
from cacscore.io import read_volume


def _read(path: Path):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        # Reading warnings (unknown kVp, 1.5 mm slices, an unreadable file beside the DICOM series) are not
        # what these tests look at.
        warnings.simplefilter("ignore")
        return read_volume(path, skip_unreadable=True)


@pytest.mark.parametrize("name", ["example_ct.nii.gz", "example_ct_sm.nii.gz", "example_ct_dicom"])
def test_abdominal_and_pelvic_ct_have_no_heart(totalseg_files: Path, name: str) -> None:
    volume = _read(totalseg_files / name)
    check = check_domain(volume)
    assert not check.heart_in_view and not check.region.found
    assert check.refusal is not None and check.refusal.startswith("no heart in the field of view: lungs")
    # Measured 2026-12-04: <= 100 mL of lung base, <= 40 mL of liver between them.
    assert check.heart_mass_ml < 100 and check.lung_left_ml + check.lung_right_ml < 200


def test_ct_angiography_is_refused_as_contrast_enhanced(totalseg_files: Path) -> None:
    check = check_domain(_read(totalseg_files / "aorta_report" / "example_ct.nii.gz"))
    assert check.heart_in_view and check.contrast_enhanced
    assert check.refusal is not None and check.refusal.startswith("contrast-enhanced scan (blood pool ~")
    assert check.blood_pool_hu is not None and check.blood_pool_hu > 200  # measured ~290-360 HU
    assert check.field_of_view == "full-chest"


def test_refusals_are_one_line_errors_with_exit_code_1(totalseg_files: Path) -> None:
    from typer.testing import CliRunner

    from cacscore.cli.main import app

    result = CliRunner().invoke(app, ["score", str(totalseg_files / "example_ct_sm.nii.gz"), "--json"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert (
        len(errors) == 1
        and "no heart in the field of view" in errors[0]
        and "--skip-domain-check" in errors[0]
    )
