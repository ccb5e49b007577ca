"""Throughput of ``cacscore batch`` against a loop over ``cacscore score``, scheduler overhead, worker memory.

Prints, for a DICOM phantom cohort (default 512 x 512 x 60), the scans per hour of a shell loop over
``cacscore score`` (one process per scan) and of ``cacscore batch`` with 1 and 2 worker processes (wall
time from the command's start, cluster start-up included), the ratios, the peak memory of each worker
(ru_maxrss after its last task), and the driver's per-task overhead on a simulated manifest of no-op tasks
(the real driver: hashing a missing path, Dask round trip, one SQLite transaction per row).

``--stages K`` first prints where one worker task's time goes: each stage of ``score_series`` timed on the
first K scans in a fresh process at one PyTorch thread (wall and CPU seconds, median), once with the
environment a plain Dask nanny gives its worker (``MALLOC_TRIM_THRESHOLD_=65536``) and once with the one
``cacscore batch`` gives it (:data:`cacscore.batch.memory.WORKER_ENVIRON`).

``--precision bf16`` runs both the loop and the batch with ``--precision bf16`` (default: the model's, fp32).

    python benchmarks/bench_batch.py --n 8 --cohort runs/bench-batch
    python benchmarks/bench_batch.py --n 8 --cohort runs/bench-batch --precision bf16
    python benchmarks/bench_batch.py --n 8 --cohort runs/bench-batch --stages 6 --stages-only
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cacscore.precision import PRECISIONS

#: Stages of one worker task, in order (``stage_times``).
STAGES = (
    "hash (driver)",
    "read DICOM",
    "domain check",
    "preprocess",
    "forward x5",
    "vote and lesion filter",
    "heart region",
    "score",
    "report and case files",
)
#: A Dask nanny's default allocator setting for its worker (distributed.nanny.pre-spawn-environ).
DASK_DEFAULT_ENVIRON = {"MALLOC_TRIM_THRESHOLD_": "65536"}


def noop_task(item: dict[str, Any], out: str, **_options: Any) -> dict[str, Any]:
    """A task that scores nothing: the row of a finished series, at once."""
    return {
        "key": item["key"],
        "case_id": item["case_id"],
        "path": item["path"],
        "content_hash": item["content_hash"],
        "status": "done",
    }


def make_cohort(root: Path, n: int, matrix: int, slices: int) -> list[Path]:
    from cacscore.phantom import PhantomConfig, generate_cohort

    generate_cohort(
        root,
        n,
        2112,
        fmt="dicom",
        balance=True,
        progress=False,
        config=PhantomConfig.for_version(1, matrix=matrix, n_slices=(slices, slices)),
    )
    images = sorted(root.glob("case_*/image"))[:n]
    if len(images) < n:
        sys.exit(f"error: {root}: {len(images)} cases, {n} asked")
    return images


def _precision_options(precision: str | None) -> list[str]:
    return [] if precision is None else ["--precision", precision]


def cli_loop(images: list[Path], precision: str | None = None) -> float:
    """Seconds for ``cacscore score IMAGE --json`` run once per scan, one after the other."""
    cacscore = str(Path(sys.executable).with_name("cacscore"))
    started = time.perf_counter()
    for image in images:
        subprocess.run(
            [cacscore, "score", str(image), "--json", *_precision_options(precision)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return time.perf_counter() - started


def batch(
    images: list[Path], workers: int, work: Path, precision: str | None = None
) -> tuple[float, float, list[float]]:
    """``cacscore batch`` over the scans at ``workers`` workers.

    Returns the wall seconds of the command, the seconds of its busiest worker's tasks (the batch without
    the start-up of Python, the cluster and the model: what a long batch approaches), and each worker's
    peak MiB.
    """
    from cacscore.batch import open_database, read_rows
    from cacscore.batch.db import database_url

    out = work / f"batch-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    manifest = work / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "case_id"])
        writer.writerows([str(image), image.parent.name] for image in images)
    cacscore = str(Path(sys.executable).with_name("cacscore"))
    started = time.perf_counter()
    subprocess.run(
        [
            cacscore,
            "batch",
            str(manifest),
            "--out",
            str(out),
            "--workers",
            str(workers),
            "--threads-per-worker",
            "1",
            *_precision_options(precision),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - started
    engine = open_database(database_url(out))
    rows = read_rows(engine)
    engine.dispose()
    if any(row["model_precision"] != (precision or "fp32") for row in rows):
        sys.exit(f"error: {out}: rows not scored in {precision}")
    if any(row["status"] != "done" for row in rows) or len(rows) != len(images):
        sys.exit(f"error: {out}: not every scan was scored: {[(r['case_id'], r['error']) for r in rows]}")
    peaks: dict[str, float] = {}
    busy: dict[str, float] = {}
    for row in rows:
        peaks[row["worker"]] = max(peaks.get(row["worker"], 0.0), row["worker_peak_mib"] or 0.0)
        busy[row["worker"]] = busy.get(row["worker"], 0.0) + row["total_s"]
    # A worker that got no task is idle: the busiest worker's time is what the batch needed.
    return seconds, max(busy.values()), sorted(peaks.values())


def scheduler_overhead(n_tasks: int, work: Path) -> float:
    """Driver seconds per task for ``n_tasks`` no-op series on 2 local workers (the real driver loop)."""
    from cacscore.batch.run import run_batch

    out = work / "noop"
    shutil.rmtree(out, ignore_errors=True)
    manifest = work / "noop.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "case_id"])
        writer.writerows([f"/no/such/series-{k:05d}", f"s{k:05d}"] for k in range(n_tasks))
    summary = run_batch([manifest], out, workers=2, threads_per_worker=1, task=noop_task)
    if summary.n_done != n_tasks:
        sys.exit(f"error: {summary.n_done} of {n_tasks} no-op tasks done")
    return summary.seconds / n_tasks


def stage_times(
    images: list[Path], out: Path, precision: str | None = None
) -> dict[str, list[tuple[float, float]]]:
    """``{stage: [(wall s, CPU s) per scan]}`` of the steps ``score_series`` runs, at one PyTorch thread.

    The first scan is scored once untimed (model loading, first allocations), as a worker's first task is.
    """
    import warnings

    import torch

    from cacscore.anatomy import check_domain
    from cacscore.batch.inputs import content_hash
    from cacscore.batch.worker import _case_files, cached_ensemble, write_case
    from cacscore.errors import CacScoreWarning
    from cacscore.io import read_volume
    from cacscore.model.ensemble import restrict_to_heart, score_with_model
    from cacscore.pipeline import read_and_check, score_checked

    torch.set_num_threads(1)
    warnings.simplefilter("ignore", CacScoreWarning)
    ensemble = cached_ensemble(None, 1, precision)
    score_checked(*read_and_check(images[0]), ensemble)
    times: dict[str, list[tuple[float, float]]] = {stage: [] for stage in STAGES}

    @contextmanager
    def clock(stage: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.thread_time()
        yield
        times[stage].append((time.perf_counter() - wall, time.thread_time() - cpu))

    for image in images:
        with clock("hash (driver)"):
            content_hash(image)
        with clock("read DICOM"):
            volume = read_volume(image)
        with clock("domain check"):
            check = check_domain(volume)
            check.require(str(image))
        with clock("preprocess"):
            image_low, grid = ensemble.preprocess(volume)
        with clock("forward x5"):
            probabilities = list(ensemble.member_probabilities(image_low))
        with clock("vote and lesion filter"):
            prediction = ensemble.combine(probabilities, image_low, grid, volume.hu)
        with clock("heart region"):
            prediction = restrict_to_heart(prediction, volume, ensemble.plan.threshold_hu, check.region)
        with clock("score"):
            result = score_with_model(volume, ensemble, prediction=prediction)
        with clock("report and case files"):
            extra = {"model": ensemble.info(), "domain": check.to_dict()}
            write_case(out, image.parent.name, _case_files(volume, result, image, extra, prediction.labels))
    return times


def print_stages(images: list[Path], work: Path, precision: str | None = None) -> None:
    """Run :func:`stage_times` in a fresh process per worker environment and print the table."""
    from cacscore.batch.memory import WORKER_ENVIRON

    environments = {
        "Dask default (MALLOC_TRIM_THRESHOLD_=65536)": DASK_DEFAULT_ENVIRON,
        "cacscore batch (cacscore.batch.memory)": WORKER_ENVIRON,
    }
    medians: dict[str, dict[str, tuple[float, float]]] = {}
    for label, environ in environments.items():
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        run = subprocess.run(
            [
                sys.executable,
                __file__,
                "--stages-worker",
                *map(str, images),
                "--work",
                str(work),
                *_precision_options(precision),
            ],
            env={**env, **environ, "OMP_NUM_THREADS": "1"},
            check=True,
            capture_output=True,
            text=True,
        )
        times = json.loads(run.stdout.strip().splitlines()[-1])
        medians[label] = {
            stage: (
                sorted(w for w, _ in pairs)[len(pairs) // 2],
                sorted(c for _, c in pairs)[len(pairs) // 2],
            )
            for stage, pairs in times.items()
        }
    labels = list(environments)
    print(f"one worker task at 1 PyTorch thread, median of {len(images)} scans, wall / CPU seconds:")
    print(f"  {'stage':<24}" + "".join(f"{label:>48}" for label in labels))
    for stage in (*STAGES, "total"):
        cells = []
        for label in labels:
            rows = medians[label].values() if stage == "total" else [medians[label][stage]]
            cells.append(f"{sum(w for w, _ in rows):.3f} / {sum(c for _, c in rows):.3f}")
        print(f"  {stage:<24}" + "".join(f"{cell:>48}" for cell in cells))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=8, help="scans in the cohort")
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--slices", type=int, default=60)
    parser.add_argument(
        "--cohort", type=Path, help="cohort folder (made when missing; default: a temporary one)"
    )
    parser.add_argument("--noop-tasks", type=int, default=10_000)
    parser.add_argument("--skip-cli", action="store_true", help="do not time the loop over cacscore score")
    parser.add_argument(
        "--stages", type=int, default=0, metavar="K", help="first print the stage times of K scans"
    )
    parser.add_argument("--stages-only", action="store_true", help="print the stage times and stop")
    parser.add_argument("--precision", choices=PRECISIONS, default=None, help="inference precision")
    parser.add_argument("--stages-worker", nargs="+", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stages_worker:
        print(json.dumps(stage_times(args.stages_worker, args.work, args.precision)))
        return

    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        cohort = args.cohort or work / "cohort"
        started = time.perf_counter()
        images = make_cohort(cohort, args.n, args.matrix, args.slices)
        print(
            f"cohort: {len(images)} DICOM phantoms {args.matrix} x {args.matrix} x {args.slices} "
            f"({time.perf_counter() - started:.0f} s to make or find); precision {args.precision or 'fp32'}"
        )
        if args.stages:
            print_stages(images[: args.stages], work / "stages", args.precision)
        if args.stages_only:
            return
        per_hour: dict[str, float] = {}
        if not args.skip_cli:
            seconds = cli_loop(images, args.precision)
            per_hour["cli"] = len(images) / seconds * 3600
            print(f"loop over cacscore score: {seconds:.1f} s, {per_hour['cli']:,.0f} scans/hour")
        for workers in (1, 2):
            seconds, busy, peaks = batch(images, workers, work, args.precision)
            per_hour[f"batch{workers}"] = len(images) / seconds * 3600
            ratio = (
                f", {per_hour[f'batch{workers}'] / per_hour['cli']:.2f}x the loop"
                if "cli" in per_hour
                else ""
            )
            print(
                f"cacscore batch --workers {workers}: {seconds:.1f} s, "
                f"{per_hour[f'batch{workers}']:,.0f} scans/hour"
                f"{ratio}; without start-up {busy:.1f} s of tasks on the busiest worker, "
                f"{len(images) / busy * 3600:,.0f} scans/hour; peak memory per worker "
                f"{', '.join(f'{p:.0f}' for p in peaks)} MiB"
            )
        print(f"scaling 2 workers / 1 worker: {per_hour['batch2'] / per_hour['batch1']:.2f}x")
        overhead = scheduler_overhead(args.noop_tasks, work)
        print(
            f"driver overhead: {overhead * 1000:.2f} ms per task "
            f"({args.noop_tasks:,} no-op tasks, 2 workers; "
            f"{3600 / overhead:,.0f} tasks/hour at most)"
        )


if __name__ == "__main__":
    main()
