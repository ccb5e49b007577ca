"""``cacscore score``: score a CT volume with a calcium label mask.

The command is three steps so that other sources of a mask slot in: a
producer returns ``(volume, ScoreResult, extra report keys)`` (today
:func:`score_with_mask`; a model-based producer takes the branch where
``--mask`` is absent), :func:`cacscore.scoring.score_report` builds the
``cacscore.score/1`` document, and :func:`emit_report` prints and writes it.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.table import Table

from cacscore.cli.common import PrecisionOption, out_console, prepare_output_dir, user_errors
from cacscore.errors import CacScoreWarning, InvalidInputError
from cacscore.pipeline import read_and_check

if TYPE_CHECKING:
    from cacscore.anatomy import DomainCheck
    from cacscore.io.volume import CTVolume
    from cacscore.labels import MaskConvention
    from cacscore.scoring.results import ScoreResult
    from cacscore.scoring.risk import RiskFactors

#: Files that ``--out`` writes.
SCORE_PRODUCTS = ["score.json", "lesions.csv"]


class MaskLabels(str, Enum):
    """Label conventions accepted by ``--mask-labels`` (see :mod:`cacscore.labels`)."""

    project = "project"
    orcascore = "orcascore"
    binary = "binary"


@dataclass(frozen=True)
class ScoringOptions:
    """Scoring options shared by every producer.

    They are the keyword arguments of :func:`cacscore.scoring.score_volume`.
    """

    kvp_thresholds: bool = False
    min_area_mm2: float = 1.0
    min_voxels: int | None = None
    mass_calibration: float = 1.0

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`cacscore.scoring.score_volume`."""
        return {
            "kvp_thresholds": self.kvp_thresholds,
            "min_area_mm2": self.min_area_mm2,
            "min_voxels": self.min_voxels,
            "mass_calibration": self.mass_calibration,
        }


def score_with_mask(
    input_path: Path,
    mask_path: Path,
    options: ScoringOptions,
    *,
    series: str | None = None,
    mask_labels: MaskConvention = "project",
    skip_unreadable: bool = False,
) -> tuple[CTVolume, ScoreResult, dict[str, Any]]:
    """Read a volume and a label mask on its grid and score them.

    Returns
    -------
    volume : CTVolume
    result : ScoreResult
    extra : dict
        Additional report keys: ``{"mask": {"path", "labels"}, "domain": {...}}``; the domain check's
        refusal and lesions of the mask outside the heart region are warnings in ``result``.

    Raises
    ------
    VolumeReadError
        If the volume or mask cannot be read, or the mask is not on the volume's grid.
    InvalidInputError
        If the mask holds codes the convention does not define, or an option is out of range.
    """
    from cacscore.anatomy import check_domain, exclude_outside_heart
    from cacscore.io import read_mask, read_volume
    from cacscore.scoring import score_volume
    from cacscore.scoring.conventions import AGATSTON_THRESHOLD_HU

    volume = read_volume(input_path, series_uid=series, skip_unreadable=skip_unreadable)
    mask = read_mask(mask_path, like=volume, convention=mask_labels)
    result = score_volume(volume, mask, **options.as_kwargs())
    # A given mask is the user's decision: the domain check and the heart region only warn here.
    check = check_domain(volume)
    notes = [f"{check.refusal} (the given mask is scored anyway)"] if check.refused else []
    if check.heart_in_view:
        threshold = float(result.conventions.get("threshold_hu", AGATSTON_THRESHOLD_HU))
        outside = exclude_outside_heart(mask, volume.hu, volume.spacing, check.region, threshold)
        if outside.n_removed:
            notes.append(
                f"{outside.n_removed} lesion(s) of the mask lie outside the heart region or are joined "
                "to bone (counted, as the mask says)"
            )
    result = replace(result, warnings=[*result.warnings, *notes, *check.warnings])
    return (
        volume,
        result,
        {"mask": {"path": str(mask_path), "labels": mask_labels}, "domain": check.to_dict()},
    )


def score_with_model_path(
    input_path: Path,
    model_dir: Path | None,
    options: ScoringOptions,
    *,
    series: str | None = None,
    skip_unreadable: bool = False,
    skip_domain_check: bool = False,
    checked: tuple[CTVolume, DomainCheck] | None = None,
    precision: str | None = None,
) -> tuple[CTVolume, ScoreResult, dict[str, Any], Any]:
    """Read a volume, check its domain, and score it with the ensemble's mask (the branch without ``--mask``).

    The volume is read and checked (:func:`read_and_check`) before the model is loaded.

    Parameters
    ----------
    checked : tuple of CTVolume and DomainCheck, optional
        The result of :func:`read_and_check` when the caller ran it already.
    precision : {"fp32", "bf16"}, optional
        Inference precision; default the plan's (:data:`cacscore.precision.PRECISIONS`).

    Returns
    -------
    volume : CTVolume
    result : ScoreResult
        Lesions carry the ensemble's ``confidence``; ``warnings`` hold the domain check's.
    extra : dict
        ``{"model": {"name", "version", "members", "head", "precision", "path"}, "domain": {...}}``.
    labels : (Z, Y, X) ndarray of uint8
        The predicted label mask on the volume's grid (heart region applied).

    Raises
    ------
    VolumeReadError
        If the volume cannot be read.
    NoHeartError, ContrastEnhancedError
        If the scan is outside the domain and ``skip_domain_check`` is false.
    ModelFolderError
        If the model folder is missing or incomplete (PlanMismatchError if it does not fit this code).
    """
    import os

    volume, check = (
        checked
        if checked is not None
        else read_and_check(
            input_path, series=series, skip_unreadable=skip_unreadable, skip_domain_check=skip_domain_check
        )
    )

    import torch

    from cacscore.model import load_ensemble
    from cacscore.pipeline import score_checked

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    ensemble = load_ensemble(model_dir, precision=precision)
    result, extra, labels = score_checked(volume, check, ensemble, **options.as_kwargs())
    return volume, result, extra, labels


def emit_report(
    report: dict[str, Any],
    *,
    as_json: bool,
    out: Path | None,
    force: bool,
    console: Console | None = None,
) -> None:
    """Print the report (JSON or a table) to stdout and write ``score.json`` + ``lesions.csv`` to ``out``."""
    from cacscore.io.atomic import write_text_atomic
    from cacscore.scoring import lesions_csv

    text = json.dumps(report, indent=2)
    if out is not None:
        prepare_output_dir(out, SCORE_PRODUCTS, force=force)
        # Atomic: with --force a crash never leaves half a report over the earlier one.
        write_text_atomic(out / "score.json", text + "\n")
        write_text_atomic(out / "lesions.csv", lesions_csv(report))
    if as_json:
        typer.echo(text)
    else:
        print_report(report, console or out_console())


def print_report(report: dict[str, Any], console: Console) -> None:
    """Readable tables of a ``cacscore.score/1`` report: totals per artery, categories, lesions."""
    source = report["input"]
    console.print(
        f"[bold]{source['path']}[/]  shape {tuple(source['shape_zyx'])}  "
        f"spacing {tuple(round(v, 3) for v in source['spacing_zyx_mm'])} mm  kVp {source['kvp']}"
    )
    totals = Table(title="Calcium scores")
    for column in ("artery", "Agatston", "volume (mm³)", "mass (mg)", "lesions"):
        totals.add_column(column, justify="left" if column == "artery" else "right")
    for name, score in report["arteries"].items():
        totals.add_row(
            name,
            f"{score['agatston']:.1f}",
            f"{score['volume_mm3']:.1f}",
            f"{score['mass_mg']:.2f}",
            str(score["n_lesions"]),
        )
    totals.add_row(
        "[bold]total[/]",
        f"[bold]{report['agatston']:.1f}[/]",
        f"{report['volume_mm3']:.1f}",
        f"{report['mass_mg']:.2f}",
        str(len(report["lesions"])),
    )
    console.print(totals)
    console.print(
        f"risk category [bold]{report['risk_category']}[/]   CAC-DRS [bold]{report['cac_drs']}[/]   "
        f"vessels involved {report['n_vessels']}"
    )
    if report.get("risk"):
        from rich.markup import escape

        from cacscore.scoring.risk import risk_summary

        console.print(escape(risk_summary(report["risk"])), soft_wrap=True)
    if report["lesions"]:
        # A model's result says how many members found each lesion; a reviewer starts with the doubtful ones.
        with_confidence = any(lesion.get("confidence") is not None for lesion in report["lesions"])
        with_filter = any(lesion.get("filter_probability") is not None for lesion in report["lesions"])
        lesions = Table(title="Lesions")
        columns = [
            "id",
            "artery",
            "Agatston",
            "volume (mm³)",
            "mass (mg)",
            "peak HU",
            "slices",
            "centroid LPS (mm)",
        ]
        for column in (
            columns + (["confidence"] if with_confidence else []) + (["filter p"] if with_filter else [])
        ):
            lesions.add_column(
                column,
                justify="left" if column in ("artery", "slices") else "right",
                no_wrap=column.startswith("c"),
            )
        for lesion in report["lesions"]:
            cells = [
                str(lesion["id"]),
                lesion["artery"],
                f"{lesion['agatston']:.1f}",
                f"{lesion['volume_mm3']:.1f}",
                f"{lesion['mass_mg']:.2f}",
                f"{lesion['peak_hu']:.0f}",
                f"{lesion['slices'][0]}-{lesion['slices'][1]}",
                ", ".join(f"{v:.1f}" for v in lesion["centroid_mm"]),
            ]
            if with_confidence:
                cells.append("-" if lesion.get("confidence") is None else f"{lesion['confidence']:.0%}")
            if with_filter:
                cells.append(
                    "-" if lesion.get("filter_probability") is None else f"{lesion['filter_probability']:.2f}"
                )
            lesions.add_row(*cells)
        console.print(lesions)


def _score_command(
    input: Annotated[Path, typer.Argument(help="CT volume: DICOM folder, NIfTI, MetaImage or NRRD file.")],
    mask: Annotated[
        Path | None, typer.Option("--mask", help="Calcium label mask on the grid of INPUT.")
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Model folder used without --mask (default: $CACSCORE_MODEL_DIR or the shipped model).",
        ),
    ] = None,
    precision: PrecisionOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cacscore.score/1 JSON report.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for score.json and lesions.csv; with the model (no --mask) also prediction.nii.gz "
            "(label mask) and montage.png (key images); of a DICOM series also seg.dcm, sr.dcm and "
            "report_pdf.dcm (see --no-dicom).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite results already in --out.")] = False,
    series: Annotated[
        str | None, typer.Option("--series", help="SeriesInstanceUID to read from a DICOM folder.")
    ] = None,
    skip_unreadable: Annotated[
        bool,
        typer.Option(
            "--skip-unreadable",
            help="Read a DICOM series without the files beside it that look like its slices but cannot be "
            "read (each named in a warning) instead of refusing it.",
        ),
    ] = False,
    mask_labels: Annotated[
        MaskLabels,
        typer.Option(
            "--mask-labels",
            help="Mask label convention: project (0-5), orcascore (1 LAD, 2 LCX, 3 RCA) or binary.",
        ),
    ] = MaskLabels.project,
    kvp_thresholds: Annotated[
        bool,
        typer.Option(
            "--kvp-thresholds", help="Use kV-specific thresholds (70/80/100/120/135 kV) from the kVp."
        ),
    ] = False,
    min_area_mm2: Annotated[
        float, typer.Option("--min-area-mm2", help="Minimum 2-D component area, mm².")
    ] = 1.0,
    min_voxels: Annotated[
        int | None, typer.Option("--min-voxels", help="Minimum pixels per 2-D component (paper: 3).")
    ] = None,
    mass_calibration: Annotated[
        float, typer.Option("--mass-calibration", help="Mass calibration, mg/(HU·mL); 1.0 = uncalibrated.")
    ] = 1.0,
    skip_domain_check: Annotated[
        bool,
        typer.Option(
            "--skip-domain-check",
            help="Score a scan the domain check refuses (no heart in view, contrast); the report says so.",
        ),
    ] = False,
    no_dicom: Annotated[
        bool,
        typer.Option("--no-dicom", help="Do not write seg.dcm, sr.dcm and report_pdf.dcm for a DICOM INPUT."),
    ] = False,
    age: Annotated[
        str | None,
        typer.Option(
            "--age",
            metavar="YEARS",
            help="Risk context: age in years (default: PatientAge of a DICOM INPUT). With the options below "
            "it adds a risk block (MESA 10-year CHD risk, arterial age) to the report.",
            rich_help_panel="Risk context",
        ),
    ] = None,
    sex: Annotated[
        str | None,
        typer.Option(
            "--sex",
            metavar="male|female",
            help="male or female (default: PatientSex of a DICOM INPUT).",
            rich_help_panel="Risk context",
        ),
    ] = None,
    race: Annotated[
        str | None,
        typer.Option(
            "--race",
            metavar="GROUP",
            help="Race/ethnicity: white, chinese-american, african-american, hispanic, or other (MESA risk "
            "then not computed).",
            rich_help_panel="Risk context",
        ),
    ] = None,
    total_cholesterol: Annotated[
        str | None,
        typer.Option(
            "--total-cholesterol",
            metavar="MG_DL",
            help="Total cholesterol, mg/dL.",
            rich_help_panel="Risk context",
        ),
    ] = None,
    hdl: Annotated[
        str | None,
        typer.Option(
            "--hdl", metavar="MG_DL", help="HDL cholesterol, mg/dL.", rich_help_panel="Risk context"
        ),
    ] = None,
    systolic_bp: Annotated[
        str | None,
        typer.Option(
            "--systolic-bp",
            metavar="MM_HG",
            help="Systolic blood pressure, mm Hg.",
            rich_help_panel="Risk context",
        ),
    ] = None,
    diabetes: Annotated[
        bool | None,
        typer.Option("--diabetes/--no-diabetes", help="Diabetes.", rich_help_panel="Risk context"),
    ] = None,
    smoker: Annotated[
        bool | None,
        typer.Option("--smoker/--no-smoker", help="Current smoker.", rich_help_panel="Risk context"),
    ] = None,
    lipid_lowering: Annotated[
        bool | None,
        typer.Option(
            "--lipid-lowering/--no-lipid-lowering",
            help="On lipid-lowering medication.",
            rich_help_panel="Risk context",
        ),
    ] = None,
    bp_medication: Annotated[
        bool | None,
        typer.Option(
            "--bp-medication/--no-bp-medication",
            help="On antihypertensive medication.",
            rich_help_panel="Risk context",
        ),
    ] = None,
    family_history: Annotated[
        bool | None,
        typer.Option(
            "--family-history/--no-family-history",
            help="Heart attack in a parent, sibling or child.",
            rich_help_panel="Risk context",
        ),
    ] = None,
) -> None:
    """Score coronary calcium (Agatston, volume, mass) of INPUT.

    INPUT is scored with the label mask given by --mask, or with the model without --mask.
    """
    with user_errors():
        from cacscore.scoring import score_report

        # Checked before any reading: a mistyped risk input answers at once.
        factors = risk_factors_from_options(
            age=age,
            sex=sex,
            race=race,
            total_cholesterol=total_cholesterol,
            hdl=hdl,
            systolic_bp=systolic_bp,
            diabetes=diabetes,
            smoker=smoker,
            lipid_lowering=lipid_lowering,
            bp_medication=bp_medication,
            family_history=family_history,
        )
        options = ScoringOptions(kvp_thresholds, min_area_mm2, min_voxels, mass_calibration)
        if mask is not None and model is not None:
            raise InvalidInputError(
                "give either --mask (score that mask) or --model (segment with a model), not both"
            )
        if mask is not None and precision is not None:
            raise InvalidInputError("--precision sets how the model runs; with --mask no model runs")
        dicom_products = [] if no_dicom else _dicom_products()
        if out is not None:
            # Refuse early, before any reading, rather than after minutes of work.
            prepare_output_dir(out, [*SCORE_PRODUCTS, *dicom_products], force=force)
        labels = None
        if mask is None:
            # Read and check first: the model products' names come with the model package (torch, seconds).
            checked = read_and_check(
                input, series=series, skip_unreadable=skip_unreadable, skip_domain_check=skip_domain_check
            )
            if out is not None:
                prepare_output_dir(out, [*SCORE_PRODUCTS, *_model_products()], force=force)
            volume, result, extra, labels = score_with_model_path(
                input, model, options, checked=checked, precision=precision
            )
        else:
            volume, result, extra = score_with_mask(
                input,
                mask,
                options,
                series=series,
                mask_labels=cast("MaskConvention", mask_labels.value),
                skip_unreadable=skip_unreadable,
            )
        for message in result.warnings:
            warnings.warn(message, CacScoreWarning, stacklevel=1)
        risk = _risk_block(factors, volume, result.agatston)
        if risk is not None:
            extra = {**extra, "risk": risk}
        report = score_report(volume, result, input, extra=extra)
        emit_report(report, as_json=as_json, out=out, force=True)
        if out is None:
            return
        written = [out / name for name in SCORE_PRODUCTS]
        if labels is not None:
            from cacscore.model.products import write_model_products

            # The montage shows the lesions as scored here (with --min-voxels, --kvp-thresholds, ...).
            written += write_model_products(
                out, volume, labels, result=result, title=f"{input.name}: {report['agatston']:.1f} Agatston"
            )
        if dicom_products and volume.dicom is not None:
            written += _write_dicom(out, volume, labels, report, mask, mask_labels)
        if not as_json:
            out_console().print(f"wrote {out}: " + ", ".join(path.name for path in written))


def risk_factors_from_options(
    *,
    age: str | None = None,
    sex: str | None = None,
    race: str | None = None,
    total_cholesterol: str | None = None,
    hdl: str | None = None,
    systolic_bp: str | None = None,
    diabetes: bool | None = None,
    smoker: bool | None = None,
    lipid_lowering: bool | None = None,
    bp_medication: bool | None = None,
    family_history: bool | None = None,
) -> RiskFactors:
    """The risk inputs given on the command line, parsed and checked (None: not given).

    Raises
    ------
    InvalidInputError
        If a value is not a valid input (``--age abc``, a negative cholesterol, HDL above total cholesterol).
    """
    from cacscore.scoring.risk import RiskFactors, check_factors, parse_number, parse_race, parse_sex

    values: dict[str, Any] = {
        "age_years": None if age is None else parse_number(age, "--age", "years"),
        "sex": None if sex is None else parse_sex(sex),
        "race": None if race is None else parse_race(race),
        "diabetes": diabetes,
        "smoker": smoker,
        "total_cholesterol_mg_dl": (
            None
            if total_cholesterol is None
            else parse_number(total_cholesterol, "--total-cholesterol", "mg/dL")
        ),
        "hdl_mg_dl": None if hdl is None else parse_number(hdl, "--hdl", "mg/dL"),
        "lipid_lowering": lipid_lowering,
        "systolic_bp_mm_hg": None
        if systolic_bp is None
        else parse_number(systolic_bp, "--systolic-bp", "mm Hg"),
        "bp_medication": bp_medication,
        "family_history": family_history,
    }
    given = {name: value for name, value in values.items() if value is not None}
    return check_factors(RiskFactors(**given, sources=dict.fromkeys(given, "command line")))


def _risk_block(factors: RiskFactors, volume: CTVolume, agatston: float) -> dict[str, Any] | None:
    """The report's ``risk`` block: command-line inputs, then age and sex from a DICOM input's header."""
    from cacscore.scoring.risk import risk_context, with_dicom_header

    if volume.dicom is not None and volume.dicom.headers:
        factors = with_dicom_header(factors, volume.dicom.headers[0])
    return risk_context(factors, agatston)


def _dicom_products() -> list[str]:
    from cacscore.export import DICOM_PRODUCTS

    return DICOM_PRODUCTS


def _write_dicom(
    out: Path,
    volume: CTVolume,
    labels: Any,
    report: dict[str, Any],
    mask: Path | None,
    mask_labels: MaskLabels,
) -> list[Path]:
    """Write the DICOM Segmentation, SR and encapsulated PDF of a DICOM input next to score.json."""
    from cacscore.export import Algorithm, write_dicom_outputs
    from cacscore.io import read_mask

    if mask is not None:
        # A given mask is the user's (a reader's) segmentation, not an algorithm's.
        labels = read_mask(mask, like=volume, convention=cast("MaskConvention", mask_labels.value))
        algorithm = Algorithm(name="given mask", version="-", manual=True)
    else:
        model = report.get("model") or {}
        algorithm = Algorithm(
            name=str(model.get("name") or "cacscore model"),
            version=str(model.get("version") or "unversioned"),
        )
    return list(write_dicom_outputs(out, volume, labels, report, algorithm))


def _model_products() -> list[str]:
    from cacscore.model.products import MODEL_PRODUCTS

    return MODEL_PRODUCTS


def register(app: typer.Typer) -> None:
    """Add the ``score`` command to ``app``."""
    app.command("score")(_score_command)
