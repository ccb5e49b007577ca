"""Review database: studies, their automatic result, the edits, the signature, the hash-chained audit log.

SQLAlchemy 2 ORM on any database URL (SQLite file by default, PostgreSQL via
``postgresql+psycopg://...``). The automatic result of a study is written
once and never changed; the reviewer's state is the automatic mask with the
edit rows replayed in order (an undo row cancels the edit it names), so the
edited mask can always be rebuilt and every change is accounted for.
Optimistic concurrency: each study carries a ``version`` that every change
must name and increments (see :func:`bump_version`).

Every state change (upload, rescan, edit, undo, sign, un-sign, export) also
writes an :class:`AuditRow` in the same transaction as the change. Each row
holds the SHA-256 of its own content and of the row before it, so that
:func:`verify_audit` finds any row changed, inserted or deleted directly in
the database, and any edit or signature without its matching audit row.
Rows are appended under :data:`AUDIT_LOCK`: one server process per database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from cacscore.errors import InvalidInputError
from cacscore.io.database import add_missing_columns


class Base(DeclarativeBase):
    """Declarative base of the review tables."""


def utcnow() -> dt.datetime:
    """Current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def iso(time: dt.datetime | None) -> str | None:
    """ISO 8601 text of a stored time; SQLite returns naive times, which are UTC here."""
    if time is None:
        return None
    if time.tzinfo is None:
        time = time.replace(tzinfo=dt.UTC)
    return time.isoformat(timespec="seconds")


class Study(Base):
    """One CT series under review.

    ``root`` is ``"data"`` (found under ``--data``) or ``"uploads"``; ``path``
    is relative to that root and is only ever resolved inside it. ``name``
    is what the study list shows; it is never logged.
    """

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    root: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(1024))
    name: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=0)
    # Automatic result, written once when the study is first analysed.
    auto_method: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    auto_mask: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    auto_confidence: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    auto_agatston: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The input-domain check's block (cacscore.anatomy.DomainCheck.to_dict) when the scorer ran it.
    auto_domain: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    analysed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Reviewed state summary, refreshed after every change (the list shows it).
    current_agatston: Mapped[float | None] = mapped_column(Float, nullable=True)
    current_category: Mapped[str | None] = mapped_column(String(8), nullable=True)
    signed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    signed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Why the scan could not be read or analysed (shown in the list; cleared when it opens).
    error: Mapped[str | None] = mapped_column(String(1024), nullable=True)

    edits: Mapped[list[Edit]] = relationship(back_populates="study", order_by="Edit.id", cascade="all")

    @property
    def status(self) -> str:
        """The study's review state, one of six words.

        ``"signed"``, ``"in review"`` (edited), ``"refused"``, ``"analysed"``, ``"unreadable"`` or
        ``"new"``.

        ``"refused"``: the domain check found no non-contrast CT with a heart in view and the model did
        not run (see :attr:`refusal`).
        """
        if self.signed_at is not None:
            return "signed"
        if self.edits:
            return "in review"
        if self.refusal is not None:
            return "refused"
        if self.analysed_at is not None:
            return "analysed"
        return "unreadable" if self.error else "new"

    @property
    def refusal(self) -> str | None:
        """Why the model did not run on this scan (the domain check's refusal).

        None when the model ran, or when a reader overrode the refusal.
        """
        domain = self.auto_domain or {}
        refusal = domain.get("refusal")
        return None if refusal is None or domain.get("skipped") else str(refusal)


class Edit(Base):
    """One audit row: a reviewer changed a lesion's label (or undid an earlier change).

    ``lesion`` is the candidate component id (see :mod:`cacscore.web.service`);
    ``before`` and ``after`` are project label codes (0 = not counted).
    """

    __tablename__ = "edits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    action: Mapped[str] = mapped_column(String(16))
    lesion: Mapped[int] = mapped_column(Integer)
    before: Mapped[int] = mapped_column(Integer)
    after: Mapped[int] = mapped_column(Integer)
    undoes: Mapped[int | None] = mapped_column(ForeignKey("edits.id"), nullable=True)
    #: Trims only: JSON ``{"z": slice, "yx": [flat indices in the slice]}`` of the voxels set to ``after``.
    voxels: Mapped[str | None] = mapped_column(Text, nullable=True)

    study: Mapped[Study] = relationship(back_populates="edits")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready audit row."""
        return {
            "id": self.id,
            "reviewer": self.reviewer,
            "time": iso(self.created_at),
            "action": self.action,
            "lesion": self.lesion,
            "before": self.before,
            "after": self.after,
            "undoes": self.undoes,
            **(
                {"slice": json.loads(self.voxels)["z"], "n_voxels": len(json.loads(self.voxels)["yx"])}
                if self.voxels
                else {}
            ),
        }


#: ``prev_hash`` of the first audit row.
GENESIS_HASH = "0" * 64
#: Held from reading the last audit hash until the transaction that appends a row commits.
AUDIT_LOCK = threading.RLock()


class AuditRow(Base):
    """One entry of the audit log: who did what to which study, chained to the entry before.

    ``detail`` is canonical JSON (sorted keys) of the action's facts (lesion,
    labels, version, total after the change, reason...). ``hash`` is the
    SHA-256 of ``prev_hash`` and the row's content (see :func:`audit_hash`).
    """

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    time: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready audit entry."""
        return {
            "id": self.id,
            "study_id": self.study_id,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "detail": json.loads(self.detail),
            "hash": self.hash,
        }


def audit_hash(
    prev_hash: str, *, study_id: int | None, time: str, actor: str, action: str, detail: str
) -> str:
    """SHA-256 (hex) of an audit row's content chained to the previous row's hash."""
    content = json.dumps(
        [prev_hash, study_id, time, actor, action, detail], ensure_ascii=True, separators=(",", ":")
    )
    return hashlib.sha256(content.encode()).hexdigest()


def append_audit(
    session: Session, *, study_id: int | None, actor: str, action: str, detail: dict[str, Any]
) -> AuditRow:
    """Add an audit row to ``session``'s transaction, chained to the last row.

    The caller must hold :data:`AUDIT_LOCK` until it commits (or roll back),
    so that no other row is appended in between.
    """
    last = session.scalar(select(AuditRow.hash).order_by(AuditRow.id.desc()).limit(1))
    prev = last if last is not None else GENESIS_HASH
    time = utcnow().isoformat(timespec="microseconds")
    text = json.dumps(detail, sort_keys=True, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    row = AuditRow(
        study_id=study_id,
        time=time,
        actor=actor,
        action=action,
        detail=text,
        prev_hash=prev,
        hash=audit_hash(prev, study_id=study_id, time=time, actor=actor, action=action, detail=text),
    )
    session.add(row)
    session.flush()
    return row


@dataclass
class AuditCheck:
    """Result of :func:`verify_audit`: ``ok`` when ``problems`` is empty."""

    rows: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        """Whether the log is intact and agrees with the studies."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready result."""
        return {"ok": self.ok, "rows": self.rows, "problems": self.problems}


#: Audit actions that record an :class:`Edit` row (``detail["edit"]`` is its id).
EDIT_ACTIONS = ("add", "remove", "reassign", "trim", "undo")


def verify_audit(session: Session) -> AuditCheck:
    """Recompute the audit chain and compare it with the edits and signatures it records.

    Finds: a row whose content no longer matches its hash, a broken link
    (a row deleted or inserted), an edit row without an identical audit row,
    a signature that differs from the study's last sign or un-sign entry, and
    a study summary that differs from the total recorded by its last change.
    """
    problems: list[str] = []
    rows = list(session.scalars(select(AuditRow).order_by(AuditRow.id)))
    prev = GENESIS_HASH
    recorded_edits: dict[int, dict[str, Any]] = {}
    last_signature: dict[int, tuple[str, str | None]] = {}
    last_total: dict[int, float] = {}
    for row in rows:
        if row.prev_hash != prev:
            problems.append(
                f"audit row {row.id}: does not follow the row before it (a row was removed or inserted)"
            )
        expected = audit_hash(
            row.prev_hash,
            study_id=row.study_id,
            time=row.time,
            actor=row.actor,
            action=row.action,
            detail=row.detail,
        )
        if row.hash != expected:
            problems.append(f"audit row {row.id}: content changed after it was written")
        prev = row.hash
        try:
            detail = json.loads(row.detail)
        except ValueError:
            problems.append(f"audit row {row.id}: detail is not JSON")
            continue
        if row.study_id is None:
            continue
        if row.action in EDIT_ACTIONS and "edit" in detail:
            recorded_edits[int(detail["edit"])] = {**detail, "actor": row.actor, "action": row.action}
        if row.action == "sign":
            last_signature[row.study_id] = ("signed", row.actor)
        elif row.action == "unsign":
            last_signature[row.study_id] = ("unsigned", None)
        if "agatston" in detail:
            last_total[row.study_id] = float(detail["agatston"])
    for edit in session.scalars(select(Edit).order_by(Edit.id)):
        entry = recorded_edits.get(edit.id)
        facts = {
            "actor": edit.reviewer,
            "action": edit.action,
            "lesion": edit.lesion,
            "before": edit.before,
            "after": edit.after,
            "undoes": edit.undoes,
            "study": edit.study_id,
            "voxels": edit.voxels,
        }
        if entry is None:
            problems.append(f"edit {edit.id} of study {edit.study_id}: no audit row records it")
        elif any(entry.get(key) != value for key, value in facts.items()):
            problems.append(f"edit {edit.id} of study {edit.study_id}: differs from its audit row")
    for study in session.scalars(select(Study).order_by(Study.id)):
        state, by = last_signature.get(study.id, ("unsigned", None))
        if (study.signed_at is not None) != (state == "signed") or (
            study.signed_at is not None and study.signed_by != by
        ):
            problems.append(f"study {study.id}: signature differs from the audit log")
        if study.id in last_total and study.current_agatston != last_total[study.id]:
            problems.append(f"study {study.id}: summary score differs from its last audited change")
    return AuditCheck(rows=len(rows), problems=problems)


@dataclass
class Database:
    """An engine with its session factory."""

    engine: Engine
    sessions: sessionmaker[Session]


def database_url(text: str) -> str:
    """``--db`` as a SQLAlchemy URL: a URL (``scheme://...``) unchanged, a file path as an SQLite URL.

    Examples
    --------
    >>> database_url("postgresql+psycopg://u@h/db")
    'postgresql+psycopg://u@h/db'
    >>> database_url("/tmp/review.db")
    'sqlite:////tmp/review.db'
    """
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().absolute()}"


def open_database(url: str) -> Database:
    """Connect to ``url`` and create the tables that are missing.

    The folder of an SQLite file is created.

    Raises
    ------
    InvalidInputError
        If the URL cannot be parsed, its driver is not installed or the
        database cannot be reached (the message hides any password).
    """
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        folder = Path(url.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInputError(
                f"--db {url}: cannot create the folder {folder}: {exc.strerror}"
            ) from None
    try:
        connect_args = {"check_same_thread": False} if url.startswith("sqlite") else {}
        engine = create_engine(url, connect_args=connect_args)
    except ImportError as exc:
        raise InvalidInputError(
            f"--db {_redacted(url)}: the database driver is not installed ({exc}); for PostgreSQL "
            "install the psycopg package"
        ) from None
    except (ArgumentError, NoSuchModuleError) as exc:
        raise InvalidInputError(f"--db {_redacted(url)}: cannot open database URL: {exc}") from None
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        Base.metadata.create_all(engine)
        # Databases of older versions (edits.voxels, studies.auto_domain came later).
        add_missing_columns(engine, Base.metadata.tables.values())
    except SQLAlchemyError as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise InvalidInputError(f"--db {_redacted(url)}: cannot use the database: {reason}") from None
    return Database(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _redacted(url: str) -> str:
    """URL without its password, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def bump_version(session: Session, study_id: int, expected: int) -> bool:
    """Atomically increment a study's version if it still equals ``expected``.

    Returns
    -------
    bool
        False when another change got there first (the caller answers 409).
    """
    result = session.execute(
        update(Study).where(Study.id == study_id, Study.version == expected).values(version=expected + 1)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def pack_mask(mask: np.ndarray) -> bytes:
    """Compress a (Z, Y, X) uint8 label mask for a blob column."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, mask=np.asarray(mask, dtype=np.uint8))
    return buffer.getvalue()


def unpack_mask(blob: bytes) -> np.ndarray:
    """Inverse of :func:`pack_mask`."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return np.asarray(data["mask"], dtype=np.uint8)
