"""Shared FastAPI dependencies: settings, the automatic scorer, the review store.

``get_settings`` and ``get_scorer`` are cached; tests replace them through
``app.dependency_overrides`` (e.g. a scorer that returns a known mask).
``cacscore serve`` builds the app with :func:`cacscore.web.main.create_app`,
which overrides ``get_settings`` with the command-line values.
Review stores belong to the app that opened them (:class:`AppStores` on
``app.state``) and are closed when that app shuts down. The access token and
the other request checks live in :mod:`cacscore.web.security`.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi import Path as PathParam

from cacscore.errors import CacScoreError, InvalidInputError
from cacscore.io import CTVolume
from cacscore.web.db import database_url
from cacscore.web.security import LOOPBACK_NAMES, check_token, host_name
from cacscore.web.service import OVERRIDDEN_METHOD, REFUSED_METHOD, AutoResult, Scorer, candidates_only
from cacscore.web.store import ReviewStore

if TYPE_CHECKING:
    from cacscore.model import Ensemble

log = logging.getLogger("cacscore.web")

#: Folder for the SQLite database and uploaded studies unless told otherwise.
DEFAULT_STATE_DIR = Path("cacscore-review")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Addresses that bind every interface; they name no host that a browser would send.
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")
#: Largest id or number a path or body may hold: SQLite's integers are signed 64-bit.
MAX_DB_INT = 2**63 - 1


@dataclass(frozen=True)
class Settings:
    """Server settings.

    Parameters
    ----------
    data_dir : Path or None
        Folder searched for studies (DICOM series, NIfTI, MetaImage); None: uploads only.
    db_url : str
        SQLAlchemy database URL (``sqlite:///file.db`` or ``postgresql+psycopg://...``).
    upload_dir : Path
        Folder where uploaded studies are unpacked.
    token : str or None
        Access token every API request must carry (at least 32 characters); required when ``host``
        is not a loopback address.
    host : str
        Address the server binds to.
    allowed_hosts : tuple of str
        Host names accepted in the ``Host`` header besides the loopback names and ``host`` itself
        (``--allowed-host``), e.g. the name a reverse proxy forwards.
    tls : bool
        Served over HTTPS (``--tls-cert``/``--tls-key``); only changes the plain-HTTP warning.
    max_upload_mb : float
        Largest accepted upload, MB (also the limit on a zip's unpacked size x 4).
    cache_size : int
        Studies kept in memory (volume, candidates, scores).
    analyse_in_background : bool
        Analyse new studies in a background thread once the list is first shown.
    """

    data_dir: Path | None = None
    db_url: str = f"sqlite:///{DEFAULT_STATE_DIR / 'review.db'}"
    upload_dir: Path = DEFAULT_STATE_DIR / "uploads"
    token: str | None = None
    host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    tls: bool = False
    max_upload_mb: float = 512.0
    cache_size: int = 4
    analyse_in_background: bool = False

    def check(self) -> Settings:
        """Validate: a long token present when binding beyond loopback, data folder exists, limits positive.

        Raises
        ------
        InvalidInputError
            With a message naming the option.
        """
        if self.host not in LOOPBACK_HOSTS and not self.token:
            raise InvalidInputError(
                f"--host {self.host} exposes the server beyond this computer; give an access token with "
                "--token (or CACSCORE_TOKEN) so that only people who have it can open studies"
            )
        if self.token:
            check_token(self.token)
        if self.data_dir is not None and not self.data_dir.is_dir():
            raise InvalidInputError(f"--data {self.data_dir}: no such folder")
        if not self.max_upload_mb > 0:
            raise InvalidInputError(f"--max-upload-mb must be > 0, got {self.max_upload_mb!r}")
        if self.cache_size < 1:
            raise InvalidInputError(f"cache size must be >= 1, got {self.cache_size!r}")
        return self

    def allowed_host_names(self) -> frozenset[str]:
        """Host names accepted in the ``Host`` header (lower case, without port)."""
        names = set(LOOPBACK_NAMES) | {host_name(name) for name in self.allowed_hosts}
        if self.host not in _WILDCARD_HOSTS:
            names.add(host_name(self.host if ":" not in self.host else f"[{self.host}]"))
        return frozenset(names)

    @property
    def beyond_loopback(self) -> bool:
        """Whether the server listens on an address other computers can reach."""
        return self.host not in LOOPBACK_HOSTS

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from ``CACSCORE_DATA``, ``CACSCORE_DB``, ``CACSCORE_UPLOADS``, ``CACSCORE_TOKEN``.

        ``CACSCORE_ALLOWED_HOSTS`` (comma-separated) is ``--allowed-host``.
        """
        data = os.environ.get("CACSCORE_DATA")
        return cls(
            data_dir=Path(data) if data else None,
            db_url=database_url(os.environ.get("CACSCORE_DB") or cls.db_url),
            upload_dir=Path(os.environ.get("CACSCORE_UPLOADS", str(cls.upload_dir))),
            token=os.environ.get("CACSCORE_TOKEN") or None,
            allowed_hosts=tuple(
                name.strip()
                for name in os.environ.get("CACSCORE_ALLOWED_HOSTS", "").split(",")
                if name.strip()
            ),
        )


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment (``cacscore serve`` overrides this with its options)."""
    return Settings.from_env().check()


class ModelScorer:
    """Automatic result from the trained model ensemble, by the path ``cacscore score`` takes.

    The input-domain check runs first (:func:`cacscore.pipeline.check_volume`): a scan that is not a
    non-contrast CT with a heart in view gets no automatic result but its refusal, which the page
    shows with the choice to analyse it anyway. Scoring is :func:`cacscore.pipeline.score_checked`,
    so the review app starts from the same mask and lesions as the command line. Each lesion's
    confidence (the fraction of ensemble members that found it) is painted over its voxels so that the
    store can read it per candidate.
    """

    def __init__(self, ensemble: Ensemble) -> None:
        self.ensemble = ensemble
        self.version = f"{ensemble.plan.name} {ensemble.plan.model_version}"

    def __call__(self, volume: CTVolume, *, skip_domain_check: bool = False) -> AutoResult:
        from cacscore.pipeline import check_volume, score_checked
        from cacscore.scoring import score_volume

        check = check_volume(volume, skip_domain_check=skip_domain_check)
        if check.refusal is not None and not check.skipped:
            return AutoResult(
                mask=np.zeros(volume.shape, dtype=np.uint8),
                method=REFUSED_METHOD,
                model_version=self.version,
                domain=check.to_dict(),
                refusal=check.refusal,
            )
        result, extra, labels = score_checked(volume, check, self.ensemble)
        mask = np.asarray(labels, dtype=np.uint8)
        # The lesion map of the same mask and volume numbers the lesions as the result does.
        _, lesion_map = score_volume(volume, mask, return_lesion_map=True)
        lookup = np.zeros(int(lesion_map.max()) + 1, dtype=np.float32)
        for lesion in result.lesions:
            lookup[lesion.id] = lesion.confidence or 0.0
        return AutoResult(
            mask=mask,
            method=OVERRIDDEN_METHOD if skip_domain_check and check.refusal else "model",
            model_version=self.version,
            confidence=lookup[lesion_map],
            domain=extra["domain"],
        )


@lru_cache
def get_scorer() -> Scorer:
    """The model ensemble when one is installed, else :func:`candidates_only` (reviewer adds every lesion)."""
    try:
        from cacscore.model import load_ensemble
    except ImportError:
        return candidates_only
    try:
        ensemble = load_ensemble()
    except CacScoreError as exc:
        log.warning("no model available (%s); studies open with candidates only", exc)
        return candidates_only
    return ModelScorer(ensemble)


class AppStores:
    """The review stores of one app: one per settings and scorer, opened on first use, closed together.

    Each app owns its stores, so that shutting one app down never closes a
    store another app in the same process still uses, even with equal settings.
    ``get_settings`` and ``get_scorer`` return the same objects on every call
    (they are cached or overridden with constants), so an app holds one store.
    """

    def __init__(self) -> None:
        self._stores: dict[tuple[Settings, Scorer], ReviewStore] = {}
        # Requests run in a thread pool; two first requests must not open two stores.
        self._lock = threading.Lock()

    def get(self, settings: Settings, scorer: Scorer) -> ReviewStore:
        """The store of ``settings`` and ``scorer``, opened on first use."""
        with self._lock:
            store = self._stores.get((settings, scorer))
            if store is None:
                store = ReviewStore(
                    db_url=settings.db_url,
                    data_dir=settings.data_dir,
                    upload_dir=settings.upload_dir,
                    scorer=scorer,
                    max_upload_bytes=int(settings.max_upload_mb * 1024 * 1024),
                    cache_size=settings.cache_size,
                    background=settings.analyse_in_background,
                )
                self._stores[settings, scorer] = store
            return store

    def close(self) -> None:
        """Close every store (see :meth:`ReviewStore.close`); a later :meth:`get` opens a fresh one."""
        with self._lock:
            stores = list(self._stores.values())
            self._stores.clear()
        for store in stores:
            store.close()


def app_stores(app: FastAPI) -> AppStores:
    """The stores of ``app``, as :func:`cacscore.web.main.create_app` put them on ``app.state``."""
    stores: AppStores = app.state.stores
    return stores


def get_store(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    scorer: Annotated[Scorer, Depends(get_scorer)],
) -> ReviewStore:
    """The requesting app's review store of these settings and scorer."""
    return app_stores(request.app).get(settings, scorer)


StoreDep = Annotated[ReviewStore, Depends(get_store)]
#: A study id in a path: a positive database integer (larger ones are 422, not an overflow).
StudyId = Annotated[int, PathParam(ge=1, le=MAX_DB_INT, description="Study id.")]
#: A slice index in a path.
SliceIndex = Annotated[int, PathParam(ge=0, le=2**31 - 1, description="Axial slice index.")]
