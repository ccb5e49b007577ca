"""The review API: studies, pixels, edits with rescoring, concurrency, signing, exports, security."""

from __future__ import annotations

import io
import re
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cacscore.cli.main import app as cli_app
from cacscore.io import read_mask, write_dicom_series, write_volume
from cacscore.labels import LAD, LCX, LM, RCA
from cacscore.scoring import score_calcium
from cacscore.web.db import Study
from cacscore.web.dependencies import Settings, get_scorer
from cacscore.web.main import create_app
from cacscore.web.service import candidates_only

from .conftest import SHAPE, SPACING, automatic_mask, known_scorer, local_client, store_of, synthetic_volume

# Candidate ids of the synthetic volume (raster order of each component's first voxel).
BAR, BLOB_A, BLOB_B, BLOB_C = 1, 2, 3, 4


def expected_score(mask: np.ndarray) -> dict:
    """What cacscore.scoring says for ``mask`` on the synthetic volume (minus the lesion list)."""
    volume = synthetic_volume()
    result = score_calcium(volume.hu, volume.spacing, mask, kvp=120.0, affine=volume.affine).to_dict()
    del result["lesions"]
    return result


def blob(mask: np.ndarray, lesion: int, code: int) -> np.ndarray:
    """Copy of ``mask`` with synthetic candidate ``lesion`` set to ``code``."""
    volume = synthetic_volume()
    out = mask.copy()
    from cacscore.web.service import find_candidates

    out[find_candidates(volume).labels == lesion] = code
    return out


def edit(client: TestClient, version: int, lesion: int, artery: str | None, reviewer: str = "Dr Test"):
    return client.post(
        "/api/studies/1/edits",
        json={"version": version, "reviewer": reviewer, "lesion": lesion, "artery": artery},
    )


# ---------------------------------------------------------------- studies


def test_list_finds_the_data_scan_and_reports_status(client: TestClient) -> None:
    studies = client.get("/api/studies").json()
    assert [(s["id"], s["name"], s["status"]) for s in studies] == [(1, "case_a", "new")]
    client.get("/api/studies/1")
    summary = client.get("/api/studies").json()[0]
    assert summary["status"] == "analysed"
    assert summary["auto_agatston"] == pytest.approx(expected_score(automatic_mask())["agatston"])
    assert summary["method"] == "model" and summary["model_version"] == "test-model 1"


def test_open_study_gives_geometry_and_scores_equal_to_scoring(client: TestClient) -> None:
    study = client.get("/api/studies/1").json()
    assert study["shape"] == list(SHAPE) and study["spacing_mm"] == list(SPACING)
    assert study["n_candidates"] == 4
    state = study["state"]
    assert state["version"] == 0 and state["edits"] == [] and not state["can_undo"]
    assert state["score"] == expected_score(automatic_mask())
    by_id = {row["id"]: row for row in state["lesions"]}
    assert sorted(by_id) == [BLOB_A, BLOB_B]
    assert (by_id[BLOB_A]["artery"], by_id[BLOB_A]["confidence"]) == ("LAD", 0.9)
    assert (by_id[BLOB_B]["artery"], by_id[BLOB_B]["confidence"]) == ("RCA", 0.6)
    # Blob A: 2 slices x 4 mm^2 x weight 4 x 3 mm / 3 = 32; shares add up to the total.
    assert by_id[BLOB_A]["agatston"] == pytest.approx(32.0)
    assert sum(row["agatston"] for row in state["lesions"]) == pytest.approx(state["score"]["agatston"])
    assert state["interpretation"]["risk_category"].startswith("Agatston 11-100")


def test_slice_and_overlay_bytes(client: TestClient) -> None:
    volume = synthetic_volume()
    raw = client.get("/api/studies/1/slices/2").content
    assert np.array_equal(np.frombuffer(raw, "<i2").reshape(SHAPE[1:]), volume.hu[2])
    overlay = client.get("/api/studies/1/overlays/2").content
    n = SHAPE[1] * SHAPE[2]
    ids = np.frombuffer(overlay[: 4 * n], "<i4").reshape(SHAPE[1:])
    labels = np.frombuffer(overlay[4 * n :], np.uint8).reshape(SHAPE[1:])
    assert set(np.unique(ids)) == {0, BAR, BLOB_A, BLOB_B}
    assert np.array_equal(labels, automatic_mask()[2])


@pytest.mark.parametrize("z", [-1, SHAPE[0]])
def test_slice_outside_the_volume_is_422(client: TestClient, z: int) -> None:
    response = client.get(f"/api/studies/1/slices/{z}")
    assert response.status_code == 422
    assert ("outside the study" if z >= 0 else "greater than or equal to 0") in str(response.json()["detail"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/studies/99"),
        ("get", "/api/studies/99/state"),
        ("get", "/api/studies/99/slices/0"),
        ("get", "/api/studies/99/overlays/0"),
        ("get", "/api/studies/99/report.json"),
        ("get", "/api/studies/99/mask.nii.gz"),
        ("get", "/api/studies/99/report.pdf"),
        ("post", "/api/studies/99/undo"),
        ("post", "/api/studies/99/sign"),
    ],
)
def test_unknown_study_is_404(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path, json={"version": 0, "reviewer": "x"})
    assert response.status_code == 404
    assert response.json()["detail"] == "no study with id 99"


def test_rescan_adds_new_scans(client: TestClient, data_dir: Path) -> None:
    assert len(client.get("/api/studies").json()) == 1
    (data_dir / "case_b").mkdir()
    write_volume(synthetic_volume(), data_dir / "case_b" / "image.nii.gz")
    assert client.post("/api/studies/rescan").json() == {"added": 1}
    assert [s["name"] for s in client.get("/api/studies").json()] == ["case_a", "case_b"]


# ---------------------------------------------------------------- editing and rescoring


def test_remove_drops_the_score_by_the_lesion_share(client: TestClient) -> None:
    before = client.get("/api/studies/1").json()["state"]
    share = next(row["agatston"] for row in before["lesions"] if row["id"] == BLOB_A)
    response = edit(client, 0, BLOB_A, None)
    assert response.status_code == 200
    state = response.json()
    assert state["version"] == 1
    assert state["score"] == expected_score(blob(automatic_mask(), BLOB_A, 0))
    assert state["score"]["agatston"] == pytest.approx(before["score"]["agatston"] - share)
    row = next(row for row in state["lesions"] if row["id"] == BLOB_A)
    assert (row["artery"], row["auto_artery"], row["agatston"]) == (None, "LAD", 0.0)
    assert state["edits"][0] | {"time": None} == {
        "id": 1,
        "reviewer": "Dr Test",
        "time": None,
        "action": "remove",
        "lesion": BLOB_A,
        "before": LAD,
        "after": 0,
        "undoes": None,
    }


def test_add_reassign_and_undo_always_equal_scoring(client: TestClient) -> None:
    client.get("/api/studies/1")
    mask0 = automatic_mask()
    mask1 = blob(mask0, BLOB_C, LCX)
    state = edit(client, 0, BLOB_C, "LCX").json()
    assert state["score"] == expected_score(mask1)
    assert state["edits"][-1]["action"] == "add"
    mask2 = blob(mask1, BLOB_A, LM)
    state = edit(client, 1, BLOB_A, "LM").json()
    assert state["score"] == expected_score(mask2)
    assert (state["edits"][-1]["action"], state["edits"][-1]["before"], state["edits"][-1]["after"]) == (
        "reassign",
        LAD,
        LM,
    )
    assert state["score"]["cac_drs"].endswith("/N3")
    state = client.post("/api/studies/1/undo", json={"version": 2, "reviewer": "Dr Test"}).json()
    assert state["score"] == expected_score(mask1)
    assert state["edits"][-1] | {"time": None} == {
        "id": 3,
        "reviewer": "Dr Test",
        "time": None,
        "action": "undo",
        "lesion": BLOB_A,
        "before": LM,
        "after": LAD,
        "undoes": 2,
    }
    state = client.post("/api/studies/1/undo", json={"version": 3, "reviewer": "Dr Test"}).json()
    assert state["score"] == expected_score(mask0)
    assert not state["can_undo"]
    response = client.post("/api/studies/1/undo", json={"version": 4, "reviewer": "Dr Test"})
    assert response.status_code == 409
    assert response.json()["detail"] == "study 1 has no edit to undo"


@pytest.mark.parametrize(
    ("lesion", "artery", "message"),
    [
        (0, "LAD", "lesion 0 is not a candidate of this study"),
        (99, "LAD", "lesion 99 is not a candidate of this study"),
        (BLOB_A, "LADX", "artery 'LADX' is not one of"),
        (BLOB_A, "LAD", "lesion 2 is already LAD; nothing to change"),
        (BLOB_C, None, "lesion 4 is already not counted"),
    ],
)
def test_bad_edits_are_422(client: TestClient, lesion: int, artery: str | None, message: str) -> None:
    client.get("/api/studies/1")
    response = edit(client, 0, lesion, artery)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_empty_reviewer_is_refused(client: TestClient) -> None:
    client.get("/api/studies/1")
    assert edit(client, 0, BLOB_C, "LAD", reviewer="").status_code == 422
    response = edit(client, 0, BLOB_C, "LAD", reviewer="   ")
    assert response.status_code == 422
    assert "reviewer name is empty" in response.json()["detail"]


def test_stale_version_is_409(client: TestClient) -> None:
    client.get("/api/studies/1")
    assert edit(client, 0, BLOB_C, "LAD").status_code == 200
    response = edit(client, 0, BLOB_A, None, reviewer="Dr Other")
    assert response.status_code == 409
    assert "changed by someone else" in response.json()["detail"]
    state = client.get("/api/studies/1/state").json()
    assert state["version"] == 1 and len(state["edits"]) == 1


def test_concurrent_edits_on_one_version_let_exactly_one_through(client: TestClient) -> None:
    client.get("/api/studies/1")
    codes: list[int] = []
    barrier = threading.Barrier(4)

    def worker(lesion: int, artery: str | None) -> None:
        barrier.wait()
        codes.append(edit(client, 0, lesion, artery).status_code)

    threads = [
        threading.Thread(target=worker, args=args)
        for args in [(BLOB_A, None), (BLOB_B, "LCX"), (BLOB_C, "LAD"), (BAR, "RCA")]
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [200, 409, 409, 409]
    assert len(client.get("/api/studies/1/state").json()["edits"]) == 1


def test_signed_study_is_read_only(client: TestClient) -> None:
    client.get("/api/studies/1")
    edit(client, 0, BLOB_C, "LCX")
    signed = client.post("/api/studies/1/sign", json={"version": 1, "reviewer": "Dr Test"}).json()
    assert (signed["status"], signed["signed_by"], signed["version"], signed["can_undo"]) == (
        "signed",
        "Dr Test",
        2,
        False,
    )
    for response in (
        edit(client, 2, BLOB_A, None),
        client.post("/api/studies/1/undo", json={"version": 2, "reviewer": "Dr Test"}),
        client.post("/api/studies/1/sign", json={"version": 2, "reviewer": "Dr Test"}),
    ):
        assert response.status_code == 403
        assert response.json()["detail"] == "study 1 is signed and read-only"
    assert client.get("/api/studies").json()[0]["status"] == "signed"
    assert client.get("/api/studies/1/report.pdf").status_code == 200


def test_edits_persist_and_automatic_result_stays_unchanged(client: TestClient, settings: Settings) -> None:
    client.get("/api/studies/1")
    edit(client, 0, BLOB_A, None)
    edit(client, 1, BLOB_C, "RCA")
    store = store_of(client, settings)
    with store.db.sessions() as session:
        auto_before = session.get(Study, 1).auto_mask
    # A fresh app on the same database (a server restart) shows the edited state.
    fresh = create_app(settings)
    fresh.dependency_overrides[get_scorer] = lambda: candidates_only
    with local_client(fresh) as other:
        state = other.get("/api/studies/1").json()["state"]
    expected = blob(blob(automatic_mask(), BLOB_A, 0), BLOB_C, RCA)
    assert state["score"] == expected_score(expected)
    assert [e["action"] for e in state["edits"]] == ["remove", "add"]
    with store.db.sessions() as session:
        study = session.get(Study, 1)
        assert study.auto_mask == auto_before
        assert study.auto_agatston == pytest.approx(expected_score(automatic_mask())["agatston"])


def test_without_model_every_candidate_waits_for_the_reviewer(settings: Settings) -> None:
    app = create_app(settings)
    app.dependency_overrides[get_scorer] = lambda: candidates_only
    with local_client(app) as client:
        state = client.get("/api/studies/1").json()["state"]
        assert state["score"]["agatston"] == 0.0 and state["lesions"] == []
        assert client.get("/api/studies").json()[0]["method"] == "candidates only"
        state = edit(client, 0, BLOB_A, "LAD").json()
    assert state["score"] == expected_score(blob(np.zeros(SHAPE, np.uint8), BLOB_A, LAD))


# ---------------------------------------------------------------- exports


def test_report_json_matches_scoring_and_holds_the_review(client: TestClient) -> None:
    client.get("/api/studies/1")
    edit(client, 0, BLOB_B, "LCX")
    report = client.get("/api/studies/1/report.json").json()
    expected = expected_score(blob(automatic_mask(), BLOB_B, LCX))
    assert report["schema"] == "cacscore.score/1"
    assert report["agatston"] == expected["agatston"] and report["arteries"] == expected["arteries"]
    assert report["input"]["path"] == "case_a"
    review = report["review"]
    assert review["automatic"] == {
        "method": "model",
        "model_version": "test-model 1",
        "agatston": pytest.approx(expected_score(automatic_mask())["agatston"]),
    }
    assert [e["action"] for e in review["edits"]] == ["reassign"] and review["reviewers"] == ["Dr Test"]


def test_mask_export_is_the_edited_mask(client: TestClient, tmp_path: Path) -> None:
    client.get("/api/studies/1")
    edit(client, 0, BLOB_C, "LM")
    response = client.get("/api/studies/1/mask.nii.gz")
    assert response.headers["content-type"] == "application/gzip"
    path = tmp_path / "mask.nii.gz"
    path.write_bytes(response.content)
    assert np.array_equal(read_mask(path, synthetic_volume()), blob(automatic_mask(), BLOB_C, LM))


def test_pdf_report_is_one_page(client: TestClient) -> None:
    client.get("/api/studies/1")
    response = client.get("/api/studies/1/report.pdf")
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", response.content)) == 1


# ---------------------------------------------------------------- uploads


def upload(client: TestClient, name: str, content: bytes):
    return client.post("/api/studies", files={"file": (name, content, "application/octet-stream")})


def test_upload_nifti_creates_a_study(client: TestClient, tmp_path: Path) -> None:
    path = write_volume(synthetic_volume(), tmp_path / "scan.nii.gz")
    response = upload(client, "../../scan.nii.gz", path.read_bytes())
    assert response.status_code == 201
    study = response.json()
    assert (study["name"], study["source"], study["status"]) == ("upload: scan.nii.gz", "uploads", "new")
    opened = client.get(f"/api/studies/{study['id']}").json()
    assert opened["state"]["score"] == expected_score(automatic_mask())


def test_upload_zip_of_a_dicom_series(client: TestClient, tmp_path: Path) -> None:
    write_dicom_series(synthetic_volume(), tmp_path / "series")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted((tmp_path / "series").iterdir()):
            archive.write(path, f"exam/{path.name}")
    response = upload(client, "exam.zip", buffer.getvalue())
    assert response.status_code == 201, response.text
    opened = client.get(f"/api/studies/{response.json()['id']}").json()
    assert opened["shape"] == list(SHAPE) and opened["study_uid"]


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "status", "message"),
    [
        (
            "notes.txt",
            b"hello, this is not a scan",
            422,
            "notes.txt: not a zip of a DICOM series or a NIfTI file",
        ),
        ("fake.zip", b"PK\x03\x04 but not really a zip", 422, "fake.zip: not a zip of a DICOM series"),
        ("docs.zip", _zip({"a.txt": b"text", "b/c.txt": b"more"}), 422, "docs.zip: no readable CT volume"),
        ("evil.zip", _zip({"../../escape.dcm": b"x"}), 422, "has an unsafe path"),
        ("bad.nii", (348).to_bytes(4, "little") + b"\0" * 20, 422, "bad.nii: no readable CT volume"),
        ("empty.nii.gz", b"", 422, "upload is empty"),
        ("huge.nii", b"\0" * (1024 * 1024 + 200_000), 413, "larger than the limit of 1 MB"),
    ],
)
def test_bad_uploads_are_refused_with_clear_errors(
    client: TestClient, settings: Settings, name: str, content: bytes, status: int, message: str
) -> None:
    response = upload(client, name, content)
    assert response.status_code == status
    assert message in response.json()["detail"]
    assert client.get("/api/studies").json()[-1]["source"] == "data"
    leftovers = (
        [p for p in settings.upload_dir.rglob("*") if p.is_file()] if settings.upload_dir.exists() else []
    )
    assert leftovers == []


def test_upload_without_file_field_is_422(client: TestClient) -> None:
    response = client.post("/api/studies", data={"other": "x"})
    assert response.status_code == 422
    assert "multipart field named 'file'" in response.json()["detail"]


def test_zip_that_unpacks_beyond_the_limit_is_413(client: TestClient) -> None:
    response = upload(client, "bomb.zip", _zip({"zeros.dcm": b"\0" * (5 * 1024 * 1024)}))
    assert response.status_code == 413
    assert "bomb.zip: zip unpacks to 5 MB" in response.json()["detail"]


# ---------------------------------------------------------------- security


@pytest.mark.parametrize(
    "path",
    [
        "/api/studies/..%2F..%2Fetc%2Fpasswd",
        "/api/studies/../../etc/passwd",
        "/api/studies/1/slices/..%2F..%2Fetc%2Fpasswd",
        "/api/studies/%2e%2e/state",
        "/api/studies/1%2F..%2F..%2Fetc/report.json",
        "/..%2F..%2Fetc%2Fpasswd",
        "/static/../../../etc/passwd",
    ],
)
def test_path_traversal_never_reads_outside(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code in (404, 405, 422)
    assert b"root:" not in response.content


def test_stored_path_leaving_the_data_folder_is_refused(client: TestClient, settings: Settings) -> None:
    client.get("/api/studies")
    store = store_of(client, settings)
    with store.db.sessions() as session:
        session.add(Study(root="data", path="../../../../etc", name="evil"))
        session.commit()
    response = client.get("/api/studies/2")
    assert response.status_code == 422
    assert "leaves its folder; refused" in response.json()["detail"]


TOKEN = "s3cret-" + "0123456789abcdef" * 2


def test_token_is_required_when_set(settings: Settings) -> None:
    from dataclasses import replace

    app = create_app(replace(settings, token=TOKEN, host="0.0.0.0"))
    app.dependency_overrides[get_scorer] = lambda: known_scorer
    with local_client(app) as client:
        assert client.get("/api/studies").status_code == 401
        assert client.get("/api/studies", headers={"X-Cacscore-Token": TOKEN}).status_code == 200
        assert client.get("/api/studies", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        # The token no longer rides in API addresses: only the page address exchanges it for a cookie.
        assert client.get(f"/api/studies/1/report.json?token={TOKEN}").status_code == 401
        assert client.get("/").status_code == 200  # the page itself holds no data


def test_every_response_forbids_foreign_content_and_framing(client: TestClient) -> None:
    for path in ("/", "/app.js", "/api/studies", "/api/studies/99"):
        headers = client.get(path).headers
        assert headers["content-security-policy"].startswith("default-src 'self'")
        assert (headers["x-frame-options"], headers["referrer-policy"]) == ("DENY", "no-referrer")
    assert client.get("/api/openapi.json").json()["info"]["title"] == "cacscore review"
    assert client.get("/api/docs").status_code == 404


def test_binding_beyond_loopback_without_token_is_refused(settings: Settings) -> None:
    from dataclasses import replace

    from cacscore.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="--host 0.0.0.0 exposes the server .* --token"):
        create_app(replace(settings, host="0.0.0.0"))
    result = CliRunner().invoke(
        cli_app, ["serve", "--host", "0.0.0.0", "--port", "8765"], env={"CACSCORE_TOKEN": ""}
    )
    assert result.exit_code == 1
    assert "error: --host 0.0.0.0 exposes the server" in result.output


def test_serve_refuses_a_missing_data_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--data", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "no such folder" in result.output


def test_patient_names_stay_out_of_the_logs(
    client: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_volume(synthetic_volume(), tmp_path / "DOE_JOHN.nii.gz")
    with caplog.at_level("DEBUG", logger="cacscore.web"):
        study = upload(client, "DOE_JOHN.nii.gz", path.read_bytes()).json()
        client.get(f"/api/studies/{study['id']}")
        edit_response = client.post(
            f"/api/studies/{study['id']}/edits",
            json={"version": 0, "reviewer": "Dr Test", "lesion": BLOB_C, "artery": "LAD"},
        )
    assert edit_response.status_code == 200
    assert caplog.records and all("DOE" not in record.getMessage() for record in caplog.records)
    assert all("case_a" not in record.getMessage() for record in caplog.records)
