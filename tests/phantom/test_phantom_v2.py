"""Generator version 2 (domain randomisation): determinism, ranges, distractors, reference from the files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cacscore import labels
from cacscore.cli.main import app
from cacscore.errors import InvalidInputError
from cacscore.io import read_mask, read_volume
from cacscore.phantom import PhantomCase, PhantomConfig, generate_case, write_case
from cacscore.phantom.generate import GENERATOR_VERSIONS
from cacscore.phantom.mimics import DISTRACTOR_KINDS_V2, NEW_KINDS
from cacscore.phantom.variation import KERNELS, LESION_SHAPES, SLICE_PROFILES, Variation
from cacscore.scoring import score_calcium

REDUCED_V2 = PhantomConfig.reduced(2)
NONE_V2 = dict.fromkeys(DISTRACTOR_KINDS_V2, 0.0)
#: A field of view wide enough (256-282 mm) for the spine, sternum and chest wall of every patient.
WIDE_V2 = dataclasses.replace(REDUCED_V2, pixel_spacing_mm=(2.0, 2.2), n_slices=(24, 40))


@pytest.fixture(scope="module")
def cases_v2() -> dict[str, PhantomCase]:
    """One reduced version 2 case per risk category."""
    return {c: generate_case(200 + i, config=REDUCED_V2, target_category=c) for i, c in enumerate("ABCDE")}


def test_version_2_is_deterministic_by_seed() -> None:
    a = generate_case(21, config=REDUCED_V2, target_category="D")
    b = generate_case(21, config=REDUCED_V2, target_category="D")
    c = generate_case(22, config=REDUCED_V2, target_category="D")
    np.testing.assert_array_equal(a.volume.hu, b.volume.hu)
    np.testing.assert_array_equal(a.label, b.label)
    assert a.points == b.points
    assert json.dumps(a.truth) == json.dumps(b.truth)
    assert a.volume.series_uid == b.volume.series_uid != c.volume.series_uid
    assert a.truth["variation"] != c.truth["variation"]
    # Version 2 is another generator: the same seed gives another case than version 1.
    v1 = generate_case(21, config=PhantomConfig.reduced(), target_category="D")
    assert v1.volume.series_uid != a.volume.series_uid
    assert (a.truth["generator_version"], v1.truth["generator_version"]) == ("2.0", "1.3")


def test_version_2_meets_category_targets_and_labels_only_bright_artery_voxels(
    cases_v2: dict[str, PhantomCase],
) -> None:
    for category, case in cases_v2.items():
        assert case.truth["target_met"] is True, category
        assert case.reference.risk_category == category
        assert set(np.unique(case.label)) <= {0, labels.LM, labels.LAD, labels.LCX, labels.RCA}
        assert np.all(case.volume.hu[case.label > 0] >= 130)
        assert not (case.distractor_mask & (case.label > 0)).any()


def test_variation_draws_stay_in_their_ranges() -> None:
    draws = [
        Variation.sample(np.random.default_rng(k), position_beta=(1.0, 1.3), fwhm_range_mm=(0.4, 1.6))
        for k in range(300)
    ]
    heart = np.array(
        [[v.heart.scale, v.heart.epicardial_fat_mm, v.heart.azimuth_deg, v.heart.tilt_deg] for v in draws]
    )
    assert heart[:, 0].min() >= 0.8 and heart[:, 0].max() <= 1.2
    assert heart[:, 1].min() >= 0.3 and heart[:, 1].max() <= 10.0
    # Thin and thick fat are both common (log-uniform): a quarter below 1 mm, a quarter above 4 mm.
    assert (heart[:, 1] < 1.0).mean() > 0.2 and (heart[:, 1] > 4.0).mean() > 0.2
    assert (
        heart[:, 2].min() >= 25
        and heart[:, 2].max() <= 70
        and heart[:, 3].min() >= 12
        and heart[:, 3].max() <= 50
    )
    assert {v.coronary.dominance for v in draws} == {"right", "left", "co"}
    assert {v.imaging.kernel for v in draws} == set(KERNELS)
    assert {v.imaging.profile for v in draws} == set(SLICE_PROFILES)
    assert {v.imaging.noise_texture for v in draws} == {"fbp", "ir"}
    for v in draws:
        lo, hi = KERNELS[v.imaging.kernel][0]
        assert lo <= v.imaging.fwhm_mm <= hi and 0.4 <= v.imaging.fwhm_mm <= 1.6
        assert 30 <= v.tissue.heart_hu <= 65  # a non-contrast blood pool, always
        assert -920 <= v.tissue.lung_hu <= -760
        assert len(v.lesions.shape_weights) == len(LESION_SHAPES)
        assert 0.5 <= v.heart.rv_offset <= 0.95 and 0.7 <= v.coronary.calibre_scale <= 1.4
    assert any(v.artefacts.stair_step_mm > 0 for v in draws) and any(
        v.artefacts.stair_step_mm == 0 for v in draws
    )


def test_cases_respect_the_configured_imaging_ranges(cases_v2: dict[str, PhantomCase]) -> None:
    thickness_options = {(t, inc) for t, inc, _ in REDUCED_V2.slice_options}
    lo_noise, hi_noise = REDUCED_V2.noise_sd_hu
    for case in cases_v2.values():
        imaging = case.truth["imaging"]
        assert (imaging["slice_thickness_mm"], imaging["slice_increment_mm"]) in thickness_options
        assert 1.2 <= imaging["pixel_spacing_mm"] <= 2.4
        assert lo_noise <= imaging["noise_sd_hu"] <= hi_noise
        assert 12 <= case.volume.shape[0] <= 40
        assert imaging["slice_profile"] == case.truth["variation"]["imaging"]["profile"]
    # Lesions lie along whole arteries and their side branches, in several shapes.
    lesions = [lesion for case in cases_v2.values() for lesion in case.truth["lesions"]]
    assert {lesion["artery"] for lesion in lesions} <= {"LM", "LAD", "LCX", "RCA"}
    assert all(130 <= lesion["density_hu"] <= 1600 and 0.5 <= lesion["size_mm"] <= 15 for lesion in lesions)


def test_lesions_reach_side_branches_and_bifurcations() -> None:
    segments: set[str] = set()
    for seed in range(3):
        case = generate_case(seed, config=REDUCED_V2, target_category="E")
        segments |= {lesion["segment"] for lesion in case.truth["lesions"] if "segment" in lesion}
        arteries = case.truth["anatomy"]["arteries"]
        assert "PDA" in arteries  # every tree has a posterior descending artery
    assert segments & {"D1", "D2", "OM1", "PDA"}


@pytest.mark.parametrize("kind", [k for k in DISTRACTOR_KINDS_V2 if k != "breast"])
def test_each_distractor_kind_forced_on_is_in_the_image_and_never_labelled(kind: str) -> None:
    config = dataclasses.replace(WIDE_V2, distractor_probabilities={**NONE_V2, kind: 1.0})
    case = generate_case(31, config=config, target_category="D")
    assert case.distractor_kinds == [kind]
    assert not (case.distractor_mask & (case.label > 0)).any()
    # Bright in the image: a threshold would find it (calcium 250-1100 HU, metal 1800-3000 HU).
    bright = (case.volume.hu >= 130) & case.distractor_mask
    assert bright.sum() >= 2, kind
    if kind in ("stent", "pacemaker_lead", "sternal_wire"):
        assert case.volume.hu[case.distractor_mask].max() >= 600


def test_breasts_forced_on_add_soft_tissue_in_front_of_the_chest() -> None:
    with_breasts = dataclasses.replace(WIDE_V2, distractor_probabilities={**NONE_V2, "breast": 1.0})
    without = dataclasses.replace(WIDE_V2, distractor_probabilities=NONE_V2)
    a = generate_case(33, config=with_breasts, target_category="C")
    b = generate_case(33, config=without, target_category="C")
    assert a.distractor_kinds == ["breast"] and b.distractor_kinds == []
    assert len([d for d in a.truth["distractors"] if d["type"] == "breast"]) == 2
    # Only the breasts differ: air (-1000 HU) becomes fat or glandular tissue in front of the chest wall.
    gained = (a.volume.hu.astype(int) - b.volume.hu.astype(int)) > 500
    assert gained.sum() > 200
    assert np.median(a.volume.hu[gained]) > -200 and (a.volume.hu[gained] > -500).mean() > 0.9
    np.testing.assert_array_equal(a.label, b.label)


@pytest.mark.parametrize("fmt", ["nifti", "dicom"])
def test_reference_equals_scoring_of_the_written_image_and_mask(tmp_path: Path, fmt: str) -> None:
    case = generate_case(41, config=REDUCED_V2, target_category="E")
    folder = write_case(case, tmp_path / "case", fmt=fmt)
    volume = read_volume(folder / ("image.nii.gz" if fmt == "nifti" else "image"))
    mask = read_mask(folder / "label.nii.gz", volume)
    again = score_calcium(volume.hu, volume.spacing, mask, kvp=120.0, affine=volume.affine)
    reference = json.loads((folder / "reference.json").read_text())
    assert again.agatston == pytest.approx(case.reference.agatston, rel=1e-9, abs=1e-9)
    assert reference["agatston"] == pytest.approx(again.agatston, rel=1e-6)
    assert reference["generator"]["version"] == "2.0"
    assert json.loads((folder / "truth.json").read_text())["generator_version"] == "2.0"


def test_config_versions_and_their_checks() -> None:
    assert PhantomConfig.for_version(1) == PhantomConfig()
    assert PhantomConfig.for_version(1, matrix=128).pixel_spacing_mm == (0.35 * 512 / 128, 0.5 * 512 / 128)
    v2 = PhantomConfig.for_version(2)
    assert v2.generator_version == 2 and v2.version_string == GENERATOR_VERSIONS[2]
    assert set(v2.distractor_probabilities) == set(DISTRACTOR_KINDS_V2)
    assert PhantomConfig.from_dict(v2.to_dict()) == v2
    # A cohort written before the key existed is version 1.
    old = PhantomConfig().to_dict()
    del old["generator_version"]
    assert PhantomConfig.from_dict(old).generator_version == 1
    with pytest.raises(InvalidInputError, match="unknown distractor kinds.*generator version 1"):
        PhantomConfig(distractor_probabilities={"stent": 0.5})
    with pytest.raises(InvalidInputError, match="generator_version must be one of"):
        PhantomConfig(generator_version=3)
    assert set(NEW_KINDS) <= set(DISTRACTOR_KINDS_V2)


def test_cli_generator_version_2_writes_a_version_2_cohort(tmp_path: Path) -> None:
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
            "--generator-version",
            "2",
            "--distractor-probability",
            "stent=1",
            "--balance",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "generation.json").read_text())
    assert settings["generator_version"] == "2.0" and settings["config"]["generator_version"] == 2
    assert "stent" in (tmp_path / "cases.csv").read_text()
    # Resuming the folder as version 1 is refused.
    again = CliRunner().invoke(
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
            "--balance",
            "--no-progress",
        ],
    )
    assert again.exit_code == 1 and "generator_version" in again.stderr
