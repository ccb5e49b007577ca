"""The review tables: mask blobs, times, status, database URLs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from cacscore.errors import InvalidInputError
from cacscore.web.db import Edit, Study, bump_version, iso, open_database, pack_mask, unpack_mask, utcnow


def test_mask_blob_round_trip() -> None:
    mask = np.random.default_rng(0).integers(0, 6, (3, 5, 7)).astype(np.uint8)
    assert np.array_equal(unpack_mask(pack_mask(mask)), mask)


def test_naive_times_from_sqlite_are_utc() -> None:
    assert iso(dt.datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05+00:00"
    assert iso(None) is None
    assert utcnow().tzinfo is dt.UTC


def test_status_and_version_bump(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'sub' / 'review.db'}")
    with database.sessions() as session:
        study = Study(root="data", path="a", name="a")
        session.add(study)
        session.commit()
        assert study.status == "new"
        study.error = "broken"
        assert study.status == "unreadable"
        study.analysed_at = utcnow()
        assert study.status == "analysed"
        study.edits.append(Edit(reviewer="r", action="add", lesion=1, before=0, after=3))
        assert study.status == "in review"
        study.signed_at = utcnow()
        assert study.status == "signed"
        session.commit()
        assert bump_version(session, study.id, 0)
        assert not bump_version(session, study.id, 0)
        session.commit()
        session.refresh(study)
        assert study.version == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nonsense", "cannot open database URL"),
        (
            "postgresql+nodriver://u:pw@localhost/x",
            r"postgresql\+nodriver://u:\*\*\*@localhost/x: cannot open",
        ),
        ("sqlite:////proc/cacscore-review.db", "cannot use the database: unable to open database file"),
    ],
)
def test_bad_database_urls_give_one_line_errors(url: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        open_database(url)
