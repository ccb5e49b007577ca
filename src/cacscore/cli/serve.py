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
            help="Database: a file path (SQLite) or a URL (sqlite:///..., postgresql+psycopg://...); "
            "default cacscore-review/review.db.",
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
            help="Access token (at least 32 characters), or 'auto' to generate and print one. "
            "Open /?token=TOKEN once; the browser then keeps an HttpOnly session cookie.",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="Host name browsers may use to reach the server besides the loopback names and --host "
            "(repeatable), e.g. the name of a reverse proxy.",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="TLS certificate (PEM) to serve HTTPS; needs --tls-key.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="TLS private key (PEM).")] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", help="Largest accepted upload, MB.")
    ] = 512.0,
    verify_audit: Annotated[
        bool,
        typer.Option(
            "--verify-audit",
            help="Check the audit log's hash chain against the studies, print the result and exit "
            "(exit code 1 when history was changed).",
        ),
    ] = False,
) -> None:
    """Serve the review app: open studies, correct lesions, sign, export JSON/NIfTI/PDF."""
    with user_errors():
        from cacscore.errors import InvalidInputError
        from cacscore.web.db import database_url, open_database
        from cacscore.web.db import verify_audit as check_audit

        db_url = database_url(db) if db else None
        if verify_audit:
            from cacscore.web.dependencies import Settings

            database = open_database(db_url or Settings().db_url)
            try:
                with database.sessions() as session:
                    result = check_audit(session)
            finally:
                database.engine.dispose()
            for problem in result.problems:
                err_console.print(f"audit: {problem}", soft_wrap=True)
            if not result.ok:
                raise InvalidInputError(
                    f"audit log: {len(result.problems)} problem(s) in {result.rows} rows; history was changed"
                )
            err_console.print(f"audit log intact: {result.rows} rows, chain and studies agree")
            return

        import uvicorn

        from cacscore.web.dependencies import Settings
        from cacscore.web.main import create_app
        from cacscore.web.security import generate_token

        if (tls_cert is None) != (tls_key is None):
            raise InvalidInputError("--tls-cert and --tls-key go together; give both or neither")
        for option, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
            if path is not None and not path.is_file():
                raise InvalidInputError(f"{option} {path}: no such file")
        generated = token == "auto"
        if generated:
            token = generate_token()
        defaults = Settings()
        settings = Settings(
            data_dir=data,
            db_url=db_url or defaults.db_url,
            upload_dir=uploads or defaults.upload_dir,
            token=token or None,
            host=host,
            allowed_hosts=tuple(allowed_host or ()),
            tls=tls_cert is not None,
            max_upload_mb=max_upload_mb,
            analyse_in_background=True,
        )
        app = create_app(settings)
        # Fail now, with a one-line message, rather than on the first request.
        open_database(settings.db_url).engine.dispose()
        logging.basicConfig(level=logging.INFO, format="%(levelname)-9s %(name)s: %(message)s")
        if settings.beyond_loopback and not settings.tls:
            err_console.print(
                f"warning: serving plain HTTP on {host}: the token and patient data cross the network "
                "unencrypted; give --tls-cert/--tls-key or put a TLS reverse proxy in front (docs/review.md)",
                soft_wrap=True,
            )
        scheme = "https" if settings.tls else "http"
        shown = "localhost" if host in ("127.0.0.1", "::1") else host
        if generated:
            err_console.print(f"access token (keep it secret): {token}", soft_wrap=True)
        suffix = f"/?token={token}" if generated else "/?token=<your token>" if token else "/"
        err_console.print(
            f"review app on {scheme}://{shown}:{port}{suffix}  (Ctrl+C stops it)", soft_wrap=True
        )
        # The viewer fetches every slice separately; per-request access lines would drown the useful ones.
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="info",
            access_log=False,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
        )


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command."""
    app.command("serve")(serve)
