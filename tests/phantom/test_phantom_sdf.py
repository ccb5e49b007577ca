"""The signed-distance phantom family: determinism, reference from the written files, labels, lesion sites,
distractors, balance, cohort layout and dataset reader, command line."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cacscore import labels
from cacscore.cli.main import app
from cacscore.datasets import detect_layout, list_cases
from cacscore.errors import CacScoreError, CacScoreWarning, InvalidInputError
from cacscore.io import CTVolume, read_mask, read_volume
from cacscore.phantom.cohort import MANIFEST_COLUMNS
from cacscore.phantom_sdf import FAMILY, GENERATOR_VERSION, SdfCase, SdfConfig, generate_case, generate_cohort
from cacscore.phantom_sdf.distractors import DISTRACTOR_PROBABILITIES
from cacscore.phantom_sdf.heart import build_tree, sample_heart
from cacscore.phantom_sdf.plaques import sample_lesion
from cacscore.phantom_sdf.scanner import SliceGrid, upsample
from cacscore.scoring import score_calcium
from cacscore.scoring.conventions import AGATSTON_THRESHOLD_HU, RISK_CATEGORIES

REDUCED = SdfConfig.reduced()
ALL_DISTRACTORS = SdfConfig(matrix=128, distractor_probabilities=dict.fromkeys(DISTRACTOR_PROBABILITIES, 1.0))


def _read(path: Path) -> CTVolume:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacScoreWarning)  # 3 mm slices every 2.5 mm overlap on purpose
        return read_volume(path)


@pytest.fixture(scope="module")
def case_d() -> SdfCase:
    return generate_case(7, config=REDUCED, target_category="D")


@pytest.fixture(scope="module")
def case_all() -> SdfCase:
    """Every distractor kind asked for (breast calcifications only come with breasts)."""
    return generate_case(12, config=ALL_DISTRACTORS, target_category="E")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdf") / "cohort"
    generate_cohort(out, 5, 3, fmt="nifti", balance=True, progress=False, config=REDUCED)
    return out


def test_same_seed_same_case_other_seed_other_case(case_d: SdfCase) -> None:
    again = generate_case(7, config=REDUCED, target_category="D")
    np.testing.assert_array_equal(case_d.volume.hu, again.volume.hu)
    np.testing.assert_array_equal(case_d.label, again.label)
    assert case_d.points == again.points
    assert json.dumps(case_d.truth) == json.dumps(again.truth)
    assert case_d.volume.series_uid == again.volume.series_uid
    other = generate_case(8, config=REDUCED, target_category="D")
    assert other.volume.shape != case_d.volume.shape or not np.array_equal(other.volume.hu, case_d.volume.hu)
    assert other.volume.series_uid != case_d.volume.series_uid


def test_imaging_chain_ranges(case_d: SdfCase) -> None:
    v = case_d.volume
    assert v.hu.dtype == np.int16
    assert v.shape[1:] == (128, 128)
    fov = v.shape[2] * v.spacing[2]
    assert 180.0 <= fov <= 250.0 + 1e-6
    assert v.spacing[0] in (2.5, 3.0) and v.slice_thickness_mm in (2.5, 3.0)
    imaging = case_d.truth["imaging"]
    assert 10.0 <= imaging["noise_sd_hu"] <= 40.0
    # Outside the reconstruction circle: the vendor's padding; the corners are outside.
    assert v.hu[0, 0, 0] == imaging["outside_hu"] and imaging["outside_hu"] <= -1024
    assert v.kvp == 120.0


def test_label_is_calcium_of_the_lesions_only(case_all: SdfCase) -> None:
    for case in (case_all,):
        present = set(np.unique(case.label).tolist())
        assert present <= {labels.BACKGROUND, labels.LM, labels.LAD, labels.LCX, labels.RCA}
        assert present - {labels.BACKGROUND}, "a category E case has labelled calcium"
        assert case.volume.hu[case.label > 0].min() >= AGATSTON_THRESHOLD_HU
        assert not (case.label > 0)[case.distractor_mask].any()
        survived = [entry for entry in case.truth["lesions"] if entry["survived"]]
        assert survived and all(entry["artery"] in ("LM", "LAD", "LCX", "RCA") for entry in survived)


def test_reference_scores_equal_scoring_of_the_written_files(case_d: SdfCase, tmp_path: Path) -> None:
    from cacscore.phantom_sdf import write_case

    folder = write_case(case_d, tmp_path / "case", fmt="nifti")
    volume = _read(folder / "image.nii.gz")
    mask = read_mask(folder / "label.nii.gz", volume)
    np.testing.assert_array_equal(volume.hu, case_d.volume.hu)
    rescored = score_calcium(volume.hu, volume.spacing, mask, kvp=120.0, affine=volume.affine)
    reference = json.loads((folder / "reference.json").read_text())
    assert reference["agatston"] == pytest.approx(rescored.agatston, abs=1e-6)
    assert reference["volume_mm3"] == pytest.approx(rescored.volume_mm3, abs=1e-6)
    assert reference["risk_category"] == rescored.risk_category == "D"
    for artery, values in reference["arteries"].items():
        assert values["agatston"] == pytest.approx(rescored.arteries[artery].agatston, abs=1e-6)
    assert reference["generator"] == {
        "name": "cacscore.phantom_sdf",
        "family": FAMILY,
        "version": GENERATOR_VERSION,
        "seed": 7,
    }
    truth = json.loads((folder / "truth.json").read_text())
    assert (truth["family"], truth["generator_version"]) == (FAMILY, GENERATOR_VERSION)


def test_every_labelled_piece_has_a_point(case_d: SdfCase) -> None:
    from scipy import ndimage

    pieces, n = ndimage.label(case_d.label > 0, structure=np.ones((3, 3, 3), dtype=bool))
    hit = set()
    for x, y, z, artery in case_d.points:
        zyx = np.round(case_d.volume.patient_to_index(np.array([x, y, z]))[0]).astype(int)
        assert case_d.label[tuple(zyx)] == labels.ARTERY_CODES[artery]
        hit.add(int(pieces[tuple(zyx)]))
    assert hit == set(range(1, n + 1))


def test_lesions_sit_on_the_vessel_wall_in_the_epicardial_fat() -> None:
    rng = np.random.default_rng(5)
    heart = sample_heart(rng, np.array([10.0, 0.0, 0.0]), top_z_mm=120.0)
    branches = build_tree(heart, rng, "right")
    by_name = {b.name: b for b in branches}
    checked = 0
    for k in range(40):
        for part in sample_lesion(rng, branches, float(rng.uniform(0, 1)), k):
            shape = part.shape
            axes = [np.arange(part.lo[i], part.hi[i], 0.25) for i in range(3)]
            hit = shape.inside(axes[0][None, None, :], axes[1][None, :, None], axes[2][:, None, None])
            zyx = np.argwhere(hit)
            if len(zyx) == 0:
                continue  # a speck thinner than the 0.25 mm check grid
            pts = np.stack([axes[0][zyx[:, 2]], axes[1][zyx[:, 1]], axes[2][zyx[:, 0]]], axis=1)
            branch = by_name[part.info["branch"]]
            near = np.min(np.linalg.norm(pts[:, None, :] - branch.points[None, ::2, :], axis=2), axis=1)
            # on the wall: no farther from the centreline than wall + plaque thickness
            assert near.max() <= shape.r_inner + shape.thickness + 0.5
            # outside the myocardium: the four-chamber distance at the plaque is that of the vessel's groove
            sd, _, _ = heart.ventricles_atria(pts[:, 0], pts[:, 1], pts[:, 2])
            assert np.median(sd) > -1.0
            assert part.artery == branch.artery
            checked += 1
    assert checked >= 30


def test_lesions_are_surrounded_by_fat_in_the_image(case_d: SdfCase) -> None:
    from scipy import ndimage

    # In-plane ring 1.5-3 mm around each labelled voxel: epicardial fat and vessel, not chamber blood.
    px = case_d.volume.spacing[2]
    mask = case_d.label > 0
    inner = ndimage.binary_dilation(
        mask, structure=np.ones((1, 3, 3), bool), iterations=max(1, int(1.5 / px))
    )
    outer = ndimage.binary_dilation(
        mask, structure=np.ones((1, 3, 3), bool), iterations=max(2, int(3.0 / px))
    )
    ring = outer & ~inner
    assert float(np.median(case_d.volume.hu[ring])) < 0.0


def test_distractors_drawn_and_never_labelled(case_all: SdfCase) -> None:
    kinds = {d["type"] for d in case_all.truth["distractors"]}
    expected = set(DISTRACTOR_PROBABILITIES) - (
        {"breast_calcification"} if not case_all.truth["anatomy"]["female"] else set()
    )
    assert expected - kinds <= {"costal_cartilage", "lymph_node"}  # may fall outside the slices
    assert {"aortic_wall", "aortic_valve", "mitral_annulus", "stent", "pacemaker_lead"} <= kinds
    assert case_all.distractor_mask.any()
    for d in case_all.truth["distractors"]:
        assert len(d["position_mm"]) == 3 and d["size_mm"] > 0


def test_upsample_and_slice_profile_by_hand() -> None:
    a = np.array([[[0.0, 4.0], [8.0, 12.0]]], dtype=np.float32)
    out = upsample(a, 2, (4, 4))
    # column 1 of row 0: 0.75 * 0 + 0.25 * 4 = 1; row 1 mixes rows 0 and 1 the same way
    np.testing.assert_allclose(out[0, 0], [0.0, 1.0, 3.0, 4.0])
    np.testing.assert_allclose(out[0, 1], [2.0, 3.0, 5.0, 6.0])
    grid = SliceGrid((3, 4, 4), (3.0, 1.0, 1.0), (0.0, 0.0, 0.0), 3.0, 2, 0.5, 1)
    # trapezoid, FWHM 3 mm, ramps 1.5 mm: sub-planes at 0, +-1.5 mm weigh 1 and 0.5 -> 0.5, 0.25, 0.25
    np.testing.assert_allclose(grid.profile, [0.25, 0.5, 0.25])
    planes = np.zeros((grid.n_sub, 1, 1), dtype=np.float32)
    planes[grid.margin + 2] = 1.0  # the sub-plane at slice 1's centre
    k0, slices = grid.integrate(planes)
    assert k0 == 0
    np.testing.assert_allclose(slices[:, 0, 0], [0.0, 0.5, 0.0])


def test_balanced_cohort_layout_and_dataset_reader(cohort: Path) -> None:
    with (cohort / "cases.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == MANIFEST_COLUMNS
    assert [r["risk_category"] for r in rows] == list(RISK_CATEGORIES)
    assert {r["generator_version"] for r in rows} == {GENERATOR_VERSION}
    generation = json.loads((cohort / "generation.json").read_text())
    assert (generation["family"], generation["balance"], generation["n"]) == (FAMILY, True, 5)
    assert sorted(p.name for p in (cohort / "case_0002").iterdir()) == [
        "image.nii.gz",
        "label.nii.gz",
        "points.csv",
        "reference.json",
        "truth.json",
    ]
    assert detect_layout(cohort) == "phantom"
    cases = list_cases(cohort)
    assert [c.case_id for c in cases] == [r["case_id"] for r in rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacScoreWarning)
        loaded = cases[4].load()
    assert loaded.meta["reference_category"] == "E"
    assert loaded.label is not None and set(np.unique(loaded.label)) <= {0, 2, 3, 4, 5}
    assert loaded.label.any()


def test_cohort_resumes_and_refuses_other_settings_or_family(cohort: Path) -> None:
    from cacscore.phantom import generate_cohort as generate_any_cohort

    before = (cohort / "case_0001" / "reference.json").stat().st_mtime_ns
    rows = generate_any_cohort(
        cohort, 5, 3, fmt="nifti", balance=True, progress=False
    )  # family from the folder
    assert len(rows) == 5
    assert (cohort / "case_0001" / "reference.json").stat().st_mtime_ns == before
    with pytest.raises(CacScoreError, match="seed=3, not 4"):
        generate_cohort(cohort, 5, 4, fmt="nifti", balance=True, progress=False, config=REDUCED)
    with pytest.raises(CacScoreError, match="'sdf' family"):
        generate_any_cohort(cohort, 5, 3, fmt="nifti", balance=True, progress=False, family="classic")


def test_dicom_series_round_trip(tmp_path: Path) -> None:
    from cacscore.phantom_sdf import write_case

    case = generate_case(4, config=SdfConfig(matrix=64), target_category="C")
    folder = write_case(case, tmp_path / "case", fmt="dicom")
    volume = _read(folder / "image")
    np.testing.assert_array_equal(volume.hu, case.volume.hu)
    assert volume.manufacturer == case.truth["imaging"]["manufacturer"]
    np.testing.assert_allclose(volume.origin, case.volume.origin, atol=1e-3)


def test_command_line_family_sdf(tmp_path: Path) -> None:
    out = tmp_path / "c"
    result = CliRunner().invoke(
        app,
        [
            "phantom",
            "--family",
            "sdf",
            "--n",
            "1",
            "--matrix",
            "64",
            "--format",
            "nifti",
            "--out",
            str(out),
            "--no-progress",
            "--preview",
            str(tmp_path / "p.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "generation.json").read_text())["family"] == "sdf"
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    refused = CliRunner().invoke(
        app,
        ["phantom", "--n", "1", "--matrix", "64", "--format", "nifti", "--out", str(out), "--no-progress"],
    )
    assert refused.exit_code == 1
    assert "'sdf' family" in refused.output
    # An option of the classic family is refused, not silently ignored.
    ignored = CliRunner().invoke(
        app,
        ["phantom", "--family", "sdf", "--generator-version", "2", "--n", "1", "--out", str(tmp_path / "d")],
    )
    assert ignored.exit_code == 1
    assert "--generator-version is for --family classic" in " ".join(ignored.output.split())
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"matrix": 16}, "matrix must be"),
        ({"fov_mm": (250.0, 180.0)}, "fov_mm"),
        ({"distractor_probabilities": {"teeth": 0.5}}, "unknown distractor kinds"),
        ({"distractor_probabilities": {"stent": 1.5}}, "0-1"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        SdfConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_seed_and_category_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="seed"):
        generate_case(-1, config=REDUCED)
    with pytest.raises(InvalidInputError, match="target_category"):
        generate_case(1, config=REDUCED, target_category="F")


def test_workers_do_not_change_the_files(tmp_path: Path) -> None:
    small = SdfConfig(matrix=64)
    one = generate_cohort(tmp_path / "one", 2, 9, fmt="nifti", balance=True, progress=False, config=small)
    two = generate_cohort(
        tmp_path / "two", 2, 9, fmt="nifti", balance=True, progress=False, config=small, workers=2
    )
    assert one == [{**row} for row in two]
    for row in one:
        a = _read(tmp_path / "one" / row["image"])
        b = _read(tmp_path / "two" / row["image"])
        np.testing.assert_array_equal(a.hu, b.hu)
        assert (tmp_path / "one" / row["points"]).read_text() == (
            tmp_path / "two" / row["points"]
        ).read_text()
