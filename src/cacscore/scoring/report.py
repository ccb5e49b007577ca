"""The ``cacscore.score/1`` report: one JSON-ready dict per scored volume, and its lesion table.

Built here, not in the command line, so that the ``score`` command (mask or
model), the web app and batch jobs emit the same document. Every field is
described in ``docs/scoring.md``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cacscore.errors import InvalidInputError
from cacscore.scoring.results import ScoreResult

if TYPE_CHECKING:
    from cacscore.io.volume import CTVolume

#: Value of the report's ``schema`` key; bump the number on any incompatible change.
SCORE_SCHEMA = "cacscore.score/1"

#: Columns of :func:`lesions_csv`, in order.
LESION_COLUMNS: tuple[str, ...] = (
    "id",
    "artery",
    "label",
    "agatston",
    "volume_mm3",
    "mass_mg",
    "peak_hu",
    "centroid_x_mm",
    "centroid_y_mm",
    "centroid_z_mm",
    "centroid_z",
    "centroid_y",
    "centroid_x",
    "first_slice",
    "last_slice",
    "n_voxels",
    "confidence",
    "filter_probability",
)


def score_report(
    volume: CTVolume,
    result: ScoreResult,
    input_path: str | Path | None = None,
    *,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the ``cacscore.score/1`` report of a scored volume.

    Parameters
    ----------
    volume : CTVolume
        The volume that was scored (for the ``input`` block and its read warnings).
    result : ScoreResult
        Its scores.
    input_path : str or Path, optional
        Path shown as ``input.path``; defaults to ``volume.source``.
    extra : mapping, optional
        Additional top-level keys (e.g. ``"mask"`` or ``"model"`` blocks).

    Returns
    -------
    dict
        JSON-ready; ``warnings`` holds the volume's warnings, then the scoring
        warnings, without repeats.

    Raises
    ------
    InvalidInputError
        If ``extra`` would replace one of the schema's own keys.
    """
    path = input_path if input_path is not None else volume.source
    report: dict[str, Any] = {
        "schema": SCORE_SCHEMA,
        "input": {
            "path": None if path is None else str(path),
            "shape_zyx": list(volume.shape),
            "spacing_zyx_mm": list(volume.spacing),
            "slice_thickness_mm": volume.slice_thickness_mm,
            "kvp": volume.kvp,
            "study_uid": volume.study_uid,
            "series_uid": volume.series_uid,
        },
    }
    body = result.to_dict()
    body["warnings"] = list(dict.fromkeys([*volume.warnings, *result.warnings]))
    report.update(body)
    for key, value in (extra or {}).items():
        if key in report:
            raise InvalidInputError(f"extra report key {key!r} would replace a {SCORE_SCHEMA} field")
        report[key] = value
    return report


def lesions_csv(result: ScoreResult | Mapping[str, Any]) -> str:
    """CSV text of the lesions (one row per lesion, columns :data:`LESION_COLUMNS`).

    Parameters
    ----------
    result : ScoreResult or mapping
        A result, or a report / ``to_dict()`` mapping with a ``lesions`` list.

    Returns
    -------
    str
        Header row plus one row per lesion; an empty ``confidence`` or ``filter_probability`` means none.
    """
    scores = result if isinstance(result, ScoreResult) else ScoreResult.from_dict(result)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LESION_COLUMNS)
    for lesion in scores.lesions:
        writer.writerow(
            [
                lesion.id,
                lesion.artery,
                lesion.label,
                repr(lesion.agatston),
                repr(lesion.volume_mm3),
                repr(lesion.mass_mg),
                repr(lesion.peak_hu),
                *(repr(v) for v in lesion.centroid_mm),
                *(repr(v) for v in lesion.centroid_zyx),
                lesion.slices[0],
                lesion.slices[1],
                lesion.n_voxels,
                "" if lesion.confidence is None else repr(lesion.confidence),
                "" if lesion.filter_probability is None else repr(lesion.filter_probability),
            ]
        )
    return buffer.getvalue()
