"""``cacscore batch`` on a small DICOM phantom cohort.

Rows equal ``cacscore score``; resume; bad series; export."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cacscore.batch import content_hash, open_database, read_rows
from cacscore.batch.db import database_url
from cacscore.batch.inputs import collect_items
from cacscore.batch.run import local_cluster_size, run_batch
from cacscore.cli.main import app

#: One worker process, one thread: the smallest cluster, the same code path as any other size.
SMALL = {"workers": 1, "threads_per_worker": 1}


def rows_of(out: Path) -> list[dict[str, Any]]:
    engine = open_database(database_url(out))
    try:
        return read_rows(engine)
    finally:
        engine.dispose()


def test_folders_are_found_recursively_once_per_series(cohort_copy: Path) -> None:
    items = collect_items([cohort_copy, cohort_copy / "case_0001"])
    # case_0001 is named twice: the same files are one series, listed once.
    assert [item.case_id for item in items] == ["case_0000", "case_0001", "case_0002"]
    assert all(item.series_uid is None and len(item.content_hash) == 64 for item in items)


def test_content_hash_changes_with_a_byte_and_not_with_the_folder_name(
    cohort_copy: Path, tmp_path: Path
) -> None:
    before = content_hash(cohort_copy / "case_0000")
    moved = shutil.copytree(cohort_copy / "case_0000", tmp_path / "elsewhere")
    assert content_hash(moved) == before
    first = sorted(moved.iterdir())[0]
    data = bytearray(first.read_bytes())
    data[-1] ^= 1
    first.write_bytes(bytes(data))
    assert content_hash(moved) != before


def test_local_cluster_fits_the_cores() -> None:
    assert local_cluster_size(None, None, cores=2) == (2, 1)
    assert local_cluster_size(None, 3, cores=2) == (1, 3)
    assert local_cluster_size(None, 2, cores=16) == (8, 2)


def test_rows_equal_cacscore_score_and_a_rerun_skips_them(
    cohort_copy: Path, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    summary = run_batch([cohort_copy], out, model_dir=tiny_model, **SMALL)
    assert (summary.n_series, summary.n_done, summary.n_failed) == (3, 3, 0)
    rows = {row["case_id"]: row for row in rows_of(out)}
    assert sorted(rows) == ["case_0000", "case_0001", "case_0002"]
    for case_id, row in rows.items():
        result = CliRunner().invoke(
            app, ["score", str(cohort_copy / case_id), "--model", str(tiny_model), "--json"]
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert row["status"] == "done" and row["error"] is None
        assert (row["agatston"], row["volume_mm3"], row["mass_mg"]) == (
            report["agatston"],
            report["volume_mm3"],
            report["mass_mg"],
        )
        assert (row["risk_category"], row["cac_drs"], row["n_vessels"]) == (
            report["risk_category"],
            report["cac_drs"],
            report["n_vessels"],
        )
        for artery, scores in report["arteries"].items():
            assert row[f"{artery}_agatston"] == scores["agatston"]
            assert row[f"{artery}_n_lesions"] == scores["n_lesions"]
        assert row["series_uid"] == report["input"]["series_uid"]
        assert (row["model_name"], row["model_version"]) == ("tiny-test", "0")
        assert row["model_precision"] == report["model"]["precision"] == "fp32"
        assert row["domain_outcome"] == "passed"
        assert json.loads(row["warnings"]) == report["warnings"]
        written = json.loads((out / "cases" / case_id / "score.json").read_text(encoding="utf-8"))
        assert written["agatston"] == report["agatston"] and written["lesions"] == report["lesions"]
        assert (out / "cases" / case_id / "prediction.nii.gz").is_file()
    # At least one phantom must have calcium for the comparison to mean something.
    assert any(row["agatston"] > 0 for row in rows.values())

    again = run_batch([cohort_copy], out, model_dir=tiny_model, **SMALL)
    assert (again.n_skipped, again.n_done, again.n_failed) == (3, 0, 0)
    assert [row["id"] for row in rows_of(out)] == [row["id"] for row in rows.values()]


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "series_uid", "case_id"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def make_bad_series(root: Path, good: Path) -> dict[str, Path]:
    """A missing folder, an MR series (not CT) and a series whose last file is cut short."""
    import pydicom

    mr = shutil.copytree(good, root / "mr")
    for file in mr.iterdir():
        dataset = pydicom.dcmread(file)
        dataset.Modality = "MR"
        dataset.save_as(file)
    truncated = shutil.copytree(good, root / "truncated")
    last = sorted(truncated.iterdir())[len(list(truncated.iterdir())) // 2]
    last.write_bytes(last.read_bytes()[:1000])
    return {"missing": root / "no-such-series", "not_ct": mr, "truncated": truncated}


def test_bad_series_fail_with_their_names_and_retry_failed_scores_them_again(
    cohort_copy: Path, tiny_model: Path, tmp_path: Path
) -> None:
    bad = make_bad_series(tmp_path, cohort_copy / "case_0000")
    manifest = write_manifest(
        tmp_path / "manifest.csv",
        [
            {"path": str(cohort_copy / "case_0001"), "series_uid": "", "case_id": "good"},
            *({"path": str(path), "series_uid": "", "case_id": name} for name, path in bad.items()),
        ],
    )
    out = tmp_path / "results"
    summary = run_batch([manifest], out, model_dir=tiny_model, **SMALL)
    assert (summary.n_done, summary.n_failed) == (1, 3)
    rows = {row["case_id"]: row for row in rows_of(out)}
    assert rows["good"]["status"] == "done"
    for name, path in bad.items():
        assert rows[name]["status"] == "failed"
        assert str(path) in rows[name]["error"] and "\n" not in rows[name]["error"]
        assert not (out / "cases" / name).exists()
    assert "no such file" in rows["missing"]["error"]
    assert "MR" in rows["not_ct"]["error"]

    # Failed rows are kept on a plain rerun and scored again, replacing their rows, with --retry-failed.
    plain = run_batch([manifest], out, model_dir=tiny_model, **SMALL)
    assert (plain.n_done, plain.n_failed, plain.n_skipped) == (0, 0, 4)
    ids = {row["case_id"]: row["id"] for row in rows_of(out)}
    retried = run_batch([manifest], out, model_dir=tiny_model, retry_failed=True, **SMALL)
    assert (retried.n_done, retried.n_failed, retried.n_skipped) == (0, 3, 1)
    rows = {row["case_id"]: row for row in rows_of(out)}
    assert len(rows) == 4 and rows["good"]["id"] == ids["good"]
    assert all(rows[name]["id"] != ids[name] for name in bad)
    # A missing series that appears later is new content: a plain rerun scores it under a case id of its own.
    shutil.copytree(cohort_copy / "case_0002", bad["missing"])
    later = run_batch([manifest], out, model_dir=tiny_model, **SMALL)
    assert (later.n_done, later.n_failed, later.n_skipped) == (1, 0, 3)
    rows = {row["case_id"]: row for row in rows_of(out)}
    assert rows["missing-2"]["status"] == "done" and rows["missing"]["status"] == "failed"


def test_command_line_batch_in_bf16_and_export(cohort_copy: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    model = ["--model", str(tiny_model), "--precision", "bf16"]
    result = CliRunner().invoke(app, ["batch", str(cohort_copy), "--out", str(out), *model, "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "3 scored, 0 failed, 0 skipped" in result.output
    # In bf16 as `cacscore score --precision bf16` scores.
    row = {row["case_id"]: row for row in rows_of(out)}["case_0001"]
    scored = CliRunner().invoke(app, ["score", str(cohort_copy / "case_0001"), *model, "--json"])
    assert scored.exit_code == 0, scored.output
    report = json.loads(scored.stdout)
    assert row["model_precision"] == report["model"]["precision"] == "bf16"
    assert (row["agatston"], row["volume_mm3"], row["risk_category"]) == (
        report["agatston"],
        report["volume_mm3"],
        report["risk_category"],
    )
    result = CliRunner().invoke(app, ["batch", "export", str(out)])
    assert result.exit_code == 0, result.output
    with (out / "results.csv").open(newline="", encoding="utf-8") as handle:
        exported = list(csv.DictReader(handle))
    assert [row["case_id"] for row in exported] == ["case_0000", "case_0001", "case_0002"]
    assert {row["status"] for row in exported} == {"done"}
    assert {row["model_precision"] for row in exported} == {"bf16"}
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        result = CliRunner().invoke(app, ["batch", "export", str(out), "--format", "parquet"])
        assert result.exit_code == 1 and "needs pyarrow" in result.output


def test_export_of_a_folder_without_results_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["batch", "export", str(tmp_path)])
    assert result.exit_code == 1
    assert "no batch results here" in result.output and "Traceback" not in result.output


def test_a_missing_input_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["batch", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "no such file or folder" in result.output and "Traceback" not in result.output


def test_a_series_that_kills_its_worker_is_a_failed_row_and_the_batch_goes_on(
    cohort_copy: Path, tiny_model: Path, tmp_path: Path
) -> None:
    from cacscore.batch.worker import score_series

    def crash_on_case_0001(item: dict[str, Any], out: str, **options: Any) -> dict[str, Any]:
        if item["case_id"] == "case_0001":
            import os

            os._exit(1)  # as the kernel's OOM killer would end it
        return score_series(item, out, **options)

    out = tmp_path / "results"
    # Dask retries a task whose worker died (allowed-failures, default 3); a series queued beside the one
    # that kills its worker may die with it each time, and is then scored again at the end, alone. Only
    # the killer itself is a failed row.
    summary = run_batch([cohort_copy], out, model_dir=tiny_model, task=crash_on_case_0001, **SMALL)
    assert (summary.n_done, summary.n_failed) == (2, 1)
    rows = {row["case_id"]: row for row in rows_of(out)}
    assert rows["case_0001"]["status"] == "failed"
    assert rows["case_0001"]["error"].startswith(f"{cohort_copy / 'case_0001'}: the worker scoring it died")
    assert rows["case_0000"]["status"] == rows["case_0002"]["status"] == "done"


def test_a_results_database_of_an_older_version_gains_the_new_columns(tmp_path: Path) -> None:
    from sqlalchemy import Column, MetaData, Table, create_engine, insert

    from cacscore.batch.db import RESULTS, write_row

    # The table as package 0.3.0 made it: every column of today but model_precision.
    old = Table(
        RESULTS.name,
        MetaData(),
        *(
            Column(c.name, c.type, primary_key=c.primary_key)
            for c in RESULTS.columns
            if c.name != "model_precision"
        ),
    )
    url = database_url(tmp_path)
    engine = create_engine(url)
    old.create(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(old).values(key="k1", case_id="c1", path="p", content_hash="h", status="done")
        )
    engine.dispose()

    engine = open_database(url)
    try:
        write_row(
            engine,
            {
                "key": "k2",
                "case_id": "c2",
                "path": "p",
                "content_hash": "h",
                "status": "done",
                "model_precision": "bf16",
            },
        )
        rows = {row["key"]: row for row in read_rows(engine)}
    finally:
        engine.dispose()
    assert (rows["k1"]["case_id"], rows["k1"]["model_precision"]) == ("c1", None)  # kept, no value
    assert rows["k2"]["model_precision"] == "bf16"


def test_bf16_on_a_cpu_that_emulates_it_is_said_by_the_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cacscore.precision
    from cacscore.errors import CacScoreWarning, InvalidInputError

    # The workers keep their warnings for the rows, so the driver says it before anything starts.
    monkeypatch.setattr(cacscore.precision, "native_bf16", lambda: False)
    with pytest.warns(CacScoreWarning, match="emulated"), pytest.raises(InvalidInputError, match="no such"):
        run_batch([tmp_path / "none"], tmp_path / "out", precision="bf16", **SMALL)
