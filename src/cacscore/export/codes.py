"""The DICOM codes of the exports: one home, each checked against pydicom's copy of PS3.16.

Every standard code is taken from :data:`pydicom.sr.codedict.codes` by keyword, so a code that is
not in the standard's tables fails at import instead of travelling in a file. Concepts that the
standard has no code for (the risk category and CAC-DRS as named values) use the local coding
scheme :data:`LOCAL_SCHEME` ("99" prefix: private, PS3.16 8.2), declared in each SR.
"""

from __future__ import annotations

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from cacscore.labels import LAD, LCX, LM, RCA, UNSPECIFIED

#: Local coding scheme of the concepts without a standard code.
LOCAL_SCHEME = "99CACSCORE"

#: Segmented property category and type of every calcium segment: a morphologically abnormal
#: structure (SCT 49755003, CID 7150) of type calcified atheromatous plaque (SCT 29483008).
SEGMENT_CATEGORY: Code = codes.SCT.MorphologicallyAbnormalStructure
SEGMENT_TYPE: Code = codes.SCT.CalcifiedAtheromatousPlaque

#: Anatomic region (SEG) and finding site (SR) of each calcium label code.
ARTERY_SITES: dict[int, Code] = {
    UNSPECIFIED: codes.SCT.CoronaryArtery,
    LM: codes.SCT.LeftMainCoronaryArtery,
    LAD: codes.SCT.LeftAnteriorDescendingCoronaryArtery,
    LCX: codes.SCT.CircumflexCoronaryArtery,
    RCA: codes.SCT.RightCoronaryArtery,
}

#: Procedure reported in the SR (SCT 426005005).
PROCEDURE: Code = codes.SCT.CardiacCTForCalciumScoring
#: Agatston score (SCT 450360000 "Coronary artery calcium score"), with its method (DCM 112055).
AGATSTON_SCORE: Code = codes.SCT.CoronaryArteryCalciumScore
AGATSTON_METHOD: Code = codes.DCM.AgatstonScoringMethod
#: Calcium volume (DCM 122660) and mass (DCM 122661).
CALCIUM_VOLUME: Code = codes.DCM.CalciumVolume
CALCIUM_MASS: Code = codes.DCM.CalciumMass
#: Units (UCUM). The Agatston score has no unit: UCUM's "1".
UNIT_SCORE = Code("1", "UCUM", "no units")
UNIT_MM3 = Code("mm3", "UCUM", "cubic millimeter")
UNIT_MG = Code("mg", "UCUM", "milligram")

#: Names of the qualitative evaluations that have no standard code.
RISK_CATEGORY = Code("RISKCAT", LOCAL_SCHEME, "Coronary calcium risk category")
CAC_DRS = Code("CACDRS", LOCAL_SCHEME, "CAC-DRS")
