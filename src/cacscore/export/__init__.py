"""DICOM outputs of a scored DICOM series: Segmentation, Measurement Report SR and Encapsulated PDF.

Pure builders (:mod:`~cacscore.export.seg`, :mod:`~cacscore.export.sr`,
:mod:`~cacscore.export.pdf_dicom`) take the volume read from DICOM (its source images and headers in
``volume.dicom``), the label mask and the ``cacscore.score/1`` report; :func:`write_dicom_outputs`
writes the three files. Codes live in :mod:`~cacscore.export.codes`. See ``docs/integration.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cacscore.export.common import Equipment
from cacscore.export.seg import Algorithm, build_segmentation, source_frames

if TYPE_CHECKING:
    from datetime import datetime

    import numpy as np
    from pydicom.dataset import Dataset

    from cacscore.io.volume import CTVolume

#: Files :func:`write_dicom_outputs` writes (``seg.dcm`` only when the mask holds calcium).
DICOM_PRODUCTS = ["seg.dcm", "sr.dcm", "report_pdf.dcm"]

__all__ = [
    "DICOM_PRODUCTS",
    "Algorithm",
    "Equipment",
    "build_segmentation",
    "source_frames",
    "write_dicom_outputs",
]


def write_dicom_outputs(
    out: Path,
    volume: CTVolume,
    labels: np.ndarray,
    report: dict[str, Any],
    algorithm: Algorithm,
    *,
    reviewer: str | None = None,
    signed: bool = False,
    organization: str | None = None,
    manual: np.ndarray | None = None,
    verified_at: datetime | None = None,
    corrected: bool = False,
    pdf: bytes | None = None,
) -> list[Path]:
    """Write ``seg.dcm``, ``sr.dcm`` and ``report_pdf.dcm`` of a scored DICOM series into ``out``.

    The three share the source study (patient and study attributes copied) and get new series.
    ``seg.dcm`` is left out when the mask holds no calcium (a Segmentation needs a segment); the SR
    then holds the totals only.

    A reviewed result gives ``manual``: the SEG then has separate ``MANUAL`` segments for the
    reader's voxels (see :func:`~cacscore.export.seg.build_segmentation`), and the SR one group per
    segment, each with its own voxels' scores (an artery's parts add up to its scores: a part is a
    union of whole candidate lesions, which Agatston's 2-D components never cross).

    Parameters
    ----------
    out : Path
        Existing output folder.
    volume : CTVolume
        Volume read from DICOM.
    labels : (Z, Y, X) ndarray of int
        Label mask on the volume's grid (project codes).
    report : dict
        ``cacscore.score/1`` report of that mask.
    algorithm : Algorithm
        What made the mask (model name and version, or ``manual=True``).
    reviewer, signed, organization, verified_at, corrected
        Person observer, sign-off state and reader's corrections of the SR (see
        :func:`cacscore.export.sr.build_measurement_report`); the reviewer is also the SEG's content
        creator.
    manual : (Z, Y, X) ndarray of bool, optional
        Voxels of ``labels`` that a reader added or changed.
    pdf : bytes, optional
        The PDF to encapsulate (default: :func:`cacscore.export.pdf_dicom.build_report_pdf` of ``report``),
        e.g. the review app's report with its audit trail.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    InvalidInputError
        If the volume was not read from DICOM or the mask does not fit it.
    """
    from cacscore.export.common import first_header
    from cacscore.export.pdf_dicom import build_encapsulated_pdf, build_report_pdf
    from cacscore.export.sr import build_measurement_report

    written = []
    segmentation = build_segmentation(volume, labels, algorithm, manual=manual, reader=reviewer)
    segment_scores = None
    if segmentation is not None:
        _save(segmentation, out / "seg.dcm")
        written.append(out / "seg.dcm")
        if manual is not None:
            segment_scores = _segment_scores(volume, labels, manual, segmentation)
    document = build_measurement_report(
        volume,
        report,
        segmentation,
        algorithm=algorithm,
        reviewer=reviewer,
        signed=signed,
        organization=organization,
        verified_at=verified_at,
        corrected=corrected,
        segment_scores=segment_scores,
    )
    _save(document, out / "sr.dcm")
    written.append(out / "sr.dcm")
    header = first_header(volume)
    patient = {
        label: str(header.get(keyword, "")) or "-"
        for label, keyword in (
            ("Patient", "PatientName"),
            ("Patient ID", "PatientID"),
            ("Study date", "StudyDate"),
            ("Accession", "AccessionNumber"),
        )
    }
    if pdf is None:
        pdf = build_report_pdf(report, patient=patient, reviewer=reviewer, signed=signed)
    _save(build_encapsulated_pdf(volume, pdf), out / "report_pdf.dcm", enforce_file_format=True)
    written.append(out / "report_pdf.dcm")
    return written


def _save(dataset: Dataset, path: Path, *, enforce_file_format: bool = False) -> None:
    """Write ``dataset`` to ``path`` atomically (:mod:`cacscore.io.atomic`): the old file or the new one.

    A crash or an error while encoding never leaves a truncated DICOM file under the product's name
    (the node forwards the files it finds; ``cacscore score --force`` writes over earlier results).
    """
    from cacscore.io.atomic import atomic_open

    with atomic_open(path, "wb") as handle:
        dataset.save_as(handle, enforce_file_format=enforce_file_format)


def _segment_scores(
    volume: CTVolume, labels: np.ndarray, manual: np.ndarray, segmentation: Any
) -> dict[int, dict[str, Any]]:
    """Agatston, volume and mass of each segment's voxels.

    The algorithm's and the reader's part are scored apart.
    """
    import numpy as np

    from cacscore.export.seg import segment_keys
    from cacscore.labels import ARTERY_NAMES
    from cacscore.scoring import score_volume

    labels = np.asarray(labels)
    manual = np.asarray(manual, dtype=bool)
    parts = {
        by_reader: score_volume(volume, np.where(manual == by_reader, labels, 0).astype(np.uint8)).to_dict()
        for by_reader in (False, True)
    }
    empty = {"agatston": 0.0, "volume_mm3": 0.0, "mass_mg": 0.0}
    return {
        number: parts[by_reader]["arteries"].get(ARTERY_NAMES[code], empty)
        for number, (code, by_reader) in segment_keys(segmentation).items()
    }
