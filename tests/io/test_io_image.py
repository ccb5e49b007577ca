"""NIfTI / MetaImage / NRRD volumes and masks: round trips, files from other tools, orientation, bad input."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from cacscore.errors import CacScoreWarning, InvalidInputError, VolumeReadError
from cacscore.io import CTVolume, read_mask, read_volume, write_mask, write_volume

Factory = Callable[..., CTVolume]
SUFFIXES = [".nii", ".nii.gz", ".mha", ".mhd", ".nrrd"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip_keeps_hu_and_geometry(tmp_path: Path, make_volume: Factory, suffix: str) -> None:
    volume = make_volume(
        spacing=(2.5, 0.68359375, 0.7),
        origin=(-120.3, 85.25, -612.5),
        slice_thickness_mm=2.5,
        series_uid="1.2.3.4",
        patient_id="P1",
    )
    path = write_volume(volume, tmp_path / f"ct{suffix}")
    read = read_volume(path)
    np.testing.assert_array_equal(read.hu, volume.hu)
    assert read.hu.dtype == np.int16
    assert read.spacing == pytest.approx(volume.spacing, abs=1e-9)
    assert read.origin == pytest.approx(volume.origin, abs=1e-9)
    np.testing.assert_allclose(read.direction, np.eye(3), atol=1e-9)
    assert (read.kvp, read.slice_thickness_mm) == (120.0, 2.5)
    assert read.source == str(path)
    if suffix not in (".nii", ".nii.gz"):
        assert (read.series_uid, read.patient_id) == ("1.2.3.4", "P1")


def test_round_trip_of_flipped_volume_keeps_patient_positions(tmp_path: Path, make_volume: Factory) -> None:
    stored = make_volume(direction=np.diag([-1.0, -1.0, 1.0]))
    read = read_volume(write_volume(stored, tmp_path / "ct.mha"))
    np.testing.assert_allclose(read.direction, np.eye(3), atol=1e-9)
    np.testing.assert_array_equal(read.hu, stored.hu[:, ::-1, ::-1])
    zyx = np.array([[2, 5, 7], [7, 0, 31]])
    np.testing.assert_allclose(
        read.index_to_patient(zyx), stored.index_to_patient(zyx * [1, -1, -1] + [0, 31, 31])
    )


def test_nifti_written_by_nibabel_is_converted_from_ras(tmp_path: Path) -> None:
    data_xyz = np.arange(20 * 16 * 6, dtype=np.int16).reshape(20, 16, 6) - 500
    affine_ras = np.array([[0.6, 0, 0, 10.0], [0, 0.7, 0, -20.0], [0, 0, 3.0, 30.0], [0, 0, 0, 1]])
    image = nib.Nifti1Image(data_xyz, affine_ras)
    image.set_qform(affine_ras, code=1)
    image.set_sform(affine_ras, code=1)
    path = tmp_path / "nib.nii.gz"
    nib.save(image, path)
    read = read_volume(path)
    assert read.shape == (6, 16, 20)
    assert read.spacing == pytest.approx((3.0, 0.7, 0.6))
    np.testing.assert_allclose(read.direction, np.eye(3), atol=1e-6)
    for i, j, k in [(0, 0, 0), (19, 15, 5), (3, 11, 2)]:
        ras = affine_ras @ [i, j, k, 1]
        lps = np.array([-ras[0], -ras[1], ras[2]])
        index = np.rint(read.patient_to_index(lps)[0]).astype(int)
        assert read.hu[tuple(index)] == data_xyz[i, j, k]
    assert read.kvp is None and read.slice_thickness_mm is None


def test_mha_written_by_simpleitk_with_permuted_axes(tmp_path: Path) -> None:
    # Stored in sagittal order: ITK index x runs head-ward, z runs to the patient's left.
    array = np.arange(10 * 12 * 5, dtype=np.int16).reshape(10, 12, 5) - 1000  # numpy (k, j, i)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((2.5, 0.8, 0.5))
    image.SetOrigin((5.0, -7.0, 100.0))
    image.SetDirection((0, 0, 1, 0, 1, 0, 1, 0, 0))  # columns: x index -> +z, y -> +y, z index -> +x
    sitk.WriteImage(image, str(tmp_path / "sag.mha"))
    read = read_volume(tmp_path / "sag.mha")
    assert read.shape == (5, 12, 10)
    assert read.spacing == pytest.approx((2.5, 0.8, 0.5))
    np.testing.assert_allclose(read.direction, np.eye(3))
    for k, j, i in [(0, 0, 0), (9, 11, 4), (4, 6, 2)]:
        point = image.TransformIndexToPhysicalPoint((i, j, k))
        index = np.rint(read.patient_to_index(point)[0]).astype(int)
        assert read.hu[tuple(index)] == array[k, j, i]


def test_float_image_is_rounded_to_int16(tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(np.full((3, 4, 4), 129.6, dtype=np.float32))
    image.SetSpacing((0.5, 0.5, 3.0))
    sitk.WriteImage(image, str(tmp_path / "f.nrrd"))
    with pytest.warns(CacScoreWarning, match=r"f\.nrrd: no voxel below -50 HU \(lowest 130\)"):
        read = read_volume(tmp_path / "f.nrrd")
    assert read.hu.dtype == np.int16 and int(read.hu[0, 0, 0]) == 130


def test_oblique_image_says_the_angle(tmp_path: Path) -> None:
    angle = np.radians(30.0)
    image = sitk.GetImageFromArray(np.zeros((4, 8, 8), dtype=np.int16))
    rotation = [[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]
    image.SetDirection(np.asarray(rotation, dtype=float).ravel().tolist())
    sitk.WriteImage(image, str(tmp_path / "oblique.mha"))
    with pytest.raises(
        VolumeReadError, match="oblique.mha: non-axial orientation: the slice axis is 30.0 degrees"
    ):
        read_volume(tmp_path / "oblique.mha")


def test_two_dimensional_image_is_refused(tmp_path: Path) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), dtype=np.int16)), str(tmp_path / "flat.nii"))
    with pytest.raises(VolumeReadError, match="flat.nii: holds a 2-D image"):
        read_volume(tmp_path / "flat.nii")


def test_rgb_image_is_refused(tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(np.zeros((2, 8, 8, 3), dtype=np.uint8), isVector=True)
    sitk.WriteImage(image, str(tmp_path / "rgb.mha"))
    with pytest.raises(VolumeReadError, match="rgb.mha: holds 3 values per voxel"):
        read_volume(tmp_path / "rgb.mha")


def test_corrupt_and_unsupported_files(tmp_path: Path) -> None:
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti at all")
    with pytest.raises(
        VolumeReadError, match="bad.nii.gz: truncated or corrupt NIfTI header: .* not a gzip file"
    ):
        read_volume(tmp_path / "bad.nii.gz")
    (tmp_path / "pic.png").write_bytes(b"\x89PNG")
    with pytest.raises(VolumeReadError, match="pic.png: unsupported file type"):
        read_volume(tmp_path / "pic.png")
    with pytest.raises(InvalidInputError, match="unsupported file type"):
        write_volume(CTVolume(hu=np.zeros((2, 2, 2), np.int16), spacing=1.0), tmp_path / "x.png")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_truncated_file_is_refused_not_read_as_zeros(
    tmp_path: Path, make_volume: Factory, suffix: str
) -> None:
    # ITK reads a NIfTI file that ends early without complaint (zeros or garbage for the missing voxels).
    path = write_volume(make_volume(), tmp_path / f"ct{suffix}")
    data_file = path.with_suffix(".raw") if suffix == ".mhd" else path
    data = data_file.read_bytes()
    data_file.write_bytes(data[: len(data) - 64])
    # Compressed files (ours in .mha and .nrrd) cannot be sized from the header: ITK's refusal then.
    refusal = "cannot read image file" if suffix in (".mha", ".nrrd") else "truncated or corrupt"
    with pytest.raises(VolumeReadError, match=rf"ct{suffix}: {refusal}") as info:
        read_volume(path)
    assert "\n" not in str(info.value)
    assert "No such file or directory" not in str(info.value)  # ITK's stale errno, not the problem


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_nan_or_infinite_voxels_are_refused_not_read_as_water(
    tmp_path: Path, make_volume: Factory, suffix: str
) -> None:
    # ITK's NIfTI reader turns NaN and infinity into 0 HU without a word.
    hu = make_volume().hu.astype(np.float32)
    for value, name in ((np.nan, "nan"), (np.inf, "inf")):
        stored = hu.copy()
        stored[1, 2, 3] = value
        path = tmp_path / f"{name}{suffix}"
        if suffix in (".nii", ".nii.gz"):
            nib.save(nib.Nifti1Image(stored.transpose(2, 1, 0), np.eye(4)), path)
        else:
            sitk.WriteImage(sitk.GetImageFromArray(stored), str(path))
        with pytest.raises(VolumeReadError, match=rf"{name}{suffix}: (image )?holds NaN or infinite values"):
            read_volume(path)
        with pytest.raises(VolumeReadError, match=rf"{name}{suffix}: (mask )?holds (NaN|non-integer)"):
            read_mask(path, make_volume())  # values are checked before the grid


def test_metaimage_from_another_tool_truncated_missing_its_data_or_compressed(
    tmp_path: Path, make_volume: Factory
) -> None:
    volume = make_volume()
    sitk.WriteImage(sitk.GetImageFromArray(volume.hu), str(tmp_path / "plain.mha"))  # uncompressed
    data = (tmp_path / "plain.mha").read_bytes()
    (tmp_path / "plain.mha").write_bytes(data[:-10])
    expected = volume.hu.size * 2
    with pytest.raises(
        VolumeReadError,
        match=rf"plain\.mha: truncated or corrupt: its header describes {expected} "
        rf"bytes of voxels, the file holds {expected - 10}$",
    ):
        read_volume(tmp_path / "plain.mha")
    path = write_volume(volume, tmp_path / "ct.mhd")
    path.with_suffix(".raw").rename(tmp_path / "elsewhere.raw")
    with pytest.raises(VolumeReadError, match=r"ct\.mhd: its data file ct\.raw is missing"):
        read_volume(path)
    # Compressed data cannot be sized from the header: the size check steps aside and ITK reads it.
    writer = sitk.ImageFileWriter()
    writer.SetUseCompression(True)
    writer.SetFileName(str(tmp_path / "zipped.mha"))
    image = sitk.GetImageFromArray(volume.hu)
    image.SetSpacing(volume.spacing[::-1])
    writer.Execute(image)
    np.testing.assert_array_equal(read_volume(tmp_path / "zipped.mha").hu, volume.hu)


def test_nifti_whose_pixdim_and_sform_disagree_or_is_sheared_is_refused(
    tmp_path: Path, make_volume: Factory
) -> None:
    volume = make_volume()
    path = write_volume(volume, tmp_path / "ct.nii.gz")
    stored = nib.load(path)
    header = stored.header.copy()
    header["pixdim"][3] = 1.0  # the sform keeps 3 mm slices; ITK would take 1 mm with a warning on stderr
    nib.save(nib.Nifti1Image(np.asanyarray(stored.dataobj), None, header), tmp_path / "odd.nii.gz")
    with pytest.raises(
        VolumeReadError,
        match=r"odd\.nii\.gz: its header gives two voxel sizes, 0\.6 x 0\.7 x 1 mm "
        r"\(pixdim\) and 0\.6 x 0\.7 x 3 mm \(sform\)",
    ):
        read_volume(tmp_path / "odd.nii.gz")
    tilt = np.radians(10.0)
    sheared = np.diag([0.7, 0.7, 3.0, 1.0])
    sheared[1:3, 2] = 3.0 * np.sin(tilt), 3.0 * np.cos(tilt)  # each slice shifted along y
    tilted = nib.Nifti1Image(np.full((8, 8, 6), -1000, np.int16), sheared)
    tilted.header["pixdim"][3] = 3.0 * np.cos(tilt)  # the slice spacing, as dcm2niix writes it
    nib.save(tilted, tmp_path / "tilted.nii.gz")
    with pytest.raises(VolumeReadError, match=r"tilted\.nii\.gz: gantry tilt of 10\.0 degrees"):
        read_volume(tmp_path / "tilted.nii.gz")


def test_truncated_nifti_mask_is_refused(tmp_path: Path, make_volume: Factory) -> None:
    volume = make_volume()
    labels = np.random.default_rng(0).integers(0, 6, volume.shape).astype(np.uint8)  # does not compress away
    path = write_mask(labels, volume, tmp_path / "mask.nii.gz")
    path.write_bytes(path.read_bytes()[:-64])
    with pytest.raises(VolumeReadError, match="mask.nii.gz: truncated or corrupt"):
        read_mask(path, volume)


def test_nifti_of_several_gzip_members_from_another_tool_is_read(
    tmp_path: Path, make_volume: Factory
) -> None:
    import gzip

    volume = make_volume()
    raw = write_volume(volume, tmp_path / "ct.nii").read_bytes()
    # The gzip trailer then holds only the last member's size: the completeness check must decompress.
    (tmp_path / "two.nii.gz").write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    np.testing.assert_array_equal(read_volume(tmp_path / "two.nii.gz").hu, volume.hu)
    (tmp_path / "cut.nii.gz").write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:])[:-40])
    with pytest.raises(VolumeReadError, match="cut.nii.gz: truncated or corrupt"):
        read_volume(tmp_path / "cut.nii.gz")


def test_slice_increment_outside_agatston_warns_when_the_thickness_is_unknown(tmp_path: Path) -> None:
    # NIfTI files from other tools carry no slice thickness: the increment stands in for it.
    hu = np.full((6, 8, 8), -1000, np.int16)
    for dz, warns in ((0.625, True), (5.0, True), (3.0, False), (2.5, False)):
        path = tmp_path / f"dz{dz}.nii.gz"
        nib.save(nib.Nifti1Image(hu.transpose(2, 1, 0), np.diag([0.7, 0.7, dz, 1.0])), path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            read = read_volume(path)
        assert read.slice_thickness_mm is None and read.spacing[0] == dz
        expected = (
            f"slice thickness unknown and slice increment {dz:g} mm; Agatston scoring is defined for 2.5-3 mm"
        )
        assert [expected in str(w.message) for w in caught] == ([True] if warns else [])


def test_label_mask_or_unrescaled_image_read_as_ct_warns(tmp_path: Path, make_volume: Factory) -> None:
    volume = make_volume()
    labels = np.zeros(volume.shape, np.uint8)
    labels[1, 2:4, 2:4] = 3
    mask_path = write_mask(labels, volume, tmp_path / "label.nii.gz")
    with pytest.warns(
        CacScoreWarning, match=r"label\.nii\.gz: no voxel below -50 HU \(lowest 0\).*label mask"
    ):
        read = read_volume(mask_path)
    assert any("no voxel below" in w for w in read.warnings)
    # Stored pixel values without the -1024 intercept: air at 0, soft tissue above the calcium threshold.
    raw = volume.with_hu((volume.hu.astype(np.int32) + 1024).clip(0, None).astype(np.int16))
    with pytest.warns(CacScoreWarning, match="rescale intercept"):
        read_volume(write_volume(raw, tmp_path / "raw.nii.gz"))
    crop = volume.with_hu(np.where(volume.hu < 0, -100, 40).astype(np.int16))  # fat and blood, no lung
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not read_volume(write_volume(volume, tmp_path / "ct.nii.gz")).warnings
        assert not read_volume(write_volume(crop, tmp_path / "heart_crop.nii.gz")).warnings


def test_image_kvp_warning(tmp_path: Path, make_volume: Factory) -> None:
    path = write_volume(make_volume(kvp=80.0), tmp_path / "ct.nrrd")
    with pytest.warns(CacScoreWarning, match="ct.nrrd: kVp is 80"):
        read = read_volume(path)
    assert read.warnings and "kVp is 80" in read.warnings[0]


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_mask_round_trip_and_conventions(tmp_path: Path, make_volume: Factory, suffix: str) -> None:
    volume = make_volume()
    mask = np.zeros(volume.shape, dtype=np.uint8)
    mask[2, 3:6, 4:9] = 3
    mask[5, 10, 10] = 1
    path = write_mask(mask, volume, tmp_path / f"mask{suffix}")
    np.testing.assert_array_equal(read_mask(path, volume), mask)
    np.testing.assert_array_equal(read_mask(path, volume, "binary"), (mask > 0).astype(np.uint8))
    orcascore = read_mask(path, volume, "orcascore")
    assert orcascore[2, 3, 4] == 5 and orcascore[5, 10, 10] == 3
    with pytest.raises(InvalidInputError, match=r"label values \[6\]"):
        write_mask(np.full(volume.shape, 6), volume, tmp_path / "six.nrrd")
        read_mask(tmp_path / "six.nrrd", volume)


def test_mask_grid_mismatch_names_both_grids(tmp_path: Path, make_volume: Factory) -> None:
    volume = make_volume()
    moved = make_volume(origin=(-10.5, 20.25, -297.0))
    path = write_mask(np.zeros(volume.shape, np.uint8), moved, tmp_path / "mask.nii.gz")
    with pytest.raises(
        VolumeReadError,
        match=r"mask.nii.gz: mask grid \(shape \(8, 32, 32\).*origin \(-10.5, "
        r"20.25, -297.0\) mm\) does not match the CT grid \(.*-300.0\) mm\)",
    ):
        read_mask(path, volume)
    small = CTVolume(hu=np.zeros((4, 32, 32), np.int16), spacing=volume.spacing, origin=volume.origin)
    path = write_mask(np.zeros(small.shape, np.uint8), small, tmp_path / "small.mha")
    with pytest.raises(
        VolumeReadError, match=r"shape \(4, 32, 32\).*does not match the CT grid \(shape \(8, 32"
    ):
        read_mask(path, volume)


def test_mask_in_stored_orientation_matches_canonical_ct(tmp_path: Path, make_volume: Factory) -> None:
    stored = make_volume(direction=np.diag([-1.0, -1.0, 1.0]))
    ct = read_volume(write_volume(stored, tmp_path / "ct.nii.gz"))
    mask = np.zeros(stored.shape, np.uint8)
    mask[1, 2, 3] = 4
    path = write_mask(mask, stored, tmp_path / "mask.nii.gz")
    read = read_mask(path, ct)
    assert read[1, 31 - 2, 31 - 3] == 4 and read.sum() == 4


def test_mask_must_hold_integer_labels(tmp_path: Path, make_volume: Factory) -> None:
    volume = make_volume()
    image = sitk.GetImageFromArray(np.full(volume.shape, 0.5, dtype=np.float32))
    image.SetSpacing(volume.spacing[::-1])
    image.SetOrigin(volume.origin)
    sitk.WriteImage(image, str(tmp_path / "prob.nrrd"))
    with pytest.raises(VolumeReadError, match="prob.nrrd: mask holds non-integer values"):
        read_mask(tmp_path / "prob.nrrd", volume)
    with pytest.raises(InvalidInputError, match=r"mask shape \(2, 2, 2\) does not match"):
        write_mask(np.zeros((2, 2, 2)), volume, tmp_path / "m.nrrd")


def test_four_dimensional_image_is_refused(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), dtype=np.int16), np.eye(4)), tmp_path / "cine.nii")
    with pytest.raises(VolumeReadError, match="cine.nii: holds a 4-D image"):
        read_volume(tmp_path / "cine.nii")


def test_write_volume_refuses_hu_outside_int16(tmp_path: Path) -> None:
    volume = CTVolume(hu=np.full((2, 2, 2), 40000.0), spacing=1.0)
    with pytest.raises(InvalidInputError, match="values 40000..40000 do not fit in int16"):
        write_volume(volume, tmp_path / "big.nii")
    assert not (tmp_path / "big.nii").exists()


def test_series_uid_with_image_file_is_refused(tmp_path: Path, make_volume: Factory) -> None:
    path = write_volume(make_volume(), tmp_path / "ct.mha")
    with pytest.raises(VolumeReadError, match="series_uid applies to DICOM folders only"):
        read_volume(path, series_uid="1.2.3")
