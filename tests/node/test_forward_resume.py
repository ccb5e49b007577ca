"""Resumable forwarding of the node's worker, without network: a crash mid-forward, a failing receiver.

The scoring is replaced by one that writes three small DICOM files and counts its calls; the receiver
records what it was sent. A crash is an exception that no handler catches (as a SIGKILL stops the
process where it is); the restart is a new worker on the same folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cacscore.errors import CacScoreError
from cacscore.node.queue import DONE_MARKER, FORWARD_STATE, SCORED_MARKER, NodeQueue
from cacscore.node.worker import Worker

STUDY, SERIES = "1.2.826.0.1.3680043.99.1", "1.2.826.0.1.3680043.99.1.1"
NAMES = ["seg.dcm", "sr.dcm", "report_pdf.dcm"]


class Crash(BaseException):
    """Stands for SIGKILL: nothing in the worker catches it."""


def _tiny_dicom(path: Path) -> str:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SOPInstanceUID)


class CountingWorker(Worker):
    """A worker whose scoring writes three tiny DICOM files (new UIDs each time) and is counted."""

    n_scored = 0

    def _score(self, series: Any, out: Path) -> tuple[dict[str, Any], list[Path]]:
        type(self).n_scored += 1
        for name in ("score.json", "lesions.csv"):
            (out / name).write_text("{}" if name.endswith("json") else "")
        written = [out / name for name in NAMES]
        for path in written:
            _tiny_dicom(path)
        return {"agatston": 12.5, "risk_category": "C"}, written


class Receiver:
    """Records the SOP Instance UIDs it confirms; ``crash_after`` / ``fail_after`` confirmations stop it."""

    target = "PACS@test:104"

    def __init__(self, crash_after: int | None = None, fail_after: int | None = None) -> None:
        self.received: list[str] = []
        self.crash_after, self.fail_after = crash_after, fail_after

    def send(self, paths: list[Path], on_sent: Callable[[Path], None] | None = None) -> str:
        for path in paths:
            if self.fail_after is not None and len(self.received) >= self.fail_after:
                raise CacScoreError(f"--forward {self.target}: C-STORE of {path} failed (status 42752)")
            self.received.append(str(pydicom.dcmread(path).SOPInstanceUID))
            if self.crash_after is not None and len(self.received) == self.crash_after:
                raise Crash  # after the receiver stored it, before the node recorded it
            if on_sent is not None:
                on_sent(path)
        return self.target


@pytest.fixture
def queue(tmp_path: Path) -> NodeQueue:
    CountingWorker.n_scored = 0
    queue = NodeQueue(tmp_path)
    for sop in ("1.1", "1.2"):
        queue.store(STUDY, SERIES, f"{SERIES}.{sop}", b"x")
    return queue


def _uids(queue: NodeQueue) -> list[str]:
    return [str(pydicom.dcmread(queue.result_dir(SERIES) / name).SOPInstanceUID) for name in NAMES]


def test_crash_mid_forward_resumes_with_the_same_files_and_scores_once(queue: NodeQueue) -> None:
    first = Receiver(crash_after=2)
    with pytest.raises(Crash):
        CountingWorker(queue, quiet_s=0.0, forward=first).run_once()
    uids = _uids(queue)
    assert first.received == uids[:2]
    assert not (queue.result_dir(SERIES) / DONE_MARKER).exists()
    # The first file was recorded; the second reached the receiver but the crash came before its record.
    state = json.loads((queue.result_dir(SERIES) / FORWARD_STATE).read_text())[first.target]
    assert sorted(state["files"]) == ["seg.dcm"] and state["state"] == "pending" and state["attempts"] == 1
    assert state["files"]["seg.dcm"]["sop_instance_uid"] == uids[0]
    # Restart: not scored again, the unconfirmed files go, under the same UIDs.
    second = Receiver()
    assert CountingWorker(queue, quiet_s=0.0, forward=second).run_once() == [SERIES]
    assert CountingWorker.n_scored == 1
    assert _uids(queue) == uids
    assert second.received == uids[1:]
    done = json.loads((queue.result_dir(SERIES) / DONE_MARKER).read_text())
    assert done["state"] == "scored" and done["forwarded"] == first.target
    assert done["forward"]["state"] == "complete" and done["forward"]["attempts"] == 2
    assert {name: item["sop_instance_uid"] for name, item in done["forward"]["files"].items()} == dict(
        zip(NAMES, uids, strict=True)
    )
    # A completed series is neither scored nor sent again.
    third = Receiver()
    assert CountingWorker(queue, quiet_s=0.0, forward=third).run_once() == []
    assert third.received == [] and CountingWorker.n_scored == 1


def test_crash_after_scoring_before_any_send_forwards_everything_once(queue: NodeQueue) -> None:
    first = Receiver(crash_after=1)
    with pytest.raises(Crash):
        CountingWorker(queue, quiet_s=0.0, forward=first).run_once()
    assert (queue.result_dir(SERIES) / SCORED_MARKER).is_file()
    second = Receiver()
    CountingWorker(queue, quiet_s=0.0, forward=second).run_once()
    assert second.received == _uids(queue) and CountingWorker.n_scored == 1


def test_a_failed_forward_is_visible_retried_later_and_at_restart(queue: NodeQueue) -> None:
    receiver = Receiver(fail_after=1)
    worker = CountingWorker(queue, quiet_s=0.0, forward=receiver, forward_retry_s=3600.0)
    status = worker.process(queue.pending()[0])
    assert status["state"] == "scored" and "forward_error" in status and "forwarded" not in status
    assert not (queue.result_dir(SERIES) / DONE_MARKER).exists()
    state = queue.forward_state(SERIES)[receiver.target]
    assert state["state"] == "failed" and "status 42752" in state["last_error"]
    assert sorted(state["files"]) == ["seg.dcm"]
    # Within the retry interval the running worker leaves it alone...
    assert worker.run_once() == []
    # ... a restart retries at once, sends only what is missing, and finishes the series.
    healthy = Receiver()
    assert CountingWorker(queue, quiet_s=0.0, forward=healthy).run_once() == [SERIES]
    assert healthy.received == _uids(queue)[1:]
    assert CountingWorker.n_scored == 1
    done = json.loads((queue.result_dir(SERIES) / DONE_MARKER).read_text())
    assert done["forward"]["state"] == "complete" and done["forward"]["last_error"] is None


def test_without_forward_a_scored_series_is_done_at_once(queue: NodeQueue) -> None:
    assert CountingWorker(queue, quiet_s=0.0).run_once() == [SERIES]
    done = json.loads((queue.result_dir(SERIES) / DONE_MARKER).read_text())
    assert done["state"] == "scored" and "forward" not in done
    assert not (queue.result_dir(SERIES) / FORWARD_STATE).exists()
