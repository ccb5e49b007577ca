"""``cacscore batch``: score a cohort on Dask into a results database.

``cacscore batch export`` writes the rows to CSV or Parquet.

``cacscore batch INPUTS... --out RESULTS`` runs the batch (the ``run``
subcommand is implied); ``cacscore batch export RESULTS --format csv`` writes
the rows out. See docs/batch.md.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from cacscore.cli.common import PrecisionOption, err_console, user_errors, warnings_as_lines


class _RunByDefault(TyperGroup):
    """A group whose first argument, when not a subcommand, starts the ``run`` subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # Any: typer vendors its click
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


batch_app = typer.Typer(
    cls=_RunByDefault,
    help=(
        "Score a cohort on Dask into a results database (resumable); "
        "`cacscore batch export` writes the rows out."
    ),
    no_args_is_help=True,
)


class ExportFormat(str, Enum):
    """Formats of ``cacscore batch export``."""

    csv = "csv"
    parquet = "parquet"


@batch_app.command("run")
def _run_command(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="DICOM folders (every folder below holding DICOM files is one series, chosen as "
            "`cacscore score` chooses) and manifest CSVs (columns path, optional series_uid and case_id)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Results folder: results.sqlite and cases/<case id>/.")],
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="Local worker processes (default: cores / threads per worker)."
        ),
    ] = None,
    threads_per_worker: Annotated[
        int | None, typer.Option("--threads-per-worker", min=1, help="Threads per local worker (default 1).")
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Address of a running Dask scheduler (tcp://host:8786) instead of a local cluster.",
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Model folder as the workers see it (default: $CACSCORE_MODEL_DIR or the shipped model).",
        ),
    ] = None,
    precision: PrecisionOption = None,
    database: Annotated[
        str | None,
        typer.Option("--database", help="SQLAlchemy URL of the results database (default: sqlite in --out)."),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Score again the series recorded as failed.")
    ] = False,
    skip_domain_check: Annotated[
        bool,
        typer.Option(
            "--skip-domain-check", help="Score scans the domain check refuses; their rows say 'skipped'."
        ),
    ] = False,
    skip_unreadable: Annotated[
        bool,
        typer.Option(
            "--skip-unreadable",
            help="Read a DICOM series without its unreadable files (each named in the row's "
            "warnings) instead of failing it.",
        ),
    ] = False,
) -> None:
    """Score every series of INPUTS not yet in --out; rerun the same command to resume after a crash."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from cacscore.batch.run import BatchPlan, run_batch

    with user_errors(), warnings_as_lines():
        progress = Progress(
            TextColumn("[bold]scoring"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[done]} done[/] [red]{task.fields[failed]} failed[/]"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err_console,
            transient=False,
        )
        state: dict[str, Any] = {"task": None, "done": 0, "failed": 0}

        def on_start(plan: BatchPlan, dashboard: str | None) -> None:
            err_console.print(
                f"{len(plan.items)} series: {plan.n_done} done before, {plan.n_failed_kept} failed before"
                f"{' (kept; --retry-failed scores them again)' if plan.n_failed_kept else ''}, "
                f"{len(plan.todo)} to score"
            )
            if dashboard:
                err_console.print(f"Dask dashboard: {dashboard}")
            if plan.todo:
                progress.start()
                state["task"] = progress.add_task("scoring", total=len(plan.todo), done=0, failed=0, rate="")
                state["start"] = progress.get_time()

        def on_row(row: dict[str, Any]) -> None:
            state["done" if row["status"] == "done" else "failed"] += 1
            elapsed = max(1e-9, progress.get_time() - state["start"])
            rate = (state["done"] + state["failed"]) / elapsed * 3600
            progress.update(
                state["task"],
                advance=1,
                done=state["done"],
                failed=state["failed"],
                rate=f"{rate:,.0f} scans/h",
            )

        try:
            summary = run_batch(
                inputs,
                out,
                results=database,
                workers=workers,
                threads_per_worker=threads_per_worker,
                scheduler=scheduler,
                model_dir=model,
                precision=precision,
                retry_failed=retry_failed,
                skip_domain_check=skip_domain_check,
                skip_unreadable=skip_unreadable,
                on_start=on_start,
                on_row=on_row,
            )
        finally:
            progress.stop()
        for case_id, error in summary.failures:
            err_console.print(
                f"[red]failed:[/] {case_id}: {error}", soft_wrap=True, markup=True, highlight=False
            )
        if summary.n_done or summary.n_failed:
            rate = (summary.n_done + summary.n_failed) / max(summary.seconds, 1e-9) * 3600
            err_console.print(
                f"{summary.n_done} scored, {summary.n_failed} failed, {summary.n_skipped} skipped in "
                f"{summary.seconds:.1f} s ({rate:,.0f} scans/hour); results in {database or out}",
                soft_wrap=True,
            )


@batch_app.command("export")
def _export_command(
    results: Annotated[
        str, typer.Argument(help="Results folder of `cacscore batch --out`, or a database URL.")
    ],
    fmt: Annotated[
        ExportFormat, typer.Option("--format", help="csv, or parquet (needs pyarrow).")
    ] = ExportFormat.csv,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (default: RESULTS/results.csv or .parquet)."),
    ] = None,
) -> None:
    """Write every row of a batch's results database to a CSV or Parquet file."""
    from cacscore.batch.run import export_rows

    with user_errors():
        if output is None:
            if "://" in results:
                from cacscore.errors import InvalidInputError

                raise InvalidInputError("give --output when RESULTS is a database URL")
            output = Path(results) / f"results.{fmt.value}"
        n = export_rows(results, output, fmt.value)
        err_console.print(f"wrote {n} rows to {output}")


def register(app: typer.Typer) -> None:
    """Add the ``batch`` command group to ``app``."""
    app.add_typer(batch_app, name="batch")
