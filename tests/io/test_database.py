"""Columns a newer version added are added to a database an older version made, and nothing else changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, inspect, select

from cacscore.io.database import add_missing_columns


def _table(metadata: MetaData, *extra: Column) -> Table:
    return Table(
        "things", metadata, Column("id", Integer, primary_key=True), Column("name", String(8)), *extra
    )


def test_missing_nullable_columns_are_added_and_old_rows_kept(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    old = _table(MetaData())
    old.create(engine)
    with engine.begin() as connection:
        connection.execute(insert(old).values(id=1, name="a"))
    new_metadata = MetaData()
    new = _table(new_metadata, Column("size_mm", Integer, nullable=True), Column("note", String(4)))
    absent = Table("later", new_metadata, Column("id", Integer, primary_key=True))

    assert add_missing_columns(engine, [new, absent]) == ["things.size_mm", "things.note"]
    assert not inspect(engine).has_table("later")  # creating tables is create_all's job, not this one's
    with engine.connect() as connection:
        assert connection.execute(select(new)).all() == [(1, "a", None, None)]
    assert add_missing_columns(engine, [new]) == []  # a second time: nothing to add
    engine.dispose()


def test_a_missing_column_without_null_is_refused(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    _table(MetaData()).create(engine)
    new = _table(MetaData(), Column("count", Integer, nullable=False))
    with pytest.raises(ValueError, match="things.count is not nullable"):
        add_missing_columns(engine, [new])
    engine.dispose()
