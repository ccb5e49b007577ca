"""Fixtures of the batch tests: a small DICOM phantom cohort and a tiny model (random weights, fast)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tiny_models import write_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped plan with two 4-8 filter members of fixed random weights (:func:`write_tiny_model`).

    Its scores mean nothing; the tests compare the batch with ``cacscore score`` on the same model.
    """
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three DICOM phantoms (96 x 96, 40-44 slices: the heart fully in view) in ``case_000k/image``."""
    from cacscore.phantom import PhantomConfig, generate_cohort

    root = tmp_path_factory.mktemp("cohort")
    generate_cohort(
        root,
        3,
        7,
        fmt="dicom",
        balance=True,
        progress=False,
        config=PhantomConfig.for_version(1, matrix=96, n_slices=(40, 44)),
    )
    return root


@pytest.fixture()
def cohort_copy(cohort: Path, tmp_path: Path) -> Path:
    """A copy of the cohort's images only (the tests may add or break series)."""
    root = tmp_path / "cohort"
    for image in sorted(cohort.glob("case_*/image")):
        shutil.copytree(image, root / image.parent.name)
    return root
