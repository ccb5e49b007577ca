"""The heart region's outline for the viewer (:mod:`cacscore.anatomy`).

The outline shows where calcium can count as coronary.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from cacscore.web.dependencies import SliceIndex, StoreDep, StudyId

router = APIRouter()


@router.get("/{study_id}/heart-region/{z}")
def get_heart_outline(study_id: StudyId, z: SliceIndex, store: StoreDep) -> Response:
    """Outline of the heart region in slice ``z``: uint8 per pixel, rows x columns (1 on the border)."""
    return Response(
        store.heart_outline_bytes(study_id, z),
        media_type="application/octet-stream",
        headers={"Cache-Control": "private, max-age=3600"},
    )
