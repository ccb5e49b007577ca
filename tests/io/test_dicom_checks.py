"""The DICOM reader accounts for every file it saw and checks every value entering HU and geometry."""

from __future__ import annotations

import os
import shutil
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_fuzz import edit_tag, set_transfer_syntax

from cacscore.errors import CacScoreWarning, DicomReadError
from cacscore.io import CTVolume, list_series, read_volume, write_dicom_series

Factory = Callable[..., CTVolume]


def _series(tmp_path: Path, make_volume: Factory, **options: object) -> tuple[CTVolume, list[Path]]:
    """An 8-slice series; files in slice order (IM00001.dcm is the lowest slice)."""
    volume = make_volume()
    paths = write_dicom_series(volume, tmp_path, uid_seed="checks", **options)  # type: ignore[arg-type]
    return volume, paths


def _read_quietly(folder: Path, **options: object) -> CTVolume:
    """Read, expecting CacScoreWarnings (returned in volume.warnings), failing on any other warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        volume = read_volume(folder, **options)  # type: ignore[arg-type]
    others = [w for w in caught if not issubclass(w.category, CacScoreWarning)]
    assert others == []
    assert [str(w.message) for w in caught] == volume.warnings
    return volume


# ---- files beside the series ------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["empty", "zeroed", "random"])
@pytest.mark.parametrize("end", [0, -1])
def test_damaged_end_slice_is_named_not_dropped(
    tmp_path: Path, make_volume: Factory, damage: str, end: int
) -> None:
    volume, paths = _series(tmp_path, make_volume)
    target = paths[end]
    size = target.stat().st_size
    content = {"empty": b"", "zeroed": bytes(size), "random": np.random.default_rng(1).bytes(size)}[damage]
    target.write_bytes(content)
    what = "empty file" if damage == "empty" else "not a DICOM file"
    with pytest.raises(DicomReadError, match=rf"{target.name}: {what}.*--skip-unreadable"):
        read_volume(tmp_path)
    read = _read_quietly(tmp_path, skip_unreadable=True)
    kept = volume.hu[1:] if end == 0 else volume.hu[:-1]
    np.testing.assert_array_equal(read.hu, kept)
    assert f"{target.name}: skipped: {what}" in read.warnings[0]
    if end == 0:
        # InstanceNumbers now start at 2: the header says slice 1 is missing at the lower end.
        assert (
            "InstanceNumbers run 2-8 in slice order, so slice 1 beyond IM00002.dcm at the lower end"
            in (read.warnings[1])
        )


def test_damaged_middle_slice_is_named_not_a_gap(tmp_path: Path, make_volume: Factory) -> None:
    _, paths = _series(tmp_path, make_volume)
    paths[3].write_bytes(b"\0" * 500)
    with pytest.raises(
        DicomReadError, match=r"IM00004.dcm: not a DICOM file \(no DICM preamble\), though named "
    ):
        read_volume(tmp_path)
    # Skipping it leaves a gap, which is refused, naming the skipped file as its cause.
    with pytest.raises(
        DicomReadError, match=r"missing slices: a 6.00 mm gap.*skipped as unreadable: IM00004.dcm"
    ):
        read_volume(tmp_path, skip_unreadable=True)


def test_file_sized_like_the_slices_is_named(tmp_path: Path, make_volume: Factory) -> None:
    _, paths = _series(tmp_path, make_volume)
    (tmp_path / "slice_copy").write_bytes(bytes(paths[0].stat().st_size))
    with pytest.raises(
        DicomReadError, match="slice_copy: not a DICOM file.*though sized like the series' slices"
    ):
        read_volume(tmp_path)


def test_unrelated_files_and_folder_link_loop(tmp_path: Path, make_volume: Factory) -> None:
    volume, _ = _series(tmp_path, make_volume)
    (tmp_path / "README.txt").write_text("exported\n")
    os.symlink(".", tmp_path / "loop")
    os.symlink("b_link", tmp_path / "a_link")
    os.symlink("a_link", tmp_path / "b_link")
    read = _read_quietly(tmp_path)
    np.testing.assert_array_equal(read.hu, volume.hu)
    assert any("a_link: not read: a symbolic link that loops or leads nowhere" in w for w in read.warnings)
    assert any("loop: link to a folder, not followed" in w for w in read.warnings)


@pytest.mark.parametrize("end", [0, 3, -1])
def test_slice_with_another_series_uid_is_named(tmp_path: Path, make_volume: Factory, end: int) -> None:
    _, paths = _series(tmp_path, make_volume)
    edit_tag(paths[end], "SeriesInstanceUID", "1.2.3.4")
    with pytest.raises(
        DicomReadError,
        match=rf"{paths[end].name}: SeriesInstanceUID 1.2.3.4 differs from that of "
        r"the 7 other slices in its folder, though its position",
    ):
        read_volume(tmp_path)


def test_scout_of_another_series_in_the_same_folder_is_not_a_stray(
    tmp_path: Path, make_volume: Factory
) -> None:
    volume, _ = _series(tmp_path, make_volume)
    scout = make_volume((1, 32, 32))
    scout_dir = tmp_path / "scout_tmp"
    write_dicom_series(
        scout,
        scout_dir,
        uid_seed="scout",
        extra_tags={
            "ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"],
            "ImageOrientationPatient": [1, 0, 0, 0, 0, -1],
        },
    )
    shutil.move(scout_dir / "IM00001.dcm", tmp_path / "IM00100.dcm")
    scout_dir.rmdir()
    np.testing.assert_array_equal(_read_quietly(tmp_path).hu, volume.hu)


def test_list_series_warns_about_unreadable_files(tmp_path: Path, make_volume: Factory) -> None:
    _, paths = _series(tmp_path, make_volume)
    paths[2].write_bytes(paths[2].read_bytes()[:200])
    with pytest.warns(CacScoreWarning, match=rf"{paths[2].name}: not listed: corrupt DICOM file"):
        infos = list_series(tmp_path)
    assert infos[0].n_slices == 7


# ---- values entering HU and geometry ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "RescaleSlope is 0, which would make every pixel -1024 HU"),
        ("NaN", "RescaleSlope is not finite: 'NaN'"),
        ("inf", "RescaleSlope is not finite"),
        ("abc", "RescaleSlope is not a number"),
    ],
)
def test_bad_rescale_slope_is_an_error(
    tmp_path: Path, make_volume: Factory, value: str, message: str
) -> None:
    _, paths = _series(tmp_path, make_volume)
    edit_tag(paths[4], "RescaleSlope", value)
    with pytest.raises(DicomReadError, match=rf"{paths[4].name}: {message}"):
        read_volume(tmp_path)


def test_bad_rescale_intercept_is_an_error(tmp_path: Path, make_volume: Factory) -> None:
    _, paths = _series(tmp_path, make_volume)
    edit_tag(paths[4], "RescaleIntercept", "NaN")
    with pytest.raises(DicomReadError, match=rf"{paths[4].name}: RescaleIntercept is not finite"):
        read_volume(tmp_path)


def test_missing_rescale_values_default_with_a_warning(tmp_path: Path, make_volume: Factory) -> None:
    volume, paths = _series(tmp_path, make_volume)
    edit_tag(paths[2], "RescaleSlope", None)
    read = _read_quietly(tmp_path)
    np.testing.assert_array_equal(
        read.hu, volume.hu
    )  # slope 1 was right here; the warning says it was assumed
    assert read.warnings == [f"{tmp_path}: RescaleSlope missing; 1 used (IM00003.dcm)"]
    edit_tag(paths[2], "RescaleIntercept", None)
    read = _read_quietly(tmp_path)
    np.testing.assert_array_equal(read.hu[2], volume.hu[2].astype(int) + 1024)  # stored values, as told
    assert f"{tmp_path}: RescaleIntercept missing; 0 used (IM00003.dcm)" in read.warnings
    assert any("rescale slope/intercept differ between slices: IM00003.dcm" in w for w in read.warnings)


def test_per_slice_rescale_is_applied_and_warned(tmp_path: Path, make_volume: Factory) -> None:
    volume, paths = _series(tmp_path, make_volume)
    ds = pydicom.dcmread(paths[5])
    stored = np.frombuffer(ds.PixelData, dtype=np.int16).reshape(32, 32)
    ds.PixelData = (stored + 24).astype(np.int16).tobytes()  # the same HU with intercept -1048
    ds.RescaleIntercept = -1048
    ds.save_as(paths[5])
    read = _read_quietly(tmp_path)
    np.testing.assert_array_equal(read.hu, volume.hu)
    assert read.warnings == [
        f"{tmp_path}: rescale slope/intercept differ between slices: IM00006.dcm differ from "
        "the 1/-1024 of 7 slice(s); each slice is converted with its own values"
    ]


def test_rows_missing_in_the_first_file_names_that_file(tmp_path: Path, make_volume: Factory) -> None:
    _, paths = _series(tmp_path, make_volume)
    edit_tag(paths[0], "Rows", None)
    with pytest.raises(DicomReadError, match=r"IM00001.dcm: Rows is missing"):
        read_volume(tmp_path)


def test_image_size_of_the_odd_file_out_is_named(tmp_path: Path, make_volume: Factory) -> None:
    _, paths = _series(tmp_path, make_volume)
    edit_tag(paths[0], "Columns", 16)
    with pytest.raises(
        DicomReadError, match=r"IM00001.dcm: image size 32x16 differs from the 32x32 of 7 other"
    ):
        read_volume(tmp_path)


@pytest.mark.parametrize(
    ("keyword", "value", "message"),
    [
        ("BitsStored", 17, "BitsStored 17 with BitsAllocated 16"),
        ("BitsAllocated", 12, r"BitsAllocated 12 \(8, 16 or 32 expected\)"),
        ("BitsAllocated", 8, "BitsStored 16 with BitsAllocated 8"),
        ("PixelRepresentation", 2, r"PixelRepresentation 2 \(0 or 1 expected\)"),
        ("HighBit", 3, r"HighBit 3 with BitsStored 16 \(15 expected\)"),
        ("PixelSpacing", ["0", "0.7"], r"PixelSpacing \[0, 0.7\] is not positive"),
        ("ImagePositionPatient", ["NaN", "0", "0"], "ImagePositionPatient is not finite"),
        (
            "ImageOrientationPatient",
            ["0", "0", "0", "0", "0", "0"],
            r"ImageOrientationPatient \[0, 0, 0, 0, 0, 0\] is not two orthogonal unit vectors",
        ),
    ],
)
def test_inconsistent_values_are_named(
    tmp_path: Path, make_volume: Factory, keyword: str, value: object, message: str
) -> None:
    _, paths = _series(tmp_path, make_volume)
    edit_tag(paths[6], keyword, value)
    with pytest.raises(DicomReadError, match=rf"{paths[6].name}: {message}"):
        read_volume(tmp_path)


def test_missing_bits_allocated_defaults_with_a_warning(tmp_path: Path, make_volume: Factory) -> None:
    volume, paths = _series(tmp_path, make_volume)
    edit_tag(paths[1], "BitsAllocated", None)
    read = _read_quietly(tmp_path)
    np.testing.assert_array_equal(read.hu, volume.hu)
    assert read.warnings == [f"{tmp_path}: BitsAllocated missing; 16 used (IM00002.dcm)"]


def test_absurd_pixel_data_length_is_named(tmp_path: Path, make_volume: Factory) -> None:
    _, paths = _series(tmp_path, make_volume)
    data = bytearray(paths[-1].read_bytes())
    offset = data.rfind(b"\xe0\x7f\x10\x00")
    data[offset + 8 : offset + 12] = struct.pack("<I", 0xFFFFFFF0)
    paths[-1].write_bytes(bytes(data))
    with pytest.raises(
        DicomReadError, match=r"IM00008.dcm: PixelData declares 4294967280 bytes but only 2048 follow"
    ):
        read_volume(tmp_path)


def test_absurd_file_meta_group_length_is_a_warning(tmp_path: Path, make_volume: Factory) -> None:
    volume, paths = _series(tmp_path, make_volume)
    data = bytearray(paths[0].read_bytes())
    data[140:144] = struct.pack("<I", 0x7FFFFFF0)
    paths[0].write_bytes(bytes(data))
    read = _read_quietly(tmp_path)
    np.testing.assert_array_equal(read.hu, volume.hu)
    assert read.warnings[0].startswith(
        f"{paths[0]}: file meta group length says 2147483632 bytes but the file meta information is"
    )


@pytest.mark.parametrize(
    ("syntax", "message"),
    [
        (
            "1.2.840.10008.1.2.4.50",
            "transfer syntax JPEG Baseline .* says compressed, but the pixel data is not encapsulated",
        ),
        ("1.2.840.10008.1.2.4.70", "transfer syntax JPEG Lossless.* says compressed"),
        ("1.2.3.4.5", "unknown transfer syntax 1.2.3.4.5"),
    ],
)
def test_wrong_transfer_syntax_is_named_without_library_warnings(
    tmp_path: Path, make_volume: Factory, syntax: str, message: str
) -> None:
    _, paths = _series(tmp_path, make_volume)
    set_transfer_syntax(paths[0], syntax)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DicomReadError, match=rf"IM00001.dcm: {message}"):
            read_volume(tmp_path)
    assert [str(w.message) for w in caught] == []


def test_off_line_position_is_named_not_read_as_tilt(tmp_path: Path, make_volume: Factory) -> None:
    _, paths = _series(tmp_path, make_volume)
    position = [float(v) for v in pydicom.dcmread(paths[0]).ImagePositionPatient]
    edit_tag(paths[0], "ImagePositionPatient", [str(position[0] + 2.0), str(position[1]), str(position[2])])
    with pytest.raises(DicomReadError, match=r"IM00001.dcm: ImagePositionPatient is 2.000 mm off the line"):
        read_volume(tmp_path)


def test_images_in_acquisition_larger_than_the_series_warns(tmp_path: Path, make_volume: Factory) -> None:
    volume, _ = _series(tmp_path, make_volume, extra_tags={"ImagesInAcquisition": 9})
    read = _read_quietly(tmp_path)
    np.testing.assert_array_equal(read.hu, volume.hu)
    assert read.warnings == [
        f"{tmp_path}: ImagesInAcquisition is 9 but the series has 8 slice(s); slices may be missing"
    ]


def test_monoenergetic_classic_series_warns(tmp_path: Path, make_volume: Factory) -> None:
    _series(tmp_path, make_volume, extra_tags={"ImageType": ["DERIVED", "PRIMARY", "AXIAL", "VMI"]})
    read = _read_quietly(tmp_path)
    assert read.warnings == [
        f"{tmp_path}: image type VMI: a virtual monoenergetic or other multi-energy "
        "reconstruction, not a 120 kVp image; Agatston's 130 HU threshold may not apply"
    ]


def test_damaged_uid_with_line_breaks_stays_one_line(tmp_path: Path, make_volume: Factory) -> None:
    """Found by fuzzing: a SeriesInstanceUID holding line breaks and NULs made a multi-line error."""
    _, paths = _series(tmp_path, make_volume, extra_tags={"Modality": "MR"})
    uid = pydicom.dcmread(paths[0]).SeriesInstanceUID
    damaged = uid[:10] + "\n\0" + uid[12:]
    for path in paths:
        path.write_bytes(path.read_bytes().replace(uid.encode(), damaged.encode()))
    with pytest.raises(DicomReadError) as info:
        read_volume(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "\0" not in message
    assert f"no readable CT series found ({uid[:10]} {uid[12:]}: modality MR, not CT)" in message


@pytest.mark.parametrize("intercept", ["1e30", "-4e4"])
def test_rescale_beyond_int16_is_an_error(tmp_path: Path, make_volume: Factory, intercept: str) -> None:
    _, paths = _series(tmp_path, make_volume)
    edit_tag(paths[2], "RescaleIntercept", intercept)
    with pytest.raises(DicomReadError, match=r"IM00003.dcm: HU values .* after rescale do not fit in int16"):
        read_volume(tmp_path)
