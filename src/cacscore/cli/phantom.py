"""``cacscore phantom``: write a cohort of synthetic calcium-scoring CTs, or preview one case."""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cacscore.cli.common import err_console, user_errors

if TYPE_CHECKING:
    from cacscore.phantom.generate import PhantomConfig


class ImageFormat(str, Enum):
    """Image formats of ``--format``."""

    dicom = "dicom"
    nifti = "nifti"
    mha = "mha"


class Family(str, Enum):
    """Generator families of ``--family``."""

    classic = "classic"
    sdf = "sdf"


def _category(value: str | None) -> str | None:
    """Check ``--category`` against the risk categories (upper case accepted as given)."""
    # Imported here: the scoring package would add 0.4 s to the start of every command.
    from cacscore.scoring.conventions import RISK_CATEGORIES

    if value is not None and value.upper() not in RISK_CATEGORIES:
        raise typer.BadParameter(f"{value!r} is not a risk category; use one of {', '.join(RISK_CATEGORIES)}")
    return None if value is None else value.upper()


def register(app: typer.Typer) -> None:
    """Add the ``phantom`` command to ``app``."""
    app.command("phantom")(phantom)


def phantom(
    n: Annotated[int, typer.Option("--n", min=0, help="Number of cases to write.")] = 10,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Cohort seed; case i's seed derives from (seed, i).")
    ] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", help="Cohort folder (resumable: complete cases are kept).")
    ] = None,
    fmt: Annotated[
        ImageFormat, typer.Option("--format", help="Image format of each case.")
    ] = ImageFormat.dicom,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Processes generating in parallel.")] = 1,
    balance: Annotated[
        bool, typer.Option("--balance", help="Risk categories A-E round robin (about 20 % each).")
    ] = False,
    preview: Annotated[
        Path | None,
        typer.Option(
            "--preview",
            help="Write a PNG montage: of case 0 of the cohort with --out, else of one case (seed --seed).",
        ),
    ] = None,
    category: Annotated[
        str | None,
        typer.Option(
            "--category",
            callback=_category,
            help="Risk category A-E of the single previewed case (without --out).",
        ),
    ] = None,
    matrix: Annotated[
        int,
        typer.Option(
            "--matrix", min=32, max=1024, help="Pixels per row; the field of view stays 180-256 mm."
        ),
    ] = 512,
    lesion_position_beta: Annotated[
        tuple[float, float] | None,
        typer.Option(
            "--lesion-position-beta",
            help="Beta(a, b) of a lesion's position along its artery (fraction from the ostium); "
            "the default (1.2 2.6) is proximal like patients' calcium, e.g. 1.0 1.5 gives a training "
            "cohort more distal lesions.",
        ),
    ] = None,
    distractor_probability: Annotated[
        list[str] | None,
        typer.Option(
            "--distractor-probability",
            help="KIND=P: probability of a distractor kind per patient (repeat for several), e.g. "
            "aortic_root=0.6 for a training cohort with more calcium beside the coronary ostia "
            "(kinds and defaults: docs/phantom.md).",
        ),
    ] = None,
    generator_version: Annotated[
        int,
        typer.Option(
            "--generator-version",
            min=1,
            max=2,
            help="1: realistic (default, as before); 2: domain randomisation for training "
            "(anatomy, vessels, lesions, imaging, artefacts, more distractors; docs/phantom.md).",
        ),
    ] = 1,
    family: Annotated[
        Family,
        typer.Option(
            "--family",
            help="classic (default), or sdf: a second, independently written generator (signed-distance "
            "anatomy, its own imaging chain) for leave-one-family-out testing (docs/phantom.md).",
        ),
    ] = Family.classic,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Generate synthetic non-contrast ECG-gated calcium-scoring CTs with reference labels and scores.

    Each case folder holds the image, label.nii.gz (2 LM, 3 LAD, 4 LCX, 5 RCA), points.csv, reference.json
    (cacscore.score/1) and truth.json; cases.csv lists the complete cases. Ctrl-C keeps the finished cases:
    run the same command again to complete the cohort. See docs/phantom.md.
    """
    with user_errors():
        from cacscore.errors import InvalidInputError
        from cacscore.phantom.generate import PhantomConfig

        if family is Family.sdf:
            if lesion_position_beta is not None:
                raise InvalidInputError("--lesion-position-beta is for --family classic")
            if generator_version != 1:
                # The sdf family has its own generator version (sdf-1.x); the option would be ignored.
                raise InvalidInputError(
                    "--generator-version is for --family classic (the sdf family has one version)"
                )
            _phantom_sdf(
                n,
                seed,
                out,
                fmt.value,
                workers,
                balance,
                preview,
                getattr(category, "value", category),
                matrix,
                distractor_probability,
                progress,
            )
            return

        config = PhantomConfig.for_version(generator_version, matrix=matrix)
        if lesion_position_beta is not None:
            config = dataclasses.replace(config, lesion_position_beta=lesion_position_beta)
        if distractor_probability:
            config = dataclasses.replace(
                config,
                distractor_probabilities={
                    **config.distractor_probabilities,
                    **_parse_probabilities(distractor_probability),
                },
            )
        if out is None and preview is None:
            raise InvalidInputError("give --out DIR to write a cohort, or --preview CASE.png to see one case")
        if out is not None:
            from cacscore.phantom.cohort import generate_cohort

            rows = generate_cohort(
                out,
                n,
                seed,
                fmt=fmt.value,
                balance=balance,
                workers=workers,
                progress=progress,
                config=config,
                family="classic",  # a folder of another family is refused, not resumed with other settings
            )
            from cacscore.scoring.conventions import RISK_CATEGORIES

            counts = {c: sum(1 for r in rows if r["risk_category"] == c) for c in RISK_CATEGORIES}
            err_console.print(
                f"{len(rows)} cases in {out} (categories: "
                + ", ".join(f"{c} {k}" for c, k in counts.items())
                + ")"
            )
        if preview is not None:
            _write_preview(preview, out, seed, config, category, fmt.value)
            err_console.print(f"preview written to {preview}")


def _write_preview(
    path: Path, out: Path | None, seed: int, config: PhantomConfig, category: str | None, fmt: str
) -> None:
    from cacscore.phantom.preview import render_preview

    if out is not None:
        import json

        from cacscore.errors import CacScoreError
        from cacscore.io import read_mask, read_volume
        from cacscore.phantom.cohort import FORMATS, case_id

        folder = out / case_id(0)
        if not (folder / "reference.json").exists():
            raise CacScoreError(f"{folder}: no complete case 0 to preview; generate at least one case")
        image_name, label_name = FORMATS[fmt]
        volume = read_volume(folder / image_name)
        label = read_mask(folder / label_name, volume)
        truth = json.loads((folder / "truth.json").read_text())
        reference = json.loads((folder / "reference.json").read_text())
        title = (
            f"{out.name}/{case_id(0)}: Agatston {reference['agatston']:.1f} ({reference['risk_category']})"
        )
        render_preview(volume, label, path, distractors=truth["distractors"], title=title)
        return
    from cacscore.phantom.generate import generate_case

    case = generate_case(seed, config=config, target_category=category)
    title = (
        f"phantom seed {seed}: Agatston {case.reference.agatston:.1f} ({case.reference.risk_category}), "
        f"{case.volume.manufacturer}, {case.volume.slice_thickness_mm:g} mm / {case.volume.spacing[0]:g} mm"
    )
    render_preview(case.volume, case.label, path, distractors=case.truth["distractors"], title=title)


def _parse_probabilities(items: list[str]) -> dict[str, float]:
    """``["aortic_root=0.6", ...]`` as ``{"aortic_root": 0.6, ...}``.

    PhantomConfig checks kinds and values.
    """
    from cacscore.errors import InvalidInputError

    out = {}
    for item in items:
        kind, _, value = item.partition("=")  # without "=", value is "" and float() refuses it
        try:
            out[kind.strip()] = float(value)
        except ValueError:
            raise InvalidInputError(
                f"--distractor-probability {item!r}: use KIND=P, e.g. aortic_root=0.6"
            ) from None
    return out


def _phantom_sdf(
    n: int,
    seed: int,
    out: Path | None,
    fmt: str,
    workers: int,
    balance: bool,
    preview: Path | None,
    category: str | None,
    matrix: int,
    distractor_probability: list[str] | None,
    progress: bool,
) -> None:
    """``cacscore phantom --family sdf``: the same outputs from the signed-distance family."""
    from cacscore.errors import InvalidInputError
    from cacscore.phantom_sdf import SdfConfig, generate_cohort, write_preview

    probabilities = dict(SdfConfig().distractor_probabilities)
    probabilities.update(_parse_probabilities(distractor_probability or []))
    config = SdfConfig(matrix=matrix, distractor_probabilities=probabilities)
    if out is None and preview is None:
        raise InvalidInputError("give --out DIR to write a cohort, or --preview CASE.png to see one case")
    if out is not None:
        rows = generate_cohort(
            out, n, seed, fmt=fmt, balance=balance, workers=workers, progress=progress, config=config
        )
        counts = {c: sum(1 for r in rows if r["risk_category"] == c) for c in "ABCDE"}
        err_console.print(
            f"{len(rows)} cases in {out} (family sdf; categories: "
            + ", ".join(f"{c} {k}" for c, k in counts.items())
            + ")"
        )
    if preview is not None:
        write_preview(preview, seed, config=config, category=category)
        err_console.print(f"preview written to {preview}")
