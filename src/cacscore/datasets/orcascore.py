"""The orCaScore challenge layout (Wolterink et al., Med Phys 2016).

The challenge ships MetaImage files named by vendor and patient::

    Training Set/Images/TRV1P1CTI.mhd               non-contrast calcium-scoring CT (+ .raw)
    Training Set/Images/TRV1P1CTAI.mhd              the CTA of the same patient (not read)
    Training Set/Reference standard/TRV1P1R.mhd     reference labels: 1 LAD (incl. LM), 2 LCX, 3 RCA
    Test Set/Images/TEV1P1CTI.mhd ...

Any folder up to four levels below ``root`` may hold them; an image ``<ID>CTI.mhd`` is paired
with the reference ``<ID>R.mhd`` found anywhere below ``root`` (file names
compared case-insensitively). The case id is ``<ID>`` (e.g. ``TRV1P1``).
The reference is converted to project codes (LAD 3, LCX 4, RCA 5); orCaScore
does not separate the LM, so LM calcium is LAD here. ``--mask-labels`` overrides the
convention (e.g. ``binary`` for masks that do not name the artery).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
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
#: How deep below the dataset root the files are looked for ("orCaScore/Training Set/Images/x.mhd" is 3),
#: so that detecting the layout of a large DICOM tree stays cheap.
MAX_DEPTH = 4
_EXPECTED = "MetaImage files <ID>CTI.mhd with references <ID>R.mhd (e.g. TRV1P1CTI.mhd, TRV1P1R.mhd)"


def _iter_mhd(root: Path) -> Iterator[Path]:
    """MetaImage headers at most :data:`MAX_DEPTH` folders below ``root``, lazily (detection stops early)."""
    for folder, dirs, files in os.walk(root):
        depth = len(Path(folder).relative_to(root).parts)
        if depth >= MAX_DEPTH:
            dirs[:] = []
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(".mhd"):
                yield Path(folder) / name


def detect(root: Path) -> bool:
    """True when a file named ``*CTI.mhd`` lies at most :data:`MAX_DEPTH` folders below ``root``."""
    return any(p.name.lower().endswith(IMAGE_END) for p in _iter_mhd(root))


def list_cases(root: Path) -> list[CaseRef]:
    """orCaScore cases below ``root``, in case-id order (cases without reference included).

    Raises
    ------
    InvalidInputError
        If no ``*CTI.mhd`` image is found.
    """
    files = list(_iter_mhd(root))
    references = {
        p.name[: -len(REFERENCE_END)].lower(): p for p in files if p.name.lower().endswith(REFERENCE_END)
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
