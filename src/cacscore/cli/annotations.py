"""``cacscore annotations to-mask``: a label mask and a discrepancy report from point annotations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cacscore.cli.common import err_console, user_errors
from cacscore.errors import CacScoreError

annotations_app = typer.Typer(
    name="annotations",
    help="Ground truth from point annotations (Gogin et al. 2021).",
    no_args_is_help=True,
)


@annotations_app.command("to-mask")
def to_mask(
    volume_path: Annotated[
        Path, typer.Argument(metavar="VOLUME", help="CT: DICOM folder or NIfTI/MHA/MHD/NRRD file.")
    ],
    points_path: Annotated[Path, typer.Argument(metavar="POINTS", help="Point annotations, .csv or .json.")],
    out: Annotated[Path, typer.Option("--out", help="Label mask to write (.nii.gz, .mha, ...).")],
    report_path: Annotated[
        Path | None, typer.Option("--report", help="Write the discrepancy report (JSON) here.")
    ] = None,
    category: Annotated[
        str | None,
        typer.Option(
            "--category", help="Annotated risk category A-E; a different category of the mask is flagged."
        ),
    ] = None,
    threshold_hu: Annotated[
        float | None, typer.Option("--threshold-hu", help="Calcium threshold, HU [default: Agatston's, 130].")
    ] = None,
    search_radius_mm: Annotated[
        float,
        typer.Option(
            "--search-radius-mm", help="How far a point below threshold may be moved to calcium, mm."
        ),
    ] = 2.0,
    bone_check: Annotated[
        bool,
        typer.Option(
            "--bone-check/--no-bone-check", help="Leave bone-like components (reported either way) out."
        ),
    ] = True,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")] = False,
) -> None:
    """Build a calcium label mask from POINTS on VOLUME and report points that needed attention.

    Each point selects the 3-D component of voxels >= threshold that holds it
    (or the nearest one within the search radius). The report lists every
    point's status (ok, moved, no_component, outside, bone, conflict), the
    mask's Agatston score and category, and whether it disagrees with
    --category. Exit code 0 even when points need review; read the report.
    """
    from cacscore.annotations import mask_from_points, read_annotated_category, read_points
    from cacscore.io import read_volume, write_mask
    from cacscore.scoring.conventions import AGATSTON_THRESHOLD_HU

    with user_errors():
        outputs = [out] + ([report_path] if report_path is not None else [])
        existing = [str(path) for path in outputs if path.exists()]
        if existing and not force:
            raise CacScoreError(f"{', '.join(existing)}: already exists; use --force to overwrite")
        points = read_points(points_path)
        volume = read_volume(volume_path)
        mask, report = mask_from_points(
            volume,
            points,
            threshold_hu=AGATSTON_THRESHOLD_HU if threshold_hu is None else threshold_hu,
            search_radius_mm=search_radius_mm,
            bone_check=bone_check,
            reference_category=category.upper() if category else read_annotated_category(points_path),
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        write_mask(mask, volume, out)
        if report_path is not None:
            report_path.parent.mkdir(parents=True, exist_ok=True)
            report_path.write_text(report.to_json(indent=2) + "\n", encoding="utf-8")
        counts = ", ".join(f"{status} {n}" for status, n in report.status_counts.items() if n)
        typer.echo(f"mask: {out} ({report.n_components} component(s), {report.labelled_volume_mm3:g} mm^3)")
        typer.echo(f"points: {len(points)} ({counts or 'none'})")
        typer.echo(f"agatston: {report.agatston:.1f}, category {report.risk_category}")
        if report.reference_category is not None:
            verdict = "DISCREPANCY, review this case" if report.discrepancy else "agrees"
            typer.echo(f"annotated category: {report.reference_category} ({verdict})")
        for point in report.points:
            if point.status not in ("ok", "moved"):
                err_console.print(
                    f"[yellow]warning:[/] point {point.index} "
                    f"({point.artery}) at {point.position}: {point.status}",
                    soft_wrap=True,
                )


def register(app: typer.Typer) -> None:
    """Add the ``annotations`` command group to ``app``."""
    app.add_typer(annotations_app, name="annotations")
