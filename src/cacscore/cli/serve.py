"""``cacscore serve``: the browser review app (FastAPI + uvicorn)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from cacscore.cli.common import err_console, user_errors


def serve(
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Folder of scans to review (DICOM series, NIfTI, MetaImage, cohorts)."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database URL; default SQLite cacscore-review/review.db (or postgresql+psycopg://...).",
        ),
    ] = None,
    uploads: Annotated[
        Path | None,
        typer.Option("--uploads", help="Folder for uploaded studies; default cacscore-review/uploads."),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; anything but loopback needs --token.")
    ] = ("127.0.0.1"),
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="CACSCORE_TOKEN",
            help="Access token for every API request (open /?token=TOKEN).",
        ),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", help="Largest accepted upload, MB.")
    ] = 512.0,
) -> None:
    """Serve the review app: open studies, correct lesions, sign, export JSON/NIfTI/PDF."""
    with user_errors():
        import uvicorn

        from cacscore.web.db import open_database
        from cacscore.web.dependencies import Settings
        from cacscore.web.main import create_app

        defaults = Settings()
        settings = Settings(
            data_dir=data,
            db_url=db or defaults.db_url,
            upload_dir=uploads or defaults.upload_dir,
            token=token or None,
            host=host,
            max_upload_mb=max_upload_mb,
            analyse_in_background=True,
        )
        app = create_app(settings)
        # Fail now, with a one-line message, rather than on the first request.
        open_database(settings.db_url).engine.dispose()
        logging.basicConfig(level=logging.INFO, format="%(levelname)-9s %(name)s: %(message)s")
        shown = "localhost" if host in ("127.0.0.1", "::1") else host
        suffix = "/?token=<your token>" if token else "/"
        err_console.print(f"review app on http://{shown}:{port}{suffix}  (Ctrl+C stops it)")
        # The viewer fetches every slice separately; per-request access lines would drown the useful ones.
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command."""
    app.command("serve")(serve)
