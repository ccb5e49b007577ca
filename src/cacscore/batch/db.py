"""The results database of a batch: one row per series (SQLAlchemy; SQLite by default, any URL accepted).

Only the driver writes, one transaction per finished series, so a batch killed
at any point leaves every row either written whole or not at all; the key
(content hash and the series asked for) is unique, so a rerun cannot add a
second row for a series.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    insert,
    select,
)

from cacscore.errors import InvalidInputError
from cacscore.io.database import add_missing_columns
from cacscore.labels import ARTERY_NAMES

#: File name of the SQLite database inside a results folder.
DB_NAME = "results.sqlite"
#: Row status values.
DONE, FAILED = "done", "failed"
#: Scores stored per artery, as ``<artery>_<score>`` columns (``LAD_agatston``...).
ARTERY_SCORES = ("agatston", "volume_mm3", "mass_mg", "n_lesions")


_COLUMN_TYPES: list[tuple[str, Any]] = [
    ("key", String(64)),
    ("case_id", String(255)),
    ("path", Text),
    ("series_uid_requested", String(128)),
    ("series_uid", String(128)),
    ("study_uid", String(128)),
    ("content_hash", String(64)),
    ("status", String(16)),
    ("error", Text),
    ("agatston", Float),
    ("volume_mm3", Float),
    ("mass_mg", Float),
    ("n_lesions", Integer),
    ("n_vessels", Integer),
    ("risk_category", String(8)),
    ("cac_drs", String(16)),
    ("model_name", String(128)),
    ("model_version", String(64)),
    ("model_precision", String(8)),
    ("domain_outcome", String(16)),
    ("domain", Text),
    ("warnings", Text),
    ("read_s", Float),
    ("score_s", Float),
    ("total_s", Float),
    ("worker", String(255)),
    ("worker_peak_mib", Float),
    ("finished_at", String(32)),
    ("cacscore_version", String(32)),
    # One column per artery and score, named from the one home of artery names (LAD_agatston...).
    *(
        (f"{artery}_{score}", Integer if score == "n_lesions" else Float)
        for artery in ARTERY_NAMES.values()
        for score in ARTERY_SCORES
    ),
]

_metadata = MetaData()
#: The results table: one row per series. ``status`` is ``done`` or ``failed`` (with ``error``, one line);
#: ``domain_outcome`` is ``passed``, ``refused`` (the row failed for it), ``skipped``
#: (``--skip-domain-check``) or None when the series could not be read. Times are seconds,
#: ``worker_peak_mib`` the worker process's peak memory after the task;
#: ``warnings`` and ``domain`` are JSON text.
RESULTS = Table(
    "series_results",
    _metadata,
    Column("id", Integer, primary_key=True),
    *(
        Column(
            name,
            kind,
            unique=name == "key",
            index=name in ("key", "case_id", "status"),
            nullable=name not in ("key", "case_id", "path", "content_hash", "status"),
        )
        for name, kind in _COLUMN_TYPES
    ),
)

#: Column names in table order.
COLUMNS: list[str] = [column.name for column in RESULTS.columns]


def database_url(results: str | Path) -> str:
    """The SQLAlchemy URL of a results location: a URL as given, else ``sqlite:///RESULTS/results.sqlite``.

    Examples
    --------
    >>> database_url("postgresql+psycopg://u@db/cac")
    'postgresql+psycopg://u@db/cac'
    >>> database_url("/data/run1")
    'sqlite:////data/run1/results.sqlite'
    """
    text = str(results)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).resolve() / DB_NAME}"


def open_database(url: str, *, create: bool = True) -> Engine:
    """An engine on the results database, the table created if ``create``.

    SQLite runs in WAL mode with full fsync so that a committed row survives a
    SIGKILL of the writer.

    Raises
    ------
    InvalidInputError
        If the database cannot be opened.
    """
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = create_engine(url)
    except (SQLAlchemyError, ImportError) as exc:
        raise InvalidInputError(f"{url}: cannot open the results database: {exc}") from exc
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

    try:
        if create:
            _metadata.create_all(engine)
            # A results database of an older version (model_precision came later) gains the new columns.
            add_missing_columns(engine, [RESULTS])
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        raise InvalidInputError(f"{url}: cannot open the results database: {exc.__class__.__name__}") from exc
    return engine


def statuses(engine: Engine) -> dict[str, tuple[str, str]]:
    """``{key: (status, case_id)}`` of every row."""
    with engine.connect() as connection:
        rows = connection.execute(select(RESULTS.c.key, RESULTS.c.status, RESULTS.c.case_id))
        return {key: (status, case_id) for key, status, case_id in rows}


def write_row(engine: Engine, row: Mapping[str, Any]) -> None:
    """Insert or replace the row of ``row["key"]``, in one transaction: a kill leaves one of the two."""
    values = {name: row.get(name) for name in COLUMNS if name != "id"}
    for name in ("warnings", "domain"):
        if values[name] is not None and not isinstance(values[name], str):
            values[name] = json.dumps(values[name])
    with engine.begin() as connection:
        _replace(connection, values)


def _replace(connection: Connection, values: dict[str, Any]) -> None:
    connection.execute(delete(RESULTS).where(RESULTS.c.key == values["key"]))
    connection.execute(insert(RESULTS).values(**values))


def read_rows(engine: Engine) -> list[dict[str, Any]]:
    """Every row as a dictionary of :data:`COLUMNS`, ordered by case id."""
    with engine.connect() as connection:
        result = connection.execute(select(RESULTS).order_by(RESULTS.c.case_id))
        return [dict(row._mapping) for row in result]
