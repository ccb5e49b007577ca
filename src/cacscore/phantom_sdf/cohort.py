"""Writing cohorts of the signed-distance family in the phantom cohort layout.

The layout is the one ``cacscore phantom`` writes for the classic family
(``docs/phantom.md``; :mod:`cacscore.datasets.phantom` reads it): the same
case folders, file names, ``cases.csv`` columns and resumable
``generation.json``, which here also names the family. Case ``i`` depends on
``(seed, i)`` only, so the number of workers does not change the files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cacscore.errors import CacScoreError, InvalidInputError
from cacscore.io.atomic import write_json_atomic
from cacscore.phantom.cohort import (
    FORMATS,
    case_id,
    case_seed,
    case_target,
    points_csv,
    progress_bar,
    run_cases,
    write_manifest,
)
from cacscore.phantom_sdf.case import FAMILY, GENERATOR_VERSION, SdfCase, SdfConfig, generate_case


def write_case(case: SdfCase, folder: str | Path, *, fmt: str = "dicom") -> Path:
    """Write one case into ``folder``: image, label, points.csv, truth.json, then reference.json (last).

    Raises
    ------
    InvalidInputError
        If ``fmt`` is not one of the cohort formats (dicom, nifti, mha).
    """
    from cacscore.io import write_dicom_series, write_mask, write_volume
    from cacscore.scoring import score_report

    if fmt not in FORMATS:
        raise InvalidInputError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    image_name, label_name = FORMATS[fmt]
    if fmt == "dicom":
        write_dicom_series(
            case.volume,
            folder / image_name,
            manufacturer=case.volume.manufacturer,
            uid_seed=f"cacscore-phantom-{FAMILY}-{case.seed}",
            extra_tags=case.dicom_tags,
        )
    else:
        write_volume(case.volume, folder / image_name)
    write_mask(case.label, case.volume, folder / label_name)
    (folder / "points.csv").write_text(points_csv(case.points))
    write_json_atomic(folder / "truth.json", case.truth, indent=1)
    generator = {
        "name": "cacscore.phantom_sdf",
        "family": FAMILY,
        "version": GENERATOR_VERSION,
        "seed": case.seed,
    }
    report = score_report(case.volume, case.reference, input_path=image_name, extra={"generator": generator})
    write_json_atomic(folder / "reference.json", report, indent=1)
    return folder


def _generate_and_write(
    out: str, index: int, seed: int, fmt: str, balance: bool, config: dict[str, Any]
) -> int:
    folder = Path(out) / case_id(index)
    if folder.exists():
        shutil.rmtree(folder)  # an incomplete case of an interrupted run
    case = generate_case(
        case_seed(seed, index),
        config=SdfConfig.from_dict(config),
        target_category=case_target(index, balance),
    )
    write_case(case, folder, fmt=fmt)
    return index


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    path = out / "generation.json"
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CacScoreError(f"{path}: unreadable ({exc}); remove it or choose another --out") from None
    family = old.get("family", "classic")
    if family != FAMILY:
        raise CacScoreError(
            f"{out}: holds a cohort of the {family!r} family, not {FAMILY!r}; choose another --out"
        )
    if isinstance(old.get("config"), dict):
        try:
            old["config"] = SdfConfig.from_dict(old["config"]).to_dict()
        except (CacScoreError, TypeError) as exc:
            raise CacScoreError(
                f"{path}: invalid phantom configuration ({exc}); choose another --out"
            ) from None
    for key in ("seed", "format", "balance", "generator_version", "config"):
        if old.get(key) != settings.get(key):
            raise CacScoreError(
                f"{out}: holds a cohort generated with {key}={old.get(key)!r}, not {settings.get(key)!r}; "
                "resume with the same settings or choose another --out"
            )


def generate_cohort(
    out: str | Path,
    n: int,
    seed: int,
    *,
    fmt: str = "dicom",
    balance: bool = False,
    workers: int = 1,
    progress: bool = True,
    config: SdfConfig | None = None,
    on_case: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Generate ``n`` cases of this family into ``out`` (resumable).

    Writes ``cases.csv`` and ``generation.json`` beside the case folders.

    Parameters are those of :func:`cacscore.phantom.cohort.generate_cohort`; ``config`` is an
    :class:`SdfConfig`.

    Returns
    -------
    list of dict
        The ``cases.csv`` rows.

    Raises
    ------
    InvalidInputError
        Bad ``n``, ``seed``, ``fmt`` or ``workers``.
    CacScoreError
        ``out`` is a file, or holds a cohort of another family or other settings.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidInputError(f"n must be a non-negative integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    if fmt not in FORMATS:
        raise InvalidInputError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidInputError(f"workers must be a positive integer, got {workers!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CacScoreError(f"{out}: output path exists and is not a folder")
    config = config if config is not None else SdfConfig()
    settings = {
        "n": n,
        "seed": seed,
        "format": fmt,
        "balance": balance,
        "family": FAMILY,
        "generator_version": GENERATOR_VERSION,
        "config": config.to_dict(),
    }
    _check_settings(out, settings)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "generation.json", settings, indent=1)
    todo = [i for i in range(n) if not (out / case_id(i) / "reference.json").exists()]
    try:
        with progress_bar(progress, n, n - len(todo), f"phantom cases ({FAMILY})") as advance:
            for index in run_cases(
                _generate_and_write, str(out), todo, seed, fmt, balance, config.to_dict(), workers
            ):
                advance()
                if on_case is not None:
                    on_case(index)
    finally:
        rows = write_manifest(out, n, fmt)
    return rows


def write_preview(
    path: str | Path,
    seed: int,
    *,
    config: SdfConfig | None = None,
    category: str | None = None,
    n_slices: int = 9,
    dpi: int = 72,
) -> Path:
    """A PNG montage of ``n_slices`` axial slices of one case of this family.

    Drawn by the classic family's renderer.
    """
    from cacscore.phantom.preview import render_preview

    case = generate_case(seed, config=config, target_category=category)
    v = case.volume
    title = (
        f"{FAMILY} phantom seed {seed}: Agatston {case.reference.agatston:.1f} "
        f"({case.reference.risk_category}), "
        f"{v.manufacturer}, {v.slice_thickness_mm:g} mm / {v.spacing[0]:g} mm, {v.spacing[2]:.2f} mm pixels"
    )
    return render_preview(
        v, case.label, path, distractors=case.truth["distractors"], title=title, n_slices=n_slices, dpi=dpi
    )
