"""Readers for calcium-scoring datasets: phantom cohorts and real public layouts.

Every layout gives the same thing: a sorted list of cheap :class:`CaseRef`
(paths only) whose :meth:`CaseRef.load` returns a :class:`LoadedCase` with
the CT volume and its reference label mask in the project's codes (0
background, 1 unspecified, 2 LM, 3 LAD, 4 LCX, 5 RCA) on the volume's grid.

Layouts (see each module's docstring and ``docs/datasets.md``):

``phantom``
    Cohorts written by ``cacscore phantom`` (``cases.csv`` + case folders).
``nnunet``
    nnU-Net raw datasets (``dataset.json``, ``imagesTr/``, ``labelsTr/``).
``coca``
    Stanford COCA gated (DICOM + OsiriX calcium XML polygons).
``orcascore``
    orCaScore challenge (``<ID>CTI.mhd`` + ``<ID>R.mhd``).
``generic``
    Volumes with label masks or point annotations, flat or one folder per case.

Examples
--------
>>> from cacscore.datasets import list_cases  # doctest: +SKIP
>>> for ref in list_cases("cohort/"):  # doctest: +SKIP
...     case = ref.load()
...     print(case.case_id, case.volume.shape, case.label.max())
"""

from __future__ import annotations

import importlib
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from cacscore.datasets.base import (
    LAYOUTS,
    MASK_LABELS,
    UNKNOWN,
    CaseRef,
    Layout,
    LoadedCase,
    check_mask_labels,
)
from cacscore.errors import InvalidInputError


def _module(layout: str) -> Any:
    return importlib.import_module(f"cacscore.datasets.{layout}")


def _check_root(root: str | Path) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise InvalidInputError(
            f"{path}: dataset folder not found" if not path.exists() else f"{path}: not a folder"
        )
    return path


def detect_layout(root: str | Path) -> str:
    """Name of the layout of the dataset folder ``root``.

    Layouts are tried from the most specific marker to the least: phantom
    (``cases.csv``/``generation.json``), nnunet (``dataset.json`` +
    ``imagesTr/``), coca (``patient/`` + ``calcium_xml/``), orcascore
    (``*CTI.mhd``), generic (``images/`` or case folders with ``image*``).

    Raises
    ------
    InvalidInputError
        If ``root`` is not a folder or matches no layout.
    """
    path = _check_root(root)
    for layout in LAYOUTS:
        if _module(layout).detect(path):
            return layout
    raise InvalidInputError(
        f"{path}: not a known dataset layout; expected a phantom cohort (cases.csv), an nnU-Net raw dataset "
        "(dataset.json, imagesTr/), COCA (patient/, calcium_xml/), orCaScore (*CTI.mhd) or a generic folder "
        "(images/ + labels/ or points/, or case folders with image* and label* or points.csv); "
        "see docs/datasets.md"
    )


def list_cases(root: str | Path, *, layout: str = "auto", mask_labels: str | None = None) -> list[CaseRef]:
    """The cases of a dataset, sorted by case id (digit runs compared as numbers).

    Parameters
    ----------
    root : str or Path
        Dataset folder.
    layout : str
        ``"auto"`` (:func:`detect_layout`) or one of ``"phantom"``,
        ``"generic"``, ``"nnunet"``, ``"orcascore"``, ``"coca"``.
    mask_labels : {"project", "orcascore", "binary"}, optional
        The label convention of the dataset's label masks (``--mask-labels``);
        default: the layout's own (see :class:`CaseRef`).

    Returns
    -------
    list of CaseRef
        At least one case; nothing is read but file names (and small manifests).

    Raises
    ------
    InvalidInputError
        Unknown layout or mask convention, missing folder, or no case found.
    """
    check_mask_labels(mask_labels)
    if layout != "auto" and layout not in LAYOUTS:
        raise InvalidInputError(
            f"unknown dataset layout {layout!r}; use 'auto' or one of {', '.join(LAYOUTS)}"
        )
    path = _check_root(root)
    chosen = detect_layout(path) if layout == "auto" else layout
    cases: list[CaseRef] = _module(chosen).list_cases(path)
    duplicates = sorted(case_id for case_id, n in Counter(case.case_id for case in cases).items() if n > 1)
    if duplicates:
        raise InvalidInputError(f"{path}: case ids {duplicates} occur more than once in the {chosen} layout")
    if mask_labels is not None:
        cases = [replace(case, mask_labels=mask_labels) for case in cases]
    return cases


__all__ = [
    "LAYOUTS",
    "MASK_LABELS",
    "UNKNOWN",
    "CaseRef",
    "Layout",
    "LoadedCase",
    "detect_layout",
    "list_cases",
]
