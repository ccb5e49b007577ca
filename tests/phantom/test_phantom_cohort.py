"""generate_cohort / cacscore phantom: layout, manifest, resume, workers, DICOM round trip, preview."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cacscore.cli.main import app
from cacscore.errors import CacScoreError, CacScoreWarning, InvalidInputError
from cacscore.io import CTVolume, read_mask, read_volume
from cacscore.phantom import PhantomConfig, case_seed, generate_case, generate_cohort, write_case
from cacscore.phantom.cohort import MANIFEST_COLUMNS
from cacscore.phantom.preview import pick_slices, render_preview
from cacscore.scoring import score_calcium

REDUCED = PhantomConfig.reduced()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read(path: Path) -> CTVolume:
    """Read a volume; overlapping reconstructions (3 mm every 1.5 mm) are drawn on purpose and warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacScoreWarning)
        return read_volume(path)


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "cases.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_cohort_layout_manifest_and_reference(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    rows = generate_cohort(out, 3, 5, fmt="nifti", balance=True, progress=False, config=REDUCED)
    assert [r["case_id"] for r in rows] == ["case_0000", "case_0001", "case_0002"]
    assert [r["risk_category"] for r in rows] == ["A", "B", "C"]
    manifest = _rows(out)
    assert list(manifest[0]) == MANIFEST_COLUMNS
    generation = json.loads((out / "generation.json").read_text())
    assert (generation["n"], generation["seed"], generation["format"], generation["balance"]) == (
        3,
        5,
        "nifti",
        True,
    )
    for row in manifest:
        folder = out / row["case_id"]
        assert sorted(p.name for p in folder.iterdir()) == [
            "image.nii.gz",
            "label.nii.gz",
            "points.csv",
            "reference.json",
            "truth.json",
        ]
        assert int(row["seed"]) == case_seed(5, int(row["case_id"][-4:]))
        volume = _read(out / row["image"])
        label = read_mask(out / row["label"], volume)
        reference = json.loads((out / row["reference"]).read_text())
        assert reference["schema"] == "cacscore.score/1"
        again = score_calcium(volume.hu, volume.spacing, label, kvp=volume.kvp)
        assert again.agatston == pytest.approx(reference["agatston"])
        assert float(row["agatston"]) == pytest.approx(reference["agatston"], abs=1e-3)
        assert int(row["n_slices"]) == volume.shape[0]
        points = (out / row["points"]).read_text().splitlines()
        assert points[0] == "x_mm,y_mm,z_mm,artery" and len(points) - 1 == int(row["n_lesions"])
    # The files hold exactly what generate_case returns for the case's seed.
    case = generate_case(int(manifest[2]["seed"]), config=REDUCED, target_category="C")
    np.testing.assert_array_equal(_read(out / manifest[2]["image"]).hu, case.volume.hu)


def test_resume_keeps_complete_cases_and_redoes_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    generate_cohort(out, 3, 9, fmt="nifti", progress=False, config=REDUCED)
    first = {p.name: p.stat().st_mtime_ns for p in (out / "case_0000").iterdir()}
    label_before = (out / "case_0001" / "label.nii.gz").read_bytes()
    (out / "case_0001" / "reference.json").unlink()  # interrupted while writing
    for p in (out / "case_0002").iterdir():
        p.unlink()
    (out / "case_0002").rmdir()
    rows = generate_cohort(out, 4, 9, fmt="nifti", progress=False, config=REDUCED)
    assert [r["case_id"] for r in rows] == ["case_0000", "case_0001", "case_0002", "case_0003"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "case_0000").iterdir()} == first
    assert (out / "case_0001" / "label.nii.gz").read_bytes() == label_before
    assert len(_rows(out)) == 4


def test_interrupted_cohort_lists_finished_cases(tmp_path: Path) -> None:
    out = tmp_path / "cohort"

    def stop(index: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_cohort(out, 3, 2, fmt="nifti", progress=False, config=REDUCED, on_case=stop)
    assert [r["case_id"] for r in _rows(out)] == ["case_0000"]
    generate_cohort(out, 3, 2, fmt="nifti", progress=False, config=REDUCED)
    assert len(_rows(out)) == 3


def test_workers_do_not_change_the_files(tmp_path: Path) -> None:
    one = generate_cohort(tmp_path / "one", 3, 4, fmt="nifti", progress=False, config=REDUCED)
    two = generate_cohort(tmp_path / "two", 3, 4, fmt="nifti", workers=2, progress=False, config=REDUCED)
    assert one == two
    for row in one:
        a = _read(tmp_path / "one" / row["image"]).hu
        b = _read(tmp_path / "two" / row["image"]).hu
        np.testing.assert_array_equal(a, b)


def test_other_settings_in_the_same_folder_are_refused(tmp_path: Path) -> None:
    generate_cohort(tmp_path, 1, 1, fmt="nifti", progress=False, config=REDUCED)
    with pytest.raises(CacScoreError, match="generated with seed=1, not 2"):
        generate_cohort(tmp_path, 1, 2, fmt="nifti", progress=False, config=REDUCED)
    with pytest.raises(InvalidInputError, match="format must be one of"):
        generate_cohort(tmp_path, 1, 1, fmt="png", progress=False, config=REDUCED)
    with pytest.raises(InvalidInputError, match="workers must be a positive integer"):
        generate_cohort(tmp_path, 1, 1, workers=0, progress=False, config=REDUCED)


def test_cohort_from_before_a_config_key_resumes_but_other_values_are_refused(tmp_path: Path) -> None:
    generate_cohort(tmp_path, 1, 1, fmt="nifti", progress=False, config=REDUCED)
    settings = json.loads((tmp_path / "generation.json").read_text())
    del settings["config"]["lesion_position_beta"]  # as written before the key existed
    (tmp_path / "generation.json").write_text(json.dumps(settings))
    assert len(generate_cohort(tmp_path, 2, 1, fmt="nifti", progress=False, config=REDUCED)) == 2
    distal = PhantomConfig.from_dict({**REDUCED.to_dict(), "lesion_position_beta": [1.0, 1.5]})
    with pytest.raises(CacScoreError, match="generated with config="):
        generate_cohort(tmp_path, 2, 1, fmt="nifti", progress=False, config=distal)


@pytest.mark.parametrize("config", [{"no_such_key": 1}, {"matrix": -5}])
def test_invalid_config_in_an_old_cohort_names_the_file(tmp_path: Path, config: dict) -> None:
    generate_cohort(tmp_path, 1, 1, fmt="nifti", progress=False, config=REDUCED)
    settings = json.loads((tmp_path / "generation.json").read_text())
    settings["config"].update(config)
    (tmp_path / "generation.json").write_text(json.dumps(settings))
    with pytest.raises(CacScoreError, match=r"generation\.json: invalid phantom configuration") as info:
        generate_cohort(tmp_path, 2, 1, fmt="nifti", progress=False, config=REDUCED)
    assert "\n" not in str(info.value)
    assert json.loads((tmp_path / "generation.json").read_text()) == settings  # not overwritten


def test_cli_lesion_position_beta_reaches_the_cohort(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "phantom",
            "--n",
            "1",
            "--seed",
            "5",
            "--out",
            str(tmp_path),
            "--format",
            "nifti",
            "--matrix",
            "128",
            "--lesion-position-beta",
            "1.0",
            "1.5",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "generation.json").read_text())["config"]["lesion_position_beta"] == [
        1.0,
        1.5,
    ]


def test_cli_distractor_probability_reaches_every_case(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "phantom",
            "--n",
            "2",
            "--seed",
            "5",
            "--out",
            str(tmp_path),
            "--format",
            "nifti",
            "--matrix",
            "128",
            "--distractor-probability",
            "aortic_root=1",
            "--distractor-probability",
            "aortic_valve=0",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    probabilities = json.loads((tmp_path / "generation.json").read_text())["config"][
        "distractor_probabilities"
    ]
    assert probabilities == {
        **PhantomConfig().distractor_probabilities,
        "aortic_root": 1.0,
        "aortic_valve": 0.0,
    }
    for case in ("case_0000", "case_0001"):
        kinds = [d["type"] for d in json.loads((tmp_path / case / "truth.json").read_text())["distractors"]]
        assert "aortic_root" in kinds and "aortic_valve" not in kinds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("aortic_root", "use KIND=P"),
        ("aortic_root=lots", "use KIND=P"),
        ("pacemaker=0.5", "unknown distractor"),
        ("aortic_root=1.5", "must be 0-1"),
    ],
)
def test_cli_bad_distractor_probability_is_one_line(tmp_path: Path, value: str, message: str) -> None:
    result = CliRunner().invoke(
        app, ["phantom", "--n", "1", "--out", str(tmp_path / "c"), "--distractor-probability", value]
    )
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_dicom_round_trip_of_a_case(tmp_path: Path) -> None:
    case = generate_case(3, config=REDUCED, target_category="D")
    write_case(case, tmp_path / "case", fmt="dicom")
    volume = _read(tmp_path / "case" / "image")
    np.testing.assert_array_equal(volume.hu, case.volume.hu)
    assert volume.spacing == pytest.approx(case.volume.spacing)
    assert volume.origin == pytest.approx(case.volume.origin)
    np.testing.assert_allclose(volume.direction, case.volume.direction)
    assert volume.slice_thickness_mm == case.volume.slice_thickness_mm
    assert (volume.kvp, volume.manufacturer) == (120.0, case.volume.manufacturer)
    assert volume.series_uid == case.volume.series_uid
    label = read_mask(tmp_path / "case" / "label.nii.gz", volume)
    np.testing.assert_array_equal(label, case.label)


def test_preview_png(tmp_path: Path) -> None:
    case = generate_case(6, config=REDUCED, target_category="E")
    slices = pick_slices(case.volume, case.label, case.truth["distractors"], 9)
    assert slices == sorted(slices) and len(slices) == 9
    assert (case.label[slices[0]] > 0).any() or any((case.label[k] > 0).any() for k in slices)
    path = render_preview(case.volume, case.label, tmp_path / "p.png", distractors=case.truth["distractors"])
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(InvalidInputError, match="does not match volume shape"):
        render_preview(case.volume, case.label[:-1], tmp_path / "q.png")


def test_phantom_command_writes_cohort_and_preview(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    png = tmp_path / "preview.png"
    result = CliRunner().invoke(
        app,
        [
            "phantom",
            "--n",
            "2",
            "--seed",
            "3",
            "--out",
            str(out),
            "--format",
            "mha",
            "--matrix",
            "96",
            "--balance",
            "--no-progress",
            "--preview",
            str(png),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 cases in" in result.output
    assert [r["risk_category"] for r in _rows(out)] == ["A", "B"]
    assert (out / "case_0001" / "image.mha").exists() and (out / "case_0001" / "label.mha").exists()
    assert png.read_bytes()[:8] == PNG_SIGNATURE


def test_phantom_command_previews_one_case_and_reports_errors(tmp_path: Path) -> None:
    png = tmp_path / "one.png"
    result = CliRunner().invoke(
        app, ["phantom", "--seed", "4", "--matrix", "96", "--category", "C", "--preview", str(png)]
    )
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    result = CliRunner().invoke(app, ["phantom", "--n", "1"])
    assert result.exit_code == 1
    assert "give --out DIR" in result.output
