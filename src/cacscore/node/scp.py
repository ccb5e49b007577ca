"""The DICOM node's network side (pynetdicom): a storage SCP for CT and an SCU that forwards results.

The SCP accepts CT Image Storage and Enhanced CT Image Storage (other storage SOP classes are not
among its presentation contexts, so the peer's association negotiation refuses them) and
Verification (C-ECHO). With an allow-list, associations from other calling AE titles are rejected.
An instance is acknowledged (status 0x0000) only after the queue has it on disk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cacscore.errors import CacScoreError, InvalidInputError

if TYPE_CHECKING:
    from pynetdicom.transport import ThreadedAssociationServer

    from cacscore.node.queue import NodeQueue
    from cacscore.node.worker import Destination

log = logging.getLogger("cacscore.node")

#: Storage SOP classes the node accepts: CT Image Storage, Enhanced CT Image Storage.
ACCEPTED_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1")

#: C-STORE failure statuses (PS3.4 Annex B.2.3): out of resources, cannot understand.
_STATUS_OUT_OF_RESOURCES = 0xA700
#: Verification SOP class (C-ECHO).
_VERIFICATION = "1.2.840.10008.1.1"
_STATUS_CANNOT_UNDERSTAND = 0xC000


def check_ae_title(value: str, what: str = "AE title") -> str:
    """Return ``value`` stripped if it is a valid AE title.

    A valid AE title has 1-16 characters, no backslash and no control characters.

    Raises
    ------
    InvalidInputError
        If it is not.
    """
    stripped = value.strip()
    if not 0 < len(stripped) <= 16 or "\\" in stripped or any(ord(c) < 32 or ord(c) > 126 for c in stripped):
        raise InvalidInputError(
            f"{what} {value!r}: expected 1-16 printable ASCII characters without a backslash"
        )
    return stripped


def start_scp(
    queue: NodeQueue,
    *,
    ae_title: str,
    port: int,
    host: str = "0.0.0.0",
    allow_aets: Sequence[str] = (),
) -> ThreadedAssociationServer:
    """Start the storage SCP in a background thread; stop it with ``server.shutdown()``.

    Parameters
    ----------
    queue : NodeQueue
        Where received instances are stored.
    ae_title : str
        The node's AE title.
    port : int
        TCP port to listen on.
    host : str
        Address to bind.
    allow_aets : sequence of str
        Calling AE titles accepted; empty accepts any.

    Raises
    ------
    InvalidInputError
        If an AE title is invalid or the port cannot be bound.
    """
    from pynetdicom import AE, evt

    ae = AE(ae_title=check_ae_title(ae_title, "--ae-title"))
    for sop_class in ACCEPTED_SOP_CLASSES:
        ae.add_supported_context(sop_class)
    ae.add_supported_context(_VERIFICATION)
    ae.require_calling_aet = [check_ae_title(aet, "--allow-aet") for aet in allow_aets]
    ae.maximum_pdu_size = 0

    def on_store(event: Any) -> int:
        try:
            dataset = event.dataset
            path = queue.store(
                str(dataset.StudyInstanceUID),
                str(dataset.SeriesInstanceUID),
                str(dataset.SOPInstanceUID),
                _encoded_file(event),
            )
        except (AttributeError, CacScoreError) as error:
            log.warning("refused an instance from %s: %s", event.assoc.requestor.ae_title, error)
            return _STATUS_CANNOT_UNDERSTAND
        except OSError as error:
            log.error("could not store an instance: %s", error)
            return _STATUS_OUT_OF_RESOURCES
        if queue.is_done(path.parent.name):
            # Arrived after its series' quiet period: kept, but the series' result does not include it.
            log.warning(
                "instance %s arrived after series %s was scored; kept in %s, not scored",
                path.stem,
                path.parent.name,
                path.parent,
            )
        return 0x0000

    try:
        server = ae.start_server((host, port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    except OSError as error:
        raise InvalidInputError(f"--port {port}: cannot listen on {host}:{port} ({error})") from error
    assert server is not None  # block=False returns the server
    return server


def _encoded_file(event: Any) -> bytes:
    """The received instance as the bytes of a DICOM file (preamble, file meta, dataset as sent)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    buffer = DicomBytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, event.file_meta, enforce_standard=True)
    buffer.write(event.request.DataSet.getvalue())
    return buffer.getvalue()


def send_files(
    paths: Sequence[Path],
    destination: Destination,
    *,
    calling_ae_title: str = "CACSCORE",
    on_sent: Callable[[Path], None] | None = None,
) -> None:
    """C-STORE the DICOM files ``paths`` to ``destination``, one association.

    ``on_sent(path)`` is called right after each file's C-STORE succeeded (before the next is sent), so
    that the caller can record it durably and a restart does not send it again.

    Raises
    ------
    CacScoreError
        If the association is refused or a C-STORE does not succeed; the message names the file.
    """
    from pydicom import dcmread
    from pynetdicom import AE

    datasets = [dcmread(path) for path in paths]
    ae = AE(ae_title=calling_ae_title)
    for dataset in datasets:
        ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    where = f"{destination.ae_title}@{destination.host}:{destination.port}"
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise CacScoreError(f"--forward {where}: association refused or node unreachable")
    try:
        for path, dataset in zip(paths, datasets, strict=True):
            status = assoc.send_c_store(dataset)
            code = getattr(status, "Status", None)
            if code != 0x0000:
                raise CacScoreError(f"--forward {where}: C-STORE of {path} failed (status {code})")
            if on_sent is not None:
                on_sent(path)
    finally:
        assoc.release()
