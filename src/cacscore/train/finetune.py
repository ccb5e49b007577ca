"""The end of a fine-tune: the parent's post-processing, adapted to the new members.

A fine-tuned model (``cacscore train --init PARENT``) takes the parent's vote
rules (``inference.min_votes``, ``min_lesion_voxels``, ``small_lesion_votes``)
as they are: they describe how many members must agree, not what the members
learnt. The parent's lesion filter does not carry over: its coefficients
describe the parent members' votes and probabilities on the parent's data. It
is fitted again for the new members on the run's validation cases
(:func:`cacscore.train.fit_lesion_filter.collect_candidates`), with the parent's
threshold and candidate votes, or left out on request. What was done is
recorded in ``plan.json`` (``training.post_processing``, with a one-line
``message`` that says what to do next when the result is not to be trusted).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cacscore.datasets.base import CaseRef
from cacscore.errors import CacScoreWarning, InvalidInputError
from cacscore.model import Plan, load_ensemble
from cacscore.train.fit_lesion_filter import MIN_LESIONS_PER_CLASS, collect_candidates, fit_filter

#: The parent's vote rules that a fine-tuned model keeps.
VOTE_RULES = ("min_votes", "min_lesion_voxels", "small_lesion_votes")


def refit_command(out: Path) -> str:
    """The command that fits a lesion filter for the model in ``out`` on more labelled cases."""
    return (
        f"cacscore train-lesion-filter --model {out} --data LABELLED_CASES_NOT_USED_FOR_TRAINING "
        f"--out {out}-filtered"
    )


def inherit_vote_rules(plan: Plan, parent: Plan) -> dict[str, Any]:
    """Copy the parent's vote rules into ``plan`` (votes capped at the new member count); returns them."""
    source = parent.data.get("inference", {})
    n_members = len(plan.members)
    taken: dict[str, Any] = {}
    for key in VOTE_RULES:
        value = source.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            taken[key] = min(value, n_members) if key != "min_lesion_voxels" else value
    plan.data.setdefault("inference", {}).update(taken)
    return taken


def finish_fine_tune(
    plan: Plan,
    parent: Plan,
    out: Path,
    refs: Sequence[CaseRef],
    work: Path,
    *,
    refit: bool = True,
    drop: bool = False,
    emit: Callable[..., None] | None = None,
    deadline: float | None = None,
    case_s: float = 0.0,
) -> dict[str, Any]:
    """Give a fine-tuned model the parent's vote rules and a lesion filter fitted for its own members.

    Parameters
    ----------
    plan : Plan
        The new model's plan (members trained); updated and saved into ``out``.
    parent : Plan
        The model it was fine-tuned from.
    out : Path
        The new model folder.
    refs : sequence of CaseRef
        Labelled cases that did not train the members (the validation cases,
        and those of ``filter_data``).
    work : Path
        Folder for each case's candidate lesions (resumable; outside the model folder).
    refit : bool
        Fit the filter again when the parent has one.
    drop : bool
        Leave the parent's filter out without fitting one.
    emit : callable, optional
        Called with ("filter", done, total) per case and ("post_processing", record) at the end.
    deadline : float, optional
        :func:`time.monotonic` by which the refit must end: a case is only
        started when it ends in time (``case_s`` estimates the first, each
        case's own time the next), so a refit under a time limit may use
        fewer cases (``cases`` in the record says how many).
    case_s : float
        Estimated seconds per case.

    Returns
    -------
    dict
        The ``training.post_processing`` record: ``vote_rules``, ``lesion_filter``
        (``"none in the parent"``, ``"refitted"``, ``"dropped"`` or ``"not refitted"``),
        the candidate counts, ``reliable`` and ``message``.
    """
    report = emit or (lambda *args: None)
    rules = inherit_vote_rules(plan, parent)
    inference = plan.data["inference"]
    inference.pop("lesion_filter", None)
    block = parent.data.get("inference", {}).get("lesion_filter")
    rules_text = ", ".join(f"{k}={v}" for k, v in rules.items()) or "the majority vote"
    record: dict[str, Any] = {"vote_rules": rules, "parent_lesion_filter": block is not None}
    if block is None:
        record.update(
            lesion_filter="none in the parent",
            reliable=True,
            message=f"post-processing as the parent's: {rules_text}",
        )
    elif drop or not refit:
        record.update(
            lesion_filter="dropped",
            reliable=True,
            message=f"the parent's lesion filter was left out (it belongs to the parent's members); the "
            f"model uses the vote rule ({rules_text}). Fit one: {refit_command(out)}",
        )
    else:
        record.update(_refit(plan, block, out, refs, work, report, rules_text, deadline, case_s))
    plan.data.setdefault("training", {})["post_processing"] = record
    plan.save(out)
    report("post_processing", record)
    return record


def _refit(
    plan: Plan,
    block: dict[str, Any],
    out: Path,
    refs: Sequence[CaseRef],
    work: Path,
    report: Callable[..., None],
    rules_text: str,
    deadline: float | None,
    case_s: float,
) -> dict[str, Any]:
    n_members = len(plan.members)
    threshold = float(block.get("threshold", 0.5))
    votes = max(1, min(int(block.get("candidate_votes", 1)), n_members))
    l2 = float((block.get("fitted_on") or {}).get("l2", 1.0))
    ensemble = load_ensemble(out)
    work.mkdir(parents=True, exist_ok=True)
    report("filter", 0, len(refs))
    clock = {"last": time.monotonic(), "case_s": case_s, "done": 0}

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        clock["case_s"], clock["last"], clock["done"] = now - clock["last"], now, done
        report("filter", done, total)

    def stop() -> bool:
        return deadline is not None and time.monotonic() + clock["case_s"] > deadline

    features, truth = collect_candidates(
        ensemble, [(0, ref) for ref in refs], work, candidate_votes=votes, report=progress, stop=stop
    )
    used = int(clock["done"])
    cut = f" (the time limit left {used} of the {len(refs)} cases)" if used < len(refs) else ""
    n_true, n_false = int(truth.sum()), int((~truth).sum())
    counts = {"cases": used, "cases_offered": len(refs), "lesions": int(truth.size), "true_lesions": n_true}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacScoreWarning)
            fitted = fit_filter(features, truth, l2=l2, threshold=threshold, candidate_votes=votes)
    except InvalidInputError as exc:
        return {
            **counts,
            "lesion_filter": "not refitted",
            "reliable": False,
            "message": f"the parent's lesion filter belongs to the parent's members and could not be fitted "
            f"again on {used} cases that trained nothing{cut} ({exc}); the model uses the vote rule "
            f"({rules_text}). Fit one on more labelled cases: {refit_command(out)}",
        }
    fitted = dataclasses.replace(
        fitted,
        fitted_on={
            **(fitted.fitted_on or {}),
            "cases": used,
            "l2": l2,
            "data": "validation cases of the fine-tune (training.val_case_ids) and training.init.filter_data",
        },
    )
    plan.data["inference"]["lesion_filter"] = fitted.to_dict()
    reliable = min(n_true, n_false) >= MIN_LESIONS_PER_CLASS
    message = (
        f"lesion filter fitted again for the new members on {used} cases that trained nothing{cut} "
        f"({truth.size} candidate lesions, {n_true} true, {n_false} false)"
    )
    if not reliable:
        message += (
            f"; fewer than {MIN_LESIONS_PER_CLASS} of a kind: it is unreliable. Fit it on more labelled "
            f"cases that did not train the model: {refit_command(out)}"
        )
    return {**counts, "lesion_filter": "refitted", "reliable": reliable, "message": message}


__all__ = ["VOTE_RULES", "finish_fine_tune", "inherit_vote_rules", "refit_command"]
