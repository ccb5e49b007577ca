"""``cacscore train``: train a segmentation ensemble on a dataset folder."""

from __future__ import annotations

import time
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


def _augmentation(text: str) -> Any:
    """``default``, ``none`` or a JSON file of ``training.augmentation`` settings."""
    import json

    from cacscore.train.augment import Augmentation

    if text == "default":
        return Augmentation()
    if text == "none":
        return Augmentation.none()
    path = Path(text)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(
            f"--augmentation {text}: not 'default', 'none' or a readable JSON file ({exc})"
        ) from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: augmentation settings must be a JSON object")
    return Augmentation.from_dict(data)


def _describe(value: Any) -> str:
    if hasattr(value, "to_dict"):
        return "the parent's"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def train(
    data: Annotated[
        Path,
        typer.Option("--data", help="Dataset folder (phantom cohort, generic, nnU-Net, orCaScore, COCA)."),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Model folder to write (plan.json + member_<k>.safetensors only).")
    ],
    val_data: Annotated[
        Path | None,
        typer.Option(
            "--val-data", help="Separate validation dataset (default: --val-cases cases of --data)."
        ),
    ] = None,
    members: Annotated[
        int | None, typer.Option("--members", help="Ensemble members (default: 5, or the --init model's).")
    ] = None,
    head: Annotated[
        str | None,
        typer.Option("--head", help="arteries (LM/LAD/LCX/RCA) or binary (calcium) (default: arteries)."),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", help="Maximum epochs per member (default: 40, or the --init model's)."),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    val_cases: Annotated[
        int | None,
        typer.Option(
            "--val-cases",
            help="Validation cases choosing each member's best epoch (at most a fifth "
            "of the cases) (default: 20, or the --init model's).",
        ),
    ] = None,
    patch: Annotated[
        str | None,
        typer.Option(
            "--patch",
            help="Patch size z,y,x in low-resolution voxels (default: 64,96,96, or the --init model's).",
        ),
    ] = None,
    batch: Annotated[int | None, typer.Option("--batch", help="Patches per step (default: 2).")] = None,
    steps_per_epoch: Annotated[
        int | None, typer.Option("--steps-per-epoch", help="Steps per epoch (default: one pass).")
    ] = None,
    loss: Annotated[
        str | None,
        typer.Option(
            "--loss",
            help="dice (the paper), dice_ce (Dice + cross-entropy) or dice_topk (Dice + cross-entropy "
            "of the hardest 10 % of voxels) (default: dice_ce, or the --init model's).",
        ),
    ] = None,
    val_metric: Annotated[
        str | None,
        typer.Option(
            "--val-metric",
            help="What chooses each member's best epoch: dice (pooled over the validation cases) or "
            "case_dice (mean of each case's Dice; penalises false positives in scans without calcium) "
            "(default: dice, or the --init model's).",
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option("--lr", help="Initial Adam learning rate (default: 2e-3, or the --init model's)."),
    ] = None,
    augmentation: Annotated[
        str | None,
        typer.Option(
            "--augmentation",
            help="default (this version's), none, or a JSON file of "
            "training.augmentation settings (default: default, or the --init "
            "model's).",
        ),
    ] = None,
    folds: Annotated[
        bool | None,
        typer.Option(
            "--folds/--no-folds", help="Member k also leaves out the k-th fold of the training cases."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")] = False,
    workers: Annotated[int, typer.Option("--workers", help="Processes for preprocessing (0: none).")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and the members.")] = 0,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            "--max-minutes",
            help="Time limit for the whole command: reading the data, all members and the lesion filter.",
        ),
    ] = None,
    filters: Annotated[
        str | None,
        typer.Option("--filters", help="Filters per level (default: 16,32,64,128, or the --init model's)."),
    ] = None,
    name: Annotated[
        str, typer.Option("--name", help="Model name written to plan.json.")
    ] = "cacscore-resunet",
    model_version: Annotated[
        str, typer.Option("--model-version", help="Model version written to plan.json.")
    ] = "0",
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache",
            help="Cache folder for preprocessed cases and checkpoints "
            "(default: $CACSCORE_CACHE_DIR or ~/.cache/cacscore); never the model folder.",
        ),
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option(
            "--init",
            help="Model folder to fine-tune: member k starts from its member k; its training "
            "recipe and vote rules are inherited unless given here, and its lesion filter "
            "is fitted again for the new members.",
        ),
    ] = None,
    mask_labels: Annotated[
        str | None,
        typer.Option(
            "--mask-labels",
            help="Label convention of the masks of --data and --val-data: project "
            "(0-5), orcascore (1 LAD incl. LM, 2 LCX, 3 RCA) or binary "
            "(default: each layout's own).",
        ),
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option(
            "--replay",
            help="With --init: a dataset of the parent's data family, mixed into the "
            "patches so that the model does not forget it.",
        ),
    ] = None,
    replay_fraction: Annotated[
        float, typer.Option("--replay-fraction", help="Share of patches drawn from --replay.")
    ] = 0.25,
    lesion_filter: Annotated[
        str,
        typer.Option(
            "--lesion-filter",
            help="With --init and a parent with a lesion filter: refit (on the "
            "validation cases, at the end) or drop (the vote rules decide).",
        ),
    ] = "refit",
    filter_data: Annotated[
        list[Path] | None,
        typer.Option(
            "--filter-data",
            help="With --init: more labelled cases (not used for training; repeat for "
            "several folders) to fit the lesion filter on, besides the validation "
            "cases, e.g. phantoms of the parent's family.",
        ),
    ] = None,
    fp32: Annotated[
        bool, typer.Option("--fp32", help="Train in float32 (default: bfloat16 autocast).")
    ] = False,
) -> None:
    """Train the 3-D residual U-Net ensemble (Gogin et al. 2021) and write a model folder."""
    started = (
        time.monotonic()
    )  # --max-minutes counts from here: importing torch and reading the data included
    with user_errors():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from cacscore.train import TrainConfig, train_model

        settings: dict[str, Any] = {
            "members": members,
            "head": head,
            "epochs": epochs,
            "val_cases": val_cases,
            "batch": batch,
            "steps_per_epoch": steps_per_epoch,
            "loss": loss,
            "val_metric": val_metric,
            "lr": lr,
            "folds": folds,
        }
        if patch is not None:
            settings["patch"] = _patch(patch)
        if filters is not None:
            try:
                settings["filters"] = tuple(int(v) for v in filters.split(","))
            except ValueError:
                raise InvalidInputError(
                    f"--filters must be integers separated by commas, got {filters!r}"
                ) from None
        if augmentation is not None:
            settings["augmentation"] = _augmentation(augmentation)
        settings = {key: value for key, value in settings.items() if value is not None}
        common: dict[str, Any] = {
            "data": data,
            "out": out,
            "val_data": val_data,
            "seed": seed,
            "device": device,
            "amp": not fp32,
            "workers": workers,
            "max_minutes": max_minutes,
            "cache_dir": cache,
            "name": name,
            "model_version": model_version,
            "mask_labels": mask_labels,
            "replay": replay,
            "replay_fraction": replay_fraction,
            "lesion_filter": lesion_filter,
            "filter_data": tuple(filter_data or ()),
        }
        if init is not None:
            config = TrainConfig.fine_tune(init, **settings, **common)
            if not resume:  # a resumed run takes every setting from its own plan
                shown = ", ".join(f"{key} {_describe(getattr(config, key))}" for key in config.inherited)
                err_console.print(f"fine-tuning {init}: inherited {shown or 'nothing'}", soft_wrap=True)
        else:
            config = TrainConfig(**settings, **common, init=init)
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
        state = {"member": 0, "members": config.members}

        def report(kind: str, *args: Any) -> None:
            if kind == "prepare":
                done, total = args
                if "prepare" not in tasks:
                    tasks["prepare"] = progress.add_task("preprocessing", total=total, info="")
                progress.update(tasks["prepare"], completed=done)
            elif kind == "member":
                state["member"], state["members"] = args
                tasks["member"] = progress.add_task(f"member {args[0] + 1}/{args[1]}", total=None, info="")
            elif kind == "start":
                _, source, dice = args
                progress.console.print(
                    f"member {state['member'] + 1}/{state['members']} starts "
                    f"from member {source} of {config.init}: "
                    f"validation Dice {dice:.4f}",
                    soft_wrap=True,
                )
            elif kind == "step":
                step, total, value = args
                progress.update(tasks["member"], total=total, completed=step, info=f"loss {value:.3f}")
            elif kind == "epoch":
                epoch, total_epochs, mean_loss, dice, best, seconds = args
                progress.console.print(
                    f"member {state['member'] + 1}/{state['members']} epoch {epoch}/{total_epochs}: "
                    f"loss {mean_loss:.4f}, validation Dice {dice:.4f}{' (best)' if best else ''}, "
                    f"{seconds:.1f} s"
                )
            elif kind == "done":
                _, best_epoch, dice = args
                progress.update(tasks["member"], info=f"best epoch {best_epoch}, validation Dice {dice:.4f}")
            elif kind == "filter":
                done, total = args
                if "filter" not in tasks:
                    tasks["filter"] = progress.add_task("lesion filter: candidates", total=total, info="")
                progress.update(tasks["filter"], completed=done)

        with progress:
            plan = train_model(config, resume=resume, report=report, started=started)
        err_console.print(f"model written to {out} ({len(plan.members)} members, head {plan.head})")
        for member in plan.members:
            typer.echo(
                f"member {member['member']}: best epoch {member['best_epoch']}, "
                f"validation Dice {member['val_dice']:.4f}"
            )
        post = plan.data.get("training", {}).get("post_processing")
        if post is not None:
            colour = "green" if post.get("reliable", True) else "yellow"
            err_console.print(f"[{colour}]post-processing:[/] {post['message']}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``cacscore train`` to ``app``."""
    app.command("train")(train)
