"""Crash safety (SIGKILL at random points, then a rerun); a separately started Dask scheduler and worker."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cacscore.batch import open_database, read_rows
from cacscore.batch.db import database_url
from cacscore.batch.run import run_batch

#: Columns that must be the same whichever way a series was scored (not times, worker or row id).
SCORE_COLUMNS = (
    "case_id",
    "series_uid",
    "content_hash",
    "status",
    "agatston",
    "volume_mm3",
    "mass_mg",
    "n_lesions",
    "risk_category",
    "cac_drs",
    "LAD_agatston",
    "RCA_agatston",
    "LCX_agatston",
    "LM_agatston",
    "model_name",
    "domain_outcome",
    "warnings",
)
BATCH_SCRIPT = "import sys; from cacscore.cli.main import main; main(sys.argv[1:])"


def scores(out: Path) -> list[tuple[Any, ...]]:
    engine = open_database(database_url(out))
    try:
        return [tuple(row[name] for name in SCORE_COLUMNS) for row in read_rows(engine)]
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def reference(
    cohort: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[Any]]:
    """The cohort's images and the rows of one uninterrupted batch on a local cluster."""
    root = tmp_path_factory.mktemp("images")
    for image in sorted(cohort.glob("case_*/image")):
        shutil.copytree(image, root / image.parent.name)
    out = tmp_path_factory.mktemp("reference")
    summary = run_batch([root], out, model_dir=tiny_model, workers=1, threads_per_worker=1)
    assert summary.n_done == 3
    return root, scores(out)


def batch_command(images: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        BATCH_SCRIPT,
        "batch",
        str(images),
        "--out",
        str(out),
        "--model",
        str(model),
        "--workers",
        "1",
        *extra,
    ]


def test_sigkill_at_random_points_then_a_rerun_gives_one_row_per_series(
    reference: tuple[Path, list[Any]], tiny_model: Path, tmp_path: Path
) -> None:
    images, expected = reference
    out = tmp_path / "results"
    draw = random.Random(21)
    kills = []
    for _ in range(5):
        # The whole process group: the driver and its cluster's worker processes die at once, as in a crash.
        process = subprocess.Popen(
            batch_command(images, out, tiny_model),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        delay = draw.uniform(1.0, 7.0)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            kills.append(round(delay, 1))
        if (out / "results.sqlite").is_file():
            rows = scores(out)
            assert len({row[0] for row in rows}) == len(rows), "a case was written twice"
    assert kills, "no run was killed: the cohort scores faster than the earliest kill"
    finished = subprocess.run(
        batch_command(images, out, tiny_model), capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 0, finished.stderr
    assert scores(out) == expected
    assert sorted(p.name for p in (out / "cases").iterdir()) == ["case_0000", "case_0001", "case_0002"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture()
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """A ``dask scheduler`` and a ``dask worker`` started as separate processes on loopback."""
    dask = str(Path(sys.executable).with_name("dask"))
    address = f"tcp://127.0.0.1:{free_port()}"
    started = []
    try:
        started.append(
            subprocess.Popen(
                [
                    dask,
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    address.rsplit(":", 1)[1],
                    "--no-dashboard",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                cwd=tmp_path,
            )
        )
        started.append(
            subprocess.Popen(
                [
                    dask,
                    "worker",
                    address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--local-directory",
                    str(tmp_path),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                cwd=tmp_path,
            )
        )
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for process in reversed(started):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in started:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_a_separately_started_scheduler_and_worker_give_the_same_rows(
    reference: tuple[Path, list[Any]], tiny_model: Path, dask_cluster: str, tmp_path: Path
) -> None:
    images, expected = reference
    out = tmp_path / "results"
    finished = subprocess.run(
        batch_command(images, out, tiny_model, "--scheduler", dask_cluster),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    assert "3 scored, 0 failed" in finished.stderr
    assert scores(out) == expected
    engine = open_database(database_url(out))
    workers = {row["worker"] for row in read_rows(engine)}
    engine.dispose()
    assert workers and all(worker.startswith("tcp://127.0.0.1:") for worker in workers)
