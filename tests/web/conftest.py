"""Fixtures of the review-app tests: a tiny synthetic study, an app whose scorer returns a known mask."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cacscore.io import CTVolume, write_volume
from cacscore.labels import LAD, RCA
from cacscore.web.dependencies import Settings, app_stores, get_scorer
from cacscore.web.main import create_app
from cacscore.web.security import REQUEST_HEADER
from cacscore.web.service import AutoResult, Scorer
from cacscore.web.store import ReviewStore

SHAPE = (6, 48, 48)
SPACING = (3.0, 0.5, 0.5)


def synthetic_volume() -> CTVolume:
    """Soft tissue with four bright blobs: two coronary-like lesions, one faint one and a 'bone' bar.

    Blob A (LAD, 2x(4x4) px, 450 HU), blob B (RCA, 3 slices of 3x3 px, 250 HU),
    blob C (unlabelled candidate, 2x2 px = 1 mm^2, 180 HU) and a bar at 700 HU.
    """
    hu = np.full(SHAPE, 40, dtype=np.int16)
    hu[:, :4, :] = -1000
    hu[1:3, 10:14, 10:14] = 450
    hu[2:5, 30:33, 12:15] = 250
    hu[3, 20:22, 30:32] = 180
    hu[:, 40:44, 20:28] = 700
    return CTVolume(
        hu=hu, spacing=SPACING, kvp=120.0, slice_thickness_mm=3.0, study_uid="1.2.3", series_uid="1.2.3.4"
    )


def automatic_mask() -> np.ndarray:
    """What the test scorer 'finds': blob A as LAD, blob B as RCA."""
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[1:3, 10:14, 10:14] = LAD
    mask[2:5, 30:33, 12:15] = RCA
    return mask


def known_scorer(volume: CTVolume) -> AutoResult:
    """Test scorer: the automatic mask above with confidences 0.9 (LAD) and 0.6 (RCA)."""
    mask = automatic_mask()
    confidence = np.where(mask == LAD, 0.9, np.where(mask == RCA, 0.6, 0.0)).astype(np.float32)
    return AutoResult(mask=mask, method="model", model_version="test-model 1", confidence=confidence)


def local_client(app: FastAPI, **options: object) -> TestClient:
    """A test client that is what the review page is.

    It is on a loopback host name and sends the same-origin header.
    """
    headers = {REQUEST_HEADER: "1", **dict(options.pop("headers", {}) or {})}  # type: ignore[call-overload]
    return TestClient(app, base_url="http://localhost", headers=headers, **options)  # type: ignore[arg-type]


def store_of(client: TestClient, settings: Settings, scorer: Scorer = known_scorer) -> ReviewStore:
    """The review store that ``client``'s app serves ``settings`` from with ``scorer``."""
    assert isinstance(client.app, FastAPI)
    return app_stores(client.app).get(settings, scorer)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    (folder / "case_a").mkdir(parents=True)
    write_volume(synthetic_volume(), folder / "case_a" / "image.nii.gz")
    return folder


@pytest.fixture
def settings(tmp_path: Path, data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        db_url=f"sqlite:///{tmp_path / 'state' / 'review.db'}",
        upload_dir=tmp_path / "state" / "uploads",
        max_upload_mb=1.0,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    app.dependency_overrides[get_scorer] = lambda: known_scorer
    with local_client(app) as test_client:
        yield test_client
