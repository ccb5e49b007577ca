"""A scan the domain check refuses opens without an automatic result; a reader may have it analysed anyway."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tiny_models import tiny_ensemble

from cacscore.web.db import AuditRow, open_database
from cacscore.web.dependencies import ModelScorer, Settings, get_scorer
from cacscore.web.main import create_app
from cacscore.web.service import OVERRIDDEN_METHOD, REFUSED_METHOD

from .conftest import local_client, store_of


@pytest.fixture
def model_client(settings: Settings) -> tuple[TestClient, ModelScorer]:
    scorer = ModelScorer(tiny_ensemble(seed=3))
    app = create_app(settings)
    app.dependency_overrides[get_scorer] = lambda: scorer
    with local_client(app) as client:
        yield client, scorer  # type: ignore[misc]


def test_a_refused_scan_shows_its_refusal_and_a_reader_can_have_it_analysed_anyway(
    model_client: tuple[TestClient, ModelScorer], settings: Settings
) -> None:
    client, scorer = model_client
    study = client.get("/api/studies/1").json()  # the test scan: soft tissue and blobs, no lungs
    assert study["status"] == "refused" and study["method"] == REFUSED_METHOD
    assert study["refusal"].startswith("no heart in the field of view: lungs 0 mL left / 0 mL right")
    assert study["domain"]["heart_in_view"] is False and study["state"]["lesions"] == []
    assert [s["status"] for s in client.get("/api/studies").json()] == ["refused"]

    change = {"version": study["version"], "reviewer": "Dr Reader"}
    answer = client.post("/api/studies/1/analyse-anyway", json=change)
    assert answer.status_code == 200, answer.text
    after = answer.json()
    assert after["method"] == OVERRIDDEN_METHOD and after["refusal"] is None
    assert after["domain"]["skipped"] is True and after["status"] == "analysed"
    assert after["version"] == study["version"] + 1
    # The decision is in the hash-chained audit log, with the reader and the refusal overridden.
    store = store_of(client, settings, scorer)
    with store.db.sessions() as session:
        rows = session.scalars(select(AuditRow).where(AuditRow.action == "skip domain check")).all()
    assert [(row.actor, row.study_id) for row in rows] == [("Dr Reader", 1)]
    assert client.get("/api/audit/verify").json()["ok"] is True
    report = client.get("/api/studies/1/report.json", params={"reviewer": "Dr Reader"}).json()
    assert report["domain"]["skipped"] is True and report["domain"]["heart_in_view"] is False
    # Only a refused scan can be overridden, and only on its current version.
    again = client.post("/api/studies/1/analyse-anyway", json={**change, "version": after["version"]})
    assert again.status_code == 409 and "was not refused" in again.json()["detail"]
    stale = client.post("/api/studies/1/analyse-anyway", json=change)
    assert stale.status_code == 409


def test_a_database_of_an_older_version_gets_the_domain_column(tmp_path: Path) -> None:
    path = tmp_path / "review.db"
    open_database(f"sqlite:///{path}").engine.dispose()
    with sqlite3.connect(path) as connection:
        connection.execute("ALTER TABLE studies DROP COLUMN auto_domain")
    open_database(f"sqlite:///{path}").engine.dispose()
    with sqlite3.connect(path) as connection:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(studies)")}
    assert "auto_domain" in columns
