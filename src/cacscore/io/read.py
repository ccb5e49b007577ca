"""One entry point that reads a CT volume from whatever the path is."""

from __future__ import annotations

import warnings
from pathlib import Path

from cacscore.errors import VolumeReadError
from cacscore.io.checks import add_quality_warnings
from cacscore.io.dicom import read_dicom_series
from cacscore.io.image import IMAGE_SUFFIXES, image_suffix, read_image_volume
from cacscore.io.volume import CTVolume


def read_volume(
    path: str | Path, *, series_uid: str | None = None, skip_unreadable: bool = False
) -> CTVolume:
    """Read a CT volume from a DICOM folder, a DICOM file, or a NIfTI/MetaImage/NRRD file.

    Parameters
    ----------
    path : str or Path
        A folder: the DICOM series in it (searched recursively) is read, the
        one named by ``series_uid`` or else the most calcium-scoring-like
        CT series. A single DICOM file (``.dcm`` or any file starting with
        the DICOM preamble): the series it belongs to is read from its
        folder. ``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``, ``.nrrd``: the
        image file (RAS NIfTI is converted to LPS).
    series_uid : str, optional
        SeriesInstanceUID to read from a DICOM folder.
    skip_unreadable : bool
        DICOM only: read the series without the files next to it that look
        like its slices but cannot be read, each named in a warning, instead
        of refusing it (see :func:`cacscore.io.dicom.read_dicom_series`).

    Returns
    -------
    CTVolume
        HU int16 ``(z, y, x)``; axis 0 head-ward, axis 1 posterior, axis 2
        to the patient's left (voxels permuted/flipped, never resampled);
        ``spacing = (dz, dy, dx)`` mm with ``dz`` the slice increment.

    Raises
    ------
    VolumeReadError
        Missing path, unsupported file type, or any problem listed by
        :func:`cacscore.io.dicom.read_dicom_series` and
        :func:`cacscore.io.image.read_image_volume`.

    Warns
    -----
    CacScoreWarning
        kVp other than 120, slice thickness outside 2.5-3 mm, overlapping
        reconstruction (also recorded in ``volume.warnings``).
    """
    path = Path(path)
    if not path.exists():
        raise VolumeReadError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_dicom_series(path, series_uid=series_uid, skip_unreadable=skip_unreadable)
    if image_suffix(path) is not None:
        if series_uid is not None:
            raise VolumeReadError(f"{path}: series_uid applies to DICOM folders only, not to image files")
        volume = read_image_volume(path)
        add_quality_warnings(volume, name=str(path))
        return volume
    if path.suffix.lower() in {".dcm", ".dicom", ".ima", ""} or _has_dicom_preamble(path):
        return _read_dicom_file(path, series_uid, skip_unreadable)
    raise VolumeReadError(
        f"{path}: unsupported file type; give a DICOM folder or a {', '.join(IMAGE_SUFFIXES)} file"
    )


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _read_dicom_file(path: Path, series_uid: str | None, skip_unreadable: bool) -> CTVolume:
    import pydicom
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings():
        # pydicom's warnings about odd values are not the user's concern here; the series reader checks them.
        warnings.simplefilter("ignore")
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
            own_uid = str(header.get("SeriesInstanceUID", "")) or None
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            raise VolumeReadError(f"{path}: not a readable DICOM file: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a damaged file makes pydicom raise many kinds
            raise VolumeReadError(f"{path}: not a readable DICOM file: {type(exc).__name__}: {exc}") from None
    if series_uid is not None and own_uid != series_uid:
        raise VolumeReadError(f"{path}: belongs to series {own_uid}, not to the requested {series_uid}")
    return read_dicom_series(path.parent, series_uid=own_uid, skip_unreadable=skip_unreadable)
