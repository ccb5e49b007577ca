"""``cacscore listen``: a DICOM node that scores the CT series it receives (see :mod:`cacscore.node`)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from cacscore.cli.common import (
    ModelOption,
    PrecisionOption,
    SkipDomainCheckOption,
    err_console,
    user_errors,
)


def listen(
    ae_title: Annotated[str, typer.Option("--ae-title", help="The node's AE title (1-16 characters).")],
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port to listen on.")],
    out: Annotated[
        Path,
        typer.Option("--out", help="Node folder: incoming/ (the on-disk queue) and results/<series UID>/."),
    ],
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "0.0.0.0",
    forward: Annotated[
        str | None,
        typer.Option(
            "--forward", help="HOST:PORT:AET of a node (a PACS) that receives SEG, SR and PDF by C-STORE."
        ),
    ] = None,
    allow_aet: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-aet", help="Calling AE title accepted (repeatable); others are rejected. Default: any."
        ),
    ] = None,
    quiet_seconds: Annotated[
        float,
        typer.Option(
            "--quiet-seconds",
            min=0.0,
            help="A series is complete after this many seconds without a new instance.",
        ),
    ] = 10.0,
    model: ModelOption = None,
    precision: PrecisionOption = None,
    skip_domain_check: SkipDomainCheckOption = False,
) -> None:
    """Receive CT series by DICOM (C-STORE), score each complete series once, optionally forward the results.

    Received instances are kept on disk before they are acknowledged, so a restart (even after a
    crash) loses none and scores none twice. Stop with Ctrl-C or SIGTERM.
    """
    with user_errors():
        from cacscore.node.queue import NodeQueue
        from cacscore.node.scp import check_ae_title, start_scp
        from cacscore.node.worker import CStoreSender, Destination, Worker

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # pynetdicom (each association) and highdicom (each copied module) log at INFO; the node's own lines
        # are the ones an operator reads.
        for noisy in ("pynetdicom", "highdicom"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        title = check_ae_title(ae_title, "--ae-title")
        sender = CStoreSender(Destination.parse(forward), title) if forward else None
        queue = NodeQueue(out)
        worker = Worker(
            queue,
            quiet_s=quiet_seconds,
            model_dir=model,
            skip_domain_check=skip_domain_check,
            precision=precision,
            forward=sender,
        )
        server = start_scp(queue, ae_title=title, port=port, host=host, allow_aets=allow_aet or [])
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        err_console.print(f"listening as {title} on {host}:{port}; queue and results in {out}")
        worker.start()
        try:
            while not stop.wait(0.5):
                pass
        finally:
            server.shutdown()
            worker.stop()
        err_console.print("stopped; received series not yet scored are scored at the next start")


def register(app: typer.Typer) -> None:
    """Add the ``listen`` command to ``app``."""
    app.command("listen")(listen)
