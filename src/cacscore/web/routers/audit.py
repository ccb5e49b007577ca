"""The audit log's integrity check."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from cacscore.web.dependencies import StoreDep

router = APIRouter()


@router.get("/verify")
def verify(store: StoreDep) -> dict[str, Any]:
    """Recompute the audit hash chain: ``ok`` false, with the problems, when history was changed directly."""
    return store.verify_audit().to_dict()
