"""Review database: studies, their automatic result, the audit trail of edits, the signature.

SQLAlchemy 2 ORM on any database URL (SQLite file by default, PostgreSQL via
``postgresql+psycopg://...``). The automatic result of a study is written
once and never changed; the reviewer's state is the automatic mask with the
edit rows replayed in order (an undo row cancels the edit it names), so the
edited mask can always be rebuilt and every change is accounted for.
Optimistic concurrency: each study carries a ``version`` that every change
must name and increments (see :func:`bump_version`).
"""

from __future__ import annotations

import datetime as dt
import io
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
    create_engine,
    event,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from cacscore.errors import InvalidInputError


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
        """``"signed"``, ``"in review"`` (edited), ``"analysed"``, ``"unreadable"`` or ``"new"``."""
        if self.signed_at is not None:
            return "signed"
        if self.edits:
            return "in review"
        if self.analysed_at is not None:
            return "analysed"
        return "unreadable" if self.error else "new"


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
        }


@dataclass
class Database:
    """An engine with its session factory."""

    engine: Engine
    sessions: sessionmaker[Session]


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
