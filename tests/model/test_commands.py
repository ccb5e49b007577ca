"""``cacscore score`` with the model and ``cacscore demo``, on phantoms, with the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cacscore.cli.main import app
from cacscore.io import read_mask, read_volume, write_volume
from cacscore.phantom import generate_case


@pytest.fixture(scope="module")
def phantom_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    case = generate_case(3, target_category="D")
    return write_volume(case.volume, tmp_path_factory.mktemp("phantom") / "image.nii.gz")


def test_score_with_the_shipped_model_reports_model_and_confidence(
    phantom_image: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["score", str(phantom_image), "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["schema"] == "cacscore.score/1"
    assert report["model"]["members"] == 5 and report["model"]["head"] == "arteries"
    assert report["model"]["precision"] == "fp32"
    assert report["lesions"], "the shipped model finds calcium in a category D phantom"
    assert all(0.5 < lesion["confidence"] <= 1.0 for lesion in report["lesions"])
    # The shipped model judges each lesion with its lesion filter: every reported one passed it.
    assert all(0.5 <= lesion["filter_probability"] <= 1.0 for lesion in report["lesions"])
    for name in ("score.json", "lesions.csv", "prediction.nii.gz", "montage.png"):
        assert (out / name).is_file()
    volume = read_volume(phantom_image)
    labels = read_mask(out / "prediction.nii.gz", volume)
    assert np.all(volume.hu[labels > 0] >= 130)
    assert (out / "montage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bf16_scores_a_category_d_phantom_as_fp32_does(phantom_image: Path) -> None:
    runs = {}
    for precision in ("fp32", "bf16"):
        result = CliRunner().invoke(app, ["score", str(phantom_image), "--json", "--precision", precision])
        assert result.exit_code == 0, result.output
        runs[precision] = json.loads(result.stdout)
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert (fp32["model"]["precision"], bf16["model"]["precision"]) == ("fp32", "bf16")
    assert fp32["agatston"] > 100
    # The same risk category and lesions; the score within 2 % (bf16 may move a voxel or two).
    assert bf16["risk_category"] == fp32["risk_category"]
    assert len(bf16["lesions"]) == len(fp32["lesions"])
    assert abs(bf16["agatston"] - fp32["agatston"]) <= 0.02 * fp32["agatston"]


def test_bf16_on_a_cpu_that_emulates_it_warns_in_one_line_and_scores(
    phantom_image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cacscore.precision

    monkeypatch.setattr(cacscore.precision, "native_bf16", lambda: False)
    result = CliRunner().invoke(app, ["score", str(phantom_image), "--json", "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"]["precision"] == "bf16"
    assert result.stderr.strip().splitlines() == [
        "warning: bf16 inference on a CPU without native bf16 (AVX512-BF16 or AMX) is emulated and slower "
        "than fp32"
    ]


def test_precision_needs_the_model_and_a_known_name(phantom_image: Path) -> None:
    with_mask = CliRunner().invoke(
        app, ["score", str(phantom_image), "--mask", str(phantom_image), "--precision", "bf16"]
    )
    assert with_mask.exit_code == 1
    assert "--precision sets how the model runs; with --mask no model runs" in with_mask.output
    assert len(with_mask.output.strip().splitlines()) == 1
    unknown = CliRunner().invoke(app, ["score", str(phantom_image), "--precision", "fp16"])
    assert unknown.exit_code == 2
    words = unknown.output.replace("│", " ").split()  # the usage error comes in a box
    assert "'fp16' is not one of 'fp32', 'bf16'" in " ".join(words)


def test_mask_and_model_together_are_refused(phantom_image: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["score", str(phantom_image), "--mask", str(phantom_image), "--model", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "either --mask" in result.output


def test_missing_model_folder_is_a_one_line_error(phantom_image: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["score", str(phantom_image), "--model", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "model folder not found" in result.output and "Traceback" not in result.output


def test_demo_runs_with_the_shipped_model(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Model vs phantom reference" in result.output
    # The final message and --out's help name every file written, and nothing else.
    from cacscore.cli.demo import DEMO_FILES
    from cacscore.model.products import MODEL_PRODUCTS

    assert sorted(p.name for p in out.iterdir()) == sorted(DEMO_FILES)
    assert set(MODEL_PRODUCTS) <= set(DEMO_FILES)
    assert f"files in {out}: {', '.join(DEMO_FILES)}" in " ".join(result.output.split())
    help_text = " ".join(CliRunner().invoke(app, ["demo", "--help"], terminal_width=200).output.split())
    assert all(name in help_text for name in DEMO_FILES)
    again = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert again.exit_code == 1 and "--force" in again.output
