"""The generic layout: volumes with label masks or point annotations.

Two arrangements are read, whichever ``root`` holds:

Flat folders, paired by name (``a.nii.gz`` <-> ``a.nii.gz`` / ``a.csv``)::

    root/images/CASE.nii.gz       or .nii, .mha, .mhd, .nrrd, or a DICOM folder CASE/
    root/labels/CASE.nii.gz       label masks in project codes (0-5; a 0/1 mask is "unspecified")
    root/points/CASE.csv          or CASE.json: point annotations (see cacscore.annotations)

One folder per case::

    root/CASE/image.nii.gz        any name starting with "image": a volume file or a DICOM folder
    root/CASE/label.nii.gz        any name starting with "label"
    root/CASE/points.csv          or points.json (used when there is no label)

A case without label or points is listed with no reference. Label masks
are read in the project convention (codes 0-5, so a binary 0/1 mask is
calcium of unspecified artery) unless another is declared with
``--mask-labels orcascore`` (1 LAD incl. LM, 2 LCX, 3 RCA) or ``binary``
(any non-zero value is calcium of unspecified artery).
"""

from __future__ import annotations

from pathlib import Path

from cacscore.datasets.base import (
    CaseRef,
    LoadedCase,
    case_meta,
    is_points_file,
    is_volume_file,
    load_reference,
    natural_key,
    no_cases_error,
    read_case_volume,
    volume_stem,
)

IMAGES, LABELS, POINTS = "images", "labels", "points"
_EXPECTED = (
    "images/ with labels/ or points/ paired by name, or case folders holding image* and label* "
    "or points.csv|json"
)


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir(), key=lambda p: natural_key(p.name)) if folder.is_dir() else []


def _case_image(folder: Path) -> Path | None:
    for entry in _entries(folder):
        if entry.name.lower().startswith("image") and (entry.is_dir() or is_volume_file(entry)):
            return entry
    return None


def _case_reference(folder: Path) -> Path | None:
    entries = _entries(folder)
    label = next((e for e in entries if e.name.lower().startswith("label") and is_volume_file(e)), None)
    points = next((e for e in entries if e.name.lower().startswith("points") and is_points_file(e)), None)
    return label or points


def _flat_cases(root: Path) -> list[CaseRef]:
    references: dict[str, Path] = {}
    # Labels listed last win, so a case with both a mask and points uses the mask.
    for entry in _entries(root / POINTS):
        if is_points_file(entry):
            references[volume_stem(entry)] = entry
    for entry in _entries(root / LABELS):
        if is_volume_file(entry):
            references[volume_stem(entry)] = entry
    cases = []
    for entry in _entries(root / IMAGES):
        if entry.is_dir() or is_volume_file(entry):
            stem = volume_stem(entry)
            cases.append(CaseRef(stem, "generic", entry, references.get(stem)))
    return cases


def _folder_cases(root: Path) -> list[CaseRef]:
    cases = []
    for folder in _entries(root):
        image = _case_image(folder) if folder.is_dir() else None
        if image is not None:
            cases.append(CaseRef(folder.name, "generic", image, _case_reference(folder)))
    return cases


def detect(root: Path) -> bool:
    """True when ``root`` has ``images/`` or at least one case folder with an ``image*`` entry."""
    return (root / IMAGES).is_dir() or bool(_folder_cases(root))


def list_cases(root: Path) -> list[CaseRef]:
    """Cases of a generic dataset, in case-id order.

    Raises
    ------
    InvalidInputError
        If no case is found.
    """
    cases = _flat_cases(root) if (root / IMAGES).is_dir() else _folder_cases(root)
    if not cases:
        raise no_cases_error(root, "generic", _EXPECTED)
    return sorted(cases, key=lambda case: natural_key(case.case_id))


def load(ref: CaseRef) -> LoadedCase:
    """Read a generic case (see :meth:`CaseRef.load`)."""
    volume = read_case_volume(ref)
    label, extra = load_reference(ref, volume)
    return LoadedCase(ref.case_id, volume, label, case_meta(ref, **extra))
