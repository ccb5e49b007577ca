"""The review store: studies in the database, volumes in a small memory cache, edits, exports.

Routes call one method each and turn its exceptions into HTTP answers
(:mod:`cacscore.web.main` maps them). Nothing here knows about HTTP.
Logs name studies by database id only, never by file or patient name.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from cacscore import __version__
from cacscore.errors import CacScoreError, InvalidInputError, VolumeReadError
from cacscore.io import CTVolume, write_mask
from cacscore.labels import ARTERY_NAMES
from cacscore.scoring import ScoreResult, score_report
from cacscore.web import files
from cacscore.web.db import (
    AUDIT_LOCK,
    AuditCheck,
    Edit,
    Study,
    append_audit,
    bump_version,
    iso,
    open_database,
    pack_mask,
    unpack_mask,
    utcnow,
    verify_audit,
)
from cacscore.web.service import (
    ARTERY_COLOURS,
    BoxMask,
    Candidates,
    EditRecord,
    Scorer,
    active_edits,
    artery_code,
    candidate_confidence,
    candidate_table,
    classify_edit,
    find_candidates,
    interpretation,
    lesion_label,
    lesion_table,
    orientation_labels,
    plausibility_warnings,
    read_study_volume,
    reader_voxels,
    replay,
    rescore,
    trim_voxels,
)

if TYPE_CHECKING:
    from cacscore.export import Algorithm

log = logging.getLogger("cacscore.web")


class StudyNotFoundError(CacScoreError):
    """No study with this id (HTTP 404)."""


class ConflictError(CacScoreError):
    """The study changed since the client read it, or there is nothing to undo (HTTP 409)."""


class StudySignedError(CacScoreError):
    """The study is signed and therefore read-only (HTTP 403)."""


class ConfirmationNeededError(CacScoreError):
    """Counting this candidate needs the reader's confirmation (HTTP 428); the message says why."""


class ExportNotFoundError(CacScoreError):
    """No such export of this study (HTTP 404), e.g. no SEG of a result without calcium."""


@dataclass
class Reviewed:
    """The edited state of a study at one version, with its scores."""

    version: int
    mask: np.ndarray
    result: ScoreResult
    lesions: list[dict[str, Any]]


@dataclass
class LoadedStudy:
    """A study's arrays in memory."""

    volume: CTVolume
    candidates: Candidates
    auto_mask: np.ndarray
    confidence: dict[int, float]
    candidate_rows: list[dict[str, Any]] = field(default_factory=list)
    #: Candidate id -> why counting it is implausible (see service.plausibility_warnings).
    warnings: dict[int, list[str]] = field(default_factory=dict)
    reviewed: Reviewed | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: The heart region (:mod:`cacscore.anatomy`), found on first request of its outline.
    heart_region: Any = None


class ReviewStore:
    """Studies, automatic results, edits and exports of one database and data folder.

    Parameters
    ----------
    db_url : str
        SQLAlchemy URL; an SQLite file's folder is created.
    data_dir : Path or None
        Folder of scans to serve (searched on first listing and on rescan).
    upload_dir : Path
        Folder for uploaded studies.
    scorer : Scorer
        Makes the automatic result of a study the first time it is opened.
    max_upload_bytes : int
        Largest upload accepted.
    cache_size : int
        Studies kept in memory.
    background : bool
        Analyse new studies in a background thread after the first listing,
        so that the list shows automatic scores without opening each study.
    export_dir : Path, optional
        Folder of the DICOM exports of signed studies (default: ``exports`` beside ``upload_dir``).
    """

    def __init__(
        self,
        *,
        db_url: str,
        data_dir: Path | None,
        upload_dir: Path,
        scorer: Scorer,
        max_upload_bytes: int,
        cache_size: int = 4,
        background: bool = False,
        export_dir: Path | None = None,
    ) -> None:
        self.db = open_database(db_url)
        self.data_dir = data_dir
        self.upload_dir = upload_dir
        self.export_dir = export_dir if export_dir is not None else Path(upload_dir).parent / "exports"
        self._export_lock = threading.Lock()
        self.scorer = scorer
        self.max_upload_bytes = max_upload_bytes
        self.cache_size = cache_size
        self._loaded: OrderedDict[int, LoadedStudy] = OrderedDict()
        self._load_locks: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()
        self._synced = False
        self.background = background
        self._worker: threading.Thread | None = None
        self._closed = threading.Event()

    # ----------------------------------------------------------------- studies

    def sync_data(self, actor: str | None = None) -> int:
        """Add the scans under the data folder that are not studies yet; return how many were added.

        The scan is audited when ``actor`` asked for it or when it added studies.
        """
        self._synced = True
        found = files.discover(self.data_dir) if self.data_dir is not None else []
        if not found and actor is None:
            return 0
        with self.db.sessions() as session, AUDIT_LOCK:
            known = set(session.scalars(select(Study.path).where(Study.root == "data")))
            new = [
                Study(root="data", path=item.path, name=item.name) for item in found if item.path not in known
            ]
            session.add_all(new)
            session.flush()
            if new or actor is not None:
                append_audit(
                    session,
                    study_id=None,
                    actor=actor or "server",
                    action="rescan",
                    detail={"added": [study.id for study in new]},
                )
            session.commit()
        log.info("data folder scanned: %d scans, %d new studies", len(found), len(new))
        return len(new)

    def list_studies(self) -> list[dict[str, Any]]:
        """Every study with its automatic score and review status, in id order."""
        self._ensure_synced()
        with self.db.sessions() as session:
            studies = session.scalars(select(Study).order_by(Study.id)).all()
            summaries = [self._summary(study) for study in studies]
        if self.background and any(row["status"] == "new" for row in summaries):
            self._start_worker()
        return summaries

    def _start_worker(self) -> None:
        with self._lock:
            if self._closed.is_set() or (self._worker is not None and self._worker.is_alive()):
                return
            self._worker = threading.Thread(target=self.analyse_pending, name="cacscore-analyse", daemon=True)
            self._worker.start()

    def analyse_pending(self) -> int:
        """Analyse every study not analysed yet, one at a time until the store closes; return how many."""
        with self.db.sessions() as session:
            pending = list(
                session.scalars(
                    select(Study.id)
                    .where(Study.analysed_at.is_(None), Study.error.is_(None))
                    .order_by(Study.id)
                )
            )
        done = 0
        for study_id in pending:
            if self._closed.is_set():
                break  # shutting down: stop after the study in hand rather than analyse the whole backlog
            with self.db.sessions() as session:
                try:
                    self._load(session, self._get(session, study_id))
                    done += 1
                except CacScoreError:
                    continue  # recorded on the study by _load
        return done

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed.is_set()

    def close(self) -> None:
        """Stop the background analysis and release the database connections; calling it again does nothing.

        A study being analysed is finished first (its result is written), the
        studies after it are left for the next start. The store must not be
        used afterwards.
        """
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            worker = self._worker
        if worker is not None:
            worker.join()
        self.db.engine.dispose()

    def upload(
        self, filename: str | None, chunks: Iterable[bytes], actor: str = "uploader"
    ) -> dict[str, Any]:
        """Store an uploaded zip of a DICOM series or NIfTI file as a new study, after reading it once.

        Raises
        ------
        UploadTooLargeError
            Above the size limit.
        InvalidInputError
            Not a zip or NIfTI file, unsafe zip, or no readable CT volume in it.
        """
        display = files.safe_name(filename)
        received = files.receive(chunks, self.upload_dir, self.max_upload_bytes)
        relative = files.unpack_upload(received, self.upload_dir, display, self.max_upload_bytes)
        location = files.resolve_inside(self.upload_dir, relative)
        try:
            volume = read_study_volume(str(location))
        except VolumeReadError as exc:
            shutil.rmtree(files.resolve_inside(self.upload_dir, relative.split("/")[0]), ignore_errors=True)
            raise InvalidInputError(
                f"{display}: no readable CT volume: {files.describe_read_error(exc, location, display)}"
            ) from None
        with self.db.sessions() as session, AUDIT_LOCK:
            study = Study(root="uploads", path=relative, name=f"upload: {display}")
            session.add(study)
            session.flush()
            append_audit(
                session,
                study_id=study.id,
                actor=actor,
                action="upload",
                detail={"name": study.name, "slices": int(volume.shape[0])},
            )
            session.commit()
            log.info("upload stored as study %d (%d slices)", study.id, volume.shape[0])
            return self._summary(study)

    def _ensure_synced(self) -> None:
        if not self._synced:
            self.sync_data()

    def _get(self, session: Session, study_id: int) -> Study:
        self._ensure_synced()
        study = session.get(Study, study_id)
        if study is None:
            raise StudyNotFoundError(f"no study with id {study_id}")
        return study

    def _path(self, study: Study) -> Path:
        root = self.data_dir if study.root == "data" else self.upload_dir
        if root is None:
            raise StudyNotFoundError(f"study {study.id} lies in a data folder this server does not serve")
        path = files.resolve_inside(root, study.path)
        if not path.exists():
            raise StudyNotFoundError(f"study {study.id}: its scan is no longer in the data folder")
        return path

    def _load(self, session: Session, study: Study) -> LoadedStudy:
        """The study's arrays, reading and analysing it on first use."""
        with self._lock:
            if study.id in self._loaded:
                self._loaded.move_to_end(study.id)
                return self._loaded[study.id]
            lock = self._load_locks.setdefault(study.id, threading.Lock())
        with lock:
            with self._lock:
                if study.id in self._loaded:
                    return self._loaded[study.id]
            started = time.perf_counter()
            try:
                loaded = self._read(session, study)
            except CacScoreError as exc:
                study.error = str(exc)[:1024]
                session.commit()
                # The message may name files; the log names the study id and the kind of problem only.
                log.warning("study %d could not be opened (%s)", study.id, type(exc).__name__)
                raise
            candidates = loaded.candidates
            log.info(
                "study %d loaded: %d candidates (%.1f s)",
                study.id,
                candidates.n,
                time.perf_counter() - started,
            )
            with self._lock:
                self._loaded[study.id] = loaded
                while len(self._loaded) > self.cache_size:
                    self._loaded.popitem(last=False)
            return loaded

    def _read(self, session: Session, study: Study) -> LoadedStudy:
        """Read the scan, find its candidates, and analyse it unless its automatic result is stored."""
        volume = read_study_volume(str(self._path(study)))
        candidates = find_candidates(volume)
        if study.auto_mask is None:
            loaded = self._analyse(session, study, volume, candidates)
        else:
            auto_mask = unpack_mask(study.auto_mask)
            if auto_mask.shape != volume.shape:
                raise InvalidInputError(
                    f"study {study.id}: the scan's shape {volume.shape} differs from the analysed "
                    f"{auto_mask.shape}; the file changed after review began"
                )
            confidence = {int(k): float(v) for k, v in (study.auto_confidence or {}).items()}
            loaded = LoadedStudy(volume, candidates, auto_mask, confidence)
        if study.error is not None:
            study.error = None
            session.commit()
        heart, bone, loaded.heart_region = _anatomy_masks(volume)  # the viewer's outline reuses the region
        loaded.warnings = plausibility_warnings(volume, candidates, loaded.auto_mask, heart=heart, bone=bone)
        loaded.candidate_rows = candidate_table(volume, candidates, loaded.warnings)
        return loaded

    def analyse_anyway(self, study_id: int, *, version: int, reviewer: str) -> dict[str, Any]:
        """Run the model on a scan the domain check refused; the reader's decision goes into the audit log.

        Raises
        ------
        ConflictError
            The study was not refused, or it has edits, or ``version`` is stale.
        StudySignedError
            The study is signed.
        """
        with self.db.sessions() as session:
            study, loaded, _ = self._open_for_change(session, study_id, version)
            refusal = study.refusal
            if refusal is None:
                raise ConflictError(f"study {study_id} was not refused by the domain check")
            if study.edits:
                raise ConflictError(f"study {study_id} has edits; the automatic result can no longer change")
            name = _reviewer(reviewer)
            with AUDIT_LOCK:
                if not bump_version(session, study.id, version):
                    session.rollback()
                    raise ConflictError(_stale(study_id))
                append_audit(
                    session,
                    study_id=study.id,
                    actor=name,
                    action="skip domain check",
                    detail={"version": version + 1, "refusal": refusal},
                )
                # The override commits with its audit row; the model's result replaces the empty one.
                self._analyse(session, study, loaded.volume, loaded.candidates, skip_domain_check=True)
            session.refresh(study)
            with self._lock:
                self._loaded.pop(study.id, None)
            log.info("study %d: domain check skipped by a reader", study.id)
            return self.study(study_id)

    def _analyse(
        self,
        session: Session,
        study: Study,
        volume: CTVolume,
        candidates: Candidates,
        *,
        skip_domain_check: bool = False,
    ) -> LoadedStudy:
        """Run the automatic scorer once and keep its result unchanged in the database.

        A scan the scorer refused (domain check) keeps an empty automatic mask and the refusal, until a
        reader analyses it anyway (:meth:`analyse_anyway`).
        """
        auto = self.scorer(volume, skip_domain_check=True) if skip_domain_check else self.scorer(volume)
        mask = np.asarray(auto.mask)
        if mask.shape != volume.shape:
            raise InvalidInputError(
                f"automatic mask shape {mask.shape} does not match the scan {volume.shape}"
            )
        mask = mask.astype(np.uint8)
        confidence = candidate_confidence(candidates, mask, auto.confidence)
        result, _ = rescore(volume, mask)
        study.auto_mask = pack_mask(mask)
        study.auto_confidence = {str(k): v for k, v in confidence.items()}
        study.auto_method = auto.method
        study.model_version = auto.model_version
        study.auto_domain = auto.domain
        study.auto_agatston = result.agatston
        study.analysed_at = utcnow()
        if not study.edits:
            study.current_agatston = result.agatston
            study.current_category = result.risk_category
        session.commit()
        log.info("study %d analysed (%s)", study.id, auto.method)
        return LoadedStudy(volume, candidates, mask, confidence)

    def _reviewed(self, study: Study, loaded: LoadedStudy) -> Reviewed:
        """The edited mask and its scores at the study's current version (cached per version)."""
        with loaded.lock:
            if loaded.reviewed is not None and loaded.reviewed.version == study.version:
                return loaded.reviewed
        reviewed = self._rescored(loaded, _records(study.edits), study.version)
        with loaded.lock:
            loaded.reviewed = reviewed
        return reviewed

    @staticmethod
    def _rescored(loaded: LoadedStudy, records: list[EditRecord], version: int) -> Reviewed:
        """The automatic mask with ``records`` replayed, rescored."""
        mask = replay(loaded.auto_mask, loaded.candidates, records)
        result, lesion_map = rescore(loaded.volume, mask)
        lesions = lesion_table(
            loaded.candidates, mask, loaded.auto_mask, result, lesion_map, loaded.confidence
        )
        return Reviewed(version, mask, result, lesions)

    def _open(self, session: Session, study_id: int) -> tuple[Study, LoadedStudy, Reviewed]:
        study = self._get(session, study_id)
        loaded = self._load(session, study)
        if study.analysed_at is None:
            session.refresh(study)  # analysed meanwhile by another request or the background worker
        return study, loaded, self._reviewed(study, loaded)

    # ----------------------------------------------------------------- viewer

    def study(self, study_id: int) -> dict[str, Any]:
        """Everything the viewer needs to open a study: geometry, identifiers and the review state."""
        with self.db.sessions() as session:
            study, loaded, reviewed = self._open(session, study_id)
            volume = loaded.volume
            return {
                **self._summary(study),
                "shape": list(volume.shape),
                "spacing_mm": list(volume.spacing),
                "slice_thickness_mm": volume.slice_thickness_mm,
                "kvp": volume.kvp,
                "study_uid": volume.study_uid,
                "series_uid": volume.series_uid,
                "patient_id": volume.patient_id,
                # Reader warnings start with the server-side path; the reviewer knows the study by name.
                "warnings": [text.replace(str(self._path(study)), study.name) for text in volume.warnings],
                "orientation": orientation_labels(volume.direction),
                "n_candidates": loaded.candidates.n,
                # DICOM exports (SEG, SR, PDF) need a study to file them in: only a DICOM source has one.
                "dicom_source": volume.dicom is not None,
                "candidates": loaded.candidate_rows,
                "arteries": ARTERY_COLOURS,
                "state": self._state(study, reviewed),
            }

    def state(self, study_id: int) -> dict[str, Any]:
        """The review state: version, scores of the edited mask, lesion table, audit trail."""
        with self.db.sessions() as session:
            study, _, reviewed = self._open(session, study_id)
            return self._state(study, reviewed)

    def slice_bytes(self, study_id: int, z: int) -> bytes:
        """Slice ``z`` in HU as little-endian int16, rows then columns."""
        with self.db.sessions() as session:
            loaded = self._load(session, self._get(session, study_id))
            return loaded.volume.hu[self._check_slice(loaded, z)].astype("<i2").tobytes()

    def overlay_bytes(self, study_id: int, z: int) -> bytes:
        """Slice ``z`` of the candidate ids (little-endian int32) followed by the edited labels (uint8)."""
        with self.db.sessions() as session:
            _, loaded, reviewed = self._open(session, study_id)
            z = self._check_slice(loaded, z)
            return loaded.candidates.labels[z].astype("<i4").tobytes() + reviewed.mask[z].tobytes()

    def heart_outline_bytes(self, study_id: int, z: int) -> bytes:
        """Slice ``z`` of the heart region's outline as uint8 bytes.

        1 on the border, 0 elsewhere; all 0 where no heart was found.
        """
        from cacscore.anatomy import check_domain

        with self.db.sessions() as session:
            loaded = self._load(session, self._get(session, study_id))
            z = self._check_slice(loaded, z)
        with loaded.lock:
            if loaded.heart_region is None:
                loaded.heart_region = check_domain(loaded.volume).region
            region = loaded.heart_region
        return np.asarray(region.outline_slice(z), dtype=np.uint8).tobytes()

    @staticmethod
    def _check_slice(loaded: LoadedStudy, z: int) -> int:
        n = loaded.volume.shape[0]
        if not 0 <= z < n:
            raise InvalidInputError(f"slice {z} is outside the study (0..{n - 1})")
        return z

    # ----------------------------------------------------------------- review

    def edit(
        self,
        study_id: int,
        *,
        version: int,
        reviewer: str,
        lesion: int,
        artery: str | None,
        confirm: bool = False,
    ) -> dict[str, Any]:
        """Count candidate ``lesion`` in ``artery`` (None: do not count it); return the new state.

        Counting a candidate that is not counted now and fails a plausibility
        check needs ``confirm``.

        Raises
        ------
        StudySignedError, ConflictError, InvalidInputError
            Signed study; ``version`` is stale; unknown lesion or artery, or no change.
        ConfirmationNeededError
            An implausible candidate without ``confirm`` (the message gives the reasons).
        """
        with self.db.sessions() as session:
            study, loaded, reviewed = self._open_for_change(session, study_id, version)
            code = artery_code(artery)
            loaded.candidates.check(lesion)
            before = lesion_label(reviewed.mask, loaded.candidates, lesion)
            reasons = loaded.warnings.get(lesion, [])
            if code != 0 and before == 0 and reasons and not confirm:
                raise ConfirmationNeededError(
                    f"candidate {lesion} is unlikely to be coronary calcium: {'; '.join(reasons)}. "
                    "Count it only if you are sure (confirm)."
                )
            box, inside = loaded.candidates.voxels(lesion)
            labels = reviewed.mask[box][inside]
            # A counted lesion is "already" in an artery when all its counted voxels are
            # (a trim leaves zeros).
            if np.all(labels == code) or (code != 0 and before != 0 and np.all(labels[labels != 0] == code)):
                raise InvalidInputError(
                    f"lesion {lesion} is already {ARTERY_NAMES.get(code, 'not counted')}; nothing to change"
                )
            edit = Edit(
                reviewer=_reviewer(reviewer),
                action=classify_edit(before, code),
                lesion=lesion,
                before=before,
                after=code,
            )
            return self._commit_change(session, study, loaded, version, edit)

    def trim(
        self,
        study_id: int,
        *,
        version: int,
        reviewer: str,
        lesion: int,
        z: int,
        center_yx: tuple[float, float],
        radius_px: float,
        erase: bool,
    ) -> dict[str, Any]:
        """Erase (or paint back) the voxels of a counted lesion under a round brush on slice ``z``.

        Only the lesion's own candidate voxels change; the score is recomputed
        from the trimmed mask like after any edit.

        Raises
        ------
        InvalidInputError
            Lesion not counted, slice outside the study, or the brush touches none of its voxels.
        """
        with self.db.sessions() as session:
            study, loaded, reviewed = self._open_for_change(session, study_id, version)
            loaded.candidates.check(lesion)
            z = self._check_slice(loaded, z)
            code = lesion_label(reviewed.mask, loaded.candidates, lesion)
            if code == 0:
                raise InvalidInputError(f"lesion {lesion} is not counted; count it before trimming it")
            flat = trim_voxels(reviewed.mask, loaded.candidates, lesion, z, center_yx, radius_px, erase=erase)
            if flat.size == 0:
                what = "counted" if erase else "uncounted"
                raise InvalidInputError(f"the brush touches no {what} voxel of lesion {lesion} on slice {z}")
            edit = Edit(
                reviewer=_reviewer(reviewer),
                action="trim",
                lesion=lesion,
                before=code if erase else 0,
                after=0 if erase else code,
                voxels=json.dumps({"z": z, "yx": flat.tolist()}, separators=(",", ":")),
            )
            return self._commit_change(session, study, loaded, version, edit)

    def undo(self, study_id: int, *, version: int, reviewer: str) -> dict[str, Any]:
        """Cancel the latest edit still in effect (recorded as an ``undo`` audit row)."""
        with self.db.sessions() as session:
            study, loaded, _ = self._open_for_change(session, study_id, version)
            active = active_edits(_records(study.edits))
            if not active:
                raise ConflictError(f"study {study_id} has no edit to undo")
            last = active[-1]
            edit = Edit(
                reviewer=_reviewer(reviewer),
                action="undo",
                lesion=last.lesion,
                before=last.after,
                after=_before_of(study.edits, last.id),
                undoes=last.id,
            )
            return self._commit_change(session, study, loaded, version, edit)

    def sign(self, study_id: int, *, version: int, reviewer: str) -> dict[str, Any]:
        """Sign the study as reviewed; it is read-only from then on (until un-signed with a reason)."""
        with self.db.sessions() as session:
            study, loaded, reviewed = self._open_for_change(session, study_id, version)
            name = _reviewer(reviewer)
            with AUDIT_LOCK:
                if not bump_version(session, study.id, version):
                    session.rollback()
                    raise ConflictError(_stale(study_id))
                study.signed_by = name
                study.signed_at = utcnow()
                append_audit(
                    session,
                    study_id=study.id,
                    actor=name,
                    action="sign",
                    detail={"version": version + 1, "agatston": reviewed.result.agatston},
                )
                session.commit()
            session.refresh(study)
            log.info("study %d signed", study.id)
            return self._state(study, self._reviewed(study, loaded))

    def unsign(self, study_id: int, *, version: int, reviewer: str, reason: str) -> dict[str, Any]:
        """Withdraw the signature so that the study can be amended; ``reason`` is kept in the audit log.

        Raises
        ------
        ConflictError
            The study is not signed, or ``version`` is stale.
        InvalidInputError
            Empty reason or reviewer.
        """
        why = " ".join(str(reason).split())[:1000]
        if not why:
            raise InvalidInputError(
                "give a reason for withdrawing the signature (it is kept in the audit log)"
            )
        with self.db.sessions() as session:
            study = self._get(session, study_id)
            if study.signed_at is None:
                raise ConflictError(f"study {study_id} is not signed")
            if study.version != version:
                raise ConflictError(_stale(study_id))
            loaded = self._load(session, study)
            name = _reviewer(reviewer)
            with AUDIT_LOCK:
                if not bump_version(session, study.id, version):
                    session.rollback()
                    raise ConflictError(_stale(study_id))
                previous = study.signed_by
                study.signed_by = None
                study.signed_at = None
                append_audit(
                    session,
                    study_id=study.id,
                    actor=name,
                    action="unsign",
                    detail={"version": version + 1, "reason": why, "signed_by": previous},
                )
                session.commit()
            session.refresh(study)
            log.info("study %d: signature withdrawn", study.id)
            return self._state(study, self._reviewed(study, loaded))

    def verify_audit(self) -> AuditCheck:
        """Check the audit log's hash chain against the edits and signatures (see :func:`verify_audit`)."""
        with self.db.sessions() as session:
            return verify_audit(session)

    def record_export(self, study_id: int, fmt: str, actor: str | None) -> None:
        """Audit an export of ``study_id`` in format ``fmt`` (the export itself changes nothing)."""
        with self.db.sessions() as session, AUDIT_LOCK:
            study = self._get(session, study_id)
            append_audit(
                session,
                study_id=study.id,
                actor=_reviewer(actor) if actor and actor.strip() else "unnamed",
                action="export",
                detail={"format": fmt, "version": study.version},
            )
            session.commit()

    def _open_for_change(
        self, session: Session, study_id: int, version: int
    ) -> tuple[Study, LoadedStudy, Reviewed]:
        study = self._get(session, study_id)
        if study.signed_at is not None:
            raise StudySignedError(f"study {study_id} is signed and read-only")
        if study.version != version:
            raise ConflictError(_stale(study_id))
        loaded = self._load(session, study)
        return study, loaded, self._reviewed(study, loaded)

    def _commit_change(
        self, session: Session, study: Study, loaded: LoadedStudy, version: int, edit: Edit
    ) -> dict[str, Any]:
        """Write ``edit``, the study's new summary and the audit row in one transaction."""
        # The new state is computed first so that the summary commits with the edit (a crash between
        # two commits once left the list showing a total the study no longer had).
        pending = _record(edit, -1)
        reviewed = self._rescored(loaded, [*_records(study.edits), pending], version + 1)
        with AUDIT_LOCK:
            if not bump_version(session, study.id, version):
                session.rollback()
                raise ConflictError(_stale(study.id))
            study.edits.append(edit)
            study.current_agatston = reviewed.result.agatston
            study.current_category = reviewed.result.risk_category
            session.flush()
            append_audit(
                session,
                study_id=study.id,
                actor=edit.reviewer,
                action=edit.action,
                detail={
                    "study": study.id,
                    "edit": edit.id,
                    "lesion": edit.lesion,
                    "before": edit.before,
                    "after": edit.after,
                    "undoes": edit.undoes,
                    **({"voxels": edit.voxels} if edit.voxels is not None else {}),
                    "version": version + 1,
                    "agatston": reviewed.result.agatston,
                },
            )
            session.commit()
        session.refresh(study)
        with loaded.lock:
            loaded.reviewed = reviewed
        log.info("study %d: %s of lesion %d (version %d)", study.id, edit.action, edit.lesion, study.version)
        return self._state(study, reviewed)

    # ----------------------------------------------------------------- export

    def report(self, study_id: int) -> dict[str, Any]:
        """The ``cacscore.score/1`` report of the edited mask, with a ``review`` block."""
        with self.db.sessions() as session:
            study, loaded, reviewed = self._open(session, study_id)
            return score_report(
                loaded.volume,
                reviewed.result,
                input_path=study.name,
                extra={
                    "review": self._review_block(study),
                    **({"domain": study.auto_domain} if study.auto_domain is not None else {}),
                },
            )

    def mask_nifti(self, study_id: int) -> bytes:
        """The edited label mask (project codes) as a gzip NIfTI file on the scan's grid."""
        with self.db.sessions() as session:
            _, loaded, reviewed = self._open(session, study_id)
            with tempfile.TemporaryDirectory() as folder:
                path = write_mask(reviewed.mask, loaded.volume, Path(folder) / "mask.nii.gz")
                return path.read_bytes()

    def report_pdf(self, study_id: int) -> bytes:
        """The one-page PDF report of the edited state."""
        with self.db.sessions() as session:
            study, loaded, reviewed = self._open(session, study_id)
            return self._pdf(study, loaded, reviewed)

    def _pdf(self, study: Study, loaded: LoadedStudy, reviewed: Reviewed) -> bytes:
        from cacscore.web.patient import patient_details
        from cacscore.web.pdf import ReportContent, build_pdf

        content = ReportContent(
            study=self._summary(study),
            volume=loaded.volume,
            result=reviewed.result,
            mask=reviewed.mask,
            lesions=reviewed.lesions,
            review=self._review_block(study),
            patient=patient_details(loaded.volume.source),
        )
        return build_pdf(content)

    def dicom_export(self, study_id: int, name: str) -> bytes:
        """One of the DICOM exports of the signed study: ``seg.dcm``, ``sr.dcm`` or ``report_pdf.dcm``.

        The three are written together once per signed version, into
        ``<export_dir>/study-<id>/version-<n>/``, and served from there, so that every download of a
        version is the same instance (the SR references that SEG's UID) and a new signature after an
        amendment makes new series and instance UIDs. They hold the signed, corrected result: the
        reader's lesions as ``MANUAL`` segments, the signer as the SR's verifying observer at the time
        of signing, the report PDF with its audit trail (see :func:`cacscore.export.write_dicom_outputs`).

        Raises
        ------
        InvalidInputError
            The study was not read from DICOM (no study to file the results in).
        ConflictError
            The study is not signed.
        ExportNotFoundError
            Unknown name, or ``seg.dcm`` of a result without calcium.
        """
        from cacscore.export import DICOM_PRODUCTS

        if name not in DICOM_PRODUCTS:
            raise ExportNotFoundError(f"no DICOM export {name!r} (one of {', '.join(DICOM_PRODUCTS)})")
        report = self.report(study_id)  # the JSON export's report: the SR says what it says
        with self.db.sessions() as session:
            study, loaded, reviewed = self._open(session, study_id)
            if report["review"]["version"] != study.version:
                raise ConflictError(_stale(study_id))
            if loaded.volume.dicom is None:
                raise InvalidInputError(
                    f"study {study_id} was not read from DICOM: DICOM export needs a DICOM source "
                    "(use the JSON, mask or PDF export)"
                )
            if study.signed_at is None:
                raise ConflictError(
                    f"study {study_id} is not signed: its DICOM exports carry the signed result; "
                    "sign it first"
                )
            folder = self.export_dir / f"study-{study.id}" / f"version-{study.version}"
            with self._export_lock:
                if not folder.is_dir():
                    self._write_dicom_exports(study, loaded, reviewed, report, folder)
        path = folder / name
        if not path.is_file():
            raise ExportNotFoundError(
                f"study {study_id} has no {name}: the signed result counts no calcium "
                "(a DICOM Segmentation needs a segment); the SR and PDF hold the result"
            )
        return path.read_bytes()

    def _write_dicom_exports(
        self, study: Study, loaded: LoadedStudy, reviewed: Reviewed, report: dict[str, Any], folder: Path
    ) -> None:
        """Write the three DICOM exports into a new folder, then rename it to ``folder`` (all or nothing).

        :func:`cacscore.io.atomic.atomic_folder` with ``replace=False``: when another process wrote
        this version first, its folder stays and its files are the ones served.
        """
        import datetime as dt

        from cacscore.export import write_dicom_outputs
        from cacscore.io.atomic import atomic_folder

        signed_at = study.signed_at
        if signed_at is not None and signed_at.tzinfo is None:
            signed_at = signed_at.replace(tzinfo=dt.UTC)  # SQLite gives back naive UTC times
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_folder(folder, replace=False) as writing:
                write_dicom_outputs(
                    writing,
                    loaded.volume,
                    reviewed.mask,
                    report,
                    _algorithm(study),
                    reviewer=study.signed_by,
                    signed=True,
                    manual=reader_voxels(reviewed.mask, loaded.auto_mask, loaded.candidates),
                    corrected=not np.array_equal(reviewed.mask, loaded.auto_mask),
                    verified_at=signed_at,
                    pdf=self._pdf(study, loaded, reviewed),
                )
        except OSError:
            if not folder.is_dir():
                raise
            # Another process wrote this version first: its files are the ones served.
        log.info("study %d: DICOM exports of version %d written", study.id, study.version)

    # ----------------------------------------------------------------- dicts

    @staticmethod
    def _summary(study: Study) -> dict[str, Any]:
        return {
            "id": study.id,
            "name": study.name,
            "source": study.root,
            "status": study.status,
            "version": study.version,
            "auto_agatston": study.auto_agatston,
            "agatston": study.current_agatston,
            "risk_category": study.current_category,
            "method": study.auto_method,
            "model_version": study.model_version,
            "refusal": study.refusal,
            "domain": study.auto_domain,
            "signed_by": study.signed_by,
            "signed_at": iso(study.signed_at),
            "n_edits": len(study.edits),
            "error": study.error,
        }

    def _state(self, study: Study, reviewed: Reviewed) -> dict[str, Any]:
        score = reviewed.result.to_dict()
        del score["lesions"]
        return {
            "version": study.version,
            "status": study.status,
            "signed_by": study.signed_by,
            "signed_at": iso(study.signed_at),
            "score": score,
            "interpretation": interpretation(reviewed.result),
            "auto_agatston": study.auto_agatston,
            "lesions": reviewed.lesions,
            "edits": [edit.to_dict() for edit in study.edits],
            "can_undo": study.signed_at is None and bool(active_edits(_records(study.edits))),
        }

    def _review_block(self, study: Study) -> dict[str, Any]:
        """The report's ``review`` block: automatic result, reviewers, signature, audit trail."""
        summary = self._summary(study)
        return {
            "study_id": study.id,
            **{key: summary[key] for key in ("status", "version", "signed_by", "signed_at")},
            "automatic": {
                key: summary[name]
                for key, name in (
                    ("method", "method"),
                    ("model_version", "model_version"),
                    ("agatston", "auto_agatston"),
                )
            },
            "reviewers": sorted({edit.reviewer for edit in study.edits}),
            "edits": [edit.to_dict() for edit in study.edits],
            "software": f"cacscore {__version__}",
        }


def _anatomy_masks(volume: CTVolume) -> tuple[BoxMask | None, BoxMask | None, Any]:
    """The heart region (when a heart was found) and the bone mask of ``volume`` as box lookups, and the
    :class:`cacscore.anatomy.HeartRegion` itself (None when the anatomy could not be computed)."""
    from cacscore.anatomy import analyse_chest, check_domain

    try:
        anatomy = analyse_chest(volume)
        region = check_domain(volume, anatomy).region
    except (CacScoreError, ValueError) as exc:
        # Without anatomy the size and distance rules still hold; the study opens all the same.
        log.warning("anatomy not available for the plausibility checks (%s)", type(exc).__name__)
        return None, None, None
    grid = anatomy.grid
    bone_mask = anatomy.tissues.bone

    def bone(box: tuple[slice, slice, slice]) -> np.ndarray:
        return np.asarray(grid.to_source(bone_mask, box), dtype=bool)

    if not region.found:
        return None, bone, region
    return (lambda box: np.asarray(region.source_mask(box), dtype=bool)), bone, region


def _algorithm(study: Study) -> Algorithm:
    """The automatic result's algorithm (``"<model name> <version>"`` as the scorer reported it)."""
    from cacscore.export import Algorithm

    if study.auto_method != "model" or not study.model_version:
        # Without a model nothing is counted automatically: every segment is the reader's (MANUAL).
        return Algorithm(name=f"cacscore {__version__} candidates", version=__version__)
    name, _, version = str(study.model_version).rpartition(" ")
    return Algorithm(name=name, version=version) if name else Algorithm(name=version, version="unversioned")


def _record(edit: Edit, edit_id: int) -> EditRecord:
    voxels = None
    if edit.voxels is not None:
        data = json.loads(edit.voxels)
        voxels = (int(data["z"]), tuple(int(v) for v in data["yx"]))
    return EditRecord(edit_id, edit.action, edit.lesion, edit.after, edit.undoes, voxels)


def _records(edits: Iterable[Edit]) -> list[EditRecord]:
    return [_record(edit, edit.id) for edit in edits]


def _before_of(edits: Iterable[Edit], edit_id: int) -> int:
    return next(edit.before for edit in edits if edit.id == edit_id)


def _reviewer(name: str) -> str:
    cleaned = " ".join(str(name).split())[:128]
    if not cleaned:
        raise InvalidInputError("reviewer name is empty; enter your name before editing")
    return cleaned


def _stale(study_id: int) -> str:
    return f"study {study_id} was changed by someone else; reload it to see the latest version"
