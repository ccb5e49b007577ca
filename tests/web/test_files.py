"""Finding scans under the data folder, confining paths to it, receiving and unpacking uploads."""

from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import Path

import pytest

from cacscore.errors import InvalidInputError
from cacscore.io import write_dicom_series, write_mask, write_volume
from cacscore.web.files import (
    FoundStudy,
    UploadTooLargeError,
    discover,
    receive,
    resolve_inside,
    safe_name,
    unpack_upload,
)

from .conftest import automatic_mask, synthetic_volume


def test_discover_finds_dicom_folders_and_image_files_but_not_masks(tmp_path: Path) -> None:
    volume = synthetic_volume()
    write_dicom_series(volume, tmp_path / "patient 1" / "series")
    write_volume(volume, tmp_path / "loose.nii.gz")
    write_volume(volume, tmp_path / "nested" / "scan.mha")
    write_mask(automatic_mask(), volume, tmp_path / "nested" / "scan_label.nii.gz")
    write_mask(automatic_mask(), volume, tmp_path / "nested" / "mask.nii.gz")
    write_volume(volume, tmp_path / ".hidden" / "secret.nii.gz")
    (tmp_path / "notes.txt").write_text("not a scan")
    assert discover(tmp_path) == [
        FoundStudy("loose.nii.gz", "loose.nii.gz"),
        FoundStudy("nested/scan.mha", "nested/scan.mha"),
        FoundStudy("patient 1/series", "patient 1/series"),
    ]


def test_discover_accepts_one_dicom_folder_as_the_data_folder(tmp_path: Path) -> None:
    write_dicom_series(synthetic_volume(), tmp_path / "exam")
    assert discover(tmp_path / "exam") == [FoundStudy(".", "exam")]


def test_discover_names_case_folders_of_a_cohort(tmp_path: Path) -> None:
    for case in ("case_2", "case_10"):
        write_volume(synthetic_volume(), tmp_path / case / "image.nii.gz")
        write_mask(automatic_mask(), synthetic_volume(), tmp_path / case / "label.nii.gz")
    assert discover(tmp_path) == [
        FoundStudy("case_2/image.nii.gz", "case_2"),
        FoundStudy("case_10/image.nii.gz", "case_10"),
    ]


@pytest.mark.parametrize("relative", ["../outside", "/etc/passwd", "a/../../outside", "link/passwd"])
def test_resolve_inside_refuses_paths_that_leave_the_root(tmp_path: Path, relative: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/etc", root / "link")
    with pytest.raises(InvalidInputError, match="leaves its folder; refused"):
        resolve_inside(root, relative)
    assert resolve_inside(root, "a/b.nii") == (root / "a" / "b.nii").resolve()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("../../DOE^JOHN scan.zip", "DOE_JOHN scan.zip"),
        ("C:\\x\\y.nii.gz", "y.nii.gz"),
        ("", "upload"),
        (None, "upload"),
    ],
)
def test_safe_name(given: str | None, expected: str) -> None:
    assert safe_name(given) == expected


def test_receive_stops_at_the_limit_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(UploadTooLargeError, match=r"larger than the limit of 1 MB \(--max-upload-mb\)"):
        receive(iter([b"x" * 2**20, b"x"]), tmp_path, 2**20)
    assert list(tmp_path.iterdir()) == []
    path = receive(iter([b"abc", b"def"]), tmp_path, 100)
    assert path.read_bytes() == b"abcdef"


def test_an_upload_folder_appears_whole_and_a_refused_zip_leaves_nothing(tmp_path: Path) -> None:
    """The study folder is renamed into place when complete: no temporary folder or file stays."""
    uploads = tmp_path / "uploads"
    nifti = struct.pack("<i", 348) + bytes(348)  # a NIfTI-1 header size; unpacking reads no further
    relative = unpack_upload(receive(iter([nifti]), uploads, 2**20), uploads, "scan.nii", 2**20)
    study, name = relative.split("/")
    assert name == "image.nii"
    assert (uploads / relative).read_bytes() == nifti
    assert [p.name for p in uploads.iterdir()] == [study]  # neither the received file nor a temporary
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.dcm", b"DICM")  # unpacked before the unsafe member is met
        archive.writestr("../b.dcm", b"DICM")
    received = receive(iter([buffer.getvalue()]), uploads, 2**20)
    with pytest.raises(InvalidInputError, match="'../b.dcm' has an unsafe path"):
        unpack_upload(received, uploads, "exam.zip", 2**20)
    assert [p.name for p in uploads.iterdir()] == [study]
