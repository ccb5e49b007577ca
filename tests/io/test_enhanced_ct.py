"""Enhanced (multi-frame) CT.

pydicom's test file, and phantom series that must read and score as classic ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.sequence import Sequence
from typer.testing import CliRunner

from cacscore.cli.main import app
from cacscore.errors import CacScoreWarning, DicomReadError
from cacscore.io import CTVolume, read_volume, write_dicom_series, write_enhanced_ct, write_mask
from cacscore.phantom import PhantomConfig, generate_case
from cacscore.scoring import score_volume

Factory = Callable[..., CTVolume]
ECT_NAME = "eCT_Supplemental.dcm"


@pytest.fixture(scope="session")
def ect_supplemental(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pydicom's Enhanced CT test file (2 frames of 512 x 512), fetched from the pydicom-data 1.0.0 wheel."""
    folder = tmp_path_factory.mktemp("pydicom_data")
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "pydicom-data==1.0.0",
                "-d",
                str(folder),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        wheel = next(folder.glob("pydicom_data-1.0.0-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            member = next(name for name in archive.namelist() if name.endswith(f"data_store/data/{ECT_NAME}"))
            target = folder / "ect" / ECT_NAME
            target.parent.mkdir()
            target.write_bytes(archive.read(member))
    except (subprocess.SubprocessError, OSError, StopIteration, zipfile.BadZipFile) as exc:
        pytest.skip(f"cannot fetch {ECT_NAME} (pip download --no-deps pydicom-data==1.0.0 failed: {exc})")
    return target


def _read(path: Path) -> CTVolume:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        volume = read_volume(path)
    assert all(issubclass(w.category, CacScoreWarning) for w in caught), [str(w.message) for w in caught]
    return volume


def test_ect_supplemental_reads(ect_supplemental: Path) -> None:
    volume = _read(ect_supplemental)
    assert volume.shape == (2, 512, 512)
    assert volume.spacing == pytest.approx((10.0, 0.388672, 0.388672))
    # Rows run along -x in the file (ImageOrientationPatient -1 0 0 / 0 1 0), so x is flipped to the canonical
    # orientation; frame 1 (z -159) is the lower one; HU = stored - 1024 from the shared functional groups.
    stored = pydicom.dcmread(ect_supplemental).pixel_array.astype(int)
    np.testing.assert_array_equal(volume.hu, stored[:, :, ::-1] - 1024)
    assert volume.origin == pytest.approx((99.5 - 511 * 0.388672, -301.5, -159.0))
    folder = str(ect_supplemental.parent)
    assert volume.warnings == [
        f"{folder}: RescaleType is 'US', not HU: the values may not be Hounsfield units",
        f"{folder}: slice thickness is 10 mm; Agatston scoring is defined for 2.5-3 mm slices",
    ]


def test_ect_supplemental_through_the_score_command(ect_supplemental: Path, tmp_path: Path) -> None:
    volume = _read(ect_supplemental)
    write_mask(np.zeros(volume.shape, dtype=np.uint8), volume, tmp_path / "mask.nii.gz")
    result = CliRunner().invoke(
        app, ["score", str(ect_supplemental), "--mask", str(tmp_path / "mask.nii.gz"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["input"]["shape_zyx"] == [2, 512, 512]
    assert report["agatston"] == 0.0
    assert any("RescaleType is 'US'" in w for w in report["warnings"])


@pytest.fixture(scope="module")
def phantom() -> tuple[CTVolume, np.ndarray, float]:
    """A small phantom with calcium (category C) and its reference label and Agatston score."""
    case = generate_case(3, config=PhantomConfig(matrix=96, n_slices=(16, 16)), target_category="C")
    return case.volume, case.label, case.reference.agatston


@pytest.mark.parametrize("options", [{}, {"per_frame_rescale": True, "reverse_frames": True}])
def test_phantom_enhanced_ct_reads_and_scores_as_the_classic_series(
    tmp_path: Path, phantom: tuple[CTVolume, np.ndarray, float], options: dict[str, bool]
) -> None:
    volume, label, agatston = phantom
    assert agatston > 10.0
    write_dicom_series(volume, tmp_path / "classic", uid_seed="phantom")
    write_enhanced_ct(volume, tmp_path / "enhanced" / "ct.dcm", uid_seed="phantom", **options)
    classic = _read(tmp_path / "classic")
    enhanced = _read(tmp_path / "enhanced")
    np.testing.assert_array_equal(enhanced.hu, classic.hu)
    np.testing.assert_array_equal(enhanced.hu, volume.hu)
    assert enhanced.spacing == classic.spacing
    assert enhanced.origin == classic.origin
    np.testing.assert_array_equal(enhanced.direction, classic.direction)
    assert (enhanced.kvp, enhanced.slice_thickness_mm) == (classic.kvp, classic.slice_thickness_mm)
    assert enhanced.warnings == classic.warnings
    score_classic = score_volume(classic, label)
    score_enhanced = score_volume(enhanced, label)
    assert score_enhanced.agatston == score_classic.agatston == pytest.approx(agatston, abs=1e-9)
    assert score_enhanced.to_dict() == score_classic.to_dict()


def test_phantom_enhanced_ct_scores_as_the_classic_series_with_the_command(
    tmp_path: Path, phantom: tuple[CTVolume, np.ndarray, float]
) -> None:
    volume, label, agatston = phantom
    write_dicom_series(volume, tmp_path / "classic", uid_seed="phantom")
    write_enhanced_ct(volume, tmp_path / "enhanced" / "ct.dcm", uid_seed="phantom")
    write_mask(label, volume, tmp_path / "label.nii.gz")
    reports = []
    for name in ("classic", "enhanced"):
        result = CliRunner().invoke(
            app, ["score", str(tmp_path / name), "--mask", str(tmp_path / "label.nii.gz"), "--json"]
        )
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout))
    assert reports[0]["agatston"] == reports[1]["agatston"] == pytest.approx(agatston, abs=0.01)
    assert reports[0]["lesions"] == reports[1]["lesions"]


def _edit_enhanced(path: Path, change: Callable[[pydicom.Dataset], None]) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)


def test_monoenergetic_enhanced_ct_warns(tmp_path: Path, make_volume: Factory) -> None:
    path = write_enhanced_ct(make_volume(), tmp_path / "ct.dcm", uid_seed="vmi")

    def make_vmi(ds: pydicom.Dataset) -> None:
        ds.SharedFunctionalGroupsSequence[0].CTImageFrameTypeSequence[0].FrameType = [
            "DERIVED",
            "PRIMARY",
            "AXIAL",
            "VMI",
        ]
        ds.MonoenergeticEnergyEquivalent = 70.0

    _edit_enhanced(path, make_vmi)
    volume = _read(tmp_path)
    assert volume.warnings == [
        f"{tmp_path}: image type VMI and monoenergetic energy 70 keV: a virtual monoenergetic or other "
        "multi-energy reconstruction, not a 120 kVp image; Agatston's 130 HU threshold may not apply"
    ]


def test_enhanced_frame_without_position_is_named(tmp_path: Path, make_volume: Factory) -> None:
    path = write_enhanced_ct(make_volume(), tmp_path / "ct.dcm", uid_seed="pos")
    _edit_enhanced(path, lambda ds: delattr(ds.PerFrameFunctionalGroupsSequence[2], "PlanePositionSequence"))
    with pytest.raises(DicomReadError, match=r"ct.dcm: frame 3: ImagePositionPatient is missing"):
        read_volume(tmp_path)


def test_enhanced_frame_count_must_match_the_functional_groups(tmp_path: Path, make_volume: Factory) -> None:
    path = write_enhanced_ct(make_volume(), tmp_path / "ct.dcm", uid_seed="count")

    def drop_one(ds: pydicom.Dataset) -> None:
        ds.PerFrameFunctionalGroupsSequence = Sequence(list(ds.PerFrameFunctionalGroupsSequence)[:-1])

    _edit_enhanced(path, drop_one)
    with pytest.raises(
        DicomReadError, match=r"ct.dcm: NumberOfFrames 8 but 7 per-frame functional group item"
    ):
        read_volume(tmp_path)


def test_enhanced_frames_with_uneven_spacing_are_refused(tmp_path: Path, make_volume: Factory) -> None:
    path = write_enhanced_ct(make_volume(), tmp_path / "ct.dcm", uid_seed="uneven")

    def move_frame(ds: pydicom.Dataset) -> None:
        position = ds.PerFrameFunctionalGroupsSequence[4].PlanePositionSequence[0]
        position.ImagePositionPatient = [
            *position.ImagePositionPatient[:2],
            position.ImagePositionPatient[2] + 0.5,
        ]

    _edit_enhanced(path, move_frame)
    with pytest.raises(DicomReadError, match=r"uneven slice spacing.*between ct.dcm frame"):
        read_volume(tmp_path)


def test_enhanced_rescale_slope_zero_in_one_frame_is_named(tmp_path: Path, make_volume: Factory) -> None:
    path = write_enhanced_ct(make_volume(), tmp_path / "ct.dcm", uid_seed="slope", per_frame_rescale=True)

    def zero_slope(ds: pydicom.Dataset) -> None:
        ds.PerFrameFunctionalGroupsSequence[1].PixelValueTransformationSequence[0].RescaleSlope = 0

    _edit_enhanced(path, zero_slope)
    with pytest.raises(DicomReadError, match=r"ct.dcm: frame 2: RescaleSlope is 0"):
        read_volume(tmp_path)
