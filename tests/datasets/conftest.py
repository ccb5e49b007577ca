"""A tiny CT with two plaques, and its label mask, for every dataset-layout fixture.

The volume is 10 x 48 x 48 voxels of 3 x 0.5 x 0.5 mm at 40 HU with
* an LAD plaque: slice 4, rows 10-13, columns 10-13, 300 HU;
* an RCA plaque: slices 6-7, rows 30-32, columns 30-32, 500 HU.
"""

from __future__ import annotations

import numpy as np
import pytest

from cacscore.io import CTVolume
from cacscore.labels import LAD, RCA

LAD_BOX = (slice(4, 5), slice(10, 14), slice(10, 14))
RCA_BOX = (slice(6, 8), slice(30, 33), slice(30, 33))


def plaque_volume() -> CTVolume:
    hu = np.full((10, 48, 48), 40, dtype=np.int16)
    hu[:, 0, :] = -1000  # a row of air: a CT in HU (read_volume warns about one without)
    hu[LAD_BOX] = 300
    hu[RCA_BOX] = 500
    return CTVolume(
        hu=hu, spacing=(3.0, 0.5, 0.5), origin=(-12.0, -12.0, -100.0), kvp=120.0, slice_thickness_mm=3.0
    )


def plaque_label() -> np.ndarray:
    label = np.zeros((10, 48, 48), dtype=np.uint8)
    label[LAD_BOX] = LAD
    label[RCA_BOX] = RCA
    return label


@pytest.fixture
def volume() -> CTVolume:
    """The plaque volume (a fresh copy per test)."""
    return plaque_volume()


@pytest.fixture
def label() -> np.ndarray:
    """Its label mask in project codes."""
    return plaque_label()
