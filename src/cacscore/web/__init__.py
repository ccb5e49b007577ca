"""Browser review of calcium scores: ``cacscore serve`` (FastAPI app, review database, PDF report).

Modules: :mod:`~cacscore.web.main` builds the app, ``routers/`` hold the
HTTP routes, :mod:`~cacscore.web.store` the review workflow,
:mod:`~cacscore.web.service` the pure review logic,
:mod:`~cacscore.web.db` the tables, :mod:`~cacscore.web.pdf` the report and
``static/`` the single-page viewer. See ``docs/review.md``.
"""
