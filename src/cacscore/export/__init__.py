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
    import numpy as np

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
) -> list[Path]:
    """Write ``seg.dcm``, ``sr.dcm`` and ``report_pdf.dcm`` of a scored DICOM series into ``out``.

    The three share the source study (patient and study attributes copied) and get new series.
    ``seg.dcm`` is left out when the mask holds no calcium (a Segmentation needs a segment); the SR
    then holds the totals only.

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
    reviewer, signed, organization
        Person observer and sign-off state of the SR (see :func:`cacscore.export.sr.build_measurement_report`).

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
    segmentation = build_segmentation(volume, labels, algorithm)
    if segmentation is not None:
        segmentation.save_as(out / "seg.dcm")
        written.append(out / "seg.dcm")
    document = build_measurement_report(
        volume,
        report,
        segmentation,
        algorithm=algorithm,
        reviewer=reviewer,
        signed=signed,
        organization=organization,
    )
    document.save_as(out / "sr.dcm")
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
    pdf = build_report_pdf(report, patient=patient, reviewer=reviewer, signed=signed)
    build_encapsulated_pdf(volume, pdf).save_as(out / "report_pdf.dcm", enforce_file_format=True)
    written.append(out / "report_pdf.dcm")
    return written
