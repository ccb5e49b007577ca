"""Writing a cohort of phantom cases to disk (the layout of ``docs/phantom.md``).

Case ``i`` is generated from a seed derived from ``(seed, i)`` alone, so a
cohort written in one go, resumed after an interruption, or written with
another number of workers holds identical images. A case folder is complete
when its ``reference.json`` exists (written last, atomically); incomplete
folders are redone.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cacscore.errors import CacScoreError, InvalidInputError
from cacscore.io.atomic import atomic_open, write_json_atomic
from cacscore.phantom.generate import CATEGORIES, PhantomCase, PhantomConfig, generate_case
from cacscore.phantom.imaging import SCANNERS

if TYPE_CHECKING:
    from cacscore.phantom_sdf import SdfConfig

#: Generator families: the classic one (this package) and the independently written signed-distance
#: family (:mod:`cacscore.phantom_sdf`), which writes the same layout.
FAMILIES = ("classic", "sdf")
#: Image formats :func:`generate_cohort` writes, with the image and label names in a case folder.
FORMATS: dict[str, tuple[str, str]] = {
    "dicom": ("image", "label.nii.gz"),
    "nifti": ("image.nii.gz", "label.nii.gz"),
    "mha": ("image.mha", "label.mha"),
}
#: Columns of ``cases.csv``, in order.
MANIFEST_COLUMNS = [
    "case_id",
    "seed",
    "format",
    "image",
    "label",
    "points",
    "reference",
    "truth",
    "n_slices",
    "slice_increment_mm",
    "slice_thickness_mm",
    "pixel_spacing_mm",
    "agatston",
    "risk_category",
    "n_lesions",
    "distractors",
    "generator_version",
    "target_category",
    "manufacturer",
]


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` in a cohort with seed ``seed`` (independent of the other cases)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def case_target(index: int, balance: bool) -> str | None:
    """Risk category asked of case ``index``: round robin A-E when balancing, else None (natural)."""
    return CATEGORIES[index % len(CATEGORIES)] if balance else None


def case_id(index: int) -> str:
    """Folder name of case ``index`` (``case_0000``)."""
    return f"case_{index:04d}"


def points_csv(points: list[tuple[float, float, float, str]]) -> str:
    """``points.csv`` text: header ``x_mm,y_mm,z_mm,artery`` and one row per calcification (LPS mm)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["x_mm", "y_mm", "z_mm", "artery"])
    for x, y, z, artery in points:
        writer.writerow([f"{x:.3f}", f"{y:.3f}", f"{z:.3f}", artery])
    return buf.getvalue()


def dicom_tags(case: PhantomCase) -> dict[str, Any]:
    """Vendor-specific DICOM attributes of a case (model, kernel, FOV, exposure, padding)."""
    volume = case.volume
    scanner = SCANNERS[str(volume.manufacturer)]
    models = scanner["models"]
    tube_ma = 60 + (case.seed % 241)  # deterministic, 60-300 mA
    tags: dict[str, Any] = {
        "ManufacturerModelName": models[case.seed % len(models)],
        "ConvolutionKernel": scanner["kernel"],
        "PatientName": f"Phantom^{case.seed}",
        "ScanOptions": "CARDIAC",
        "ReconstructionDiameter": round(volume.shape[2] * volume.spacing[2], 2),
        "XRayTubeCurrent": tube_ma,
        "Exposure": round(tube_ma * 0.28),
        "CTDIvol": round(0.012 * tube_ma * 3.0, 2),
        "ContrastBolusAgent": "",
    }
    # Padding below air is unambiguous; a -1024 padding would also mask real air voxels.
    if int(scanner["outside_hu"]) < -1024:
        tags["PixelPaddingValue"] = int(scanner["outside_hu"]) + 1024
    return tags


def write_case(case: PhantomCase, folder: str | Path, *, fmt: str = "dicom") -> Path:
    """Write one generated case into ``folder`` (image, label, points, truth, then reference.json).

    Raises
    ------
    InvalidInputError
        If ``fmt`` is not one of :data:`FORMATS`.
    """
    from cacscore.io import write_dicom_series, write_mask, write_volume
    from cacscore.scoring import score_report

    if fmt not in FORMATS:
        raise InvalidInputError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    image_name, label_name = FORMATS[fmt]
    volume = case.volume
    if fmt == "dicom":
        write_dicom_series(
            volume,
            folder / image_name,
            manufacturer=volume.manufacturer,
            uid_seed=f"cacscore-phantom-{case.seed}",
            extra_tags=dicom_tags(case),
        )
    else:
        write_volume(volume, folder / image_name)
    write_mask(case.label, volume, folder / label_name)
    (folder / "points.csv").write_text(points_csv(case.points))
    write_json_atomic(folder / "truth.json", case.truth, indent=1)
    report = score_report(
        volume,
        case.reference,
        input_path=image_name,
        extra={
            "generator": {
                "name": "cacscore.phantom",
                "version": case.truth["generator_version"],
                "seed": case.seed,
            }
        },
    )
    write_json_atomic(folder / "reference.json", report, indent=1)
    return folder


def manifest_row(out: Path, index: int, fmt: str) -> dict[str, Any]:
    """The ``cases.csv`` row of a complete case, read back from its ``reference.json`` and ``truth.json``."""
    cid = case_id(index)
    folder = out / cid
    reference = json.loads((folder / "reference.json").read_text())
    truth = json.loads((folder / "truth.json").read_text())
    image_name, label_name = FORMATS[fmt]
    spacing = reference["input"]["spacing_zyx_mm"]
    kinds = sorted({d["type"] for d in truth.get("distractors", [])})  # hybrids have none of their own
    return {
        "case_id": cid,
        "seed": truth["seed"],
        "format": fmt,
        "image": f"{cid}/{image_name}",
        "label": f"{cid}/{label_name}",
        "points": f"{cid}/points.csv",
        "reference": f"{cid}/reference.json",
        "truth": f"{cid}/truth.json",
        "n_slices": reference["input"]["shape_zyx"][0],
        "slice_increment_mm": spacing[0],
        "slice_thickness_mm": reference["input"]["slice_thickness_mm"],
        "pixel_spacing_mm": spacing[2],
        "agatston": round(float(reference["agatston"]), 4),
        "risk_category": reference["risk_category"],
        "n_lesions": sum(1 for lesion in truth["lesions"] if lesion["survived"]),
        "distractors": ";".join(kinds),
        "generator_version": truth["generator_version"],
        "target_category": truth["target_category"] or "",
        "manufacturer": truth["imaging"]["manufacturer"],
    }


def _generate_and_write(
    out: str, index: int, seed: int, fmt: str, balance: bool, config: dict[str, Any]
) -> int:
    """Worker body: generate case ``index`` and write it (top level so that processes can run it)."""
    folder = Path(out) / case_id(index)
    if folder.exists():
        shutil.rmtree(folder)  # an incomplete case from an interrupted run
    case = generate_case(
        case_seed(seed, index),
        config=PhantomConfig.from_dict(config),
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
    if old.get("family", "classic") != "classic":
        raise CacScoreError(f"{out}: holds a cohort of the {old['family']!r} family; choose another --out")
    if isinstance(old.get("config"), dict):
        # A configuration key added later takes its default, which the older cohort was generated with.
        try:
            old["config"] = PhantomConfig.from_dict(old["config"]).to_dict()
        except (CacScoreError, TypeError) as exc:
            raise CacScoreError(
                f"{path}: invalid phantom configuration ({exc}); remove it or choose another --out"
            ) from None
    for key in ("seed", "format", "balance", "generator_version", "config"):
        if old.get(key) != settings.get(key):
            raise CacScoreError(
                f"{out}: holds a cohort generated with {key}={old.get(key)!r}, not {settings.get(key)!r}; "
                "resume with the same settings or choose another --out"
            )


def _existing_family(out: Path) -> str:
    """Family named in ``out/generation.json`` (cohorts written before families existed: classic)."""
    try:
        data = json.loads((out / "generation.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "classic"
    return str(data.get("family", "classic")) if isinstance(data, dict) else "classic"


def _stored_sdf_config(out: Path) -> SdfConfig | None:
    """The configuration an existing signed-distance cohort in ``out`` was written with, if any."""
    from cacscore.phantom_sdf import SdfConfig as _SdfConfig

    try:
        stored = json.loads((out / "generation.json").read_text()).get("config")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return _SdfConfig.from_dict(stored) if isinstance(stored, dict) else None


def write_manifest(out: Path, n: int, fmt: str) -> list[dict[str, Any]]:
    """Rewrite ``cases.csv`` from the complete case folders among the first ``n``; return its rows."""
    rows = [manifest_row(out, i, fmt) for i in range(n) if (out / case_id(i) / "reference.json").exists()]
    with atomic_open(out / "cases.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def generate_cohort(
    out: str | Path,
    n: int,
    seed: int,
    *,
    fmt: str = "dicom",
    balance: bool = False,
    workers: int = 1,
    progress: bool = True,
    config: PhantomConfig | SdfConfig | None = None,
    on_case: Callable[[int], None] | None = None,
    family: str | None = None,
) -> list[dict[str, Any]]:
    """Generate ``n`` cases into ``out`` (resumable) and write ``cases.csv`` and ``generation.json``.

    Parameters
    ----------
    out : str or Path
        Cohort folder, created if missing. Complete cases in it are kept.
    n : int
        Number of cases (``case_0000`` .. ``case_{n-1}``).
    seed : int
        Cohort seed; case ``i`` uses :func:`case_seed` ``(seed, i)``.
    fmt : {"dicom", "nifti", "mha"}
        Image format.
    balance : bool
        Ask case ``i`` for risk category ``"ABCDE"[i % 5]`` (about 20 % each).
    workers : int
        Processes generating in parallel (the files do not depend on it).
    progress : bool
        Show a progress bar on stderr.
    config : PhantomConfig, optional
        Generator settings (default: realistic 512 x 512).
    on_case : callable, optional
        Called with each case index once it is written (used by tests).
    family : {"classic", "sdf"}, optional
        Generator family (:data:`FAMILIES`); by default the family of the cohort already in ``out``
        (so that scripts resume any family's cohort), else classic. ``sdf`` hands the work to
        :func:`cacscore.phantom_sdf.generate_cohort` (``config`` an :class:`SdfConfig`, or that of ``out``).

    Returns
    -------
    list of dict
        The ``cases.csv`` rows.

    Raises
    ------
    InvalidInputError
        Bad ``n``, ``seed``, ``fmt`` or ``workers``.
    CacScoreError
        ``out`` is a file, or holds a cohort generated with other settings.
    KeyboardInterrupt
        Re-raised after ``cases.csv`` lists the cases finished so far.
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
    family = _existing_family(out) if family is None else family
    if family == "sdf":
        from cacscore.phantom_sdf import SdfConfig as _SdfConfig
        from cacscore.phantom_sdf import generate_cohort as generate_sdf_cohort

        sdf_config = config if isinstance(config, _SdfConfig) else _stored_sdf_config(out)
        return generate_sdf_cohort(
            out,
            n,
            seed,
            fmt=fmt,
            balance=balance,
            workers=workers,
            progress=progress,
            config=sdf_config,
            on_case=on_case,
        )
    if family != "classic":
        raise InvalidInputError(f"family must be one of {list(FAMILIES)}, got {family!r}")
    if config is not None and not isinstance(config, PhantomConfig):
        raise InvalidInputError("the classic family needs a PhantomConfig")
    config = config if config is not None else PhantomConfig()
    settings = {
        "n": n,
        "seed": seed,
        "format": fmt,
        "balance": balance,
        "generator_version": config.version_string,
        "config": config.to_dict(),
    }
    _check_settings(out, settings)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "generation.json", settings, indent=1)
    todo = [i for i in range(n) if not (out / case_id(i) / "reference.json").exists()]
    try:
        with progress_bar(progress, n, n - len(todo)) as advance:
            for index in run_cases(
                _generate_and_write, str(out), todo, seed, fmt, balance, config.to_dict(), workers
            ):
                advance()
                if on_case is not None:
                    on_case(index)
    finally:
        rows = write_manifest(out, n, fmt)
    return rows


def run_cases(
    generate_and_write: Callable[[str, int, int, str, bool, dict[str, Any]], int],
    out: str,
    todo: list[int],
    seed: int,
    fmt: str,
    balance: bool,
    config: dict[str, Any],
    workers: int,
) -> Iterator[int]:
    """Run ``generate_and_write(out, index, seed, fmt, balance, config)`` for each index of ``todo``.

    In ``workers`` processes (a module-level function, so that it pickles), at most two cases per worker in
    flight; yields each index as its case is written, in the order they finish. Shared by every phantom
    family's cohort writer.
    """
    if workers == 1 or len(todo) <= 1:
        for index in todo:
            yield generate_and_write(out, index, seed, fmt, balance, config)
        return
    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)))
    try:
        pending: set[Future[int]] = set()
        queue = list(todo)
        while queue or pending:
            while queue and len(pending) < 2 * workers:
                pending.add(pool.submit(generate_and_write, out, queue.pop(0), seed, fmt, balance, config))
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def progress_bar(
    enabled: bool, total: int, done: int, label: str = "phantom cases"
) -> Iterator[Callable[[], None]]:
    """Rich progress bar on stderr (or nothing); yields an ``advance()`` callable."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("cases", total=total, completed=done)
        yield lambda: bar.advance(task)
