"""The nnU-Net raw dataset layout (v1 and v2 ``dataset.json``).

::

    root/dataset.json             "labels", "file_ending" (default .nii.gz), "channel_names"/"modality"
    root/imagesTr/CASE_0000.nii.gz
    root/labelsTr/CASE.nii.gz

Only channel 0000 is read (the CT). The label values are mapped to project
codes through the names in ``dataset.json``'s ``"labels"`` (v2:
``{"background": 0, "LAD": 1}``, v1: ``{"0": "background", "1": "LAD"}``):
artery names (LM, LAD, LCX, RCA and the spellings of
:data:`cacscore.labels.ARTERY_ALIASES`) keep their artery, calcium names
("calcium", "CAC", "coronary calcium") become unspecified calcium (1), other
names (e.g. "aortic valve") become background with a warning in ``meta``.
When no name is recognised at all (e.g. ``{"background": 0, "foreground": 1}``)
every non-zero voxel is calcium of unspecified artery. Region-based labels
(lists of values) are read as binary too. A convention declared with
``--mask-labels`` (``CaseRef.mask_labels``) replaces the names: e.g. masks
stored as orCaScore codes (1 LAD, 2 LCX, 3 RCA) under names that say nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cacscore.datasets.base import (
    CaseRef,
    LoadedCase,
    case_meta,
    natural_key,
    no_cases_error,
    read_case_volume,
)
from cacscore.errors import InvalidInputError
from cacscore.labels import ARTERY_NAMES, BACKGROUND

DATASET_JSON = "dataset.json"
IMAGES, LABELS = "imagesTr", "labelsTr"
CHANNEL = "_0000"
_EXPECTED = f"{DATASET_JSON}, {IMAGES}/CASE{CHANNEL}<file_ending> and {LABELS}/CASE<file_ending>"


def detect(root: Path) -> bool:
    """True when ``root`` holds ``dataset.json`` and ``imagesTr/``."""
    return (root / DATASET_JSON).is_file() and (root / IMAGES).is_dir()


def read_dataset_json(root: Path) -> dict[str, Any]:
    """The parsed ``dataset.json``.

    Raises
    ------
    InvalidInputError
        If it is missing, not JSON or not an object.
    """
    path = root / DATASET_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path}: cannot read nnU-Net dataset description ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: expected a JSON object")
    return data


def _file_ending(data: dict[str, Any]) -> str:
    ending = data.get("file_ending", ".nii.gz")
    return str(ending) if str(ending).startswith(".") else f".{ending}"


def list_cases(root: Path) -> list[CaseRef]:
    """Training cases (``imagesTr``/``labelsTr``) of an nnU-Net raw dataset, in case-id order.

    Raises
    ------
    InvalidInputError
        Unreadable ``dataset.json`` or no case.
    """
    ending = _file_ending(read_dataset_json(root))
    suffix = CHANNEL + ending
    cases = []
    images = root / IMAGES
    for image in sorted(images.iterdir() if images.is_dir() else [], key=lambda p: natural_key(p.name)):
        if not image.name.endswith(suffix):
            continue
        case_id = image.name[: -len(suffix)]
        label = root / LABELS / f"{case_id}{ending}"
        cases.append(CaseRef(case_id, "nnunet", image, label if label.is_file() else None))
    if not cases:
        raise no_cases_error(root, "nnunet", _EXPECTED)
    return cases


def label_table(labels: Any) -> tuple[dict[int, int] | None, list[str]]:
    """Map nnU-Net label values to project codes by their names.

    Parameters
    ----------
    labels : dict
        ``dataset.json``'s ``"labels"`` (v1 or v2 form).

    Returns
    -------
    table : dict of int to int, or None
        Stored value -> project code; None means "read as binary".
    warnings : list of str
        Names that were mapped to background.

    Examples
    --------
    >>> label_table({"background": 0, "LAD": 1, "RCA": 2})
    ({0: 0, 1: 3, 2: 5}, [])
    >>> label_table({"0": "background", "1": "foreground"})
    (None, [])
    """
    from cacscore.labels import parse_artery

    if not isinstance(labels, dict) or not labels:
        return None, []
    pairs: list[tuple[int, str]] = []
    for key, value in labels.items():
        if isinstance(value, int) and not isinstance(value, bool):
            pairs.append((value, str(key)))
        elif str(key).isdigit():
            pairs.append((int(key), str(value)))
        else:
            return None, []  # region-based labels (lists of values)
    table: dict[int, int] = {}
    unknown: list[str] = []
    for value, name in pairs:
        if value == BACKGROUND:
            table[value] = BACKGROUND
            continue
        try:
            table[value] = parse_artery(name)
        except InvalidInputError:
            unknown.append(name)
            table[value] = BACKGROUND
    if len(unknown) == len([v for v, _ in pairs if v != BACKGROUND]):
        return None, []
    warnings = [f"label {name!r} is not coronary calcium and was read as background" for name in unknown]
    return table, warnings


def load(ref: CaseRef) -> LoadedCase:
    """Read an nnU-Net case (see :meth:`CaseRef.load`)."""
    from cacscore.io import read_mask

    volume = read_case_volume(ref)
    root = ref.image_path.parent.parent
    table, warnings = label_table(read_dataset_json(root).get("labels"))
    label = None
    if ref.reference_path is not None and ref.mask_labels is not None:
        declared: Any = ref.mask_labels
        label = read_mask(ref.reference_path, volume, declared)
        table, warnings = None, []
    elif ref.reference_path is not None:
        if table is None:
            label = read_mask(ref.reference_path, volume, "binary")
        else:
            if max(table) > max(ARTERY_NAMES):
                raise InvalidInputError(
                    f"{root / DATASET_JSON}: label values above {max(ARTERY_NAMES)} are not supported "
                    f"(got {sorted(table)})"
                )
            # Values 0-5 pass the project convention unchanged; the table then renames them.
            raw = read_mask(ref.reference_path, volume, "project")
            unknown = sorted(set(np.unique(raw).tolist()) - set(table))
            if unknown:
                raise InvalidInputError(
                    f"{ref.reference_path}: label values {unknown} are not declared in {root / DATASET_JSON}"
                )
            lut = np.zeros(max(ARTERY_NAMES) + 1, dtype=np.uint8)
            for value, code in table.items():
                lut[value] = code
            label = lut[raw]
    meta = case_meta(
        ref,
        label_table=None if table is None else {str(k): v for k, v in table.items()},
        mask_labels=ref.mask_labels,
    )
    if warnings:
        meta["warnings"] = warnings
    return LoadedCase(ref.case_id, volume, label, meta)


__all__ = ["detect", "label_table", "list_cases", "load", "read_dataset_json"]
