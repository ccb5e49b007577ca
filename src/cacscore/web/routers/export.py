"""Exports of the reviewed state: score report JSON, label mask NIfTI, one-page PDF (each one audited);
of a signed study read from DICOM also its DICOM Segmentation, SR and encapsulated PDF."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from cacscore.web.dependencies import StoreDep, StudyId
from cacscore.web.store import ReviewStore

router = APIRouter()

#: Who exports (the review page sends the confirmed reader name); audited with the export.
Reader = Annotated[str | None, Query(max_length=128, description="Name of the person exporting.")]


def _attachment(content: bytes, media_type: str, name: str) -> Response:
    """A download that the browser saves as ``name`` and never caches (the state may change)."""
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
    return Response(content, media_type=media_type, headers=headers)


@router.get("/{study_id}/report.json")
def report_json(study_id: StudyId, store: StoreDep, reviewer: Reader = None) -> dict[str, Any]:
    """The ``cacscore.score/1`` report of the edited mask with a ``review`` block."""
    report = store.report(study_id)
    store.record_export(study_id, "report.json", reviewer)
    return report


@router.get("/{study_id}/mask.nii.gz")
def mask_nifti(study_id: StudyId, store: StoreDep, reviewer: Reader = None) -> Response:
    """The edited label mask (0 background, 1 unspecified, 2 LM, 3 LAD, 4 LCX, 5 RCA)."""
    content = store.mask_nifti(study_id)
    store.record_export(study_id, "mask.nii.gz", reviewer)
    return _attachment(content, "application/gzip", f"study-{study_id}-mask.nii.gz")


@router.get("/{study_id}/report.pdf")
def report_pdf(study_id: StudyId, store: StoreDep, reviewer: Reader = None) -> Response:
    """One-page PDF report."""
    content = store.report_pdf(study_id)
    store.record_export(study_id, "report.pdf", reviewer)
    return _attachment(content, "application/pdf", f"study-{study_id}-report.pdf")


@router.get("/{study_id}/seg.dcm")
def seg_dicom(study_id: StudyId, store: StoreDep, reviewer: Reader = None) -> Response:
    """DICOM Segmentation of the signed result (reader's lesions as MANUAL segments)."""
    return _dicom(study_id, store, "seg.dcm", reviewer)


@router.get("/{study_id}/sr.dcm")
def sr_dicom(study_id: StudyId, store: StoreDep, reviewer: Reader = None) -> Response:
    """DICOM Measurement Report (Comprehensive 3D SR) of the signed result, verified by its signer."""
    return _dicom(study_id, store, "sr.dcm", reviewer)


@router.get("/{study_id}/report_pdf.dcm")
def report_pdf_dicom(study_id: StudyId, store: StoreDep, reviewer: Reader = None) -> Response:
    """The PDF report of the signed result as an Encapsulated PDF DICOM instance."""
    return _dicom(study_id, store, "report_pdf.dcm", reviewer)


def _dicom(study_id: int, store: ReviewStore, name: str, reviewer: str | None) -> Response:
    content = store.dicom_export(study_id, name)
    store.record_export(study_id, name, reviewer)
    return _attachment(content, "application/dicom", f"study-{study_id}-{name}")
