"""Cohort scoring on Dask: many series, one results database, resumable after any crash.

``inputs`` finds the series, ``worker`` scores one on a Dask worker (the
ensemble loaded once per worker), ``run`` drives the cluster and writes one
database row (``db``) per finished series. Dask is imported only by ``run``
and ``worker`` when a batch runs.
"""

from __future__ import annotations

from cacscore.batch.db import COLUMNS, DB_NAME, database_url, open_database, read_rows
from cacscore.batch.inputs import BatchItem, collect_items, content_hash

__all__ = [
    "COLUMNS",
    "DB_NAME",
    "BatchItem",
    "collect_items",
    "content_hash",
    "database_url",
    "open_database",
    "read_rows",
]
