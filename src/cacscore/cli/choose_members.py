"""``cacscore choose-members``: pick an ensemble's members and lesion rule on development cohorts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cacscore.cli.common import err_console, is_tty, user_errors


def choose_members(
    data: Annotated[
        list[Path],
        typer.Option(
            "--data",
            help="Labelled development cohort used neither to train nor to test (repeat to pool several).",
        ),
    ],
    model: Annotated[
        list[Path],
        typer.Option(
            "--model",
            help="Candidate model folder (repeat); the first one's plan is the base of the new model.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="New model folder (must not exist).")],
    members: Annotated[int, typer.Option("--members", min=1, help="Members of the new ensemble.")] = 5,
    cache: Annotated[
        Path,
        typer.Option("--cache", help="Folder of cached member probabilities (an interrupted run resumes)."),
    ] = Path("runs/choose-cache"),
    model_version: Annotated[
        str, typer.Option("--model-version", help="Version of the new model.")
    ] = "chosen",
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="Processes evaluating candidate ensembles [default: one per core]."
        ),
    ] = None,
    small_lesion_votes: Annotated[
        bool,
        typer.Option(
            "--small-lesion-votes",
            help="Also try keeping lesions under min_lesion_voxels that all members found.",
        ),
    ] = False,
) -> None:
    """Choose members, min_votes and min_lesion_voxels by greedy forward selection on development cohorts.

    The objective is category accuracy + lesion F1 - 0.01 x % of cases with valve or annulus calcium
    counted (docs/training.md). Writes the members' weights and plan.json to --out.
    """
    with user_errors():
        from cacscore.model.selection import choose_members as choose
        from cacscore.model.selection import objective

        chosen = choose(
            data,
            model,
            out,
            n_members=members,
            cache=cache,
            model_version=model_version,
            workers=workers or os.cpu_count() or 1,
            keep_small=small_lesion_votes,
            report=err_console.print,
            progress_bar=is_tty(),
        )
        figures = ", ".join(f"{key} {value:.3f}" for key, value in chosen["figures"].items())
        err_console.print(
            f"chosen: members {chosen['members']}, min_votes {chosen['min_votes']}, "
            f"min_lesion_voxels {chosen['min_lesion_voxels']}, objective "
            f"{objective(chosen['figures']):.3f} ({figures})"
        )
        typer.echo(f"model written to {out}")


def register(app: typer.Typer) -> None:
    """Add ``cacscore choose-members`` to ``app``."""
    app.command("choose-members")(choose_members)
