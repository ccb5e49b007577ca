"""The phantom cohort layout written by ``cacscore phantom``.

::

    OUT/cases.csv                 one row per complete case (case_id, image, label, points, reference, ...)
    OUT/generation.json
    OUT/case_0000/image/          DICOM series, or image.nii.gz / image.mha
    OUT/case_0000/label.nii.gz    reference label mask (project codes), or label.mha
    OUT/case_0000/points.csv      point annotations (x_mm, y_mm, z_mm, artery)
    OUT/case_0000/reference.json  score report of the reference (written last)

Cases come from ``cases.csv``; while a generation is still running (no
``cases.csv`` yet) the case folders that hold ``reference.json`` are listed.
The reference is the label mask, or the points when a case has no mask.

Each case's origin (:data:`ATTRIBUTES`: the generator ``family`` and
``generator_version``) is taken from its ``cases.csv`` row, else its
``truth.json``, else ``generation.json``; ``cacscore evaluate`` reports
figures per value. A family stated nowhere is ``"classic"`` (cohorts written
before a second family existed, as ``cacscore phantom`` reads them); another
value stated nowhere is ``"unknown"``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from cacscore.datasets.base import (
    CaseRef,
    LoadedCase,
    case_meta,
    is_volume_file,
    load_reference,
    natural_key,
    no_cases_error,
    read_case_volume,
)
from cacscore.errors import InvalidInputError

MANIFEST = "cases.csv"
SETTINGS = "generation.json"
COMPLETE_MARKER = "reference.json"
_IMAGE_NAMES = ("image", "image.nii.gz", "image.mha", "image.nii", "image.mhd", "image.nrrd")
_LABEL_NAMES = ("label.nii.gz", "label.mha", "label.nii", "label.mhd", "label.nrrd")
_EXPECTED = f"{MANIFEST} or {SETTINGS} next to case_*/ folders holding image and {COMPLETE_MARKER}"
TRUTH = "truth.json"
#: Case attributes read from the cohort's metadata (see the module docstring).
ATTRIBUTES: tuple[str, ...] = ("family", "generator_version")
#: Family of a cohort that names none (as :mod:`cacscore.phantom.cohort` reads such a cohort).
DEFAULT_FAMILY = "classic"


def _json_object(path: Path) -> dict[str, object]:
    """A small JSON file's top-level object, or {} when it is missing or unreadable (metadata is optional)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _attributes(
    root: Path, case_id: str, row: dict[str, str] | None, cohort: dict[str, object]
) -> dict[str, str]:
    found: dict[str, str] = {}
    truth: dict[str, object] | None = None
    for name in ATTRIBUTES:
        value: object = (row or {}).get(name)
        if value in (None, ""):
            if truth is None:
                truth = _json_object(root / case_id / TRUTH)
            value = truth.get(name)
        if value in (None, ""):
            value = cohort.get(name)
        if value not in (None, ""):
            found[name] = str(value)
    found.setdefault("family", DEFAULT_FAMILY)
    return found


def detect(root: Path) -> bool:
    """True when ``root`` holds ``cases.csv`` or ``generation.json``."""
    return (root / MANIFEST).is_file() or (root / SETTINGS).is_file()


def _resolve(root: Path, case_id: str, value: str | None) -> Path | None:
    if not value:
        return None
    for base in (root, root / case_id):
        candidate = base / value
        if candidate.exists():
            return candidate
    return None


def _from_manifest(root: Path) -> list[CaseRef]:
    path = root / MANIFEST
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: cannot read the case list ({exc})") from None
    cohort = _json_object(root / SETTINGS)
    cases = []
    for number, row in enumerate(rows, start=2):
        case_id = (row.get("case_id") or "").strip()
        if not case_id or not row.get("image"):
            raise InvalidInputError(f"{path}, row {number}: case_id and image are required")
        image = _resolve(root, case_id, row["image"])
        if image is None:
            raise InvalidInputError(f"{path}, row {number}: image {row['image']!r} of {case_id} not found")
        reference = _resolve(root, case_id, row.get("label")) or _resolve(root, case_id, row.get("points"))
        cases.append(
            CaseRef(case_id, "phantom", image, reference, attributes=_attributes(root, case_id, row, cohort))
        )
    return cases


def _first(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / name for name in names if (folder / name).exists()), None)


def _from_folders(root: Path) -> list[CaseRef]:
    cohort = _json_object(root / SETTINGS)
    cases = []
    for folder in sorted(root.glob("case_*"), key=lambda p: natural_key(p.name)):
        image = _first(folder, _IMAGE_NAMES)
        if not (folder / COMPLETE_MARKER).is_file() or image is None:
            continue
        if image.is_file() and not is_volume_file(image):
            continue
        reference = _first(folder, _LABEL_NAMES) or _first(folder, ("points.csv", "points.json"))
        cases.append(
            CaseRef(
                folder.name,
                "phantom",
                image,
                reference,
                attributes=_attributes(root, folder.name, None, cohort),
            )
        )
    return cases


def list_cases(root: Path) -> list[CaseRef]:
    """Cases of a phantom cohort, in case-id order.

    Raises
    ------
    InvalidInputError
        Unreadable ``cases.csv``, a row without case_id/image or whose image
        is missing, or no case at all.
    """
    cases = _from_manifest(root) if (root / MANIFEST).is_file() else _from_folders(root)
    if not cases:
        raise no_cases_error(root, "phantom", _EXPECTED)
    return sorted(cases, key=lambda case: natural_key(case.case_id))


def _reference_score(image_path: Path) -> dict[str, object]:
    """Agatston score and category stated by the case's ``reference.json``, if present."""
    path = image_path.parent / COMPLETE_MARKER
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path}: unreadable reference report ({exc})") from None
    return {
        "reference_agatston": data.get("agatston"),
        "reference_category": data.get("risk_category"),
    }


def load(ref: CaseRef) -> LoadedCase:
    """Read a phantom case (see :meth:`CaseRef.load`)."""
    volume = read_case_volume(ref)
    stated = _reference_score(ref.image_path)
    category = stated.get("reference_category")
    label, extra = load_reference(
        ref, volume, reference_category=category if isinstance(category, str) else None
    )
    return LoadedCase(ref.case_id, volume, label, case_meta(ref, **stated, **extra))
