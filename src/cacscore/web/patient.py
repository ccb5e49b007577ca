"""Patient and study details for the report, read from a DICOM series' header (nothing else is read).

NIfTI and MetaImage files carry no patient details; their reports show
only the identifiers the volume has.
"""

from __future__ import annotations

from pathlib import Path

#: DICOM keyword -> label shown in the report, in report order.
PATIENT_FIELDS: dict[str, str] = {
    "PatientName": "Patient name",
    "PatientID": "Patient ID",
    "PatientBirthDate": "Birth date",
    "PatientSex": "Sex",
    "StudyDate": "Study date",
    "ReferringPhysicianName": "Referring physician",
}
_SEX = {"M": "male", "F": "female", "O": "other"}


def _first_dicom(source: Path) -> Path | None:
    if source.is_file():
        return source
    if not source.is_dir():
        return None
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix.lower() == ".dcm":
            return path
        try:
            with path.open("rb") as handle:
                if handle.read(132)[128:] == b"DICM":
                    return path
        except OSError:
            continue
    return None


def _date(value: str) -> str:
    """DICOM DA ``YYYYMMDD`` as ``YYYY-MM-DD`` (other text unchanged)."""
    text = value.strip()
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def _person(value: str) -> str:
    """DICOM PN ``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX`` as ``FAMILY, GIVEN MIDDLE``."""
    parts = [part.strip() for part in str(value).split("=")[0].split("^")]
    family, given = parts[0], " ".join(part for part in parts[1:3] if part)
    return f"{family}, {given}" if family and given else family or given


def patient_details(source: str | Path | None) -> dict[str, str]:
    """The :data:`PATIENT_FIELDS` present in the header of the DICOM series at ``source``.

    Parameters
    ----------
    source : str or Path or None
        A DICOM series folder or file (:attr:`cacscore.io.CTVolume.source`).

    Returns
    -------
    dict of str to str
        Report label -> readable value, only for attributes present and not
        empty; empty for non-DICOM sources or an unreadable header.
    """
    if source is None:
        return {}
    path = _first_dicom(Path(source))
    if path is None or path.suffix.lower() in (".nii", ".gz", ".mha", ".mhd", ".nrrd"):
        return {}
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(PATIENT_FIELDS))
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return {}
    details: dict[str, str] = {}
    for keyword, label in PATIENT_FIELDS.items():
        value = header.get(keyword)
        if value is None or str(value).strip() == "":
            continue
        text = str(value)
        if keyword.endswith("Name"):
            text = _person(text)
        elif keyword.endswith("Date"):
            text = _date(text)
        elif keyword == "PatientSex":
            text = _SEX.get(text.strip().upper(), text.strip())
        details[label] = text.strip()
    return details
