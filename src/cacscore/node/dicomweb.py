"""DICOMweb (dicomweb-client): fetch a study's CT series with QIDO-RS/WADO-RS, send results with STOW-RS.

The fetched instances go into the node's on-disk queue (:class:`~cacscore.node.queue.NodeQueue`), so
``cacscore pacs pull`` scores them by the same worker as ``cacscore listen`` and a series already done
is not scored again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cacscore.errors import CacScoreError

if TYPE_CHECKING:
    from dicomweb_client.api import DICOMwebClient

    from cacscore.node.queue import NodeQueue, PendingSeries

log = logging.getLogger("cacscore.node")

_SERIES_UID_TAG = "0020000E"
_MODALITY_TAG = "00080060"


class DicomWebError(CacScoreError):
    """A DICOMweb server refused a request or could not be reached."""


@contextmanager
def _server_errors(url: str, what: str) -> Iterator[None]:
    """Turn the HTTP client's exceptions into one :class:`DicomWebError` naming the server and the request."""
    import requests

    try:
        yield
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise DicomWebError(f"{url}: {what} failed (HTTP {status})") from error
    except requests.RequestException as error:
        raise DicomWebError(
            f"{url}: {what} failed ({type(error).__name__}: cannot reach the server)"
        ) from error


def client(url: str) -> DICOMwebClient:
    """A DICOMweb client of the server whose DICOMweb root is ``url`` (e.g. ``http://pacs:8042/dicom-web``)."""
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(url=url.rstrip("/"))


def _value(item: dict[str, Any], tag: str) -> str | None:
    values = item.get(tag, {}).get("Value") or []
    return str(values[0]) if values else None


def pull_study(url: str, study_uid: str, queue: NodeQueue) -> list[PendingSeries]:
    """Fetch the CT series of a study into ``queue``; return them (each with every instance on disk).

    Parameters
    ----------
    url : str
        DICOMweb root of the server.
    study_uid : str
        StudyInstanceUID.
    queue : NodeQueue
        Where the instances are stored (``incoming/<study>/<series>/<sop>.dcm``).

    Raises
    ------
    DicomWebError
        If the server cannot be reached or refuses a request, or the study has no CT series.
    InvalidInputError
        If ``study_uid`` is not a DICOM UID.
    """
    from io import BytesIO

    from pydicom import dcmwrite

    from cacscore.node.queue import check_uid

    study_uid = check_uid(study_uid, "--study")
    web = client(url)
    with _server_errors(url, f"QIDO-RS search for the series of study {study_uid}"):
        found = web.search_for_series(study_instance_uid=study_uid)
    ct_series = sorted(
        {
            uid
            for item in found
            if _value(item, _MODALITY_TAG) == "CT" and (uid := _value(item, _SERIES_UID_TAG)) is not None
        }
    )
    if not ct_series:
        modalities = sorted({_value(item, _MODALITY_TAG) or "?" for item in found})
        raise DicomWebError(
            f"{url}: study {study_uid} has no CT series "
            f"({'series of ' + ', '.join(modalities) if found else 'no series found'})"
        )
    for series_uid in ct_series:
        with _server_errors(url, f"WADO-RS retrieval of series {series_uid}"):
            instances = web.retrieve_series(study_uid, series_uid)
        for dataset in instances:
            buffer = BytesIO()
            dcmwrite(buffer, dataset, enforce_file_format=True)
            queue.store(study_uid, series_uid, str(dataset.SOPInstanceUID), buffer.getvalue())
        log.info("fetched series %s (%d instances)", series_uid, len(instances))
    return [
        series
        for series in queue.pending()
        if series.study_uid == study_uid and series.series_uid in ct_series
    ]


@dataclass(frozen=True)
class StowSender:
    """Sends files to a DICOMweb server with STOW-RS (a :class:`~cacscore.node.worker.Sender`)."""

    url: str

    @property
    def target(self) -> str:
        """Where the files go: the server's URL."""
        return self.url

    def send(self, paths: list[Path], on_sent: Callable[[Path], None] | None = None) -> str:
        """STOW-RS ``paths`` in one request; return the server's URL.

        ``on_sent(path)`` is called for each file once the server accepted the whole request (a refused
        request records none: a retry sends them all again, under the same SOP Instance UIDs).

        Raises
        ------
        DicomWebError
            If the server refuses them or cannot be reached.
        """
        from pydicom import dcmread

        datasets = [dcmread(path) for path in paths]
        with _server_errors(self.url, "STOW-RS of " + ", ".join(path.name for path in paths)):
            response = client(self.url).store_instances(datasets)
        failed = response.get("00081198", {}).get("Value") or []
        if failed:
            raise DicomWebError(f"{self.url}: STOW-RS refused {len(failed)} of {len(paths)} instances")
        if on_sent is not None:
            for path in paths:
                on_sent(path)
        return self.url
