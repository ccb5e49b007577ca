"""``cacscore series DIR``: list the DICOM series in a folder and which one would be read."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cacscore.cli.common import user_errors


def _number(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:g}{unit}"


def register(app: typer.Typer) -> None:
    """Add the ``series`` command to ``app``."""

    @app.command("series")
    def series(
        folder: Annotated[Path, typer.Argument(help="Folder searched recursively for DICOM files.")],
        as_json: Annotated[
            bool, typer.Option("--json", help="Print a JSON list instead of a table.")
        ] = False,
    ) -> None:
        """List the DICOM series in FOLDER; the first candidate is the one `score` reads by default."""
        from cacscore.io import list_series

        with user_errors():
            infos = list_series(folder)
            if as_json:
                typer.echo(
                    json.dumps(
                        {
                            "schema": "cacscore.series/1",
                            "folder": str(folder),
                            "series": [info.to_dict() for info in infos],
                        },
                        indent=2,
                    )
                )
                return
            table = Table(title=f"DICOM series in {folder}")
            for column in (
                "",
                "SeriesInstanceUID",
                "modality",
                "description",
                "slices",
                "thickness",
                "kVp",
                "size",
                "orientation",
                "note",
            ):
                table.add_column(column, overflow="fold")
            for rank, info in enumerate(infos):
                chosen = rank == 0 and info.is_candidate
                table.add_row(
                    "*" if chosen else "",
                    info.series_uid,
                    info.modality,
                    info.description,
                    str(info.n_slices),
                    _number(info.slice_thickness_mm, " mm"),
                    _number(info.kvp),
                    f"{info.rows}x{info.cols}",
                    info.orientation,
                    ("read by default: " if chosen else "") + info.reason,
                    style=None if info.is_candidate else "dim",
                )
            # Full UIDs matter more than fitting a narrow pipe; a terminal keeps its own width.
            Console(width=None if sys.stdout.isatty() else 200).print(table)
