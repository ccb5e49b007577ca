"""Generator version 1 configurations reproduce exactly: stored checksums of seeded cases.

The checksums were recorded with generator 1.3 (commit 5312629) before version 2 was added. A change
in them means a version 1 cohort can no longer be regenerated from its seed and configuration.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from cacscore.phantom import PhantomConfig, generate_case

_V1_KINDS = ("aortic_valve", "aortic_root", "mitral_annulus", "aortic_wall", "sternal_wire")
ALL_DISTRACTORS = PhantomConfig(
    matrix=128,
    pixel_spacing_mm=(1.5, 1.9),
    n_slices=(16, 24),
    distractor_probabilities=dict.fromkeys(_V1_KINDS, 1.0),
)

# (seed, configuration, target category, sha256(hu bytes + label bytes), sha256(truth JSON), Agatston)
RECORDED = [
    (
        3,
        PhantomConfig.reduced(),
        "C",
        "3ed5e6f44949d8b7e78f8e1947322c0e1f021e61dc6e7997a27202419850e257",
        "68ad9a3ba2ad2e7381e0845a83cae3e7a9683130244fd3ff0da382835fbebd4d",
        85.38868836,
    ),
    (
        11,
        ALL_DISTRACTORS,
        "D",
        "15581215e4ef8665f68b045ee09a900595967d618c8b14227d1e3debe5b916fe",
        "46ff4e6a550f1e9c863b74ccdd1081590c358785539a181f104704bf6e7c8d86",
        126.25879392000002,
    ),
    (
        5,
        PhantomConfig.reduced(),
        None,
        "7124ec28b22a9b7f72411cb8faf2f8bebb5f70e585148e9f459b8ccf4a3bacc9",
        "849384d2fe3009597c17da7e9425763c30d8c2ce0dd38f29c26a6a68cb090fee",
        0.0,
    ),
]


@pytest.mark.parametrize(("seed", "config", "category", "image_sha", "truth_sha", "agatston"), RECORDED)
def test_version_1_cases_reproduce_their_recorded_checksums(
    seed: int, config: PhantomConfig, category: str | None, image_sha: str, truth_sha: str, agatston: float
) -> None:
    case = generate_case(seed, config=config, target_category=category)
    digest = hashlib.sha256(case.volume.hu.tobytes() + case.label.tobytes()).hexdigest()
    assert digest == image_sha
    assert hashlib.sha256(json.dumps(case.truth, sort_keys=True).encode()).hexdigest() == truth_sha
    assert case.reference.agatston == agatston
    assert case.truth["generator_version"] == "1.3"


def test_version_1_full_size_case_reproduces() -> None:
    case = generate_case(4, target_category="D")
    digest = hashlib.sha256(case.volume.hu.tobytes() + case.label.tobytes()).hexdigest()
    assert digest == "9f4f0c1efd3aa55b4de1419e0367d51813f3707af08022e164e7fbbfff58392b"
    assert case.reference.agatston == 170.65519952
