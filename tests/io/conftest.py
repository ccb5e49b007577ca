"""Small synthetic CT volumes for the I/O tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from cacscore.io import CTVolume


def make_volume(shape: tuple[int, int, int] = (8, 32, 32), **fields: Any) -> CTVolume:
    """A volume whose every voxel value is distinct, so any misplaced slice or flip shows."""
    hu = (np.arange(np.prod(shape)).reshape(shape) % 3000 - 1000).astype(np.int16)
    defaults: dict[str, Any] = {
        "spacing": (3.0, 0.7, 0.6),
        "origin": (-10.5, 20.25, -300.0),
        "kvp": 120.0,
        "slice_thickness_mm": 3.0,
    }
    defaults.update(fields)
    return CTVolume(hu=hu, **defaults)


VolumeFactory = Callable[..., CTVolume]


@pytest.fixture(name="make_volume")
def make_volume_fixture() -> VolumeFactory:
    """The :func:`make_volume` factory, as a fixture."""
    return make_volume
