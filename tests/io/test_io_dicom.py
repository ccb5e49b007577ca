"""DICOM series: sorting, storage variants, compression, series selection, bad input, warnings."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest

from cacscore.errors import CacScoreWarning, DicomReadError, InvalidInputError, VolumeReadError
from cacscore.io import (
    CTVolume,
    SeriesInfo,
    list_series,
    read_dicom_series,
    read_volume,
    write_dicom_series,
)

Factory = Callable[..., CTVolume]


def _edit(path: Path, **tags: object) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


def _files_in_slice_order(folder: Path) -> list[Path]:
    files = [(pydicom.dcmread(p, stop_before_pixels=True), p) for p in folder.glob("*.dcm")]
    return [p for ds, p in sorted(files, key=lambda item: float(item[0].ImagePositionPatient[2]))]


def test_shuffled_names_and_instance_numbers_are_read_in_position_order(
    tmp_path: Path, make_volume: Factory
) -> None:
    volume = make_volume()
    paths = write_dicom_series(
        volume, tmp_path, shuffle_names=True, shuffle_instance_numbers=True, uid_seed="s"
    )
    numbers = [int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber) for p in paths]
    assert numbers != sorted(numbers)
    assert [p.name for p in paths] != sorted(p.name for p in paths)
    read = read_volume(tmp_path)
    np.testing.assert_array_equal(read.hu, volume.hu)
    assert read.hu.dtype == np.int16
    assert read.spacing == pytest.approx(volume.spacing)
    assert read.origin == pytest.approx(volume.origin)
    np.testing.assert_allclose(read.direction, np.eye(3))
    assert read.series_uid == pydicom.dcmread(paths[0]).SeriesInstanceUID
    assert (read.kvp, read.slice_thickness_mm, read.modality) == (120.0, 3.0, "CT")
    assert read.warnings == []


@pytest.mark.parametrize(
    ("signed", "intercept", "slope", "bits_stored"),
    [
        (True, -1024.0, 1.0, 16),
        (False, -1024.0, 1.0, 16),
        (True, 0.0, 1.0, 12),
        (False, -1024.0, 1.0, 12),
        (True, -1000.0, 0.5, 16),
    ],
)
def test_signed_and_unsigned_storage_with_rescale(
    tmp_path: Path, make_volume: Factory, signed: bool, intercept: float, slope: float, bits_stored: int
) -> None:
    volume = make_volume()
    paths = write_dicom_series(
        volume,
        tmp_path,
        signed=signed,
        rescale_intercept=intercept,
        rescale_slope=slope,
        bits_stored=bits_stored,
    )
    ds = pydicom.dcmread(paths[0])
    assert int(ds.PixelRepresentation) == int(signed)
    assert float(ds.RescaleIntercept) == intercept
    np.testing.assert_array_equal(read_volume(tmp_path).hu, volume.hu)


def test_bits_above_bits_stored_are_ignored(tmp_path: Path, make_volume: Factory) -> None:
    volume = make_volume()
    write_dicom_series(volume, tmp_path, signed=False, bits_stored=12)
    path = _files_in_slice_order(tmp_path)[2]
    ds = pydicom.dcmread(path)
    stored = np.frombuffer(ds.PixelData, dtype=np.uint16) | np.uint16(
        0xF000
    )  # overlay-like junk in bits 12-15
    ds.PixelData = stored.tobytes()
    ds.save_as(path)
    np.testing.assert_array_equal(read_volume(tmp_path).hu, volume.hu)


@pytest.mark.parametrize(
    ("syntax", "uid"),
    [
        ("RLE", "1.2.840.10008.1.2.5"),
        ("JPEG lossless", "1.2.840.10008.1.2.4.70"),
        ("JPEG-LS lossless", "1.2.840.10008.1.2.4.80"),
        ("JPEG 2000 lossless", "1.2.840.10008.1.2.4.90"),
        ("implicit VR little endian", "1.2.840.10008.1.2"),
    ],
)
@pytest.mark.parametrize("signed", [True, False])
def test_compressed_round_trip(
    tmp_path: Path, make_volume: Factory, syntax: str, uid: str, signed: bool
) -> None:
    volume = make_volume((4, 32, 32))
    paths = write_dicom_series(volume, tmp_path, transfer_syntax=syntax, signed=signed)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == uid
    np.testing.assert_array_equal(read_volume(tmp_path).hu, volume.hu)


def test_unencodable_transfer_syntax_is_refused(tmp_path: Path, make_volume: Factory) -> None:
    with pytest.raises(InvalidInputError, match="transfer_syntax 'JPEG baseline' cannot be written"):
        write_dicom_series(make_volume(), tmp_path, transfer_syntax="JPEG baseline")


def test_unrepresentable_hu_are_refused(tmp_path: Path, make_volume: Factory) -> None:
    volume = make_volume()
    with pytest.raises(InvalidInputError, match="outside uint16"):
        write_dicom_series(volume, tmp_path, signed=False, rescale_intercept=0.0)


def test_rescale_that_cannot_hold_the_hu_is_refused(tmp_path: Path, make_volume: Factory) -> None:
    with pytest.raises(
        InvalidInputError, match="rescale_slope 2 and rescale_intercept -1024 cannot represent"
    ):
        write_dicom_series(make_volume(), tmp_path, rescale_slope=2.0)


def test_writer_refuses_folder_with_dicom_files(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume(), tmp_path)
    with pytest.raises(InvalidInputError, match="already holds .dcm files"):
        write_dicom_series(make_volume(), tmp_path)


def test_uid_seed_makes_uids_deterministic(tmp_path: Path, make_volume: Factory) -> None:
    first = write_dicom_series(make_volume(), tmp_path / "a", uid_seed="seed")
    second = write_dicom_series(make_volume(), tmp_path / "b", uid_seed="seed")
    other = write_dicom_series(make_volume(), tmp_path / "c", uid_seed="other")
    uids = [pydicom.dcmread(p[0]).SeriesInstanceUID for p in (first, second, other)]
    assert uids[0] == uids[1] != uids[2]


def test_extra_tags_and_manufacturer(tmp_path: Path, make_volume: Factory) -> None:
    paths = write_dicom_series(
        make_volume(),
        tmp_path,
        manufacturer="SIEMENS",
        extra_tags={"ConvolutionKernel": "Qr36", "PatientID": "P7"},
    )
    ds = pydicom.dcmread(paths[0])
    assert (ds.Manufacturer, ds.ConvolutionKernel, ds.PatientID, ds.Modality) == (
        "SIEMENS",
        "Qr36",
        "P7",
        "CT",
    )
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    read = read_volume(tmp_path)
    assert (read.manufacturer, read.patient_id) == ("SIEMENS", "P7")


def test_feet_first_series_is_read_in_canonical_orientation(tmp_path: Path, make_volume: Factory) -> None:
    # Feet-first supine: rows run to the patient's right (-x), slices stored from head to feet.
    stored = make_volume(direction=np.diag([-1.0, 1.0, -1.0]))
    write_dicom_series(stored, tmp_path)
    read = read_volume(tmp_path)
    np.testing.assert_allclose(read.direction, np.eye(3), atol=1e-9)
    np.testing.assert_array_equal(read.hu, stored.hu[::-1, :, ::-1])
    corner = np.array([[7, 31, 0]])
    np.testing.assert_allclose(read.index_to_patient(corner), stored.index_to_patient([[0, 31, 31]]))


def test_non_dicom_files_and_dicomdir_are_skipped(tmp_path: Path, make_volume: Factory) -> None:
    volume = make_volume()
    write_dicom_series(volume, tmp_path / "series")
    (tmp_path / "README.txt").write_text("not dicom")
    (tmp_path / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"junk")
    (tmp_path / "series" / "notes.dcm.bak").write_bytes(b"\0" * 10)
    np.testing.assert_array_equal(read_volume(tmp_path).hu, volume.hu)


def _multi_series_folder(root: Path, make_volume: Factory) -> dict[str, str]:
    uids = {}
    write_dicom_series(make_volume((10, 16, 16)), root / "calcium", uid_seed="calcium")
    write_dicom_series(
        make_volume((24, 16, 16), spacing=(1.0, 0.7, 0.6), slice_thickness_mm=1.0),
        root / "thin",
        uid_seed="thin",
    )
    write_dicom_series(make_volume((30, 16, 16), modality="MR"), root / "mr", uid_seed="mr")
    write_dicom_series(
        make_volume((40, 16, 16)),
        root / "scout",
        uid_seed="scout",
        extra_tags={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]},
    )
    for name in ("calcium", "thin", "mr", "scout"):
        uids[name] = pydicom.dcmread(next((root / name).glob("*.dcm"))).SeriesInstanceUID
    return uids


def test_multi_series_folder_picks_calcium_scoring_series(tmp_path: Path, make_volume: Factory) -> None:
    uids = _multi_series_folder(tmp_path, make_volume)
    infos = list_series(tmp_path)
    assert [info.series_uid for info in infos][:2] == [uids["calcium"], uids["thin"]]
    by_uid = {info.series_uid: info for info in infos}
    assert by_uid[uids["mr"]].reason == "modality MR, not CT" and not by_uid[uids["mr"]].is_candidate
    assert "localizer" in by_uid[uids["scout"]].reason
    assert (by_uid[uids["thin"]].n_slices, by_uid[uids["thin"]].slice_thickness_mm) == (24, 1.0)
    assert SeriesInfo.from_dict(json.loads(json.dumps(infos[0].to_dict()))) == infos[0]
    # The choice is said, with the series left out and how to pick one (not a silent first pick).
    with pytest.warns(
        CacScoreWarning, match=f"holds 2 CT series; read {uids['calcium']} .*not {uids['thin']}"
    ):
        read = read_volume(tmp_path)
    assert read.series_uid == uids["calcium"] and read.shape == (10, 16, 16)
    assert any("--series UID picks one" in w for w in read.warnings)


def test_series_uid_selects_another_series(tmp_path: Path, make_volume: Factory) -> None:
    uids = _multi_series_folder(tmp_path, make_volume)
    with pytest.warns(CacScoreWarning, match="slice thickness is 1 mm"):
        read = read_volume(tmp_path, series_uid=uids["thin"])
    assert read.series_uid == uids["thin"] and read.shape == (24, 16, 16)
    with pytest.raises(DicomReadError, match="modality MR, not CT"):
        read_volume(tmp_path, series_uid=uids["mr"])
    with pytest.raises(DicomReadError, match="no series with SeriesInstanceUID 1.2.3"):
        read_volume(tmp_path, series_uid="1.2.3")


def test_single_dicom_file_reads_its_series(tmp_path: Path, make_volume: Factory) -> None:
    uids = _multi_series_folder(tmp_path, make_volume)
    path = next((tmp_path / "thin").glob("*.dcm"))
    with pytest.warns(CacScoreWarning, match="slice thickness"):
        read = read_volume(path)
    assert read.series_uid == uids["thin"]


# ---- bad input --------------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path, make_volume: Factory) -> None:
    with pytest.raises(VolumeReadError, match="nothere: no such file or folder"):
        read_volume(tmp_path / "nothere")


def test_folder_without_dicom(tmp_path: Path, make_volume: Factory) -> None:
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(DicomReadError, match="no DICOM files found"):
        read_volume(tmp_path)


def test_not_ct(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume(modality="MR"), tmp_path)
    with pytest.raises(DicomReadError, match="no readable CT series.*modality MR, not CT"):
        read_volume(tmp_path)


def test_missing_slices_say_where(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume(), tmp_path)
    files = _files_in_slice_order(tmp_path)
    files[3].unlink()
    files[4].unlink()
    with pytest.raises(
        DicomReadError,
        match=r"missing slices: a 9.00 mm gap between -294.00 and -285.00 mm.*"
        r"about 2 slice\(s\) missing",
    ):
        read_volume(tmp_path)


def test_duplicated_slice_position(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume(), tmp_path)
    files = _files_in_slice_order(tmp_path)
    _edit(files[5], ImagePositionPatient=pydicom.dcmread(files[4]).ImagePositionPatient)
    with pytest.raises(DicomReadError, match="duplicated slice position -288.00 mm"):
        read_volume(tmp_path)


def test_uneven_spacing_says_by_how_much(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume(), tmp_path)
    path = _files_in_slice_order(tmp_path)[3]
    x, y, z = (float(v) for v in pydicom.dcmread(path).ImagePositionPatient)
    _edit(path, ImagePositionPatient=[x, y, z + 0.4])
    with pytest.raises(
        DicomReadError, match="uneven slice spacing: increments range from 2.600 to 3.400 mm, up to 0.400 mm"
    ):
        read_volume(tmp_path)


def test_gantry_tilt_says_the_angle(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume(), tmp_path)
    for index, path in enumerate(_files_in_slice_order(tmp_path)):
        x, y, z = (float(v) for v in pydicom.dcmread(path).ImagePositionPatient)
        _edit(path, ImagePositionPatient=[x, y + index * 3.0 * np.tan(np.radians(15.0)), z])
    with pytest.raises(DicomReadError, match="gantry tilt of 15.0 degrees"):
        read_volume(tmp_path)


def test_gantry_detector_tilt_tag(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume(), tmp_path, extra_tags={"GantryDetectorTilt": 12.5})
    with pytest.raises(DicomReadError, match="gantry tilt of 12.5 degrees"):
        read_volume(tmp_path)


@pytest.mark.parametrize(
    ("direction", "angle", "kind"),
    [
        (np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]).T, "90.0", "coronal"),
        (np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]).T, "90.0", "sagittal"),
        (
            np.array([[1.0, 0.0, 0.0], [0.0, np.cos(0.5), np.sin(0.5)], [0.0, -np.sin(0.5), np.cos(0.5)]]).T,
            "28.6",
            "oblique",
        ),
    ],
)
def test_non_axial_series_says_the_angle(
    tmp_path: Path, make_volume: Factory, direction: np.ndarray, angle: str, kind: str
) -> None:
    write_dicom_series(make_volume(direction=direction), tmp_path)
    with pytest.raises(DicomReadError, match=f"slices, not axial \\(slice normal {angle} degrees from"):
        read_volume(tmp_path)
    series_uid = list_series(tmp_path)[0].series_uid
    with pytest.raises(DicomReadError, match=f"cannot be read as CT: {kind} slices, not axial"):
        read_volume(tmp_path, series_uid=series_uid)


def test_slightly_oblique_series_reports_angle(tmp_path: Path, make_volume: Factory) -> None:
    tilt = np.radians(5.0)
    rotation = np.array(
        [[1.0, 0.0, 0.0], [0.0, np.cos(tilt), -np.sin(tilt)], [0.0, np.sin(tilt), np.cos(tilt)]]
    )
    write_dicom_series(make_volume(direction=rotation), tmp_path)
    with pytest.raises(DicomReadError, match="oblique slices, not axial \\(slice normal 5.0 degrees"):
        read_volume(tmp_path)


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"SamplesPerPixel": 3, "PhotometricInterpretation": "RGB"}, "3 samples per pixel \\(RGB\\)"),
        ({"NumberOfFrames": 4}, "multi-frame"),
    ],
)
def test_unsupported_image_kinds(
    tmp_path: Path, make_volume: Factory, tags: dict[str, object], message: str
) -> None:
    write_dicom_series(make_volume(), tmp_path)
    for path in tmp_path.glob("*.dcm"):
        _edit(path, **tags)
    with pytest.raises(DicomReadError, match=message):
        read_volume(tmp_path)


def test_inconsistent_image_size(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume(), tmp_path)
    path = _files_in_slice_order(tmp_path)[2]
    _edit(path, Rows=16)
    with pytest.raises(DicomReadError, match=f"{path.name}: image size 16x32 differs"):
        read_volume(tmp_path)


def test_corrupt_header(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume(), tmp_path)
    path = _files_in_slice_order(tmp_path)[1]
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DicomReadError, match=f"{path.name}: corrupt DICOM file"):
        read_volume(tmp_path)


def test_truncated_pixel_data(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume(), tmp_path)
    path = _files_in_slice_order(tmp_path)[1]
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[:100]
    ds.save_as(path)
    with pytest.raises(DicomReadError, match=f"{path.name}: pixel data truncated"):
        read_volume(tmp_path)


def test_truncated_compressed_pixel_data(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume(), tmp_path, transfer_syntax="RLE")
    path = _files_in_slice_order(tmp_path)[1]
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(DicomReadError, match=f"{path.name}: (cannot decode pixel data|corrupt DICOM file)"):
        read_volume(tmp_path)


def test_single_slice_is_not_a_candidate(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume((1, 16, 16)), tmp_path)
    with pytest.raises(DicomReadError, match="a single slice"):
        read_volume(tmp_path)


# ---- warnings ---------------------------------------------------------------------------------------


def test_kvp_warning_is_neutral_and_recorded(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume(kvp=100.0), tmp_path)
    with pytest.warns(CacScoreWarning, match="kVp is 100; Agatston's 130 HU threshold is defined at 120 kVp"):
        read = read_volume(tmp_path)
    assert read.kvp == 100.0
    assert len(read.warnings) == 1 and "kVp is 100" in read.warnings[0]


def test_thickness_warning(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume(spacing=(5.0, 0.7, 0.6), slice_thickness_mm=5.0), tmp_path)
    with pytest.warns(
        CacScoreWarning, match="slice thickness is 5 mm; Agatston scoring is defined for 2.5-3 mm"
    ):
        read_volume(tmp_path)


def test_overlapping_reconstruction_warning(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume(spacing=(1.5, 0.7, 0.6), slice_thickness_mm=3.0), tmp_path)
    with pytest.warns(
        CacScoreWarning,
        match="overlapping reconstruction: slice increment 1.5 mm is smaller than the slice thickness 3 mm",
    ):
        read = read_volume(tmp_path)
    assert read.spacing[0] == pytest.approx(1.5)


def test_copy_of_series_in_subfolder_is_one_series_with_duplicates(
    tmp_path: Path, make_volume: Factory
) -> None:
    write_dicom_series(make_volume(), tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    with pytest.raises(DicomReadError, match="duplicated slice position"):
        read_volume(tmp_path)


def test_volume_is_a_ctvolume(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume(), tmp_path)
    assert isinstance(read_dicom_series(tmp_path), CTVolume)


def test_missing_image_position(tmp_path: Path, make_volume: Factory) -> None:
    write_dicom_series(make_volume(), tmp_path)
    path = _files_in_slice_order(tmp_path)[4]
    ds = pydicom.dcmread(path)
    del ds.ImagePositionPatient
    ds.save_as(path)
    with pytest.raises(DicomReadError, match=f"{path.name}: ImagePositionPatient is missing"):
        read_volume(tmp_path)


def test_single_file_of_another_series_than_requested(tmp_path: Path, make_volume: Factory) -> None:
    paths = write_dicom_series(make_volume(), tmp_path, uid_seed="x")
    with pytest.raises(VolumeReadError, match="belongs to series .*, not to the requested 1.2.3"):
        read_volume(paths[0], series_uid="1.2.3")


def test_series_whose_uid_an_anonymiser_removed_is_read_with_a_warning(
    tmp_path: Path, make_volume: Factory
) -> None:
    # Some anonymisers strip SeriesInstanceUID (the TotalSegmentator example series has none): complete
    # image headers without it are one series, said in a warning; the pixels are read as they are.
    volume = make_volume()
    paths = write_dicom_series(volume, tmp_path, uid_seed="anon")
    for path in paths:
        ds = pydicom.dcmread(path)
        del ds.SeriesInstanceUID
        ds.save_as(path)
    with pytest.warns(CacScoreWarning, match="carry no SeriesInstanceUID"):
        read = read_volume(tmp_path)
    np.testing.assert_array_equal(read.hu, volume.hu)
    assert any(f"the {len(paths)} images without one are read as one series" in w for w in read.warnings)


def test_file_cut_before_its_series_uid_is_named_as_truncated(tmp_path: Path, make_volume: Factory) -> None:
    paths = write_dicom_series(make_volume(), tmp_path, uid_seed="cut")
    victim = _files_in_slice_order(tmp_path)[3]
    data = victim.read_bytes()
    # Cut the file inside its study module, before (0020,000E) SeriesInstanceUID and the image attributes.
    ds = pydicom.dcmread(victim, stop_before_pixels=True)
    marker = str(ds.StudyInstanceUID).encode()
    victim.write_bytes(data[: data.index(marker)])
    with pytest.raises(DicomReadError, match=f"{victim.name}.*truncated"):
        read_volume(tmp_path)
    assert len(paths) == 8
