"""Case descriptions shared by every dataset layout, and the helpers they use.

A :class:`CaseRef` is cheap (paths only) so that a dataset of hundreds of
scans can be listed, split and shuffled without reading it; :meth:`CaseRef.load`
reads one case when it is needed.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from cacscore.errors import InvalidInputError
from cacscore.io.image import IMAGE_SUFFIXES, image_suffix
from cacscore.io.volume import CTVolume
from cacscore.labels import MaskConvention

Layout = Literal["phantom", "generic", "nnunet", "orcascore", "coca"]
#: Every layout, in the order :func:`cacscore.datasets.detect_layout` tries them
#: (most specific marker first; "generic" accepts the most and comes last).
LAYOUTS: tuple[str, ...] = ("phantom", "nnunet", "coca", "orcascore", "generic")
#: Suffixes of point-annotation files.
POINT_SUFFIXES: tuple[str, ...] = (".csv", ".json")
#: Label conventions a dataset's masks can be declared in (``--mask-labels``).
MASK_LABELS: tuple[str, ...] = get_args(MaskConvention)
#: Value of a case attribute (``family``, ``generator_version``...) that the dataset does not state.
UNKNOWN = "unknown"


def check_mask_labels(mask_labels: str | None) -> str | None:
    """``mask_labels`` itself when it is None (the layout's own convention) or a known convention.

    Raises
    ------
    InvalidInputError
        Naming the valid conventions.
    """
    if mask_labels is not None and mask_labels not in MASK_LABELS:
        raise InvalidInputError(
            f"unknown mask label convention {mask_labels!r}; use one of {', '.join(MASK_LABELS)} "
            "(project: 0-5 as cacscore writes them; orcascore: 1 LAD incl. LM, 2 LCX, 3 RCA; "
            "binary: any non-zero)"
        )
    return mask_labels


@dataclass(frozen=True)
class CaseRef:
    """One case of a dataset, described by its paths; nothing is read until :meth:`load`.

    Parameters
    ----------
    case_id : str
        Identifier, unique within the dataset (folder or file stem, patient id...).
    layout : {"phantom", "generic", "nnunet", "orcascore", "coca"}
        Layout the case was listed from; decides how :meth:`load` reads it.
    image_path : Path
        The CT: an image file or a DICOM folder.
    reference_path : Path or None
        Label mask, point-annotation file (``.csv``/``.json``) or COCA XML;
        None when the case has no reference.
    mask_labels : {"project", "orcascore", "binary"} or None
        Label convention of a label-mask reference, declared by the user;
        None: the layout's own (project codes; orCaScore's for that layout;
        ``dataset.json``'s label names for nnU-Net). Point files and COCA XML
        are not masks and ignore it.
    attributes : dict of str to str
        What the dataset states about the case's origin, e.g. ``family`` and
        ``generator_version`` of a phantom (evaluation reports figures per
        value); not compared.
    """

    case_id: str
    layout: str
    image_path: Path
    reference_path: Path | None = None
    mask_labels: str | None = None
    attributes: dict[str, str] = field(default_factory=dict, compare=False)

    def attribute(self, name: str) -> str:
        """The value of attribute ``name``, :data:`UNKNOWN` where the dataset does not state it."""
        value = self.attributes.get(name)
        return UNKNOWN if value is None or str(value).strip() == "" else str(value)

    def load(self) -> LoadedCase:
        """Read the volume and the reference as a label mask in project codes on the volume's grid.

        Raises
        ------
        InvalidInputError
            Unknown layout, unreadable volume or reference (the message names the file).
        """
        if self.layout not in LAYOUTS:
            raise InvalidInputError(
                f"case {self.case_id}: unknown layout {self.layout!r}; use one of {LAYOUTS}"
            )
        module = importlib.import_module(f"cacscore.datasets.{self.layout}")
        loaded: LoadedCase = module.load(self)
        return loaded

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` inverts it."""
        return {
            "case_id": self.case_id,
            "layout": self.layout,
            "image_path": str(self.image_path),
            "reference_path": None if self.reference_path is None else str(self.reference_path),
            "mask_labels": self.mask_labels,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseRef:
        """Inverse of :meth:`to_dict`."""
        reference = data.get("reference_path")
        return cls(
            case_id=str(data["case_id"]),
            layout=str(data["layout"]),
            image_path=Path(data["image_path"]),
            reference_path=None if reference is None else Path(reference),
            mask_labels=check_mask_labels(data.get("mask_labels")),
            attributes={str(k): str(v) for k, v in (data.get("attributes") or {}).items()},
        )


@dataclass
class LoadedCase:
    """A case read into memory.

    Parameters
    ----------
    case_id : str
        As in the :class:`CaseRef`.
    volume : CTVolume
        The CT in HU.
    label : (Z, Y, X) ndarray of uint8 or None
        Reference label mask in project codes (0 background, 1 unspecified,
        2 LM, 3 LAD, 4 LCX, 5 RCA) on the volume's grid; None without reference.
    meta : dict
        ``layout``, ``image_path``, ``reference_path`` and layout-specific
        entries: ``annotation_report`` (point annotations), ``reference_category``
        and ``reference_agatston`` where the dataset states them, ``warnings``.
    """

    case_id: str
    volume: CTVolume
    label: np.ndarray | None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label is not None and self.label.shape != self.volume.hu.shape:
            raise InvalidInputError(
                f"case {self.case_id}: label shape {self.label.shape} does not match "
                f"volume shape {self.volume.hu.shape}"
            )


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders ``case_2`` before ``case_10`` (digit runs compare as numbers)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text))


def volume_stem(path: Path) -> str:
    """Name without the image or point-file ending (``a.nii.gz`` -> ``a``); a folder keeps its name."""
    suffix = image_suffix(path)
    if suffix is not None:
        return path.name[: -len(suffix)]
    if path.suffix.lower() in POINT_SUFFIXES:
        return path.stem
    return path.name


def is_volume_file(path: Path) -> bool:
    """True for a NIfTI, MetaImage (header) or NRRD file."""
    return path.is_file() and image_suffix(path) is not None


def is_points_file(path: Path) -> bool:
    """True for a ``.csv`` or ``.json`` file."""
    return path.is_file() and path.suffix.lower() in POINT_SUFFIXES


def read_case_volume(ref: CaseRef) -> CTVolume:
    """Read ``ref.image_path`` with :func:`cacscore.io.read_volume` (imported here to keep listing cheap)."""
    from cacscore.io import read_volume

    return read_volume(ref.image_path)


def load_reference(
    ref: CaseRef,
    volume: CTVolume,
    *,
    convention: MaskConvention = "project",
    reference_category: str | None = None,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Read a label mask or build one from point annotations.

    Parameters
    ----------
    ref : CaseRef
        The case; ``ref.reference_path`` is a label image, a points file or None.
    volume : CTVolume
        The case's CT (the mask must lie on its grid).
    convention : {"project", "orcascore", "binary"}
        The layout's own label convention of a label image; the convention the
        user declared for the case (``ref.mask_labels``) takes precedence.
    reference_category : str, optional
        Annotated risk category, compared with the mask built from points;
        by default the category a JSON points file states, if any.

    Returns
    -------
    label : (Z, Y, X) ndarray of uint8 or None
    meta : dict
        ``annotation_report`` (a dict) when the reference was points.
    """
    from cacscore.annotations import mask_from_points, read_annotated_category, read_points
    from cacscore.io import read_mask

    path = ref.reference_path
    if path is None:
        return None, {}
    if path.suffix.lower() in POINT_SUFFIXES:
        category = reference_category or read_annotated_category(path)
        mask, report = mask_from_points(volume, read_points(path), reference_category=category)
        return mask, {"annotation_report": report.to_dict()}
    chosen: Any = ref.mask_labels or convention
    return read_mask(path, volume, chosen), {}


def case_meta(ref: CaseRef, **extra: Any) -> dict[str, Any]:
    """The meta entries every layout sets, plus ``extra``."""
    return {
        "layout": ref.layout,
        "image_path": str(ref.image_path),
        "reference_path": None if ref.reference_path is None else str(ref.reference_path),
        **extra,
    }


def no_cases_error(root: Path, layout: str, expected: str) -> InvalidInputError:
    """The error for a folder in which a layout finds nothing."""
    return InvalidInputError(f"{root}: no cases found in the {layout} layout (expected {expected})")


__all__ = [
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "MASK_LABELS",
    "UNKNOWN",
    "CaseRef",
    "Layout",
    "LoadedCase",
    "case_meta",
    "check_mask_labels",
    "is_points_file",
    "is_volume_file",
    "load_reference",
    "natural_key",
    "no_cases_error",
    "read_case_volume",
    "volume_stem",
]
