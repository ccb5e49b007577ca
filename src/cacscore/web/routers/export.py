"""Exports of the reviewed state: score report JSON, label mask NIfTI, one-page PDF."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from cacscore.web.dependencies import StoreDep

router = APIRouter()


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}


@router.get("/{study_id}/report.json")
def report_json(study_id: int, store: StoreDep) -> dict[str, Any]:
    """The ``cacscore.score/1`` report of the edited mask with a ``review`` block."""
    return store.report(study_id)


@router.get("/{study_id}/mask.nii.gz")
def mask_nifti(study_id: int, store: StoreDep) -> Response:
    """The edited label mask (0 background, 1 unspecified, 2 LM, 3 LAD, 4 LCX, 5 RCA)."""
    return Response(
        store.mask_nifti(study_id),
        media_type="application/gzip",
        headers=_attachment(f"study-{study_id}-mask.nii.gz"),
    )


@router.get("/{study_id}/report.pdf")
def report_pdf(study_id: int, store: StoreDep) -> Response:
    """One-page PDF report."""
    return Response(
        store.report_pdf(study_id),
        media_type="application/pdf",
        headers=_attachment(f"study-{study_id}-report.pdf"),
    )
