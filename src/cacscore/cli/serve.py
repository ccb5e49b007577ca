"""``cacscore serve``: the browser review app (FastAPI + uvicorn)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from cacscore.cli.common import err_console, user_errors


def serve(
    data: Path | None = typer.Option(None, "--data", help="Folder of scans to review (DICOM series, NIfTI, MetaImage, cohorts)."),
    db: str | None = typer.Option(
        None, "--db", help="Database URL (default: SQLite file cacscore-review/review.db; PostgreSQL: postgresql+psycopg://...)."
    ),
    uploads: Path | None = typer.Option(None, "--uploads", help="Folder for uploaded studies (default: cacscore-review/uploads)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; anything but loopback needs --token."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    token: str | None = typer.Option(
        None, "--token", envvar="CACSCORE_TOKEN", help="Access token required on every API request (open the page as /?token=...)."
    ),
    max_upload_mb: float = typer.Option(512.0, "--max-upload-mb", help="Largest accepted upload, MB."),
) -> None:
    """Serve the review app: open studies, correct lesions, sign, export JSON/NIfTI/PDF."""
    with user_errors():
        import uvicorn

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
        )
        app = create_app(settings)
        shown = "localhost" if host in ("127.0.0.1", "::1") else host
        suffix = "/?token=<your token>" if token else "/"
        err_console.print(f"review app on http://{shown}:{port}{suffix}  (Ctrl+C stops it)")
        # Access logs show request paths only (study ids, never names); keep them.
        uvicorn.run(app, host=host, port=port, log_level=os.environ.get("CACSCORE_LOG_LEVEL", "info"))


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command."""
    app.command("serve")(serve)
