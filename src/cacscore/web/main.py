"""The review app: creates the FastAPI application and includes the routers.

``create_app(settings)`` is what ``cacscore serve`` runs; without settings the
app reads them from the environment (:meth:`Settings.from_env`). The app owns
its review stores and closes them when it shuts down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from cacscore import __version__
from cacscore.errors import CacScoreError, InvalidInputError
from cacscore.web.dependencies import AppStores, Settings, app_stores, get_settings
from cacscore.web.files import UploadTooLargeError
from cacscore.web.routers import anatomy, audit, export, review, studies
from cacscore.web.security import FailedAttempts, guard
from cacscore.web.store import (
    ConfirmationNeededError,
    ConflictError,
    ExportNotFoundError,
    StudyNotFoundError,
    StudySignedError,
)

STATIC_DIR = Path(__file__).parent / "static"

#: HTTP status of each error class; the first match in this order wins.
ERROR_STATUS: tuple[tuple[type[CacScoreError], int], ...] = (
    (StudyNotFoundError, 404),
    (ExportNotFoundError, 404),
    (ConflictError, 409),
    (StudySignedError, 403),
    (ConfirmationNeededError, 428),
    (UploadTooLargeError, 413),
    (InvalidInputError, 422),
    (CacScoreError, 400),
)


def _guard_middleware(
    app: FastAPI,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    failures = FailedAttempts()

    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        override = app.dependency_overrides.get(get_settings, get_settings)
        return await guard(request, call_next, override(), failures)

    return middleware


async def _error_response(_request: Request, exc: Exception) -> JSONResponse:
    code = next(code for cls, code in ERROR_STATUS if isinstance(exc, cls))
    return JSONResponse({"detail": str(exc)}, status_code=code)


async def _validation_response(_request: Request, exc: Exception) -> JSONResponse:
    """422 naming each bad field; the input itself is left out (it may be NaN, which JSON cannot carry)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", "invalid"))}
        for error in errors
    ]
    return JSONResponse({"detail": detail}, status_code=422)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    # Closing joins the background analysis thread; the event loop must not wait on it.
    await run_in_threadpool(app_stores(app).close)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the review app; ``settings`` (checked) replace the environment's."""
    # FastAPI's interactive docs load their scripts from a CDN; the schema alone stays available.
    app = FastAPI(
        title="cacscore review",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=_lifespan,
    )
    app.state.stores = AppStores()
    if settings is not None:
        checked = settings.check()
        app.dependency_overrides[get_settings] = lambda: checked
    app.add_exception_handler(CacScoreError, _error_response)
    app.add_exception_handler(RequestValidationError, _validation_response)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    # Host, same-origin proof and token are checked before any route runs (cacscore.web.security).
    app.middleware("http")(_guard_middleware(app))
    app.include_router(audit.router, prefix="/api/audit", tags=["audit"])
    app.include_router(studies.router, prefix="/api/studies", tags=["studies"])
    app.include_router(review.router, prefix="/api/studies", tags=["review"])
    app.include_router(export.router, prefix="/api/studies", tags=["export"])
    app.include_router(anatomy.router, prefix="/api/studies", tags=["anatomy"])
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app
