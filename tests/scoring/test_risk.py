"""Risk context against hand-computed values of the published formulas.

The expected values are computed here from the formulas written out with the published numbers
(McClelland et al. 2015, Table 2, model with CAC; McClelland et al. 2009), not from the module's
constants, so a wrong constant in ``cacscore.scoring.risk`` fails these tests.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydicom.dataset import Dataset

from cacscore.errors import InvalidInputError
from cacscore.scoring.risk import (
    OutsideValidityError,
    RiskFactors,
    arterial_age,
    dicom_age_years,
    mesa_chd_risk_10y,
    parse_number,
    parse_race,
    parse_sex,
    risk_context,
    risk_summary,
    with_dicom_header,
)

#: A 60-year-old non-Hispanic white man: total cholesterol 200, HDL 50, SBP 130, no treatment,
#: no diabetes, non-smoker, no family history.
MAN_60: dict[str, Any] = {
    "age_years": 60.0,
    "sex": "male",
    "race": "white",
    "diabetes": False,
    "smoker": False,
    "total_cholesterol_mg_dl": 200.0,
    "hdl_mg_dl": 50.0,
    "lipid_lowering": False,
    "systolic_bp_mm_hg": 130.0,
    "bp_medication": False,
    "family_history": False,
}


def mesa_by_hand(x: float) -> float:
    """10-year risk, %, from the linear predictor: 1 - S0 ** exp(X), S0 = 0.99833."""
    return 100.0 * (1.0 - 0.99833 ** math.exp(x))


# X of MAN_60 without CAC: 0.0172 x 60 + 0.4079 (male) + 0.0043 x 200 - 0.0114 x 50 + 0.0066 x 130
#   = 1.032 + 0.4079 + 0.86 - 0.57 + 0.858 = 2.5879
X_MAN_60 = 2.5879


@pytest.mark.parametrize(
    ("agatston", "expected_percent"),
    [
        # X = 2.5879 + 0.2743 ln(CAC + 1); risk = 100 (1 - 0.99833 ^ exp(X)), to 2 decimals by hand.
        (0.0, 2.20),  # X 2.5879, exp(X) 13.30
        (10.0, 4.20),  # X 3.2456, exp(X) 25.68
        (100.0, 7.58),  # X 3.8538, exp(X) 47.16
        (400.0, 10.87),  # X 4.2320, exp(X) 68.87
    ],
)
def test_mesa_risk_of_a_60_year_old_man_by_cac(agatston: float, expected_percent: float) -> None:
    risk = mesa_chd_risk_10y(**MAN_60, agatston=agatston)
    assert risk == pytest.approx(mesa_by_hand(X_MAN_60 + 0.2743 * math.log(agatston + 1.0)), rel=1e-12)
    assert round(risk, 2) == expected_percent


def test_mesa_risk_with_every_factor_present() -> None:
    # An African American woman of 50 with diabetes, smoking, lipid-lowering and antihypertensive
    # medication, family history, TC 240, HDL 40, SBP 150, CAC 50:
    # X = 0.0172 x 50 + 0.0353 + 0.3892 + 0.3717 + 0.0043 x 240 - 0.0114 x 40 + 0.1206 + 0.0066 x 150
    #     + 0.2278 + 0.3239 + 0.2743 ln 51 = 4.9730
    x = (
        0.86
        + 0.0353
        + 0.3892
        + 0.3717
        + 1.032
        - 0.456
        + 0.1206
        + 0.99
        + 0.2278
        + 0.3239
        + 0.2743 * math.log(51)
    )
    risk = mesa_chd_risk_10y(
        age_years=50,
        sex="female",
        race="african-american",
        diabetes=True,
        smoker=True,
        total_cholesterol_mg_dl=240,
        hdl_mg_dl=40,
        lipid_lowering=True,
        systolic_bp_mm_hg=150,
        bp_medication=True,
        family_history=True,
        agatston=50,
    )
    assert risk == pytest.approx(mesa_by_hand(x), rel=1e-12)
    assert round(risk, 2) == 21.45


def test_mesa_risk_of_a_chinese_american_woman() -> None:
    # X = 0.0172 x 55 - 0.3475 + 0.0043 x 180 - 0.0114 x 60 + 0.0066 x 120 = 1.4805; CAC 0.
    risk = mesa_chd_risk_10y(
        age_years=55,
        sex="female",
        race="chinese-american",
        diabetes=False,
        smoker=False,
        total_cholesterol_mg_dl=180,
        hdl_mg_dl=60,
        lipid_lowering=False,
        systolic_bp_mm_hg=120,
        bp_medication=False,
        family_history=False,
        agatston=0,
    )
    assert risk == pytest.approx(mesa_by_hand(1.4805), rel=1e-12)
    assert round(risk, 2) == 0.73  # below 1 %: not raised to 1 % as some calculators display it


def test_mesa_risk_reproduces_the_cvrisk_package_example() -> None:
    """CVrisk's test (tests/testthat/test-chd_10y_mesa_cac.R): Hispanic man of 70, 3.06 %."""
    risk = mesa_chd_risk_10y(
        age_years=70,
        sex="male",
        race="hispanic",
        systolic_bp_mm_hg=130,
        hdl_mg_dl=50,
        total_cholesterol_mg_dl=190,
        bp_medication=True,
        lipid_lowering=False,
        smoker=False,
        diabetes=False,
        family_history=False,
        agatston=0,
    )
    assert round(risk, 2) == 3.06


@pytest.mark.parametrize("age", [45.0, 85.0])
def test_mesa_risk_is_computed_at_the_ends_of_its_age_range(age: float) -> None:
    assert mesa_chd_risk_10y(**{**MAN_60, "age_years": age}, agatston=0) > 0


@pytest.mark.parametrize("age", [44.9, 85.5, 30.0])
def test_mesa_risk_refuses_ages_outside_45_to_85(age: float) -> None:
    with pytest.raises(OutsideValidityError, match=r"outside the MESA risk score's validity \(45-85 years\)"):
        mesa_chd_risk_10y(**{**MAN_60, "age_years": age}, agatston=10)


def test_mesa_risk_refuses_a_race_outside_the_four_groups() -> None:
    with pytest.raises(OutsideValidityError, match="another race/ethnicity.*outside.*Chinese American"):
        mesa_chd_risk_10y(**{**MAN_60, "race": "other"}, agatston=10)
    assert issubclass(OutsideValidityError, ValueError)


@pytest.mark.parametrize(
    ("agatston", "expected_years"),
    [(0.0, 39.1), (10.0, 56.48), (100.0, 72.56), (400.0, 82.56)],  # 39.1 + 7.25 ln(CAC + 1)
)
def test_arterial_age_by_hand(agatston: float, expected_years: float) -> None:
    years = arterial_age(agatston, age_years=60)
    assert years == pytest.approx(39.1 + 7.25 * math.log(agatston + 1.0), rel=1e-12)
    assert round(years, 2) == expected_years


def test_arterial_age_is_not_clamped_and_refuses_ages_outside_the_cohort() -> None:
    assert arterial_age(5000.0, age_years=84) == pytest.approx(39.1 + 7.25 * math.log(5001.0))  # > 84 y
    assert arterial_age(0.0, age_years=45) == pytest.approx(39.1)  # below 45 y: the formula's own value
    for age in (44.0, 85.0):
        with pytest.raises(OutsideValidityError, match=r"MESA, 45-84 years"):
            arterial_age(10.0, age_years=age)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"total_cholesterol_mg_dl": -5.0}, "total cholesterol must be a positive number"),
        ({"total_cholesterol_mg_dl": 5.2}, r"implausible.*5.2 mmol/L = 201 mg/dL"),
        ({"hdl_mg_dl": 250.0}, "HDL cholesterol .* must be below total cholesterol"),
        ({"systolic_bp_mm_hg": float("nan")}, "systolic blood pressure must be a positive number"),
        ({"age_years": 640.0}, "age must be in years"),
        ({"sex": "X"}, "sex must be 'male' or 'female'"),
    ],
)
def test_invalid_inputs_are_errors(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        mesa_chd_risk_10y(**{**MAN_60, **change}, agatston=0)
    with pytest.raises(InvalidInputError, match="Agatston score must be"):
        mesa_chd_risk_10y(**MAN_60, agatston=-1.0)


def test_no_inputs_no_block() -> None:
    assert risk_context(RiskFactors(), 120.0) is None


def test_block_with_every_input() -> None:
    factors = RiskFactors(**MAN_60, sources=dict.fromkeys(MAN_60, "command line"))
    block = risk_context(factors, 100.0)
    assert block is not None
    assert block["mesa_chd_10y"]["value"] == pytest.approx(mesa_by_hand(X_MAN_60 + 0.2743 * math.log(101)))
    assert block["mesa_chd_10y"]["not_computed"] is None and block["mesa_chd_10y"]["unit"] == "%"
    assert "J Am Coll Cardiol 2015;66(15):1643-1653" in block["mesa_chd_10y"]["source"]
    assert "45-85" in block["mesa_chd_10y"]["validity"]
    assert block["arterial_age"]["value"] == pytest.approx(39.1 + 7.25 * math.log(101))
    assert "Am J Cardiol 2009;103(1):59-63" in block["arterial_age"]["source"]
    assert (
        block["mesa_percentile"]["value"] is None
        and "were not verified" in (block["mesa_percentile"]["not_computed"])
    )
    assert block["inputs"]["age_years"] == {"value": 60.0, "source": "command line"}
    assert list(block["inputs"]) == list(MAN_60)  # every input, in a fixed order
    assert block["agatston"] == 100.0
    assert risk_summary(block) == "risk: MESA 10-year CHD risk 7.6 %; arterial age 73 years"


def test_missing_inputs_are_named_and_never_imputed() -> None:
    factors = RiskFactors(age_years=63.0, sex="female", smoker=True)
    block = risk_context(factors, 10.0)
    assert block is not None
    reason = block["mesa_chd_10y"]["not_computed"]
    assert block["mesa_chd_10y"]["value"] is None
    assert reason.startswith("missing inputs: race/ethnicity, diabetes, total cholesterol, HDL cholesterol")
    assert "age," not in reason and "sex" not in reason and "current smoking" not in reason
    assert block["arterial_age"]["value"] == pytest.approx(39.1 + 7.25 * math.log(11))
    assert set(block["inputs"]) == {"age_years", "sex", "smoker"}


def test_refusals_appear_as_not_computed_in_the_block() -> None:
    young = risk_context(RiskFactors(**{**MAN_60, "age_years": 40.0}), 10.0)
    assert young is not None
    assert young["mesa_chd_10y"]["value"] is None
    assert "age 40 years is outside the MESA risk score's validity" in young["mesa_chd_10y"]["not_computed"]
    assert "outside the ages the arterial age was derived in" in young["arterial_age"]["not_computed"]
    assert risk_summary(young).startswith("risk: MESA 10-year CHD risk not computed (age 40 years")
    no_age = risk_context(RiskFactors(sex="male"), 10.0)
    assert no_age is not None and no_age["arterial_age"]["not_computed"].startswith("age not given")


def test_dicom_age_strings() -> None:
    assert dicom_age_years("063Y") == 63.0
    assert dicom_age_years("018M") == pytest.approx(1.5)
    assert dicom_age_years("052W") == pytest.approx(52 * 7 / 365.25)
    assert dicom_age_years("365D") == pytest.approx(365 / 365.25)
    with pytest.raises(InvalidInputError, match="'abc' is not a DICOM age"):
        dicom_age_years("abc")


def _header(age: str | None, sex: str | None) -> Dataset:
    header = Dataset()
    if age is not None:
        header.PatientAge = age
    if sex is not None:
        header.PatientSex = sex
    return header


def test_age_and_sex_from_the_dicom_header_with_their_source() -> None:
    factors = with_dicom_header(RiskFactors(), _header("063Y", "F"))
    assert (factors.age_years, factors.sex) == (63.0, "female")
    assert factors.sources == {
        "age_years": "DICOM header PatientAge '063Y'",
        "sex": "DICOM header PatientSex 'F'",
    }
    assert factors.notes == ()


def test_the_command_line_wins_over_the_header_and_the_difference_is_noted() -> None:
    given = RiskFactors(
        age_years=58.0, sex="male", sources={"age_years": "command line", "sex": "command line"}
    )
    factors = with_dicom_header(given, _header("063Y", "F"))
    assert (factors.age_years, factors.sex) == (58.0, "male")
    assert factors.sources == {"age_years": "command line", "sex": "command line"}
    assert any("PatientAge '063Y' differs" in note for note in factors.notes)
    assert any("PatientSex 'F' differs" in note for note in factors.notes)


def test_unusable_header_values_are_left_out_with_a_note() -> None:
    # A plain mapping: pydicom warns when an invalid Age String is assigned, as a damaged file holds it.
    factors = with_dicom_header(RiskFactors(), {"PatientAge": "abc", "PatientSex": "O"})
    assert (factors.age_years, factors.sex) == (None, None)
    assert any("'abc' is not a DICOM age" in note for note in factors.notes)
    assert any("PatientSex 'O' is not male or female" in note for note in factors.notes)
    assert with_dicom_header(RiskFactors(), _header(None, "")) == RiskFactors()  # empty: nothing given


def test_text_parsers() -> None:
    assert parse_number("63.5", "--age", "years") == 63.5
    assert (parse_sex("M"), parse_sex("female")) == ("male", "female")
    assert parse_race("African-American") == "african-american"
    assert parse_race("other") == "other"
    with pytest.raises(InvalidInputError, match="--age must be a number in years, got 'abc'"):
        parse_number("abc", "--age", "years")
    with pytest.raises(InvalidInputError, match="--hdl must be a positive number in mg/dL"):
        parse_number("-3", "--hdl", "mg/dL")
    with pytest.raises(InvalidInputError, match="--race must be one of white, chinese-american"):
        parse_race("asian")
