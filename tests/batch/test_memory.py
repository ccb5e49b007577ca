"""A batch worker keeps freed memory for the next forward pass instead of faulting in fresh pages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cacscore.batch import open_database, read_rows
from cacscore.batch.db import database_url
from cacscore.batch.run import run_batch

glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the settings are glibc's (Linux)")

#: Page faults of allocating, filling and freeing a 200 MiB array after a first one was freed
#: (as a row's error). 200 MiB (below the 256 MiB the batch keeps) is 51,200 pages of 4 KiB, or 100 huge
#: pages where NumPy's madvise gets them: one fault each when the block is given back and taken again.
REFAULTS = """
import resource
import numpy as np

def refaults() -> int:
    np.ones(200 << 18, np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        np.ones(200 << 18, np.float32)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 4
"""


@glibc
@pytest.mark.parametrize("keep", [False, True])
def test_keep_freed_memory_stops_the_page_faults_of_a_dask_worker_environment(keep: bool) -> None:
    script = (
        ("from cacscore.batch.memory import keep_freed_memory; assert keep_freed_memory()\n" if keep else "")
        + REFAULTS
        + "print(refaults())"
    )
    # A Dask nanny's default environment for its workers: glibc gives every freed 200 MiB block back.
    run = subprocess.run(
        [sys.executable, "-c", script],
        env={"MALLOC_TRIM_THRESHOLD_": "65536", "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    faults = int(run.stdout)
    assert faults < 10 if keep else faults >= 100


@glibc
def test_local_cluster_workers_run_their_tasks_with_freed_memory_kept(tmp_path: Path) -> None:
    def measure(item: dict[str, Any], out: str, **_options: Any) -> dict[str, Any]:
        import os

        namespace: dict[str, Any] = {}
        exec(REFAULTS, namespace)  # noqa: S102 - the test's own code, as the worker's task
        return {
            "key": item["key"],
            "case_id": item["case_id"],
            "path": item["path"],
            "content_hash": item["content_hash"],
            "status": "done",
            "error": f"{os.environ.get('MALLOC_ARENA_MAX')} {namespace['refaults']()}",
        }

    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path\n/no/such/series\n", encoding="utf-8")
    summary = run_batch([manifest], tmp_path / "out", workers=1, threads_per_worker=1, task=measure)
    assert summary.n_done == 1
    engine = open_database(database_url(tmp_path / "out"))
    try:
        (row,) = read_rows(engine)
    finally:
        engine.dispose()
    arena_max, faults = row["error"].split()
    assert arena_max == "1"
    # A worker's own threads (heartbeats, communication) fault in a few pages of their own meanwhile: up to
    # 18 were seen with the machine loaded; the block itself would be >= 100.
    assert int(faults) < 50
