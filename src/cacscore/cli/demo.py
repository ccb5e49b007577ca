"""``cacscore demo``: generate a phantom scan, score it with the shipped model, compare with its reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cacscore.cli.common import out_console, prepare_output_dir, user_errors

#: Every file the demo writes, in the order they are listed (the model products among them).
DEMO_FILES = [
    "image.nii.gz",
    "score.json",
    "lesions.csv",
    "prediction.nii.gz",
    "montage.png",
    "reference.json",
]
#: Tries to find a seed whose phantom has calcium in at least two arteries.
_SEED_TRIES = 8


def _several_arteries_case(seed: int) -> Any:
    """The first phantom from ``seed`` on (category D) with calcium in >= 2 arteries."""
    from cacscore.phantom import generate_case

    case = None
    for offset in range(_SEED_TRIES):
        case = generate_case(seed + offset, target_category="D")
        if (
            sum(1 for name, a in case.reference.arteries.items() if name != "unspecified" and a.agatston > 0)
            >= 2
        ):
            break
    return case


def demo(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Folder for the demo's files: image.nii.gz (the phantom CT), score.json and lesions.csv "
            "(the model's score), prediction.nii.gz (its label mask), montage.png (key images, model "
            "beside reference) and reference.json (the phantom's reference score).",
        ),
    ] = Path("demo-output"),
    seed: Annotated[int, typer.Option("--seed", min=0, help="Phantom seed.")] = 7,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a previous demo in --out.")] = False,
    model: Annotated[
        Path | None, typer.Option("--model", help="Model folder (default: the shipped model).")
    ] = None,
    skip_domain_check: Annotated[
        bool,
        typer.Option("--skip-domain-check", help="Score the phantom even where the domain check refuses it."),
    ] = False,
) -> None:
    """Generate a phantom CT, score it with the model and print the result next to the phantom's reference."""
    with user_errors():
        from rich.table import Table

        from cacscore.anatomy import check_domain
        from cacscore.cli.score import ScoringOptions, emit_report
        from cacscore.io import write_volume
        from cacscore.model import load_ensemble
        from cacscore.model.products import write_model_products
        from cacscore.pipeline import score_checked
        from cacscore.scoring import VESSELS, score_report

        prepare_output_dir(out, DEMO_FILES, force=force)
        console = out_console()
        ensemble = load_ensemble(model)
        console.print(f"generating a phantom calcium-scoring CT (seed {seed}) ...")
        case = _several_arteries_case(seed)
        volume = case.volume
        image_path = write_volume(volume, out / "image.nii.gz")
        volume.source = str(image_path)
        reference = score_report(volume, case.reference, image_path, extra={"phantom": {"seed": case.seed}})
        (out / "reference.json").write_text(json.dumps(reference, indent=2) + "\n", encoding="utf-8")

        console.print(
            f"scoring it with {ensemble.plan.name} v{ensemble.plan.model_version} "
            f"({len(ensemble.members)} members) ..."
        )
        check = check_domain(volume)
        check = check.skip() if skip_domain_check else check
        check.require(str(image_path))
        result, extra, labels = score_checked(volume, check, ensemble, **ScoringOptions().as_kwargs())
        report = score_report(volume, result, image_path, extra=extra)
        emit_report(report, as_json=False, out=out, force=True, console=console)
        write_model_products(
            out,
            volume,
            labels,
            result=result,
            reference_labels=case.label,
            reference_lesions=case.reference.lesions,
            title=f"phantom seed {case.seed}: model {report['agatston']:.1f} vs "
            f"reference {reference['agatston']:.1f} Agatston",
        )

        table = Table(title="Model vs phantom reference (Agatston)")
        for column in ("", "model", "reference"):
            table.add_column(column, justify="left" if not column else "right")
        for name in VESSELS:
            table.add_row(
                name,
                f"{report['arteries'][name]['agatston']:.1f}",
                f"{reference['arteries'][name]['agatston']:.1f}",
            )
        table.add_row(
            "[bold]total[/]", f"[bold]{report['agatston']:.1f}[/]", f"[bold]{reference['agatston']:.1f}[/]"
        )
        table.add_row("risk category", report["risk_category"], reference["risk_category"])
        table.add_row("lesions", str(len(report["lesions"])), str(len(reference["lesions"])))
        console.print(table)
        console.print(f"files in {out}: {', '.join(DEMO_FILES)}")


def register(app: typer.Typer) -> None:
    """Add ``cacscore demo`` to ``app``."""
    app.command("demo")(demo)
