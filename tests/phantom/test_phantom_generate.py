"""generate_case: determinism, ground truth from the rendered image, distractors, bone, categories."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

from cacscore import labels
from cacscore.errors import InvalidInputError
from cacscore.phantom import CATEGORIES, PhantomCase, PhantomConfig, generate_case
from cacscore.scoring import ScoreResult, score_calcium

REDUCED = PhantomConfig.reduced()
ALL_DISTRACTORS = PhantomConfig(
    matrix=128,
    pixel_spacing_mm=(1.5, 1.9),
    n_slices=(16, 24),
    distractor_probabilities={
        "aortic_valve": 1.0,
        "aortic_root": 1.0,
        "mitral_annulus": 1.0,
        "aortic_wall": 1.0,
        "sternal_wire": 1.0,
    },
)


@pytest.fixture(scope="module")
def cases() -> dict[str, PhantomCase]:
    """One reduced case per risk category, all distractor kinds present."""
    return {
        c: generate_case(100 + i, config=ALL_DISTRACTORS, target_category=c) for i, c in enumerate(CATEGORIES)
    }


@pytest.fixture(scope="module")
def full_case() -> PhantomCase:
    """One realistic, full-size case."""
    return generate_case(4, target_category="D")


def test_same_seed_same_arrays_other_seed_other_arrays() -> None:
    a = generate_case(7, config=REDUCED, target_category="C")
    b = generate_case(7, config=REDUCED, target_category="C")
    c = generate_case(8, config=REDUCED, target_category="C")
    np.testing.assert_array_equal(a.volume.hu, b.volume.hu)
    np.testing.assert_array_equal(a.label, b.label)
    assert a.points == b.points
    assert json.dumps(a.truth) == json.dumps(b.truth)
    assert a.volume.series_uid == b.volume.series_uid
    assert a.volume.hu.shape != c.volume.hu.shape or not np.array_equal(a.volume.hu, c.volume.hu)
    assert a.volume.series_uid != c.volume.series_uid


def test_category_targets_are_met(cases: dict[str, PhantomCase]) -> None:
    for category, case in cases.items():
        assert case.truth["target_met"] is True
        assert case.reference.risk_category == category
    assert cases["A"].reference.agatston == 0.0
    assert cases["E"].reference.agatston > 400.0


def test_reference_equals_scoring_of_rendered_image(cases: dict[str, PhantomCase]) -> None:
    for case in cases.values():
        again = score_calcium(
            case.volume.hu, case.volume.spacing, case.label, kvp=120.0, affine=case.volume.affine
        )
        assert again.to_dict() == case.reference.to_dict()
        assert ScoreResult.from_json(case.reference.to_json()).agatston == case.reference.agatston


def test_label_only_on_bright_voxels_with_artery_codes(cases: dict[str, PhantomCase]) -> None:
    for case in cases.values():
        assert case.label.dtype == np.uint8 and case.label.shape == case.volume.shape
        assert set(np.unique(case.label)) <= {0, labels.LM, labels.LAD, labels.LCX, labels.RCA}
        assert np.all(case.volume.hu[case.label > 0] >= 130)
    assert cases["E"].label.any()


def test_every_point_lies_in_a_component_of_its_artery(cases: dict[str, PhantomCase]) -> None:
    n_points = 0
    for case in cases.values():
        for x, y, z, artery in case.points:
            zyx = np.rint(case.volume.patient_to_index(np.array([x, y, z]))[0]).astype(int)
            lo = np.maximum(zyx - 1, 0)
            hi = zyx + 2
            around = case.label[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
            assert (around == labels.ARTERY_CODES[artery]).any(), (case.seed, artery, zyx)
            n_points += 1
        survived = [lesion for lesion in case.truth["lesions"] if lesion["survived"]]
        assert len(case.points) >= len(survived)
    assert n_points >= 5


def test_every_labelled_piece_holds_a_point(cases: dict[str, PhantomCase]) -> None:
    # Masks rebuilt from the points (the paper's ground-truth method) must find every labelled piece.
    for case in cases.values():
        pieces, n = ndimage.label(case.label > 0, structure=np.ones((3, 3, 3), dtype=bool))
        marked = set()
        for x, y, z, _ in case.points:
            zyx = tuple(np.rint(case.volume.patient_to_index(np.array([x, y, z]))[0]).astype(int))
            marked.add(int(pieces[zyx]))
        assert marked >= set(range(1, n + 1)), (case.seed, n, sorted(marked))


def test_distractors_present_and_never_labelled(cases: dict[str, PhantomCase]) -> None:
    kinds: set[str] = set()
    for case in cases.values():
        kinds.update(case.distractor_kinds)
        assert not (case.distractor_mask & (case.label > 0)).any()
        # Distractors are bright: a threshold alone would score them.
        assert (case.volume.hu[case.distractor_mask] >= 130).sum() > 0
    assert {"aortic_valve", "aortic_root", "mitral_annulus", "aortic_wall"} <= kinds


def test_bone_above_threshold_outside_the_label(full_case: PhantomCase) -> None:
    bright_unlabelled = (full_case.volume.hu >= 130) & (full_case.label == 0) & ~full_case.distractor_mask
    voxel_mm3 = float(np.prod(full_case.volume.spacing))
    # Vertebrae, sternum and ribs: many cm^3 of bone, far more than any coronary calcium.
    assert bright_unlabelled.sum() * voxel_mm3 > 20_000
    assert (full_case.volume.hu >= 600).sum() > 0  # cortical bone


def test_full_size_case_is_a_realistic_calcium_scoring_series(full_case: PhantomCase) -> None:
    v = full_case.volume
    assert v.hu.dtype == np.int16 and v.shape[1:] == (512, 512)
    assert 40 <= v.shape[0] <= 70
    assert 0.35 <= v.spacing[1] == v.spacing[2] <= 0.5
    assert v.slice_thickness_mm in (2.5, 3.0) and v.spacing[0] in (1.5, 2.5, 3.0)
    assert v.kvp == 120.0 and v.manufacturer in ("GE MEDICAL SYSTEMS", "SIEMENS", "Philips", "CANON_MEC")
    assert 12 <= full_case.truth["imaging"]["noise_sd_hu"] <= 35
    # Fat, soft tissue and lung are all present in realistic proportions.
    hu = v.hu[:, 100:412, 100:412]
    assert ((hu > -130) & (hu < -60)).mean() > 0.02
    assert ((hu > 20) & (hu < 70)).mean() > 0.15
    assert (hu < -700).mean() > 0.05


def test_truth_is_json_and_lists_all_lesions(cases: dict[str, PhantomCase]) -> None:
    truth = json.loads(json.dumps(cases["D"].truth))
    assert truth["schema"] == "cacscore.phantom-truth/1"
    for lesion in truth["lesions"]:
        assert lesion["type"] == "coronary" and lesion["artery"] in ("LM", "LAD", "LCX", "RCA")
        assert 150 <= lesion["density_hu"] <= 1200 and 0.5 <= lesion["size_mm"] <= 10
    assert all(d["type"] != "coronary" for d in truth["distractors"])


def test_config_round_trip_and_validation() -> None:
    config = PhantomConfig.reduced()
    assert PhantomConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    distal = dataclasses.replace(config, lesion_position_beta=(1.0, 1.5))
    assert PhantomConfig.from_dict(json.loads(json.dumps(distal.to_dict()))) == distal
    with pytest.raises(InvalidInputError, match="lesion_position_beta"):
        PhantomConfig(lesion_position_beta=(0.0, 1.0))
    with pytest.raises(InvalidInputError, match="matrix must be 32-1024"):
        PhantomConfig(matrix=8)
    with pytest.raises(InvalidInputError, match="pixel_spacing_mm"):
        PhantomConfig(pixel_spacing_mm=(0.5, 0.3))
    with pytest.raises(InvalidInputError, match="unknown distractor kinds"):
        PhantomConfig(distractor_probabilities={"pacemaker": 1.0})
    with pytest.raises(InvalidInputError, match="unknown phantom configuration keys"):
        PhantomConfig.from_dict({"colour": "red"})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("noise_sd_hu", [30.0], r"noise_sd_hu must be \(low, high\)"),
        ("noise_sd_hu", "loud", r"noise_sd_hu must be \(low, high\)"),
        ("noise_sd_hu", [-1.0, 10.0], r"noise_sd_hu must be \(low, high\) with 0 <= low"),
        ("blur_fwhm_mm", [1.0, 0.5], "blur_fwhm_mm must be"),
        ("blur_fwhm_mm", [0.0, 0.5], r"blur_fwhm_mm must be \(low, high\) with 0 < low"),
        ("pixel_spacing_mm", [0.0, 0.5], r"with 0 < low <= high"),
        ("zero_fraction", 1.5, "zero_fraction must be 0-1"),
        ("motion_probability", -0.1, "motion_probability must be 0-1"),
        ("mean_lesions", 0.0, "mean_lesions must be > 0"),
        ("distractor_probabilities", {"aortic_valve": 2.0}, "distractor_probabilities must be 0-1"),
    ],
)
def test_config_values_from_a_file_are_checked(key: str, value: object, message: str) -> None:
    data = {**PhantomConfig.reduced().to_dict(), key: value}
    with pytest.raises(InvalidInputError, match=message):
        PhantomConfig.from_dict(data)


def test_noise_free_config_generates_its_category() -> None:
    config = dataclasses.replace(PhantomConfig.reduced(), noise_sd_hu=(0.0, 0.0))
    case = generate_case(3, config=config, target_category="C")
    assert case.reference.risk_category == "C"
    assert np.count_nonzero(case.label) > 0


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_bad_seed_is_refused(seed: object) -> None:
    with pytest.raises(InvalidInputError, match="seed must be a non-negative integer"):
        generate_case(seed, config=REDUCED)  # type: ignore[arg-type]


def test_bad_category_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="target_category must be one of"):
        generate_case(1, config=REDUCED, target_category="F")


def test_coronary_tree_has_realistic_lengths_and_calibres(cases: dict[str, PhantomCase]) -> None:
    limits = {"LM": (5, 16), "LAD": (80, 160), "LCX": (40, 110), "RCA": (80, 170)}
    for case in cases.values():
        arteries = case.truth["anatomy"]["arteries"]
        assert set(arteries) == set(limits)
        for name, (low, high) in limits.items():
            assert low <= arteries[name]["length_mm"] <= high, (case.seed, name, arteries[name])
        # LM 4-5 mm wide, the others start at 3-4 mm.
        assert 2.0 <= arteries["LM"]["proximal_radius_mm"] <= 2.5
        assert all(1.5 <= arteries[n]["proximal_radius_mm"] <= 2.0 for n in ("LAD", "LCX", "RCA"))


def test_natural_mode_is_zero_inflated_with_a_tail() -> None:
    cases = [generate_case(300 + i, config=REDUCED) for i in range(16)]
    assert all(c.truth["target_category"] is None and c.truth["target_met"] for c in cases)
    without = [c for c in cases if not c.truth["lesions"]]
    assert 2 <= len(without) <= 12  # zero_fraction 0.35
    counts = sorted(len(c.truth["lesions"]) for c in cases)
    assert counts[-1] >= 5 * max(
        1, counts[len(counts) // 2]
    )  # heavy tail: the largest burden dwarfs the median


def test_lesion_position_beta_moves_lesions_along_the_artery() -> None:
    def fractions(config: PhantomConfig) -> list[float]:
        out = []
        for i in range(3):
            truth = generate_case(500 + i, config=config, target_category="D").truth
            lengths = {name: a["length_mm"] for name, a in truth["anatomy"]["arteries"].items()}
            out += [lesion["arclength_mm"] / lengths[lesion["artery"]] for lesion in truth["lesions"]]
        return out

    # Beta(1.2, 2.6) has median 0.29 of the length; Beta(8, 1) has median 0.92.
    assert np.median(fractions(REDUCED)) < 0.5
    assert np.median(fractions(dataclasses.replace(REDUCED, lesion_position_beta=(8.0, 1.0)))) > 0.75
