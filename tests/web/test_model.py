"""The shipped model as the automatic scorer: what the server shows is what ``cacscore score`` gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cacscore.cli.main import app as cli_app
from cacscore.errors import CacScoreError
from cacscore.io import write_volume
from cacscore.web.dependencies import Settings, get_scorer
from cacscore.web.main import create_app

from .conftest import local_client


def test_served_automatic_result_equals_cacscore_score_with_the_shipped_model(tmp_path: Path) -> None:
    from cacscore.model import load_ensemble
    from cacscore.phantom import generate_case

    try:
        plan = load_ensemble().plan
    except CacScoreError as exc:
        pytest.skip(f"no usable shipped model: {exc}")
    image = write_volume(
        generate_case(10, target_category="D").volume, tmp_path / "data" / "p10" / "image.nii.gz"
    )
    result = CliRunner().invoke(cli_app, ["score", str(image), "--json"])
    assert result.exit_code == 0, result.output
    expected = json.loads(result.stdout)

    get_scorer.cache_clear()
    settings = Settings(
        data_dir=tmp_path / "data",
        db_url=f"sqlite:///{tmp_path / 'review.db'}",
        upload_dir=tmp_path / "uploads",
    )
    try:
        with local_client(create_app(settings)) as client:
            study = client.get("/api/studies/1").json()
    finally:
        get_scorer.cache_clear()
    assert (study["method"], study["model_version"]) == ("model", f"{plan.name} {plan.model_version}")
    score = study["state"]["score"]
    assert score["agatston"] == expected["agatston"]
    assert score["arteries"] == expected["arteries"]
    served = [row["confidence"] for row in study["state"]["lesions"] if row["agatston"] > 0]
    reported = [round(lesion["confidence"], 3) for lesion in expected["lesions"]]
    assert max(served, default=None) == max(reported, default=None)
