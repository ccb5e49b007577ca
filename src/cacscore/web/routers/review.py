"""Reviewing: the state, edits, undo, signature and its withdrawal (each change names its version)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from cacscore.errors import InvalidInputError
from cacscore.web.dependencies import MAX_DB_INT, StoreDep, StudyId

router = APIRouter()


class Change(BaseModel):
    """A change made on ``version`` of the study by ``reviewer``."""

    version: int = Field(ge=0, le=MAX_DB_INT)
    reviewer: str = Field(min_length=1, max_length=128)


class LesionEdit(Change):
    """Count candidate ``lesion`` in ``artery`` ("LM", "LAD", "LCX", "RCA", "unspecified"), or not (None).

    Counting a candidate that fails a plausibility check (see the candidate's
    ``warnings``) needs ``confirm: true``: the reader has been told why.
    """

    lesion: int = Field(ge=0, le=2**31 - 1)
    artery: str | None = Field(default=None, max_length=32)
    confirm: bool = False


class Trim(Change):
    """Erase or paint back lesion voxels under a round brush on slice ``z``.

    ``mode="erase"`` erases them, ``mode="paint"`` paints them back.
    """

    lesion: int = Field(ge=1, le=2**31 - 1)
    z: int = Field(ge=0, le=2**31 - 1)
    center_yx: tuple[float, float] = Field(description="Brush centre (row, column) in pixels.")
    radius_px: float = Field(gt=0, le=100, allow_inf_nan=False)
    mode: Literal["erase", "paint"] = "erase"


class Withdrawal(Change):
    """Withdraw the signature of ``version`` for the ``reason`` given (kept in the audit log)."""

    reason: str = Field(min_length=1, max_length=1000)


@router.get("/{study_id}/state")
def get_state(study_id: StudyId, store: StoreDep) -> dict[str, Any]:
    """Version, scores of the edited mask, lesion table and audit trail."""
    return store.state(study_id)


@router.post("/{study_id}/edits")
def edit(study_id: StudyId, change: LesionEdit, store: StoreDep) -> dict[str, Any]:
    """Add, remove or reassign one lesion; answers the new state (409 when ``version`` is stale)."""
    return store.edit(
        study_id,
        version=change.version,
        reviewer=change.reviewer,
        lesion=change.lesion,
        artery=change.artery,
        confirm=change.confirm,
    )


@router.post("/{study_id}/trim")
def trim(study_id: StudyId, change: Trim, store: StoreDep) -> dict[str, Any]:
    """Trim a counted lesion in one slice (brush or eraser); answers the new state."""
    y, x = change.center_yx
    if not (abs(y) < 1e6 and abs(x) < 1e6):
        raise InvalidInputError("center_yx must be finite pixel coordinates")
    return store.trim(
        study_id,
        version=change.version,
        reviewer=change.reviewer,
        lesion=change.lesion,
        z=change.z,
        center_yx=(y, x),
        radius_px=change.radius_px,
        erase=change.mode == "erase",
    )


@router.post("/{study_id}/undo")
def undo(study_id: StudyId, change: Change, store: StoreDep) -> dict[str, Any]:
    """Undo the latest edit in effect."""
    return store.undo(study_id, version=change.version, reviewer=change.reviewer)


@router.post("/{study_id}/sign")
def sign(study_id: StudyId, change: Change, store: StoreDep) -> dict[str, Any]:
    """Sign the study; it becomes read-only."""
    return store.sign(study_id, version=change.version, reviewer=change.reviewer)


@router.post("/{study_id}/unsign")
def unsign(study_id: StudyId, change: Withdrawal, store: StoreDep) -> dict[str, Any]:
    """Withdraw the signature (to amend the study); the reason goes into the audit log."""
    return store.unsign(study_id, version=change.version, reviewer=change.reviewer, reason=change.reason)


@router.post("/{study_id}/analyse-anyway")
def analyse_anyway(study_id: StudyId, change: Change, store: StoreDep) -> dict[str, Any]:
    """Run the model on a scan the domain check refused (audited); answers the study as ``GET`` does."""
    return store.analyse_anyway(study_id, version=change.version, reviewer=change.reviewer)
