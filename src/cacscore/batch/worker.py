"""The task a Dask worker runs for one series: read, check, score, write the case folder, return the row.

The ensemble is loaded once per worker process (:func:`cached_ensemble`) and
reused by every task it runs. Reading, the domain check and scoring are the
functions ``cacscore score`` runs (:mod:`cacscore.pipeline`), so a batch row
and ``cacscore score`` agree.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cacscore import __version__
from cacscore.errors import CacScoreError, CacScoreWarning

if TYPE_CHECKING:
    from cacscore.model.ensemble import Ensemble

#: Files written into ``OUT/cases/<case_id>`` for a scored series.
CASE_PRODUCTS = ("score.json", "lesions.csv", "prediction.nii.gz")


@functools.lru_cache(maxsize=4)
def cached_ensemble(model_dir: str | None, torch_threads: int, precision: str | None = None) -> Ensemble:
    """The ensemble of ``model_dir`` (None: the default model) in ``precision``, loaded once per process.

    Also sets torch's thread count: a worker's tasks share the machine's cores
    with the other workers, so each uses ``torch_threads``, not every core.

    Raises
    ------
    ModelFolderError
        If the model folder is missing or incomplete.
    """
    import torch

    from cacscore.model import load_ensemble

    torch.set_num_threads(max(1, torch_threads))
    # The report keeps every warning; printed by a worker they would only break the driver's progress bar.
    warnings.filterwarnings("ignore", category=CacScoreWarning)
    return load_ensemble(model_dir, precision=precision)


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def write_case(out: Path, case_id: str, files: dict[str, bytes | Any]) -> Path:
    """Write a case folder atomically (:func:`cacscore.io.atomic.atomic_folder`) as ``out/cases/<case_id>``.

    A kill leaves either the previous folder, the new one, or a hidden ``.<case_id>.<random>.tmp``
    folder that no row points to (removed by the next batch); never a half-written case. A rerun of a
    failed or changed series replaces the old folder.

    Parameters
    ----------
    files : dict
        File name to bytes, or to a callable ``f(path)`` that writes the file.
    """
    from cacscore.io.atomic import atomic_folder

    cases = out / "cases"
    cases.mkdir(parents=True, exist_ok=True)
    with atomic_folder(cases / case_id) as temporary:
        for name, content in files.items():
            if isinstance(content, bytes):
                (temporary / name).write_bytes(content)
            else:
                content(temporary / name)
    return cases / case_id


def _score_columns(report: dict[str, Any]) -> dict[str, Any]:
    from cacscore.batch.db import ARTERY_SCORES

    row: dict[str, Any] = {
        "agatston": report["agatston"],
        "volume_mm3": report["volume_mm3"],
        "mass_mg": report["mass_mg"],
        "n_lesions": len(report["lesions"]),
        "n_vessels": report["n_vessels"],
        "risk_category": report["risk_category"],
        "cac_drs": report["cac_drs"],
    }
    for artery, scores in report["arteries"].items():
        for score in ARTERY_SCORES:
            row[f"{artery}_{score}"] = scores[score]
    return row


def score_series(
    item: dict[str, Any],
    out: str,
    *,
    model_dir: str | None = None,
    precision: str | None = None,
    skip_domain_check: bool = False,
    skip_unreadable: bool = False,
    torch_threads: int | None = None,
) -> dict[str, Any]:
    """Score one series and write its case folder; never raises for a bad series.

    Parameters
    ----------
    item : dict
        ``case_id``, ``path``, ``series_uid``, ``content_hash``, ``key`` of a
        :class:`~cacscore.batch.inputs.BatchItem`.
    out : str
        The batch's output folder (case folders go to ``out/cases``).
    model_dir : str, optional
        Model folder; default ``$CACSCORE_MODEL_DIR`` or the shipped model.
    precision : {"fp32", "bf16"}, optional
        Inference precision; default the model's (recorded in the row's ``model_precision``).
    skip_domain_check : bool
        Score scans the domain check refuses (the row says ``skipped``).
    skip_unreadable : bool
        Read a DICOM series without its unreadable files (named in the row's warnings), as
        ``cacscore score --skip-unreadable``.
    torch_threads : int, optional
        Torch threads per task; default the cores divided by the worker's threads.

    Returns
    -------
    dict
        The database row (:data:`cacscore.batch.db.COLUMNS`): ``status`` ``done``, or ``failed`` with a
        one-line ``error`` naming the path.
    """
    from cacscore.anatomy.domain import DomainError
    from cacscore.pipeline import read_and_check, score_checked

    started = time.perf_counter()
    path = Path(item["path"])
    row: dict[str, Any] = {
        "key": item["key"],
        "case_id": item["case_id"],
        "path": item["path"],
        "series_uid_requested": item["series_uid"],
        "content_hash": item["content_hash"],
        "worker": _worker_name(),
        "cacscore_version": __version__,
    }
    read_s = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacScoreWarning)
            try:
                volume, check = read_and_check(
                    path,
                    series=item["series_uid"],
                    skip_unreadable=skip_unreadable,
                    skip_domain_check=skip_domain_check,
                )
            except DomainError:
                row["domain_outcome"] = "refused"
                raise
            read_s = time.perf_counter() - started
            row["domain_outcome"] = "skipped" if check.skipped else "passed"
            row["domain"] = check.to_dict()
            threads = torch_threads or max(1, (os.cpu_count() or 1) // _worker_threads())
            ensemble = cached_ensemble(model_dir, threads, precision)
            result, extra, labels = score_checked(volume, check, ensemble)
            files = _case_files(volume, result, path, extra, labels)
        report = json.loads(files["score.json"])
        write_case(Path(out), item["case_id"], files)
        row.update(
            _score_columns(report),
            status="done",
            series_uid=volume.series_uid,
            study_uid=volume.study_uid,
            model_name=extra["model"].get("name"),
            model_version=str(extra["model"].get("version")),
            model_precision=extra["model"].get("precision"),
            warnings=report["warnings"],
        )
    except CacScoreError as exc:
        message = str(exc)
        row.update(
            status="failed", error=_one_line(message if str(path) in message else f"{path}: {message}")
        )
    except Exception as exc:  # noqa: BLE001 - a bad series must never stop the batch; the row names it
        row.update(status="failed", error=_one_line(f"{path}: unexpected {type(exc).__name__}: {exc}"))
    finished = time.perf_counter()
    row.update(
        read_s=read_s,
        score_s=None if read_s is None or row["status"] != "done" else finished - started - read_s,
        total_s=finished - started,
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        worker_peak_mib=peak_memory_mib(),
    )
    return row


def peak_memory_mib() -> float | None:
    """Peak resident memory of this process so far, MiB (None where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1


def _case_files(volume: Any, result: Any, path: Path, extra: dict[str, Any], labels: Any) -> dict[str, Any]:
    from cacscore.io import write_mask
    from cacscore.scoring import lesions_csv, score_report

    report = score_report(volume, result, path, extra=extra)
    return {
        "score.json": (json.dumps(report, indent=2) + "\n").encode(),
        "lesions.csv": lesions_csv(report).encode(),
        "prediction.nii.gz": lambda target: write_mask(labels, volume, target),
    }
