"""``cacscore evaluate`` end to end on the synthetic cohort."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from cacscore.cli.main import app
from cacscore.evaluate.report import REPORT_FILES

runner = CliRunner()


def test_reference_masks_as_predictions_score_perfectly(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            str(cohort),
            "--pred",
            str(cohort / "labels"),
            "--out",
            str(out),
            "--bootstrap",
            "50",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "5 cases evaluated, 0 failed; category accuracy 1.000, Harrell's C 1.000" in result.output
    for name in REPORT_FILES:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["source"] == f"pred:{cohort / 'labels'}"
    assert metrics["lesions"]["overall"]["f1"] == 1.0
    rows = list(csv.DictReader((out / "cases.csv").read_text().splitlines()))
    assert [r["case_id"] for r in rows] == [f"case_{i}" for i in range(5)]
    assert rows[4]["ref_agatston"] == rows[4]["pred_agatston"] == "500.000"
    assert {r["lesion_fp"] for r in rows} == {"0"}
    assert (out / "metrics.json").read_bytes()[:1] == b"{"
    assert "| category accuracy | 1.000 (1.000-1.000) |" in (out / "report.md").read_text()
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_threshold_baseline_is_clearly_imperfect(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "baseline"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            str(cohort),
            "--baseline",
            "threshold",
            "--out",
            str(out),
            "--bootstrap",
            "20",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    # bone adds 128 to every case: 0->128 D, 2->130 D, 16->144 D, 144->272 D, 500->628 E
    assert metrics["category"]["accuracy"]["value"] == 0.4
    assert metrics["category"]["confusion_matrix"][0][3] == 1
    assert metrics["lesions"]["overall"]["fp_per_scan"] == 1.0
    assert metrics["agatston"]["bland_altman"]["mean_diff"] == 128.0


def test_missing_prediction_is_reported_and_counted(cohort: Path, tmp_path: Path) -> None:
    pred = tmp_path / "pred"
    shutil.copytree(cohort / "labels", pred)
    (pred / "case_1.nii.gz").unlink()
    (pred / "case_3.nii.gz").rename(pred / "case_3")  # wrong: must become case_3/prediction.nii.gz
    (pred / "case_3x").mkdir()
    (pred / "case_3").rename(pred / "case_3x" / "prediction.nii.gz")
    (pred / "case_3x").rename(pred / "case_3")
    out = tmp_path / "r"
    result = runner.invoke(
        app, ["evaluate", "--data", str(cohort), "--pred", str(pred), "--out", str(out), "--bootstrap", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "4 cases evaluated, 1 failed" in result.output
    assert "no prediction for case case_1" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_failed"] == 1 and "case_1.nii.gz" in metrics["failures"][0]["reason"]
    assert metrics["category"]["accuracy"]["ci95"] is None
    assert "case_1" in (out / "report.md").read_text()


def test_refuses_to_overwrite_and_bad_options(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    args = [
        "evaluate",
        "--data",
        str(cohort),
        "--baseline",
        "threshold",
        "--out",
        str(out),
        "--bootstrap",
        "0",
    ]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "use --force" in again.output
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    both = runner.invoke(app, [*args[:-2], "--pred", str(cohort), "--force"])
    assert both.exit_code == 1 and "exactly one of --model DIR, --pred DIR or --baseline" in both.output
    missing = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            str(tmp_path / "nope"),
            "--baseline",
            "threshold",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert missing.exit_code == 1 and "dataset folder not found" in missing.output


def test_model_ensemble_runs_on_every_case(cohort: Path, tmp_path: Path) -> None:
    from cacscore.model import default_model_dir

    model = default_model_dir()
    out = tmp_path / "m"
    result = runner.invoke(
        app, ["evaluate", "--data", str(cohort), "--model", str(model), "--out", str(out), "--bootstrap", "0"]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["source"] == f"model:{model}"
    assert (metrics["n_evaluated"], metrics["n_failed"]) == (5, 0)


def test_bad_model_folder_is_one_line_error(cohort: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["evaluate", "--data", str(cohort), "--model", str(tmp_path / "none"), "--out", str(tmp_path / "m")],
    )
    assert result.exit_code == 1 and "error:" in result.output
    assert not (tmp_path / "m" / "metrics.json").exists()
