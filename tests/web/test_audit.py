"""The audit log: every state change in it, chained by hashes, and any direct change of history found."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cacscore.cli.main import app as cli_app
from cacscore.io import write_volume
from cacscore.web.db import GENESIS_HASH, audit_hash
from cacscore.web.dependencies import Settings

from .conftest import synthetic_volume

# Candidate ids of the synthetic volume (see test_api.py).
BAR, BLOB_A, BLOB_B, BLOB_C = 1, 2, 3, 4


def db_file(settings: Settings) -> Path:
    return Path(settings.db_url.removeprefix("sqlite:///"))


def post(client: TestClient, path: str, **body: object) -> dict:
    response = client.post(f"/api/studies/1/{path}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def audit_rows(settings: Settings) -> list[tuple]:
    with sqlite3.connect(db_file(settings)) as con:
        return con.execute("select id, study_id, actor, action, detail from audit order by id").fetchall()


def review_session(client: TestClient, tmp_path: Path) -> None:
    """Upload, rescan, edit, undo, sign, un-sign with a reason, edit again, sign, export."""
    client.get("/api/studies")  # the first listing scans the data folder: study 1
    path = write_volume(synthetic_volume(), tmp_path / "up.nii.gz")
    files = {"file": ("up.nii.gz", path.read_bytes())}
    assert client.post("/api/studies", files=files, data={"reviewer": "Dr Up"}).status_code == 201
    assert client.post("/api/studies/rescan").status_code == 200
    client.get("/api/studies/1")
    state = post(client, "edits", version=0, reviewer="Dr A", lesion=BLOB_C, artery="LAD")
    state = post(client, "undo", version=state["version"], reviewer="Dr A")
    state = post(client, "edits", version=state["version"], reviewer="Dr A", lesion=BLOB_A, artery=None)
    state = post(client, "sign", version=state["version"], reviewer="Dr A")
    state = post(client, "unsign", version=state["version"], reviewer="Dr B", reason="LCX lesion missed")
    state = post(client, "edits", version=state["version"], reviewer="Dr B", lesion=BLOB_C, artery="LCX")
    post(client, "sign", version=state["version"], reviewer="Dr B")
    assert client.get("/api/studies/1/report.pdf?reviewer=Dr%20C").status_code == 200
    assert client.get("/api/studies/1/mask.nii.gz").status_code == 200


def test_every_state_change_is_audited_and_the_chain_verifies(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    review_session(client, tmp_path)
    rows = audit_rows(settings)
    actions = [(study, actor, action) for _, study, actor, action, _ in rows]
    assert actions == [
        (None, "server", "rescan"),  # the data folder's first scan added study 1
        (2, "Dr Up", "upload"),
        (None, "rescan request", "rescan"),
        (1, "Dr A", "add"),
        (1, "Dr A", "undo"),
        (1, "Dr A", "remove"),
        (1, "Dr A", "sign"),
        (1, "Dr B", "unsign"),
        (1, "Dr B", "add"),
        (1, "Dr B", "sign"),
        (1, "Dr C", "export"),
        (1, "unnamed", "export"),
    ]
    assert json.loads(rows[7][4])["reason"] == "LCX lesion missed"
    assert json.loads(rows[10][4]) == {"format": "report.pdf", "version": 7}
    check = client.get("/api/audit/verify").json()
    assert check == {"ok": True, "rows": 12, "problems": []}
    # The hashes are what the documented formula gives.
    with sqlite3.connect(db_file(settings)) as con:
        first = con.execute(
            "select prev_hash, study_id, time, actor, action, detail, hash from audit where id=1"
        ).fetchone()
    assert first[0] == GENESIS_HASH
    assert first[6] == audit_hash(
        first[0], study_id=first[1], time=first[2], actor=first[3], action=first[4], detail=first[5]
    )


def test_unsign_needs_a_reason_and_a_signed_study(client: TestClient) -> None:
    client.get("/api/studies/1")
    response = client.post("/api/studies/1/unsign", json={"version": 0, "reviewer": "x", "reason": "why"})
    assert response.status_code == 409 and "not signed" in response.json()["detail"]
    post(client, "sign", version=0, reviewer="Dr A")
    response = client.post("/api/studies/1/unsign", json={"version": 1, "reviewer": "x", "reason": "   "})
    assert response.status_code == 422
    assert client.post("/api/studies/1/unsign", json={"version": 1, "reviewer": "x"}).status_code == 422


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("update audit set actor = 'Dr Evil' where action = 'sign' and actor = 'Dr A'", "content changed"),
        (
            "update audit set detail = replace(detail, 'LCX lesion missed', 'none') where action = 'unsign'",
            "content changed",
        ),
        ("delete from audit where action = 'undo'", "does not follow"),
        ("update edits set after = 5 where id = 3", "differs from its audit row"),
        ("update edits set reviewer = 'Dr Evil' where id = 1", "differs from its audit row"),
        ("update studies set signed_by = 'Dr Evil' where id = 1", "signature differs"),
        ("update studies set current_agatston = 0 where id = 1", "summary score differs"),
        (
            (
                "insert into edits (study_id, reviewer, created_at, action, lesion, before, after) "
                "values (1, 'Dr Evil', '2026-01-01', 'add', 1, 0, 3)"
            ),
            "no audit row records it",
        ),
    ],
)
def test_a_direct_change_of_history_is_found(
    client: TestClient, settings: Settings, tmp_path: Path, sql: str, problem: str
) -> None:
    review_session(client, tmp_path)
    with sqlite3.connect(db_file(settings)) as con:
        assert con.execute(sql).rowcount == 1
    check = client.get("/api/audit/verify").json()
    assert not check["ok"] and any(problem in text for text in check["problems"]), check
    result = CliRunner().invoke(cli_app, ["serve", "--db", str(db_file(settings)), "--verify-audit"])
    assert result.exit_code == 1
    assert "history was changed" in result.output and problem in result.output


def test_the_cli_verifies_an_intact_log(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    review_session(client, tmp_path)
    result = CliRunner().invoke(cli_app, ["serve", "--db", settings.db_url, "--verify-audit"])
    assert result.exit_code == 0, result.output
    assert "audit log intact: 12 rows" in result.output


def test_the_summary_is_committed_with_the_edit(client: TestClient, settings: Settings) -> None:
    client.get("/api/studies/1")
    state = post(client, "edits", version=0, reviewer="Dr A", lesion=BLOB_A, artery=None)
    listed = client.get("/api/studies").json()[0]
    assert listed["agatston"] == state["score"]["agatston"]
    with sqlite3.connect(db_file(settings)) as con:
        detail = json.loads(con.execute("select detail from audit where action = 'remove'").fetchone()[0])
    assert detail["agatston"] == state["score"]["agatston"] and detail["version"] == 1
