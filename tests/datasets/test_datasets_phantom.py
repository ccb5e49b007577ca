"""The phantom cohort layout: cases.csv + case folders (DICOM or NIfTI images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cacscore.datasets import detect_layout, list_cases
from cacscore.errors import InvalidInputError
from cacscore.io import CTVolume, write_dicom_series, write_mask, write_volume

HEADER = "case_id,seed,format,image,label,points,reference,truth,agatston,risk_category\n"


def _case(
    root: Path, case_id: str, volume: CTVolume, label: np.ndarray, *, dicom: bool, mask: bool = True
) -> str:
    folder = root / case_id
    folder.mkdir(parents=True)
    if dicom:
        write_dicom_series(volume, folder / "image", uid_seed=case_id)
        image = f"{case_id}/image"
    else:
        write_volume(volume, folder / "image.nii.gz")
        image = f"{case_id}/image.nii.gz"
    if mask:
        write_mask(label, volume, folder / "label.nii.gz")
    # One point per plaque in patient mm, as the generator writes them.
    x1, y1, z1 = volume.index_to_patient(np.array([4, 11, 11]))[0]
    x2, y2, z2 = volume.index_to_patient(np.array([6, 31, 31]))[0]
    (folder / "points.csv").write_text(f"x_mm,y_mm,z_mm,artery\n{x1},{y1},{z1},LAD\n{x2},{y2},{z2},RCA\n")
    (folder / "reference.json").write_text(
        json.dumps({"schema": "cacscore.score/1", "agatston": 66.0, "risk_category": "C"})
    )
    label_column = f"{case_id}/label.nii.gz" if mask else ""
    return f"{case_id},1,x,{image},{label_column},{case_id}/points.csv,{case_id}/reference.json,,66.0,C\n"


def test_phantom_cohort_reads_dicom_and_nifti_cases(
    tmp_path: Path, volume: CTVolume, label: np.ndarray
) -> None:
    rows = [
        _case(tmp_path, "case_0001", volume, label, dicom=False),
        _case(tmp_path, "case_0000", volume, label, dicom=True),
    ]
    (tmp_path / "cases.csv").write_text(HEADER + "".join(rows))
    assert detect_layout(tmp_path) == "phantom"
    cases = list_cases(tmp_path)
    assert [c.case_id for c in cases] == ["case_0000", "case_0001"]
    assert cases[0].image_path == tmp_path / "case_0000" / "image"
    assert cases[0].reference_path == tmp_path / "case_0000" / "label.nii.gz"
    for ref in cases:
        case = ref.load()
        assert case.case_id == ref.case_id
        np.testing.assert_array_equal(case.volume.hu, volume.hu)
        assert case.volume.spacing == pytest.approx(volume.spacing)
        assert case.label is not None and case.label.dtype == np.uint8
        np.testing.assert_array_equal(case.label, label)
        assert case.meta["layout"] == "phantom"
        assert case.meta["reference_category"] == "C"


def test_phantom_case_without_mask_uses_points(tmp_path: Path, volume: CTVolume, label: np.ndarray) -> None:
    row = _case(tmp_path, "case_0000", volume, label, dicom=False, mask=False)
    (tmp_path / "cases.csv").write_text(HEADER + row)
    (ref,) = list_cases(tmp_path, layout="phantom")
    assert ref.reference_path == tmp_path / "case_0000" / "points.csv"
    case = ref.load()
    np.testing.assert_array_equal(case.label, label)
    report = case.meta["annotation_report"]
    assert [p["status"] for p in report["points"]] == ["ok", "ok"]
    # LAD 4 mm^2 x w3 = 12, RCA 2 slices x 2.25 mm^2 x w4 = 18: 30, category C as stated in reference.json.
    assert report["agatston"] == pytest.approx(30.0) and report["discrepancy"] is False


def test_phantom_without_manifest_lists_complete_folders(
    tmp_path: Path, volume: CTVolume, label: np.ndarray
) -> None:
    (tmp_path / "generation.json").write_text("{}")
    _case(tmp_path, "case_0000", volume, label, dicom=False)
    _case(tmp_path, "case_0001", volume, label, dicom=False)
    (tmp_path / "case_0001" / "reference.json").unlink()  # still being written
    assert detect_layout(tmp_path) == "phantom"
    assert [c.case_id for c in list_cases(tmp_path)] == ["case_0000"]


def test_phantom_manifest_with_missing_image(tmp_path: Path) -> None:
    (tmp_path / "cases.csv").write_text(HEADER + "case_0000,1,x,case_0000/image,,,,,0,A\n")
    with pytest.raises(
        InvalidInputError, match=r"cases.csv, row 2: image 'case_0000/image' of case_0000 not found"
    ):
        list_cases(tmp_path)


def test_empty_phantom_cohort(tmp_path: Path) -> None:
    (tmp_path / "cases.csv").write_text(HEADER)
    with pytest.raises(InvalidInputError, match="no cases found in the phantom layout"):
        list_cases(tmp_path)


def test_phantom_mha_case_folder(tmp_path: Path, volume: CTVolume, label: np.ndarray) -> None:
    folder = tmp_path / "case_0000"
    folder.mkdir()
    write_volume(volume, folder / "image.mha")
    write_mask(label, volume, folder / "label.mha")
    (folder / "reference.json").write_text('{"agatston": 30.0, "risk_category": "C"}')
    (tmp_path / "generation.json").write_text("{}")
    (ref,) = list_cases(tmp_path)
    assert (ref.image_path.name, ref.reference_path and ref.reference_path.name) == ("image.mha", "label.mha")
    case = ref.load()
    np.testing.assert_array_equal(case.label, label)
    assert case.meta["reference_agatston"] == 30.0


def test_phantom_case_attributes_come_from_the_row_then_truth_then_generation(
    tmp_path: Path, volume: CTVolume, label: np.ndarray
) -> None:
    header = HEADER.strip() + ",family,generator_version\n"
    rows = [_case(tmp_path, f"case_000{i}", volume, label, dicom=False).strip() for i in range(3)]
    rows = [rows[0] + ",sdf,2.0\n", rows[1] + ",,\n", rows[2] + ",,\n"]
    (tmp_path / "case_0001" / "truth.json").write_text(
        json.dumps({"family": "sdf", "generator_version": "1.3"})
    )
    (tmp_path / "generation.json").write_text(json.dumps({"generator_version": "1.4"}))
    (tmp_path / "cases.csv").write_text(header + "".join(rows))
    cases = list_cases(tmp_path)
    assert [(c.attribute("family"), c.attribute("generator_version")) for c in cases] == [
        ("sdf", "2.0"),
        ("sdf", "1.3"),
        ("classic", "1.4"),
    ]  # no family stated: classic, as phantom reads it
    # Without cases.csv (a generation still running) the same sources are read.
    (tmp_path / "cases.csv").unlink()
    assert [c.attribute("family") for c in list_cases(tmp_path)] == ["classic", "sdf", "classic"]
