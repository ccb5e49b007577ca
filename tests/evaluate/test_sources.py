"""Figures per data source: dataset folders, generator family and version; hand-computed values."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cacscore.cli.main import app
from cacscore.datasets import CaseRef
from cacscore.evaluate.lesions import LesionCounts
from cacscore.evaluate.runner import CaseEvaluation, CaseFailure, case_groups, median_ratio, summarize
from cacscore.io import read_mask, read_volume, write_mask

runner = CliRunner()


def _evaluation(
    case_id: str, ref: float, pred: float, ref_cat: str, pred_cat: str, family: str
) -> CaseEvaluation:
    return CaseEvaluation(
        case_id,
        ref,
        pred,
        ref,
        pred,
        ref_cat,
        pred_cat,
        {},
        {},
        LesionCounts(1),
        groups={"dataset": "d", "family": family, "generator_version": "unknown"},
    )


def test_case_groups_read_the_case_attributes() -> None:
    ref = CaseRef("a", "phantom", Path("x"), attributes={"family": "sdf", "generator_version": "2.0"})
    assert case_groups(ref, "cohort") == {"dataset": "cohort", "family": "sdf", "generator_version": "2.0"}
    assert case_groups(CaseRef("b", "generic", Path("y"))) == {
        "dataset": "unknown",
        "family": "unknown",
        "generator_version": "unknown",
    }
    assert case_groups(object(), "own") == {
        "dataset": "own",
        "family": "unknown",
        "generator_version": "unknown",
    }


def test_median_ratio_of_the_large_scores() -> None:
    cases = [
        _evaluation("a", 200, 100, "D", "C", "x"),
        _evaluation("b", 500, 550, "E", "E", "x"),
        _evaluation("c", 800, 880, "E", "E", "x"),
        _evaluation("d", 5, 50, "B", "C", "x"),
    ]
    assert median_ratio(cases) == (pytest.approx(1.1), 3)  # 0.5, 1.1, 1.1
    value, n = median_ratio(cases[3:])
    assert np.isnan(value) and n == 0


def test_each_family_gets_its_own_figures() -> None:
    evaluations = [
        _evaluation("s1", 200, 100, "D", "C", "sdf"),  # wrong category, ratio 0.5
        _evaluation("s2", 500, 550, "E", "E", "sdf"),  # right, ratio 1.1
        _evaluation("c1", 5, 5, "B", "B", "classic"),
        _evaluation("c2", 50, 50, "C", "C", "classic"),
    ]
    failures = [CaseFailure("s3", "ValueError: unreadable", {"dataset": "d", "family": "sdf"})]
    metrics = summarize(evaluations, failures, n_bootstrap=0)
    families = metrics["groups"]["family"]
    assert sorted(families) == ["classic", "sdf"]
    sdf, classic = families["sdf"], families["classic"]
    assert (sdf["n_evaluated"], sdf["n_failed"]) == (2, 1) and (
        classic["n_evaluated"],
        classic["n_failed"],
    ) == (2, 0)
    assert sdf["accuracy"]["value"] == 0.5 and classic["accuracy"]["value"] == 1.0
    assert sdf["median_ratio_de"] == {"value": pytest.approx(0.8), "n": 2}
    assert classic["median_ratio_de"] == {"value": None, "n": 0}
    assert sdf["harrell_c"]["value"] == 1.0  # D < E in both reference and prediction
    assert metrics["category"]["accuracy"]["value"] == 0.75  # pooled: 3 of 4
    assert metrics["agatston"]["median_ratio_de"] == {"value": pytest.approx(0.8), "n": 2}
    assert list(metrics["groups"]["generator_version"]) == ["unknown"]
    json.dumps(metrics, allow_nan=False)


def test_several_data_folders_are_reported_each_as_a_source(cohort: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    for sub in ("images", "labels"):
        (mine / sub).mkdir(parents=True)
        shutil.copy(cohort / sub / "case_4.nii.gz", mine / sub / "case_4.nii.gz")
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            str(cohort),
            "--data",
            str(mine),
            "--baseline",
            "threshold",
            "--out",
            str(out),
            "--bootstrap",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    # The baseline adds 128 (bone) to every case: only case_3 (144 -> 272, D) and case_4 (500 -> 628, E) keep
    # their category; D/E ratios 272/144 and 628/500.
    datasets = metrics["groups"]["dataset"]
    cohort_name = cohort.name
    assert datasets[cohort_name]["accuracy"]["value"] == pytest.approx(2 / 5)
    assert datasets["mine"]["accuracy"]["value"] == 1.0
    assert metrics["category"]["accuracy"]["value"] == pytest.approx(3 / 6)
    assert datasets[cohort_name]["median_ratio_de"]["value"] == pytest.approx((272 / 144 + 628 / 500) / 2)
    assert datasets["mine"]["median_ratio_de"] == {"value": pytest.approx(628 / 500), "n": 1}
    assert metrics["agatston"]["median_ratio_de"]["value"] == pytest.approx(
        628 / 500
    )  # of 1.889, 1.256, 1.256
    # Lesions: every reference lesion found; each scan's bone is a false positive.
    assert datasets[cohort_name]["lesion_sensitivity"] == 1.0 and datasets[cohort_name]["lesion_ppv"] == 4 / 9
    assert datasets["mine"]["lesion_ppv"] == 0.5 and datasets["mine"]["fp_per_scan"] == 1.0
    rows = list(csv.DictReader((out / "cases.csv").read_text().splitlines()))
    assert [(r["case_id"], r["dataset"], r["family"]) for r in rows][-2:] == [
        ("case_4", cohort_name, "unknown"),
        ("case_4", "mine", "unknown"),
    ]
    report = (out / "report.md").read_text()
    assert "### By dataset (--data)" in report and "| mine | 1 (0) | 1.000 |" in report
    assert "### By generator family" not in report  # nobody states a family here
    assert f"dataset {cohort_name}: 5 cases, accuracy 0.400" in result.output


def test_saved_predictions_of_several_datasets_are_looked_up_per_dataset(
    cohort: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    shutil.copytree(cohort, other)
    pred = tmp_path / "pred"
    shutil.copytree(cohort / "labels", pred / cohort.name)
    shutil.copytree(cohort / "labels", pred / "other")
    (pred / "other" / "case_2.nii.gz").unlink()
    out = tmp_path / "r"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            str(cohort),
            "--data",
            str(other),
            "--pred",
            str(pred),
            "--out",
            str(out),
            "--bootstrap",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["groups"]["dataset"][cohort.name]["n_failed"] == 0
    assert metrics["groups"]["dataset"]["other"]["n_failed"] == 1
    assert metrics["failures"][0]["groups"]["dataset"] == "other"


def test_reference_masks_in_orcascore_codes(cohort: Path, tmp_path: Path) -> None:
    data = tmp_path / "orcascore-coded"
    for sub in ("images", "labels"):
        (data / sub).mkdir(parents=True)
    to_orcascore = np.array(
        [0, 0, 1, 1, 2, 3], np.uint8
    )  # project 2 LM and 3 LAD -> 1, 4 LCX -> 2, 5 RCA -> 3
    for case_id in ("case_1", "case_2", "case_3"):
        shutil.copy(cohort / "images" / f"{case_id}.nii.gz", data / "images" / f"{case_id}.nii.gz")
        volume = read_volume(cohort / "images" / f"{case_id}.nii.gz")
        label = read_mask(cohort / "labels" / f"{case_id}.nii.gz", volume)
        write_mask(to_orcascore[label], volume, data / "labels" / f"{case_id}.nii.gz")

    def rca_total(*extra: str) -> float:
        out = tmp_path / f"r{len(extra)}"
        result = runner.invoke(
            app,
            [
                "evaluate",
                "--data",
                str(data),
                "--pred",
                str(cohort / "labels"),
                "--out",
                str(out),
                "--bootstrap",
                "0",
                *extra,
            ],
        )
        assert result.exit_code == 0, result.output
        return float(json.loads((out / "metrics.json").read_text())["arteries_agatston"]["RCA"]["ref_total"])

    assert rca_total("--mask-labels", "orcascore") == 144.0  # case_3's RCA lesion
    assert rca_total() == 0.0  # read silently as project codes, RCA's 3 is LAD
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            str(data),
            "--baseline",
            "threshold",
            "--out",
            str(tmp_path / "bad"),
            "--mask-labels",
            "nnunet",
        ],
    )
    assert result.exit_code == 1 and "unknown mask label convention 'nnunet'" in result.output


def test_train_lesion_filter_takes_the_mask_convention(cohort: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train-lesion-filter",
            "--model",
            str(tmp_path / "none"),
            "--data",
            str(cohort),
            "--out",
            str(tmp_path / "out"),
            "--mask-labels",
            "nnunet",
        ],
    )
    assert result.exit_code == 1 and "unknown mask label convention 'nnunet'" in result.output
