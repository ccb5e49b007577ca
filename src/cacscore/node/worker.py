"""The DICOM node's worker: scores each complete series of the queue once.

A series is scored by the path ``cacscore score`` runs (:mod:`cacscore.pipeline`: read, input-domain
check, ensemble), its ``score.json``, ``lesions.csv`` and DICOM outputs (:mod:`cacscore.export`) are
written into ``results/<series UID>/`` and flushed, the scored marker is written, the outputs are
optionally forwarded to another node, and the done marker is written last. A series the domain check
refuses (or that cannot be read) is marked done with its error, so it is not retried forever.

Forwarding is resumable: each file the receiver confirmed is recorded in ``forward.json`` at once, and
a series that was scored but not completely forwarded (the node was killed, or the receiver failed) is
taken up again with its very files, only those not yet confirmed: no new scoring, no new UIDs. A file
whose C-STORE succeeded just before a crash, before it could be recorded, is sent once more under the
same SOP Instance UID, which a PACS files as the instance it already holds. A failed forward is retried
at every start of the node and, while it runs, every :data:`FORWARD_RETRY_S` seconds.

Test hook: with ``CACSCORE_NODE_CRASH_AFTER_SENT=N`` in the environment the process SIGKILLs itself
right after the N-th file a receiver confirmed, before recording it (the worst moment for a crash).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cacscore.errors import CacScoreError

if TYPE_CHECKING:
    from cacscore.model.ensemble import Ensemble
    from cacscore.node.queue import NodeQueue, PendingSeries

log = logging.getLogger("cacscore.node")

#: Seconds between two attempts of a failed forward while the node runs (a restart retries at once).
FORWARD_RETRY_S = 300.0
#: Environment variable of the crash test hook (see the module docstring).
CRASH_HOOK = "CACSCORE_NODE_CRASH_AFTER_SENT"
_confirmed_in_process = 0


def _crash_hook() -> None:
    """SIGKILL this process at the N-th confirmed file when the test hook asks for it.

    See the module docstring.
    """
    global _confirmed_in_process  # noqa: PLW0603 - one count per process, as the hook's N means
    wanted = os.environ.get(CRASH_HOOK)
    if not wanted:
        return
    _confirmed_in_process += 1
    if _confirmed_in_process == int(wanted):
        log.warning("%s=%s: killing the node after a confirmed file", CRASH_HOOK, wanted)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Sender(Protocol):
    """Where a scored series' DICOM outputs go (a DICOM node by C-STORE, a DICOMweb server by STOW-RS)."""

    @property
    def target(self) -> str:
        """Where the files go (``AET@HOST:PORT``, a URL): the key of the forwarding state."""
        ...

    def send(self, paths: list[Path], on_sent: Callable[[Path], None] | None = None) -> str:
        """Send the files; return where they went, for the done marker.

        ``on_sent(path)`` is called as soon as the receiver confirmed ``path``.

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

    @property
    def target(self) -> str:
        """``AET@HOST:PORT`` of the destination."""
        return f"{self.destination.ae_title}@{self.destination.host}:{self.destination.port}"

    def send(self, paths: list[Path], on_sent: Callable[[Path], None] | None = None) -> str:
        """C-STORE ``paths`` in one association; return ``AET@HOST:PORT``."""
        from cacscore.node.scp import send_files

        send_files(paths, self.destination, calling_ae_title=self.calling_ae_title, on_sent=on_sent)
        return self.target


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
    precision : {"fp32", "bf16"}, optional
        Inference precision (:data:`cacscore.precision.PRECISIONS`); default the model's.
    forward : Sender, optional
        Receives SEG, SR and PDF of each scored series (:class:`CStoreSender` for a DICOM node).
    """

    queue: NodeQueue
    quiet_s: float = 10.0
    model_dir: Path | None = None
    skip_domain_check: bool = False
    precision: str | None = None
    forward: Sender | None = None
    poll_s: float = 1.0
    forward_retry_s: float = FORWARD_RETRY_S
    _ensemble: Ensemble | None = field(default=None, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    #: Series UID -> monotonic time before which a failed forward is not tried again (empty at each start).
    _retry_at: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    def run_once(self) -> list[str]:
        """Score (or finish forwarding) every complete, not yet done series; return their series UIDs."""
        handled = []
        for series in self.queue.complete(self.quiet_s):
            if self._stop.is_set():
                break
            if time.monotonic() < self._retry_at.get(series.series_uid, 0.0):
                continue  # its forward failed a moment ago
            self.process(series)
            handled.append(series.series_uid)
        return handled

    def process(self, series: PendingSeries) -> dict[str, Any]:
        """Score one series (unless it was scored before), forward its results, and mark it done.

        Returns the status: the done marker's, or, when forwarding failed, the scored status with
        ``forward_error`` (no done marker then: the forward is retried, see the module docstring).
        """
        status = self.queue.scored_status(series.series_uid)
        if status is None:
            status = self._score_series(series)
            if status["state"] != "scored":
                self.queue.mark_done(series.series_uid, status)
                return status
        else:
            log.info("series %s was scored before; its results are not scored again", series.series_uid)
        if self.forward is not None:
            forward = self._forward(self.forward, series.series_uid, [str(name) for name in status["files"]])
            status["forward"] = forward
            if forward["state"] != "complete":
                status["forward_error"] = forward["last_error"]
                self._retry_at[series.series_uid] = time.monotonic() + self.forward_retry_s
                log.info("series %s: %s", series.series_uid, json.dumps(status))
                return status
            status["forwarded"] = self.forward.target
            self._retry_at.pop(series.series_uid, None)
        self.queue.mark_done(series.series_uid, status)
        log.info("series %s: %s", series.series_uid, json.dumps(status))
        return status

    def _score_series(self, series: PendingSeries) -> dict[str, Any]:
        """Score the series and write its results and scored marker; return the status (maybe refused)."""
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
            return status
        except Exception as error:  # noqa: BLE001 - a series that breaks the scoring must not be retried forever
            log.exception("series %s failed", series.series_uid)
            status.update(state="failed", error=f"{type(error).__name__}: {error}")
            return status
        status.update(
            state="scored",
            agatston=report["agatston"],
            risk_category=report["risk_category"],
            files=[path.name for path in written],
        )
        self.queue.mark_scored(series.series_uid, status, [out / "score.json", out / "lesions.csv", *written])
        return status

    def _forward(self, sender: Sender, series_uid: str, names: list[str]) -> dict[str, Any]:
        """Send the files of ``names`` not yet confirmed for this destination; return its forwarding state.

        The state (``forward.json``, one entry per destination) is rewritten atomically after each
        confirmed file: ``files`` (name -> SOP Instance UID and time), ``attempts``, ``state``
        (``complete``, ``pending`` or ``failed``), ``last_error``.
        """
        from pydicom import dcmread

        target = sender.target
        out = self.queue.result_dir(series_uid)
        states = self.queue.forward_state(series_uid)
        state = states.setdefault(
            target, {"state": "pending", "files": {}, "attempts": 0, "last_error": None}
        )
        todo = [out / name for name in names if name not in state["files"]]
        if not todo:
            state["state"] = "complete"
            self.queue.write_forward_state(series_uid, states)
            return state
        if state["files"]:
            log.info(
                "series %s: resuming the forward to %s (%s confirmed; sending %s)",
                series_uid,
                target,
                ", ".join(sorted(state["files"])),
                ", ".join(path.name for path in todo),
            )
        state["attempts"] += 1
        state["last_attempt_at"] = _utc_now()
        state["state"] = "pending"
        self.queue.write_forward_state(series_uid, states)

        def confirmed(path: Path) -> None:
            _crash_hook()
            uid = str(dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
            state["files"][path.name] = {"sop_instance_uid": uid, "confirmed_at": _utc_now()}
            self.queue.write_forward_state(series_uid, states)
            log.info("series %s: %s confirmed by %s", series_uid, path.name, target)

        try:
            sender.send(todo, on_sent=confirmed)
        except CacScoreError as error:
            # The results stay on disk and are not scored again; the rest is sent at the next attempt.
            log.warning("series %s: forwarding failed: %s", series_uid, error)
            state.update(state="failed", last_error=str(error))
            self.queue.write_forward_state(series_uid, states)
            return state
        state.update(state="complete", last_error=None)
        self.queue.write_forward_state(series_uid, states)
        return state

    def _score(self, series: PendingSeries, out: Path) -> tuple[dict[str, Any], list[Path]]:
        from cacscore.export import Algorithm, write_dicom_outputs
        from cacscore.io.atomic import write_json_atomic, write_text_atomic
        from cacscore.pipeline import read_and_check, score_checked
        from cacscore.scoring import lesions_csv, score_report

        volume, check = read_and_check(
            series.folder, series=series.series_uid, skip_domain_check=self.skip_domain_check
        )
        result, extra, labels = score_checked(volume, check, self._load())
        report = score_report(volume, result, series.folder, extra=extra)
        write_json_atomic(out / "score.json", report, indent=2)
        write_text_atomic(out / "lesions.csv", lesions_csv(report))
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
            self._ensemble = load_ensemble(self.model_dir, precision=self.precision)
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
