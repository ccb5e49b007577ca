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
from PIL import Image, ImageDraw
from scipy import ndimage

from cacscore.io import CTVolume
from cacscore.labels import ARTERY_NAMES, majority_artery
from cacscore.scoring import ARTERY_ORDER, VESSELS, ScoreResult
from cacscore.scoring.conventions import AGATSTON_THRESHOLD_HU
from cacscore.web.service import ARTERY_COLOURS, interpretation, key_slices, window

#: Key images shown (one per artery first, then the next highest lesions).
N_KEY_IMAGES = 3
#: Window of the key images, HU (mediastinal, calcium stays white).
KEY_WINDOW_HU = (800.0, 200.0)
#: Side of the square crop around the counted calcium of a key image, mm (at least).
KEY_FIELD_MM = 90.0


@dataclass
class ReportContent:
    """What the report shows; built by :meth:`cacscore.web.store.ReviewStore.report_pdf`."""

    study: dict[str, Any]
    volume: CTVolume
    result: ScoreResult
    mask: np.ndarray
    lesions: list[dict[str, Any]]
    review: dict[str, Any]


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    value = hex_colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def key_image(
    hu: np.ndarray, labels: np.ndarray, spacing_yx: tuple[float, float], size_px: int = 360
) -> Image.Image:
    """An axial slice around its counted calcium, lesions filled in their artery colours.

    Parameters
    ----------
    hu : (Y, X) ndarray
        Slice in HU.
    labels : (Y, X) ndarray of uint8
        Project label codes of the slice.
    spacing_yx : tuple of 2 float
        Pixel spacing ``(dy, dx)``, mm.
    size_px : int
        Side of the returned square image, pixels.

    Returns
    -------
    PIL.Image.Image
        RGB image, square, physical aspect kept.
    """
    dy, dx = spacing_yx
    grey = window(hu, *KEY_WINDOW_HU)
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    for code, name in ARTERY_NAMES.items():
        where = labels == code
        if where.any():
            rgb[where] = 0.35 * rgb[where] + 0.65 * np.array(_rgb(ARTERY_COLOURS[name]), np.float32)
    rows, cols = np.nonzero(labels)
    centre = (rows.mean(), cols.mean()) if rows.size else (hu.shape[0] / 2, hu.shape[1] / 2)
    half_mm = (
        max(
            KEY_FIELD_MM,
            (np.ptp(rows) * dy if rows.size else 0) + 30.0,
            (np.ptp(cols) * dx if cols.size else 0) + 30.0,
        )
        / 2
    )
    top, bottom = int(centre[0] - half_mm / dy), int(centre[0] + half_mm / dy)
    left, right = int(centre[1] - half_mm / dx), int(centre[1] + half_mm / dx)
    padded = np.zeros((bottom - top, right - left, 3), np.float32)
    src = rgb[max(top, 0) : min(bottom, hu.shape[0]), max(left, 0) : min(right, hu.shape[1])]
    padded[max(-top, 0) : max(-top, 0) + src.shape[0], max(-left, 0) : max(-left, 0) + src.shape[1]] = src
    image = Image.fromarray(padded.clip(0, 255).astype(np.uint8), "RGB").resize(
        (size_px, size_px), Image.Resampling.LANCZOS
    )
    # Ring each lesion so that small ones are found at a glance.
    draw = ImageDraw.Draw(image)
    zoom_y, zoom_x = size_px / (bottom - top), size_px / (right - left)
    regions, _ = ndimage.label(labels > 0)
    for index, found in enumerate(ndimage.find_objects(regions), start=1):
        if found is None:
            continue
        codes = labels[found][regions[found] == index]
        code = int(majority_artery(np.bincount(codes, minlength=len(ARTERY_NAMES) + 1)))
        y0, y1 = (found[0].start - top) * zoom_y, (found[0].stop - top) * zoom_y
        x0, x1 = (found[1].start - left) * zoom_x, (found[1].stop - left) * zoom_x
        pad = 7
        draw.ellipse(
            (x0 - pad, y0 - pad, x1 + pad, y1 + pad),
            outline=_rgb(ARTERY_COLOURS[ARTERY_NAMES[code]]),
            width=2,
        )
    return image


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
    identifiers = [
        ["Study", _escape(study["name"]), "Review id", str(study["id"])],
        ["Patient ID", _escape(volume.patient_id or "-"), "kVp", _fmt(volume.kvp, "{:g}")],
        [
            "Study UID",
            _escape(volume.study_uid or "-"),
            "Slices",
            f"{volume.shape[0]} x {volume.shape[1]} x {volume.shape[2]}",
        ],
        [
            "Series UID",
            _escape(volume.series_uid or "-"),
            "Increment / thickness",
            f"{spacing[0]:g} / {_fmt(volume.slice_thickness_mm, '{:g}')} mm",
        ],
    ]
    table = Table(
        [[Paragraph(c, small) for c in row] for row in identifiers],
        colWidths=[22 * mm, 86 * mm, 32 * mm, 40 * mm],
    )
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor("#bbbbbb")),
                ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f3f3f3")),
                ("BACKGROUND", (2, 0), (2, -1), colors.HexColor("#f3f3f3")),
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
        style.add("TEXTCOLOR", (0, i), (0, i), colors.HexColor(ARTERY_COLOURS[row[0]]))
        style.add("FONTNAME", (0, i), (0, i), "Helvetica-Bold")
    scores.setStyle(style)
    story.append(scores)

    texts = interpretation(result)
    story.append(Paragraph("Category", heading))
    story.append(
        Paragraph(f"<b>Risk category {result.risk_category}</b> &mdash; {texts['risk_category']}", body)
    )
    story.append(Paragraph(f"<b>CAC-DRS {result.cac_drs}</b> &mdash; {texts['cac_drs']}", body))

    slices = key_slices(content.lesions, N_KEY_IMAGES)
    if slices:
        story.append(Paragraph("Key images", heading))
        cells, captions = [], []
        side = 56 * mm
        for z in slices:
            picture = key_image(volume.hu[z], content.mask[z], (spacing[1], spacing[2]))
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            buffer.seek(0)
            cells.append(FlowImage(buffer, width=side, height=side))
            arteries = sorted(
                {
                    row["artery"]
                    for row in content.lesions
                    if row["artery"] and row["slices"][0] <= z <= row["slices"][1]
                }
            )
            captions.append(
                Paragraph(f"Slice {z + 1} of {volume.shape[0]}: {', '.join(arteries) or '-'}", small)
            )
        story.append(Table([cells, captions], colWidths=[side + 3 * mm] * len(cells)))
        legend = " ".join(
            f'<font color="{ARTERY_COLOURS[n]}">&#9632;</font> {n}' for n in VESSELS
        )
        story.append(Paragraph(legend, small))

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
