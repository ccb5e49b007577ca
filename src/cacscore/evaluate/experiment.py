"""The Table 1 experiment of Gogin et al. 2021 on phantom cohorts.

Protocol (paper: J1 = 100, J1 + J2 = 422, J1 + J2 + AD = 783 training exams, a
20-exam validation split, a 98-exam test set balanced over the risk categories,
five members per training set):

1. A training cohort (natural category distribution) and a separate balanced
   test cohort, generated with different seeds.
2. Three nested training sets: the validation cases plus the first
   ``train_sizes[i]`` training cases of the cohort, so each set contains the
   previous one.
3. For each set, ``n_members`` members are trained (by ``train_fn``), every
   member and the majority-vote ensemble predict the test cohort (by
   ``predict_fn``), and both C-indices and the category accuracy are computed.
4. ``table.md``/``table.json``: per set, single-model mean and SD (ddof = 1)
   over the members, and the ensemble's values; ``figure3.png``: C-index vs
   accuracy of every model, as the paper's Figure 3.

Training and prediction are injected (``train_fn``, ``predict_fn``) so that
tests can run the protocol with a cheap fake; :func:`run_table1_cli` wires the
real ones (:mod:`cacscore.train`, :mod:`cacscore.model`) and the phantom
generator. Everything is resumable: each set's results are written to
``results/set_<i>.json`` when the set is finished and kept on the next run;
training resumes its finished members.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cacscore.errors import CacScoreError, InvalidInputError
from cacscore.evaluate.metrics import category_accuracy, harrell_c, linear_weighted_kappa, paper_c_index
from cacscore.evaluate.report import atomic_write
from cacscore.evaluate.runner import CaseEvaluation, CaseFailure, CaseRefLike, evaluate_case

#: Names of the three nested training sets, as in the paper.
SET_NAMES: tuple[str, ...] = ("J1", "J1 + J2", "J1 + J2 + AD")
#: The paper's Table 1 (Gogin et al. 2021), for the comparison row of table.md.
PAPER_TABLE1: dict[str, dict[str, Any]] = {
    "J1": {"n_train": 100, "single_c": (0.932, 0.008), "single_acc": (0.832, 0.010), "ensemble": (0.939, 0.847)},
    "J1 + J2": {"n_train": 422, "single_c": (0.943, 0.005), "single_acc": (0.849, 0.015), "ensemble": (0.944, 0.847)},
    "J1 + J2 + AD": {
        "n_train": 783, "single_c": (0.949, 0.006), "single_acc": (0.864, 0.010), "ensemble": (0.951, 0.857),
    },
}
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

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


SCALES: dict[str, Table1Scale] = {
    # Minutes on a laptop CPU: checks the machinery, not the science.
    "tiny": Table1Scale("tiny", (4, 6, 8), 2, 5, 5, 1, 2, 1, (32, 48, 48)),
    # About an hour on a 16-core machine or a GPU.
    "small": Table1Scale("small", (20, 50, 100), 10, 50, 5, 8, 40, 2, (48, 96, 96)),
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
#: Progress events: ("set", i, name), ("train", i), ("case", i, done, total), ("set_done", i).
EventFn = Callable[..., None]


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_subset_manifest(folder: Path, cases: Sequence[Any]) -> Path:
    """Write ``folder/cases.csv`` listing ``cases`` (CaseRef with image and reference paths), phantom layout.

    Paths are written relative to ``folder`` when possible so that the
    experiment folder can be moved.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for ref in cases:
        if ref.reference_path is None:
            raise InvalidInputError(f"case {ref.case_id}: no reference label; the experiment needs labelled cases")
        rows.append({
            "case_id": ref.case_id,
            "image": os.path.relpath(ref.image_path, folder),
            "label": os.path.relpath(ref.reference_path, folder),
        })
    path = folder / "cases.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case_id", "image", "label"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def model_scores(evaluations: Sequence[CaseEvaluation]) -> dict[str, float | None]:
    """C-indices (Harrell's and the paper's printed formula), accuracy and kappa of one model on the test cases."""
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


def run_set(
    index: int,
    request: TrainRequest,
    test_cases: Sequence[CaseRefLike],
    *,
    train_fn: TrainFn,
    predict_fn: PredictFn,
    on_event: EventFn,
) -> dict[str, Any]:
    """Train one set's members, evaluate every member and the ensemble on the test cases."""
    on_event("train", index)
    train_fn(request)
    predictor = predict_fn(request.model_dir)
    member_evals: list[list[CaseEvaluation]] = [[] for _ in range(request.n_members)]
    ensemble_evals: list[CaseEvaluation] = []
    failures: list[CaseFailure] = []
    for done, ref in enumerate(test_cases, start=1):
        try:
            case = ref.load()
            if case.label is None:
                raise ValueError("case has no reference label mask")
            predictions = predictor(case)
            if len(predictions.members) != request.n_members:
                raise ValueError(f"{len(predictions.members)} member predictions, expected {request.n_members}")
            member_case = [evaluate_case(ref.case_id, case.volume, case.label, m) for m in predictions.members]
            ensemble_case = evaluate_case(ref.case_id, case.volume, case.label, predictions.ensemble)
        # A failing test case is reported in the results (and excluded for every model alike), not fatal.
        except Exception as exc:  # noqa: BLE001
            failures.append(CaseFailure(ref.case_id, f"{type(exc).__name__}: {' '.join(str(exc).split())}"))
        else:
            for k, e in enumerate(member_case):
                member_evals[k].append(e)
            ensemble_evals.append(ensemble_case)
        on_event("case", index, done, len(test_cases))
    if not ensemble_evals:
        # Saving this would make a resumed run keep a set without any result.
        raise CacScoreError(
            f"training set {SET_NAMES[index]}: every test case failed; first: {failures[0].case_id}: {failures[0].reason}"
        )
    members = [model_scores(evals) for evals in member_evals]
    return {
        "set": SET_NAMES[index],
        "index": index,
        "n_train": len(request.train_ids),
        "n_val": len(request.val_ids),
        "train_ids": list(request.train_ids),
        "val_ids": list(request.val_ids),
        "model_dir": str(request.model_dir),
        "n_test": len(test_cases),
        "n_evaluated": len(ensemble_evals),
        "failures": [f.to_dict() for f in failures],
        "members": members,
        "single": {key: _mean_sd([m[key] for m in members]) for key in ("harrell_c", "paper_c_index", "accuracy")},
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
    on_event: EventFn | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the experiment in ``out`` and write ``table.json``, ``table.md`` and ``figure3.png``.

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
        See :class:`TrainRequest` and :class:`MemberPredictions`.
    device : str
        Passed to ``train_fn``.
    seed : int
        Base seed of the members (set ``i`` uses ``seed + 100 * i``).
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
    pool = list(train_cases[scale.n_val: need])
    results = []
    for i, size in enumerate(scale.train_sizes):
        result_path = out / "results" / f"set_{i}.json"
        emit("set", i, SET_NAMES[i])
        if result_path.is_file():
            results.append(json.loads(result_path.read_text(encoding="utf-8")))
            emit("set_done", i)
            continue
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
        result = run_set(i, request, test_cases, train_fn=train_fn, predict_fn=predict_fn, on_event=emit)
        _write_json(result_path, result)
        results.append(result)
        emit("set_done", i)
    table = {
        "schema": TABLE_SCHEMA,
        "scale": scale.to_dict(),
        "date": datetime.date.today().isoformat(),
        "hardware": provenance.get("hardware") if provenance else None,
        "provenance": provenance or {},
        "test_reference_counts": _reference_counts(results),
        "sets": [{k: v for k, v in r.items() if k not in ("ensemble_cases", "train_ids", "val_ids")} for r in results],
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


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _mean_sd_text(stats: dict[str, float | None]) -> str:
    text = _f(stats["mean"])
    return text if stats["sd"] is None else f"{text} (std={_f(stats['sd'])})"


def table_markdown(table: dict[str, Any]) -> str:
    """Table 1 as Markdown: our rows, then the paper's for comparison."""
    scale = table["scale"]
    n_test = table["sets"][0]["n_evaluated"] if table["sets"] else 0
    hardware = table.get("hardware") or "not recorded"
    lines = [
        f"# Table 1 on phantoms (scale `{scale['name']}`)",
        "",
        (f"Date {table['date']}; hardware: {hardware}. Training sets of {', '.join(str(s) for s in scale['train_sizes'])} "
        f"cases (+ {scale['n_val']} validation cases), {scale['n_members']} members each, "
        f"{scale['epochs']} epoch(s) x {scale['steps_per_epoch']} steps of batch {scale['batch']}; "
        f"test cohort of {n_test} evaluated cases (reference categories {table['test_reference_counts']})."),
        "For 1 model, mean and sample SD (ddof = 1) across the members.",
        "",
        "| Method | C-index (Harrell) | C-index (paper formula) | category accuracy |",
        "|---|---|---|---|",
    ]
    for s in table["sets"]:
        single = s["single"]
        lines.append(
            f"| 1 model trained on {s['set']} (n = {s['n_train']}) (average performance) | "
            f"{_mean_sd_text(single['harrell_c'])} | {_mean_sd_text(single['paper_c_index'])} | "
            f"{_mean_sd_text(single['accuracy'])} |"
        )
        ens = s["ensemble"]
        lines.append(
            f"| Ensemble of {len(s['members'])} models trained on {s['set']} | {_f(ens['harrell_c'])} | "
            f"{_f(ens['paper_c_index'])} | {_f(ens['accuracy'])} |"
        )
    failures = [f for s in table["sets"] for f in s["failures"]]
    if failures:
        lines += ["", f"Failed test cases (excluded for every model of that set): {len(failures)}"]
        lines += [f"- {s['set']}: {f['case_id']}: {f['reason']}" for s in table["sets"] for f in s["failures"]]
    lines += [
        "",
        ("Paper (Gogin et al. 2021, Table 1; real CT, 98 test exams; the printed C-index formula cannot give these "
        "values, so they are read as Harrell's C):"),
        "",
        "| Method | C-index | category accuracy |",
        "|---|---|---|",
    ]
    for name, row in PAPER_TABLE1.items():
        lines.append(
            f"| 1 model trained on {name} (n = {row['n_train']}) | {row['single_c'][0]:.3f} (std={row['single_c'][1]:.3f}) "
            f"| {row['single_acc'][0]:.3f} (std={row['single_acc'][1]:.3f}) |"
        )
        lines.append(f"| Ensemble of 5 models trained on {name} | {row['ensemble'][0]:.3f} | {row['ensemble'][1]:.3f} |")
    lines += ["", "![C-index vs accuracy](figure3.png)", ""]
    return "\n".join(lines)


def plot_figure3(path: Path, table: dict[str, Any]) -> Path:
    """C-index (Harrell) vs category accuracy of every single model and ensemble (the paper's Figure 3)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 5.2), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = ("#2c7bb6", "#fdae61", "#d7191c")
    markers = ("o", "s", "^")
    # Later sets are drawn smaller on top, so coinciding models stay visible as nested rings.
    for i, (s, colour) in enumerate(zip(table["sets"], colours, strict=False)):
        points = [(m["accuracy"], m["harrell_c"]) for m in s["members"] if None not in (m["accuracy"], m["harrell_c"])]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, s=90 - 25 * i, marker=markers[i], facecolor="none", edgecolor=colour, linewidth=1.6,
                       label=f"1 model, {s['set']} (n = {s['n_train']})")
        ens = s["ensemble"]
        if None not in (ens["accuracy"], ens["harrell_c"]):
            ax.scatter([ens["accuracy"]], [ens["harrell_c"]], s=380 - 110 * i, marker="*", color=colour,
                       edgecolor="black", linewidth=0.8, label=f"ensemble of {len(s['members'])}, {s['set']}")
    ax.set_xlabel("category accuracy", fontsize=11)
    ax.set_ylabel("C-index (Harrell)", fontsize=11)
    n_test = table["sets"][0]["n_evaluated"] if table["sets"] else 0
    ax.set_title(f"C-index vs accuracy on the test cohort (n = {n_test}), scale {table['scale']['name']}",
                 fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path)
    return path


def hardware_description() -> str:
    """One line describing this machine (CPU count, platform, CUDA device if any)."""
    text = f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores"
    try:
        import torch

        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:  # torch is a dependency; this only guards odd installs
        pass
    return text


def train_with_cacscore(request: TrainRequest) -> None:
    """The real ``train_fn``: :func:`cacscore.train.train_model`, resuming finished members.

    The validation split is drawn by :func:`cacscore.train.split_cases` from
    the set's cases (``len(request.val_ids)`` of them, capped at a fifth), so
    it is not pinned to ``request.val_ids``; see ``docs/evaluation.md``.
    """
    from cacscore.train import TrainConfig, train_model

    s = request.scale
    config = TrainConfig(
        data=request.data_dir, out=request.model_dir, members=request.n_members, epochs=s.epochs,
        steps_per_epoch=s.steps_per_epoch, batch=s.batch, patch=s.patch, val_cases=len(request.val_ids),
        seed=request.seed, device=request.device, name=f"table1-{s.name}-{request.data_dir.name}",
        workers=os.cpu_count() or 1,
    )
    train_model(config, resume=(request.model_dir / "plan.json").is_file())


def predict_with_cacscore(model_dir: Path) -> Callable[[Any], MemberPredictions]:
    """The real ``predict_fn``: one forward pass per member, each member alone and the majority vote."""
    from cacscore.model import load_ensemble

    ensemble = load_ensemble(model_dir)

    def predict(case: Any) -> MemberPredictions:
        image, grid = ensemble.preprocess(case.volume)
        probabilities = list(ensemble.member_probabilities(image))
        hu = case.volume.hu
        members = [ensemble.combine([p], image=image, grid=grid, hu=hu).labels for p in probabilities]
        return MemberPredictions(members, ensemble.combine(probabilities, image=image, grid=grid, hu=hu).labels)

    return predict


#: Seeds of the generated cohorts: training and test never share a seed.
TRAIN_COHORT_SEED = 1000
TEST_COHORT_SEED = 2000


def make_cohort(folder: Path, n: int, seed: int, *, balance: bool, progress: bool = False) -> list[Any]:
    """Generate (or complete) a NIfTI phantom cohort on all CPU cores and list its cases.

    Resumable: the generator keeps complete cases already in ``folder``.
    """
    from cacscore.datasets import list_cases
    from cacscore.phantom.cohort import generate_cohort

    generate_cohort(folder, n, seed, fmt="nifti", balance=balance, workers=os.cpu_count() or 1, progress=progress)
    return list_cases(folder)[:n]


def run_table1_cli(out: Path, *, scale: str, device: str, progress: bool) -> str:
    """``cacscore experiment table1``: generate the cohorts, run the experiment, return ``table.md``'s text.

    Raises
    ------
    InvalidInputError
        Unknown scale.
    """
    from rich.progress import Progress

    from cacscore.cli.common import err_console

    if scale not in SCALES:
        raise InvalidInputError(f"unknown scale {scale!r}; use one of {', '.join(SCALES)}")
    spec = SCALES[scale]
    out.mkdir(parents=True, exist_ok=True)
    train_cases = make_cohort(out / "data" / "train", spec.n_val + spec.train_sizes[-1], TRAIN_COHORT_SEED,
                              balance=False, progress=progress)
    test_cases = make_cohort(out / "data" / "test", spec.n_test, TEST_COHORT_SEED, balance=True, progress=progress)
    with Progress(console=err_console, disable=not progress, transient=True) as bar:
        task = bar.add_task("training", total=None)

        def on_event(kind: str, *args: Any) -> None:
            if kind == "train":
                bar.update(task, description=f"training {SET_NAMES[args[0]]}: {spec.n_members} members",
                           total=None, completed=0)
            elif kind == "case":
                bar.update(task, description=f"testing {SET_NAMES[args[0]]}", completed=args[1], total=args[2])

        provenance = {
            "hardware": hardware_description(),
            "train_cohort": {"path": "data/train", "seed": TRAIN_COHORT_SEED, "balance": False},
            "test_cohort": {"path": "data/test", "seed": TEST_COHORT_SEED, "balance": True},
        }
        run_table1(out, train_cases=train_cases, test_cases=test_cases, scale=spec, train_fn=train_with_cacscore,
                   predict_fn=predict_with_cacscore, device=device, on_event=on_event, provenance=provenance)
    return (out / "table.md").read_text(encoding="utf-8")
