"""``cacscore hybrid``: real-anatomy hybrids, calcium inserted into real non-contrast chest CTs."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cacscore.cli.common import err_console, user_errors


class HybridFormat(str, Enum):
    """Image formats of ``--format``."""

    nifti = "nifti"
    mha = "mha"


def register(app: typer.Typer) -> None:
    """Add the ``hybrid`` command to ``app``."""
    app.command("hybrid")(hybrid)


def hybrid(
    background: Annotated[
        list[Path],
        typer.Option("--background", help="Real non-contrast chest CT (repeat for several; used in turn)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Cohort folder (resumable: complete cases are kept).")],
    points: Annotated[
        list[str] | None,
        typer.Option(
            "--points",
            help="Point annotation of each background's own coronary calcium, in --background order "
            "('-' for none); without it the patient's calcium is not in the reference.",
        ),
    ] = None,
    n: Annotated[int, typer.Option("--n", min=0, help="Number of cases to write.")] = 10,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Cohort seed; case i's seed derives from (seed, i).")
    ] = 0,
    fmt: Annotated[
        HybridFormat, typer.Option("--format", help="Image format of each case.")
    ] = HybridFormat.nifti,
    balance: Annotated[
        bool,
        typer.Option(
            "--balance/--natural", help="Risk categories round robin over those each background can reach."
        ),
    ] = True,
) -> None:
    """Insert calcium lesions into real CT backgrounds: a cohort in the layout of ``cacscore phantom``.

    Lesions go into the epicardial fat along the coronary courses, rendered through the background's
    own slice thickness, blur and noise; the reference mask (>= 130 HU within each lesion) adds the
    patient's own annotated coronary calcium. Each case's truth.json records family "hybrid" and the
    background file. See docs/hybrids.md.
    """
    with user_errors():
        from cacscore.errors import InvalidInputError
        from cacscore.phantom.hybrid import generate_hybrid_cohort

        if points and len(points) != len(background):
            raise InvalidInputError(
                f"--points given {len(points)} times for {len(background)} --background; give one per "
                "background ('-' for none)"
            )
        pairs: list[tuple[str | Path, str | Path | None]] = [
            (b, None if not points or points[i] == "-" else Path(points[i])) for i, b in enumerate(background)
        ]
        for path, pts in pairs:
            for p in (path, pts):
                if p is not None and not Path(p).exists():
                    raise InvalidInputError(f"{p}: no such file")
        if not points:
            err_console.print(
                "[yellow]warning:[/] no --points: "
                "the backgrounds' own coronary calcium is not in the reference"
            )
        rows = generate_hybrid_cohort(out, pairs, n, seed, fmt=fmt.value, balance=balance, progress=True)
        counts = {c: sum(1 for r in rows if r["risk_category"] == c) for c in "ABCDE"}
        err_console.print(
            f"{len(rows)} hybrid cases in {out} (categories: "
            + ", ".join(f"{c} {k}" for c, k in counts.items())
            + ")"
        )
