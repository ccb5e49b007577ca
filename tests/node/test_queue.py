"""The node's on-disk queue: durable stores, the quiet period, the done marker (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cacscore.errors import InvalidInputError
from cacscore.node.queue import DONE_MARKER, NodeQueue


def test_store_writes_the_file_under_study_series_sop(tmp_path: Path) -> None:
    queue = NodeQueue(tmp_path)
    path = queue.store("1.2.3", "1.2.3.4", "1.2.3.4.5", b"abc")
    assert path == tmp_path / "incoming" / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm"
    assert path.read_bytes() == b"abc"
    # No temporary file is left beside it.
    assert sorted(p.name for p in path.parent.iterdir()) == ["1.2.3.4.5.dcm"]


@pytest.mark.parametrize("uid", ["", "../../etc", "1.2.a", "1." + "2" * 64, "1..2"])
def test_store_refuses_what_is_not_a_uid(tmp_path: Path, uid: str) -> None:
    with pytest.raises(InvalidInputError, match="not a DICOM UID"):
        NodeQueue(tmp_path).store("1.2", uid, "1.3", b"x")
    assert not any((tmp_path / "incoming").rglob("*.dcm"))


def test_a_series_is_complete_after_its_quiet_period_and_never_after_done(tmp_path: Path) -> None:
    queue = NodeQueue(tmp_path)
    for sop in ("1.1", "1.2"):
        queue.store("9", "9.1", sop, b"x")
    newest = max(p.stat().st_mtime for p in (tmp_path / "incoming" / "9" / "9.1").iterdir())
    assert [s.series_uid for s in queue.pending()] == ["9.1"]
    assert queue.pending()[0].n_instances == 2
    assert queue.complete(10.0, now_s=newest + 9.9) == []
    assert [s.series_uid for s in queue.complete(10.0, now_s=newest + 10.0)] == ["9.1"]
    queue.mark_done("9.1", {"state": "scored"})
    assert json.loads((tmp_path / "results" / "9.1" / DONE_MARKER).read_text())["state"] == "scored"
    assert queue.complete(0.0, now_s=newest + 1e6) == []
    # A new queue on the same folder (a restart) sees the same state.
    assert NodeQueue(tmp_path).pending() == []
