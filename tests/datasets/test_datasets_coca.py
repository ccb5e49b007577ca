"""The Stanford COCA gated layout: DICOM series + OsiriX calcium XML polygons."""

from __future__ import annotations

import plistlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cacscore.datasets import detect_layout, list_cases
from cacscore.datasets.coca import CocaRoi, rasterize_rois, read_calcium_xml
from cacscore.errors import InvalidInputError
from cacscore.io import CTVolume, write_dicom_series
from cacscore.labels import LAD, LM, RCA

SERIES = "Pro_Gated_CS_3.0_I30f_3_70%"


def _square(top: float, left: float, bottom: float, right: float) -> list[tuple[float, float]]:
    """Polygon corners (x = column, y = row), traced like OsiriX around pixel centres."""
    return [(left, top), (right, top), (right, bottom), (left, bottom)]


def _roi(
    name: str, corners: list[tuple[float, float]], volume: CTVolume | None = None, slice_index: int = 0
) -> dict[str, Any]:
    roi: dict[str, Any] = {
        "Name": name,
        "NumberOfPoints": len(corners),
        "Point_px": [f"({x:f}, {y:f})" for x, y in corners],
        "Type": 20,
    }
    if volume is not None:
        zyx = np.array([[slice_index, y, x] for x, y in corners])
        roi["Point_mm"] = [f"({x:f}, {y:f}, {z:f})" for x, y, z in volume.index_to_patient(zyx)]
    return roi


def _write_xml(path: Path, images: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        plistlib.dump({"Images": images}, handle)


def _cohort(root: Path, volume: CTVolume) -> Path:
    gated = root / "Gated_release_final"
    write_dicom_series(volume, gated / "patient" / "3" / SERIES, uid_seed="3")
    write_dicom_series(
        volume.with_hu(np.where(volume.hu < 0, volume.hu, 40).astype(np.int16)),
        gated / "patient" / "12" / SERIES,
        uid_seed="12",
    )
    # A polygon larger than the LAD plaque (rows 9-15, columns 9-15): only its >= 130 HU voxels count.
    lad = _roi("Left Anterior Descending Artery", _square(8.5, 8.5, 15.5, 15.5), volume, slice_index=4)
    # No Point_mm: placed by ImageIndex (6) and Point_px; rows/columns 30-32 of the RCA plaque.
    left_main = _roi("Left Coronary Artery", _square(29.01, 29.01, 32.99, 32.99))
    _write_xml(
        gated / "calcium_xml" / "3.xml",
        [
            {"ImageIndex": 4, "NumberOfROIs": 1, "ROIs": [lad]},
            {"ImageIndex": 6, "NumberOfROIs": 1, "ROIs": [left_main]},
        ],
    )
    return gated


def test_coca_gated_layout(tmp_path: Path, volume: CTVolume) -> None:
    _cohort(tmp_path, volume)
    assert detect_layout(tmp_path) == "coca"
    cases = list_cases(tmp_path)
    assert [c.case_id for c in cases] == ["3", "12"]
    assert cases[0].image_path.name == SERIES
    assert cases[0].reference_path is not None and cases[0].reference_path.name == "3.xml"
    assert cases[1].reference_path is None

    case = cases[0].load()
    np.testing.assert_array_equal(case.volume.hu, volume.hu)
    expected = np.zeros(volume.shape, np.uint8)
    expected[4, 10:14, 10:14] = LAD
    expected[6, 30:33, 30:33] = LM  # slice 7 of the plaque was not outlined
    np.testing.assert_array_equal(case.label, expected)
    assert case.meta["n_rois"] == 2
    assert case.meta["warnings"] == ["ROI at ImageIndex 6 placed by ImageIndex and Point_px (no Point_mm)"]

    empty = cases[1].load()
    assert empty.label is not None and not empty.label.any()
    assert "no calcium XML" in empty.meta["reference_note"]


def test_coca_root_may_be_the_gated_folder(tmp_path: Path, volume: CTVolume) -> None:
    gated = _cohort(tmp_path, volume)
    assert detect_layout(gated) == "coca"
    assert [c.case_id for c in list_cases(gated)] == ["3", "12"]


def test_point_mm_places_polygon_by_z_not_by_image_index(volume: CTVolume) -> None:
    corners = _square(8.5, 8.5, 15.5, 15.5)
    zyx = np.array([[4, y, x] for x, y in corners])
    roi = CocaRoi(
        image_index=7,
        name="Right Coronary Artery",
        artery=RCA,
        points_px=np.array(corners),
        points_mm=volume.index_to_patient(zyx),
    )
    mask, warnings = rasterize_rois(volume, [roi])
    assert warnings == []
    assert int((mask[4] == RCA).sum()) == 16 and not mask[7].any()


def test_unknown_roi_name_is_unspecified(tmp_path: Path) -> None:
    path = tmp_path / "1.xml"
    _write_xml(
        path,
        [
            {
                "ImageIndex": 0,
                "ROIs": [_roi("Aortic Valve", _square(1, 1, 3, 3)), {"Name": "LAD", "Point_px": []}],
            }
        ],
    )
    rois, warnings = read_calcium_xml(path)
    assert [(r.artery, r.points_mm) for r in rois] == [(1, None)]
    assert warnings == ["ROI name 'Aortic Valve' (ImageIndex 0) is not an artery; read as unspecified"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<html>not a plist</html>", "not a readable OsiriX ROI plist"),
        (plistlib.dumps({"Rois": []}), "no 'Images' list"),
        (plistlib.dumps({"Images": [{"ROIs": []}]}), "has no ImageIndex"),
        (
            plistlib.dumps(
                {"Images": [{"ImageIndex": 2, "ROIs": [{"Name": "RCA", "Point_px": ["(1; 2)"]}]}]}
            ),
            r"ImageIndex 2: expected a point like",
        ),
    ],
)
def test_bad_calcium_xml(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "9.xml"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match=message):
        read_calcium_xml(path)


def test_released_contour_fills_the_pixels_osirix_measured() -> None:
    # Patient 3, ImageIndex 36 of the COCA release: OsiriX reports 0.00755 cm^2 at 0.38868 mm pixels,
    # i.e. 5 pixels; the contour runs through the centres of the pixels just outside the region.
    px = [
        (231.003922, 220.0),
        (232.0, 220.996078),
        (232.003922, 221.0),
        (233.0, 221.996078),
        (234.0, 221.996078),
        (234.996078, 221.0),
        (234.996078, 220.0),
        (234.0, 219.003922),
        (233.0, 219.003922),
        (232.0, 219.003922),
    ]
    volume = CTVolume(hu=np.full((1, 240, 240), 300, np.int16), spacing=(3.0, 0.38868, 0.38868))
    roi = CocaRoi(
        image_index=0, name="Right Coronary Artery", artery=RCA, points_px=np.array(px), points_mm=None
    )
    mask, _ = rasterize_rois(volume, [roi])
    rows, cols = np.nonzero(mask[0])
    assert sorted(zip(rows.tolist(), cols.tolist())) == [
        (220, 232),
        (220, 233),
        (220, 234),
        (221, 233),
        (221, 234),
    ]


def test_point_mm_and_point_px_disagreeing_is_reported(volume: CTVolume) -> None:
    corners = _square(8.5, 8.5, 15.5, 15.5)
    zyx = np.array([[4, y, x] for x, y in corners])
    shifted = np.array(corners) + [3.0, 0.0]  # Point_px 3 columns to the right of Point_mm
    roi = CocaRoi(
        image_index=4, name="LAD", artery=LAD, points_px=shifted, points_mm=volume.index_to_patient(zyx)
    )
    mask, warnings = rasterize_rois(volume, [roi])
    assert warnings == ["ROI at ImageIndex 4: Point_mm and Point_px differ by 3.0 pixels; placed by Point_mm"]
    assert int((mask[4] == LAD).sum()) == 16
