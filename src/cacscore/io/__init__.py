"""Reading and writing CT volumes and label masks.

``read_volume`` reads a DICOM folder, a DICOM file's series, or a NIfTI /
MetaImage / NRRD file into a :class:`CTVolume` (HU int16 ``(z, y, x)``,
spacing ``(dz, dy, dx)`` mm, LPS geometry, canonical orientation). The
writers keep the geometry so that write -> read round trips are exact.
"""

from cacscore.io.dicom import SeriesInfo, list_series, read_dicom_series
from cacscore.io.dicom_write import TRANSFER_SYNTAXES, write_dicom_series, write_enhanced_ct
from cacscore.io.image import read_image_volume, read_mask, write_mask, write_volume
from cacscore.io.read import read_volume
from cacscore.io.volume import CTVolume, normalize_spacing

__all__ = [
    "TRANSFER_SYNTAXES",
    "CTVolume",
    "SeriesInfo",
    "list_series",
    "normalize_spacing",
    "read_dicom_series",
    "read_image_volume",
    "read_mask",
    "read_volume",
    "write_dicom_series",
    "write_enhanced_ct",
    "write_mask",
    "write_volume",
]
