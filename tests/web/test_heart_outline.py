"""The heart region's outline for the viewer: one byte per pixel of a slice, all 0 where there is no heart."""

from __future__ import annotations

from fastapi.testclient import TestClient

from .conftest import SHAPE


def test_outline_of_a_volume_without_a_heart_is_empty(client: TestClient) -> None:
    client.get("/api/studies")  # finds case_a
    response = client.get("/api/studies/1/heart-region/2")
    assert response.status_code == 200
    assert len(response.content) == SHAPE[1] * SHAPE[2] and not any(response.content)
    assert client.get(f"/api/studies/1/heart-region/{SHAPE[0]}").status_code in (400, 404, 422)
