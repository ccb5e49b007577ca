"""The review app: creates the FastAPI application and includes the routers.

``create_app(settings)`` is what ``cacscore serve`` runs; without settings the
app reads them from the environment (:meth:`Settings.from_env`).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from cacscore import __version__
from cacscore.errors import CacScoreError, InvalidInputError
from cacscore.web.dependencies import Settings, get_settings, require_token
from cacscore.web.files import UploadTooLargeError
from cacscore.web.routers import export, review, studies
from cacscore.web.store import ConflictError, StudyNotFoundError, StudySignedError

STATIC_DIR = Path(__file__).parent / "static"

#: HTTP status of each error class; the first match in this order wins.
ERROR_STATUS: tuple[tuple[type[CacScoreError], int], ...] = (
    (StudyNotFoundError, 404),
    (ConflictError, 409),
    (StudySignedError, 403),
    (UploadTooLargeError, 413),
    (InvalidInputError, 422),
    (CacScoreError, 400),
)


async def _error_response(_request: Request, exc: Exception) -> JSONResponse:
    code = next(code for cls, code in ERROR_STATUS if isinstance(exc, cls))
    return JSONResponse({"detail": str(exc)}, status_code=code)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the review app; ``settings`` (checked) replace the environment's."""
    app = FastAPI(
        title="cacscore review", version=__version__, docs_url="/api/docs", openapi_url="/api/openapi.json"
    )
    if settings is not None:
        checked = settings.check()
        app.dependency_overrides[get_settings] = lambda: checked
    app.add_exception_handler(CacScoreError, _error_response)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    protected = [Depends(require_token)]
    app.include_router(studies.router, prefix="/api/studies", tags=["studies"], dependencies=protected)
    app.include_router(review.router, prefix="/api/studies", tags=["review"], dependencies=protected)
    app.include_router(export.router, prefix="/api/studies", tags=["export"], dependencies=protected)
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app
