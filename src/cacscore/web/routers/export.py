"""Exports of the reviewed state: score report JSON, label mask NIfTI, one-page PDF."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from cacscore.web.dependencies import StoreDep

router = APIRouter()


def _attachment(content: bytes, media_type: str, name: str) -> Response:
    """A download that the browser saves as ``name`` and never caches (the state may change)."""
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
    return Response(content, media_type=media_type, headers=headers)


@router.get("/{study_id}/report.json")
def report_json(study_id: int, store: StoreDep) -> dict[str, Any]:
    """The ``cacscore.score/1`` report of the edited mask with a ``review`` block."""
    return store.report(study_id)


@router.get("/{study_id}/mask.nii.gz")
def mask_nifti(study_id: int, store: StoreDep) -> Response:
    """The edited label mask (0 background, 1 unspecified, 2 LM, 3 LAD, 4 LCX, 5 RCA)."""
    return _attachment(store.mask_nifti(study_id), "application/gzip", f"study-{study_id}-mask.nii.gz")


@router.get("/{study_id}/report.pdf")
def report_pdf(study_id: int, store: StoreDep) -> Response:
    """One-page PDF report."""
    return _attachment(store.report_pdf(study_id), "application/pdf", f"study-{study_id}-report.pdf")
