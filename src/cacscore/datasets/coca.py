"""The Stanford COCA gated layout (Coronary Calcium and chest CTs, AIMI).

::

    root/Gated_release_final/patient/<PID>/<series folder>/*.dcm   (root may also be Gated_release_final)
    root/Gated_release_final/calcium_xml/<PID>.xml

Each XML file is an OsiriX ROI export (an Apple plist): ``Images`` is a list
of ``{"ImageIndex", "ROIs"}``; each ROI has a ``Name`` (the artery: "Left
Coronary Artery" is the LM, "Left Anterior Descending Artery", "Left
Circumflex Artery", "Right Coronary Artery"), the polygon ``Point_px``
(``"(x, y)"`` strings: column, row) and the same polygon in patient mm,
``Point_mm`` (``"(x, y, z)"``).

The label is built slice by slice: a polygon is placed with its ``Point_mm``
positions (which carry the slice's z, so the slice is found by position,
whatever the file order) and filled (pixel centres inside the polygon);
only voxels >= 130 HU inside it are calcium, as in the Agatston method the
annotators used. If a polygon has no ``Point_mm`` or its positions do not
fall on a slice of the series, ``ImageIndex`` and ``Point_px`` are used
instead: in the released data ``ImageIndex`` counts slices from the lowest
z upwards (index 36 at z = -227.75 mm, 42 at -209.75 mm for 3 mm slices in
patient 3), which is the volume's own slice order.

COCA ships an XML only for scans with calcium, so a patient without XML
gets an empty label (Agatston 0), noted in ``meta["reference_note"]``.
"""

from __future__ import annotations

import plistlib
import xml.parsers.expat
from dataclasses import dataclass
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
from cacscore.io.volume import CTVolume
from cacscore.labels import UNSPECIFIED
from cacscore.scoring.conventions import AGATSTON_THRESHOLD_HU

GATED = "Gated_release_final"
PATIENTS, XML = "patient", "calcium_xml"
#: Calcium threshold applied inside the polygons, HU (the annotators scored at 130 HU).
THRESHOLD_HU = AGATSTON_THRESHOLD_HU
#: Largest distance (in slices) between a polygon's z and a slice centre to place it on that slice.
SLICE_TOLERANCE = 0.25
#: Largest gap (pixels) between the Point_mm and Point_px polygons of a plain axial series.
PIXEL_TOLERANCE = 1.0
_EXPECTED = f"{PATIENTS}/<PID>/<series>/*.dcm and {XML}/<PID>.xml (directly or under {GATED}/)"


@dataclass(frozen=True)
class CocaRoi:
    """One polygon of a COCA calcium XML.

    Parameters
    ----------
    image_index : int
        ``ImageIndex`` of its slice.
    name : str
        The ROI name (artery).
    artery : int
        Project label code of ``name`` (1 when the name is not an artery).
    points_px : (N, 2) ndarray of float
        Polygon in pixels, ``(x, y)`` = (column, row).
    points_mm : (N, 3) ndarray of float or None
        Polygon in patient mm ``(x, y, z)``, when given.
    """

    image_index: int
    name: str
    artery: int
    points_px: np.ndarray
    points_mm: np.ndarray | None


def _base(root: Path) -> Path | None:
    for base in (root, root / GATED):
        if (base / PATIENTS).is_dir() and (base / XML).is_dir():
            return base
    return None


def detect(root: Path) -> bool:
    """True when ``root`` (or ``root/Gated_release_final``) holds ``patient/`` and ``calcium_xml/``."""
    return _base(root) is not None


def _series_folder(patient: Path) -> Path:
    children = [p for p in patient.iterdir() if p.is_dir()]
    # One series folder per patient in the release; with several, read_volume picks the scoring series.
    return children[0] if len(children) == 1 else patient


def list_cases(root: Path) -> list[CaseRef]:
    """COCA gated patients, in patient-id order.

    Raises
    ------
    InvalidInputError
        If there is no patient folder.
    """
    base = _base(root)
    if base is None:
        raise no_cases_error(root, "coca", _EXPECTED)
    cases = []
    for patient in sorted((base / PATIENTS).iterdir(), key=lambda p: natural_key(p.name)):
        if patient.is_dir():
            xml_path = base / XML / f"{patient.name}.xml"
            cases.append(
                CaseRef(
                    patient.name, "coca", _series_folder(patient), xml_path if xml_path.is_file() else None
                )
            )
    if not cases:
        raise no_cases_error(root, "coca", _EXPECTED)
    return cases


def _numbers(text: object, count: int, where: str) -> list[float]:
    try:
        values = [float(v) for v in str(text).strip().strip("()").split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise InvalidInputError(
            f"{where}: expected a point like '({', '.join(['0.0'] * count)})', got {text!r}"
        )
    return values


def read_calcium_xml(path: str | Path) -> tuple[list[CocaRoi], list[str]]:
    """Parse a COCA calcium XML (OsiriX plist) into polygons.

    Returns
    -------
    rois : list of CocaRoi
        Polygons with at least one point, in file order.
    warnings : list of str
        ROI names that are not arteries (read as unspecified calcium).

    Raises
    ------
    InvalidInputError
        If the file is not a plist of the expected form or a point is malformed.
    """
    from cacscore.labels import parse_artery

    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = plistlib.load(handle)
    except (OSError, plistlib.InvalidFileException, xml.parsers.expat.ExpatError, ValueError) as exc:
        raise InvalidInputError(f"{path}: not a readable OsiriX ROI plist ({exc})") from None
    images = data.get("Images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise InvalidInputError(f"{path}: no 'Images' list; not a COCA calcium XML")
    rois: list[CocaRoi] = []
    warnings: list[str] = []
    for image in images:
        if not isinstance(image, dict) or "ImageIndex" not in image:
            raise InvalidInputError(f"{path}: an 'Images' entry has no ImageIndex")
        index = int(image["ImageIndex"])
        for roi in image.get("ROIs", []):
            where = f"{path}, ImageIndex {index}"
            px = [_numbers(p, 2, where) for p in roi.get("Point_px", [])]
            if not px:
                continue
            mm = [_numbers(p, 3, where) for p in roi.get("Point_mm", [])]
            name = str(roi.get("Name", ""))
            try:
                artery = parse_artery(name, where=where)
            except InvalidInputError:
                artery = UNSPECIFIED
                warnings.append(
                    f"ROI name {name!r} (ImageIndex {index}) is not an artery; read as unspecified"
                )
            rois.append(
                CocaRoi(
                    index,
                    name,
                    artery,
                    np.asarray(px, dtype=float),
                    np.asarray(mm, dtype=float) if len(mm) == len(px) else None,
                )
            )
    return rois, warnings


def _fill_polygon(rows_cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels of a (Y, X) image whose centres lie inside the polygon ``rows_cols`` ((N, 2) row, column)."""
    from matplotlib.path import Path as PolygonPath

    inside = np.zeros(shape, dtype=bool)
    low = np.maximum(np.floor(rows_cols.min(axis=0)).astype(int), 0)
    high = np.minimum(np.ceil(rows_cols.max(axis=0)).astype(int) + 1, shape)
    if np.any(high <= low):
        return inside
    if len(rows_cols) < 3:
        # A polygon needs three corners; one or two points mark their own pixels.
        r, c = np.rint(rows_cols).astype(int).T
        keep = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
        inside[r[keep], c[keep]] = True
        return inside
    rr, cc = np.mgrid[low[0] : high[0], low[1] : high[1]]
    centres = np.stack([cc.ravel(), rr.ravel()], axis=1).astype(float)
    hit = PolygonPath(rows_cols[:, ::-1]).contains_points(centres)
    inside[rr.ravel()[hit], cc.ravel()[hit]] = True
    return inside


def _place(roi: CocaRoi, volume: CTVolume) -> tuple[int, np.ndarray, str | None]:
    """Slice index and (N, 2) row/column polygon of a ROI, and a warning.

    The warning says that the fallback was used, or that mm and px disagree.
    """
    n_slices = volume.shape[0]
    if roi.points_mm is not None:
        zyx = volume.patient_to_index(roi.points_mm)
        z = float(np.median(zyx[:, 0]))
        k = int(np.rint(z))
        if abs(z - k) <= SLICE_TOLERANCE and 0 <= k < n_slices:
            # In a plain axial series the two polygons coincide; a gap means the XML and the
            # series disagree on geometry, which the user should hear about.
            gap = float(np.abs(zyx[:, 1:] - roi.points_px[:, ::-1]).max())
            if np.allclose(volume.direction, np.eye(3)) and gap > PIXEL_TOLERANCE:
                return (
                    k,
                    zyx[:, 1:],
                    (
                        f"ROI at ImageIndex {roi.image_index}: Point_mm and Point_px differ "
                        f"by {gap:.1f} pixels; placed by Point_mm"
                    ),
                )
            return k, zyx[:, 1:], None
    note = (
        f"ROI at ImageIndex {roi.image_index} placed by ImageIndex and Point_px "
        f"({'no Point_mm' if roi.points_mm is None else 'Point_mm off the slice grid'})"
    )
    return roi.image_index, roi.points_px[:, ::-1], note


def rasterize_rois(
    volume: CTVolume, rois: list[CocaRoi], *, threshold_hu: float = THRESHOLD_HU
) -> tuple[np.ndarray, list[str]]:
    """Label mask of COCA polygons: voxels >= ``threshold_hu`` inside each polygon get its artery.

    Parameters
    ----------
    volume : CTVolume
        The patient's CT.
    rois : list of CocaRoi
        From :func:`read_calcium_xml`.
    threshold_hu : float
        Calcium threshold, HU.

    Returns
    -------
    mask : (Z, Y, X) ndarray of uint8
        Project label codes.
    warnings : list of str
        ROIs placed by the fallback, whose Point_mm and Point_px disagree, or
        skipped because their slice is outside the volume.
    """
    n_slices, rows, cols = volume.shape
    mask = np.zeros((n_slices, rows, cols), dtype=np.uint8)
    warnings: list[str] = []
    for roi in rois:
        k, polygon, note = _place(roi, volume)
        if note:
            warnings.append(note)
        if not 0 <= k < n_slices:
            warnings.append(f"ROI at ImageIndex {roi.image_index} is outside the {n_slices} slices; skipped")
            continue
        inside = _fill_polygon(polygon, (rows, cols)) & (volume.hu[k] >= threshold_hu)
        mask[k][inside] = roi.artery
    return mask, warnings


def load(ref: CaseRef) -> LoadedCase:
    """Read a COCA gated patient (see :meth:`CaseRef.load`)."""
    volume = read_case_volume(ref)
    meta: dict[str, Any] = case_meta(ref)
    if ref.reference_path is None:
        meta["reference_note"] = (
            "no calcium XML: COCA provides one only for scans with calcium; label is empty"
        )
        return LoadedCase(ref.case_id, volume, np.zeros(volume.hu.shape, dtype=np.uint8), meta)
    rois, warnings = read_calcium_xml(ref.reference_path)
    label, placement = rasterize_rois(volume, rois)
    meta["n_rois"] = len(rois)
    if warnings or placement:
        meta["warnings"] = warnings + placement
    return LoadedCase(ref.case_id, volume, label, meta)
