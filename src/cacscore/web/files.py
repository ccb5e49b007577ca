"""Files behind the studies: finding scans under the data folder, unpacking uploads safely.

Study paths are stored relative to their root folder and resolved only
through :func:`resolve_inside`, so nothing a client sends can name a file
outside the data or upload folder.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import struct
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cacscore.errors import CacScoreError, InvalidInputError, VolumeReadError
from cacscore.io.atomic import atomic_folder
from cacscore.io.image import image_suffix

#: Names of files and folders that hold masks or annotations, not scans.
_NOT_SCANS = re.compile(
    r"(^|[_\-. ])(label|labels|mask|masks|seg|segmentation|reference|points)([_\-. ]|$)", re.IGNORECASE
)
#: Most files a zip upload may hold.
MAX_ZIP_MEMBERS = 20000
#: A zip may unpack to at most this many times the upload size limit.
ZIP_EXPANSION_LIMIT = 4
_NIFTI_HEADER_SIZES = (348, 540)


class UploadTooLargeError(InvalidInputError):
    """An upload (or what a zip unpacks to) exceeds the size limit."""


@dataclass(frozen=True)
class FoundStudy:
    """A scan found under the data folder: ``path`` relative to it (POSIX), ``name`` to show."""

    path: str
    name: str


def resolve_inside(root: Path, relative: str) -> Path:
    """``root / relative``, refusing anything that resolves outside ``root``.

    Raises
    ------
    InvalidInputError
        If the path leaves ``root`` (``..``, absolute path, symbolic link out).
    """
    base = root.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise InvalidInputError(f"study path {relative!r} leaves its folder; refused")
    return target


def discover(data_dir: Path) -> list[FoundStudy]:
    """Scans under ``data_dir``: the cases of a known dataset layout, else every DICOM folder and image file.

    Hidden folders are skipped, and so are files named like masks or
    annotations (``label*``, ``*_mask*``, ``*seg*``...).
    """
    root = data_dir.resolve()
    found = _dataset_cases(root)
    if found is None:
        found = _scan(root)
    return sorted(found, key=lambda item: _natural(item.path))


def _natural(text: str) -> tuple[object, ...]:
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text))


def _dataset_cases(root: Path) -> list[FoundStudy] | None:
    """Cases from :mod:`cacscore.datasets` when the folder has a known layout, else None."""
    try:
        from cacscore.datasets import list_cases
    except ImportError:
        return None
    try:
        cases = list_cases(root)
    except CacScoreError:
        return None
    found = []
    for case in cases:
        image = Path(case.image_path).resolve()
        if image.is_relative_to(root):
            found.append(FoundStudy(image.relative_to(root).as_posix(), str(case.case_id)))
    return found or None


def _scan(root: Path) -> list[FoundStudy]:
    found: list[FoundStudy] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if not d.startswith(".") and not _NOT_SCANS.search(d)]
        visible = [name for name in files if not name.startswith(".")]
        if any(_is_dicom(here / name) for name in visible):
            # A DICOM folder is one study (its sub-folders are read with it).
            dirs[:] = []
            found.append(_found(root, here))
            continue
        for name in visible:
            if image_suffix(here / name) and not _NOT_SCANS.search(name):
                found.append(_found(root, here / name))
    return found


def _found(root: Path, path: Path) -> FoundStudy:
    relative = path.relative_to(root).as_posix()
    if relative == ".":
        return FoundStudy(relative, root.name)  # --data names one DICOM series folder
    suffix = image_suffix(path)
    stem = path.name[: -len(suffix)] if suffix else path.name
    # Phantom and generic cohorts name the scan "image"; the case folder is the useful name.
    if stem.lower() == "image" and path.parent != root:
        return FoundStudy(relative, path.parent.relative_to(root).as_posix())
    return FoundStudy(relative, relative)


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def safe_name(filename: str | None) -> str:
    """A display name made from an uploaded file's name: base name only, harmless characters, 80 chars."""
    base = PurePosixPath((filename or "upload").replace("\\", "/")).name
    cleaned = re.sub(r"[^A-Za-z0-9._ -]+", "_", base).strip(" .") or "upload"
    return cleaned[:80]


def receive(chunks: Iterable[bytes], folder: Path, limit_bytes: int) -> Path:
    """Write an upload stream to a new file in ``folder``, stopping as soon as it exceeds ``limit_bytes``.

    Raises
    ------
    UploadTooLargeError
        When the stream is larger than the limit (the partial file is deleted).
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"incoming-{uuid.uuid4().hex}"
    size = 0
    try:
        with target.open("wb") as handle:
            for chunk in chunks:
                size += len(chunk)
                if size > limit_bytes:
                    raise UploadTooLargeError(
                        f"upload is larger than the limit of {limit_bytes / 2**20:g} MB (--max-upload-mb)"
                    )
                handle.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if size == 0:
        target.unlink(missing_ok=True)
        raise InvalidInputError("upload is empty")
    return target


def unpack_upload(received: Path, upload_dir: Path, display: str, limit_bytes: int) -> str:
    """Turn a received file into a study folder or file under ``upload_dir``; return its relative path.

    A zip is unpacked into a new folder (members with absolute paths, ``..``
    or links are refused, and so is a total unpacked size above
    :data:`ZIP_EXPANSION_LIMIT` x the limit); a NIfTI file (plain or gzip) is
    stored as ``image.nii[.gz]`` in a new folder. Anything else is refused.
    The received file is removed in every case.

    The folder is filled under a hidden temporary name and renamed when complete
    (:func:`cacscore.io.atomic.atomic_folder`): its files are on disk before the
    database names the study, and a crash leaves no half-unpacked study folder.

    Raises
    ------
    InvalidInputError
        Not a zip or NIfTI file, or an unsafe zip (message starts with ``display``).
    UploadTooLargeError
        If a zip unpacks to more than allowed.
    """
    study_id = uuid.uuid4().hex
    try:
        kind = _upload_kind(received)
        if kind is None:
            raise InvalidInputError(
                f"{display}: not a zip of a DICOM series or a NIfTI file (.nii / .nii.gz)"
            )
        upload_dir.mkdir(parents=True, exist_ok=True)
        # On an exception the temporary folder is removed with what was unpacked into it.
        with atomic_folder(upload_dir / study_id, replace=False) as folder:
            if kind == "zip":
                _extract_zip(received, folder, display, limit_bytes * ZIP_EXPANSION_LIMIT)
                relative = study_id
            else:
                name = "image.nii.gz" if kind == "nifti.gz" else "image.nii"
                shutil.move(str(received), folder / name)
                relative = f"{study_id}/{name}"
        return relative
    finally:
        received.unlink(missing_ok=True)


def _upload_kind(path: Path) -> str | None:
    with path.open("rb") as handle:
        head = handle.read(4)
    if head[:4] == b"PK\x03\x04" and zipfile.is_zipfile(path):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as handle:
                head = handle.read(4)
        except (OSError, EOFError):
            return None
        return "nifti.gz" if _is_nifti_header(head) else None
    return "nifti" if _is_nifti_header(head) else None


def _is_nifti_header(head: bytes) -> bool:
    if len(head) < 4:
        return False
    return any(struct.unpack(order + "i", head)[0] in _NIFTI_HEADER_SIZES for order in "<>")


def _extract_zip(path: Path, folder: Path, display: str, limit_bytes: int) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise InvalidInputError(f"{display}: damaged zip file") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise InvalidInputError(f"{display}: zip holds {len(members)} files; at most {MAX_ZIP_MEMBERS}")
        total = sum(member.file_size for member in members)
        if total > limit_bytes:
            raise UploadTooLargeError(
                f"{display}: zip unpacks to {total / 2**20:.0f} MB; at most {limit_bytes / 2**20:g} MB"
            )
        for member in members:
            parts = PurePosixPath(member.filename.replace("\\", "/"))
            is_link = (member.external_attr >> 16) & 0o170000 == 0o120000
            if parts.is_absolute() or ".." in parts.parts or ":" in member.filename or is_link:
                raise InvalidInputError(
                    f"{display}: zip member {member.filename!r} has an unsafe path; refused"
                )
            if member.is_dir():
                continue
            target = folder.joinpath(*parts.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(member) as source, target.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise InvalidInputError(f"{display}: cannot unpack {member.filename!r}: {exc}") from None


def describe_read_error(exc: VolumeReadError, folder: Path, display: str) -> str:
    """The reader's message with the server-side path replaced by the uploaded file's name."""
    text = str(exc).replace(str(folder.resolve()), display).replace(str(folder), display)
    return text
