"""``cacscore train-lesion-filter``: fit a trained model's lesion filter on labelled cases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cacscore.cli.common import err_console, user_errors


def train_lesion_filter(
    model: Annotated[Path, typer.Option("--model", help="Trained model folder whose lesions are judged.")],
    data: Annotated[
        list[Path],
        typer.Option(
            "--data",
            help="Labelled dataset folder used neither to train nor to test the model "
            "(repeat to pool several).",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="New model folder: the members and plan.json with the filter.")
    ],
    threshold: Annotated[
        float, typer.Option("--threshold", help="Probability from which a candidate lesion is kept.")
    ] = 0.5,
    candidate_votes: Annotated[
        int,
        typer.Option("--candidate-votes", help="Members that must find a lesion for it to be a candidate."),
    ] = 1,
    model_version: Annotated[
        str | None, typer.Option("--model-version", help="Version of the new model (default: the source's).")
    ] = None,
    mask_labels: Annotated[
        str | None,
        typer.Option(
            "--mask-labels",
            help="Label convention of the reference masks: project (0-5), orcascore "
            "(1 LAD incl. LM, 2 LCX, 3 RCA) or binary (default: each layout's own).",
        ),
    ] = None,
    device: Annotated[
        str,
        typer.Option("--device", help="cpu or cuda: where the members run to find the candidate lesions."),
    ] = "cpu",
) -> None:
    """Fit a lesion filter (a logistic regression on each candidate lesion and its surroundings) for a model.

    Interrupted runs continue where they stopped when started again with the same --out.
    """
    with user_errors():
        from cacscore.datasets import list_cases
        from cacscore.model.lesion_filter import FEATURE_NAMES
        from cacscore.train.fit_lesion_filter import train_lesion_filter as fit

        datasets = [(folder, list_cases(folder, mask_labels=mask_labels)) for folder in data]
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
        )
        with progress:
            task = progress.add_task("candidate lesions", total=sum(len(cases) for _, cases in datasets))
            plan = fit(
                model,
                datasets,
                out,
                threshold=threshold,
                candidate_votes=candidate_votes,
                model_version=model_version,
                device=device,
                report=lambda done, total: progress.update(task, completed=done, total=total),
            )
        block = plan.data["inference"]["lesion_filter"]
        record = block["fitted_on"]
        err_console.print(
            f"model written to {out}: lesion filter fitted on {record['lesions']} candidate lesions "
            f"({record['true_lesions']} true) of {record['cases']} cases"
        )
        for name, coefficient in zip(FEATURE_NAMES, block["coefficients"]):
            typer.echo(f"{name:28s} {coefficient:+.3f}")


def register(app: typer.Typer) -> None:
    """Add ``cacscore train-lesion-filter`` to ``app``."""
    app.command("train-lesion-filter")(train_lesion_filter)
