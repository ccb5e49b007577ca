"""Masks from point annotations: statuses, artery rules, bone, categories, point files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cacscore.annotations import (
    AnnotationPoint,
    AnnotationReport,
    mask_from_points,
    read_annotated_category,
    read_points,
)
from cacscore.errors import InvalidInputError
from cacscore.io import CTVolume
from cacscore.labels import LAD, LCX, LM, RCA, UNSPECIFIED, parse_artery

SPACING = (3.0, 0.5, 0.5)
ORIGIN = (-12.0, -12.0, -100.0)


def make_volume() -> CTVolume:
    """10 x 48 x 48 at 3 x 0.5 x 0.5 mm: a 4 x 4 px plaque at 300 HU (slice 4), a 2-slice plaque at 500 HU."""
    hu = np.full((10, 48, 48), 40, dtype=np.int16)
    hu[4, 10:14, 10:14] = 300  # 4 mm^2, weight 3, dz 3 mm: Agatston 4 x 3 x 3 / 3 = 12
    hu[6:8, 30:33, 30:33] = 500  # 2.25 mm^2 per slice, weight 4: 2 x 2.25 x 4 = 18
    return CTVolume(hu=hu, spacing=SPACING, origin=ORIGIN, kvp=120.0)


def mm(volume: CTVolume, zyx: tuple[float, float, float]) -> tuple[float, float, float]:
    x, y, z = volume.index_to_patient(np.array(zyx))[0]
    return (float(x), float(y), float(z))


def status_of(report: AnnotationReport) -> list[str]:
    return [point.status for point in report.points]


def test_point_on_calcium_labels_its_whole_component() -> None:
    volume = make_volume()
    mask, report = mask_from_points(volume, [AnnotationPoint(mm(volume, (4, 11, 12)), "patient_mm", LAD)])
    expected = np.zeros(volume.shape, np.uint8)
    expected[4, 10:14, 10:14] = LAD
    np.testing.assert_array_equal(mask, expected)
    assert status_of(report) == ["ok"]
    assert report.points[0].distance_mm == 0.0
    assert report.points[0].component_volume_mm3 == pytest.approx(16 * 0.75)
    assert report.agatston == pytest.approx(12.0)
    assert report.risk_category == "C"
    assert report.n_components == 1


def test_point_one_voxel_off_is_moved() -> None:
    volume = make_volume()
    # Row 14 is just below the plaque (rows 10-13): 1 pixel = 0.5 mm away.
    mask, report = mask_from_points(volume, [AnnotationPoint((4, 14, 12), "voxel", RCA)])
    assert status_of(report) == ["moved"]
    assert report.points[0].distance_mm == pytest.approx(0.5)
    assert int((mask == RCA).sum()) == 16


def test_far_point_is_no_component_and_outside_point_is_outside() -> None:
    volume = make_volume()
    points = [AnnotationPoint((4, 24, 24), "voxel", LAD), AnnotationPoint((4, 60, 24), "voxel", LAD)]
    mask, report = mask_from_points(volume, points)
    assert status_of(report) == ["no_component", "outside"]
    assert report.points[0].distance_mm is None
    assert not mask.any()
    assert report.agatston == 0.0 and report.risk_category == "A"
    assert report.needs_review


def test_search_radius_zero_does_not_move() -> None:
    volume = make_volume()
    _, report = mask_from_points(volume, [AnnotationPoint((4, 14, 12), "voxel")], search_radius_mm=0.0)
    assert status_of(report) == ["no_component"]


def test_bone_like_component_is_reported_and_not_labelled() -> None:
    volume = make_volume()
    hu = volume.hu.copy()
    hu[:, 36:48, 0:20] = 700  # 10 x 12 x 20 voxels x 0.75 mm^3 = 1800 mm^3 > 1500
    volume = volume.with_hu(hu)
    points = [AnnotationPoint((5, 40, 5), "voxel", RCA), AnnotationPoint((4, 11, 11), "voxel", LAD)]
    mask, report = mask_from_points(volume, points)
    assert status_of(report) == ["bone", "ok"]
    assert report.points[0].component_volume_mm3 == pytest.approx(1800.0)
    assert report.points[0].assigned_artery is None
    assert not (mask == RCA).any() and int((mask == LAD).sum()) == 16

    unchecked, report = mask_from_points(volume, points, bone_check=False)
    assert status_of(report) == ["bone", "ok"]
    assert int((unchecked == RCA).sum()) == 10 * 12 * 20


def test_long_thin_component_counts_as_bone_by_extent() -> None:
    volume = make_volume()
    hu = volume.hu.copy()
    hu[:, 45, 45] = 600  # 10 slices x 3 mm = 30 mm long, only 7.5 mm^3
    volume = volume.with_hu(hu)
    _, report = mask_from_points(volume, [AnnotationPoint((5, 45, 45), "voxel")], max_extent_mm=20.0)
    assert status_of(report) == ["bone"]


def test_artery_conflict_majority_then_lower_code() -> None:
    volume = make_volume()
    on_plaque = [(4, 10, 10), (4, 11, 11), (4, 12, 12)]
    majority = [AnnotationPoint(p, "voxel", a) for p, a in zip(on_plaque, (RCA, LAD, LAD))]
    mask, report = mask_from_points(volume, majority)
    assert status_of(report) == ["conflict"] * 3
    assert {point.assigned_artery for point in report.points} == {"LAD"}
    assert int((mask == LAD).sum()) == 16

    tie = [AnnotationPoint(p, "voxel", a) for p, a in zip(on_plaque[:2], (LCX, LAD))]
    mask, _ = mask_from_points(volume, tie)
    assert int((mask == LAD).sum()) == 16  # tie: the lower code (labels.majority_artery), not input order


def test_unspecified_point_does_not_conflict_with_named_one() -> None:
    volume = make_volume()
    points = [AnnotationPoint((4, 10, 10), "voxel"), AnnotationPoint((4, 11, 11), "voxel", LM)]
    mask, report = mask_from_points(volume, points)
    assert status_of(report) == ["ok", "ok"]
    assert int((mask == LM).sum()) == 16
    only_unspecified, _ = mask_from_points(volume, points[:1])
    assert int((only_unspecified == UNSPECIFIED).sum()) == 16


@pytest.mark.parametrize(("reference", "discrepancy"), [("C", False), ("B", True), ("E", True)])
def test_category_discrepancy(reference: str, discrepancy: bool) -> None:
    volume = make_volume()
    _, report = mask_from_points(
        volume, [AnnotationPoint((4, 11, 11), "voxel", LAD)], reference_category=reference
    )
    assert report.risk_category == "C"
    assert report.discrepancy is discrepancy


def test_two_lesions_sum_scores() -> None:
    volume = make_volume()
    points = [AnnotationPoint((4, 11, 11), "voxel", LAD), AnnotationPoint((7, 31, 31), "voxel", RCA)]
    mask, report = mask_from_points(volume, points, reference_category="C")
    assert report.agatston == pytest.approx(12.0 + 18.0)
    assert report.n_components == 2
    assert int((mask == RCA).sum()) == 18
    assert not report.discrepancy


def test_report_json_round_trip() -> None:
    volume = make_volume()
    points = [AnnotationPoint((4, 14, 12), "voxel", LAD), AnnotationPoint((0, 0, 0), "voxel")]
    _, report = mask_from_points(volume, points, reference_category="B")
    data = json.loads(report.to_json())
    assert data["status_counts"]["moved"] == 1 and data["status_counts"]["no_component"] == 1
    assert data["discrepancy"] is True
    assert AnnotationReport.from_dict(data) == report


@pytest.mark.parametrize(
    "bad",
    [{"search_radius_mm": -1.0}, {"max_component_mm3": 0.0}, {"reference_category": "F"}],
)
def test_bad_settings_raise(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError, match=str(next(iter(bad)))):
        mask_from_points(make_volume(), [], **bad)  # type: ignore[arg-type]


def test_read_points_csv_mm(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    path.write_text("x_mm,y_mm,z_mm,artery\n1.5,-2,-88,LAD\n0,0,-100,\n3,4,5,Left Circumflex Artery\n")
    points = read_points(path)
    assert [p.position for p in points] == [(1.5, -2.0, -88.0), (0.0, 0.0, -100.0), (3.0, 4.0, 5.0)]
    assert [p.artery for p in points] == [LAD, UNSPECIFIED, LCX]
    assert {p.space for p in points} == {"patient_mm"}


def test_read_points_voxel_columns(tmp_path: Path) -> None:
    ijk = tmp_path / "ijk.csv"
    ijk.write_text("i,j,k,artery\n12,11,4,5\n")
    zyx = tmp_path / "zyx.csv"
    zyx.write_text("z,y,x\n4,11,12\n")
    assert read_points(ijk) == [AnnotationPoint((4.0, 11.0, 12.0), "voxel", RCA)]
    assert read_points(zyx) == [AnnotationPoint((4.0, 11.0, 12.0), "voxel", UNSPECIFIED)]


def test_read_points_json_and_category(tmp_path: Path) -> None:
    volume = make_volume()
    path = tmp_path / "points.json"
    x, y, z = mm(volume, (4, 12, 12))
    path.write_text(
        json.dumps({"risk_category": "B", "points": [{"x_mm": x, "y_mm": y, "z_mm": z, "artery": "LAD"}]})
    )
    points = read_points(path)
    assert read_annotated_category(path) == "B"
    mask, report = mask_from_points(volume, points, reference_category=read_annotated_category(path))
    assert int((mask == LAD).sum()) == 16
    assert report.discrepancy
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"z": 4, "y": 12, "x": 12, "artery": 3}]))
    assert read_points(listed) == [AnnotationPoint((4.0, 12.0, 12.0), "voxel", LAD)]
    assert read_annotated_category(listed) is None


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.csv", "a,b,c\n1,2,3\n", "no coordinate columns"),
        ("p.csv", "x_mm,y_mm,z_mm,artery\n1,2,3,aorta\n", "row 2: unknown artery 'aorta'"),
        ("p.csv", "x_mm,y_mm,z_mm\n1,two,3\n", "not numbers"),
        ("p.json", "{not json", "not valid JSON"),
        ("p.json", '{"points": 3}', "expected a list"),
        ("p.txt", "x_mm,y_mm,z_mm\n", "use .csv or .json"),
    ],
)
def test_read_points_errors(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=message):
        read_points(path)


def test_read_points_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        read_points(tmp_path / "none.csv")


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("LM", LM),
        ("lad", LAD),
        ("Left Coronary Artery", LM),
        ("CX", LCX),
        ("right_coronary_artery", RCA),
        ("4", LCX),
        (2, LM),
        ("", UNSPECIFIED),
        (None, UNSPECIFIED),
    ],
)
def test_parse_artery(value: object, code: int) -> None:
    assert parse_artery(value) == code


@pytest.mark.parametrize("value", ["aorta", 0, 6, 2.5, True])
def test_parse_artery_rejects(value: object) -> None:
    with pytest.raises(InvalidInputError, match="artery"):
        parse_artery(value)


def test_point_on_the_outer_face_of_the_volume() -> None:
    volume = make_volume()
    hu = volume.hu.copy()
    hu[9, 47, 47] = 400
    _, report = mask_from_points(volume.with_hu(hu), [AnnotationPoint((9.5, 47.5, 47.5), "voxel")])
    assert status_of(report) == ["ok"]  # the corner voxel it touches, not an index error
