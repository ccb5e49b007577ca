"""DICOM Segmentation of the calcium label mask, one segment per artery, on the source series' grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cacscore.errors import InvalidInputError
from cacscore.export.codes import ARTERY_SITES, SEGMENT_CATEGORY, SEGMENT_TYPE
from cacscore.export.common import (
    Equipment,
    completed_headers,
    person_name,
    require_dicom_source,
    source_names_as_they_are,
)
from cacscore.labels import ARTERY_NAMES, MAJORITY_ORDER

if TYPE_CHECKING:
    import highdicom as hd

    from cacscore.io.volume import CTVolume, SourceImage

#: A source pixel maps to a voxel centre when its fractional index is this close (voxels) to an integer:
#: five times the slice position jitter the DICOM reader accepts (1 % of the increment), far from the
#: half voxel where the nearest slice would become ambiguous.
GRID_TOLERANCE = 0.05


@dataclass(frozen=True)
class Algorithm:
    """The algorithm that made the mask: name and version, e.g. the model's (``AUTOMATIC`` segments).

    ``manual=True`` marks a reader's mask or corrections (``MANUAL`` segments, no algorithm identification).
    """

    name: str
    version: str
    manual: bool = False


def source_frames(volume: CTVolume, labels: np.ndarray) -> list[tuple[SourceImage, np.ndarray]]:
    """The label mask resliced onto each source image's own pixel grid, matched by patient position.

    Parameters
    ----------
    volume : CTVolume
        Volume read from DICOM (``volume.dicom`` set).
    labels : (Z, Y, X) ndarray of int
        Label mask on the volume's grid (project codes 0-5).

    Returns
    -------
    list of (SourceImage, (rows, columns) ndarray of uint8)
        One entry per source image, in ``volume.dicom.images`` order: its labels pixel by pixel.

    Raises
    ------
    InvalidInputError
        If the mask's shape differs from the volume's, or a source image's pixels do not fall on
        voxel centres of the volume (the volume is not that series' grid).
    """
    source = require_dicom_source(volume)
    labels = np.asarray(labels)
    if labels.shape != volume.shape:
        raise InvalidInputError(f"label mask shape {labels.shape} does not match volume shape {volume.shape}")
    frames = []
    for image in source.images:
        row_dir = np.asarray(image.orientation[:3])
        col_dir = np.asarray(image.orientation[3:])
        dr, dc = image.pixel_spacing_mm
        # PS3.3 C.7.6.2.1.1: pixel (r, c) lies at position + c * dc * row direction
        # + r * dr * column direction.
        corners = np.asarray(image.position_mm) + np.array([[0.0, 0.0], [dr, 0.0], [0.0, dc]]) @ np.stack(
            [col_dir, row_dir]
        )
        origin, step_r, step_c = volume.patient_to_index(corners)
        # The map from (r, c) to voxel indices is affine: it hits voxel centres everywhere when its origin
        # and both steps are whole numbers (the steps to within the tolerance spread over the image).
        affine = np.stack([origin, step_r - origin, step_c - origin])
        whole = np.rint(affine)
        spread = np.array([1.0, image.rows, image.columns])[:, None]
        if (np.abs(affine - whole) * spread).max() > GRID_TOLERANCE:
            raise InvalidInputError(
                f"{volume.source or 'volume'}: source image {image.sop_instance_uid} "
                "does not lie on the volume's grid"
            )
        start, down, right = whole.astype(np.int64)
        zyx = (
            start
            + np.arange(image.rows)[:, None, None] * down
            + np.arange(image.columns)[None, :, None] * right
        )
        if (zyx < 0).any() or (zyx >= np.asarray(volume.shape)).any():
            raise InvalidInputError(
                f"{volume.source or 'volume'}: source image {image.sop_instance_uid} lies outside the volume"
            )
        frames.append((image, labels[zyx[..., 0], zyx[..., 1], zyx[..., 2]].astype(np.uint8)))
    return frames


#: Suffix of the label of a segment of reader corrections next to the algorithm's segment of an artery.
READER_SUFFIX = ", reader"
#: Bit of the combined code (artery code | MANUAL_BIT) that marks a reader's voxel while reslicing.
_MANUAL_BIT = 8


def build_segmentation(
    volume: CTVolume,
    labels: np.ndarray,
    algorithm: Algorithm,
    *,
    manual: np.ndarray | None = None,
    reader: str | None = None,
    series_uid: str | None = None,
    series_number: int = 901,
    equipment: Equipment | None = None,
) -> hd.seg.Segmentation | None:
    """DICOM Segmentation (binary) of the calcium mask, one segment per artery present.

    Segments are numbered 1.. in the order LM, LAD, LCX, RCA, unspecified (arteries without calcium
    have none); each carries category "Morphologically abnormal structure", type "Calcified
    atheromatous plaque", the artery as anatomic region, and the algorithm (``AUTOMATIC``) or
    ``MANUAL``. Frames reference their source image (DerivationImageSequence), matched by position.

    With ``manual`` (a reviewed result), an artery's voxels that a reader added or changed form a
    segment of their own, ``MANUAL``, labelled e.g. ``LAD calcium, reader``, right after the artery's
    ``AUTOMATIC`` segment (which keeps the algorithm identification); either is left out when empty.

    Parameters
    ----------
    volume : CTVolume
        Volume read from DICOM.
    labels : (Z, Y, X) ndarray of int
        Label mask on the volume's grid (0 background, 1 unspecified, 2 LM, 3 LAD, 4 LCX, 5 RCA).
    algorithm : Algorithm
        What made the mask (with ``manual``: what made its voxels outside ``manual``).
    manual : (Z, Y, X) ndarray of bool, optional
        Voxels set by a reader (added, reassigned or trimmed lesions).
    reader : str, optional
        The reader (DICOM person name): the SEG's content creator, named in each manual segment's
        description.
    series_uid : str, optional
        SeriesInstanceUID of the new series (default: a new UID).
    series_number : int
        SeriesNumber of the new series.
    equipment : Equipment, optional
        Manufacturer, model name and software version written (default: cacscore's).

    Returns
    -------
    highdicom.seg.Segmentation or None
        None when the mask holds no calcium (a Segmentation needs at least one segment).

    Raises
    ------
    InvalidInputError
        If the volume was not read from DICOM or the mask (or ``manual``) does not fit it (see
        :func:`source_frames`).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    equipment = equipment or Equipment()
    typed = " ".join(str(reader).replace("^", " ").split()) if reader else None
    reader = person_name(reader) if reader else None
    labels = np.asarray(labels)
    if manual is not None:
        manual = np.asarray(manual, dtype=bool)
        if manual.shape != labels.shape:
            raise InvalidInputError(
                f"manual mask shape {manual.shape} does not match label mask {labels.shape}"
            )
        # One reslicing for both: the artery code in the low bits, the reader's mark in _MANUAL_BIT.
        labels = np.where(labels != 0, labels.astype(np.uint8) | (manual * _MANUAL_BIT).astype(np.uint8), 0)
    elif algorithm.manual:
        labels = np.where(labels != 0, labels.astype(np.uint8) | _MANUAL_BIT, 0)
    frames = source_frames(volume, labels)
    # (artery code, by the reader) in segment order; a whole manual mask keeps the plain labels.
    keys = [(code, by_reader) for code in MAJORITY_ORDER for by_reader in (False, True)]
    values = {key: key[0] | (_MANUAL_BIT if key[1] else 0) for key in keys}
    present = [key for key in keys if any((pixels == values[key]).any() for _, pixels in frames)]
    if not present:
        return None
    identification = hd.AlgorithmIdentificationSequence(
        name=algorithm.name, family=codes.cid7162.ArtificialIntelligence, version=algorithm.version
    )

    def label(code: int, by_reader: bool) -> str:
        split = by_reader and manual is not None
        return f"{ARTERY_NAMES[code]} calcium{READER_SUFFIX if split else ''}"

    descriptions = []
    for number, (code, by_reader) in enumerate(present, start=1):
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label(code, by_reader),
            segmented_property_category=SEGMENT_CATEGORY,
            segmented_property_type=SEGMENT_TYPE,
            algorithm_type=(
                hd.seg.SegmentAlgorithmTypeValues.MANUAL
                if by_reader
                else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
            ),
            algorithm_identification=None if by_reader else identification,
            tracking_uid=generate_uid(),
            tracking_id=label(code, by_reader),
            anatomic_regions=[ARTERY_SITES[code]],
        )
        if by_reader and reader:
            # Segment Description (0062,0006), type 3: who drew it (a manual segment has no algorithm).
            description.SegmentDescription = f"Added or changed by the reader {typed}"
        descriptions.append(description)
    # highdicom pairs pixel frames with source images: frame k of a single-frame series is source image k,
    # frame k of an Enhanced CT instance is its frame k + 1. Order the resliced frames the same way.
    by_key = {(image.sop_instance_uid, image.frame or 1): pixels for image, pixels in frames}
    rows, columns = frames[0][1].shape
    ordered = []
    headers = completed_headers(volume)
    for header in headers:
        n_frames = int(getattr(header, "NumberOfFrames", 1) or 1)
        for frame in range(1, n_frames + 1):
            key = (str(header.SOPInstanceUID), frame)  # type: ignore[attr-defined]
            ordered.append(by_key.get(key, np.zeros((rows, columns), np.uint8)))
    stack = np.stack(ordered)
    binary = np.stack([stack == values[key] for key in present], axis=-1).astype(np.uint8)
    with source_names_as_they_are():
        return _segmentation(
            headers, binary, descriptions, series_uid or generate_uid(), series_number, equipment, reader
        )


def segment_keys(segmentation: Any) -> dict[int, tuple[int, bool]]:
    """Segment number -> (artery label code, made by a reader) of a Segmentation written here.

    The artery is read from the segment's anatomic region (:data:`~cacscore.export.codes.ARTERY_SITES`),
    the maker from its algorithm type (``MANUAL``).

    Raises
    ------
    InvalidInputError
        If a segment's anatomic region is not one of the coronary sites.
    """
    code_of = {site.value: code for code, site in ARTERY_SITES.items()}
    keys = {}
    for item in segmentation.SegmentSequence:
        value = str(item.AnatomicRegionSequence[0].CodeValue)
        if value not in code_of:
            raise InvalidInputError(
                f"segment {item.SegmentNumber}: anatomic region {value} is not a coronary site"
            )
        keys[int(item.SegmentNumber)] = (code_of[value], str(item.SegmentAlgorithmType) == "MANUAL")
    return keys


def _segmentation(
    headers: list[Any],
    binary: np.ndarray,
    descriptions: list[Any],
    series_uid: str,
    series_number: int,
    equipment: Equipment,
    reader: str | None = None,
) -> hd.seg.Segmentation:
    import highdicom as hd
    from pydicom.uid import generate_uid

    return hd.seg.Segmentation(
        source_images=headers,
        pixel_array=binary,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=equipment.manufacturer,
        manufacturer_model_name=equipment.model_name,
        software_versions=equipment.software_version,
        device_serial_number="none",
        series_description="Coronary calcium segmentation",
        content_label="CALCIUM",
        content_description="Coronary artery calcium by artery",
        content_creator_name=reader,
    )
