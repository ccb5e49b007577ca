"""One-page PDF report of a reviewed study (reportlab).

Sections: study identifiers, scores per artery, risk category and CAC-DRS
with their standard interpretation, key images with the counted lesions, and
the method (automatic result, review, signature, scoring conventions).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from cacscore.io import CTVolume
from cacscore.render import key_images_png
from cacscore.scoring import ARTERY_ORDER, ScoreResult
from cacscore.scoring.conventions import AGATSTON_THRESHOLD_HU
from cacscore.web.service import ARTERY_COLOURS, interpretation

#: Lesion crops of the key images in the report (highest Agatston first), and their height on the page.
N_KEY_CROPS = 8
KEY_IMAGES_HEIGHT_MM = 115.0


@dataclass
class ReportContent:
    """What the report shows; built by :meth:`cacscore.web.store.ReviewStore.report_pdf`."""

    study: dict[str, Any]
    volume: CTVolume
    result: ScoreResult
    mask: np.ndarray
    lesions: list[dict[str, Any]]
    review: dict[str, Any]
    #: Patient and study details from the DICOM header (see :func:`cacscore.web.patient.patient_details`).
    patient: dict[str, str] | None = None


def build_pdf(content: ReportContent) -> bytes:
    """Render the report to PDF bytes (A4, one page)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Image as FlowImage
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle

    styles = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=styles["BodyText"], fontSize=8.5, leading=11)
    small = ParagraphStyle(
        "small", parent=body, fontSize=7.5, leading=9.5, textColor=colors.HexColor("#444444")
    )
    heading = ParagraphStyle("heading", parent=styles["Heading3"], fontSize=10.5, spaceBefore=5, spaceAfter=3)
    title = ParagraphStyle("title", parent=styles["Title"], fontSize=15, spaceAfter=2, alignment=0)
    result, volume, study, review = content.result, content.volume, content.study, content.review

    grid = TableStyle(
        [
            ("FONTSIZE", (0, 0), (-1, -1), 8.5),
            ("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor("#bbbbbb")),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ]
    )
    story: list[Any] = [Paragraph("Coronary artery calcium score", title)]
    if review["signed_at"]:
        when = review["signed_at"][:16].replace("T", " ")
        status = f"Reviewed and signed by {_escape(review['signed_by'])} on {when} UTC"
    else:
        status = "<b>Not signed</b>: preliminary result, review in progress"
    story.append(Paragraph(status, body))

    story.append(Paragraph("Study", heading))
    spacing = volume.spacing
    patient = dict(content.patient or {})
    patient.setdefault("Patient ID", volume.patient_id or "-")
    # Label/value pairs, three to a row (the page has no room for a row per item), then the UIDs.
    pairs = [(label, _escape(value)) for label, value in patient.items()] + [
        ("Study", _escape(study["name"])),
        ("Review id", str(study["id"])),
        ("kVp", _fmt(volume.kvp, "{:g}")),
        ("Slices", f"{volume.shape[0]} x {volume.shape[1]} x {volume.shape[2]}"),
        ("Increment / thickness", f"{spacing[0]:g} / {_fmt(volume.slice_thickness_mm, '{:g}')} mm"),
    ]
    pairs += [("", "")] * (-len(pairs) % 3)
    identifiers = [[cell for pair in pairs[i : i + 3] for cell in pair] for i in range(0, len(pairs), 3)]
    n_pair_rows = len(identifiers)
    identifiers += [
        ["Study UID", _escape(volume.study_uid or "-"), "", "", "", ""],
        ["Series UID", _escape(volume.series_uid or "-"), "", "", "", ""],
    ]
    table = Table(
        [[Paragraph(c, small) for c in row] for row in identifiers],
        colWidths=[22 * mm, 38 * mm] * 3,
    )
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor("#bbbbbb")),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                *[
                    ("BACKGROUND", (col, 0), (col, n_pair_rows - 1), colors.HexColor("#f3f3f3"))
                    for col in (0, 2, 4)
                ],
                ("BACKGROUND", (0, n_pair_rows), (0, -1), colors.HexColor("#f3f3f3")),
                ("SPAN", (1, n_pair_rows), (-1, n_pair_rows)),
                ("SPAN", (1, n_pair_rows + 1), (-1, n_pair_rows + 1)),
            ]
        )
    )
    story.append(table)

    story.append(Paragraph("Scores", heading))
    rows = [["Artery", "Lesions", "Agatston", "Volume (mm³)", "Mass (mg)"]]
    for name in ARTERY_ORDER:
        score = result.arteries[name]
        if name == "unspecified" and score.agatston == 0 and score.n_lesions == 0:
            continue
        rows.append(
            [
                name,
                str(score.n_lesions),
                f"{score.agatston:.1f}",
                f"{score.volume_mm3:.1f}",
                f"{score.mass_mg:.1f}",
            ]
        )
    rows.append(
        [
            "Total",
            str(len(result.lesions)),
            f"{result.agatston:.1f}",
            f"{result.volume_mm3:.1f}",
            f"{result.mass_mg:.1f}",
        ]
    )
    scores = Table(rows, colWidths=[30 * mm, 22 * mm, 30 * mm, 30 * mm, 30 * mm])
    style = TableStyle(
        grid.getCommands()
        + [("FONTNAME", (0, -1), (-1, -1), "Helvetica-Bold"), ("ALIGN", (1, 0), (-1, -1), "RIGHT")]
    )
    for i, row in enumerate(rows[1:-1], start=1):
        # The artery colour as the cell's background under black text: the yellow of LM is unreadable as
        # text on white paper, and every colour reads as a swatch.
        style.add("BACKGROUND", (0, i), (0, i), colors.HexColor(ARTERY_COLOURS[row[0]]))
        style.add("TEXTCOLOR", (0, i), (0, i), colors.black)
        style.add("FONTNAME", (0, i), (0, i), "Helvetica-Bold")
    scores.setStyle(style)
    story.append(scores)

    texts = interpretation(result)
    story.append(Paragraph("Category", heading))
    story.append(
        Paragraph(f"<b>Risk category {result.risk_category}</b> &mdash; {texts['risk_category']}", body)
    )
    story.append(Paragraph(f"<b>CAC-DRS {result.cac_drs}</b> &mdash; {texts['cac_drs']}", body))

    if result.lesions:
        # The montage's key images (cacscore.render), scaled to what is left of the page.
        story.append(Paragraph("Key images", heading))
        png = key_images_png(volume, content.mask, result.lesions, max_crops=N_KEY_CROPS)
        width_px, height_px = Image.open(io.BytesIO(png)).size
        scale = min(170 * mm / width_px, KEY_IMAGES_HEIGHT_MM * mm / height_px)
        story.append(FlowImage(io.BytesIO(png), width=width_px * scale, height=height_px * scale))

    story.append(Paragraph("Method", heading))
    automatic = review["automatic"]
    if automatic["method"] == "model":
        model = _escape(automatic["model_version"] or "(unversioned)")
        auto_text = f"Automatic segmentation by the cacscore model {model}"
    else:
        auto_text = (
            "No automatic model was used: the reviewer selected every lesion from the calcium candidates"
        )
    auto_score = automatic["agatston"]
    n_edits = len(review["edits"])
    reviewers = ", ".join(_escape(r) for r in review["reviewers"]) or "-"
    conventions = result.conventions
    threshold = conventions.get("threshold_hu", AGATSTON_THRESHOLD_HU)
    mass = "calibrated" if conventions.get("mass_calibrated") else "uncalibrated (calibration factor 1)"
    story.append(
        Paragraph(
            f"{auto_text} (automatic Agatston {_fmt(auto_score, '{:.1f}')}); reviewed lesion by lesion "
            f"({n_edits} audit {'entry' if n_edits == 1 else 'entries'}; reviewers: {reviewers}). "
            f"Scores computed by {_escape(review['software'])} on the reviewed label mask: threshold "
            f"{threshold:g} HU, 2-D components of at least {conventions.get('min_area_mm2', 1.0):g} mm², "
            f"density weights 1-4, slice increment {conventions.get('slice_increment_mm', spacing[0]):g} mm; "
            f"mass {mass}. Risk categories after Rumberger et al. 1999, CAC-DRS after Hecht et al. 2018.",
            body,
        )
    )
    warnings = list(dict.fromkeys([*volume.warnings, *result.warnings]))
    if warnings:
        story.append(Paragraph("Notes: " + "; ".join(_escape(w) for w in warnings), small))

    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=13 * mm,
        bottomMargin=12 * mm,
        title="Coronary artery calcium score",
        author="cacscore",
        subject=f"review {study['id']}",
    )
    document.build(story)
    return buffer.getvalue()


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _escape(text: object) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
