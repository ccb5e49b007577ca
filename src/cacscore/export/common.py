"""What every DICOM export shares: the source study's identifiers and cacscore's equipment."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

import cacscore
from cacscore.errors import InvalidInputError

if TYPE_CHECKING:
    from cacscore.io.volume import CTVolume, DicomSource

MANUFACTURER = "cacscore"
MODEL_NAME = "cacscore"
#: highdicom needs a device serial number; cacscore is software without one.
SERIAL_NUMBER = "none"

#: Patient and General Study module attributes copied from the source (type 2: present, maybe empty).
STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


@dataclass(frozen=True)
class Equipment:
    """Identification of the software that writes the exports (General Equipment module)."""

    manufacturer: str = MANUFACTURER
    model_name: str = MODEL_NAME
    software_version: str = cacscore.__version__


def require_dicom_source(volume: CTVolume) -> DicomSource:
    """The volume's DICOM source, or an error naming the volume when it was not read from DICOM.

    Raises
    ------
    InvalidInputError
        If the volume has no DICOM source (read from NIfTI/MetaImage/NRRD or built in memory).
    """
    if volume.dicom is None or not volume.dicom.images or not volume.dicom.headers:
        raise InvalidInputError(f"{volume.source or 'volume'}: DICOM outputs need a volume read from DICOM")
    return volume.dicom


def first_header(volume: CTVolume) -> Dataset:
    """The header of the first source file (patient, study and frame of reference attributes)."""
    header = require_dicom_source(volume).headers[0]
    if not isinstance(header, Dataset):
        raise InvalidInputError(f"{volume.source or 'volume'}: DICOM source header is not a pydicom Dataset")
    return header


def study_attributes(header: Dataset) -> Dataset:
    """A dataset holding the source's Patient and General Study attributes (empty when absent)."""
    out = Dataset()
    for keyword in STUDY_KEYWORDS:
        setattr(out, keyword, header.get(keyword, ""))
    return out


def completed_headers(volume: CTVolume) -> list[Dataset]:
    """Copies of the source headers with the type 2 study attributes present (empty when missing).

    highdicom reads them from its source images; some writers leave them out (e.g. AccessionNumber).
    """
    import copy

    headers = []
    for header in require_dicom_source(volume).headers:
        if not isinstance(header, Dataset):
            raise InvalidInputError(
                f"{volume.source or 'volume'}: DICOM source header is not a pydicom Dataset"
            )
        completed = copy.deepcopy(header)
        for keyword in STUDY_KEYWORDS:
            if keyword not in completed:
                setattr(completed, keyword, "")
        headers.append(completed)
    return headers


@contextmanager
def source_names_as_they_are() -> Iterator[None]:
    """Silence highdicom's doubt about single-component person names copied from the source.

    The source's PatientName, ReferringPhysicianName... travel unchanged (never rewrite patient data);
    a name such as "Anonymous" is the source's choice, not a problem of the export.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"The string .* is unlikely to represent", category=UserWarning
        )
        yield


def person_name(text: str) -> str:
    """A person's name as typed (e.g. in the review app) as a DICOM PN value.

    A name already in DICOM form (``Doe^Jane``) is kept. Free text (``Jane Doe``, ``Dr J. Doe``) cannot
    be split into family and given names safely, so it becomes the family name component as typed, with
    the trailing caret that marks a single-component name (PS3.5 6.2.1.2). Backslashes and ``=`` (value
    and component-group separators) and control characters are replaced by spaces; the result fits the
    64 characters of a component group.

    Examples
    --------
    >>> person_name("Jane Doe"), person_name("Doe^Jane")
    ('Jane Doe^', 'Doe^Jane')
    """
    cleaned = "".join(" " if c in "\\=" or ord(c) < 32 else c for c in str(text))
    cleaned = " ".join(cleaned.split())
    if "^" in cleaned:
        return cleaned[:64]
    return cleaned[:63] + "^"


def now() -> tuple[str, str]:
    """Current date and time as DICOM DA and TM strings."""
    moment = datetime.now()
    return moment.strftime("%Y%m%d"), moment.strftime("%H%M%S")
