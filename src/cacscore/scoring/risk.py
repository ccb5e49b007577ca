"""Risk context of a calcium score: the MESA 10-year CHD risk with CAC and the arterial age.

Pure functions, no I/O. Each figure is computed only from inputs that were given (never imputed) and
only inside the validity its source states; otherwise the report says "not computed" and why.

Sources, and where every number below was checked
-------------------------------------------------
**MESA 10-year coronary heart disease (CHD) risk with CAC.** McClelland RL, Jorgensen NW, Budoff M,
et al. 10-Year Coronary Heart Disease Risk Prediction Using Coronary Artery Calcium and Traditional
Risk Factors: Derivation in the MESA (Multi-Ethnic Study of Atherosclerosis) With Validation in the
HNR (Heinz Nixdorf Recall) Study and the DHS (Dallas Heart Study). J Am Coll Cardiol
2015;66(15):1643-1653. doi:10.1016/j.jacc.2015.08.035 (Table 2, model with CAC).

    risk = 1 - S0 ** exp(X),  X = sum of coefficient x value (below),  S0 = 0.99833

The published model is a Cox model written with its baseline survival at all-zero covariates, so there
is no centring constant (X is not centred on cohort means). All 14 coefficients and S0 were checked
against three independent open sources that agree digit for digit:

1. the CRAN package CVrisk (github vcastro/CVrisk, ``data-raw/score_coef.R``: ``mesa_cac_coef``,
   "abstracted from PMC4603537 Table 2"; used by ``R/chd_10y_mesa_cac.R``);
2. ebmcalc.com/MESA.htm ("Terms CAC" and "10-year risk CAC = 100 * (1 - 0.99833^exp(Terms CAC))");
3. medicalalgorithms.com, "Models of McClelland et al for 10-year risk of coronary heart disease ...
   model including coronary artery calcium" (it prints 0.353 for African American, a misprint
   against the 0.0353 of the two others and of CVrisk's source table).

CVrisk's own test (a Hispanic man of 70, SBP 130 on treatment, HDL 50, total cholesterol 190, CAC 0:
3.06 %) is reproduced in ``tests/scoring/test_risk.py``. CVrisk additionally bounds its output to
1-30 %; that bound is its own display choice, not the paper's, and is not applied here.

Validity: ages 45-85 years and the four race/ethnicity groups of MESA (non-Hispanic white, Chinese
American, African American, Hispanic), as the MESA investigators' calculator page states
(internal.mesa-nhlbi.org, "MESA Risk Score and Coronary Age Calculator": "most appropriate for
patients in the 45-85 year age range and in one of the following racial/ethnic groups"); MESA enrolled
people aged 45-84 free of clinical cardiovascular disease at baseline.

**Arterial age.** McClelland RL, Nasir K, Budoff M, Blumenthal RS, Kronmal RA. Arterial age as a
function of coronary artery calcium (from the Multi-Ethnic Study of Atherosclerosis [MESA]). Am J
Cardiol 2009;103(1):59-63. doi:10.1016/j.amjcard.2008.08.031 (the MESA calculator page cites it so;
it is sometimes quoted as 2010).

    arterial age = 39.1 + 7.25 x ln(CAC + 1)  years

The two constants were checked against two independent open implementations found by code search (a
C# health-risk-assessment module, ``39.1 + (7.25 * Math.Log(cac + 1))``, and a radiology reporting
tool, ``39.1 + 7.25*Ln(score+1)``, citing McClelland 2009). The paper's full text could not be read
here; its abstract (PubMed 19101230) says the estimate is "a simple linear function of log-transformed
CAC" derived in MESA. Validity: the patient's age within MESA's 45-84 years (the cohort it was derived
in), so the age must be given; the paper's own wording of a range could not be checked.

**MESA CAC percentile.** Not given. McClelland RL, Chung H, Detrano R, Post W, Kronmal RA.
Distribution of coronary artery calcium by race, gender, and age: results from MESA. Circulation
2006;113:30-37 (doi:10.1161/CIRCULATIONAHA.105.580696) estimated the percentiles with nonparametric
techniques and points to the MESA website's interactive form for an individual percentile; its tables
were not verified number by number for this version, so no percentile is computed rather than one
from an unchecked or invented table (``docs/scoring.md``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cacscore.errors import InvalidInputError

#: Citation of the MESA 10-year CHD risk score with CAC.
MESA_SOURCE = (
    "McClelland RL, Jorgensen NW, Budoff M, et al. 10-Year Coronary Heart Disease Risk Prediction Using "
    "Coronary Artery Calcium and Traditional Risk Factors: Derivation in the MESA (Multi-Ethnic Study of "
    "Atherosclerosis) With Validation in the HNR (Heinz Nixdorf Recall) Study and the DHS (Dallas Heart "
    "Study). J Am Coll Cardiol 2015;66(15):1643-1653. doi:10.1016/j.jacc.2015.08.035"
)
#: Citation of the arterial age from CAC.
ARTERIAL_AGE_SOURCE = (
    "McClelland RL, Nasir K, Budoff M, Blumenthal RS, Kronmal RA. Arterial age as a function of coronary "
    "artery calcium (from the Multi-Ethnic Study of Atherosclerosis [MESA]). Am J Cardiol "
    "2009;103(1):59-63. doi:10.1016/j.amjcard.2008.08.031"
)

# --- MESA 10-year CHD risk with CAC: McClelland et al. 2015, Table 2 (model with CAC). Each value checked
# against CVrisk's mesa_cac_coef, ebmcalc.com/MESA.htm and medicalalgorithms.com (module docstring).
#: Baseline 10-year survival S0 (risk = 1 - S0 ** exp(X)).
MESA_BASELINE_SURVIVAL = 0.99833
#: Coefficient per year of age.
MESA_AGE_PER_YEAR = 0.0172
#: Coefficient of male sex (female 0).
MESA_MALE = 0.4079
#: Coefficients of race/ethnicity; non-Hispanic white is the reference (0).
MESA_RACE: dict[str, float] = {
    "white": 0.0,
    "chinese-american": -0.3475,
    "african-american": 0.0353,
    "hispanic": -0.0222,
}
#: Coefficient of diabetes.
MESA_DIABETES = 0.3892
#: Coefficient of current smoking.
MESA_CURRENT_SMOKER = 0.3717
#: Coefficient per mg/dL of total cholesterol.
MESA_TOTAL_CHOLESTEROL_PER_MG_DL = 0.0043
#: Coefficient per mg/dL of HDL cholesterol.
MESA_HDL_PER_MG_DL = -0.0114
#: Coefficient of lipid-lowering medication.
MESA_LIPID_LOWERING = 0.1206
#: Coefficient per mm Hg of systolic blood pressure.
MESA_SYSTOLIC_BP_PER_MM_HG = 0.0066
#: Coefficient of antihypertensive medication.
MESA_BP_MEDICATION = 0.2278
#: Coefficient of a family history of heart attack (parent, sibling or child).
MESA_FAMILY_HISTORY = 0.3239
#: Coefficient of ln(Agatston + 1).
MESA_LN_CAC_PLUS_1 = 0.2743
#: Ages (years, inclusive) for which the MESA investigators' calculator gives the score.
MESA_AGE_RANGE_YEARS = (45.0, 85.0)
#: Names of the race/ethnicity groups in reports; ``"other"`` (none of MESA's four) is a valid input for
#: which the score is not computed.
RACE_NAMES: dict[str, str] = {
    "white": "non-Hispanic white",
    "chinese-american": "Chinese American",
    "african-american": "African American",
    "hispanic": "Hispanic",
    "other": "another race/ethnicity",
}

# --- Arterial age: McClelland et al. 2009. Checked against two open implementations (module docstring).
#: Arterial age at CAC 0, years.
ARTERIAL_AGE_INTERCEPT_YEARS = 39.1
#: Years of arterial age per unit of ln(CAC + 1).
ARTERIAL_AGE_PER_LN_CAC_PLUS_1 = 7.25
#: Ages (years, inclusive) of the MESA participants the formula was derived in.
ARTERIAL_AGE_COHORT_AGE_RANGE_YEARS = (45.0, 84.0)

MESA_VALIDITY = (
    "ages 45-85 years; non-Hispanic white, Chinese American, African American or Hispanic; "
    "people without known coronary heart disease"
)
ARTERIAL_AGE_VALIDITY = (
    "patient age 45-84 years (the MESA participants it was derived in); "
    "people without known coronary heart disease"
)
PERCENTILE_NOT_GIVEN = (
    "not given: the published MESA percentiles (McClelland et al., Circulation 2006;113:30-37, estimated "
    "with nonparametric techniques; individual values from the MESA website's form) were not verified for "
    "this version, and none is invented"
)

#: Inputs of the MESA risk score, in report order, with their names for people.
MESA_INPUTS: dict[str, str] = {
    "age_years": "age",
    "sex": "sex",
    "race": "race/ethnicity",
    "diabetes": "diabetes",
    "smoker": "current smoking",
    "total_cholesterol_mg_dl": "total cholesterol",
    "hdl_mg_dl": "HDL cholesterol",
    "lipid_lowering": "lipid-lowering medication",
    "systolic_bp_mm_hg": "systolic blood pressure",
    "bp_medication": "antihypertensive medication",
    "family_history": "family history of heart attack",
}
#: Oldest age accepted as an input at all, years (the oldest documented human lived to 122; beyond it the
#: value is a typing error).
MAX_PLAUSIBLE_AGE_YEARS = 125.0
#: Below this, a total cholesterol "in mg/dL" is almost surely mmol/L (mg/dL = mmol/L x 38.67): such a
#: mix-up would give a silently wrong risk, so it is refused with the hint.
MIN_TOTAL_CHOLESTEROL_MG_DL = 20.0
_MMOL_TO_MG_DL_CHOLESTEROL = 38.67


class OutsideValidityError(InvalidInputError):
    """The inputs lie outside the range a published risk model is valid for; the figure is not computed."""


@dataclass(frozen=True)
class RiskFactors:
    """Clinical inputs of the risk context; ``None`` means not given (never imputed).

    Parameters
    ----------
    age_years : float, optional
        Age at the scan, years.
    sex : {"male", "female"}, optional
    race : {"white", "chinese-american", "african-american", "hispanic", "other"}, optional
        ``"other"``: none of MESA's four groups (the score is then not computed).
    diabetes, smoker, lipid_lowering, bp_medication, family_history : bool, optional
        Diabetes; current smoking; lipid-lowering medication; antihypertensive medication; a parent,
        sibling or child with a heart attack.
    total_cholesterol_mg_dl, hdl_mg_dl : float, optional
        Total and HDL cholesterol, mg/dL.
    systolic_bp_mm_hg : float, optional
        Systolic blood pressure, mm Hg.
    sources : dict of str to str
        Where each given input came from (``"command line"``, ``"DICOM header PatientAge '063Y'"``).
    notes : tuple of str
        Remarks on inputs (a header value that could not be used, a header value the command line overrode).
    """

    age_years: float | None = None
    sex: str | None = None
    race: str | None = None
    diabetes: bool | None = None
    smoker: bool | None = None
    total_cholesterol_mg_dl: float | None = None
    hdl_mg_dl: float | None = None
    lipid_lowering: bool | None = None
    systolic_bp_mm_hg: float | None = None
    bp_medication: bool | None = None
    family_history: bool | None = None
    sources: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def given(self) -> dict[str, Any]:
        """The inputs that were given, ``{name: value}`` in the order of :data:`MESA_INPUTS`."""
        return {name: getattr(self, name) for name in MESA_INPUTS if getattr(self, name) is not None}

    def missing(self) -> list[str]:
        """Names (for people) of the MESA inputs that were not given."""
        return [label for name, label in MESA_INPUTS.items() if getattr(self, name) is None]


def _finite(value: float, name: str, unit: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise InvalidInputError(f"{name} must be a positive number in {unit}, got {value!r}")
    return number


def check_factors(factors: RiskFactors) -> RiskFactors:
    """Check the given inputs' values (types, units, plausibility); return them unchanged.

    Raises
    ------
    InvalidInputError
        If an age, cholesterol or blood pressure is not a positive finite number, the age is above
        :data:`MAX_PLAUSIBLE_AGE_YEARS`, the sex or race is unknown, a total cholesterol looks like
        mmol/L, or HDL is not below total cholesterol.
    """
    if factors.age_years is not None:
        age = _finite(factors.age_years, "age", "years")
        if age > MAX_PLAUSIBLE_AGE_YEARS:
            raise InvalidInputError(f"age must be in years, got {factors.age_years!r}")
    if factors.sex is not None and factors.sex not in ("male", "female"):
        raise InvalidInputError(f"sex must be 'male' or 'female', got {factors.sex!r}")
    if factors.race is not None and factors.race not in RACE_NAMES:
        raise InvalidInputError(f"race must be one of {', '.join(RACE_NAMES)}, got {factors.race!r}")
    if factors.total_cholesterol_mg_dl is not None:
        total = _finite(factors.total_cholesterol_mg_dl, "total cholesterol", "mg/dL")
        if total < MIN_TOTAL_CHOLESTEROL_MG_DL:
            raise InvalidInputError(
                f"total cholesterol {total:g} mg/dL is implausible; give it in mg/dL "
                f"(mmol/L x {_MMOL_TO_MG_DL_CHOLESTEROL}: {total:g} mmol/L = "
                f"{total * _MMOL_TO_MG_DL_CHOLESTEROL:.0f} mg/dL)"
            )
    if factors.hdl_mg_dl is not None:
        hdl = _finite(factors.hdl_mg_dl, "HDL cholesterol", "mg/dL")
        if factors.total_cholesterol_mg_dl is not None and hdl >= factors.total_cholesterol_mg_dl:
            raise InvalidInputError(
                f"HDL cholesterol ({hdl:g} mg/dL) must be below total cholesterol "
                f"({factors.total_cholesterol_mg_dl:g} mg/dL)"
            )
    if factors.systolic_bp_mm_hg is not None:
        _finite(factors.systolic_bp_mm_hg, "systolic blood pressure", "mm Hg")
    return factors


def _check_agatston(agatston: float) -> float:
    value = float(agatston)
    if not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"Agatston score must be a finite number >= 0, got {agatston!r}")
    return value


def mesa_chd_risk_10y(
    *,
    age_years: float,
    sex: str,
    race: str,
    diabetes: bool,
    smoker: bool,
    total_cholesterol_mg_dl: float,
    hdl_mg_dl: float,
    lipid_lowering: bool,
    systolic_bp_mm_hg: float,
    bp_medication: bool,
    family_history: bool,
    agatston: float,
) -> float:
    """MESA 10-year risk of a coronary heart disease event with CAC (McClelland et al. 2015), in %.

    ``100 * (1 - 0.99833 ** exp(X))`` with ``X`` the sum of the coefficients (module constants)
    times the inputs and ``0.2743 * ln(agatston + 1)``.

    Parameters
    ----------
    age_years : float
        Age, years (45-85).
    sex : {"male", "female"}
    race : {"white", "chinese-american", "african-american", "hispanic", "other"}
        ``"other"`` is refused (outside validity).
    diabetes, smoker, lipid_lowering, bp_medication, family_history : bool
    total_cholesterol_mg_dl, hdl_mg_dl : float
        mg/dL.
    systolic_bp_mm_hg : float
        mm Hg.
    agatston : float
        Total Agatston score (>= 0).

    Returns
    -------
    float
        10-year CHD risk, percent (unrounded).

    Raises
    ------
    OutsideValidityError
        If the age is outside 45-85 years or the race/ethnicity is none of MESA's four.
    InvalidInputError
        If a value is not valid at all (see :func:`check_factors`).

    Examples
    --------
    >>> round(mesa_chd_risk_10y(age_years=70, sex="male", race="hispanic", diabetes=False, smoker=False,
    ...     total_cholesterol_mg_dl=190, hdl_mg_dl=50, lipid_lowering=False, systolic_bp_mm_hg=130,
    ...     bp_medication=True, family_history=False, agatston=0), 2)
    3.06
    """
    check_factors(
        RiskFactors(
            age_years=age_years,
            sex=sex,
            race=race,
            total_cholesterol_mg_dl=total_cholesterol_mg_dl,
            hdl_mg_dl=hdl_mg_dl,
            systolic_bp_mm_hg=systolic_bp_mm_hg,
        )
    )
    cac = _check_agatston(agatston)
    low, high = MESA_AGE_RANGE_YEARS
    if not low <= age_years <= high:
        raise OutsideValidityError(
            f"age {age_years:g} years is outside the MESA risk score's validity ({low:g}-{high:g} years)"
        )
    if race not in MESA_RACE:
        raise OutsideValidityError(
            f"race/ethnicity {RACE_NAMES[race]!r} is outside the MESA risk score's validity (derived for "
            + ", ".join(RACE_NAMES[key] for key in MESA_RACE)
            + ")"
        )
    x = (
        MESA_AGE_PER_YEAR * age_years
        + (MESA_MALE if sex == "male" else 0.0)
        + MESA_RACE[race]
        + (MESA_DIABETES if diabetes else 0.0)
        + (MESA_CURRENT_SMOKER if smoker else 0.0)
        + MESA_TOTAL_CHOLESTEROL_PER_MG_DL * total_cholesterol_mg_dl
        + MESA_HDL_PER_MG_DL * hdl_mg_dl
        + (MESA_LIPID_LOWERING if lipid_lowering else 0.0)
        + MESA_SYSTOLIC_BP_PER_MM_HG * systolic_bp_mm_hg
        + (MESA_BP_MEDICATION if bp_medication else 0.0)
        + (MESA_FAMILY_HISTORY if family_history else 0.0)
        + MESA_LN_CAC_PLUS_1 * math.log(cac + 1.0)
    )
    return 100.0 * (1.0 - MESA_BASELINE_SURVIVAL ** math.exp(x))


def arterial_age(agatston: float, *, age_years: float) -> float:
    """Arterial age from CAC (McClelland et al. 2009): ``39.1 + 7.25 * ln(agatston + 1)`` years.

    Parameters
    ----------
    agatston : float
        Total Agatston score (>= 0).
    age_years : float
        The patient's age, years: the formula is reported only for ages 45-84, the MESA participants'
        (it does not enter the formula).

    Returns
    -------
    float
        Arterial age, years (unrounded; 39.1 at CAC 0, never clamped).

    Raises
    ------
    OutsideValidityError
        If ``age_years`` is outside 45-84.
    InvalidInputError
        If the score is negative or not finite, or the age is not a valid age.

    Examples
    --------
    >>> round(arterial_age(100.0, age_years=60), 2)
    72.56
    """
    cac = _check_agatston(agatston)
    check_factors(RiskFactors(age_years=age_years))
    low, high = ARTERIAL_AGE_COHORT_AGE_RANGE_YEARS
    if not low <= age_years <= high:
        raise OutsideValidityError(
            f"age {age_years:g} years is outside the ages the arterial age was derived in "
            f"(MESA, {low:g}-{high:g} years)"
        )
    return ARTERIAL_AGE_INTERCEPT_YEARS + ARTERIAL_AGE_PER_LN_CAC_PLUS_1 * math.log(cac + 1.0)


def _result(unit: str, source: str, validity: str) -> dict[str, Any]:
    return {"value": None, "unit": unit, "not_computed": None, "source": source, "validity": validity}


def risk_context(factors: RiskFactors, agatston: float) -> dict[str, Any] | None:
    """The report's ``risk`` block, or None when no input was given (the report then has no block).

    Parameters
    ----------
    factors : RiskFactors
        The inputs given (from the command line or the DICOM header), with their sources.
    agatston : float
        The scan's total Agatston score.

    Returns
    -------
    dict or None
        ``{"inputs": {name: {"value", "source"}}, "agatston", "mesa_chd_10y", "arterial_age",
        "mesa_percentile", "notes"}``; each result holds ``value``, ``unit``, ``not_computed`` (the
        reason, or null), ``source`` and ``validity``. Described in ``docs/scoring.md``.

    Raises
    ------
    InvalidInputError
        If a given value is not valid at all (:func:`check_factors`) or the score is negative.
    """
    given = check_factors(factors).given()
    if not given:
        return None
    cac = _check_agatston(agatston)
    mesa = _result("%", MESA_SOURCE, MESA_VALIDITY)
    missing = factors.missing()
    mesa["missing_inputs"] = missing
    if missing:
        mesa["not_computed"] = "missing inputs: " + ", ".join(missing) + " (never imputed)"
    else:
        try:
            mesa["value"] = mesa_chd_risk_10y(**given, agatston=cac)
        except OutsideValidityError as exc:
            mesa["not_computed"] = str(exc)
    artery = _result("years", ARTERIAL_AGE_SOURCE, ARTERIAL_AGE_VALIDITY)
    if factors.age_years is None:
        artery["not_computed"] = "age not given (needed to check the validity range)"
    else:
        try:
            artery["value"] = arterial_age(cac, age_years=factors.age_years)
        except OutsideValidityError as exc:
            artery["not_computed"] = str(exc)
    percentile: dict[str, Any] = {"value": None, "unit": "percentile", "not_computed": None, "source": None}
    percentile["not_computed"] = PERCENTILE_NOT_GIVEN
    return {
        "inputs": {
            name: {"value": value, "source": factors.sources.get(name, "given")}
            for name, value in given.items()
        },
        "agatston": cac,
        "mesa_chd_10y": mesa,
        "arterial_age": artery,
        "mesa_percentile": percentile,
        "notes": list(factors.notes),
    }


def risk_summary(block: Mapping[str, Any]) -> str:
    """One short line for people: each risk figure, or why it is not given.

    For example ``risk: MESA 10-year CHD risk 5.2 %; arterial age 62 years``. Missing inputs are
    counted, not listed (the report's ``not_computed`` lists them).

    Examples
    --------
    >>> block = {
    ...     "mesa_chd_10y": {"value": None, "not_computed": "missing...", "missing_inputs": ["sex"]},
    ...     "arterial_age": {"value": None, "not_computed": "age not given"},
    ... }
    >>> risk_summary(block)  # doctest: +NORMALIZE_WHITESPACE
    'risk: MESA 10-year CHD risk not computed (1 of 11 inputs missing);
     arterial age not computed (age not given)'
    """
    mesa, artery = block["mesa_chd_10y"], block["arterial_age"]
    if mesa["value"] is not None:
        first = f"MESA 10-year CHD risk {mesa['value']:.1f} %"
    elif mesa.get("missing_inputs"):
        first = (
            "MESA 10-year CHD risk not computed "
            f"({len(mesa['missing_inputs'])} of {len(MESA_INPUTS)} inputs missing)"
        )
    else:
        first = f"MESA 10-year CHD risk not computed ({mesa['not_computed']})"
    second = (
        f"arterial age {artery['value']:.0f} years"
        if artery["value"] is not None
        else f"arterial age not computed ({artery['not_computed']})"
    )
    return f"risk: {first}; {second}"


# --- Parsing of inputs given as text (command line) or DICOM attributes.

_DICOM_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])\s*$", re.IGNORECASE)
#: Days per unit of a DICOM Age String (PS3.5 VR AS: nnnD, nnnW, nnnM, nnnY).
_DAYS_PER_UNIT = {"D": 1.0, "W": 7.0, "M": 365.25 / 12.0, "Y": 365.25}
_SEXES = {"male": "male", "m": "male", "female": "female", "f": "female"}


def parse_number(text: str, name: str, unit: str) -> float:
    """A positive finite number given as text (e.g. a command-line option).

    Raises
    ------
    InvalidInputError
        If ``text`` is not a number, or not positive and finite; the message names ``name`` and ``unit``.

    Examples
    --------
    >>> parse_number("63", "--age", "years")
    63.0
    """
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError(f"{name} must be a number in {unit}, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive number in {unit}, got {text!r}")
    return value


def parse_sex(text: str, name: str = "--sex") -> str:
    """``"male"`` or ``"female"`` from ``male``/``female``/``M``/``F`` (any case).

    Raises
    ------
    InvalidInputError
        For any other value.
    """
    sex = _SEXES.get(text.strip().lower())
    if sex is None:
        raise InvalidInputError(f"{name} must be male or female (M/F), got {text!r}")
    return sex


def parse_race(text: str, name: str = "--race") -> str:
    """A race/ethnicity key: one of MESA's four (``white``, ``chinese-american``, ``african-american``,
    ``hispanic``) or ``other``.

    Raises
    ------
    InvalidInputError
        For any other value; the message lists the accepted ones.
    """
    race = text.strip().lower().replace("_", "-").replace(" ", "-")
    if race not in RACE_NAMES:
        raise InvalidInputError(
            f"{name} must be one of {', '.join(RACE_NAMES)} (other: none of the MESA groups), got {text!r}"
        )
    return race


def dicom_age_years(text: str) -> float:
    """Age in years from a DICOM Age String (``"063Y"``, ``"006M"``, ``"012W"``, ``"030D"``).

    Raises
    ------
    InvalidInputError
        If ``text`` is not an Age String.

    Examples
    --------
    >>> dicom_age_years("063Y"), dicom_age_years("018M")
    (63.0, 1.5)
    """
    match = _DICOM_AGE.match(text)
    if match is None:
        raise InvalidInputError(f"PatientAge {text!r} is not a DICOM age (nnnY, nnnM, nnnW or nnnD)")
    number, unit = int(match.group(1)), match.group(2).upper()
    return float(number) if unit == "Y" else number * _DAYS_PER_UNIT[unit] / _DAYS_PER_UNIT["Y"]


def with_dicom_header(factors: RiskFactors, header: Any) -> RiskFactors:
    """Fill age and sex from a DICOM header's PatientAge and PatientSex where not given already.

    Command-line values win; a header value that differs from one is named in ``notes``, and a header
    value that cannot be used (``"abc"``, sex ``"O"``) is left out with a note, never guessed.

    Parameters
    ----------
    factors : RiskFactors
        The inputs given so far (command line).
    header : mapping-like
        A pydicom Dataset (or anything with ``.get(keyword)``) of the scored series.

    Returns
    -------
    RiskFactors
        A copy with ``age_years``/``sex`` and their ``sources`` filled from the header.
    """
    changes: dict[str, Any] = {}
    sources = dict(factors.sources)
    notes = list(factors.notes)
    raw_age = str(header.get("PatientAge", "") or "").strip()
    if raw_age:
        try:
            age = dicom_age_years(raw_age)
        except InvalidInputError as exc:
            notes.append(f"DICOM header: {exc}; not used")
        else:
            if factors.age_years is None:
                changes["age_years"] = age
                sources["age_years"] = f"DICOM header PatientAge {raw_age!r}"
            elif abs(age - factors.age_years) >= 1.0:
                notes.append(
                    f"DICOM header PatientAge {raw_age!r} differs from the age given "
                    f"({factors.age_years:g} years); the given age is used"
                )
    raw_sex = str(header.get("PatientSex", "") or "").strip()
    if raw_sex:
        sex = _SEXES.get(raw_sex.lower())
        if sex is None:
            notes.append(f"DICOM header PatientSex {raw_sex!r} is not male or female; not used")
        elif factors.sex is None:
            changes["sex"] = sex
            sources["sex"] = f"DICOM header PatientSex {raw_sex!r}"
        elif sex != factors.sex:
            notes.append(
                f"DICOM header PatientSex {raw_sex!r} differs from the sex given ({factors.sex}); "
                "the given sex is used"
            )
    return replace(factors, **changes, sources=sources, notes=tuple(notes))
