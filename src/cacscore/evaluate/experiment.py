"""The Table 1 experiment of Gogin et al. 2021 on phantom cohorts.

Protocol (paper: J1 = 100, J1 + J2 = 422, J1 + J2 + AD = 783 training exams, a
20-exam validation split, a 98-exam test set balanced over the risk categories,
five members per training set):

1. A training cohort (natural category distribution) and a separate balanced
   test cohort, generated with different seeds.
2. Three nested training sets: the validation cases plus the first
   ``train_sizes[i]`` training cases of the cohort, so each set contains the
   previous one.
3. For each set, ``n_members`` members are trained (by ``train_fn``); then
   every member and the majority-vote ensemble of every set predict each
   test case (by ``predict_fn``; a case is read once), and both C-indices
   and the category accuracy are computed.
4. ``table.md``/``table.json``: per set, single-model mean and SD (ddof = 1)
   over the members, and the ensemble's values; ``figure3.png``: C-index vs
   accuracy of every model, as the paper's Figure 3.

Training and prediction are injected (``train_fn``, ``predict_fn``) so that
tests can run the protocol with a cheap fake; :mod:`cacscore.evaluate.table1_wiring`
holds the real ones (:mod:`cacscore.train`, :mod:`cacscore.model`) and the phantom
cohorts, :mod:`cacscore.evaluate.table1_report` the table and figure, and
:mod:`cacscore.cli.experiment` the command. Everything is resumable: the cohort generator keeps finished
cases, ``train_fn`` keeps finished members, and each tested case is written
to ``results/cases/<case_id>.json`` and not predicted again.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cacscore.errors import CacScoreError, CacScoreWarning, InvalidInputError
from cacscore.evaluate.metrics import category_accuracy, harrell_c, linear_weighted_kappa, paper_c_index
from cacscore.evaluate.runner import CaseEvaluation, CaseRefLike, evaluate_case
from cacscore.evaluate.table1_report import plot_figure3, table_markdown
from cacscore.io.atomic import write_json_atomic

#: Names of the three nested training sets, as in the paper.
SET_NAMES: tuple[str, ...] = ("J1", "J1 + J2", "J1 + J2 + AD")
TABLE_SCHEMA = "cacscore.table1/1"


@dataclass(frozen=True)
class Table1Scale:
    """Sizes and training budget of one run of the experiment.

    Attributes
    ----------
    name : str
    train_sizes : tuple of 3 int
        Training cases of the three nested sets (validation cases not included).
    n_val : int
        Validation cases (in every set).
    n_test : int
        Balanced test cases.
    n_members : int
        Members per training set.
    epochs, steps_per_epoch, batch : int
        Training budget per member.
    patch : tuple of 3 int
        Training patch size (z, y, x) in low-resolution voxels.
    max_minutes : float or None
        Time limit for training one set's members together (None: the epochs decide).
    """

    name: str
    train_sizes: tuple[int, int, int]
    n_val: int
    n_test: int
    n_members: int
    epochs: int
    steps_per_epoch: int
    batch: int
    patch: tuple[int, int, int]
    max_minutes: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


SCALES: dict[str, Table1Scale] = {
    # Minutes on a laptop CPU: checks the machinery, not the science.
    "tiny": Table1Scale("tiny", (4, 6, 8), 2, 5, 5, 1, 2, 1, (32, 48, 48)),
    # 342 s on one H200 with 16 cores (measured): each set's five members get 1.2 minutes together.
    "small": Table1Scale("small", (20, 50, 100), 10, 50, 5, 30, 40, 2, (48, 96, 96), max_minutes=1.2),
    # The paper's sizes; a GPU is needed.
    "paper": Table1Scale("paper", (100, 422, 783), 20, 98, 5, 40, 200, 2, (64, 96, 96)),
}


@dataclass(frozen=True)
class TrainRequest:
    """What ``train_fn`` must train: ``n_members`` members on ``data_dir`` into ``model_dir``.

    ``data_dir`` is a phantom-layout dataset (``cases.csv``) holding the
    validation cases (``val_ids``) and the training cases (``train_ids``).
    ``train_fn`` must be resumable: when called again on a ``model_dir`` with
    finished members, it keeps them.
    """

    data_dir: Path
    model_dir: Path
    train_ids: tuple[str, ...]
    val_ids: tuple[str, ...]
    n_members: int
    seed: int
    scale: Table1Scale
    device: str


@dataclass(frozen=True)
class MemberPredictions:
    """Predicted label masks of one case: one per member and the ensemble's (majority vote)."""

    members: list[np.ndarray]
    ensemble: np.ndarray


TrainFn = Callable[[TrainRequest], None]
#: model_dir -> (loaded case -> MemberPredictions)
PredictFn = Callable[[Path], Callable[[Any], MemberPredictions]]
#: Progress events: ("train", set index), ("test", n cases), ("case", done, total).
EventFn = Callable[..., None]


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data, indent=2, allow_nan=False)


def write_subset_manifest(folder: Path, cases: Sequence[Any]) -> Path:
    """Write ``folder/cases.csv`` listing ``cases`` (CaseRef with image and reference paths), phantom layout.

    Paths are written relative to ``folder`` when possible so that the
    experiment folder can be moved.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for ref in cases:
        if ref.reference_path is None:
            raise InvalidInputError(
                f"case {ref.case_id}: no reference label; the experiment needs labelled cases"
            )
        rows.append(
            {
                "case_id": ref.case_id,
                "image": os.path.relpath(ref.image_path, folder),
                "label": os.path.relpath(ref.reference_path, folder),
            }
        )
    path = folder / "cases.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case_id", "image", "label"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def model_scores(evaluations: Sequence[CaseEvaluation]) -> dict[str, float | None]:
    """C-indices (Harrell's and the paper's formula), accuracy and kappa of one model on the test cases."""
    ref = [e.ref_category for e in evaluations]
    pred = [e.pred_category for e in evaluations]
    values = {
        "harrell_c": harrell_c(ref, pred),
        "paper_c_index": paper_c_index(ref, pred),
        "accuracy": category_accuracy(ref, pred),
        "kappa_linear": linear_weighted_kappa(ref, pred),
    }
    return {k: None if math.isnan(v) else float(v) for k, v in values.items()}


def _mean_sd(values: Sequence[float | None]) -> dict[str, float | None]:
    defined = [v for v in values if v is not None]
    return {
        "mean": float(np.mean(defined)) if defined else None,
        "sd": float(np.std(defined, ddof=1)) if len(defined) > 1 else None,
    }


#: Per-process state of the test workers: one predictor per training set.
_WORKER_PREDICTORS: list[Callable[[Any], MemberPredictions]] = []


def _init_worker(predict_fn: PredictFn, model_dirs: list[Path], torch_threads: int) -> None:
    if torch_threads:
        # Reading-quality warnings (e.g. overlapping reconstruction) cannot reach the parent's
        # warning printer from a worker process; the cohort is ours and its warnings are known.
        warnings.simplefilter("ignore", CacScoreWarning)
        import torch

        torch.set_num_threads(torch_threads)
    _WORKER_PREDICTORS[:] = [predict_fn(d) for d in model_dirs]


def _test_case(ref: Any, n_members: int) -> dict[str, Any]:
    """Every set's members and ensemble on one test case (uses the predictors of :func:`_init_worker`).

    Returns ``{"case_id", "sets": [{"members": [CaseEvaluation dict...], "ensemble": dict}, ...]}``
    or ``{"case_id", "failure": reason}``.
    """
    try:
        case = ref.load()
        if case.label is None:
            raise ValueError("case has no reference label mask")
        sets = []
        for predictor in _WORKER_PREDICTORS:
            predictions = predictor(case)
            if len(predictions.members) != n_members:
                raise ValueError(f"{len(predictions.members)} member predictions, expected {n_members}")
            sets.append(
                {
                    "members": [
                        evaluate_case(ref.case_id, case.volume, case.label, m).to_dict()
                        for m in predictions.members
                    ],
                    "ensemble": evaluate_case(
                        ref.case_id, case.volume, case.label, predictions.ensemble
                    ).to_dict(),
                }
            )
        return {"case_id": ref.case_id, "sets": sets}
    # A failing test case is reported in the table (and excluded for every model alike), not fatal.
    except Exception as exc:  # noqa: BLE001
        return {"case_id": ref.case_id, "failure": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}


def _test_all(
    out: Path,
    test_cases: Sequence[CaseRefLike],
    model_dirs: list[Path],
    n_members: int,
    predict_fn: PredictFn,
    workers: int,
    emit: EventFn,
) -> list[dict[str, Any]]:
    """Test every case on every set's models; finished cases are kept in ``results/cases/`` for resuming."""
    case_dir = out / "results" / "cases"
    done: dict[str, dict[str, Any]] = {}
    todo = []
    for ref in test_cases:
        path = case_dir / f"{ref.case_id}.json"
        if path.is_file():
            done[ref.case_id] = json.loads(path.read_text(encoding="utf-8"))
        else:
            todo.append(ref)

    def keep(record: dict[str, Any]) -> None:
        if "failure" not in record:
            _write_json(case_dir / f"{record['case_id']}.json", record)
        done[record["case_id"]] = record
        emit("case", len(done), len(test_cases))

    if todo and workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: CUDA and forked PyTorch do not mix; each worker loads the models once.
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(predict_fn, model_dirs, threads),
        ) as pool:
            for record in pool.map(_test_case, todo, [n_members] * len(todo)):
                keep(record)
    elif todo:
        _init_worker(predict_fn, model_dirs, 0)
        for ref in todo:
            keep(_test_case(ref, n_members))
    return [done[ref.case_id] for ref in test_cases]


def _set_result(index: int, request: TrainRequest, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One set's row: member and ensemble scores over the test cases that did not fail."""
    failures = [{"case_id": r["case_id"], "reason": r["failure"]} for r in records if "failure" in r]
    good = [r["sets"][index] for r in records if "failure" not in r]
    if not good:
        # Saving this would make a resumed run keep a set without any result.
        raise CacScoreError(
            f"training set {SET_NAMES[index]}: every test case failed; first: {failures[0]['case_id']}: "
            f"{failures[0]['reason']}"
        )
    member_evals = [
        [CaseEvaluation.from_dict(g["members"][k]) for g in good] for k in range(request.n_members)
    ]
    ensemble_evals = [CaseEvaluation.from_dict(g["ensemble"]) for g in good]
    members = [model_scores(evals) for evals in member_evals]
    return {
        "set": SET_NAMES[index],
        "index": index,
        "n_train": len(request.train_ids),
        "n_val": len(request.val_ids),
        "train_ids": list(request.train_ids),
        "val_ids": list(request.val_ids),
        "model_dir": str(request.model_dir),
        "n_test": len(records),
        "n_evaluated": len(good),
        "failures": failures,
        "members": members,
        "single": {
            key: _mean_sd([m[key] for m in members]) for key in ("harrell_c", "paper_c_index", "accuracy")
        },
        "ensemble": model_scores(ensemble_evals),
        "ensemble_cases": [e.to_dict() for e in ensemble_evals],
    }


def run_table1(
    out: Path,
    *,
    train_cases: Sequence[Any],
    test_cases: Sequence[CaseRefLike],
    scale: Table1Scale,
    train_fn: TrainFn,
    predict_fn: PredictFn,
    device: str = "auto",
    seed: int = 0,
    workers: int = 1,
    on_event: EventFn | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the experiment in ``out`` and write ``table.json``, ``table.md`` and ``figure3.png``.

    All sets are trained first; then each test case is read once and
    predicted by every member and ensemble of every set.

    Parameters
    ----------
    out : Path
        Experiment folder: ``sets/``, ``models/``, ``results/`` and the table files.
    train_cases : sequence of CaseRef
        Training cohort; the first ``scale.n_val`` cases are the validation
        cases, the next ``scale.train_sizes[-1]`` the training cases.
    test_cases : sequence of CaseRef
        Test cohort (balanced over A-E in the paper).
    scale : Table1Scale
    train_fn, predict_fn : callables
        See :class:`TrainRequest` and :class:`MemberPredictions`. With
        ``workers`` > 1, ``predict_fn`` and the cases must be picklable.
    device : str
        Passed to ``train_fn``.
    seed : int
        Base seed of the members (set ``i`` uses ``seed + 100 * i``).
    workers : int
        Processes testing cases in parallel (1: in this process).
    on_event : callable, optional
        Progress events.
    provenance : dict, optional
        Extra facts for ``table.json`` (hardware, cohort seeds, generator version).

    Returns
    -------
    dict
        The ``table.json`` content.

    Raises
    ------
    InvalidInputError
        Too few training cases for the scale, or an empty test cohort.
    CacScoreError
        Every test case failed for a set.
    """
    emit: EventFn = on_event or (lambda *args: None)
    need = scale.n_val + scale.train_sizes[-1]
    if len(train_cases) < need:
        raise InvalidInputError(
            f"scale {scale.name!r} needs {need} training-cohort cases ({scale.n_val} validation + "
            f"{scale.train_sizes[-1]} training), got {len(train_cases)}"
        )
    if list(scale.train_sizes) != sorted(scale.train_sizes) or scale.train_sizes[0] < 1:
        raise InvalidInputError(f"train_sizes must be increasing positive sizes, got {scale.train_sizes}")
    if not test_cases:
        raise InvalidInputError("the test cohort is empty")
    val = list(train_cases[: scale.n_val])
    pool = list(train_cases[scale.n_val : need])
    requests = []
    for i, size in enumerate(scale.train_sizes):
        subset = pool[:size]
        data_dir = out / "sets" / f"set_{i}"
        write_subset_manifest(data_dir, val + subset)
        request = TrainRequest(
            data_dir=data_dir,
            model_dir=out / "models" / f"set_{i}",
            train_ids=tuple(c.case_id for c in subset),
            val_ids=tuple(c.case_id for c in val),
            n_members=scale.n_members,
            seed=seed + 100 * i,
            scale=scale,
            device=device,
        )
        emit("train", i)
        train_fn(request)
        requests.append(request)
    emit("test", len(test_cases))
    records = _test_all(
        out, test_cases, [r.model_dir for r in requests], scale.n_members, predict_fn, workers, emit
    )
    results = []
    for i, request in enumerate(requests):
        result = _set_result(i, request, records)
        _write_json(out / "results" / f"set_{i}.json", result)
        results.append(result)
    table = {
        "schema": TABLE_SCHEMA,
        "scale": scale.to_dict(),
        "date": datetime.date.today().isoformat(),
        "hardware": provenance.get("hardware") if provenance else None,
        "provenance": provenance or {},
        "test_reference_counts": _reference_counts(results),
        "sets": [
            {k: v for k, v in r.items() if k not in ("ensemble_cases", "train_ids", "val_ids")}
            for r in results
        ],
        "c_index_note": (
            "harrell_c: Harrell's C over pairs with different reference categories, prediction ties 1/2 "
            "(comparable with the paper's reported values); paper_c_index: the formula printed in the paper, "
            "concordant pairs / (n choose 2), which cannot reach 1 with tied reference categories."
        ),
    }
    _write_json(out / "table.json", table)
    (out / "table.md").write_text(table_markdown(table), encoding="utf-8")
    plot_figure3(out / "figure3.png", table)
    return table


def _reference_counts(results: Sequence[dict[str, Any]]) -> dict[str, int]:
    if not results:
        return {}
    counts: dict[str, int] = {}
    for case in results[0]["ensemble_cases"]:
        counts[case["ref_category"]] = counts.get(case["ref_category"], 0) + 1
    return dict(sorted(counts.items()))
