"""The batch driver: which series to score, a Dask cluster, backpressure, one transaction per finished row."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cacscore.batch.db import DONE, FAILED, database_url, open_database, statuses, write_row
from cacscore.batch.inputs import BatchItem, collect_items
from cacscore.batch.worker import score_series
from cacscore.errors import InvalidInputError

#: Tasks kept in flight per worker thread: enough to hide scheduling latency, few enough that a kill
#: loses little.
IN_FLIGHT_PER_THREAD = 2


@dataclass
class BatchPlan:
    """What a batch will do: every series found, and the ones it will score."""

    items: list[BatchItem]
    todo: list[BatchItem]
    n_done: int = 0
    n_failed_kept: int = 0


@dataclass
class BatchSummary:
    """Counts of one batch run."""

    n_series: int
    n_skipped: int
    n_done: int = 0
    n_failed: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    dashboard: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return asdict(self)


def local_cluster_size(
    workers: int | None, threads_per_worker: int | None, cores: int | None = None
) -> tuple[int, int]:
    """``(workers, threads per worker)`` with workers x threads <= cores unless both are given.

    Examples
    --------
    >>> local_cluster_size(None, None, cores=2)
    (2, 1)
    >>> local_cluster_size(None, 2, cores=8)
    (4, 2)
    >>> local_cluster_size(3, None, cores=2)
    (3, 1)
    """
    cores = cores or os.cpu_count() or 1
    threads = threads_per_worker or 1
    if threads < 1 or (workers is not None and workers < 1):
        raise InvalidInputError("--workers and --threads-per-worker must be 1 or more")
    return (workers if workers is not None else max(1, cores // threads)), threads


def plan_batch(inputs: Sequence[Path], results: str | Path, *, retry_failed: bool = False) -> BatchPlan:
    """Find the series and leave out those the results database holds already.

    Failed ones are left out too, unless retried.

    Raises
    ------
    InvalidInputError
        If an input is missing or malformed, or the database cannot be opened.
    """
    engine = open_database(database_url(results))
    known = statuses(engine)
    engine.dispose()
    items = collect_items(inputs, known={key: case for key, (_status, case) in known.items()})
    todo = [
        item for item in items if item.key not in known or (retry_failed and known[item.key][0] == FAILED)
    ]
    n_done = sum(1 for item in items if known.get(item.key, ("",))[0] == DONE)
    return BatchPlan(items, todo, n_done, len(items) - len(todo) - n_done)


@contextmanager
def dask_client(scheduler: str | None, workers: int, threads_per_worker: int) -> Iterator[Any]:
    """A ``distributed.Client`` on ``scheduler``, or on a new ``LocalCluster`` of worker processes."""
    import dask
    from distributed import Client, LocalCluster

    from cacscore.batch.memory import WORKER_ENVIRON

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise InvalidInputError(
                f"--scheduler {scheduler}: cannot reach the Dask scheduler: {exc}"
            ) from exc
        with client:
            yield client
        return
    # Read by each nanny as it starts: set in its worker process before Python (cacscore.batch.memory).
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", default={}), **WORKER_ENVIRON}
    # dashboard_address ":0": a free port, so two batches on one machine do not collide.
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def run_batch(
    inputs: Sequence[Path],
    out: Path,
    *,
    results: str | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    scheduler: str | None = None,
    model_dir: Path | None = None,
    precision: str | None = None,
    retry_failed: bool = False,
    skip_domain_check: bool = False,
    skip_unreadable: bool = False,
    on_start: Callable[[BatchPlan, str | None], None] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    task: Callable[..., dict[str, Any]] = score_series,
) -> BatchSummary:
    """Score every series of ``inputs`` not yet in the results, one database transaction per finished series.

    Parameters
    ----------
    inputs : sequence of Path
        Folders and manifest CSVs (:func:`cacscore.batch.inputs.collect_items`).
    out : Path
        Results folder: ``results.sqlite`` and ``cases/<case_id>/``.
    results : str, optional
        A database URL instead of ``out/results.sqlite``.
    workers, threads_per_worker : int, optional
        Size of the local cluster (:func:`local_cluster_size`); ignored with ``scheduler``.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``).
    model_dir : Path, optional
        Model folder, as the workers see it; default the shipped model (or ``$CACSCORE_MODEL_DIR``).
    precision : {"fp32", "bf16"}, optional
        Inference precision (:data:`cacscore.precision.PRECISIONS`); default the model's.
    retry_failed : bool
        Score again the series whose rows say ``failed``.
    skip_domain_check : bool
        Score scans the domain check refuses.
    skip_unreadable : bool
        Read DICOM series without their unreadable files (``cacscore score --skip-unreadable``).
    on_start, on_row : callable, optional
        Called with the plan and the dashboard link before the first task, and with each row written.
    task : callable
        The task run per series (:func:`cacscore.batch.worker.score_series`; a benchmark swaps in a no-op).

    Returns
    -------
    BatchSummary

    Raises
    ------
    InvalidInputError
        If an input is missing or malformed, the database cannot be opened or the scheduler cannot be reached.
    """

    from cacscore.batch.memory import KeepFreedMemory

    if precision == "bf16" and scheduler is None:
        from cacscore.precision import warn_if_emulated

        # Said here: the workers keep their warnings for the rows, and a local cluster shares this CPU.
        warn_if_emulated(precision)
    out.mkdir(parents=True, exist_ok=True)
    _remove_temporary_cases(out)
    url = results or database_url(out)
    plan = plan_batch(inputs, url if results else out, retry_failed=retry_failed)
    summary = BatchSummary(n_series=len(plan.items), n_skipped=len(plan.items) - len(plan.todo))
    if not plan.todo:
        if on_start is not None:
            on_start(plan, None)
        return summary
    engine = open_database(url)
    n_workers, n_threads = local_cluster_size(workers, threads_per_worker)
    # Each task's torch threads: the cores left to it when every worker thread of this machine runs one.
    torch_threads = None if scheduler else max(1, (os.cpu_count() or 1) // (n_workers * n_threads))
    started = time.perf_counter()
    try:
        with dask_client(scheduler, n_workers, n_threads) as client:
            # Before the first task: a worker's forward passes reuse freed memory (cacscore.batch.memory).
            client.register_plugin(KeepFreedMemory())
            summary.dashboard = client.dashboard_link
            if on_start is not None:
                on_start(plan, summary.dashboard)
            limit = max(1, IN_FLIGHT_PER_THREAD * sum(client.nthreads().values()))
            pending = iter(plan.todo)

            def submit(item: BatchItem, attempt: str = "") -> Any:
                return client.submit(
                    task,
                    {**asdict(item), "key": item.key},
                    str(out),
                    model_dir=None if model_dir is None else str(model_dir),
                    precision=precision,
                    skip_domain_check=skip_domain_check,
                    skip_unreadable=skip_unreadable,
                    torch_threads=torch_threads,
                    key=f"cacscore-{item.key[:16]}{attempt}",
                    pure=False,
                )

            def record(row: dict[str, Any]) -> None:
                write_row(engine, row)
                if row["status"] == DONE:
                    summary.n_done += 1
                else:
                    summary.n_failed += 1
                    summary.failures.append((row["case_id"], row["error"] or ""))
                if on_row is not None:
                    on_row(row)

            _score_all(pending, limit, submit, record)
    finally:
        engine.dispose()
        summary.seconds = time.perf_counter() - started
    return summary


def _score_all(
    pending: Iterator[BatchItem],
    limit: int,
    submit: Callable[..., Any],
    record: Callable[[dict[str, Any]], None],
) -> None:
    """Score every series of ``pending`` with at most ``limit`` tasks in flight; ``record`` each row.

    A task whose worker died was lost with every task queued on that worker: the series that killed it,
    or one beside it. Each lost series is scored again at the end, alone on the cluster, so that only a
    series that kills its worker by itself becomes a failed row.
    """
    from distributed import as_completed, wait

    submitted: dict[str, BatchItem] = {}

    def submit_and_remember(item: BatchItem) -> Any:
        future = submit(item)
        submitted[future.key] = item
        return future

    first = [submit_and_remember(item) for _, item in zip(range(limit), pending, strict=False)]
    futures = as_completed(first)
    lost: list[BatchItem] = []
    for future in futures:
        item = submitted.pop(future.key)
        if future.status == "error":
            lost.append(item)
        else:
            record(_row_of(future, item))
        future.release()
        following = next(pending, None)
        if following is not None:
            futures.add(submit_and_remember(following))
    for item in lost:
        future = submit(item, attempt="-alone")
        wait([future])
        record(_row_of(future, item))
        future.release()


def _row_of(future: Any, item: BatchItem) -> dict[str, Any]:
    """The task's row, or a failed row when the task itself was lost (its worker died, e.g. out of memory)."""
    try:
        return dict(future.result())
    except Exception as exc:  # noqa: BLE001 - a series that kills its worker must not stop the batch
        # Dask raises KilledWorker after the series took down workers a few times (distributed's
        # allowed-failures).
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        return {
            "key": item.key,
            "case_id": item.case_id,
            "path": item.path,
            "series_uid_requested": item.series_uid,
            "content_hash": item.content_hash,
            "status": FAILED,
            "error": f"{item.path}: the worker scoring it died or the task was lost ({message})",
        }


def _remove_temporary_cases(out: Path) -> None:
    """Remove case folders left half-written by a killed batch (no row points to them)."""
    cases = out / "cases"
    if cases.is_dir():
        # cacscore.io.atomic.atomic_folder's temporaries (.<case>.<random>.tmp) and replaced folders (.old).
        for leftover in [*cases.glob(".*.tmp"), *cases.glob(".*.old")]:
            shutil.rmtree(leftover, ignore_errors=True)


def export_rows(results: str | Path, target: Path, fmt: str) -> int:
    """Write every row of the results database to ``target`` as CSV or Parquet; returns the number of rows.

    Raises
    ------
    InvalidInputError
        If the database holds no results table, the format is unknown, or Parquet is asked without pyarrow.
    """
    import csv

    from cacscore.batch.db import COLUMNS, read_rows

    url = database_url(results)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise InvalidInputError(
            f"{results}: no batch results here ({Path(url.removeprefix('sqlite:///')).name} missing)"
        )
    engine = open_database(url, create=False)
    try:
        rows = read_rows(engine)
    except Exception as exc:  # noqa: BLE001 - any database error is the user's wrong path or URL
        raise InvalidInputError(
            f"{results}: not a cacscore batch results database ({type(exc).__name__})"
        ) from exc
    finally:
        engine.dispose()
    if fmt == "csv":
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise InvalidInputError(
                "--format parquet needs pyarrow (pip install pyarrow); --format csv does not"
            ) from exc
        pq.write_table(pa.Table.from_pylist(rows), str(target))
    else:
        raise InvalidInputError(f"--format {fmt}: unknown; use csv or parquet")
    return len(rows)
