"""``cacscore train``: train a segmentation ensemble on a dataset folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cacscore.cli.common import err_console, user_errors
from cacscore.errors import InvalidInputError


def _patch(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise InvalidInputError(f"--patch must be three integers z,y,x (e.g. 64,96,96), got {text!r}")
    return values  # type: ignore[return-value]


def train(
    data: Annotated[
        Path,
        typer.Option("--data", help="Dataset folder (phantom cohort, generic, nnU-Net, orCaScore, COCA)."),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Model folder to write (plan.json + member_<k>.safetensors).")
    ],
    val_data: Annotated[
        Path | None,
        typer.Option(
            "--val-data", help="Separate validation dataset (default: --val-cases cases of --data)."
        ),
    ] = None,
    members: Annotated[int, typer.Option("--members", help="Ensemble members.")] = 5,
    head: Annotated[
        str, typer.Option("--head", help="arteries (LM/LAD/LCX/RCA) or binary (calcium).")
    ] = "arteries",
    epochs: Annotated[int, typer.Option("--epochs", help="Maximum epochs per member.")] = 40,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    val_cases: Annotated[
        int, typer.Option("--val-cases", help="Validation cases choosing each member's best epoch.")
    ] = 20,
    patch: Annotated[
        str, typer.Option("--patch", help="Patch size z,y,x in low-resolution voxels.")
    ] = "64,96,96",
    batch: Annotated[int, typer.Option("--batch", help="Patches per step.")] = 2,
    steps_per_epoch: Annotated[
        int | None, typer.Option("--steps-per-epoch", help="Steps per epoch (default: one pass).")
    ] = None,
    loss: Annotated[
        str,
        typer.Option(
            "--loss",
            help="dice (the paper), dice_ce (Dice + cross-entropy) or dice_topk (Dice + cross-entropy "
            "of the hardest 10 % of voxels).",
        ),
    ] = "dice_ce",
    val_metric: Annotated[
        str,
        typer.Option(
            "--val-metric",
            help="What chooses each member's best epoch: dice (pooled over the validation cases) or "
            "case_dice (mean of each case's Dice; penalises false positives in scans without calcium).",
        ),
    ] = "dice",
    lr: Annotated[float, typer.Option("--lr", help="Initial Adam learning rate.")] = 2e-3,
    folds: Annotated[
        bool, typer.Option("--folds", help="Member k also leaves out the k-th fold of the training cases.")
    ] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")] = False,
    workers: Annotated[int, typer.Option("--workers", help="Processes for preprocessing (0: none).")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and the members.")] = 0,
    max_minutes: Annotated[
        float | None, typer.Option("--max-minutes", help="Time limit for training all members.")
    ] = None,
    filters: Annotated[str, typer.Option("--filters", help="Filters per level.")] = "16,32,64,128",
    name: Annotated[
        str, typer.Option("--name", help="Model name written to plan.json.")
    ] = "cacscore-resunet",
    model_version: Annotated[
        str, typer.Option("--model-version", help="Model version written to plan.json.")
    ] = "0",
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Folder of preprocessed cases (default: OUT/cache).")
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option("--init", help="Model folder to fine-tune: member k starts from its member k."),
    ] = None,
    fp32: Annotated[
        bool, typer.Option("--fp32", help="Train in float32 (default: bfloat16 autocast).")
    ] = False,
) -> None:
    """Train the 3-D residual U-Net ensemble (Gogin et al. 2021) and write a model folder."""
    with user_errors():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from cacscore.train import TrainConfig, train_model

        try:
            filter_values = tuple(int(v) for v in filters.split(","))
        except ValueError:
            raise InvalidInputError(
                f"--filters must be integers separated by commas, got {filters!r}"
            ) from None
        config = TrainConfig(
            data=data,
            out=out,
            val_data=val_data,
            members=members,
            head=head,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            batch=batch,
            patch=_patch(patch),
            lr=lr,
            loss=loss,
            val_metric=val_metric,
            val_cases=val_cases,
            folds=folds,
            filters=filter_values,
            seed=seed,
            device=device,
            amp=not fp32,
            workers=workers,
            max_minutes=max_minutes,
            cache_dir=cache,
            init=init,
            name=name,
            model_version=model_version,
        )
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=err_console,
            transient=False,
        )
        tasks: dict[str, Any] = {}
        state = {"member": 0, "members": members}

        def report(kind: str, *args: Any) -> None:
            if kind == "prepare":
                done, total = args
                if "prepare" not in tasks:
                    tasks["prepare"] = progress.add_task("preprocessing", total=total, info="")
                progress.update(tasks["prepare"], completed=done)
            elif kind == "member":
                state["member"], state["members"] = args
                tasks["member"] = progress.add_task(f"member {args[0] + 1}/{args[1]}", total=None, info="")
            elif kind == "step":
                step, total, value = args
                progress.update(tasks["member"], total=total, completed=step, info=f"loss {value:.3f}")
            elif kind == "epoch":
                epoch, total_epochs, mean_loss, dice, best, seconds = args
                progress.console.print(
                    f"member {state['member'] + 1}/{state['members']} epoch {epoch}/{total_epochs}: "
                    f"loss {mean_loss:.4f}, validation Dice {dice:.4f}{' (best)' if best else ''}, {seconds:.1f} s"
                )
            elif kind == "done":
                _, best_epoch, dice = args
                progress.update(tasks["member"], info=f"best epoch {best_epoch}, validation Dice {dice:.4f}")

        with progress:
            plan = train_model(config, resume=resume, report=report)
        err_console.print(f"model written to {out} ({len(plan.members)} members, head {plan.head})")
        for member in plan.members:
            typer.echo(
                f"member {member['member']}: best epoch {member['best_epoch']}, "
                f"validation Dice {member['val_dice']:.4f}"
            )


def register(app: typer.Typer) -> None:
    """Add ``cacscore train`` to ``app``."""
    app.command("train")(train)
