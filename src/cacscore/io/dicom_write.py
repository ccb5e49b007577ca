"""Writing a CT volume as a DICOM series (one CT Image Storage file per slice).

Used to build test series and synthetic phantoms that look like what a
scanner exports: realistic tags, stored values with a rescale intercept,
signed or unsigned storage, and optionally compressed pixel data.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from cacscore import __version__
from cacscore.errors import InvalidInputError
from cacscore.io.jpeg_lossless import encode_jpeg_lossless
from cacscore.io.volume import CTVolume

#: Transfer syntax names accepted by :func:`write_dicom_series` (a UID string works too).
TRANSFER_SYNTAXES: dict[str, UID] = {
    "explicit vr little endian": ExplicitVRLittleEndian,
    "implicit vr little endian": ImplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg lossless": JPEGLosslessSV1,
    "jpeg-ls lossless": JPEGLSLossless,
    "jpeg 2000 lossless": JPEG2000Lossless,
}
_COMPRESSED = {RLELossless, JPEGLSLossless, JPEG2000Lossless}


def _transfer_syntax(name: str | None) -> UID:
    if name is None:
        return ExplicitVRLittleEndian
    key = name.strip().lower()
    if key in TRANSFER_SYNTAXES:
        return TRANSFER_SYNTAXES[key]
    for uid in TRANSFER_SYNTAXES.values():
        if key == uid:
            return uid
    raise InvalidInputError(
        f"transfer_syntax {name!r} cannot be written; use one of {sorted(TRANSFER_SYNTAXES)} or their UIDs "
    )


def _stored_values(hu: np.ndarray, *, signed: bool, slope: float, intercept: float) -> np.ndarray:
    if slope == 1.0 and intercept == int(intercept) and np.issubdtype(hu.dtype, np.integer):
        rounded = hu.astype(np.int32) - int(intercept)  # the common case, without float temporaries
    else:
        stored = (hu.astype(np.float64) - intercept) / slope
        rounded = np.rint(stored)
        if not np.allclose(stored, rounded, atol=1e-6):
            raise InvalidInputError(
                f"rescale_slope {slope:g} and rescale_intercept {intercept:g} cannot represent the HU exactly"
            )
    dtype = np.int16 if signed else np.uint16
    info = np.iinfo(dtype)
    if rounded.size and (rounded.min() < info.min or rounded.max() > info.max):
        raise InvalidInputError(
            f"HU {int(hu.min())}..{int(hu.max())} with rescale_intercept {intercept:g} give stored values "
            f"{int(rounded.min())}..{int(rounded.max())} outside {dtype.__name__}; "
            "change signed or the intercept"
        )
    return rounded.astype(dtype)


def write_dicom_series(
    volume: CTVolume,
    folder: str | Path,
    *,
    manufacturer: str | None = None,
    transfer_syntax: str | None = None,
    signed: bool = True,
    rescale_intercept: float = -1024.0,
    rescale_slope: float = 1.0,
    bits_stored: int = 16,
    shuffle_names: bool = False,
    shuffle_instance_numbers: bool = False,
    uid_seed: str | None = None,
    extra_tags: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``volume`` as a DICOM CT series, one file per slice.

    Parameters
    ----------
    volume : CTVolume
        Volume to write. Its geometry becomes ImagePositionPatient /
        ImageOrientationPatient / PixelSpacing; kVp (default 120), slice
        thickness (default the increment), identifiers and description are
        used when set.
    folder : str or Path
        Output folder, created if missing; it must not hold ``.dcm`` files.
    manufacturer : str, optional
        Manufacturer tag; defaults to ``volume.manufacturer`` or "cacscore".
    transfer_syntax : str, optional
        ``"explicit VR little endian"`` (default), ``"implicit VR little
        endian"``, ``"RLE"``, ``"JPEG lossless"`` (process 14, selection
        value 1), ``"JPEG-LS lossless"``, ``"JPEG 2000 lossless"`` or one of
        their UIDs.
    signed : bool
        PixelRepresentation 1 (int16) or 0 (uint16).
    rescale_intercept, rescale_slope : float
        HU = stored x slope + intercept.
    bits_stored : int
        BitsStored (12-16); the stored values must fit.
    shuffle_names : bool
        Name the files in a random order (instead of slice order).
    shuffle_instance_numbers : bool
        Give InstanceNumbers in a random order, to test readers that must
        sort by position.
    uid_seed : str, optional
        Makes UIDs and shuffles deterministic (same seed, same UIDs).
    extra_tags : mapping of str to value, optional
        More attributes by keyword (e.g. ``{"PatientName": "X"}``); they
        override the defaults.

    Returns
    -------
    list of Path
        The files written, in slice order (axis 0 of ``volume.hu``).

    Raises
    ------
    InvalidInputError
        HU not representable with the chosen storage, unknown transfer
        syntax or tag keyword, or an output folder already holding DICOM files.
    """
    folder = Path(folder)
    syntax = _transfer_syntax(transfer_syntax)
    if not 8 < bits_stored <= 16:
        raise InvalidInputError(f"bits_stored must be 9-16, got {bits_stored}")
    if folder.exists() and any(folder.glob("*.dcm")):
        raise InvalidInputError(f"{folder}: already holds .dcm files; write the series to an empty folder")
    stored = _stored_values(
        np.asarray(volume.hu), signed=signed, slope=rescale_slope, intercept=rescale_intercept
    )
    if bits_stored < 16 and stored.size:
        limit_low = -(1 << (bits_stored - 1)) if signed else 0
        limit_high = (1 << (bits_stored - 1)) - 1 if signed else (1 << bits_stored) - 1
        if stored.min() < limit_low or stored.max() > limit_high:
            raise InvalidInputError(f"stored values do not fit in bits_stored={bits_stored}")
    rng = random.Random(uid_seed)

    def uid(kind: str) -> UID:
        return generate_uid(entropy_srcs=[uid_seed, kind]) if uid_seed is not None else generate_uid()

    n_slices, rows, cols = volume.hu.shape
    study_uid = volume.study_uid or uid("study")
    series_uid = volume.series_uid or uid("series")
    frame_uid = uid("frame")
    dz, dy, dx = volume.spacing
    direction = volume.direction
    affine = volume.affine
    now = datetime.datetime(2024, 1, 1, 8, 0, 0) if uid_seed is not None else datetime.datetime.now()
    names = list(range(n_slices))
    numbers = list(range(1, n_slices + 1))
    if shuffle_names:
        rng.shuffle(names)
    if shuffle_instance_numbers:
        rng.shuffle(numbers)

    base = Dataset()
    base.SOPClassUID = CTImageStorage
    base.SpecificCharacterSet = "ISO_IR 100"
    base.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    base.StudyDate = base.SeriesDate = base.ContentDate = now.strftime("%Y%m%d")
    base.StudyTime = base.SeriesTime = base.ContentTime = now.strftime("%H%M%S")
    base.Modality = volume.modality or "CT"
    base.Manufacturer = manufacturer or volume.manufacturer or "cacscore"
    base.ManufacturerModelName = "cacscore synthetic"
    base.SoftwareVersions = __version__
    base.PatientName = "Anonymous"
    base.PatientID = volume.patient_id or "ANON"
    base.PatientBirthDate = ""
    base.PatientSex = ""
    base.PatientPosition = "HFS"
    base.StudyInstanceUID = study_uid
    base.SeriesInstanceUID = series_uid
    base.FrameOfReferenceUID = frame_uid
    base.StudyID = "1"
    base.SeriesNumber = 2
    base.AcquisitionNumber = 1
    thickness = volume.slice_thickness_mm if volume.slice_thickness_mm is not None else dz
    base.SeriesDescription = volume.series_description or f"Calcium score {thickness:g} mm"
    base.BodyPartExamined = "HEART"
    base.KVP = volume.kvp if volume.kvp is not None else 120
    base.SliceThickness = thickness
    base.SpacingBetweenSlices = dz
    base.ConvolutionKernel = "B35f"
    base.GantryDetectorTilt = 0
    base.ImageOrientationPatient = [round(float(v), 8) for v in (*direction[:, 0], *direction[:, 1])]
    base.PixelSpacing = [dy, dx]
    base.SamplesPerPixel = 1
    base.PhotometricInterpretation = "MONOCHROME2"
    base.Rows = rows
    base.Columns = cols
    base.BitsAllocated = 16
    base.BitsStored = bits_stored
    base.HighBit = bits_stored - 1
    base.PixelRepresentation = 1 if signed else 0
    base.RescaleIntercept = rescale_intercept
    base.RescaleSlope = rescale_slope
    base.RescaleType = "HU"
    base.WindowCenter = 40
    base.WindowWidth = 400
    for keyword, value in (extra_tags or {}).items():
        try:
            setattr(base, keyword, value)
        except (ValueError, TypeError, AttributeError) as exc:
            raise InvalidInputError(f"extra_tags: cannot set {keyword}={value!r}: {exc}") from None

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(n_slices):
        ds = Dataset()
        ds.update(base)
        sop_uid = uid(f"sop{index}")
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = numbers[index]
        position = affine[:3, :3] @ np.array([index, 0.0, 0.0]) + affine[:3, 3]
        ds.ImagePositionPatient = [round(float(v), 6) for v in position]
        ds.SliceLocation = round(float(position[2]), 6)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = generate_uid(entropy_srcs=["cacscore", __version__])
        ds.file_meta = meta
        pixels = np.ascontiguousarray(stored[index])
        ds.PixelData = pixels.tobytes()
        if syntax == JPEGLosslessSV1:
            # pydicom has no encoder for this syntax; cacscore's own writes the JPEG stream.
            ds.PixelData = encapsulate([encode_jpeg_lossless(pixels, bits_stored)])
            ds["PixelData"].VR = "OB"
            ds["PixelData"].is_undefined_length = True
            meta.TransferSyntaxUID = syntax
        elif syntax in _COMPRESSED:
            try:
                ds.compress(syntax, pixels, generate_instance_uid=False)
            except (RuntimeError, ValueError, ImportError) as exc:
                raise InvalidInputError(f"cannot encode pixel data as {syntax.name}: {exc}") from None
        else:
            meta.TransferSyntaxUID = syntax
        path = folder / f"IM{names[index] + 1:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_enhanced_ct(
    volume: CTVolume,
    path: str | Path,
    *,
    rescale_intercept: float = -1024.0,
    rescale_slope: float = 1.0,
    per_frame_rescale: bool = False,
    reverse_frames: bool = False,
    uid_seed: str | None = None,
    extra_tags: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``volume`` as one Enhanced CT Image Storage file (multi-frame, functional groups).

    Orientation, pixel measures and (by default) the rescale are in the
    shared functional groups, each frame's position in its own, as scanners
    that export Enhanced CT write them.

    Parameters
    ----------
    volume : CTVolume
        Volume to write; one frame per slice (axis 0).
    path : str or Path
        Output file; it must not exist.
    rescale_intercept, rescale_slope : float
        HU = stored x slope + intercept (stored values are signed 16-bit).
    per_frame_rescale : bool
        Put the Pixel Value Transformation in every frame's functional
        groups instead of the shared ones.
    reverse_frames : bool
        Store the frames from the last slice to the first, so that a reader
        must sort them by position.
    uid_seed : str, optional
        Makes UIDs deterministic.
    extra_tags : mapping of str to value, optional
        More top-level attributes by keyword; they override the defaults.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    InvalidInputError
        HU not representable with the rescale, an unknown tag keyword, or
        an existing ``path``.
    """
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedCTImageStorage

    path = Path(path)
    if path.exists():
        raise InvalidInputError(f"{path}: exists already; write the Enhanced CT to a new file")
    stored = _stored_values(
        np.asarray(volume.hu), signed=True, slope=rescale_slope, intercept=rescale_intercept
    )

    def uid(kind: str) -> UID:
        return generate_uid(entropy_srcs=[uid_seed, kind]) if uid_seed is not None else generate_uid()

    n_slices, rows, cols = volume.hu.shape
    dz, dy, dx = volume.spacing
    affine = volume.affine
    thickness = volume.slice_thickness_mm if volume.slice_thickness_mm is not None else dz
    now = datetime.datetime(2024, 1, 1, 8, 0, 0) if uid_seed is not None else datetime.datetime.now()
    ds = Dataset()
    ds.SOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = uid("sop")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.Modality = volume.modality or "CT"
    ds.Manufacturer = volume.manufacturer or "cacscore"
    ds.ManufacturerModelName = "cacscore synthetic"
    ds.SoftwareVersions = __version__
    ds.PatientName = "Anonymous"
    ds.PatientID = volume.patient_id or "ANON"
    ds.StudyInstanceUID = volume.study_uid or uid("study")
    ds.SeriesInstanceUID = volume.series_uid or uid("series")
    ds.FrameOfReferenceUID = uid("frame")
    ds.SeriesNumber = 3
    ds.InstanceNumber = 1
    ds.SeriesDescription = volume.series_description or f"Calcium score {thickness:g} mm (Enhanced CT)"
    ds.KVP = volume.kvp if volume.kvp is not None else 120
    ds.ContentQualification = "PRODUCT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = n_slices
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1

    def item(**values: Any) -> Dataset:
        element = Dataset()
        for keyword, value in values.items():
            setattr(element, keyword, value)
        return element

    rescale = item(RescaleIntercept=rescale_intercept, RescaleSlope=rescale_slope, RescaleType="HU")
    shared = item(
        PixelMeasuresSequence=Sequence([item(PixelSpacing=[dy, dx], SliceThickness=thickness)]),
        PlaneOrientationSequence=Sequence(
            [
                item(
                    ImageOrientationPatient=[
                        round(float(v), 8) for v in (*volume.direction[:, 0], *volume.direction[:, 1])
                    ]
                )
            ]
        ),
        CTXRayDetailsSequence=Sequence([item(KVP=ds.KVP)]),
        CTImageFrameTypeSequence=Sequence([item(FrameType=["ORIGINAL", "PRIMARY", "AXIAL", "NONE"])]),
    )
    if not per_frame_rescale:
        shared.PixelValueTransformationSequence = Sequence([rescale])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    order = list(range(n_slices))[::-1] if reverse_frames else list(range(n_slices))
    frames = []
    for index in order:
        position = affine[:3, :3] @ np.array([index, 0.0, 0.0]) + affine[:3, 3]
        frame = item(
            PlanePositionSequence=Sequence(
                [item(ImagePositionPatient=[round(float(v), 6) for v in position])]
            ),
            FrameContentSequence=Sequence([item(InStackPositionNumber=index + 1, StackID="1")]),
        )
        if per_frame_rescale:
            frame.PixelValueTransformationSequence = Sequence(
                [item(**{k: rescale[k].value for k in ("RescaleIntercept", "RescaleSlope", "RescaleType")})]
            )
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    for keyword, value in (extra_tags or {}).items():
        try:
            setattr(ds, keyword, value)
        except (ValueError, TypeError, AttributeError) as exc:
            raise InvalidInputError(f"extra_tags: cannot set {keyword}={value!r}: {exc}") from None
    ds.PixelData = np.ascontiguousarray(stored[order]).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=["cacscore", __version__])
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
