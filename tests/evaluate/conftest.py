"""A tiny synthetic cohort in the generic layout (images/ + labels/), one case per risk category.

Volumes are 8 x 40 x 40 at (3, 0.5, 0.5) mm, so one pixel is 0.25 mm^2 and dz/3 = 1:
a lesion's Agatston score is pixels x 0.25 x weight per slice. Every case has an
unlabelled 700 HU "bone" block, which the threshold baseline wrongly counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cacscore.io import CTVolume, write_mask, write_volume

SPACING = (3.0, 0.5, 0.5)
# case id -> (side in pixels, n slices, HU, artery code): expected Agatston, category
LESIONS: dict[str, tuple[int, int, int, int] | None] = {
    "case_0": None,  # 0, A
    "case_1": (2, 1, 250, 3),  # 4 px * 0.25 * w2 = 2, B
    "case_2": (4, 1, 450, 4),  # 16 * 0.25 * 4 = 16, C
    "case_3": (6, 4, 450, 5),  # 9 mm^2 * 4 * 4 = 144, D
    "case_4": (10, 5, 450, 2),  # 25 * 4 * 5 = 500, E
}
EXPECTED_AGATSTON = {"case_0": 0.0, "case_1": 2.0, "case_2": 16.0, "case_3": 144.0, "case_4": 500.0}


def synthetic_case(case_id: str) -> tuple[CTVolume, np.ndarray]:
    """The volume and reference label mask of one synthetic case."""
    hu = np.full((8, 40, 40), 40, dtype=np.int16)
    hu[:, 0, :] = -1000  # a row of air: a CT in HU (read_volume warns about one without)
    label = np.zeros(hu.shape, dtype=np.uint8)
    hu[:, 30:34, 30:34] = 700  # bone: not coronary, unlabelled
    spec = LESIONS[case_id]
    if spec is not None:
        side, n_slices, value, code = spec
        hu[1 : 1 + n_slices, 5 : 5 + side, 5 : 5 + side] = value
        label[1 : 1 + n_slices, 5 : 5 + side, 5 : 5 + side] = code
    return CTVolume(hu=hu, spacing=SPACING), label


def write_cohort(root: Path) -> Path:
    """Write the synthetic cohort to ``root/images`` and ``root/labels``; return ``root``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for case_id in LESIONS:
        volume, label = synthetic_case(case_id)
        write_volume(volume, root / "images" / f"{case_id}.nii.gz")
        write_mask(label, volume, root / "labels" / f"{case_id}.nii.gz")
    return root


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic cohort folder (generic layout)."""
    return write_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="session", autouse=True)
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Trainings run by these tests cache into a temporary folder, never ~/.cache."""
    from cacscore.train.data import CACHE_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("cacscore-cache")))
        yield
