"""Reading CT series from a folder of DICOM files (pydicom).

Headers are read first, without pixel data, for every DICOM file under the
folder (sub-folders included; DICOMDIR and non-DICOM files are skipped).
Files are grouped by SeriesInstanceUID, one series is chosen (the one named,
or the one that looks most like a calcium-scoring series), its slices are
sorted by position along the slice normal (never by file name or
InstanceNumber) and checked, and only then are its pixels decoded.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from cacscore.errors import DicomReadError
from cacscore.io.checks import (
    AGATSTON_THICKNESS_MM,
    ANGLE_TOLERANCE_DEG,
    add_quality_warnings,
    axis_angle_deg,
    canonical_orientation,
)
from cacscore.io.volume import CTVolume

#: A slice step longer than this many median increments means missing slices.
GAP_FACTOR = 1.5
#: Slice steps may differ from the median by this much (mm, or fraction of it, whichever is larger).
SPACING_TOLERANCE_MM = 0.01
SPACING_TOLERANCE_FRACTION = 0.01

_NATIVE_SYNTAXES = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
_Z_AXIS = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class SeriesInfo:
    """Summary of one DICOM series found in a folder.

    Attributes
    ----------
    series_uid, study_uid : str
        SeriesInstanceUID and StudyInstanceUID.
    modality, description : str
        Modality (``"CT"``, ``"MR"``...) and SeriesDescription.
    n_slices : int
        Number of image files in the series.
    slice_thickness_mm : float or None
        SliceThickness of the first file.
    kvp : float or None
        KVP of the first file.
    rows, cols : int
        Image size of the first file.
    image_type : str
        ImageType values joined by ``\\``.
    orientation : str
        ``"axial"``, ``"coronal"``, ``"sagittal"``, ``"oblique"`` or ``"unknown"``.
    is_candidate : bool
        Whether the series can be read as a CT volume for calcium scoring.
    reason : str
        Why it is or is not a candidate.
    """

    series_uid: str
    study_uid: str
    modality: str
    description: str
    n_slices: int
    slice_thickness_mm: float | None
    kvp: float | None
    rows: int
    cols: int
    image_type: str
    orientation: str
    is_candidate: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary of the fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeriesInfo:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclass
class _Slice:
    path: Path
    header: Dataset


def _dcmread(path: Path, *, stop_before_pixels: bool = False) -> Dataset:
    """``pydicom.dcmread`` that turns read failures (and pydicom's end-of-file warning) into one-line errors.

    pydicom's other warnings (unknown character sets, odd VR values) are
    common in scanner exports and harmless here, so they are not shown.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
            raise DicomReadError(f"{path}: corrupt DICOM file: {exc}") from None
    for record in caught:
        if "End of file" in str(record.message):
            raise DicomReadError(f"{path}: corrupt DICOM file: {record.message}")
    return ds


def _is_dicom_file(path: Path) -> bool:
    if path.name.upper() == "DICOMDIR":
        return False
    try:
        with path.open("rb") as handle:
            preamble = handle.read(132)
    except OSError:
        return False
    return len(preamble) == 132 and preamble[128:] == b"DICM"


def _scan(folder: Path) -> list[_Slice]:
    """Headers (no pixel data) of every DICOM file under ``folder``, sorted by path."""
    if not folder.exists():
        raise DicomReadError(f"{folder}: folder not found")
    if not folder.is_dir():
        raise DicomReadError(f"{folder}: not a folder")
    slices = []
    try:
        paths = sorted(p for p in folder.rglob("*") if p.is_file())
    except OSError as exc:
        raise DicomReadError(f"{folder}: cannot list folder: {exc.strerror}") from None
    for path in paths:
        if not _is_dicom_file(path):
            continue
        header = _dcmread(path, stop_before_pixels=True)
        if header.get("SOPClassUID") == "1.2.840.10008.1.3.10":
            continue  # a DICOMDIR under another name
        if "SeriesInstanceUID" not in header:
            # pydicom stops quietly at the end of a truncated file; every DICOM image has this UID.
            raise DicomReadError(f"{path}: corrupt DICOM file: truncated or without SeriesInstanceUID")
        slices.append(_Slice(path, header))
    if not slices:
        raise DicomReadError(f"{folder}: no DICOM files found")
    return slices


def _float(header: Dataset, keyword: str) -> float | None:
    value = header.get(keyword)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _normal(header: Dataset) -> np.ndarray | None:
    iop = header.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return None
    normal = np.cross(np.asarray(iop[:3], dtype=float), np.asarray(iop[3:], dtype=float))
    return normal if np.linalg.norm(normal) > 1e-6 else None


def _normal_angle_deg(header: Dataset) -> float:
    normal = _normal(header)
    return float("nan") if normal is None else axis_angle_deg(normal, _Z_AXIS)


def _orientation_name(header: Dataset) -> str:
    normal = _normal(header)
    if normal is None:
        return "unknown"
    for name, axis in (("sagittal", 0), ("coronal", 1), ("axial", 2)):
        unit = np.zeros(3)
        unit[axis] = 1.0
        if axis_angle_deg(normal, unit) <= ANGLE_TOLERANCE_DEG:
            return name
    return "oblique"


def _series_info(uid: str, slices: list[_Slice]) -> SeriesInfo:
    first = slices[0].header
    modality = str(first.get("Modality", ""))
    image_type = "\\".join(str(v) for v in (first.get("ImageType") or []))
    orientation = _orientation_name(first)
    frames = int(first.get("NumberOfFrames", 1) or 1)
    samples = int(first.get("SamplesPerPixel", 1) or 1)
    if modality != "CT":
        reason = f"modality {modality or 'missing'}, not CT"
    elif "LOCALIZER" in image_type.upper():
        reason = "localizer (scout) images"
    elif samples != 1:
        reason = f"{samples} samples per pixel (RGB), not a grey-scale CT image"
    elif frames > 1:
        reason = "multi-frame (enhanced) CT, not supported"
    elif orientation != "axial":
        reason = f"{orientation} slices, not axial"
        if orientation != "unknown":
            reason += f" (slice normal {_normal_angle_deg(first):.1f} degrees from the head-feet axis)"
    elif len(slices) < 2:
        reason = "a single slice"
    else:
        reason = "axial CT series"
    return SeriesInfo(
        series_uid=uid,
        study_uid=str(first.get("StudyInstanceUID", "")),
        modality=modality,
        description=str(first.get("SeriesDescription", "")),
        n_slices=len(slices),
        slice_thickness_mm=_float(first, "SliceThickness"),
        kvp=_float(first, "KVP"),
        rows=int(first.get("Rows", 0) or 0),
        cols=int(first.get("Columns", 0) or 0),
        image_type=image_type,
        orientation=orientation,
        is_candidate=reason == "axial CT series",
        reason=reason,
    )


def _group(slices: list[_Slice]) -> dict[str, list[_Slice]]:
    groups: dict[str, list[_Slice]] = {}
    for item in slices:
        groups.setdefault(str(item.header.get("SeriesInstanceUID", "")), []).append(item)
    return groups


def _preference(info: SeriesInfo) -> tuple[bool, bool, bool, int]:
    low, high = AGATSTON_THICKNESS_MM
    thickness = info.slice_thickness_mm
    return (
        thickness is not None and low - 1e-3 <= thickness <= high + 1e-3,
        "ORIGINAL" in info.image_type.upper(),
        info.kvp is not None,
        info.n_slices,
    )


def list_series(folder: str | Path) -> list[SeriesInfo]:
    """Describe every DICOM series under ``folder``, the preferred calcium-scoring series first.

    Candidates (axial single-frame grey-scale CT, not a localizer, two or
    more slices) come first, ordered by preference: slice thickness within
    2.5-3 mm, ORIGINAL image type, kVp recorded, then most slices.

    Raises
    ------
    DicomReadError
        Folder missing, holding no DICOM file, or a corrupt DICOM file.
    """
    folder = Path(folder)
    infos = [_series_info(uid, group) for uid, group in _group(_scan(folder)).items()]
    return sorted(infos, key=lambda info: (info.is_candidate, *_preference(info)), reverse=True)


def read_dicom_series(folder: str | Path, *, series_uid: str | None = None) -> CTVolume:
    """Read one CT series from a folder of DICOM files.

    Parameters
    ----------
    folder : str or Path
        Folder searched recursively for DICOM files.
    series_uid : str, optional
        SeriesInstanceUID to read. By default the candidate that
        :func:`list_series` ranks first.

    Returns
    -------
    CTVolume
        HU as int16 ``(z, y, x)``, rescale slope and intercept applied,
        in the canonical orientation (axis 0 head-ward), ``spacing[0]`` the
        slice increment, with kVp, slice thickness and identifiers.

    Raises
    ------
    DicomReadError
        No DICOM or no CT series, unknown ``series_uid``, missing or
        duplicated slices, uneven slice spacing, gantry tilt, non-axial
        orientation, RGB or multi-frame images, differing image sizes,
        corrupt files.

    Warns
    -----
    CacScoreWarning
        kVp other than 120, slice thickness outside 2.5-3 mm, overlapping
        reconstruction.
    """
    folder = Path(folder)
    groups = _group(_scan(folder))
    infos = {uid: _series_info(uid, group) for uid, group in groups.items()}
    if series_uid is not None:
        if series_uid not in groups:
            raise DicomReadError(
                f"{folder}: no series with SeriesInstanceUID {series_uid}; found {', '.join(sorted(groups))}"
            )
        info = infos[series_uid]
        if not info.is_candidate:
            raise DicomReadError(f"{folder}: series {series_uid} cannot be read as CT: {info.reason}")
    else:
        candidates = [info for info in infos.values() if info.is_candidate]
        if not candidates:
            found = "; ".join(f"{info.series_uid or '(no UID)'}: {info.reason}" for info in infos.values())
            raise DicomReadError(f"{folder}: no readable CT series found ({found})")
        info = max(candidates, key=_preference)
    return _read_series(folder, groups[info.series_uid])


def _require(header: Dataset, keyword: str, path: Path) -> Any:
    value = header.get(keyword)
    if value is None or value == "":
        raise DicomReadError(f"{path}: {keyword} is missing")
    return value


def _sorted_slices(slices: list[_Slice]) -> tuple[list[_Slice], np.ndarray, np.ndarray, np.ndarray]:
    """Slices in increasing position along the normal, with row/column/normal unit vectors and positions."""
    first = slices[0]
    iop = np.asarray(_require(first.header, "ImageOrientationPatient", first.path), dtype=float)
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    reference_size = (first.header.get("Rows"), first.header.get("Columns"))
    reference_pixel = np.asarray(_require(first.header, "PixelSpacing", first.path), dtype=float)
    positions = np.empty((len(slices), 3))
    for i, item in enumerate(slices):
        header = item.header
        if not np.allclose(np.asarray(_require(header, "ImageOrientationPatient", item.path), dtype=float), iop,
                           atol=1e-4):
            raise DicomReadError(f"{item.path}: ImageOrientationPatient differs from {first.path.name}'s")
        size = (header.get("Rows"), header.get("Columns"))
        if size != reference_size:
            raise DicomReadError(
                f"{item.path}: image size {size[0]}x{size[1]} differs from {first.path.name}'s "
                f"{reference_size[0]}x{reference_size[1]}"
            )
        if not np.allclose(np.asarray(_require(header, "PixelSpacing", item.path), dtype=float),
                           reference_pixel, atol=1e-4):
            raise DicomReadError(f"{item.path}: PixelSpacing differs from {first.path.name}'s")
        positions[i] = np.asarray(_require(header, "ImagePositionPatient", item.path), dtype=float)
    order = np.argsort(positions @ normal, kind="stable")
    return [slices[i] for i in order], row, col, positions[order]


def _check_spacing(folder: Path, slices: list[_Slice], positions: np.ndarray, normal: np.ndarray) -> float:
    """The slice increment in mm, after checking for duplicates, gaps, uneven spacing and tilt."""
    along = positions @ normal
    steps = np.diff(along)
    duplicated = np.flatnonzero(steps < 1e-3)
    if duplicated.size:
        i = int(duplicated[0])
        raise DicomReadError(
            f"{folder}: duplicated slice position {along[i]:.2f} mm in {slices[i].path.name} and "
            f"{slices[i + 1].path.name} ({duplicated.size} duplicate(s))"
        )
    increment = float(np.median(steps))
    gaps = np.flatnonzero(steps > GAP_FACTOR * increment)
    if gaps.size:
        i = int(gaps[0])
        missing = round(steps[i] / increment) - 1
        raise DicomReadError(
            f"{folder}: missing slices: a {steps[i]:.2f} mm gap between {along[i]:.2f} and {along[i + 1]:.2f} mm "
            f"(files {slices[i].path.name}, {slices[i + 1].path.name}), about {missing} slice(s) missing "
            f"at a {increment:.2f} mm increment"
        )
    deviation = float(np.max(np.abs(steps - increment)))
    if deviation > max(SPACING_TOLERANCE_MM, SPACING_TOLERANCE_FRACTION * increment):
        raise DicomReadError(
            f"{folder}: uneven slice spacing: increments range from {steps.min():.3f} to {steps.max():.3f} mm, "
            f"up to {deviation:.3f} mm from the median {increment:.3f} mm"
        )
    tilt = axis_angle_deg(positions[-1] - positions[0], normal)
    gantry = _float(slices[0].header, "GantryDetectorTilt") or 0.0
    tilt = max(tilt, abs(gantry))
    if tilt > ANGLE_TOLERANCE_DEG:
        raise DicomReadError(
            f"{folder}: gantry tilt of {tilt:.1f} degrees (slices are sheared); resample to an untilted "
            "grid before scoring"
        )
    return increment


def _pixels(path: Path, rows: int, cols: int) -> tuple[np.ndarray, Dataset]:
    """Stored pixel values of one file as an int32-safe ndarray (no rescale) and its full dataset."""
    ds = _dcmread(path)
    if "PixelData" not in ds:
        raise DicomReadError(f"{path}: holds no pixel data")
    bits_allocated = int(ds.get("BitsAllocated", 16))
    bits_stored = int(ds.get("BitsStored", bits_allocated))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax in _NATIVE_SYNTAXES and bits_allocated == 16:
        # Fast path for uncompressed 16-bit data: a view on the bytes, no decoder machinery.
        raw = ds.PixelData
        if len(raw) < rows * cols * 2:
            raise DicomReadError(f"{path}: pixel data truncated ({len(raw)} bytes for {rows}x{cols} pixels)")
        array = np.frombuffer(raw, dtype=np.int16 if signed else np.uint16, count=rows * cols).reshape(rows, cols)
        if bits_stored < 16:
            shift = 16 - bits_stored
            if signed:
                array = (array << shift) >> shift
            else:
                array = array & ((1 << bits_stored) - 1)
        return array, ds
    try:
        array = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - decoders raise many types; all mean "cannot decode this file"
        syntax_name = getattr(syntax, "name", syntax)
        raise DicomReadError(f"{path}: cannot decode pixel data ({syntax_name}): {exc}") from None
    if array.shape != (rows, cols):
        raise DicomReadError(f"{path}: pixel data has shape {array.shape}, expected {rows}x{cols}")
    return array, ds


def _to_hu(array: np.ndarray, ds: Dataset, path: Path) -> np.ndarray:
    if "ModalityLUTSequence" in ds and "RescaleSlope" not in ds:
        from pydicom.pixels import apply_modality_lut

        values = apply_modality_lut(array, ds)
    else:
        slope = _float(ds, "RescaleSlope")
        intercept = _float(ds, "RescaleIntercept")
        slope = 1.0 if slope is None else slope
        intercept = 0.0 if intercept is None else intercept
        if slope == 1.0 and intercept == int(intercept):
            values = array.astype(np.int32) + int(intercept)
        else:
            values = np.rint(array * slope + intercept)
    low, high = values.min(), values.max()
    if low < np.iinfo(np.int16).min or high > np.iinfo(np.int16).max:
        raise DicomReadError(f"{path}: HU values {low:g}..{high:g} after rescale do not fit in int16")
    return values


def _read_series(folder: Path, slices: list[_Slice]) -> CTVolume:
    slices, row, col, positions = _sorted_slices(slices)
    normal = np.cross(row, col)
    increment = _check_spacing(folder, slices, positions, normal)
    first = slices[0].header
    rows, cols = int(first.Rows), int(first.Columns)
    dy, dx = (float(v) for v in first.PixelSpacing)
    hu = np.empty((len(slices), rows, cols), dtype=np.int16)
    for i, item in enumerate(slices):
        array, ds = _pixels(item.path, rows, cols)
        hu[i] = _to_hu(array, ds, item.path)
    volume = CTVolume(
        hu=hu,
        spacing=(increment, dy, dx),
        origin=tuple(positions[0]),  # type: ignore[arg-type]
        direction=np.stack([row, col, normal], axis=1),
        slice_thickness_mm=_float(first, "SliceThickness"),
        kvp=_float(first, "KVP"),
        study_uid=str(first.get("StudyInstanceUID", "")) or None,
        series_uid=str(first.get("SeriesInstanceUID", "")) or None,
        source=str(folder),
        modality=str(first.get("Modality", "")) or None,
        manufacturer=str(first.get("Manufacturer", "")) or None,
        patient_id=str(first.get("PatientID", "")) or None,
        series_description=str(first.get("SeriesDescription", "")) or None,
    )
    volume = canonical_orientation(volume, name=str(folder))
    add_quality_warnings(volume, name=str(folder))
    return volume
