"""Fit a trained model's lesion filter on labelled cases (``cacscore train-lesion-filter``).

The filter (:mod:`cacscore.model.lesion_filter`) is fitted on the candidate
lesions of cases that neither trained the members nor will test the model:
each candidate is labelled true where it holds reference calcium. The
features of each case are written to ``OUT/lesion_candidates/`` as they are
computed (with ``run.json``: the model, data and votes they belong to), so
an interrupted run continues where it stopped; the model folder (the
members' weights, copied, and ``plan.json`` with ``inference.lesion_filter``)
is written at the end, and the candidates removed.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from cacscore.datasets.base import CaseRef
from cacscore.errors import CacScoreWarning, InvalidInputError
from cacscore.io.atomic import atomic_open, write_json_atomic
from cacscore.io.volume import CTVolume
from cacscore.model import Plan, load_ensemble
from cacscore.model.ensemble import Ensemble
from cacscore.model.lesion_filter import FEATURE_NAMES, LesionFilter, fit_lesion_filter
from cacscore.model.postprocess import candidate_lesions, vote
from cacscore.preprocess import scaled_threshold

#: Folder inside the output model folder holding each case's candidate features.
CANDIDATES_DIR = "lesion_candidates"
#: Fewer true or false candidate lesions than this give a warning: nine coefficients need more.
MIN_LESIONS_PER_CLASS = 30


def labelled_candidates(
    ensemble: Ensemble, volume: CTVolume, reference: np.ndarray, candidate_votes: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """The candidate lesions of one case: their features and whether each holds reference calcium.

    Parameters
    ----------
    ensemble : Ensemble
        The model (its own lesion filter, if any, is not used).
    volume : CTVolume
        The CT.
    reference : (Z, Y, X) ndarray of int
        Reference label mask on the volume's grid, 0 for background.
    candidate_votes : int
        Members that must find a lesion for it to be a candidate.

    Returns
    -------
    features : (n, len(FEATURE_NAMES)) ndarray of float64
    truth : (n,) ndarray of bool
    """
    reference = np.asarray(reference)
    if reference.shape != volume.hu.shape:
        raise InvalidInputError(f"reference shape {reference.shape} does not match the CT {volume.hu.shape}")
    plan = ensemble.plan
    image, grid = ensemble.preprocess(volume)
    probabilities = list(ensemble.member_probabilities(image))
    low, _, votes = vote(
        probabilities,
        image,
        plan.class_codes,
        scaled_threshold(plan.threshold_hu, plan.clip_hu),
        candidate_votes,
    )
    candidates = candidate_lesions(low, votes, probabilities, grid, volume.hu, plan.threshold_hu)
    if candidates is None:
        return np.zeros((0, len(FEATURE_NAMES))), np.zeros(0, bool)
    n = candidates.features.shape[0]
    truth = ndimage.maximum(reference[candidates.box] != 0, candidates.ids, index=np.arange(1, n + 1))
    return candidates.features, np.asarray(truth, dtype=bool).reshape(n)


def _case_file(folder: Path, index: int, ref: CaseRef) -> Path:
    # Several --data folders may each hold a "case_0000": the dataset's position keeps them apart.
    return folder / f"{index}-{ref.case_id}.npz"


def _run_identity(
    plan: Plan, model_dir: Path, datasets: Sequence[tuple[Path, list[CaseRef]]], candidate_votes: int
) -> dict[str, Any]:
    """What the saved candidates depend on: the members' weights, the data folders in order, the votes."""
    identity: dict[str, Any] = {
        "members": [hashlib.sha1((model_dir / m["file"]).read_bytes()).hexdigest() for m in plan.members],
        "data": [str(Path(folder).resolve()) for folder, _ in datasets],
        "candidate_votes": candidate_votes,
    }
    declared = sorted({ref.mask_labels for _, cases in datasets for ref in cases if ref.mask_labels})
    if declared:  # masks read in another convention give other truths (absent: as runs before the option)
        identity["mask_labels"] = declared
    return identity


def _start_or_resume(work: Path, identity: dict[str, Any]) -> None:
    """Create ``work`` with its ``run.json``, or check that an interrupted run's is the same."""
    run_file = work / "run.json"
    if run_file.is_file():
        try:
            saved = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidInputError(f"{run_file}: cannot read ({exc}); remove {work}") from None
        if saved != identity:
            raise InvalidInputError(
                f"{work}: holds the candidates of another model, --data or --candidate-votes; "
                "remove it or choose another --out"
            )
        return
    if work.is_dir() and any(work.iterdir()):
        raise InvalidInputError(f"{work}: holds files of unknown origin; remove it or choose another --out")
    work.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_file, identity, indent=2)


def collect_candidates(
    ensemble: Ensemble,
    refs: Sequence[tuple[int, CaseRef]],
    work: Path,
    *,
    candidate_votes: int = 1,
    report: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The labelled candidate lesions of every case, each case's saved in ``work`` as it is computed.

    Parameters
    ----------
    ensemble : Ensemble
        The model.
    refs : sequence of (int, CaseRef)
        Cases with the index of their dataset (keeps equal case ids of two datasets apart).
    work : Path
        Existing folder; a case whose file is there is not computed again.
    candidate_votes : int
        See :func:`labelled_candidates`.
    report : callable, optional
        Called with (cases done, cases in all) after each case.
    stop : callable, optional
        Asked before each case that is not saved yet; True ends the collection
        there (a time limit), with the cases done so far.

    Returns
    -------
    features : (n, len(FEATURE_NAMES)) ndarray of float64
    truth : (n,) ndarray of bool

    Raises
    ------
    InvalidInputError
        A case without reference, or an unreadable saved file.
    """
    features, truth = [], []
    for done, (k, ref) in enumerate(refs, start=1):
        path = _case_file(work, k, ref)
        if not path.is_file():
            if stop is not None and stop():
                break
            with warnings.catch_warnings():
                # As for training input (cacscore.train.data): read warnings matter when scoring.
                warnings.simplefilter("ignore", CacScoreWarning)
                case = ref.load()
            if case.label is None:
                raise InvalidInputError(
                    f"case {ref.case_id} ({ref.image_path}): no reference label to fit on"
                )
            x, y = labelled_candidates(ensemble, case.volume, np.asarray(case.label), candidate_votes)
            with atomic_open(path) as fh:
                np.savez(fh, features=x, truth=y)
        try:
            with np.load(path) as saved:
                features.append(saved["features"])
                truth.append(saved["truth"])
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidInputError(
                f"{path}: cannot read ({exc}); remove it to compute the case again"
            ) from None
        if report is not None:
            report(done, len(refs))
    if not features:
        return np.zeros((0, len(FEATURE_NAMES))), np.zeros(0, bool)
    return np.concatenate(features), np.concatenate(truth).astype(bool)


def fit_filter(
    features: np.ndarray,
    truth: np.ndarray,
    *,
    l2: float = 1.0,
    threshold: float = 0.5,
    candidate_votes: int = 1,
) -> LesionFilter:
    """:func:`cacscore.model.lesion_filter.fit_lesion_filter`, with its errors as :class:`InvalidInputError`.

    Raises
    ------
    InvalidInputError
        No candidates, or all true or all false.
    """
    try:
        return fit_lesion_filter(features, truth, l2=l2, threshold=threshold, candidate_votes=candidate_votes)
    except ValueError as exc:
        raise InvalidInputError(f"cannot fit the lesion filter: {exc}") from None


def train_lesion_filter(
    model_dir: Path,
    datasets: Sequence[tuple[Path, list[CaseRef]]],
    out: Path,
    *,
    threshold: float = 0.5,
    candidate_votes: int = 1,
    l2: float = 1.0,
    model_version: str | None = None,
    device: str = "cpu",
    report: Callable[[int, int], None] | None = None,
) -> Plan:
    """Fit a lesion filter for the model in ``model_dir`` and write the model with it to ``out``.

    Parameters
    ----------
    model_dir : Path
        The trained model.
    datasets : sequence of (Path, list of CaseRef)
        Labelled dataset folders and their cases.
    out : Path
        New model folder; it may hold only an interrupted run's ``lesion_candidates``.
    threshold, candidate_votes, l2
        See :func:`cacscore.model.lesion_filter.fit_lesion_filter`.
    model_version : str, optional
        The new model's version (default: the source model's).
    device : str
        Where the members run to find the candidates ("cpu" or "cuda"); the filter does not depend on it.
    report : callable, optional
        Called with (cases done, cases in all) after each case.

    Returns
    -------
    Plan
        The new model's plan.

    Raises
    ------
    InvalidInputError
        If ``out`` already holds a model or another run's candidates, a
        setting is out of range, a case has no reference, or the candidates
        are all true or all false.
    """
    if (out / "plan.json").exists():
        raise InvalidInputError(f"{out}: already holds a model; choose another --out")
    if out.is_file() or (out.is_dir() and any(p.name != CANDIDATES_DIR for p in out.iterdir())):
        raise InvalidInputError(
            f"{out}: exists and is not an interrupted run of this command; choose another --out"
        )
    if not 0 < threshold < 1:
        raise InvalidInputError(f"--threshold must be between 0 and 1, got {threshold}")
    if not l2 > 0:
        raise InvalidInputError(f"the L2 penalty must be positive, got {l2}")
    ensemble = load_ensemble(model_dir, device=device)
    if not 1 <= candidate_votes <= len(ensemble.members):
        raise InvalidInputError(
            f"--candidate-votes must be in 1..{len(ensemble.members)}, got {candidate_votes}"
        )
    work = out / CANDIDATES_DIR
    _start_or_resume(work, _run_identity(ensemble.plan, model_dir, datasets, candidate_votes))
    refs = [(k, ref) for k, (_, cases) in enumerate(datasets) for ref in cases]
    features, labels = collect_candidates(
        ensemble, refs, work, candidate_votes=candidate_votes, report=report
    )
    fewest = min(int(labels.sum()), int((~labels).sum()))
    if 0 < labels.size and fewest < MIN_LESIONS_PER_CLASS:
        warnings.warn(
            f"the lesion filter is fitted on {labels.size} candidate lesions, only {fewest} of them "
            f"{'true' if labels.sum() == fewest else 'false'}; it will be unreliable: use more cases "
            f"(at least {MIN_LESIONS_PER_CLASS} of each kind)",
            CacScoreWarning,
            stacklevel=2,
        )
    fitted = fit_filter(features, labels, l2=l2, threshold=threshold, candidate_votes=candidate_votes)
    record: dict[str, Any] = {
        **(fitted.fitted_on or {}),
        "cases": len(refs),
        "data": [str(folder) for folder, _ in datasets],
        "l2": l2,
    }
    fitted = dataclasses.replace(fitted, fitted_on=record)
    LesionFilter.from_dict(
        fitted.to_dict(), len(ensemble.members)
    )  # what Plan.load will check, before writing
    plan = _write_model(model_dir, ensemble.plan, fitted, out, model_version)
    shutil.rmtree(work)  # derived data, not part of the model
    return plan


def _write_model(
    model_dir: Path, plan: Plan, fitted: LesionFilter, out: Path, model_version: str | None
) -> Plan:
    for member in plan.members:
        shutil.copyfile(model_dir / member["file"], out / member["file"])
    data = json.loads(plan.to_json())
    data["inference"] = {**data.get("inference", {}), "lesion_filter": fitted.to_dict()}
    data["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    if model_version is not None:
        data["model_version"] = model_version
    new = Plan(data)
    new.save(out)
    return new
