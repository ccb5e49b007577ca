"""Reading CT series from a folder of DICOM files (pydicom).

Headers are read first, without pixel data, for every file under the folder
(sub-folders included; DICOMDIR is skipped, symbolic links to folders are
not followed). Files are grouped by SeriesInstanceUID, one series is chosen
(the one named, or the one that looks most like a calcium-scoring series),
and the reader accounts for every file it saw next to that series: a file
that looks like one of its slices (DICOM preamble, or the series' naming
pattern or file size) but cannot be read, or a lone slice of another series
that sits on the series' slice grid, is named in an error, or skipped with a
warning when ``skip_unreadable`` is set. Every value that enters the HU
conversion or the geometry is checked per slice (rescale, bit depth, image
size, pixel spacing, orientation, position, pixel data length), the slices
are sorted by position along the slice normal (never by file name or
InstanceNumber) and checked for duplicates, gaps, uneven spacing and tilt,
and only then are their pixels decoded.

Enhanced (multi-frame) CT Image Storage files are read through pydicom's
multi-frame support: each frame's position, orientation, pixel spacing and
rescale come from its per-frame or shared functional groups, and the frames
go through the same checks as the slices of a classic series.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, EnhancedCTImageStorage

from cacscore.errors import CacScoreWarning, DicomReadError
from cacscore.io.checks import (
    AGATSTON_KVP,
    AGATSTON_THICKNESS_MM,
    ANGLE_TOLERANCE_DEG,
    add_quality_warnings,
    axis_angle_deg,
    canonical_orientation,
)
from cacscore.io.volume import CTVolume, DicomSource, SourceImage

#: A slice step longer than this many median increments means missing slices.
GAP_FACTOR = 1.5
#: Slice steps may differ from the median by this much (mm, or fraction of it, whichever is larger).
SPACING_TOLERANCE_MM = 0.01
SPACING_TOLERANCE_FRACTION = 0.01
#: Largest image size (rows or columns) read; CT images are 512-1024, some 2048.
MAX_IMAGE_SIZE = 8192
#: A group of other-series files next to the chosen series is a stray slice of it (a damaged
#: SeriesInstanceUID) when it has at most this fraction of the series' slice count and sits on its grid.
STRAY_FRACTION = 0.25

_Z_AXIS = np.array([0.0, 0.0, 1.0])
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
#: Image types (value 3 or 4 of ImageType / FrameType) of multi-energy CT reconstructions whose values are
#: not those of a 120 kVp scan (PS3.3 C.8.2.1.1.4 and vendors' spellings).
_NON_120KVP_IMAGE_TYPES = {
    "VMI",
    "MONOENERGETIC",
    "MONO_E",
    "MONOE",
    "VIRTUAL_MONOENERGETIC",
    "VNC",
    "VIRTUAL_NON_CONTRAST",
    "MAT_REMOVED",
    "MAT_SPECIFIC",
    "MAT_FRACTIONAL",
    "MAT_MODIFIED",
    "MAT_VALUE_BASED",
    "EFF_ATOMIC_NUM",
    "ELECTRON_DENSITY",
    "IODINE",
    "SPECTRAL",
}
#: File meta elements whose VR has a 4-byte length in explicit VR (PS3.5 7.1.2).
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


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
        Number of images in the series (files, or frames of Enhanced CT files).
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


class _Unreadable(Exception):
    """One file (or one frame of it) cannot give a trustworthy slice; ``reason`` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class _Slice:
    path: Path
    header: Dataset


@dataclass
class _Scan:
    """Everything found under a folder: readable DICOM headers and the files that are not."""

    slices: list[_Slice] = field(default_factory=list)
    #: Files with the DICOM preamble whose header cannot be read, with the reason.
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    #: Paths that cannot be opened (broken or looping links, permissions), with the reason.
    unopenable: list[tuple[Path, str]] = field(default_factory=list)
    #: Regular files without the DICOM preamble.
    other_files: list[Path] = field(default_factory=list)
    #: Symbolic links to folders, which are not followed (they may loop).
    folder_links: list[Path] = field(default_factory=list)


@dataclass
class _Image:
    """One 2-D image of a series (a classic file, or one frame of an Enhanced CT file) with checked values."""

    path: Path
    label: str
    header: Dataset
    frame: int | None
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]
    size: tuple[int, int]
    bits: tuple[int, int, bool]
    slope: float
    intercept: float
    modality_lut: bool
    instance_number: int | None
    thickness: float | None
    kvp: float | None
    image_type: tuple[str, ...]


@contextmanager
def _library_warnings_dropped() -> Iterator[None]:
    """Drop pydicom's and numpy's warnings raised inside; pass cacscore's own on when all went well.

    pydicom converts values lazily and warns about odd ones (a DS of "NaN", an
    unknown character set), numpy about casts; the reader checks every value it
    uses itself and says what is wrong in its own words, so the raw library
    lines would only repeat it less clearly.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for record in caught:
        if issubclass(record.category, CacScoreWarning):
            warnings.warn(record.message, record.category, stacklevel=3)


def _dcmread(path: Path, *, stop_before_pixels: bool = False) -> Dataset:
    """``pydicom.dcmread`` that turns read failures into one-line errors.

    pydicom's end-of-file warning becomes such an error too.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except Exception as exc:  # noqa: BLE001 - a damaged file makes pydicom raise many kinds; all mean corrupt
            raise DicomReadError(f"{path}: corrupt DICOM file: {_first_line(exc)}") from None
    for record in caught:
        if "End of file" in str(record.message):
            raise DicomReadError(f"{path}: corrupt DICOM file: {_first_line(record.message)}")
    return ds


def _unexpected(exc: Exception) -> str:
    """Reason for a file whose damaged header made pydicom raise where a value was read or converted."""
    return f"corrupt DICOM file: {type(exc).__name__}: {_first_line(exc)}"


def _first_line(value: object, limit: int = 200) -> str:
    """``value`` as one printable line of at most ``limit`` characters (damaged headers hold any bytes)."""
    try:
        raw = str(value)
    except Exception:  # noqa: BLE001 - a damaged pydicom value may fail even to print
        raw = f"(unprintable {type(value).__name__})"
    text = "".join(c if c.isprintable() else " " for c in raw)
    text = " ".join(text.split()) or type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _file_meta_length_problem(path: Path) -> str | None:
    """A message if the file meta group length disagrees with the file meta elements that follow it.

    pydicom reads the file meta by its elements and ignores the stored group
    length, so a wrong one changes nothing read here; it is still a sign of a
    damaged or badly written file.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(132 + 12 + 4096)
    except OSError:
        return None
    if head[132:136] != b"\x02\x00\x00\x00" or head[136:138] != b"UL":
        return None
    (declared,) = struct.unpack("<I", head[140:144])
    offset = 144
    while offset + 8 <= len(head) and head[offset : offset + 2] == b"\x02\x00":
        vr = head[offset + 4 : offset + 6]
        if vr in _LONG_VRS:
            if offset + 12 > len(head):
                return None
            (length,) = struct.unpack("<I", head[offset + 8 : offset + 12])
            offset += 12 + length
        else:
            (length,) = struct.unpack("<H", head[offset + 6 : offset + 8])
            offset += 8 + length
    actual = offset - 144
    if declared != actual:
        return f"file meta group length says {declared} bytes but the file meta information is {actual} bytes"
    return None


def _walk(folder: Path) -> tuple[list[Path], list[Path], list[tuple[Path, str]]]:
    """Files (sorted), symbolic links to folders, and folders that cannot be listed under ``folder``."""
    files: list[Path] = []
    links: list[Path] = []
    failed: list[tuple[Path, str]] = []

    def on_error(exc: OSError) -> None:
        failed.append((Path(exc.filename or folder), exc.strerror or str(exc)))

    for root, dirs, names in os.walk(folder, onerror=on_error, followlinks=False):
        base = Path(root)
        links.extend(base / name for name in dirs if (base / name).is_symlink())
        files.extend(base / name for name in names)
    if failed and failed[0][0] == folder:
        raise DicomReadError(f"{folder}: cannot list folder: {failed[0][1]}")
    return sorted(files), sorted(links), failed


def _scan(folder: Path) -> _Scan:
    """Headers (no pixel data) of every DICOM file under ``folder``, and every file that is not one."""
    if not folder.exists():
        raise DicomReadError(f"{folder}: folder not found")
    if not folder.is_dir():
        raise DicomReadError(f"{folder}: not a folder")
    paths, links, failed = _walk(folder)
    scan = _Scan(folder_links=links, unopenable=list(failed))
    for path in paths:
        if path.name.upper() == "DICOMDIR":
            continue
        if not path.is_file():
            # A FIFO would block the open below forever; a link that loops or leads nowhere cannot be read.
            why = "a symbolic link that loops or leads nowhere" if path.is_symlink() else "not a regular file"
            scan.unopenable.append((path, why))
            continue
        try:
            with path.open("rb") as handle:
                preamble = handle.read(132)
        except OSError as exc:
            scan.unopenable.append((path, f"cannot be opened ({exc.strerror or exc})"))
            continue
        if len(preamble) < 132 or preamble[128:] != b"DICM":
            scan.other_files.append(path)
            continue
        try:
            header = _dcmread(path, stop_before_pixels=True)
            if _text(header, "SOPClassUID") == _DICOMDIR_SOP_CLASS:
                continue  # a DICOMDIR under another name
            if not _text(header, "SeriesInstanceUID") and not _image_header_complete(header):
                # pydicom stops quietly at the end of a truncated file. A complete image header without the
                # UID is kept instead: some anonymisers strip it, and such files are read as one series.
                raise DicomReadError(
                    f"{path}: corrupt DICOM file: truncated (no SeriesInstanceUID, no image size)"
                )
        except DicomReadError as exc:
            scan.unreadable.append((path, str(exc).removeprefix(f"{path}: ")))
            continue
        except Exception as exc:  # noqa: BLE001 - pydicom converts values lazily; whatever a damaged one raises
            scan.unreadable.append((path, _unexpected(exc)))
            continue
        scan.slices.append(_Slice(path, header))
    return scan


def _image_header_complete(header: Dataset) -> bool:
    """True when a header holds the image attributes that come after SeriesInstanceUID in a file.

    Rows, Columns and ImagePositionPatient (0020,0032) follow SeriesInstanceUID (0020,000E) in tag
    order, so a file cut short before its UID cannot hold them.
    """
    return all(_text(header, keyword) for keyword in ("Rows", "Columns", "ImagePositionPatient"))


def _text(header: Dataset, keyword: str) -> str:
    """A header value as text, "" when missing or when pydicom cannot convert it."""
    try:
        value = header.get(keyword)
    except Exception:  # noqa: BLE001 - pydicom converts lazily; a damaged value raises on access
        return ""
    if value is None:
        return ""
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            text = "\\".join(str(v) for v in value)
        else:
            text = str(value).strip()
    except Exception:  # noqa: BLE001 - a sequence converts its items only now; a damaged one raises
        return ""
    # Values end up in messages and reports; a damaged one may hold control characters or whole elements.
    return text if text.isprintable() and len(text) <= 200 else _first_line(text) if text else ""


def _float(header: Dataset, keyword: str) -> float | None:
    """A numeric header value, None when missing, empty or not a number."""
    try:
        value = header.get(keyword)
        if value is None or value == "":
            return None
        return float(value)
    except Exception:  # noqa: BLE001 - pydicom converts lazily; a damaged value raises on access
        return None


def _number(header: Dataset, keyword: str, label: str, path: Path, *, required: bool = False) -> float | None:
    """A finite number from the header.

    None when missing (an error when ``required``); an error when invalid.
    """
    try:
        value = header.get(keyword)
    except Exception as exc:  # noqa: BLE001 - pydicom converts lazily; a damaged value raises on access
        raise _Unreadable(
            path, f"{_where(label, path)}{keyword} cannot be read ({_first_line(exc)})"
        ) from None
    if value is None or value == "":
        if required:
            raise _Unreadable(path, f"{_where(label, path)}{keyword} is missing")
        return None
    try:
        number = float(value)
    except Exception:  # noqa: BLE001 - any value that does not convert, whatever its type
        raise _Unreadable(
            path, f"{_where(label, path)}{keyword} is not a number: {_first_line(value, 40)!r}"
        ) from None
    if not np.isfinite(number):
        raise _Unreadable(path, f"{_where(label, path)}{keyword} is not finite: {_first_line(value, 40)!r}")
    return number


def _required(header: Dataset, keyword: str, label: str, path: Path) -> float:
    """A finite number that must be in the header, or an error naming the file."""
    value = _number(header, keyword, label, path, required=True)
    if value is None:  # _number raised already; this keeps the type checker informed
        raise _Unreadable(path, f"{_where(label, path)}{keyword} is missing")
    return value


def _vector(header: Dataset | None, keyword: str, n: int, label: str, path: Path) -> np.ndarray:
    """``n`` finite numbers from the header, or an error naming the file."""
    try:
        value = None if header is None else header.get(keyword)
    except Exception as exc:  # noqa: BLE001 - pydicom converts lazily; a damaged value raises on access
        raise _Unreadable(
            path, f"{_where(label, path)}{keyword} cannot be read ({_first_line(exc)})"
        ) from None
    if value is None or value == "":
        raise _Unreadable(path, f"{_where(label, path)}{keyword} is missing")
    try:
        values = np.asarray(
            [
                float(v)
                for v in (
                    value
                    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"
                    else [value]
                )
            ]
        )
    except Exception:  # noqa: BLE001 - any value that does not convert, whatever its type
        raise _Unreadable(
            path, f"{_where(label, path)}{keyword} is not numeric: {_first_line(value, 60)!r}"
        ) from None
    if values.shape != (n,):
        raise _Unreadable(path, f"{_where(label, path)}{keyword} has {values.size} value(s), {n} expected")
    if not np.all(np.isfinite(values)):
        raise _Unreadable(path, f"{_where(label, path)}{keyword} is not finite: {_first_line(value, 60)!r}")
    return values


def _show(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"


def _where(label: str, path: Path) -> str:
    """Prefix naming the frame of a multi-frame file ("" for a classic slice, whose file names it)."""
    return "" if label == path.name else f"{label.removeprefix(path.name + ' ')}: "


def _is_enhanced(header: Dataset) -> bool:
    return (
        _text(header, "SOPClassUID") == EnhancedCTImageStorage or "PerFrameFunctionalGroupsSequence" in header
    )


def _functional_item(header: Dataset, frame: int, keyword: str) -> Dataset | None:
    """First item of functional group ``keyword`` for ``frame``.

    The per-frame groups are searched first, then the shared ones (PS3.3 C.7.6.16).
    """
    sources = []
    try:
        per_frame = header.get("PerFrameFunctionalGroupsSequence")
        if per_frame is not None and frame < len(per_frame):
            sources.append(per_frame[frame])
        shared = header.get("SharedFunctionalGroupsSequence")
        if shared:
            sources.append(shared[0])
        for source in sources:
            sequence = source.get(keyword)
            if sequence:
                item: Dataset = sequence[0]
                return item
    except Exception:  # noqa: BLE001 - a damaged sequence reads as absent; the caller names what is missing
        return None
    return None


def _orientation_values(header: Dataset) -> np.ndarray | None:
    source = _functional_item(header, 0, "PlaneOrientationSequence") if _is_enhanced(header) else header
    try:
        iop = None if source is None else source.get("ImageOrientationPatient")
        values = np.asarray([float(v) for v in iop], dtype=float) if iop is not None else None
    except Exception:  # noqa: BLE001 - a damaged value is "unknown" here; reading names it later
        return None
    return values if values is not None and values.shape == (6,) and np.all(np.isfinite(values)) else None


def _normal(header: Dataset) -> np.ndarray | None:
    iop = _orientation_values(header)
    if iop is None:
        return None
    normal = np.cross(iop[:3], iop[3:])
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


def _frames(header: Dataset) -> int:
    value = _float(header, "NumberOfFrames")
    return int(value) if value is not None and value >= 1 else 1


def _most_common(values: list[str]) -> str:
    return Counter(values).most_common(1)[0][0] if values else ""


def _series_info(uid: str, slices: list[_Slice]) -> SeriesInfo:
    # The values most files agree on, so that one damaged header does not decide what the series is (the
    # reader names that file later); the first file with the common orientation describes the rest.
    modality = _most_common([_text(item.header, "Modality") for item in slices])
    image_type = _most_common([_text(item.header, "ImageType") for item in slices])
    orientations = [_orientation_name(item.header) for item in slices]
    orientation = _most_common(orientations)
    first = slices[orientations.index(orientation)].header
    enhanced = 2 * sum(_is_enhanced(item.header) for item in slices) > len(slices)
    multi_frame = 2 * sum(
        not _is_enhanced(item.header) and _frames(item.header) > 1 for item in slices
    ) > len(slices)
    n_images = sum(_frames(item.header) if _is_enhanced(item.header) else 1 for item in slices)
    samples = int(_most_common([str(int(_float(item.header, "SamplesPerPixel") or 1)) for item in slices]))
    kind = "Enhanced CT" if enhanced else "CT series"
    if modality != "CT":
        reason = f"modality {modality or 'missing'}, not CT"
    elif "LOCALIZER" in image_type.upper():
        reason = "localizer (scout) images"
    elif samples != 1:
        reason = f"{samples} samples per pixel (RGB), not a grey-scale CT image"
    elif multi_frame:
        reason = "multi-frame image without per-frame functional groups (not Enhanced CT), not supported"
    elif orientation != "axial":
        reason = f"{orientation} slices, not axial"
        if orientation != "unknown":
            reason += f" (slice normal {_normal_angle_deg(first):.1f} degrees from the head-feet axis)"
    elif n_images < 2:
        reason = "a single slice"
    else:
        reason = f"axial {kind}"
    thickness = _float(first, "SliceThickness")
    kvp = _float(first, "KVP")
    if enhanced:
        measures = _functional_item(first, 0, "PixelMeasuresSequence")
        thickness = _float(measures, "SliceThickness") if measures is not None else None
        xray = _functional_item(first, 0, "CTXRayDetailsSequence")
        kvp = (_float(xray, "KVP") if xray is not None else None) or kvp
    return SeriesInfo(
        series_uid=uid,
        study_uid=_text(first, "StudyInstanceUID"),
        modality=modality,
        description=_text(first, "SeriesDescription"),
        n_slices=n_images,
        slice_thickness_mm=thickness,
        kvp=kvp,
        rows=int(_float(first, "Rows") or 0),
        cols=int(_float(first, "Columns") or 0),
        image_type=image_type,
        orientation=orientation,
        is_candidate=reason == f"axial {kind}",
        reason=reason,
    )


def _group(slices: list[_Slice]) -> dict[str, list[_Slice]]:
    groups: dict[str, list[_Slice]] = {}
    for item in slices:
        groups.setdefault(_text(item.header, "SeriesInstanceUID"), []).append(item)
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

    Candidates (axial grey-scale CT, classic or Enhanced, not a localizer, two
    or more images) come first, ordered by preference: slice thickness within
    2.5-3 mm, ORIGINAL image type, kVp recorded, then most images.

    Raises
    ------
    DicomReadError
        Folder missing, or holding no readable DICOM file.

    Warns
    -----
    CacScoreWarning
        Once for DICOM files whose header cannot be read (they are not listed).
    """
    folder = Path(folder)
    with _library_warnings_dropped():
        scan = _scan(folder)
        _require_slices(folder, scan)
        infos = [_series_info(uid, group) for uid, group in _group(scan.slices).items()]
    if scan.unreadable:
        path, reason = scan.unreadable[0]
        more = f" and {len(scan.unreadable) - 1} more" if len(scan.unreadable) > 1 else ""
        warnings.warn(f"{path}: not listed: {reason}{more}", CacScoreWarning, stacklevel=2)
    return sorted(infos, key=lambda info: (info.is_candidate, *_preference(info)), reverse=True)


def _require_slices(folder: Path, scan: _Scan) -> None:
    if scan.slices:
        return
    if scan.unreadable:
        path, reason = scan.unreadable[0]
        raise DicomReadError(f"{path}: {reason}")
    raise DicomReadError(f"{folder}: no DICOM files found")


def read_dicom_series(
    folder: str | Path, *, series_uid: str | None = None, skip_unreadable: bool = False
) -> CTVolume:
    """Read one CT series (classic or Enhanced CT) from a folder of DICOM files.

    Parameters
    ----------
    folder : str or Path
        Folder searched recursively for DICOM files.
    series_uid : str, optional
        SeriesInstanceUID to read. By default the candidate that
        :func:`list_series` ranks first.
    skip_unreadable : bool
        Read the series without the files next to it that look like its
        slices but cannot be read (and without a lone slice of another series
        on its grid), each named in a warning. By default they are an error,
        because a missing end slice leaves an evenly spaced series that scores
        without it.

    Returns
    -------
    CTVolume
        HU as int16 ``(z, y, x)``, rescale slope and intercept applied,
        in the canonical orientation (axis 0 head-ward), ``spacing[0]`` the
        slice increment, with kVp, slice thickness and identifiers.

    Raises
    ------
    DicomReadError
        No DICOM or no CT series, unknown ``series_uid``, an unreadable or
        stray file next to the series (unless ``skip_unreadable``), missing
        or duplicated slices, uneven slice spacing, gantry tilt, non-axial
        orientation, RGB images, a value that cannot enter the HU conversion
        or the geometry (rescale slope 0 or not finite, image size, pixel
        spacing, bit depth or pixel data length inconsistent), corrupt files.
        The message names the file concerned.

    Warns
    -----
    CacScoreWarning
        kVp other than 120, slice thickness outside 2.5-3 mm, overlapping
        reconstruction, a default used for a missing value (RescaleSlope,
        RescaleIntercept, bit depth), rescale values that differ between
        slices, an end slice that seems missing (InstanceNumber,
        ImagesInAcquisition), a multi-energy (e.g. virtual monoenergetic)
        reconstruction, files skipped. Also recorded in ``volume.warnings``.
    """
    folder = Path(folder)
    notes: list[str] = []
    with _library_warnings_dropped():
        scan = _scan(folder)
        _require_slices(folder, scan)
        groups = _group(scan.slices)
        infos = {uid: _series_info(uid, group) for uid, group in groups.items()}
        if series_uid is not None:
            if series_uid not in groups:
                raise DicomReadError(
                    f"{folder}: no series with SeriesInstanceUID {series_uid}; "
                    f"found {', '.join(sorted(groups))}"
                )
            info = infos[series_uid]
            if not info.is_candidate:
                raise DicomReadError(f"{folder}: series {series_uid} cannot be read as CT: {info.reason}")
        else:
            candidates = [info for info in infos.values() if info.is_candidate]
            if not candidates:
                found = "; ".join(
                    f"{info.series_uid or '(no UID)'}: {info.reason}" for info in infos.values()
                )
                raise DicomReadError(f"{folder}: no readable CT series found ({found})")
            info = max(candidates, key=_preference)
            others = [other for other in candidates if other.series_uid != info.series_uid]
            if others:
                # Say which series was scored and that others are there, rather than choose silently.
                notes.append(
                    f"{folder}: holds {len(others) + 1} CT series; read {info.series_uid or '(no UID)'} "
                    f"({info.n_slices} images, {info.reason}), not "
                    + "; ".join(
                        f"{other.series_uid or '(no UID)'} ({other.n_slices} images)" for other in others
                    )
                    + " (cacscore series lists them; --series UID picks one)"
                )
        chosen = groups[info.series_uid]
        if not info.series_uid:
            notes.append(
                f"{folder}: the chosen images carry no SeriesInstanceUID (removed by an anonymiser?); "
                f"the {len(chosen)} images without one are read as one series"
            )
        problems, unrelated = _account_for_files(scan, chosen, groups)
        _handle_problems(problems, skip_unreadable, notes, action="skipped")
        notes.extend(unrelated)
        volume = _read_series(
            folder,
            chosen,
            skip_unreadable=skip_unreadable,
            notes=notes,
            skipped=[path for path, _ in problems],
        )
    volume = canonical_orientation(volume, name=str(folder))
    for note in notes:
        volume.warnings.append(note)
        warnings.warn(note, CacScoreWarning, stacklevel=2)
    add_quality_warnings(volume, name=str(folder))
    return volume


def _handle_problems(problems: list[tuple[Path, str]], skip: bool, notes: list[str], *, action: str) -> None:
    """Raise for the first problem file (naming how many more), or note each one when ``skip``."""
    if not problems:
        return
    if skip:
        notes.extend(f"{path}: {action}: {reason}" for path, reason in problems)
        return
    path, reason = problems[0]
    more = ""
    if len(problems) > 1:
        names = ", ".join(p.name for p, _ in problems[1:4]) + (", ..." if len(problems) > 4 else "")
        more = f"; also {len(problems) - 1} more file(s): {names}"
    raise DicomReadError(
        f"{path}: {reason}{more}; remove the file(s), or read with --skip-unreadable (skip_unreadable=True) "
        "to go on without them, each named in a warning"
    )


def _name_pattern(name: str) -> str:
    """File name with every digit run replaced by ``#``: IM00012.dcm -> IM#.dcm."""
    return re.sub(r"\d+", "#", name)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _account_for_files(
    scan: _Scan, chosen: list[_Slice], groups: dict[str, list[_Slice]]
) -> tuple[list[tuple[Path, str]], list[str]]:
    """Files next to the chosen series that look like its slices but cannot be used, and notes on the rest.

    Returns
    -------
    problems : list of (Path, str)
        Files in the series' folders that look like its slices (DICOM
        preamble, or its naming pattern or file size) but cannot be read,
        and lone files of another series that sit on its slice grid.
    notes : list of str
        Warnings for unreadable paths elsewhere (other folders, names unlike
        the series' files) and for folder links not followed.
    """
    folders = {item.path.parent for item in chosen}
    patterns = {_name_pattern(item.path.name) for item in chosen}
    sizes = {_size(item.path) for item in chosen}
    # Uncompressed slices of one series all have one size; compressed ones vary, so size says nothing there.
    slice_size = next(iter(sizes)) if len(sizes) == 1 else None
    problems: list[tuple[Path, str]] = []
    notes: list[str] = []
    for path, reason in scan.unreadable:
        if path.parent in folders:
            problems.append((path, reason))
        else:
            notes.append(f"{path}: not read: {reason}")
    for path, reason in scan.unopenable:
        if path.parent in folders and _name_pattern(path.name) in patterns:
            problems.append((path, f"named like the series' slices but {reason}"))
        else:
            notes.append(f"{path}: not read: {reason}")
    for path in scan.other_files:
        if path.parent not in folders:
            continue
        size = _size(path)
        named_like = _name_pattern(path.name) in patterns
        sized_like = slice_size is not None and size == slice_size
        if named_like or sized_like:
            what = "empty file" if size == 0 else "not a DICOM file (no DICM preamble)"
            like = " and ".join(w for w, yes in (("named", named_like), ("sized", sized_like)) if yes)
            problems.append((path, f"{what}, though {like} like the series' slices"))
    problems.extend(_stray_slices(chosen, groups, folders, patterns))
    notes.extend(f"{link}: link to a folder, not followed" for link in scan.folder_links)
    return sorted(problems, key=lambda item: str(item[0])), notes


def _stray_slices(
    chosen: list[_Slice], groups: dict[str, list[_Slice]], folders: set[Path], patterns: set[str]
) -> list[tuple[Path, str]]:
    """Lone files of another series, next to the chosen one, named like it and on its slice grid."""
    if len(chosen) < 3 or any(_is_enhanced(item.header) for item in chosen):
        return []
    uid = _text(chosen[0].header, "SeriesInstanceUID")
    iop = _orientation_values(chosen[0].header)
    if iop is None:
        return []
    normal = np.cross(iop[:3], iop[3:])
    along = []
    for item in chosen:
        try:
            along.append(float(np.asarray([float(v) for v in item.header.ImagePositionPatient]) @ normal))
        except Exception:  # noqa: BLE001, S112 - slices with damaged positions are named when the series is read
            continue
    if len(along) < 3:
        return []
    along_sorted = np.sort(along)
    increment = float(np.median(np.diff(along_sorted)))
    if increment <= 1e-3:
        return []
    size = (_text(chosen[0].header, "Rows"), _text(chosen[0].header, "Columns"))
    found = []
    for other_uid, group in groups.items():
        if other_uid == uid or len(group) > STRAY_FRACTION * len(chosen):
            continue
        for item in group:
            header = item.header
            if item.path.parent not in folders or _name_pattern(item.path.name) not in patterns:
                continue
            other_iop = _orientation_values(header)
            try:
                position = float(np.asarray([float(v) for v in header.ImagePositionPatient]) @ normal)
            except Exception:  # noqa: BLE001 - a damaged or missing position
                position = float("nan")
            if other_iop is None or not np.isfinite(position):
                # A real other series beside this one (a scout in a flat export) has its geometry; a lone file
                # named like the series' slices without it is most likely one of them, damaged.
                found.append(
                    (
                        item.path,
                        (
                            f"SeriesInstanceUID {other_uid or '(none)'} differs from that of the "
                            f"{len(chosen)} other slices in its folder and it has no usable "
                            "ImageOrientationPatient/ImagePositionPatient (a damaged slice?)"
                        ),
                    )
                )
                continue
            if not np.allclose(other_iop, iop, atol=1e-4):
                continue
            if (_text(header, "Rows"), _text(header, "Columns")) != size:
                continue
            steps = (position - along_sorted[0]) / increment
            within = along_sorted[0] - 1.5 * increment <= position <= along_sorted[-1] + 1.5 * increment
            if within and abs(steps - round(steps)) < 0.05:
                found.append(
                    (
                        item.path,
                        (
                            f"SeriesInstanceUID {other_uid or '(none)'} differs from that of the "
                            f"{len(chosen)} other slices in its folder, though its position "
                            f"{position:.2f} mm lies on their slice grid (a damaged or stray slice)"
                        ),
                    )
                )
    return found


def _bits(header: Dataset, label: str, path: Path, defaults: dict[str, list[str]]) -> tuple[int, int, bool]:
    """(BitsAllocated, BitsStored, signed), checked against each other; missing ones default with a note."""
    allocated = _number(header, "BitsAllocated", label, path)
    if allocated is None:
        defaults.setdefault("BitsAllocated missing; 16 used", []).append(label)
        allocated = 16.0
    if allocated not in (8.0, 16.0, 32.0):
        raise _Unreadable(path, f"{_where(label, path)}BitsAllocated {allocated:g} (8, 16 or 32 expected)")
    stored = _number(header, "BitsStored", label, path)
    if stored is None:
        defaults.setdefault("BitsStored missing; BitsAllocated used", []).append(label)
        stored = allocated
    if not 1 <= stored <= allocated or stored != int(stored):
        raise _Unreadable(
            path, f"{_where(label, path)}BitsStored {stored:g} with BitsAllocated {allocated:g}"
        )
    high = _number(header, "HighBit", label, path)
    if high is not None and high != stored - 1:
        raise _Unreadable(
            path,
            f"{_where(label, path)}HighBit {high:g} with BitsStored {stored:g} ({stored - 1:g} expected)",
        )
    representation = _number(header, "PixelRepresentation", label, path)
    if representation is None:
        defaults.setdefault("PixelRepresentation missing; unsigned values assumed", []).append(label)
        representation = 0.0
    if representation not in (0.0, 1.0):
        raise _Unreadable(
            path, f"{_where(label, path)}PixelRepresentation {representation:g} (0 or 1 expected)"
        )
    return int(allocated), int(stored), representation == 1.0


def _rescale(
    source: Dataset | None, fallback: Dataset, label: str, path: Path, defaults: dict[str, list[str]]
) -> tuple[float, float, bool]:
    """(slope, intercept, use the modality LUT instead), checked; a missing value defaults with a note."""
    header = source if source is not None and "RescaleSlope" in source else fallback
    slope = _number(header, "RescaleSlope", label, path)
    intercept = _number(header, "RescaleIntercept", label, path)
    if slope is None and intercept is None and "ModalityLUTSequence" in fallback:
        return 1.0, 0.0, True
    if slope is None:
        defaults.setdefault("RescaleSlope missing; 1 used", []).append(label)
        slope = 1.0
    if slope == 0.0:
        raise _Unreadable(
            path,
            f"{_where(label, path)}RescaleSlope is 0, which would make every pixel {intercept or 0:g} HU",
        )
    if intercept is None:
        defaults.setdefault("RescaleIntercept missing; 0 used", []).append(label)
        intercept = 0.0
    return slope, intercept, False


def _size_of(header: Dataset, label: str, path: Path) -> tuple[int, int]:
    rows = _required(header, "Rows", label, path)
    cols = _required(header, "Columns", label, path)
    if rows < 1 or cols < 1 or rows != int(rows) or cols != int(cols):
        raise _Unreadable(path, f"{_where(label, path)}image size {rows:g}x{cols:g} is not a positive size")
    if max(rows, cols) > MAX_IMAGE_SIZE:
        # A damaged size would make a decoder allocate gigabytes before it finds the data too short.
        raise _Unreadable(
            path,
            f"{_where(label, path)}image size {rows:g}x{cols:g} is larger than any CT image "
            f"(at most {MAX_IMAGE_SIZE} x {MAX_IMAGE_SIZE})",
        )
    return int(rows), int(cols)


def _geometry(
    source_position: Dataset | None,
    source_orientation: Dataset | None,
    source_measures: Dataset | None,
    label: str,
    path: Path,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    position = _vector(source_position, "ImagePositionPatient", 3, label, path)
    orientation = _vector(source_orientation, "ImageOrientationPatient", 6, label, path)
    row, col = orientation[:3], orientation[3:]
    if (
        abs(np.linalg.norm(row) - 1) > 1e-2
        or abs(np.linalg.norm(col) - 1) > 1e-2
        or abs(float(row @ col)) > 1e-2
    ):
        raise _Unreadable(
            path,
            f"{_where(label, path)}ImageOrientationPatient {_show(orientation)} is not two "
            "orthogonal unit vectors",
        )
    spacing = _vector(source_measures, "PixelSpacing", 2, label, path)
    if np.any(spacing <= 0):
        raise _Unreadable(path, f"{_where(label, path)}PixelSpacing {_show(spacing)} is not positive")
    return position, orientation, (float(spacing[0]), float(spacing[1]))


def _image_type(header: Dataset | None, keyword: str) -> tuple[str, ...]:
    text = "" if header is None else _text(header, keyword)
    return tuple(value.strip().upper() for value in text.split("\\") if value.strip())


def _classic_image(item: _Slice, defaults: dict[str, list[str]]) -> _Image:
    header, path = item.header, item.path
    label = path.name
    samples = _number(header, "SamplesPerPixel", label, path)
    if samples is not None and samples != 1:
        raise _Unreadable(path, f"SamplesPerPixel {samples:g}, not a grey-scale CT image")
    size = _size_of(header, label, path)
    position, orientation, spacing = _geometry(header, header, header, label, path)
    slope, intercept, modality_lut = _rescale(None, header, label, path, defaults)
    number = _float(header, "InstanceNumber")
    return _Image(
        path=path,
        label=label,
        header=header,
        frame=None,
        position=position,
        orientation=orientation,
        pixel_spacing=spacing,
        size=size,
        bits=_bits(header, label, path, defaults),
        slope=slope,
        intercept=intercept,
        modality_lut=modality_lut,
        instance_number=int(number) if number is not None and number == int(number) else None,
        thickness=_float(header, "SliceThickness"),
        kvp=_float(header, "KVP"),
        image_type=_image_type(header, "ImageType"),
    )


def _enhanced_images(item: _Slice, defaults: dict[str, list[str]]) -> list[_Image]:
    """The frames of one Enhanced CT file, each with its functional groups' geometry and rescale."""
    header, path = item.header, item.path
    n_frames = _required(header, "NumberOfFrames", path.name, path)
    try:
        per_frame = header.get("PerFrameFunctionalGroupsSequence")
        n_items = len(per_frame) if per_frame is not None else 0
    except Exception:  # noqa: BLE001 - a damaged sequence counts as missing
        n_items = 0
    if n_frames < 1 or n_frames != int(n_frames) or n_items != n_frames:
        raise _Unreadable(
            path, f"NumberOfFrames {n_frames:g} but {n_items} per-frame functional group item(s)"
        )
    size = _size_of(header, path.name, path)
    bits = _bits(header, path.name, path, defaults)
    samples = _number(header, "SamplesPerPixel", path.name, path)
    if samples is not None and samples != 1:
        raise _Unreadable(path, f"SamplesPerPixel {samples:g}, not a grey-scale CT image")
    images = []
    for frame in range(int(n_frames)):
        label = f"{path.name} frame {frame + 1}"
        measures = _functional_item(header, frame, "PixelMeasuresSequence")
        position, orientation, spacing = _geometry(
            _functional_item(header, frame, "PlanePositionSequence"),
            _functional_item(header, frame, "PlaneOrientationSequence"),
            measures,
            label,
            path,
        )
        transformation = _functional_item(header, frame, "PixelValueTransformationSequence")
        slope, intercept, modality_lut = _rescale(transformation, header, label, path, defaults)
        xray = _functional_item(header, frame, "CTXRayDetailsSequence")
        frame_type = _image_type(_functional_item(header, frame, "CTImageFrameTypeSequence"), "FrameType")
        images.append(
            _Image(
                path=path,
                label=label,
                header=header,
                frame=frame,
                position=position,
                orientation=orientation,
                pixel_spacing=spacing,
                size=size,
                bits=bits,
                slope=slope,
                intercept=intercept,
                modality_lut=modality_lut,
                instance_number=None,
                thickness=_float(measures, "SliceThickness") if measures is not None else None,
                kvp=(_float(xray, "KVP") if xray is not None else None) or _float(header, "KVP"),
                image_type=frame_type or _image_type(header, "ImageType"),
            )
        )
    return images


def _inconsistent(images: list[_Image]) -> list[tuple[Path, str]]:
    """Images whose size, orientation or pixel spacing differ from what most images of the series have."""
    problems = []
    checks: list[tuple[str, Callable[[_Image], Any], Callable[[Any], str]]] = [
        ("image size", lambda im: im.size, lambda v: f"{v[0]}x{v[1]}"),
        (
            "ImageOrientationPatient",
            lambda im: tuple(float(v) for v in np.round(im.orientation, 4)),
            lambda v: "[" + ", ".join(f"{x:g}" for x in v) + "]",
        ),
        (
            "PixelSpacing",
            lambda im: tuple(float(v) for v in np.round(im.pixel_spacing, 4)),
            lambda v: "[" + ", ".join(f"{x:g}" for x in v) + "]",
        ),
    ]
    bad: set[int] = set()
    for name, key, show in checks:
        counts = Counter(key(im) for im in images)
        reference, n_reference = counts.most_common(1)[0]
        for i, image in enumerate(images):
            value = key(image)
            if value != reference and i not in bad:
                bad.add(i)
                problems.append(
                    (
                        image.path,
                        (
                            f"{_where(image.label, image.path)}{name} {show(value)} differs from the "
                            f"{show(reference)} of {n_reference} other image(s) of the series"
                        ),
                    )
                )
    return problems


def _images(slices: list[_Slice], skip: bool, notes: list[str]) -> tuple[list[_Image], list[Path]]:
    """Checked images of the series, sorted by position along the normal; skipped files (with ``skip``)."""
    defaults: dict[str, list[str]] = {}
    problems: list[tuple[Path, str]] = []
    images: list[_Image] = []
    for item in slices:
        try:
            if _is_enhanced(item.header):
                images.extend(_enhanced_images(item, defaults))
            elif _frames(item.header) > 1:
                raise _Unreadable(
                    item.path,
                    "multi-frame image without per-frame functional groups (not Enhanced CT), not supported",
                )
            else:
                images.append(_classic_image(item, defaults))
        except _Unreadable as exc:
            problems.append((exc.path, exc.reason))
        except Exception as exc:  # noqa: BLE001 - pydicom converts values lazily; whatever a damaged one raises
            problems.append((item.path, _unexpected(exc)))
    if images:
        problems.extend(_inconsistent(images))
    _handle_problems(problems, skip, notes, action="skipped")
    skipped = {path for path, _ in problems}
    images = [image for image in images if image.path not in skipped]
    for message, labels in defaults.items():
        labels = [label for label in labels if label.split(" frame ")[0] not in {p.name for p in skipped}]
        if labels:
            shown = ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
            notes.append(f"{images[0].path.parent if images else ''}: {message} ({shown})")
    if len(images) < 2:
        raise DicomReadError(f"{slices[0].path.parent}: fewer than 2 readable images left in the series")
    normal = np.cross(images[0].orientation[:3], images[0].orientation[3:])
    along = np.asarray([image.position @ normal for image in images])
    order = np.argsort(along, kind="stable")
    return [images[i] for i in order], sorted(skipped)


def _check_spacing(folder: Path, images: list[_Image], skipped: list[Path]) -> float:
    """The slice increment in mm, after checking for duplicates, gaps, uneven spacing and tilt."""
    normal = np.cross(images[0].orientation[:3], images[0].orientation[3:])
    positions = np.stack([image.position for image in images])
    along = positions @ normal
    steps = np.diff(along)
    duplicated = np.flatnonzero(steps < 1e-3)
    if duplicated.size:
        i = int(duplicated[0])
        raise DicomReadError(
            f"{folder}: duplicated slice position {along[i]:.2f} mm in {images[i].label} and "
            f"{images[i + 1].label} ({duplicated.size} duplicate(s))"
        )
    increment = float(np.median(steps))
    gaps = np.flatnonzero(steps > GAP_FACTOR * increment)
    if gaps.size:
        i = int(gaps[0])
        missing = round(steps[i] / increment) - 1
        cause = f"; skipped as unreadable: {', '.join(path.name for path in skipped)}" if skipped else ""
        raise DicomReadError(
            f"{folder}: missing slices: a {steps[i]:.2f} mm gap between {along[i]:.2f} "
            f"and {along[i + 1]:.2f} mm "
            f"(files {images[i].label}, {images[i + 1].label}), about {missing} slice(s) missing "
            f"at a {increment:.2f} mm increment{cause}"
        )
    deviation = np.abs(steps - increment)
    worst = int(np.argmax(deviation))
    if deviation[worst] > max(SPACING_TOLERANCE_MM, SPACING_TOLERANCE_FRACTION * increment):
        raise DicomReadError(
            f"{folder}: uneven slice spacing: increments range from {steps.min():.3f} "
            f"to {steps.max():.3f} mm, "
            f"up to {deviation[worst]:.3f} mm from the median {increment:.3f} mm (between "
            f"{images[worst].label} and {images[worst + 1].label})"
        )
    # In-plane offsets change by the same step from slice to slice, by zero without gantry tilt; one slice off
    # that line has a damaged position, which would otherwise read as tilt or be scored shifted.
    row, col = images[0].orientation[:3], images[0].orientation[3:]
    offsets = np.stack([positions @ row, positions @ col], axis=1)
    step = np.median(np.diff(offsets, axis=0), axis=0)
    residual = offsets - np.arange(len(images))[:, None] * step
    off_line = np.linalg.norm(residual - np.median(residual, axis=0), axis=1)
    worst = int(np.argmax(off_line))
    if off_line[worst] > max(SPACING_TOLERANCE_MM, SPACING_TOLERANCE_FRACTION * increment):
        raise DicomReadError(
            f"{images[worst].path}: {_where(images[worst].label, images[worst].path)}ImagePositionPatient is "
            f"{off_line[worst]:.3f} mm off the line of the other slices' positions in the image plane "
            "(a damaged position?)"
        )
    tilt = axis_angle_deg(positions[-1] - positions[0], normal)
    gantry = _float(images[0].header, "GantryDetectorTilt") or 0.0
    tilt = max(tilt, abs(gantry))
    if tilt > ANGLE_TOLERANCE_DEG:
        raise DicomReadError(
            f"{folder}: gantry tilt of {tilt:.1f} degrees (slices are sheared); resample to an untilted "
            "grid before scoring"
        )
    return increment


def _coverage_notes(folder: Path, images: list[_Image]) -> list[str]:
    """Warnings where the series' own headers promise slices that are not there (an end slice missing)."""
    notes = []
    numbers = [image.instance_number for image in images]
    if all(n is not None for n in numbers) and len(set(numbers)) == len(numbers):
        steps = set(np.diff(np.asarray(numbers, dtype=int)).tolist())
        low = min(n for n in numbers if n is not None)
        if steps in ({1}, {-1}) and low > 1:
            end = images[0] if numbers[0] == low else images[-1]
            absent = "slice 1" if low == 2 else f"slices 1-{low - 1}"
            notes.append(
                f"{folder}: InstanceNumbers run {low}-{low + len(numbers) - 1} in slice order, so {absent} "
                f"beyond {end.label} at the {'lower' if end is images[0] else 'upper'} end may be missing"
            )
    expected = _float(images[0].header, "ImagesInAcquisition")
    acquisitions = {_text(image.header, "AcquisitionNumber") for image in images}
    if expected is not None and len(acquisitions) == 1 and int(expected) > len(images):
        notes.append(
            f"{folder}: ImagesInAcquisition is {int(expected)} but the series has {len(images)} slice(s); "
            "slices may be missing"
        )
    return notes


def _content_notes(folder: Path, images: list[_Image]) -> list[str]:
    """Warnings about values that change what the HU mean: per-slice rescale, multi-energy images."""
    notes = []
    rescale = Counter((image.slope, image.intercept) for image in images)
    if len(rescale) > 1:
        (slope, intercept), n = rescale.most_common(1)[0]
        odd = [image.label for image in images if (image.slope, image.intercept) != (slope, intercept)]
        notes.append(
            f"{folder}: rescale slope/intercept differ between slices: {', '.join(odd[:3])}"
            f"{' and more' if len(odd) > 3 else ''} differ from the {slope:g}/{intercept:g} of {n} slice(s); "
            "each slice is converted with its own values"
        )
    types = {value for image in images for value in image.image_type} & _NON_120KVP_IMAGE_TYPES
    energy = None
    for source in (
        images[0].header,
        _functional_item(images[0].header, 0, "MultienergyCTProcessingSequence"),
    ):
        energy = energy or (_float(source, "MonoenergeticEnergyEquivalent") if source is not None else None)
    if types or energy is not None:
        parts = [f"image type {', '.join(sorted(types))}"] if types else []
        parts += [f"monoenergetic energy {energy:g} keV"] if energy is not None else []
        what = " and ".join(parts)
        notes.append(
            f"{folder}: {what}: a virtual monoenergetic or other multi-energy reconstruction, not a "
            f"{AGATSTON_KVP:g} kVp image; Agatston's 130 HU threshold may not apply"
        )
    rescale_type = _text(images[0].header, "RescaleType")
    transformation = _functional_item(images[0].header, 0, "PixelValueTransformationSequence")
    if transformation is not None:
        rescale_type = _text(transformation, "RescaleType") or rescale_type
    if rescale_type and rescale_type.upper() != "HU":
        notes.append(
            f"{folder}: RescaleType is {rescale_type!r}, not HU: the values may not be Hounsfield units"
        )
    return notes


def _decode(path: Path, images: list[_Image], notes: list[str]) -> np.ndarray:
    """Stored pixel values ``(frames, rows, cols)`` of one file, after checking the pixel data.

    No rescale is applied.
    """
    first = images[0]
    rows, cols = first.size
    allocated, stored, signed = first.bits
    frames = len(images) if first.frame is None else _frames(first.header)
    ds = _dcmread(path)
    if "PixelData" not in ds:
        raise _Unreadable(path, "holds no pixel data")
    element = ds.get_item("PixelData")
    length = getattr(element, "length", None)
    offset = getattr(element, "value_tell", None)
    size = _size(path)
    if (
        length is not None
        and length != 0xFFFFFFFF
        and offset is not None
        and size is not None
        and offset + length > size
    ):
        raise _Unreadable(
            path, f"PixelData declares {length} bytes but only {size - offset} follow in the file"
        )
    encapsulated = bool(getattr(element, "is_undefined_length", False)) or length == 0xFFFFFFFF
    meta = getattr(ds, "file_meta", None)
    syntax = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else UID("")
    problem = _file_meta_length_problem(path)
    if problem is not None:
        notes.append(f"{path}: {problem}; read by its elements")
    if syntax and not syntax.is_transfer_syntax:
        raise _Unreadable(path, f"unknown transfer syntax {syntax}")
    compressed = bool(syntax) and syntax.is_compressed
    if compressed and not encapsulated:
        raise _Unreadable(
            path,
            f"transfer syntax {syntax.name} says compressed, but the pixel data is not "
            "encapsulated (uncompressed data under a wrong transfer syntax?)",
        )
    if not compressed and encapsulated:
        raise _Unreadable(
            path,
            f"pixel data is encapsulated (compressed) but the transfer syntax "
            f"{syntax.name or '(none)'} is not a compressed one",
        )
    if not compressed:
        raw = ds.PixelData
        expected = frames * rows * cols * allocated // 8
        if len(raw) < expected:
            raise _Unreadable(
                path,
                f"pixel data truncated ({len(raw)} bytes for {frames}x{rows}x{cols} pixels "
                f"of {allocated} bits)",
            )
        if len(raw) > expected + 1:
            raise _Unreadable(
                path,
                f"pixel data is {len(raw)} bytes, {expected} expected for {frames}x{rows}x"
                f"{cols} pixels of {allocated} bits (wrong Rows, Columns or BitsAllocated?)",
            )
        order = ">" if syntax == "1.2.840.10008.1.2.2" else "<"
        dtype = np.dtype(f"{order}{'i' if signed else 'u'}{allocated // 8}")
        array = np.frombuffer(raw, dtype=dtype, count=frames * rows * cols).reshape(frames, rows, cols)
    else:
        # pydicom's decoders need these; a missing one was defaulted (with a warning) when the header was
        # checked.
        ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation = allocated, stored, int(signed)
        try:
            array = np.asarray(ds.pixel_array)
        except Exception as exc:  # noqa: BLE001 - decoders raise many types; all mean "cannot decode this file"
            raise _Unreadable(path, f"cannot decode pixel data ({syntax.name}): {_first_line(exc)}") from None
        array = array.reshape((1, *array.shape)) if array.ndim == 2 else array
        if array.shape != (frames, rows, cols):
            raise _Unreadable(path, f"pixel data has shape {array.shape}, expected {frames}x{rows}x{cols}")
    if stored < allocated:
        if signed:
            shift = allocated - stored
            array = (array.astype(array.dtype.newbyteorder("=")) << shift) >> shift
        else:
            array = array & ((1 << stored) - 1)
    return array


def _to_hu(array: np.ndarray, image: _Image) -> np.ndarray:
    if image.modality_lut:
        from pydicom.pixels import apply_modality_lut

        values = np.asarray(apply_modality_lut(array, image.header))
    elif image.slope == 1.0 and image.intercept == int(image.intercept) and abs(image.intercept) < 1e6:
        # int32 holds every 8- and 16-bit stored value plus an intercept; 32-bit data needs int64.
        values = array.astype(np.int64 if array.dtype.itemsize > 2 else np.int32) + int(image.intercept)
    else:
        values = np.rint(array * image.slope + image.intercept)
    low, high = values.min(), values.max()
    if not (np.iinfo(np.int16).min <= low and high <= np.iinfo(np.int16).max):
        raise _Unreadable(
            image.path,
            f"{_where(image.label, image.path)}HU values {low:g}..{high:g} after rescale do not fit in int16",
        )
    return values


def _read_series(
    folder: Path, slices: list[_Slice], *, skip_unreadable: bool, notes: list[str], skipped: list[Path]
) -> CTVolume:
    images, dropped = _images(slices, skip_unreadable, notes)
    skipped = [*skipped, *dropped]
    _check_spacing(folder, images, skipped)
    by_file: dict[Path, list[int]] = {}
    for i, image in enumerate(images):
        by_file.setdefault(image.path, []).append(i)
    rows, cols = images[0].size
    hu = np.empty((len(images), rows, cols), dtype=np.int16)
    keep = np.ones(len(images), dtype=bool)
    problems = []
    for path, indices in by_file.items():
        try:
            stored = _decode(path, [images[i] for i in indices], notes)
            for i in indices:
                frame = images[i].frame or 0
                hu[i] = _to_hu(stored[frame], images[i])
        except (_Unreadable, DicomReadError) as exc:
            reason = exc.reason if isinstance(exc, _Unreadable) else str(exc).removeprefix(f"{path}: ")
            problems.append((path, reason))
            keep[indices] = False
        except Exception as exc:  # noqa: BLE001 - pydicom converts values lazily; whatever a damaged one raises
            problems.append((path, _unexpected(exc)))
            keep[indices] = False
    _handle_problems(problems, skip_unreadable, notes, action="skipped")
    if problems:
        images = [image for image, kept in zip(images, keep, strict=True) if kept]
        hu = hu[keep]
        skipped = [*skipped, *(path for path, _ in problems)]
        if len(images) < 2:
            raise DicomReadError(f"{folder}: fewer than 2 readable images left in the series")
    increment = _check_spacing(folder, images, skipped)
    notes.extend(_coverage_notes(folder, images))
    notes.extend(_content_notes(folder, images))
    first = images[0]
    row, col = first.orientation[:3], first.orientation[3:]
    header = first.header
    return CTVolume(
        hu=hu,
        spacing=(increment, *first.pixel_spacing),
        origin=tuple(first.position),  # type: ignore[arg-type]
        direction=np.stack([row, col, np.cross(row, col)], axis=1),
        slice_thickness_mm=first.thickness,
        kvp=first.kvp,
        study_uid=_text(header, "StudyInstanceUID") or None,
        series_uid=_text(header, "SeriesInstanceUID") or None,
        source=str(folder),
        modality=_text(header, "Modality") or None,
        manufacturer=_text(header, "Manufacturer") or None,
        patient_id=_text(header, "PatientID") or None,
        series_description=_text(header, "SeriesDescription") or None,
        dicom=_dicom_source(images),
    )


def _dicom_source(images: list[_Image]) -> DicomSource:
    """Identifiers and headers of the images kept in the volume, for the DICOM exports."""
    headers: dict[Path, Dataset] = {}
    for image in images:
        headers.setdefault(image.path, image.header)
    return DicomSource(
        images=tuple(
            SourceImage(
                sop_class_uid=_text(image.header, "SOPClassUID"),
                sop_instance_uid=_text(image.header, "SOPInstanceUID"),
                frame=None if image.frame is None else image.frame + 1,
                position_mm=(float(image.position[0]), float(image.position[1]), float(image.position[2])),
                orientation=tuple(float(v) for v in image.orientation),  # type: ignore[arg-type]
                pixel_spacing_mm=image.pixel_spacing,
                rows=image.size[0],
                columns=image.size[1],
            )
            for image in images
        ),
        headers=tuple(headers.values()),
    )
