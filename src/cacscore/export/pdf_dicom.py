"""A one-page PDF of a score report, and its Encapsulated PDF DICOM instance in the source study."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset, FileMetaDataset

from cacscore.export.common import Equipment, first_header, now, study_attributes
from cacscore.labels import ARTERY_NAMES, MAJORITY_ORDER

if TYPE_CHECKING:
    from cacscore.io.volume import CTVolume

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"


def _text(value: object) -> str:
    """Escape text for reportlab's paragraph markup."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_report_pdf(
    report: dict[str, Any],
    *,
    patient: dict[str, str] | None = None,
    reviewer: str | None = None,
    signed: bool = False,
) -> bytes:
    """One-page A4 PDF of a ``cacscore.score/1`` report: identifiers, scores per artery, categories, method.

    A small builder of its own: the review app's report (:mod:`cacscore.web.pdf`) needs a review record
    (audit trail, signature) that a command-line result does not have.

    Parameters
    ----------
    report : dict
        ``cacscore.score/1`` report.
    patient : dict, optional
        Label -> value pairs shown under "Patient" (e.g. name, ID, study date).
    reviewer : str, optional
        Reviewer's name; ``signed`` says whether the result was signed.
    """
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle

    styles = getSampleStyleSheet()
    body, heading = styles["BodyText"], styles["Heading3"]
    story: list[Any] = [Paragraph("Coronary artery calcium score", styles["Title"])]
    if signed and reviewer:
        story.append(Paragraph(f"Reviewed and signed by {_text(reviewer)}", body))
    else:
        story.append(Paragraph("<b>Not reviewed</b>: automatic result, to be read by a physician", body))
    story.append(Paragraph("Patient and study", heading))
    source = report.get("input", {})
    pairs = [
        *(patient or {}).items(),
        ("Study UID", source.get("study_uid") or "-"),
        ("Series UID", source.get("series_uid") or "-"),
    ]
    story.append(Paragraph("<br/>".join(f"{_text(k)}: {_text(v)}" for k, v in pairs), body))
    story.append(Paragraph("Scores", heading))
    rows = [["Artery", "Agatston", "Volume (mm³)", "Mass (mg)", "Lesions"]]
    for code in MAJORITY_ORDER:
        scores = report["arteries"].get(ARTERY_NAMES[code])
        if scores is not None:
            rows.append(
                [
                    ARTERY_NAMES[code],
                    f"{scores['agatston']:.1f}",
                    f"{scores['volume_mm3']:.1f}",
                    f"{scores['mass_mg']:.2f}",
                    str(scores["n_lesions"]),
                ]
            )
    rows.append(
        [
            "Total",
            f"{report['agatston']:.1f}",
            f"{report['volume_mm3']:.1f}",
            f"{report['mass_mg']:.2f}",
            str(len(report["lesions"])),
        ]
    )
    table = Table(rows)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
            ]
        )
    )
    story.append(table)
    story.append(
        Paragraph(
            f"Risk category <b>{_text(report['risk_category'])}</b> (Rumberger et al. 1999); "
            f"CAC-DRS <b>{_text(report['cac_drs'])}</b> (Hecht et al. 2018).",
            body,
        )
    )
    if report.get("risk"):
        story.extend(_risk_section(report["risk"], heading, body))
    model = report.get("model") or {}
    method = (
        f"Segmentation by the model {_text(model.get('name', ''))} {_text(model.get('version', ''))}"
        if model
        else "Scores of a given label mask"
    )
    story.append(Paragraph("Method", heading))
    story.append(Paragraph(f"{method}; Agatston, volume and mass computed by cacscore.", body))
    if report.get("warnings"):
        story.append(Paragraph("Notes: " + "; ".join(_text(w) for w in report["warnings"]), body))
    buffer = io.BytesIO()
    SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        title="Coronary artery calcium score",
        author="cacscore",
        invariant=True,
    ).build(story)
    return buffer.getvalue()


def _risk_section(risk: dict[str, Any], heading: Any, body: Any) -> list[Any]:
    """Paragraphs of the report's ``risk`` block.

    Each figure or why it is not given, its inputs and sources.
    """
    from reportlab.platypus import Paragraph

    from cacscore.scoring.risk import MESA_INPUTS

    def line(title: str, result: dict[str, Any], shown: str) -> str:
        value = shown if result.get("value") is not None else f"not computed: {_text(result['not_computed'])}"
        validity = f" Valid for {_text(result['validity'])}." if result.get("validity") else ""
        return f"<b>{title}</b>: {value}.{validity}"

    mesa, artery = risk["mesa_chd_10y"], risk["arterial_age"]
    lines = [
        line("MESA 10-year coronary heart disease risk", mesa, f"{(mesa.get('value') or 0.0):.1f} %"),
        line("Arterial age", artery, f"{(artery.get('value') or 0.0):.0f} years"),
        line("MESA CAC percentile", risk["mesa_percentile"], ""),
    ]

    def shown_input(value: object) -> str:
        return ("yes" if value else "no") if isinstance(value, bool) else _text(value)

    inputs = "; ".join(
        f"{MESA_INPUTS.get(name, name)} {shown_input(item['value'])} ({_text(item['source'])})"
        for name, item in risk.get("inputs", {}).items()
    )
    sources = "Sources: " + " | ".join(_text(result["source"]) for result in (mesa, artery))
    small = body.clone("risk_small", fontSize=7, leading=9)
    story: list[Any] = [Paragraph("Risk context", heading)]
    story += [Paragraph(text, body) for text in lines]
    story.append(Paragraph(f"Inputs: {inputs}", small))
    if risk.get("notes"):
        story.append(Paragraph("Notes: " + "; ".join(_text(n) for n in risk["notes"]), small))
    story.append(Paragraph(sources, small))
    return story


def build_encapsulated_pdf(
    volume: CTVolume,
    pdf: bytes,
    *,
    title: str = "Coronary artery calcium score",
    series_uid: str | None = None,
    series_number: int = 903,
    equipment: Equipment | None = None,
) -> Dataset:
    """Encapsulated PDF instance (PS3.3 A.45.1) of ``pdf`` in the study of the volume's source series.

    Raises
    ------
    InvalidInputError
        If the volume was not read from DICOM.
    """
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    equipment = equipment or Equipment()
    header = first_header(volume)
    ds = study_attributes(header)
    date, time = now()
    sop_uid = generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = title
    ds.Manufacturer = equipment.manufacturer
    ds.ManufacturerModelName = equipment.model_name
    ds.SoftwareVersions = equipment.software_version
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionDateTime = date + time
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = title
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    # OB values have even length: pad with a NUL byte (the length above is the document's own).
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(ENCAPSULATED_PDF_STORAGE)
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds
