"""Trimming a lesion with the brush and eraser: only its voxels change, and the score follows exactly."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cacscore.web.dependencies import Settings
from cacscore.web.service import find_candidates, trim_voxels

from .conftest import automatic_mask, synthetic_volume

BLOB_A, BLOB_C = 2, 4  # candidate ids (see test_api.py)
#: On slice 1, blob A is rows 10-13 x columns 10-13 at 450 HU (0.5 mm pixels, 3 mm slices: weight 4,
#: 4 mm^2 x 4 = 16 per slice). A brush of radius 1.5 px at (11, 10) covers rows 10-12 x columns 10-11:
#: 6 pixels. Left: 10 pixels = 2.5 mm^2 x weight 4 = 10, so the total drops by 16 - 10 = 6.
BRUSH = {"lesion": BLOB_A, "z": 1, "center_yx": [11, 10], "radius_px": 1.5}
EXPECTED_DROP = 6.0


def post(client: TestClient, path: str, **body: object) -> dict:
    response = client.post(f"/api/studies/1/{path}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_brush_voxels_are_the_hand_counted_ones() -> None:
    volume = synthetic_volume()
    candidates = find_candidates(volume)
    flat = trim_voxels(automatic_mask(), candidates, BLOB_A, 1, (11.0, 10.0), 1.5, erase=True)
    ys, xs = np.divmod(flat, volume.shape[2])
    assert sorted(zip(ys.tolist(), xs.tolist(), strict=True)) == [
        (y, x) for y in (10, 11, 12) for x in (10, 11)
    ]
    # Painting finds nothing to add where everything is counted.
    assert trim_voxels(automatic_mask(), candidates, BLOB_A, 1, (11.0, 10.0), 1.5, erase=False).size == 0


def test_erasing_lowers_the_total_by_the_hand_computed_amount(client: TestClient, settings: Settings) -> None:
    before = client.get("/api/studies/1").json()["state"]
    state = post(client, "trim", version=0, reviewer="Dr T", mode="erase", **BRUSH)
    assert state["score"]["agatston"] == pytest.approx(before["score"]["agatston"] - EXPECTED_DROP, abs=1e-9)
    assert state["score"]["arteries"]["LAD"]["agatston"] == pytest.approx(32 - EXPECTED_DROP)
    assert state["edits"][-1]["action"] == "trim" and state["edits"][-1]["n_voxels"] == 6
    # The list shows the same total; the exported mask lost exactly those six voxels.
    assert client.get("/api/studies").json()[0]["agatston"] == state["score"]["agatston"]
    overlay = client.get("/api/studies/1/overlays/1").content
    labels = np.frombuffer(overlay[4 * 48 * 48 :], np.uint8).reshape(48, 48)
    expected = automatic_mask()[1].copy()
    expected[10:13, 10:12] = 0
    assert np.array_equal(labels, expected)
    # Paint back: the automatic total again; undo twice: back to the erased, then the original state.
    state = post(client, "trim", version=1, reviewer="Dr T", mode="paint", **BRUSH)
    assert state["score"]["agatston"] == pytest.approx(before["score"]["agatston"], abs=1e-9)
    state = post(client, "undo", version=2, reviewer="Dr T")
    assert state["score"]["agatston"] == pytest.approx(before["score"]["agatston"] - EXPECTED_DROP, abs=1e-9)
    # Reassigning a trimmed lesion keeps the trimmed part out.
    state = post(client, "edits", version=3, reviewer="Dr T", lesion=BLOB_A, artery="RCA")
    assert state["score"]["arteries"]["RCA"]["agatston"] == pytest.approx(
        before["score"]["arteries"]["RCA"]["agatston"] + 32 - EXPECTED_DROP
    )
    assert client.get("/api/audit/verify").json()["ok"] is True
    # A changed trim in the database is found.
    db = Path(settings.db_url.removeprefix("sqlite:///"))
    with sqlite3.connect(db) as con:
        con.execute("update edits set voxels = replace(voxels, '[', '[0,') where action = 'trim'")
    assert client.get("/api/audit/verify").json()["ok"] is False


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({**BRUSH, "lesion": BLOB_C}, 422, "not counted"),
        ({**BRUSH, "center_yx": [40, 40]}, 422, "touches no counted voxel"),
        ({**BRUSH, "z": 5}, 422, "touches no counted voxel"),
        ({**BRUSH, "z": 6}, 422, "outside the study"),
        ({**BRUSH, "radius_px": 0}, 422, ""),
        ({**BRUSH, "radius_px": 1e9}, 422, ""),
        ({**BRUSH, "mode": "smudge"}, 422, ""),
    ],
)
def test_bad_trims_are_refused(client: TestClient, body: dict, status: int, message: str) -> None:
    client.get("/api/studies/1")
    response = client.post("/api/studies/1/trim", json={"version": 0, "reviewer": "Dr T", **body})
    assert response.status_code == status and message in str(response.json()["detail"])


def test_nan_centre_is_refused(client: TestClient) -> None:
    raw = '{"version": 0, "reviewer": "x", "lesion": 2, "z": 1, "center_yx": [NaN, 1], "radius_px": 2}'
    response = client.post("/api/studies/1/trim", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422


def test_an_older_database_gets_the_new_column(tmp_path: Path) -> None:
    from cacscore.web.db import open_database

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as con:
        con.execute(
            "create table edits (id integer primary key, study_id integer, reviewer varchar(128), "
            "created_at datetime, action varchar(16), lesion integer, before integer, after integer, "
            "undoes integer)"
        )
    open_database(f"sqlite:///{db}").engine.dispose()
    with sqlite3.connect(db) as con:
        assert "voxels" in [row[1] for row in con.execute("pragma table_info(edits)")]


def test_a_trimmed_lesion_is_already_in_its_artery(client: TestClient) -> None:
    client.get("/api/studies/1")
    post(client, "trim", version=0, reviewer="Dr T", mode="erase", **BRUSH)
    response = client.post(
        "/api/studies/1/edits", json={"version": 1, "reviewer": "Dr T", "lesion": BLOB_A, "artery": "LAD"}
    )
    assert response.status_code == 422 and "already LAD" in response.json()["detail"]
