"""The generic layout: flat images/ + labels/ or points/, and one folder per case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cacscore.datasets import detect_layout, list_cases
from cacscore.io import CTVolume, write_dicom_series, write_mask, write_volume
from cacscore.labels import LAD


def test_flat_folders_pair_by_name(tmp_path: Path, volume: CTVolume, label: np.ndarray) -> None:
    for name in ("images", "labels", "points"):
        (tmp_path / name).mkdir()
    write_volume(volume, tmp_path / "images" / "a.nii.gz")
    write_mask(label, volume, tmp_path / "labels" / "a.nii.gz")
    write_volume(volume, tmp_path / "images" / "b.mha")
    (tmp_path / "points" / "b.csv").write_text("z,y,x,artery\n4,11,11,LAD\n")
    write_dicom_series(volume, tmp_path / "images" / "c", uid_seed="c")
    (tmp_path / "labels" / "orphan.nii.gz").write_bytes(b"")  # a label without image is ignored

    assert detect_layout(tmp_path) == "generic"
    cases = list_cases(tmp_path)
    assert [(c.case_id, c.image_path.name, c.reference_path and c.reference_path.name) for c in cases] == [
        ("a", "a.nii.gz", "a.nii.gz"),
        ("b", "b.mha", "b.csv"),
        ("c", "c", None),
    ]

    a, b, c = (ref.load() for ref in cases)
    np.testing.assert_array_equal(a.label, label)
    np.testing.assert_array_equal(a.volume.hu, volume.hu)
    expected_b = np.zeros_like(label)
    expected_b[4, 10:14, 10:14] = LAD
    np.testing.assert_array_equal(b.label, expected_b)
    assert b.meta["annotation_report"]["points"][0]["status"] == "ok"
    assert c.label is None
    np.testing.assert_array_equal(c.volume.hu, volume.hu)


def test_case_folders_with_dicom_and_points(tmp_path: Path, volume: CTVolume, label: np.ndarray) -> None:
    write_dicom_series(volume, tmp_path / "p02" / "image_series", uid_seed="p02")
    x, y, z = volume.index_to_patient(np.array([7, 31, 31]))[0]
    (tmp_path / "p02" / "points.json").write_text(
        json.dumps(
            {
                "risk_category": "B",
                "points": [
                    {"x_mm": x, "y_mm": y, "z_mm": z, "artery": "RCA"},
                    {"x_mm": x, "y_mm": y, "z_mm": z - 30, "artery": "LAD"},
                ],
            }
        )
    )
    write_volume(volume, tmp_path / "p10" / "image.nii.gz")
    write_mask(label, volume, tmp_path / "p10" / "label_reference.nii.gz")
    (tmp_path / "p10" / "points.csv").write_text("z,y,x\n0,0,0\n")  # the mask wins over points
    (tmp_path / "notes").mkdir()  # a folder without image is not a case

    assert detect_layout(tmp_path) == "generic"
    cases = list_cases(tmp_path)
    assert [c.case_id for c in cases] == ["p02", "p10"]
    assert cases[1].reference_path == tmp_path / "p10" / "label_reference.nii.gz"

    p02 = cases[0].load()
    assert p02.label is not None
    np.testing.assert_array_equal(p02.label == 5, label == 5)
    assert not (p02.label == LAD).any()
    report = p02.meta["annotation_report"]
    assert [p["status"] for p in report["points"]] == ["ok", "outside"]
    # RCA only: 18, category C against the annotated B.
    assert report["risk_category"] == "C" and report["reference_category"] == "B" and report["discrepancy"]
    np.testing.assert_array_equal(cases[1].load().label, label)


def test_generic_reports_nothing_found(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    from cacscore.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="no cases found in the generic layout"):
        list_cases(tmp_path)
