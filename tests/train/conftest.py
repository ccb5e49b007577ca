"""Training tests write their caches into a temporary folder, never ~/.cache.

The caches are preprocessed cases and checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cacscore.train.data import CACHE_ENV


@pytest.fixture(scope="session", autouse=True)
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("cacscore-cache")))
        yield
