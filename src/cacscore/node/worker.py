"""The DICOM node's worker: scores each complete series of the queue once.

A series is scored by the path ``cacscore score`` runs (:mod:`cacscore.pipeline`: read, input-domain
check, ensemble), its ``score.json``, ``lesions.csv`` and DICOM outputs (:mod:`cacscore.export`) are
written into ``results/<series UID>/``, the outputs are optionally forwarded to another node, and the
done marker is written last. A series the domain check refuses (or that cannot be read) is marked
done with its error, so it is not retried forever.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cacscore.errors import CacScoreError

if TYPE_CHECKING:
    from cacscore.model.ensemble import Ensemble
    from cacscore.node.queue import NodeQueue, PendingSeries

log = logging.getLogger("cacscore.node")


class Sender(Protocol):
    """Where a scored series' DICOM outputs go (a DICOM node by C-STORE, a DICOMweb server by STOW-RS)."""

    def send(self, paths: list[Path]) -> str:
        """Send the files; return where they went, for the done marker.

        Raises
        ------
        CacScoreError
            If the receiver refuses them or cannot be reached.
        """
        ...


@dataclass(frozen=True)
class Destination:
    """A DICOM node to C-STORE results to (``HOST:PORT:AET``)."""

    host: str
    port: int
    ae_title: str

    @classmethod
    def parse(cls, text: str) -> Destination:
        """Parse ``HOST:PORT:AET``.

        Raises
        ------
        InvalidInputError
            If the text is not three fields with a port in 1-65535 and an AE title of 1-16 characters.
        """
        from cacscore.errors import InvalidInputError

        parts = text.rsplit(":", 2)
        if (
            len(parts) != 3
            or not parts[0]
            or not parts[1].isdigit()
            or not 0 < int(parts[1]) < 65536
            or not 0 < len(parts[2].strip()) <= 16
        ):
            raise InvalidInputError(
                f"--forward {text!r}: expected HOST:PORT:AET (e.g. pacs.local:4242:ORTHANC)"
            )
        return cls(parts[0], int(parts[1]), parts[2].strip())


@dataclass(frozen=True)
class CStoreSender:
    """Sends files to ``destination`` by C-STORE, calling as ``calling_ae_title``."""

    destination: Destination
    calling_ae_title: str = "CACSCORE"

    def send(self, paths: list[Path]) -> str:
        """C-STORE ``paths`` in one association; return ``AET@HOST:PORT``."""
        from cacscore.node.scp import send_files

        send_files(paths, self.destination, calling_ae_title=self.calling_ae_title)
        return f"{self.destination.ae_title}@{self.destination.host}:{self.destination.port}"


@dataclass
class Worker:
    """Scores the complete series of ``queue``; :meth:`run_once` for one pass, :meth:`start` for a thread.

    Parameters
    ----------
    queue : NodeQueue
    quiet_s : float
        Seconds without a new instance after which a series is complete.
    model_dir : Path, optional
        Model folder (default: ``$CACSCORE_MODEL_DIR`` or the shipped model).
    skip_domain_check : bool
        Score series the domain check refuses (the report says so).
    forward : Sender, optional
        Receives SEG, SR and PDF of each scored series (:class:`CStoreSender` for a DICOM node).
    """

    queue: NodeQueue
    quiet_s: float = 10.0
    model_dir: Path | None = None
    skip_domain_check: bool = False
    forward: Sender | None = None
    poll_s: float = 1.0
    _ensemble: Ensemble | None = field(default=None, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def run_once(self) -> list[str]:
        """Score every complete, not yet done series; return their series UIDs."""
        scored = []
        for series in self.queue.complete(self.quiet_s):
            if self._stop.is_set():
                break
            self.process(series)
            scored.append(series.series_uid)
        return scored

    def process(self, series: PendingSeries) -> dict[str, Any]:
        """Score one series, write its results, forward them, and mark it done; return the done status."""
        out = self.queue.result_dir(series.series_uid)
        out.mkdir(parents=True, exist_ok=True)
        log.info("scoring series %s (%d instances)", series.series_uid, series.n_instances)
        status: dict[str, Any] = {
            "study_uid": series.study_uid,
            "series_uid": series.series_uid,
            "n_instances": series.n_instances,
        }
        try:
            report, written = self._score(series, out)
        except CacScoreError as error:
            # The series is answered (refused) once, not retried at every poll.
            log.warning("series %s not scored: %s", series.series_uid, error)
            status.update(state="refused", error=str(error))
            self.queue.mark_done(series.series_uid, status)
            return status
        except Exception as error:  # noqa: BLE001 - a series that breaks the scoring must not be retried forever
            log.exception("series %s failed", series.series_uid)
            status.update(state="failed", error=f"{type(error).__name__}: {error}")
            self.queue.mark_done(series.series_uid, status)
            return status
        status.update(
            state="scored",
            agatston=report["agatston"],
            risk_category=report["risk_category"],
            files=[path.name for path in written],
        )
        if self.forward is not None:
            try:
                status["forwarded"] = self.forward.send(written)
            except CacScoreError as error:
                # The results stay on disk; the series is not scored again because forwarding failed.
                log.warning("series %s: forwarding failed: %s", series.series_uid, error)
                status["forward_error"] = str(error)
        self.queue.mark_done(series.series_uid, status)
        log.info("series %s: %s", series.series_uid, json.dumps(status))
        return status

    def _score(self, series: PendingSeries, out: Path) -> tuple[dict[str, Any], list[Path]]:
        from cacscore.export import Algorithm, write_dicom_outputs
        from cacscore.node.queue import write_atomic
        from cacscore.pipeline import read_and_check, score_checked
        from cacscore.scoring import lesions_csv, score_report

        volume, check = read_and_check(
            series.folder, series=series.series_uid, skip_domain_check=self.skip_domain_check
        )
        result, extra, labels = score_checked(volume, check, self._load())
        report = score_report(volume, result, series.folder, extra=extra)
        write_atomic(out / "score.json", (json.dumps(report, indent=2) + "\n").encode("utf-8"))
        write_atomic(out / "lesions.csv", lesions_csv(report).encode("utf-8"))
        model = report.get("model") or {}
        algorithm = Algorithm(
            name=str(model.get("name") or "cacscore model"),
            version=str(model.get("version") or "unversioned"),
        )
        written = write_dicom_outputs(out, volume, labels, report, algorithm)
        return report, written

    def _load(self) -> Ensemble:
        if self._ensemble is None:
            import os

            import torch

            from cacscore.model import load_ensemble

            torch.set_num_threads(max(1, os.cpu_count() or 1))
            self._ensemble = load_ensemble(self.model_dir)
        return self._ensemble

    def start(self) -> None:
        """Run :meth:`run_once` every ``poll_s`` seconds in a background thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._loop, name="cacscore-node-worker", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the node keeps serving; the series stays pending for the next poll
                log.exception("worker pass failed")
            self._stop.wait(self.poll_s)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop the thread after the series being scored."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
