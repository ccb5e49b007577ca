"""The orCaScore challenge layout (Wolterink et al., Med Phys 2016).

The challenge ships MetaImage files named by vendor and patient::

    Training Set/Images/TRV1P1CTI.mhd               non-contrast calcium-scoring CT (+ .raw)
    Training Set/Images/TRV1P1CTAI.mhd              the CTA of the same patient (not read)
    Training Set/Reference standard/TRV1P1R.mhd     reference labels: 1 LAD (incl. LM), 2 LCX, 3 RCA
    Test Set/Images/TEV1P1CTI.mhd ...

Any folder below ``root`` may hold them; an image ``<ID>CTI.mhd`` is paired
with the reference ``<ID>R.mhd`` found anywhere below ``root`` (file names
compared case-insensitively). The case id is ``<ID>`` (e.g. ``TRV1P1``).
The reference is converted to project codes (LAD 3, LCX 4, RCA 5); orCaScore
does not separate the LM, so LM calcium is LAD here.
"""

from __future__ import annotations

from pathlib import Path

from cacscore.datasets.base import (
    CaseRef,
    LoadedCase,
    case_meta,
    load_reference,
    natural_key,
    no_cases_error,
    read_case_volume,
)

IMAGE_END = "cti.mhd"
REFERENCE_END = "r.mhd"
_EXPECTED = "MetaImage files <ID>CTI.mhd with references <ID>R.mhd (e.g. TRV1P1CTI.mhd, TRV1P1R.mhd)"


def _mhd_files(root: Path) -> list[Path]:
    return sorted((p for p in root.rglob("*") if p.suffix.lower() == ".mhd" and p.is_file()), key=str)


def detect(root: Path) -> bool:
    """True when some file below ``root`` is named ``*CTI.mhd``."""
    return any(p.name.lower().endswith(IMAGE_END) for p in _mhd_files(root))


def list_cases(root: Path) -> list[CaseRef]:
    """orCaScore cases below ``root``, in case-id order (cases without reference included).

    Raises
    ------
    InvalidInputError
        If no ``*CTI.mhd`` image is found.
    """
    files = _mhd_files(root)
    references = {
        p.name[: -len(REFERENCE_END)].lower(): p
        for p in files
        if p.name.lower().endswith(REFERENCE_END)
    }
    cases = []
    for image in files:
        # "<ID>CTAI.mhd" (the CTA) does not end with "CTI.mhd", so it is never taken for the CT.
        if image.name.lower().endswith(IMAGE_END):
            case_id = image.name[: -len(IMAGE_END)]
            cases.append(CaseRef(case_id, "orcascore", image, references.get(case_id.lower())))
    if not cases:
        raise no_cases_error(root, "orcascore", _EXPECTED)
    return sorted(cases, key=lambda case: natural_key(case.case_id))


def load(ref: CaseRef) -> LoadedCase:
    """Read an orCaScore case (see :meth:`CaseRef.load`)."""
    volume = read_case_volume(ref)
    label, extra = load_reference(ref, volume, convention="orcascore")
    return LoadedCase(ref.case_id, volume, label, case_meta(ref, **extra))
