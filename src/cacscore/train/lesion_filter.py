"""Fit a trained model's lesion filter on labelled cases (``cacscore train-lesion-filter``).

The filter (:mod:`cacscore.model.lesion_filter`) is fitted on the candidate
lesions of cases that neither trained the members nor will test the model:
each candidate is labelled true where it holds reference calcium. The
features of each case are written to ``OUT/lesion_candidates/`` as they are
computed, so an interrupted run continues where it stopped; the model folder
(the members' weights, copied, and ``plan.json`` with
``inference.lesion_filter``) is written at the end.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
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
from cacscore.io.volume import CTVolume
from cacscore.model import Plan, load_ensemble
from cacscore.model.ensemble import Ensemble, candidate_lesions, vote
from cacscore.model.lesion_filter import FEATURE_NAMES, LesionFilter, fit_lesion_filter
from cacscore.preprocess import scaled_threshold

#: Folder inside the output model folder holding each case's candidate features.
CANDIDATES_DIR = "lesion_candidates"
#: Fewer true or false candidate lesions than this give a warning: nine coefficients need more.
MIN_LESIONS_PER_CLASS = 30


def labelled_candidates(ensemble: Ensemble, volume: CTVolume, reference: np.ndarray,
                        candidate_votes: int = 1) -> tuple[np.ndarray, np.ndarray]:
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
    low, _, votes = vote(probabilities, image, plan.class_codes, scaled_threshold(plan.threshold_hu, plan.clip_hu),
                         candidate_votes)
    candidates = candidate_lesions(low, votes, probabilities, grid, volume.hu, plan.threshold_hu)
    if candidates is None:
        return np.zeros((0, len(FEATURE_NAMES))), np.zeros(0, bool)
    n = candidates.features.shape[0]
    truth = ndimage.maximum(reference[candidates.box] != 0, candidates.ids, index=np.arange(1, n + 1))
    return candidates.features, np.asarray(truth, dtype=bool).reshape(n)


def _case_file(folder: Path, index: int, ref: CaseRef) -> Path:
    # Several --data folders may each hold a "case_0000": the dataset's position keeps them apart.
    return folder / f"{index}-{ref.case_id}.npz"


def train_lesion_filter(model_dir: Path, datasets: Sequence[tuple[Path, list[CaseRef]]], out: Path, *,
                        threshold: float = 0.5, candidate_votes: int = 1, l2: float = 1.0,
                        model_version: str | None = None,
                        report: Callable[[int, int], None] | None = None) -> Plan:
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
    report : callable, optional
        Called with (cases done, cases in all) after each case.

    Returns
    -------
    Plan
        The new model's plan.

    Raises
    ------
    InvalidInputError
        If ``out`` already holds a model, a case has no reference, or the
        candidates are all true or all false.
    """
    if (out / "plan.json").exists():
        raise InvalidInputError(f"{out}: already holds a model; choose another --out")
    ensemble = load_ensemble(model_dir)
    if not 1 <= candidate_votes <= len(ensemble.members):
        raise InvalidInputError(f"--candidate-votes must be in 1..{len(ensemble.members)}, got {candidate_votes}")
    work = out / CANDIDATES_DIR
    work.mkdir(parents=True, exist_ok=True)
    refs = [(k, ref) for k, (_, cases) in enumerate(datasets) for ref in cases]
    features, truth = [], []
    for done, (k, ref) in enumerate(refs, start=1):
        path = _case_file(work, k, ref)
        if not path.is_file():
            with warnings.catch_warnings():
                # As for training input (cacscore.train.data): read warnings matter when scoring.
                warnings.simplefilter("ignore", CacScoreWarning)
                case = ref.load()
            if case.label is None:
                raise InvalidInputError(f"case {ref.case_id} ({ref.image_path}): no reference label to fit on")
            x, y = labelled_candidates(ensemble, case.volume, np.asarray(case.label), candidate_votes)
            tmp = path.with_name(path.stem + ".tmp.npz")
            np.savez(tmp, features=x, truth=y, candidate_votes=candidate_votes)
            tmp.replace(path)
        with np.load(path) as saved:
            if int(saved["candidate_votes"]) != candidate_votes:
                raise InvalidInputError(f"{path}: computed with another --candidate-votes; remove {work} first")
            features.append(saved["features"])
            truth.append(saved["truth"])
        if report is not None:
            report(done, len(refs))
    labels = np.concatenate(truth)
    fewest = min(int(labels.sum()), int((~labels).sum()))
    if fewest < MIN_LESIONS_PER_CLASS:
        warnings.warn(f"the lesion filter is fitted on {labels.size} candidate lesions, only {fewest} of them "
                      f"{'true' if labels.sum() == fewest else 'false'}; it will be unreliable: use more cases "
                      f"(at least {MIN_LESIONS_PER_CLASS} of each kind)", CacScoreWarning, stacklevel=2)
    try:
        fitted = fit_lesion_filter(np.concatenate(features), labels, l2=l2, threshold=threshold,
                                   candidate_votes=candidate_votes)
    except ValueError as exc:
        raise InvalidInputError(f"cannot fit the lesion filter: {exc}") from None
    record: dict[str, Any] = {**(fitted.fitted_on or {}), "cases": len(refs),
                              "data": [str(folder) for folder, _ in datasets], "l2": l2}
    fitted = dataclasses.replace(fitted, fitted_on=record)
    return _write_model(model_dir, ensemble.plan, fitted, out, model_version)


def _write_model(model_dir: Path, plan: Plan, fitted: LesionFilter, out: Path, model_version: str | None) -> Plan:
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
