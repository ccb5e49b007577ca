"""The request guard: Host names, same-origin proof, token and cookie, malformed input, upload limits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cacscore.cli.main import app as cli_app
from cacscore.io import write_volume
from cacscore.web.db import database_url
from cacscore.web.dependencies import Settings, get_scorer
from cacscore.web.files import UploadTooLargeError
from cacscore.web.main import create_app
from cacscore.web.routers.studies import limited
from cacscore.web.security import (
    FAILED_TOKEN_DELAY_S,
    REQUEST_HEADER,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    host_name,
    session_value,
)

from .conftest import known_scorer, local_client, synthetic_volume

TOKEN = "0123456789abcdef" * 3  # 48 characters


def has_security_headers(response: object) -> bool:
    headers = response.headers  # type: ignore[attr-defined]
    return all(headers.get(name) == value for name, value in SECURITY_HEADERS.items())


def n_studies(settings: Settings) -> int:
    app = create_app(settings)
    app.dependency_overrides[get_scorer] = lambda: known_scorer
    with local_client(app) as client:
        return len(client.get("/api/studies").json())


# ---------------------------------------------------------------- Host names


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8000", "127.0.0.2", "localhost.evil"])
def test_a_foreign_host_header_is_refused(client: TestClient, host: str) -> None:
    response = client.get("/api/studies", headers={"Host": host})
    assert response.status_code == 400
    assert "is not served here" in response.json()["detail"] and has_security_headers(response)
    assert client.get("/", headers={"Host": host}).status_code == 400  # not even the page


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST"])
def test_loopback_host_names_are_served(client: TestClient, host: str) -> None:
    assert client.get("/api/studies", headers={"Host": host}).status_code == 200


def test_allowed_host_and_bound_address_are_served(settings: Settings) -> None:
    app = create_app(replace(settings, host="10.1.2.3", token=TOKEN, allowed_hosts=("review.example.org",)))
    app.dependency_overrides[get_scorer] = lambda: known_scorer
    with local_client(app, headers={REQUEST_HEADER: "1", "X-Cacscore-Token": TOKEN}) as client:
        for host in ("review.example.org", "review.example.org:443", "10.1.2.3:8000"):
            assert client.get("/api/studies", headers={"Host": host}).status_code == 200
        assert client.get("/api/studies", headers={"Host": "other.example.org"}).status_code == 400


def test_host_name_parsing() -> None:
    assert [host_name(h) for h in ("[::1]:80", "::1", "Example.org.:8080", "a.b")] == [
        "::1",
        "::1",
        "example.org",
        "a.b",
    ]


# ---------------------------------------------------------------- same-origin proof


def test_state_changes_without_the_custom_header_are_refused_and_change_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    path = write_volume(synthetic_volume(), tmp_path / "scan.nii.gz")
    app = create_app(settings)
    app.dependency_overrides[get_scorer] = lambda: known_scorer
    with TestClient(app, base_url="http://localhost") as bare:
        # What a cross-site form or a no-cors fetch can send: no custom header.
        upload = bare.post("/api/studies", files={"file": ("scan.nii.gz", path.read_bytes())})
        assert upload.status_code == 403 and "X-Cacscore-Request" in upload.json()["detail"]
        assert has_security_headers(upload)
        assert bare.post("/api/studies/rescan").status_code == 403
        edit = bare.post(
            "/api/studies/1/edits", json={"version": 0, "reviewer": "x", "lesion": 4, "artery": "LAD"}
        )
        assert edit.status_code == 403
        assert bare.get("/api/studies").status_code == 200  # reading needs no header
    assert n_studies(settings) == 1
    assert not settings.upload_dir.exists() or not any(settings.upload_dir.rglob("*"))


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site: cross-site"),
        ({"Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site: same-site"),  # another port of this host
        ({"Origin": "http://attacker.example"}, "origin 'http://attacker.example'"),
        ({"Origin": "http://localhost:9999"}, "origin"),
        ({"Origin": "null"}, "origin 'null'"),
    ],
)
def test_requests_from_other_origins_are_refused(client: TestClient, headers: dict, detail: str) -> None:
    response = client.post("/api/studies/rescan", headers=headers)
    assert response.status_code == 403 and detail in response.json()["detail"]
    assert has_security_headers(response)


def test_cross_site_reads_are_refused_too(client: TestClient) -> None:
    assert (
        client.get("/api/studies/1/report.json", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    )
    assert client.get("/api/studies", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert client.get("/api/studies", headers={"Sec-Fetch-Site": "none"}).status_code == 200


def test_same_origin_requests_pass(client: TestClient) -> None:
    response = client.post(
        "/api/studies/rescan", headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    )
    assert response.status_code == 200


# ---------------------------------------------------------------- token and cookie


@pytest.fixture
def token_client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(replace(settings, token=TOKEN))
    app.dependency_overrides[get_scorer] = lambda: known_scorer
    with local_client(app, follow_redirects=False) as client:
        yield client


def test_the_token_is_exchanged_for_an_httponly_strict_cookie(token_client: TestClient) -> None:
    assert token_client.get("/api/studies").status_code == 401
    response = token_client.get(f"/?token={TOKEN}")
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}={session_value(TOKEN)};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie
    assert token_client.get("/api/studies").status_code == 200  # the client kept the cookie
    token_client.cookies.set(SESSION_COOKIE, "forged")
    assert token_client.get("/api/studies").status_code == 401


def test_wrong_tokens_are_logged_and_slowed(
    token_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cacscore.web"):
        times = []
        for _ in range(3):
            started = time.monotonic()
            response = token_client.get("/api/studies", headers={"X-Cacscore-Token": "wrong"})
            times.append(time.monotonic() - started)
            assert response.status_code == 401 and has_security_headers(response)
    # 0.5 s, then 1 s, then 2 s.
    assert times[0] >= FAILED_TOKEN_DELAY_S and times[1] >= 2 * FAILED_TOKEN_DELAY_S
    assert times[2] >= 4 * FAILED_TOKEN_DELAY_S
    lines = [r.getMessage() for r in caplog.records if "wrong access token" in r.getMessage()]
    assert len(lines) == 3 and all("testclient" in line for line in lines)  # names the client address
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
    # A right token resets the count.
    assert token_client.get("/api/studies", headers={"X-Cacscore-Token": TOKEN}).status_code == 200


def test_a_wrong_token_in_the_address_sets_no_cookie(token_client: TestClient) -> None:
    response = token_client.get("/?token=" + "x" * 40)
    assert response.status_code == 401 and "set-cookie" not in response.headers


def test_short_tokens_are_refused_and_auto_generates_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    result = runner.invoke(cli_app, ["serve", "--token", "a", "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 1 and "--token has 1 characters; give at least 32" in result.output
    calls: list[dict] = []

    def fake_run(app: object, **options: object) -> None:
        calls.append(options)

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", fake_run)
    result = runner.invoke(
        cli_app, ["serve", "--token", "auto", "--host", "0.0.0.0", "--db", str(tmp_path / "r.db")]
    )
    assert result.exit_code == 0, result.output
    token = result.output.split("access token (keep it secret): ")[1].split()[0]
    assert len(token) >= 43 and f"/?token={token}" in result.output
    assert "warning: serving plain HTTP on 0.0.0.0" in result.output
    assert calls and calls[0]["ssl_certfile"] is None
    # With a certificate there is no plain-HTTP warning.
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    result = runner.invoke(
        cli_app,
        [
            "serve",
            "--token",
            TOKEN,
            "--host",
            "0.0.0.0",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--db",
            str(tmp_path / "r.db"),
        ],
    )
    assert result.exit_code == 0 and "plain HTTP" not in result.output and "https://0.0.0.0" in result.output
    assert calls[-1]["ssl_certfile"] == str(cert)
    result = runner.invoke(cli_app, ["serve", "--tls-cert", str(cert), "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 1 and "go together" in result.output


def test_db_takes_a_plain_path_or_a_url(tmp_path: Path) -> None:
    assert database_url(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path / 'x.db'}"
    assert database_url("sqlite:///rel.db") == "sqlite:///rel.db"
    result = CliRunner().invoke(cli_app, ["serve", "--db", str(tmp_path / "plain.db"), "--verify-audit"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "plain.db").is_file() and "audit log intact: 0 rows" in result.output


# ---------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    "path",
    [
        "/api/studies/99999999999999999999999999",
        "/api/studies/9223372036854775808",
        "/api/studies/0",
        "/api/studies/-1/state",
        "/api/studies/1e3",
        "/api/studies/1/slices/99999999999999999999",
        "/api/studies/1/overlays/abc",
        "/api/studies/99999999999999999999999999/report.pdf",
    ],
)
def test_malformed_ids_are_4xx_with_security_headers(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert 400 <= response.status_code < 500 and has_security_headers(response)


@pytest.mark.parametrize(
    "body",
    [
        '{"version": NaN, "reviewer": "x", "lesion": 4, "artery": "LAD"}',
        '{"version": Infinity, "reviewer": "x", "lesion": 4}',
        '{"version": 99999999999999999999999, "reviewer": "x", "lesion": 4}',
        '{"version": 0, "reviewer": "x", "lesion": 99999999999999999999999}',
        '{"version": 0, "reviewer": "x", "lesion": 4, "artery": 7}',
        '{"version": 0, "reviewer": "x", "lesion": 4, "confirm": "maybe"}',
        "[1, 2]",
        "not json",
        "",
    ],
)
def test_malformed_bodies_are_4xx(client: TestClient, body: str) -> None:
    response = client.post("/api/studies/1/edits", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert has_security_headers(response)
    assert "NaN" not in response.text


# ---------------------------------------------------------------- uploads


def test_the_upload_limit_stops_reading_as_soon_as_it_is_passed() -> None:
    consumed = []

    async def stream() -> AsyncIterator[bytes]:
        for index in range(100):
            consumed.append(index)
            yield b"\0" * 1000

    async def drain() -> None:
        async for _ in limited(stream(), 2500, 0.0025):
            pass

    with pytest.raises(UploadTooLargeError, match="larger than the limit"):
        asyncio.run(drain())
    assert consumed == [0, 1, 2]  # the third chunk passed the limit; nothing after it was read


def test_a_chunked_upload_over_the_limit_is_413_and_leaves_no_file(
    client: TestClient, settings: Settings
) -> None:
    sent = []
    boundary = "xyzBOUNDARY"

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.nii"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for _ in range(50):  # 50 MB against a 1 MB limit
            sent.append(1)
            yield b"\0" * (1 << 20)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/api/studies", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code == 413 and has_security_headers(response)
    assert "larger than the limit of 1 MB" in response.json()["detail"]
    assert not settings.upload_dir.exists() or not any(settings.upload_dir.rglob("*"))
    assert client.get("/api/studies").json()[-1]["id"] == 1


def test_a_malformed_multipart_body_is_400(client: TestClient) -> None:
    response = client.post(
        "/api/studies",
        content=b"--nope\r\ngarbage",
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert 400 <= response.status_code < 500
