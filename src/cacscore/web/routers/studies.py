"""Study list, uploads and the pixel data the viewer draws."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from cacscore.web.dependencies import Settings, SliceIndex, StoreDep, StudyId, get_settings
from cacscore.web.files import UploadTooLargeError

router = APIRouter()

#: Multipart framing allowed on top of the file itself, bytes.
_FORM_OVERHEAD = 64 * 1024
_CHUNK = 1 << 20


@router.get("")
def list_studies(store: StoreDep) -> list[dict[str, Any]]:
    """Every study with its automatic and reviewed score and its status."""
    return store.list_studies()


@router.post("/rescan")
def rescan(store: StoreDep) -> dict[str, int]:
    """Look for new scans in the data folder (audited)."""
    return {"added": store.sync_data(actor="rescan request")}


async def limited(
    stream: AsyncIterator[bytes], limit_bytes: int, limit_mb: float
) -> AsyncGenerator[bytes, None]:
    """Pass ``stream`` on, raising :class:`UploadTooLargeError` as soon as more than ``limit_bytes`` came.

    A chunked upload has no Content-Length to refuse up front; counting while
    receiving stops it at the limit instead of after the whole body (and its
    temporary file) has arrived.
    """
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit_bytes:
            raise UploadTooLargeError(f"upload is larger than the limit of {limit_mb:g} MB (--max-upload-mb)")
        yield chunk


@router.post("", status_code=status.HTTP_201_CREATED)
async def upload(
    request: Request, store: StoreDep, settings: Annotated[Settings, Depends(get_settings)]
) -> dict[str, Any]:
    """Add a study from a multipart ``file``: a zip of one DICOM series or a NIfTI file.

    An optional field ``reviewer`` names who uploads (audited).
    """
    limit = int(settings.max_upload_mb * 2**20)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + _FORM_OVERHEAD:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"upload is larger than the limit of {settings.max_upload_mb:g} MB (--max-upload-mb)",
        )
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "send the scan as a multipart field named 'file'"
        )
    stream = limited(request.stream(), limit + _FORM_OVERHEAD, settings.max_upload_mb)
    parser = MultiPartParser(request.headers, stream, max_files=1, max_fields=4)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"malformed upload: {exc.message}") from None
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "send the scan as a multipart field named 'file'"
            )
        reader = form.get("reviewer")
        actor = reader.strip()[:128] if isinstance(reader, str) and reader.strip() else "unnamed"
        chunks = iter(lambda: file.file.read(_CHUNK), b"")
        return await run_in_threadpool(store.upload, file.filename, chunks, actor)
    finally:
        await form.close()


@router.get("/{study_id}")
def get_study(study_id: StudyId, store: StoreDep) -> dict[str, Any]:
    """Geometry, identifiers and review state of one study (analysed on first opening)."""
    return store.study(study_id)


def _binary(content: bytes, cache: str) -> Response:
    return Response(content, media_type="application/octet-stream", headers={"Cache-Control": cache})


@router.get("/{study_id}/slices/{z}")
def get_slice(study_id: StudyId, z: SliceIndex, store: StoreDep) -> Response:
    """Axial slice ``z`` in HU: little-endian int16, rows x columns (never changes: cached)."""
    return _binary(store.slice_bytes(study_id, z), "private, max-age=3600")


@router.get("/{study_id}/overlays/{z}")
def get_overlay(study_id: StudyId, z: SliceIndex, store: StoreDep) -> Response:
    """Candidate ids of slice ``z`` (int32) followed by its edited labels (uint8); changes with every edit."""
    return _binary(store.overlay_bytes(study_id, z), "no-store")
