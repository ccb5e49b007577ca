"""Choose an ensemble's members and vote rule on a labelled development cohort; write the model folder.

The paper keeps every trained member and a majority vote. With members of
several training runs at hand (e.g. a model and its fine-tuned copy),
:func:`choose_members` picks the best ensemble of ``n_members`` of them by
greedy forward selection (or, where it scores higher, one run's own members as
trained: greedy selection may miss them), and with it the ``inference.min_votes``
and ``inference.min_lesion_voxels`` of the plan (with ``keep_small``, also
``inference.small_lesion_votes``: null or all members), on a cohort that
neither training nor the final test used (as nnU-Net chooses its
post-processing on validation data). The objective is

    category accuracy + lesion F1 - 0.01 x (% of cases with aortic valve or mitral annulus calcium counted)

the last term only where the cases hold a phantom ``truth.json``
(:mod:`cacscore.evaluate.distractors`). ``cacscore choose-members`` is the command.

Member probabilities are cached per model and case in ``cache``: an
interrupted run continues where it stopped. The output folder gets the
chosen members' weights, and a ``plan.json`` (that of the first model)
whose ``members`` say where each came from and whose ``selection`` block
records the cohort, the objective and the figures of every greedy step. A lesion
filter in the first model's plan is not carried over (it was fitted to other
members): fit one for the written model with ``cacscore train-lesion-filter``.
Duration on 2 CPU cores: about 1.2 s per case and model for the
probabilities, then a few seconds per candidate ensemble and 100 cases, shared among
``workers`` processes (ensembles that vote alike on a case reuse its outcome).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import multiprocessing
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from cacscore.arrays import bounding_box
from cacscore.datasets import list_cases
from cacscore.errors import CacScoreWarning, InvalidInputError
from cacscore.evaluate import aggregate_lesions, category_accuracy, harrell_c, lesion_detection
from cacscore.evaluate.distractors import VALVE_KINDS, distractor_hit
from cacscore.io.atomic import atomic_open
from cacscore.model.ensemble import load_ensemble
from cacscore.model.plan import Plan
from cacscore.model.postprocess import labels_in_box, remove_small_lesions, vote
from cacscore.preprocess import Grid, scaled_threshold, upsample_labels
from cacscore.scoring import score_calcium

LESION_VOXEL_CHOICES = (1, 2, 3)


class _Cropped:
    """``index_to_patient`` of a box of a volume, for :func:`cacscore.evaluate.distractors.distractor_hit`."""

    def __init__(self, volume: Any, box: tuple[slice, ...]) -> None:
        self.volume, self.offset = volume, np.array([b.start for b in box])

    def index_to_patient(self, zyx: np.ndarray) -> np.ndarray:
        return self.volume.index_to_patient(np.asarray(zyx) + self.offset)


@dataclass
class DevCase:
    """What a candidate ensemble needs of one case, cropped to where any member found calcium.

    A voxel that no member calls calcium gets no vote from any subset of them,
    so only the voxels that some member calls calcium are kept (tens of the
    250,000 low-resolution voxels of a scan): the vote of every candidate ensemble is exact
    and a cohort of 200 cases and 25 members fits in memory.
    """

    probabilities: np.ndarray  # (M, C, N) float16: all members of all models at the N voxels of `voxels`
    voxels: np.ndarray  # (N,) flat indices into the low-resolution grid
    image: np.ndarray  # (N,) network input at `voxels`
    low_shape: tuple[int, int, int]
    grid: Grid
    box: tuple[slice, slice, slice]
    hu: np.ndarray  # inside box
    reference: np.ndarray  # inside box
    spacing: tuple[float, float, float]
    reference_category: str
    volume: _Cropped
    distractors: list[dict[str, Any]] | None
    # Outcome per vote result: most candidate ensembles vote the same on most cases.
    memo: dict[tuple[bytes, tuple[int, int | None]], tuple[str, Any, bool]] = field(default_factory=dict)


@functools.cache
def member_digests(model: Path) -> tuple[str, ...]:
    """SHA-1 of each member's weight file, in member order."""
    return tuple(hashlib.sha1((model / e["file"]).read_bytes()).hexdigest() for e in Plan.load(model).members)


def _cache_file(cache: Path, model: Path, ref: Any) -> Path:
    # Keyed by the weights, not the path: a folder such as the shipped model's changes its weights.
    # Cases are keyed by their image path, as several cohorts hold a "case_0000".
    tag = hashlib.sha1("".join(member_digests(model)).encode()).hexdigest()[:10]
    case_tag = hashlib.sha1(str(Path(ref.image_path).resolve()).encode()).hexdigest()[:8]
    return cache / f"{model.name}-{tag}" / f"{ref.case_id}-{case_tag}.npz"


def cache_probabilities(
    models: list[Path], refs: list[Any], cache: Path, *, progress_bar: bool = False
) -> None:
    """Write every member's softmax of every case (float16), skipping those already cached."""
    with Progress(disable=not progress_bar, transient=True) as progress:
        for model in models:
            todo = [r for r in refs if not _cache_file(cache, model, r).is_file()]
            if not todo:
                continue
            ensemble = load_ensemble(model)
            task = progress.add_task(f"probabilities of {model}", total=len(todo))
            for ref in todo:
                case = _load(ref)
                image, _ = ensemble.preprocess(case.volume)
                probs = np.stack(list(ensemble.member_probabilities(image))).astype(np.float16)
                path = _cache_file(cache, model, ref)
                path.parent.mkdir(parents=True, exist_ok=True)
                # Whole files only: an interrupted run leaves no half-written cache.
                with atomic_open(path) as fh:
                    np.savez(fh, probabilities=probs)
                progress.advance(task)


def _load(ref: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacScoreWarning)
        case = ref.load()
    if case.label is None:
        raise InvalidInputError(
            f"{ref.image_path}: case without a reference label; member selection needs one"
        )
    return case


def load_dev_cases(
    models: list[Path], refs: list[Any], cache: Path, plan: Plan, *, progress_bar: bool = False
) -> list[DevCase]:
    """Cases with the cached probabilities of all members, cropped to where calcium can be."""
    ensemble = load_ensemble(models[0])
    level = scaled_threshold(plan.threshold_hu, plan.clip_hu)
    cases = []
    with Progress(disable=not progress_bar, transient=True) as progress:
        for ref in progress.track(refs, description="loading the cohort"):
            case = _load(ref)
            image, grid = ensemble.preprocess(case.volume)
            probs = np.concatenate([np.load(_cache_file(cache, m, ref))["probabilities"] for m in models])
            anything = np.any([p.argmax(axis=0) != 0 for p in probs], axis=0) & (image >= level)
            voxels = np.flatnonzero(anything)
            reference = np.asarray(case.label)
            boxes = [b for b in (grid.source_box(anything), bounding_box(reference)) if b is not None]
            box = (
                tuple(slice(min(b[i].start for b in boxes), max(b[i].stop for b in boxes)) for i in range(3))
                if boxes
                else (slice(0, 1),) * 3
            )
            truth = Path(ref.image_path).parent / "truth.json"
            hu = np.asarray(case.volume.hu)[box]
            cases.append(
                DevCase(
                    probabilities=probs.reshape(*probs.shape[:2], -1)[:, :, voxels],
                    voxels=voxels,
                    image=image.ravel()[voxels],
                    low_shape=image.shape,
                    grid=grid,
                    box=box,  # type: ignore[arg-type]
                    hu=hu,
                    reference=reference[box],
                    spacing=case.volume.spacing,
                    reference_category=score_calcium(hu, case.volume.spacing, reference[box]).risk_category,
                    volume=_Cropped(case.volume, box),
                    distractors=json.loads(truth.read_text())["distractors"] if truth.is_file() else None,
                )
            )
    return cases


Rule = tuple[int, int | None]  # (min_lesion_voxels, small_lesion_votes)


def lesion_rules(n_members: int, keep_small: bool = False) -> list[Rule]:
    """The lesion rules tried for an ensemble of ``n_members``: each size limit, small lesions dropped, or
    (with ``keep_small``) kept where all members agree."""
    return [(voxels, None) for voxels in LESION_VOXEL_CHOICES] + [
        (voxels, n_members) for voxels in LESION_VOXEL_CHOICES if voxels > 1 and keep_small
    ]


def evaluate(
    cases: list[DevCase], members: list[int], min_votes: int, plan: Plan, rules: list[Rule] | None = None
) -> dict[Rule, dict[str, float]]:
    """Category accuracy, Harrell's C, lesion F1 / sensitivity / PPV and distractor % of one candidate.

    Returns the figures for each lesion rule of ``rules`` (default :func:`lesion_rules`; the vote is shared).
    """
    rules = rules if rules is not None else lesion_rules(len(members))
    level = scaled_threshold(plan.threshold_hu, plan.clip_hu)
    predicted: dict[Rule, list[str]] = {r: [] for r in rules}
    counts: dict[Rule, list[Any]] = {r: [] for r in rules}
    hits: dict[Rule, list[bool]] = {r: [] for r in rules}
    for case in cases:
        voted, _, votes = vote(
            list(case.probabilities[members].astype(np.float32)),
            case.image,
            plan.class_codes,
            level,
            min_votes,
        )
        key = hashlib.sha1(voted.tobytes() + votes.tobytes()).digest()
        every = None
        keeps: dict[int, np.ndarray] = {}  # small_lesion_votes -> voxels of the box whose small lesions stay
        for rule in rules:
            voxels, small_votes = rule
            outcome = case.memo.get((key, rule))
            if outcome is None:
                if every is None:
                    low = np.zeros(case.low_shape, np.uint8)
                    low.ravel()[case.voxels] = voted
                    every = labels_in_box(low, case.grid, case.box, case.hu, plan.threshold_hu, 1)
                if small_votes is not None and small_votes not in keeps:
                    keep_low = np.zeros(case.low_shape, np.uint8)
                    keep_low.ravel()[case.voxels] = votes >= small_votes
                    keeps[small_votes] = upsample_labels(keep_low, case.grid, case.box) != 0
                labels = remove_small_lesions(
                    every, voxels, None if small_votes is None else keeps[small_votes]
                )
                outcome = case.memo[key, rule] = (
                    score_calcium(case.hu, case.spacing, labels).risk_category,
                    lesion_detection(case.hu, case.reference, labels, case.spacing),
                    case.distractors is not None
                    and distractor_hit(case.volume, labels, case.reference, case.distractors, VALVE_KINDS),
                )
            category, count, hit = outcome
            predicted[rule].append(category)
            counts[rule].append(count)
            if case.distractors is not None:
                hits[rule].append(hit)
    reference = [c.reference_category for c in cases]
    figures = {}
    for rule in rules:
        lesions = aggregate_lesions(counts[rule]).metrics()["overall"]
        figures[rule] = {
            "accuracy": category_accuracy(reference, predicted[rule]),
            "harrell_c": harrell_c(reference, predicted[rule]),
            "lesion_f1": lesions["f1"],
            "lesion_sensitivity": lesions["sensitivity"],
            "lesion_ppv": lesions["ppv"],
            "valve_or_annulus_counted_pct": 100.0 * float(np.mean(hits[rule])) if hits[rule] else 0.0,
        }
    return figures


def objective(figures: dict[str, float]) -> float:
    """Accuracy + lesion F1 - 0.01 x distractor %."""
    return figures["accuracy"] + figures["lesion_f1"] - 0.01 * figures["valve_or_annulus_counted_pct"]


_WORK: tuple[list[DevCase], Plan, bool] | None = None  # what forked workers evaluate on (shared, not pickled)


def _evaluate_job(job: tuple[list[int], int]) -> dict[Rule, dict[str, float]]:
    if _WORK is None:
        raise RuntimeError("greedy() sets the shared work before its workers start")
    cases, plan, keep_small = _WORK
    return evaluate(cases, job[0], job[1], plan, lesion_rules(len(job[0]), keep_small))


def vote_rules(n_members: int) -> list[int]:
    """The ``min_votes`` tried for an ensemble of ``n_members``: half of them, and a majority."""
    return sorted({max(1, n_members // 2), n_members // 2 + 1})


def _keep_best(
    best: dict[str, Any] | None,
    members: list[int],
    min_votes: int,
    figures_by_rule: dict[Rule, dict[str, float]],
) -> dict[str, Any]:
    """``best``, or the candidate with a rule of ``figures_by_rule`` where its objective is higher."""
    for (min_voxels, small_votes), figures in figures_by_rule.items():
        if best is None or objective(figures) > objective(best["figures"]):
            best = {
                "members": members,
                "min_votes": min_votes,
                "min_lesion_voxels": min_voxels,
                "small_lesion_votes": small_votes,
                "figures": figures,
            }
    if best is None:
        raise ValueError("no candidate rule to compare")
    return best


def greedy(
    cases: list[DevCase],
    candidates: list[int],
    size: int,
    plan: Plan,
    workers: int = 1,
    keep_small: bool = False,
    *,
    report: Callable[[str], None] | None = None,
    progress_bar: bool = False,
) -> list[dict[str, Any]]:
    """Forward selection: each step adds the member (and rule) that most raises the objective.

    The candidates of a step are evaluated by ``workers`` forked processes
    (the cohort is shared with them, not copied); ties go to the earlier
    candidate whatever the number of workers.
    """
    global _WORK
    _WORK = (cases, plan, keep_small)
    chosen: list[int] = []
    steps = []
    context = multiprocessing.get_context("fork")
    with (
        Progress(disable=not progress_bar, transient=True) as progress,
        context.Pool(workers) if workers > 1 else contextlib.nullcontext() as pool,
    ):
        task = progress.add_task(
            "greedy selection", total=sum((len(candidates) - k) * len(vote_rules(k + 1)) for k in range(size))
        )
        for _ in range(size):
            jobs = [
                ([*chosen, k], min_votes)
                for k in candidates
                if k not in chosen
                for min_votes in vote_rules(len(chosen) + 1)
            ]
            best: dict[str, Any] | None = None
            for (trial, min_votes), figures_by_rule in zip(
                jobs, (pool.imap if pool else map)(_evaluate_job, jobs)
            ):
                best = _keep_best(best, trial, min_votes, figures_by_rule)
                progress.advance(task)
            if best is None:
                raise ValueError("no candidate member left to add")
            chosen = best["members"]
            steps.append(best)
            (report or (lambda _: None))(
                f"{chosen} min_votes {best['min_votes']} min_lesion_voxels "
                f"{best['min_lesion_voxels']} small_lesion_votes "
                f"{best['small_lesion_votes']}: "
                + ", ".join(f"{key} {value:.3f}" for key, value in best["figures"].items())
            )
    _WORK = None
    return steps


def whole_runs(
    cases: list[DevCase], runs: list[list[int]], plan: Plan, keep_small: bool = False
) -> list[dict[str, Any]]:
    """Each run's own members as trained, with its best rule: greedy selection may miss them.

    ``runs`` holds each run's member indices.
    """
    results = []
    for members in runs:
        best: dict[str, Any] | None = None
        for min_votes in vote_rules(len(members)):
            best = _keep_best(
                best,
                members,
                min_votes,
                evaluate(cases, members, min_votes, plan, lesion_rules(len(members), keep_small)),
            )
        if best is not None:
            results.append(best)
    return results


def write_model(
    out: Path,
    models: list[Path],
    chosen: dict[str, Any],
    steps: list[dict[str, Any]],
    data: list[Path],
    n_cases: int,
    version: str,
    runs: list[dict[str, Any]],
) -> None:
    """The model folder of the chosen members; plan.json records each source run once and the selection."""
    from cacscore.train.loop import init_dict

    plans = [Plan.load(m) for m in models]
    sources = [(run, entry) for run, plan in enumerate(plans) for entry in plan.members]
    out.mkdir(parents=True, exist_ok=False)
    members = []
    for k, index in enumerate(chosen["members"]):
        run, entry = sources[index]
        shutil.copyfile(models[run] / entry["file"], out / f"member_{k}.safetensors")
        members.append(
            {
                **entry,
                "member": k,
                "file": f"member_{k}.safetensors",
                "picked_from": {"run": run, "member": entry.get("member")},
            }
        )
    base = plans[0].data
    plan_data = {
        **base,
        "model_version": version,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "data": {"note": "each run's training data is in training.runs[].data"},
        "training": {
            "note": "members chosen from several training runs (members[].picked_from.run)",
            "runs": [init_dict(plan, model) for plan, model in zip(plans, models)],
        },
        "members": members,
        # A lesion filter was fitted to the first model's members: fit one for these with train-lesion-filter.
        "inference": {
            **{k: v for k, v in base.get("inference", {}).items() if k != "lesion_filter"},
            "min_votes": chosen["min_votes"],
            "min_lesion_voxels": chosen["min_lesion_voxels"],
            "small_lesion_votes": chosen["small_lesion_votes"],
        },
        "selection": {
            "data": [str(d) for d in data],
            "n_cases": n_cases,
            "objective": "accuracy + lesion_f1 - 0.01 * valve_or_annulus_counted_pct",
            "method": "greedy forward selection of members; min_votes, min_lesion_voxels and "
            "small_lesion_votes tried at "
            "each step; members identical to an earlier candidate skipped; then each run's "
            "own members as trained; the best objective of all is chosen",
            "steps": [
                {**step, "members": [(sources[i][0], sources[i][1].get("member")) for i in step["members"]]}
                for step in steps
            ],
            "whole_runs": [
                {**r, "members": [(sources[i][0], sources[i][1].get("member")) for i in r["members"]]}
                for r in runs
            ],
        },
    }
    Plan(plan_data).save(out)


def choose_members(
    data: Sequence[Path],
    models: Sequence[Path],
    out: Path,
    *,
    n_members: int = 5,
    cache: Path,
    model_version: str = "chosen",
    workers: int = 1,
    keep_small: bool = False,
    report: Callable[[str], None] | None = None,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """Choose the members and lesion rule of a new model on development cohorts and write its folder.

    Parameters
    ----------
    data : sequence of Path
        Labelled development cohorts (any layout :func:`cacscore.datasets.list_cases` reads), pooled.
    models : sequence of Path
        Candidate model folders; the first one's plan is the new model's base.
    out : Path
        New model folder (must not exist).
    n_members : int
        Members of the new ensemble.
    cache : Path
        Folder of cached member probabilities (resumable).
    model_version : str
        ``model_version`` of the new plan.
    workers : int
        Processes evaluating candidate ensembles.
    keep_small : bool
        Also try keeping lesions under ``min_lesion_voxels`` that all members found.
    report : callable, optional
        Receives one line per greedy step and whole run.
    progress_bar : bool
        Show progress bars.

    Returns
    -------
    dict
        The chosen candidate: ``members`` (indices over all models' members in order),
        ``min_votes``, ``min_lesion_voxels``, ``small_lesion_votes`` and ``figures``.

    Raises
    ------
    InvalidInputError
        If ``out`` exists, the models cannot be mixed (other network, head or
        preprocessing), a cohort is empty or a case has no reference.
    ModelFolderError
        If a model folder is incomplete.
    """
    if out.exists():
        raise InvalidInputError(f"{out}: already exists; choose another output folder")
    if n_members < 1:
        raise InvalidInputError(f"n_members must be >= 1, got {n_members}")
    models = list(models)
    plans = [Plan.load(m) for m in models]
    if any(
        p.init_args != plans[0].init_args
        or p.class_codes != plans[0].class_codes
        or p.data["preprocessing"] != plans[0].data["preprocessing"]
        for p in plans
    ):
        raise InvalidInputError(
            "the candidate models differ in network, head or preprocessing; they cannot be mixed"
        )
    refs = [ref for folder in data for ref in list_cases(folder)]
    if not refs:
        raise InvalidInputError(f"no cases in {', '.join(str(d) for d in data)}")
    cache_probabilities(models, refs, cache, progress_bar=progress_bar)
    cases = load_dev_cases(models, refs, cache, plans[0], progress_bar=progress_bar)
    # A fine-tuned member that kept its starting weights (epoch 0) is a copy of its parent's member.
    digests = [d for m in models for d in member_digests(m)]
    candidates = [k for k, d in enumerate(digests) if d not in digests[:k]]
    steps = greedy(
        cases,
        candidates,
        min(n_members, len(candidates)),
        plans[0],
        workers,
        keep_small,
        report=report,
        progress_bar=progress_bar,
    )
    offsets = np.cumsum([0] + [len(p.members) for p in plans])
    runs = whole_runs(
        cases,
        [list(range(offsets[r], offsets[r + 1])) for r, p in enumerate(plans) if len(p.members) == n_members],
        plans[0],
        keep_small,
    )
    for run in runs:
        (report or (lambda _: None))(
            f"whole run {run['members']}: min_votes {run['min_votes']} min_lesion_voxels "
            f"{run['min_lesion_voxels']} small_lesion_votes {run['small_lesion_votes']}, "
            f"objective {objective(run['figures']):.3f}"
        )
    chosen = max([steps[-1], *runs], key=lambda c: objective(c["figures"]))  # ties: the greedy choice
    write_model(out, models, chosen, steps, list(data), len(refs), model_version, runs)
    return chosen
