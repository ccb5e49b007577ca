"""Fuzzing every API route of the OpenAPI schema: ids, numbers, query strings and bodies never give a 500.

Hypothesis draws path parameters (huge, negative, fractional, text), query
strings and JSON bodies (the right keys with wrong or extreme values, NaN and
Infinity included, and arbitrary JSON), plus raw multipart and non-JSON
bodies. Every answer must be below 500 and carry the security headers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cacscore.io import write_volume
from cacscore.web.dependencies import Settings, get_scorer
from cacscore.web.main import create_app
from cacscore.web.security import SECURITY_HEADERS

from .conftest import known_scorer, local_client, synthetic_volume

#: Hypothesis examples per test; each is one request on a tiny study (a few ms).
EXAMPLES = 300


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "data" / "case_a").mkdir(parents=True)
    write_volume(synthetic_volume(), root / "data" / "case_a" / "image.nii.gz")
    app = create_app(
        Settings(
            data_dir=root / "data",
            db_url=f"sqlite:///{root / 'review.db'}",
            upload_dir=root / "uploads",
            max_upload_mb=0.5,
        )
    )
    app.dependency_overrides[get_scorer] = lambda: known_scorer
    with local_client(app) as client:
        assert client.get("/api/studies/1").status_code == 200
        yield client


def routes(client: TestClient) -> list[tuple[str, str]]:
    schema = client.get("/api/openapi.json").json()
    return sorted((method.upper(), path) for path, item in schema["paths"].items() for method in item)


def test_the_schema_lists_every_route(fuzz_client: TestClient) -> None:
    found = routes(fuzz_client)
    assert ("POST", "/api/studies/{study_id}/edits") in found and ("GET", "/api/audit/verify") in found
    assert len(found) >= 16


numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=8),
    st.floats(allow_nan=True, allow_infinity=True),
)
path_values = st.one_of(
    numbers.map(str),
    st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%"), max_size=12
    ),
    st.sampled_from(
        ["1", "0", "-1", "1e3", "0x10", "1.5", "99999999999999999999999999", "%00", "..", "%2e%2e"]
    ),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=200)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            key: json_values for key in ("version", "reviewer", "lesion", "artery", "confirm", "reason")
        },
    ),
    st.fixed_dictionaries(
        {
            "version": st.integers(min_value=0, max_value=6),
            "reviewer": st.text(min_size=0, max_size=140),
            "lesion": st.integers(min_value=-1, max_value=6),
            "artery": st.sampled_from([None, "LM", "LAD", "LCX", "RCA", "unspecified", "none", "aorta"]),
            "confirm": st.booleans(),
            "reason": st.text(max_size=20),
        }
    ),
    json_values,
)


def fill(path: str, values: list[str]) -> str:
    parts = iter(values)
    return re.sub(r"\{[^}]+\}", lambda _: next(parts, "1"), path)


def check(response: object) -> None:
    status = response.status_code  # type: ignore[attr-defined]
    assert status < 500, (status, response.text)  # type: ignore[attr-defined]
    headers = response.headers  # type: ignore[attr-defined]
    assert all(headers.get(name) == value for name, value in SECURITY_HEADERS.items())


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_route_answers_500(fuzz_client: TestClient, data: st.DataObject) -> None:
    method, template = data.draw(st.sampled_from(routes(fuzz_client)), label="route")
    path = fill(template, data.draw(st.lists(path_values, min_size=2, max_size=2), label="path values"))
    query = data.draw(
        st.dictionaries(st.sampled_from(["reviewer", "token", "x"]), st.text(max_size=150), max_size=2)
    )
    if method == "GET":
        check(fuzz_client.get(path, params=query))
        return
    if template == "/api/studies":
        content = data.draw(st.binary(max_size=400), label="body")
        kind = data.draw(
            st.sampled_from(
                ["multipart/form-data; boundary=b", "multipart/form-data", "application/json", "text/plain"]
            )
        )
        check(fuzz_client.post(path, content=content, headers={"Content-Type": kind}))
        return
    body = data.draw(bodies, label="body")
    raw = json.dumps(body, allow_nan=True)  # NaN and Infinity as Python's json (and some clients) write them
    check(fuzz_client.post(path, content=raw, headers={"Content-Type": "application/json"}))


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(name=st.text(max_size=60), content=st.binary(max_size=2000))
def test_uploads_of_random_files_never_answer_500(fuzz_client: TestClient, name: str, content: bytes) -> None:
    check(fuzz_client.post("/api/studies", files={"file": (name or "x", content)}))


def test_fuzzing_left_the_audit_chain_intact(fuzz_client: TestClient) -> None:
    assert fuzz_client.get("/api/audit/verify").json()["ok"] is True


def test_no_temporary_upload_files_were_left(
    fuzz_client: TestClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    uploads = Path(str(tmp_path_factory.getbasetemp())) / "fuzz0" / "uploads"
    assert not uploads.exists() or not list(uploads.glob("incoming-*"))
