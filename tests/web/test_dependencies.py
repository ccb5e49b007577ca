"""Settings, the automatic scorer (model or candidates only), background analysis and unreadable studies."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from tiny_models import tiny_ensemble

from cacscore.errors import InvalidInputError, ModelFolderError
from cacscore.scoring import score_volume
from cacscore.web import dependencies
from cacscore.web.dependencies import ModelScorer, Settings, get_scorer
from cacscore.web.main import create_app
from cacscore.web.service import OVERRIDDEN_METHOD, REFUSED_METHOD, candidates_only

from .conftest import automatic_mask, known_scorer, local_client, store_of, synthetic_volume


class _NeverRun:
    """An ensemble that fails the test if the networks are asked for anything."""

    class plan:  # noqa: N801 - stands in for the Plan attribute
        name = "tiny"
        model_version = "3"

    def predict(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("the networks ran on a refused scan")


def test_model_scorer_refuses_a_scan_without_a_heart_before_the_networks_run() -> None:
    auto = ModelScorer(_NeverRun())(synthetic_volume())  # type: ignore[arg-type]
    assert auto.method == REFUSED_METHOD and auto.model_version == "tiny 3"
    assert not auto.mask.any() and auto.confidence is None
    assert auto.refusal is not None and auto.refusal.startswith("no heart in the field of view: lungs 0 mL")
    assert auto.domain is not None and auto.domain["heart_in_view"] is False


def test_model_scorer_analyses_anyway_by_the_score_path_and_paints_each_lesion_confidence() -> None:
    from cacscore.pipeline import check_volume, score_checked

    volume = synthetic_volume()
    ensemble = tiny_ensemble(seed=3)
    auto = ModelScorer(ensemble)(volume, skip_domain_check=True)
    assert (auto.method, auto.model_version) == (OVERRIDDEN_METHOD, "tiny 0.1")
    assert auto.domain is not None and auto.domain["skipped"] is True and auto.refusal is None
    # The same mask and lesion confidences as `cacscore score --skip-domain-check` (pipeline.score_checked).
    result, _, labels = score_checked(volume, check_volume(volume, skip_domain_check=True), ensemble)
    assert np.array_equal(auto.mask, labels)
    _, lesion_map = score_volume(volume, labels, return_lesion_map=True)
    assert auto.confidence is not None
    for lesion in result.lesions:
        assert np.all(auto.confidence[lesion_map == lesion.id] == np.float32(lesion.confidence or 0.0))
    assert np.all(auto.confidence[lesion_map == 0] == 0)


def test_without_a_model_folder_the_scorer_is_candidates_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*args: object, **kwargs: object) -> None:
        raise ModelFolderError("model folder: plan.json is missing")

    monkeypatch.setattr("cacscore.model.load_ensemble", missing)
    get_scorer.cache_clear()
    try:
        assert get_scorer() is candidates_only
    finally:
        get_scorer.cache_clear()
    assert candidates_only(synthetic_volume()).mask.sum() == 0


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CACSCORE_DATA", str(tmp_path))
    monkeypatch.setenv("CACSCORE_DB", "sqlite:///x.db")
    monkeypatch.setenv("CACSCORE_TOKEN", "abc")
    settings = Settings.from_env()
    assert (settings.data_dir, settings.db_url, settings.token) == (tmp_path, "sqlite:///x.db", "abc")
    monkeypatch.delenv("CACSCORE_DATA")
    assert Settings.from_env().data_dir is None
    monkeypatch.setenv("CACSCORE_ALLOWED_HOSTS", "review.example.org, other.example.org")
    monkeypatch.setenv("CACSCORE_DB", str(tmp_path / "plain.db"))
    settings = Settings.from_env()
    assert settings.allowed_hosts == ("review.example.org", "other.example.org")
    assert settings.db_url == f"sqlite:///{tmp_path / 'plain.db'}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_upload_mb": 0}, "--max-upload-mb must be > 0"),
        ({"cache_size": 0}, "cache size must be >= 1"),
        ({"host": "192.168.1.5"}, "--host 192.168.1.5 exposes the server"),
        ({"token": "a"}, "--token has 1 characters; give at least 32"),
        ({"token": "x" * 31}, "--token has 31 characters"),
    ],
)
def test_bad_settings_are_refused(settings: Settings, change: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        replace(settings, **change).check()
    token = "t" * 32
    assert replace(settings, host="192.168.1.5", token=token).check().token == token


def test_background_analysis_fills_in_the_automatic_scores(settings: Settings, data_dir: Path) -> None:
    from cacscore.io import write_volume

    (data_dir / "case_b").mkdir()
    write_volume(synthetic_volume(), data_dir / "case_b" / "image.nii.gz")
    (data_dir / "case_c").mkdir()
    (data_dir / "case_c" / "image.nii.gz").write_bytes(b"not an image")
    settings = replace(settings, analyse_in_background=True)
    app = create_app(settings)
    app.dependency_overrides[get_scorer] = lambda: known_scorer
    with local_client(app) as client:
        assert [s["status"] for s in client.get("/api/studies").json()] == ["new", "new", "new"]
        store = store_of(client, settings)
        assert store._worker is not None
        store._worker.join(timeout=60)
        studies = client.get("/api/studies").json()
    expected = score_volume(synthetic_volume(), automatic_mask()).agatston
    assert [(s["name"], s["status"], s["auto_agatston"]) for s in studies] == [
        ("case_a", "analysed", pytest.approx(expected)),
        ("case_b", "analysed", pytest.approx(expected)),
        ("case_c", "unreadable", None),
    ]
    assert "truncated or corrupt NIfTI header" in studies[2]["error"]


def test_an_unreadable_study_answers_422_and_is_marked(client: TestClient, data_dir: Path) -> None:
    (data_dir / "case_a" / "image.nii.gz").write_bytes(b"broken")
    response = client.get("/api/studies/1")
    assert response.status_code == 422
    assert "truncated or corrupt NIfTI header" in response.json()["detail"]
    assert client.get("/api/studies").json()[0]["status"] == "unreadable"


def test_the_scorer_mask_must_match_the_scan(settings: Settings) -> None:
    app = create_app(settings)
    app.dependency_overrides[get_scorer] = lambda: (
        lambda volume: replace(known_scorer(volume), mask=np.zeros((2, 2, 2), np.uint8))
    )
    with local_client(app) as client:
        response = client.get("/api/studies/1")
    assert response.status_code == 422
    assert "automatic mask shape (2, 2, 2) does not match the scan (6, 48, 48)" in response.json()["detail"]


def test_app_factory_reads_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data_dir: Path
) -> None:
    monkeypatch.setenv("CACSCORE_DATA", str(data_dir))
    monkeypatch.setenv("CACSCORE_DB", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("CACSCORE_UPLOADS", str(tmp_path / "env-uploads"))
    dependencies.get_settings.cache_clear()
    try:
        app = create_app()
        app.dependency_overrides[get_scorer] = lambda: known_scorer
        with local_client(app) as client:
            assert [s["name"] for s in client.get("/api/studies").json()] == ["case_a"]
    finally:
        dependencies.get_settings.cache_clear()
    assert (tmp_path / "env.db").is_file()
