"""DICOM outputs of ``cacscore score``: SEG, SR and encapsulated PDF of a phantom series.

The phantom's reference label mask is scored with ``--mask`` (no model, fast). The checks are those
of a PACS and a viewer: ``dciodvfy`` (dicom3tools) finds no error, highdicom reads back the report's
numbers, the SEG's frames lie on the source images they reference, dcmtk's ``dsrdump`` prints the tree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import BinaryIO, cast

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes
from typer.testing import CliRunner

from cacscore.cli.main import app
from cacscore.errors import CacScoreWarning, InvalidInputError
from cacscore.export import Algorithm, build_segmentation, write_dicom_outputs
from cacscore.export.pdf_dicom import ENCAPSULATED_PDF_STORAGE
from cacscore.export.sr import build_measurement_report
from cacscore.io import read_mask, read_volume, write_enhanced_ct
from cacscore.labels import ARTERY_CODES, ARTERY_NAMES

pytestmark = pytest.mark.filterwarnings("ignore::cacscore.errors.CacScoreWarning")

PRODUCTS = ("seg.dcm", "sr.dcm", "report_pdf.dcm")


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small phantom case written as a classic DICOM series, with its reference label mask."""
    root = tmp_path_factory.mktemp("phantom")
    result = CliRunner().invoke(
        app, ["phantom", "--n", "1", "--seed", "3", "--out", str(root), "--matrix", "96"]
    )
    assert result.exit_code == 0, result.output
    return root / "case_0000"


@pytest.fixture(scope="module")
def scored(case: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``cacscore score IMAGE --mask LABEL --out DIR`` of the case."""
    out = tmp_path_factory.mktemp("scored")
    result = CliRunner().invoke(
        app,
        ["score", str(case / "image"), "--mask", str(case / "label.nii.gz"), "--out", str(out), "--force"],
    )
    assert result.exit_code == 0, result.output
    return out


def _report(out: Path) -> dict:
    return json.loads((out / "score.json").read_text(encoding="utf-8"))


def _dciodvfy(path: Path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian package dicom3tools; .ci/run installs it)")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120, check=False)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def test_score_of_a_dicom_series_writes_the_three_products(scored: Path) -> None:
    assert all((scored / name).is_file() for name in PRODUCTS)
    assert not [p.name for p in scored.iterdir() if p.name.startswith(".")]  # no temporary file stays


def test_a_product_that_fails_to_encode_leaves_the_earlier_file(tmp_path: Path) -> None:
    """Products are written atomically: an error halfway through keeps the earlier file whole."""
    from cacscore.export import _save

    class Unencodable(pydicom.Dataset):
        def save_as(self, filename: object, /, *args: object, **kwargs: object) -> None:
            assert not isinstance(filename, (str, Path))  # a file object of cacscore.io.atomic
            cast("BinaryIO", filename).write(b"half a file")
            raise ValueError("cannot encode")

    (tmp_path / "sr.dcm").write_bytes(b"earlier")
    with pytest.raises(ValueError, match="cannot encode"):
        _save(Unencodable(), tmp_path / "sr.dcm")
    assert (tmp_path / "sr.dcm").read_bytes() == b"earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["sr.dcm"]


@pytest.mark.parametrize("name", PRODUCTS)
def test_products_pass_dciodvfy_without_errors(scored: Path, name: str) -> None:
    assert _dciodvfy(scored / name) == []


def test_products_are_new_series_in_the_source_study(case: Path, scored: Path) -> None:
    source = pydicom.dcmread(next((case / "image").glob("*.dcm")), stop_before_pixels=True)
    products = [pydicom.dcmread(scored / name) for name in PRODUCTS]
    for ds in products:
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.PatientID == source.PatientID
        assert ds.PatientName == source.PatientName
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert ds.Manufacturer == "cacscore"
        assert ds.SoftwareVersions
    assert len({ds.SeriesInstanceUID for ds in products}) == 3
    assert products[2].SOPClassUID == ENCAPSULATED_PDF_STORAGE
    pdf = products[2].EncapsulatedDocument[: int(products[2].EncapsulatedDocumentLength)]
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")


def test_sr_holds_the_reports_numbers_per_artery(scored: Path) -> None:
    report = _report(scored)
    sr = hd.sr.srread(scored / "sr.dcm")
    seg = pydicom.dcmread(scored / "seg.dcm")
    segment_labels = {int(item.SegmentNumber): str(item.SegmentLabel) for item in seg.SegmentSequence}
    content = sr.content
    names = {
        "agatston": codes.SCT.CoronaryArteryCalciumScore,
        "volume_mm3": codes.DCM.CalciumVolume,
        "mass_mg": codes.DCM.CalciumMass,
    }

    def values(group: hd.sr.MeasurementsAndQualitativeEvaluations) -> dict[str, float]:
        return {key: group.get_measurements(name=code)[0].value for key, code in names.items()}

    (total,) = content.get_image_measurement_groups()
    assert values(total) == pytest.approx({k: report[k] for k in names}, rel=1e-9)
    evaluations = {
        str(item.name.meaning): str(item.value.value) for item in total.get_qualitative_evaluations()
    }
    assert evaluations == {
        "Coronary calcium risk category": report["risk_category"],
        "CAC-DRS": report["cac_drs"],
    }
    groups = content.get_volumetric_roi_measurement_groups()
    present = {name for name, scores in report["arteries"].items() if scores["n_lesions"]}
    assert present and len(groups) == len(present)
    for group in groups:
        site = str(group.finding_sites[0].value.value)
        name = {
            code.value: n
            for n, code in {
                "LM": codes.SCT.LeftMainCoronaryArtery,
                "LAD": codes.SCT.LeftAnteriorDescendingCoronaryArtery,
                "LCX": codes.SCT.CircumflexCoronaryArtery,
                "RCA": codes.SCT.RightCoronaryArtery,
                "unspecified": codes.SCT.CoronaryArtery,
            }.items()
        }[site]
        scores = report["arteries"][name]
        assert values(group) == pytest.approx({k: scores[k] for k in names}, rel=1e-9)
        segment = group.referenced_segment
        assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert segment_labels[segment.referenced_segment_numbers[0]] == f"{name} calcium"


def test_seg_overlays_each_source_instance(case: Path, scored: Path) -> None:
    """Each source file's own pixels, by its own position, against the SEG's frames that reference it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacScoreWarning)
        volume = read_volume(case / "image")
    labels = read_mask(case / "label.nii.gz", like=volume)
    # The phantom is a plain axial series: direction identity, so index = (position - origin) / spacing.
    assert np.allclose(volume.direction, np.eye(3))
    seg = hd.seg.segread(scored / "seg.dcm")
    code_of = {
        int(item.SegmentNumber): ARTERY_CODES[str(item.SegmentLabel).removesuffix(" calcium")]
        for item in seg.SegmentSequence
    }
    n_checked = n_with_calcium = 0
    for path in sorted((case / "image").glob("*.dcm")):
        source = pydicom.dcmread(path, stop_before_pixels=True)
        z = round((float(source.ImagePositionPatient[2]) - volume.origin[2]) / volume.spacing[0])
        expected = labels[z]
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[source.SOPInstanceUID],
            combine_segments=True,
            assert_missing_frames_are_empty=True,
        )[0]
        got = np.zeros_like(expected)
        for number, code in code_of.items():
            got[pixels == number] = code
        np.testing.assert_array_equal(got, expected, err_msg=path.name)
        n_checked += 1
        n_with_calcium += bool(expected.any())
    assert n_checked == volume.shape[0] and n_with_calcium > 0


def test_seg_segments_carry_codes_and_the_algorithm(case: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacScoreWarning)
        volume = read_volume(case / "image")
    labels = read_mask(case / "label.nii.gz", like=volume)
    seg = build_segmentation(volume, labels, Algorithm("cacscore-test-model", "1.2.3"))
    assert seg is not None
    present = sorted(int(v) for v in np.unique(labels) if v)
    assert (
        sorted(ARTERY_CODES[str(s.SegmentLabel).removesuffix(" calcium")] for s in seg.SegmentSequence)
        == present
    )
    sites = {
        "LM": "3227004",
        "LAD": "59438005",
        "LCX": "57396003",
        "RCA": "13647002",
        "unspecified": "41801008",
    }
    for item in seg.SegmentSequence:
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == "29483008"
        assert (
            item.AnatomicRegionSequence[0].CodeValue == sites[str(item.SegmentLabel).removesuffix(" calcium")]
        )
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentAlgorithmName == "cacscore-test-model"
        assert item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "1.2.3"
    manual = build_segmentation(volume, labels, Algorithm("reader", "-", manual=True))
    assert manual is not None
    assert {item.SegmentAlgorithmType for item in manual.SegmentSequence} == {"MANUAL"}


def test_enhanced_ct_source_is_referenced_frame_by_frame(case: Path, tmp_path: Path) -> None:
    """Frames written in reverse order: each SEG frame still points at the source frame at its position."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacScoreWarning)
        classic = read_volume(case / "image")
        labels = read_mask(case / "label.nii.gz", like=classic)
        (tmp_path / "ect").mkdir()
        write_enhanced_ct(classic, tmp_path / "ect" / "ct.dcm", reverse_frames=True)
        volume = read_volume(tmp_path / "ect")
    report = _report_for(volume, labels)
    written = write_dicom_outputs(tmp_path, volume, labels, report, Algorithm("m", "1"))
    assert [p.name for p in written] == list(PRODUCTS)
    source = pydicom.dcmread(tmp_path / "ect" / "ct.dcm")
    frame_z = [
        float(item.PlanePositionSequence[0].ImagePositionPatient[2])
        for item in source.PerFrameFunctionalGroupsSequence
    ]
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    numbers = {
        int(s.SegmentNumber): ARTERY_CODES[str(s.SegmentLabel).removesuffix(" calcium")]
        for s in seg.SegmentSequence
    }
    pixels = seg.pixel_array
    for k, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        ref = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
        z_mm = frame_z[int(ref.ReferencedFrameNumber) - 1]
        assert float(item.PlanePositionSequence[0].ImagePositionPatient[2]) == pytest.approx(z_mm)
        z = round((z_mm - volume.origin[2]) / volume.spacing[0])
        code = numbers[int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)]
        np.testing.assert_array_equal(pixels[k].astype(bool), labels[z] == code)
    for name in PRODUCTS:
        assert _dciodvfy(tmp_path / name) == []


def _report_for(volume: object, labels: np.ndarray) -> dict:
    from cacscore.scoring import score_report, score_volume

    return score_report(volume, score_volume(volume, labels), None)  # type: ignore[arg-type]


def test_signed_sr_names_the_reviewer(case: Path, scored: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacScoreWarning)
        volume = read_volume(case / "image")
    seg = hd.seg.segread(scored / "seg.dcm")
    sr = build_measurement_report(
        volume, _report(scored), seg, reviewer="Doe^Jane", signed=True, organization="Cardiology"
    )
    assert sr.VerificationFlag == "VERIFIED" and sr.PreliminaryFlag == "FINAL"
    assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == "Doe^Jane"
    with pytest.raises(InvalidInputError, match="reviewer"):
        build_measurement_report(volume, _report(scored), seg, signed=True)


def test_dsrdump_prints_the_sr_tree(scored: Path) -> None:
    if shutil.which("dsrdump") is None:
        pytest.skip("dsrdump not installed (Debian package dcmtk; .ci/run installs it)")
    run = subprocess.run(
        ["dsrdump", str(scored / "sr.dcm")], capture_output=True, text=True, timeout=60, check=True
    )
    assert "Comprehensive 3D SR" in run.stdout
    assert '"Coronary artery calcium score"' in run.stdout and '"Referenced Segment"' in run.stdout
    assert '(112055,DCM,"Agatston scoring method")' in run.stdout


def test_pydicom_prints_the_sr_tree(scored: Path) -> None:
    text = str(pydicom.dcmread(scored / "sr.dcm"))
    assert "Content Sequence" in text and "Coronary artery calcium score" in text


def test_no_dicom_products_for_a_nifti_input_or_with_no_dicom(case: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacScoreWarning)
        volume = read_volume(case / "image")
    from cacscore.io import write_volume

    write_volume(volume, tmp_path / "ct.nii.gz")
    out = tmp_path / "nifti"
    result = CliRunner().invoke(
        app, ["score", str(tmp_path / "ct.nii.gz"), "--mask", str(case / "label.nii.gz"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert not any((out / name).exists() for name in PRODUCTS)
    out = tmp_path / "nodicom"
    result = CliRunner().invoke(
        app,
        ["score", str(case / "image"), "--mask", str(case / "label.nii.gz"), "--out", str(out), "--no-dicom"],
    )
    assert result.exit_code == 0, result.output
    assert not any((out / name).exists() for name in PRODUCTS)
    nifti = read_volume(tmp_path / "ct.nii.gz")
    with pytest.raises(InvalidInputError, match="read from DICOM"):
        build_segmentation(nifti, np.zeros(nifti.shape, np.uint8), Algorithm("m", "1"))


def test_names_of_artery_segments_cover_every_label() -> None:
    from cacscore.export.codes import ARTERY_SITES

    assert set(ARTERY_SITES) == set(ARTERY_NAMES)


def test_one_segment_of_an_enhanced_ct_is_referenced_with_its_frames(case: Path, tmp_path: Path) -> None:
    """One segment on a multi-frame source: the SR still finds its frames.

    highdicom shares the segment's identification across the frames.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacScoreWarning)
        classic = read_volume(case / "image")
        labels = read_mask(case / "label.nii.gz", like=classic)
        (tmp_path / "ect").mkdir()
        write_enhanced_ct(classic, tmp_path / "ect" / "ct.dcm")
        volume = read_volume(tmp_path / "ect")
    lad = np.where(labels == ARTERY_CODES["LAD"], labels, 0)
    write_dicom_outputs(tmp_path, volume, lad, _report_for(volume, lad), Algorithm("m", "1"))
    sr = hd.sr.srread(tmp_path / "sr.dcm")
    (group,) = sr.content.get_volumetric_roi_measurement_groups()
    (source,) = group.referenced_segment.source_images_for_segmentation
    expected_frames = [z + 1 for z in range(volume.shape[0]) if lad[z].any()]
    assert source.referenced_frame_numbers == expected_frames
    for name in ("seg.dcm", "sr.dcm"):
        assert _dciodvfy(tmp_path / name) == []


def test_a_mask_off_the_source_grid_is_refused(case: Path) -> None:
    """Half a slice off: no SEG rather than a wrong one.

    No source image lies on the volume's voxel centres.
    """
    from dataclasses import replace

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacScoreWarning)
        volume = read_volume(case / "image")
    labels = read_mask(case / "label.nii.gz", like=volume)
    origin = (volume.origin[0], volume.origin[1], volume.origin[2] + volume.spacing[0] / 2)
    shifted = replace(volume, origin=origin)
    with pytest.raises(InvalidInputError, match="does not lie on the volume's grid"):
        build_segmentation(shifted, labels, Algorithm("m", "1"))
    with pytest.raises(InvalidInputError, match="does not match volume shape"):
        build_segmentation(volume, labels[1:], Algorithm("m", "1"))


def test_reader_corrections_get_manual_segments_whose_scores_add_up(case: Path, tmp_path: Path) -> None:
    """Every other calcified component marked as the reader's: each artery splits into an AUTOMATIC
    and a MANUAL segment, and the SR's per-segment scores add up to the artery's."""
    from scipy import ndimage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacScoreWarning)
        volume = read_volume(case / "image")
    labels = read_mask(case / "label.nii.gz", like=volume)
    components, n = ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))
    assert n >= 2
    manual = (components % 2 == 1) & (components > 0)
    report = _report_for(volume, labels)
    write_dicom_outputs(
        tmp_path, volume, labels, report, Algorithm("m", "1"), reviewer="Doe^Jane", signed=True, manual=manual
    )
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    kinds = {str(s.SegmentLabel): str(s.SegmentAlgorithmType) for s in seg.SegmentSequence}
    assert "MANUAL" in kinds.values() and "AUTOMATIC" in kinds.values()
    assert all((kind == "MANUAL") == label.endswith(", reader") for label, kind in kinds.items())
    assert str(seg.ContentCreatorName) == "Doe^Jane"
    sr = hd.sr.srread(tmp_path / "sr.dcm")
    sums: dict[str, float] = {}
    for group in sr.content.get_volumetric_roi_measurement_groups():
        artery = str(group.tracking_identifier).split(" ")[0]
        value = group.get_measurements(name=codes.SCT.CoronaryArteryCalciumScore)[0].value
        sums[artery] = sums.get(artery, 0.0) + value
    expected = {name: s["agatston"] for name, s in report["arteries"].items() if s["n_lesions"]}
    assert sums == pytest.approx(expected, rel=1e-9)
    for name in PRODUCTS:
        assert _dciodvfy(tmp_path / name) == []
