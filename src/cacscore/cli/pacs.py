"""``cacscore pacs pull``: score a study fetched from a DICOMweb server, optionally STOW the results back."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from cacscore.cli.common import (
    ModelOption,
    PrecisionOption,
    SkipDomainCheckOption,
    out_console,
    user_errors,
)
from cacscore.errors import CacScoreError

pacs_app = typer.Typer(
    help="Work with a PACS over DICOMweb (QIDO-RS, WADO-RS, STOW-RS).", no_args_is_help=True
)


@pacs_app.command("pull")
def pull(
    url: Annotated[
        str, typer.Option("--url", help="DICOMweb root of the server, e.g. http://pacs:8042/dicom-web.")
    ],
    study: Annotated[str, typer.Option("--study", help="StudyInstanceUID of the study to score.")],
    out: Annotated[
        Path,
        typer.Option("--out", help="Folder: incoming/ (the fetched instances) and results/<series UID>/."),
    ] = Path("cacscore-pacs"),
    store: Annotated[
        bool, typer.Option("--store", help="Send SEG, SR and PDF of each scored series back with STOW-RS.")
    ] = False,
    model: ModelOption = None,
    precision: PrecisionOption = None,
    skip_domain_check: SkipDomainCheckOption = False,
) -> None:
    """Fetch the CT series of study STUDY from a DICOMweb server and score each (once: a series already
    scored in OUT is not scored again)."""
    with user_errors():
        from cacscore.node.dicomweb import StowSender, pull_study
        from cacscore.node.queue import NodeQueue
        from cacscore.node.worker import Worker

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        queue = NodeQueue(out)
        pulled = pull_study(url, study, queue)
        worker = Worker(
            queue,
            quiet_s=0.0,
            model_dir=model,
            skip_domain_check=skip_domain_check,
            precision=precision,
            forward=StowSender(url) if store else None,
        )
        console = out_console()
        states = []
        for series in pulled:
            status = worker.process(series)
            states.append(status["state"])
            where = f", sent to {status['forwarded']}" if "forwarded" in status else ""
            if status["state"] == "scored":
                console.print(
                    f"series {series.series_uid}: Agatston {status['agatston']:.1f}, category "
                    f"{status['risk_category']}{where}; results in {queue.result_dir(series.series_uid)}"
                )
            else:
                console.print(f"series {series.series_uid}: {status['state']}: {status.get('error')}")
            if "forward_error" in status:
                raise CacScoreError(str(status["forward_error"]))
        if not pulled:
            console.print(f"every CT series of study {study} is already scored in {out}")
        if states and "scored" not in states:
            raise CacScoreError(f"study {study}: no CT series could be scored (see above)")


def register(app: typer.Typer) -> None:
    """Add the ``pacs`` command group to ``app``."""
    app.add_typer(pacs_app, name="pacs")
