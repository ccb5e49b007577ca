"""NIfTI, MetaImage and NRRD volumes and masks through SimpleITK.

SimpleITK converts NIfTI's RAS coordinates to DICOM's LPS when it reads and
back when it writes, so every volume here is in LPS. kVp, slice thickness and
identifiers are kept in the file's metadata (MetaImage/NRRD fields, and the
short NIfTI ``descrip`` for kVp and thickness) so that they survive a round
trip through cacscore; files from other tools simply leave them unknown.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cacscore.errors import InvalidInputError, VolumeReadError
from cacscore.io.checks import ANGLE_TOLERANCE_DEG, axis_angle_deg, canonical_orientation
from cacscore.io.volume import CTVolume
from cacscore.labels import MaskConvention, to_project_labels

if TYPE_CHECKING:
    import SimpleITK as sitk

#: File name endings this module reads and writes.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")
#: Largest origin or spacing difference (mm) for two grids to count as the same.
GRID_TOLERANCE_MM = 1e-3
_ITK_ERROR = re.compile(r"ITK ERROR: \w+\(0x[0-9a-fA-F]+\): (.*)")

_NOTES_KEY = "ITK_FileNotes"
_META_KEYS = {
    "study_uid": "cacscore_study_uid",
    "series_uid": "cacscore_series_uid",
    "modality": "cacscore_modality",
    "manufacturer": "cacscore_manufacturer",
    "patient_id": "cacscore_patient_id",
    "series_description": "cacscore_series_description",
}
_NOTE_PATTERN = re.compile(r"(kvp|thickness_mm)=([0-9.]+)")
#: Bytes per value of the MetaImage element types that a size check knows.
_MET_BYTES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
}
_MET_HEADER_BYTES = 1 << 16


def image_suffix(path: Path) -> str | None:
    """The recognised ending of ``path`` (e.g. ``".nii.gz"``), or None."""
    name = path.name.lower()
    return next((suffix for suffix in IMAGE_SUFFIXES if name.endswith(suffix)), None)


def _check_suffix(path: Path) -> None:
    if image_suffix(path) is None:
        raise InvalidInputError(f"{path}: unsupported file type; use one of {', '.join(IMAGE_SUFFIXES)}")


def _itk_error_detail(exc: RuntimeError) -> str:
    """The line of an ITK exception that says what went wrong, without ITK's object address."""
    lines = str(exc).strip().splitlines()
    for line in lines:
        match = _ITK_ERROR.search(line)
        if match:
            return match.group(1).strip()
    # A trailing "Reason: ..." is a stale errno (e.g. "No such file or directory" for a file that exists).
    return lines[-1] if lines else "unknown error"


def _check_nifti(path: Path) -> None:
    """Refuse a NIfTI file that ITK would read without complaint, but wrongly.

    - A file that ends early: ITK puts zeros or garbage where the missing
      voxels were, so a truncated copy of a scan would score as if part of
      the heart were empty.
    - A header whose two voxel sizes disagree (``pixdim`` against the sform
      matrix, as some converters write): ITK takes one with a warning on
      stderr, and every area and slice increment depends on which.
    - A sheared sform (gantry tilt), refused as the DICOM reader refuses it.
    - NaN or infinite voxels in a float file: ITK reads them as 0 HU (water).

    Raises
    ------
    VolumeReadError
        One line naming ``path`` and the problem.
    """
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    try:
        # nibabel's stubs type load() as any file-based image; a .nii/.nii.gz is a Nifti1Image.
        image: Any = nib.load(str(path))  # reads the header only
        proxy = image.dataobj
        expected = (
            int(proxy.offset) + int(np.prod(proxy.shape, dtype=np.int64)) * np.dtype(proxy.dtype).itemsize
        )
        sform, sform_code = image.header.get_sform(coded=True)
        pixdim = np.abs(np.asarray(image.header["pixdim"][1:4], dtype=np.float64))
    except (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, zlib.error) as exc:
        raise VolumeReadError(f"{path}: truncated or corrupt NIfTI header: {exc}") from None
    held = _nifti_held_bytes(path, expected)
    if held < expected:
        raise VolumeReadError(
            f"{path}: truncated or corrupt: its header describes {expected} bytes of header and voxels, "
            f"the file holds {held}{' (uncompressed)' if path.name.lower().endswith('.gz') else ''}"
        )
    if sform_code > 0:
        matrix = np.asarray(sform, dtype=float)[:3, :3]
        sform_mm = np.linalg.norm(matrix, axis=0)
        # A tilted series has a sheared sform whose slice axis is longer than pixdim's slice spacing; ITK
        # would refuse it as "no orthonormal definition found".
        tilt = (
            axis_angle_deg(matrix[:, 2], np.cross(matrix[:, 0], matrix[:, 1]))
            if np.all(sform_mm > 0)
            else 0.0
        )
        if tilt > ANGLE_TOLERANCE_DEG:
            raise VolumeReadError(
                f"{path}: gantry tilt of {tilt:.1f} degrees (slices are sheared); resample to an untilted "
                "grid before scoring"
            )
        if not np.allclose(sform_mm, pixdim, rtol=1e-3, atol=1e-4):
            raise VolumeReadError(
                f"{path}: its header gives two voxel sizes, {_format_mm(pixdim)} mm (pixdim) and "
                f"{_format_mm(sform_mm)} mm (sform); which one is right cannot be told"
            )
    if np.issubdtype(proxy.dtype, np.floating) and not np.all(np.isfinite(np.asanyarray(proxy))):
        raise VolumeReadError(f"{path}: holds NaN or infinite values")


def _format_mm(sizes: np.ndarray) -> str:
    """Voxel sizes (x, y, z order, as NIfTI stores them) for a message."""
    return " x ".join(f"{v:.4g}" for v in sizes)


def _nifti_held_bytes(path: Path, expected: int) -> int:
    """Bytes a NIfTI file holds, uncompressed for .nii.gz.

    ``expected`` is what its header describes.
    """
    if not path.name.lower().endswith(".gz"):
        return path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(-4, 2)
        isize = int.from_bytes(fh.read(4), "little")  # uncompressed size mod 2**32 (RFC 1952 trailer)
    if isize == expected % 2**32:
        return expected
    return _gunzipped_bytes(path)


def _gunzipped_bytes(path: Path) -> int:
    """Bytes that a gzip file really decompresses to, up to where its data ends or breaks."""
    held = 0
    stream = zlib.decompressobj(wbits=31)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            while chunk:
                try:
                    held += len(stream.decompress(chunk))
                except zlib.error:
                    return held
                if not stream.eof:
                    break
                chunk = stream.unused_data  # a further gzip member follows
                stream = zlib.decompressobj(wbits=31)
    return held


def _check_metaimage(path: Path) -> None:
    """Refuse an uncompressed MetaImage whose data is shorter than its header describes, or missing.

    MetaIO prints its own complaint about a short file to stderr and ITK then
    raises a vague "File cannot be read"; checking first gives one line that
    says what is wrong. Headers that cannot be sized this simply (compressed
    data, slice lists, an explicit ``HeaderSize``, an element type not in
    ``_MET_BYTES``) are left to ITK.

    Raises
    ------
    VolumeReadError
        One line naming ``path`` and the problem.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(_MET_HEADER_BYTES)
    except OSError as exc:
        raise VolumeReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    fields: dict[str, str] = {}
    offset = 0
    for line in head.splitlines(keepends=True):
        offset += len(line)
        key, sep, value = line.decode("latin-1").partition("=")
        if not sep:
            return
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    else:
        return
    try:
        n_values = int(np.prod([int(v) for v in fields["DimSize"].split()], dtype=np.int64))
        n_values *= int(fields.get("ElementNumberOfChannels", "1"))
        itemsize = _MET_BYTES[fields["ElementType"]]
    except (KeyError, ValueError):
        return
    name = fields["ElementDataFile"]
    compressed = fields.get("CompressedData", "False").lower() == "true"
    if compressed or "HeaderSize" in fields or "%" in name or name == "LIST":
        return
    data = path if name == "LOCAL" else path.parent / name
    if not data.is_file():
        raise VolumeReadError(f"{path}: its data file {data.name} is missing")
    expected = n_values * itemsize
    held = data.stat().st_size - (offset if data == path else 0)
    if held < expected:
        where = "the file" if data == path else f"its data file {data.name}"
        raise VolumeReadError(
            f"{path}: truncated or corrupt: its header describes {expected} bytes of voxels, "
            f"{where} holds {held}"
        )


def _read_itk(path: Path) -> sitk.Image:
    import SimpleITK as sitk

    if not path.is_file():
        raise VolumeReadError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    if image_suffix(path) in (".mha", ".mhd"):
        _check_metaimage(path)
    elif image_suffix(path) in (".nii", ".nii.gz"):
        _check_nifti(path)
    # ITK prints its warnings straight to stderr, outside Python's warnings; the checks before and after this
    # read say what matters in cacscore's words, so ITK's own lines are not shown.
    display = sitk.ProcessObject_GetGlobalWarningDisplay()
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise VolumeReadError(
            f"{path}: cannot read image file (corrupt, truncated or unsupported): {_itk_error_detail(exc)}"
        ) from None
    finally:
        sitk.ProcessObject_SetGlobalWarningDisplay(display)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeReadError(
            f"{path}: holds {image.GetNumberOfComponentsPerPixel()} values per voxel (RGB or vector image); "
            "a CT volume has one"
        )
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise VolumeReadError(
            f"{path}: holds a {image.GetDimension()}-D image of size {image.GetSize()}; a CT volume is 3-D"
        )
    return image


def _grid_from_itk(
    image: sitk.Image, path: Path
) -> tuple[tuple[float, float, float], tuple[float, ...], np.ndarray]:
    spacing = tuple(float(v) for v in image.GetSpacing()[::-1])
    origin = tuple(float(v) for v in image.GetOrigin())
    if image_suffix(path) in (".nii", ".nii.gz"):
        # NIfTI stores spacing and origin as float32: take the shortest decimal that float32 value
        # stands for (0.7 rather than 0.699999988), so values written as decimals round-trip exactly.
        spacing = tuple(float(str(np.float32(v))) for v in spacing)
        origin = tuple(float(str(np.float32(v))) for v in origin)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    return spacing, origin, direction  # type: ignore[return-value]


def _as_int16(
    array: np.ndarray, path: Path, what: str, error: type[InvalidInputError] = VolumeReadError
) -> np.ndarray:
    """``array`` rounded to int16 HU; ``error`` if it holds NaN or values outside int16."""
    if array.dtype == np.int16:
        return array
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise error(f"{path}: {what} holds NaN or infinite values")
        array = np.rint(array)
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if low < np.iinfo(np.int16).min or high > np.iinfo(np.int16).max:
        raise error(f"{path}: {what} values {low:g}..{high:g} do not fit in int16 HU")
    return array.astype(np.int16)


def read_image_volume(path: str | Path) -> CTVolume:
    """Read a CT volume from a NIfTI, MetaImage or NRRD file.

    Parameters
    ----------
    path : str or Path
        ``.nii``, ``.nii.gz``, ``.mha``, ``.mhd`` or ``.nrrd`` file in HU.

    Returns
    -------
    CTVolume
        HU as int16 ``(z, y, x)`` in the canonical orientation (see
        :func:`cacscore.io.checks.canonical_orientation`), geometry in LPS.
        ``kvp`` and ``slice_thickness_mm`` are known only for files written
        by :func:`write_volume`.

    Raises
    ------
    VolumeReadError
        Missing, corrupt, 2-D, 4-D, RGB or non-axial file, or HU that do not
        fit in int16.
    """
    import SimpleITK as sitk

    path = Path(path)
    _check_suffix(path)
    image = _read_itk(path)
    spacing, origin, direction = _grid_from_itk(image, path)
    hu = _as_int16(sitk.GetArrayViewFromImage(image), path, "image")
    if not hu.flags.owndata:
        hu = hu.copy()
    meta = {key: image.GetMetaData(key) for key in image.GetMetaDataKeys()}
    notes = dict(_NOTE_PATTERN.findall(meta.get(_NOTES_KEY, "")))
    fields = {name: meta[key] for name, key in _META_KEYS.items() if meta.get(key)}
    volume = CTVolume(
        hu=hu,
        spacing=spacing,
        origin=origin,  # type: ignore[arg-type]
        direction=direction,
        kvp=float(notes["kvp"]) if "kvp" in notes else None,
        slice_thickness_mm=float(notes["thickness_mm"]) if "thickness_mm" in notes else None,
        source=str(path),
        **fields,
    )
    return canonical_orientation(volume, name=str(path))


def _itk_image(array: np.ndarray, like: CTVolume) -> sitk.Image:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(v) for v in like.spacing[::-1]])
    image.SetOrigin([float(v) for v in like.origin])
    image.SetDirection([float(v) for v in like.direction.ravel()])
    return image


def _write_itk(image: sitk.Image, path: Path) -> None:
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        sitk.WriteImage(image, str(path), useCompression=path.name.lower().endswith((".gz", ".mha", ".nrrd")))
    except RuntimeError as exc:
        raise InvalidInputError(f"{path}: cannot write image: {str(exc).strip().splitlines()[-1]}") from None


def write_volume(volume: CTVolume, path: str | Path) -> Path:
    """Write a volume's HU (int16) and geometry to a NIfTI, MetaImage or NRRD file.

    Parameters
    ----------
    volume : CTVolume
        Volume to write; kVp, slice thickness and (MetaImage/NRRD only)
        identifiers are stored as metadata.
    path : str or Path
        Output file ending in ``.nii``, ``.nii.gz``, ``.mha``, ``.mhd`` or
        ``.nrrd``; parent folders are created. An existing file is replaced.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    InvalidInputError
        Unsupported file ending, HU that do not fit in int16, or the file
        cannot be written.
    """
    path = Path(path)
    _check_suffix(path)
    image = _itk_image(_as_int16(np.asarray(volume.hu), path, "volume", InvalidInputError), volume)
    notes = []
    if volume.kvp is not None:
        notes.append(f"kvp={volume.kvp:g}")
    if volume.slice_thickness_mm is not None:
        notes.append(f"thickness_mm={volume.slice_thickness_mm:g}")
    if notes:
        image.SetMetaData(_NOTES_KEY, "cacscore " + " ".join(notes))
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        for name, key in _META_KEYS.items():
            value = getattr(volume, name)
            if value:
                image.SetMetaData(key, str(value))
    _write_itk(image, path)
    return path


def write_mask(mask: np.ndarray, like: CTVolume, path: str | Path) -> Path:
    """Write a label mask (uint8) on the grid of ``like``.

    Parameters
    ----------
    mask : (Z, Y, X) ndarray of int
        Labels 0-255, same shape as ``like.hu``.
    like : CTVolume
        Volume whose spacing, origin and direction the mask takes.
    path : str or Path
        ``.nii``, ``.nii.gz``, ``.mha``, ``.mhd`` or ``.nrrd`` file.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    InvalidInputError
        Shape differs from ``like``, values outside 0-255, or unsupported ending.
    """
    path = Path(path)
    _check_suffix(path)
    mask = np.asarray(mask)
    if mask.shape != like.hu.shape:
        raise InvalidInputError(f"mask shape {mask.shape} does not match volume shape {like.hu.shape}")
    if mask.size and (int(mask.min()) < 0 or int(mask.max()) > 255):
        raise InvalidInputError(
            f"mask values {int(mask.min())}..{int(mask.max())} do not fit in uint8 labels"
        )
    _write_itk(_itk_image(mask.astype(np.uint8), like), path)
    return path


def _describe_grid(shape: tuple[int, ...], spacing: tuple[float, ...], origin: tuple[float, ...]) -> str:
    return (
        f"shape {tuple(int(n) for n in shape)}, spacing {tuple(round(s, 4) for s in spacing)} mm, "
        f"origin {tuple(round(o, 3) for o in origin)} mm"
    )


def read_mask(path: str | Path, like: CTVolume, convention: MaskConvention = "project") -> np.ndarray:
    """Read a label mask that lies on the grid of ``like`` and convert it to the project's labels.

    The mask is brought to the canonical orientation like every volume, so
    a mask written by another tool in the CT's stored orientation still
    matches a CT read by cacscore.

    Parameters
    ----------
    path : str or Path
        ``.nii``, ``.nii.gz``, ``.mha``, ``.mhd`` or ``.nrrd`` label file.
    like : CTVolume
        The CT the mask belongs to.
    convention : {"project", "orcascore", "binary"}
        Label convention of the file (see :func:`cacscore.labels.to_project_labels`).

    Returns
    -------
    (Z, Y, X) ndarray of uint8
        Labels in the project's convention.

    Raises
    ------
    VolumeReadError
        Missing or unreadable file, non-integer labels, or a grid (shape,
        spacing, origin, direction) that differs from ``like``'s.
    InvalidInputError
        Label values the convention does not define.
    """
    import SimpleITK as sitk

    path = Path(path)
    _check_suffix(path)
    image = _read_itk(path)
    spacing, origin, direction = _grid_from_itk(image, path)
    values = sitk.GetArrayFromImage(image)
    if np.issubdtype(values.dtype, np.floating) and (
        not np.all(np.isfinite(values)) or np.any(values != np.rint(values))
    ):
        raise VolumeReadError(f"{path}: mask holds non-integer values; a label mask holds integer codes")
    if values.size and (values.min() < 0 or values.max() > 255):
        raise VolumeReadError(
            f"{path}: mask values {values.min():g}..{values.max():g} are not label codes 0-255"
        )
    stored = CTVolume(hu=values.astype(np.int16), spacing=spacing, origin=origin, direction=direction)  # type: ignore[arg-type]
    mask = canonical_orientation(stored, name=str(path))
    same = (
        mask.hu.shape == like.hu.shape
        and np.allclose(mask.spacing, like.spacing, atol=GRID_TOLERANCE_MM, rtol=1e-5)
        and np.allclose(mask.origin, like.origin, atol=GRID_TOLERANCE_MM * 10)
        and np.allclose(mask.direction, like.direction, atol=1e-4)
    )
    if not same:
        raise VolumeReadError(
            f"{path}: mask grid ({_describe_grid(mask.hu.shape, mask.spacing, mask.origin)}) does not match "
            f"the CT grid ({_describe_grid(like.hu.shape, like.spacing, like.origin)})"
        )
    return to_project_labels(mask.hu, convention)
