"""Reviewing: the state, edits, undo and signature (each change names the version it was made on)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from cacscore.web.dependencies import StoreDep

router = APIRouter()


class Change(BaseModel):
    """A change made on ``version`` of the study by ``reviewer``."""

    version: int = Field(ge=0)
    reviewer: str = Field(min_length=1, max_length=128)


class LesionEdit(Change):
    """Count candidate ``lesion`` in ``artery`` ("LM", "LAD", "LCX", "RCA", "unspecified"), or not (None)."""

    lesion: int
    artery: str | None = None


@router.get("/{study_id}/state")
def get_state(study_id: int, store: StoreDep) -> dict[str, Any]:
    """Version, scores of the edited mask, lesion table and audit trail."""
    return store.state(study_id)


@router.post("/{study_id}/edits")
def edit(study_id: int, change: LesionEdit, store: StoreDep) -> dict[str, Any]:
    """Add, remove or reassign one lesion; answers the new state (409 when ``version`` is stale)."""
    return store.edit(
        study_id, version=change.version, reviewer=change.reviewer, lesion=change.lesion, artery=change.artery
    )


@router.post("/{study_id}/undo")
def undo(study_id: int, change: Change, store: StoreDep) -> dict[str, Any]:
    """Undo the latest edit in effect."""
    return store.undo(study_id, version=change.version, reviewer=change.reviewer)


@router.post("/{study_id}/sign")
def sign(study_id: int, change: Change, store: StoreDep) -> dict[str, Any]:
    """Sign the study; it becomes read-only."""
    return store.sign(study_id, version=change.version, reviewer=change.reviewer)
