"""Databases written by an older version: the columns a newer one added are added, nullable."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, Table, inspect, text


def add_missing_columns(engine: Engine, tables: Iterable[Table]) -> list[str]:
    """Add to each existing table of the database the columns its definition has and the database lacks.

    Rows an older version wrote keep their values and read None in the new columns; nothing is
    removed or rewritten.

    Parameters
    ----------
    engine : Engine
        The database.
    tables : iterable of Table
        The tables as this version defines them (already created where they were missing).

    Returns
    -------
    list of str
        ``table.column`` of every column added.

    Raises
    ------
    ValueError
        If a missing column is not nullable: older rows would have no value for it.
    """
    added = []
    found = inspect(engine)
    for table in tables:
        if not found.has_table(table.name):
            continue
        present = {column["name"] for column in found.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise ValueError(f"{table.name}.{column.name} is not nullable: older rows lack a value")
            kind = column.type.compile(dialect=engine.dialect)
            with engine.begin() as connection:
                connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
            added.append(f"{table.name}.{column.name}")
    return added
