"""The DICOM node's on-disk queue: received instances, complete series, done markers.

Layout under the node's folder ``root``::

    incoming/<study UID>/<series UID>/<SOP instance UID>.dcm   received instances
    results/<series UID>/                                       score.json, DICOM outputs,
                                                                ``scored.json``, ``forward.json``,
                                                                ``done`` last

Every instance is written atomically (:mod:`cacscore.io.atomic`: a temporary name, flushed to disk
with ``fsync`` and renamed, the folder flushed too) before the sender gets its success status: an
acknowledged instance survives a crash or a SIGKILL of the node. The markers are written the same way:

- ``scored.json`` once the results are on disk (flushed). A series with it is never scored again:
  after a crash its very files (the same SOP Instance UIDs) are what is forwarded.
- ``forward.json`` after each file a receiver confirmed (C-STORE success): which files went where.
  A restart sends only the others.
- ``done`` last, when the series needs nothing more (scored and forwarded, or refused). A series
  without it is taken up again after a restart: scored if it has no ``scored.json``, else forwarded.

Completeness is the quiet period: a series is complete when its newest file is older than
``quiet_s`` seconds (file times are on disk, so the clock carries over a restart).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cacscore.errors import InvalidInputError
from cacscore.io.atomic import write_bytes_atomic, write_json_atomic

#: A DICOM UID: digits separated by dots, at most 64 characters (PS3.5 9.1). Anything else must not
#: become a path component.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")

#: Name of the marker written last into a series' result folder.
DONE_MARKER = "done"
#: Name of the marker written once a series' results are on disk (JSON: the scoring status).
SCORED_MARKER = "scored.json"
#: Name of the per-series forwarding state (JSON: confirmed files per destination).
FORWARD_STATE = "forward.json"


def check_uid(value: str, what: str) -> str:
    """Return ``value`` if it is a valid DICOM UID, safe as a file name.

    Raises
    ------
    InvalidInputError
        If ``value`` is empty, longer than 64 characters or not digits and dots.
    """
    value = str(value).strip()
    if len(value) > 64 or not _UID.match(value):
        raise InvalidInputError(f"{what} {value!r} is not a DICOM UID")
    return value


def sync_files(paths: list[Path]) -> None:
    """Flush ``paths`` and their folders to disk, e.g. before a marker names them.

    For files written by ordinary writes; those written through :mod:`cacscore.io.atomic` are on disk
    already, and flushing them again is harmless.
    """
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for folder in {path.parent for path in paths}:
        _fsync_dir(folder)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Write ``value`` as indented JSON atomically, creating the folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, value, indent=2)


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when the file does not exist."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{path}: expected a JSON object")
    return value


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class PendingSeries:
    """A received series waiting for (or ready for) scoring."""

    study_uid: str
    series_uid: str
    folder: Path
    n_instances: int
    newest_s: float  # modification time of its newest instance, seconds since the epoch


class NodeQueue:
    """The on-disk queue of a DICOM node rooted at ``root`` (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.results = self.root / "results"
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.results.mkdir(parents=True, exist_ok=True)

    def store(self, study_uid: str, series_uid: str, sop_uid: str, encoded: bytes) -> Path:
        """Store one received instance (a complete DICOM file's bytes) durably; return its path.

        Raises
        ------
        InvalidInputError
            If a UID is not a DICOM UID.
        """
        study = check_uid(study_uid, "StudyInstanceUID")
        series = check_uid(series_uid, "SeriesInstanceUID")
        sop = check_uid(sop_uid, "SOPInstanceUID")
        path = self.incoming / study / series / f"{sop}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, encoded)
        return path

    def result_dir(self, series_uid: str) -> Path:
        """Folder of a series' results."""
        return self.results / series_uid

    def is_done(self, series_uid: str) -> bool:
        """Whether the series has been scored (or refused) and its done marker written."""
        return (self.result_dir(series_uid) / DONE_MARKER).is_file()

    def mark_done(self, series_uid: str, status: dict[str, Any]) -> None:
        """Write the series' done marker (last, atomically) with ``status`` as JSON."""
        _write_json(self.result_dir(series_uid) / DONE_MARKER, status)

    def scored_status(self, series_uid: str) -> dict[str, Any] | None:
        """The status written by :meth:`mark_scored`, or None when the series has not been scored."""
        return _read_json(self.result_dir(series_uid) / SCORED_MARKER)

    def mark_scored(self, series_uid: str, status: dict[str, Any], files: list[Path]) -> None:
        """Flush the result ``files`` to disk, then write the scored marker with ``status`` (atomically)."""
        sync_files(files)
        _write_json(self.result_dir(series_uid) / SCORED_MARKER, status)

    def forward_state(self, series_uid: str) -> dict[str, Any]:
        """The series' forwarding state, or an empty dict when it has none.

        It maps each destination to ``{"files": {name: {...}}, "attempts", ...}``.
        """
        return _read_json(self.result_dir(series_uid) / FORWARD_STATE) or {}

    def write_forward_state(self, series_uid: str, state: dict[str, Any]) -> None:
        """Replace the series' forwarding state atomically (a crash leaves the previous or the new one)."""
        _write_json(self.result_dir(series_uid) / FORWARD_STATE, state)

    def pending(self) -> list[PendingSeries]:
        """Every received series without a done marker, oldest newest-instance first."""
        found = []
        for study in sorted(p for p in self.incoming.iterdir() if p.is_dir()):
            for series in sorted(p for p in study.iterdir() if p.is_dir()):
                if self.is_done(series.name):
                    continue
                times = [p.stat().st_mtime for p in series.glob("*.dcm")]
                if times:
                    found.append(PendingSeries(study.name, series.name, series, len(times), max(times)))
        return sorted(found, key=lambda s: s.newest_s)

    def complete(self, quiet_s: float, now_s: float | None = None) -> list[PendingSeries]:
        """Pending series whose newest instance is at least ``quiet_s`` seconds old."""
        now_s = time.time() if now_s is None else now_s
        return [s for s in self.pending() if now_s - s.newest_s >= quiet_s]
