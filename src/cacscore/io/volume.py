"""The canonical in-memory CT volume.

Every reader in :mod:`cacscore.io` returns a :class:`CTVolume`; every other
module works on its arrays. Geometry follows DICOM's patient coordinate
system (LPS: x to the patient's left, y posterior, z head-ward), in mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from cacscore.errors import InvalidInputError

Spacing = tuple[float, float, float]


@dataclass(frozen=True)
class SourceImage:
    """One 2-D image of the DICOM series a volume was read from (a classic file, or one Enhanced CT frame).

    Parameters
    ----------
    sop_class_uid, sop_instance_uid : str
        The image's SOPClassUID and SOPInstanceUID.
    frame : int or None
        1-based frame number in a multi-frame (Enhanced CT) instance; None for a single-frame image.
    position_mm : tuple of 3 float
        ImagePositionPatient (LPS, mm): centre of the image's first pixel.
    orientation : tuple of 6 float
        ImageOrientationPatient: LPS unit vectors along a row (columns increase), then along a column.
    pixel_spacing_mm : tuple of 2 float
        PixelSpacing ``(between rows, between columns)`` in mm.
    rows, columns : int
        Image size in pixels.
    """

    sop_class_uid: str
    sop_instance_uid: str
    frame: int | None
    position_mm: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    pixel_spacing_mm: tuple[float, float]
    rows: int
    columns: int


@dataclass
class DicomSource:
    """What the DICOM exports need of the series a volume was read from (see :mod:`cacscore.export`).

    Kept per source image and per file, not per array slice: slices are matched to
    source images by position, so reordering or flipping the array cannot mislabel them.

    Parameters
    ----------
    images : tuple of SourceImage
        Every image of the series that is in the volume, in no guaranteed order.
    headers : tuple of pydicom Dataset
        The header (no pixel data) of each source file, in the order of first appearance in ``images``:
        patient, study, equipment and frame of reference attributes are taken from them.
    """

    images: tuple[SourceImage, ...]
    headers: tuple[object, ...]


@dataclass
class CTVolume:
    """A CT series in Hounsfield units with its geometry and identifiers.

    Parameters
    ----------
    hu : (Z, Y, X) ndarray of int16
        Attenuation in HU. Axis 0 runs along the slice normal in increasing
        position order, axis 1 along image rows (top to bottom), axis 2
        along image columns (left to right).
    spacing : tuple of 3 float
        ``(dz, dy, dx)`` in mm. ``dz`` is the slice increment (distance
        between slice centres), not the slice thickness.
    origin : tuple of 3 float
        Patient (LPS) position in mm of the centre of voxel ``(0, 0, 0)``.
    direction : (3, 3) ndarray of float
        ITK convention: column 0 is the LPS unit vector along axis 2 (x,
        columns), column 1 along axis 1 (y, rows), column 2 along axis 0
        (z, slices). Identity for a plain axial series.
    slice_thickness_mm : float or None
        Nominal reconstructed slice thickness, if known.
    kvp : float or None
        Tube voltage in kV, if known.
    study_uid, series_uid : str or None
        DICOM StudyInstanceUID and SeriesInstanceUID, if known.
    source : str or None
        Path the volume was read from.
    modality, manufacturer, patient_id, series_description : str or None
        Descriptive DICOM attributes, if known.
    warnings : list of str
        Non-fatal problems found while reading (kVp not 120, overlapping
        reconstruction, unusual slice thickness, ...).
    dicom : DicomSource or None
        The source images' identifiers and headers when read from DICOM.
    """

    hu: np.ndarray
    spacing: Spacing
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    slice_thickness_mm: float | None = None
    kvp: float | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    source: str | None = None
    modality: str | None = "CT"
    manufacturer: str | None = None
    patient_id: str | None = None
    series_description: str | None = None
    warnings: list[str] = field(default_factory=list)
    dicom: DicomSource | None = None

    def __post_init__(self) -> None:
        hu = np.asarray(self.hu)
        if hu.ndim != 3:
            raise InvalidInputError(f"hu must be a 3-D (z, y, x) array, got shape {hu.shape}")
        self.hu = hu
        self.spacing = normalize_spacing(self.spacing)
        self.origin = tuple(float(v) for v in self.origin)  # type: ignore[assignment]
        direction = np.asarray(self.direction, dtype=float)
        if direction.shape != (3, 3):
            raise InvalidInputError(f"direction must be a 3x3 matrix, got shape {direction.shape}")
        self.direction = direction

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(Z, Y, X)``."""
        return tuple(int(n) for n in self.hu.shape)  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        """(4, 4) matrix mapping homogeneous ``(z, y, x, 1)`` indices to LPS ``(x, y, z, 1)`` mm."""
        dz, dy, dx = self.spacing
        matrix = np.eye(4)
        # Columns of `direction` are ordered (x, y, z) index axes; array axes are (z, y, x).
        matrix[:3, 0] = self.direction[:, 2] * dz
        matrix[:3, 1] = self.direction[:, 1] * dy
        matrix[:3, 2] = self.direction[:, 0] * dx
        matrix[:3, 3] = self.origin
        return matrix

    def index_to_patient(self, zyx: np.ndarray) -> np.ndarray:
        """Convert ``(N, 3)`` voxel indices ``(z, y, x)`` to LPS positions ``(N, 3)`` in mm."""
        zyx = np.atleast_2d(np.asarray(zyx, dtype=float))
        return zyx @ self.affine[:3, :3].T + self.affine[:3, 3]

    def patient_to_index(self, xyz_mm: np.ndarray) -> np.ndarray:
        """Convert ``(N, 3)`` LPS positions in mm to fractional voxel indices ``(z, y, x)``."""
        xyz_mm = np.atleast_2d(np.asarray(xyz_mm, dtype=float))
        return (xyz_mm - self.affine[:3, 3]) @ np.linalg.inv(self.affine[:3, :3]).T

    def with_hu(self, hu: np.ndarray) -> CTVolume:
        """Return a copy with another array of the same shape (e.g. a mask) and the same geometry."""
        if np.shape(hu) != self.hu.shape:
            raise InvalidInputError(f"array shape {np.shape(hu)} does not match volume shape {self.hu.shape}")
        return replace(self, hu=np.asarray(hu), warnings=list(self.warnings))


def normalize_spacing(spacing: object, name: str = "spacing") -> Spacing:
    """Check and convert a voxel spacing to a tuple of three positive floats ``(dz, dy, dx)`` in mm.

    A scalar is broadcast to all three axes.

    Raises
    ------
    InvalidInputError
        If the spacing does not have three finite positive values.

    Examples
    --------
    >>> normalize_spacing(3)
    (3.0, 3.0, 3.0)
    """
    values = np.atleast_1d(np.asarray(spacing, dtype=float))
    if values.size == 1:
        values = np.repeat(values, 3)
    if values.shape != (3,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise InvalidInputError(
            f"{name} must be three positive finite values (dz, dy, dx) in mm, got {spacing!r}"
        )
    return (float(values[0]), float(values[1]), float(values[2]))
