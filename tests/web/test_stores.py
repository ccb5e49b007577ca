"""Each app owns its review stores and closes them when it shuts down, without touching another app's."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.pool import QueuePool

from cacscore.io import CTVolume, write_volume
from cacscore.web.dependencies import Settings, app_stores, get_scorer
from cacscore.web.main import create_app
from cacscore.web.service import AutoResult, Scorer, candidates_only
from cacscore.web.store import ReviewStore

from .conftest import known_scorer, local_client, store_of, synthetic_volume


def scored_app(settings: Settings, scorer: Scorer = known_scorer) -> FastAPI:
    """The review app of ``settings`` with ``scorer`` as its automatic scorer."""
    app = create_app(settings)
    app.dependency_overrides[get_scorer] = lambda: scorer
    return app


def test_an_app_keeps_one_store_per_settings_and_scorer(client: TestClient, settings: Settings) -> None:
    store = store_of(client, settings)
    client.get("/api/studies/1")
    assert store_of(client, settings) is store
    assert store_of(client, settings, candidates_only) is not store


def test_shutting_one_app_down_leaves_another_with_equal_settings_working(
    client: TestClient, settings: Settings
) -> None:
    first = store_of(client, settings)
    assert client.get("/api/studies/1").status_code == 200
    with local_client(scored_app(settings)) as other:
        second = store_of(other, settings)
        assert other.get("/api/studies/1").json()["state"]["version"] == 0
    assert second is not first
    assert second.closed and not first.closed
    # The first app still reads, writes and sees what it wrote.
    change = {"version": 0, "reviewer": "Dr Test", "lesion": 4, "artery": "RCA"}
    assert client.post("/api/studies/1/edits", json=change).json()["version"] == 1
    assert client.get("/api/studies").json()[0]["status"] == "in review"
    assert store_of(client, settings) is first


def test_shutdown_closes_the_store_and_releases_its_connections(settings: Settings) -> None:
    with local_client(scored_app(settings)) as client:
        client.get("/api/studies/1")
        store = store_of(client, settings)
        pool = store.db.engine.pool
        assert isinstance(pool, QueuePool) and pool.checkedin() > 0
    assert store.closed
    assert (pool.checkedin(), pool.checkedout()) == (0, 0)
    assert store.db.engine.pool is not pool  # disposed: the engine dropped that pool


def test_closing_twice_is_harmless(settings: Settings) -> None:
    app = scored_app(settings)
    with local_client(app) as client:
        client.get("/api/studies")
        store = store_of(client, settings)
    store.close()
    app_stores(app).close()
    assert store.closed


def test_an_app_started_again_opens_a_fresh_store(settings: Settings) -> None:
    app = scored_app(settings)
    with local_client(app) as client:
        client.get("/api/studies/1")
        first = store_of(client, settings)
    with local_client(app) as client:
        assert client.get("/api/studies").json()[0]["status"] == "analysed"
        assert store_of(client, settings) is not first


def test_shutdown_finishes_the_study_in_analysis_and_leaves_the_rest(
    settings: Settings, data_dir: Path
) -> None:
    for name in ("case_b", "case_c"):
        (data_dir / name).mkdir()
        write_volume(synthetic_volume(), data_dir / name / "image.nii.gz")
    settings = replace(settings, analyse_in_background=True)
    served: list[ReviewStore] = []
    analysing = threading.Event()

    def held_scorer(volume: CTVolume) -> AutoResult:
        # Keep the first study in analysis until the app is shutting down.
        analysing.set()
        deadline = time.monotonic() + 60
        while not (served and served[0].closed) and time.monotonic() < deadline:
            time.sleep(0.01)
        return known_scorer(volume)

    with local_client(scored_app(settings, held_scorer)) as client:
        assert [s["status"] for s in client.get("/api/studies").json()] == ["new"] * 3
        served.append(store_of(client, settings, held_scorer))
        worker = served[0]._worker
        # The worker thread may not have reached the first study yet; shut down only once it is in it.
        assert analysing.wait(60)
    assert worker is not None and not worker.is_alive()
    with local_client(scored_app(replace(settings, analyse_in_background=False))) as client:
        statuses = [s["status"] for s in client.get("/api/studies").json()]
    assert statuses == ["analysed", "new", "new"]
