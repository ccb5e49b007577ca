"""Key images of a calcium score: one zoomed crop per lesion, one overview slice per artery.

A reader checks an automatic score by looking at each counted lesion. Each
lesion therefore gets a crop of :data:`CROP_MM` x :data:`CROP_MM` mm around it
on the slice where it is largest, with its number (the ``id`` of
``lesions.csv`` and ``score.json``), its artery colour, its Agatston score and
a scale bar. Above them, one overview slice per artery shows where its calcium
lies, with the patient-direction letters (L/R/A/P) taken from the volume's
direction cosines. Only slices with calcium are drawn. With a reference (the
demo's phantom truth), each artery's overview is drawn twice, model beside
reference, and the crops outline the reference calcium dashed.

The same PNG is written as ``montage.png`` and embedded in the PDF report.
Colours come from :data:`cacscore.labels.ARTERY_COLOURS`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cacscore import labels as label_codes
from cacscore.errors import InvalidInputError
from cacscore.io.atomic import write_bytes_atomic
from cacscore.io.volume import CTVolume

#: Outline colour of each label code: the project's one table.
ARTERY_COLOURS: dict[int, str] = label_codes.ARTERY_COLOURS
#: Side of the square crop around each lesion, mm.
CROP_MM = 40.0
#: Side of the square overview around the calcium of all arteries, mm.
OVERVIEW_MM = 150.0
#: Print resolution of the PNG, dots per inch.
KEY_IMAGE_DPI = 150
#: Display window (level, width), HU: calcium scoring's 200 / 800, so that dense calcium keeps its texture.
WINDOW_HU = (200.0, 800.0)
#: Most lesion crops drawn (largest Agatston first); the rest are only in lesions.csv.
MAX_CROPS = 24
#: Crops per row of the montage; an overview spans two of them.
_COLUMNS = 4
#: Patient direction letter of each LPS axis, for the positive and the negative direction.
_LPS_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))
_REFERENCE_STYLE = {"colors": "white", "linestyles": "--", "linewidths": 1.0}


class LesionLike(Protocol):
    """What a key image needs of a lesion (:class:`cacscore.scoring.Lesion` has it)."""

    @property
    def id(self) -> int: ...
    @property
    def label(self) -> int: ...
    @property
    def artery(self) -> str: ...
    @property
    def agatston(self) -> float: ...
    @property
    def centroid_zyx(self) -> tuple[float, float, float]: ...
    @property
    def slices(self) -> tuple[int, int]: ...


def orientation_labels(direction: np.ndarray) -> dict[str, str]:
    """Patient-direction letters at the edges of an axial slice drawn with rows down, columns right.

    Parameters
    ----------
    direction : (3, 3) ndarray of float
        :attr:`cacscore.io.CTVolume.direction` (ITK convention: column 0 is the
        LPS direction of the image columns, column 1 that of the rows).

    Returns
    -------
    dict of str to str
        ``left``, ``right``, ``top`` and ``bottom`` -> a letter (L, R, A, P, S, I),
        the dominant patient direction each edge points to.

    Examples
    --------
    >>> orientation_labels(np.eye(3))
    {'left': 'R', 'right': 'L', 'top': 'A', 'bottom': 'P'}
    >>> orientation_labels(np.diag([-1.0, -1.0, 1.0]))["left"]
    'L'
    """
    direction = np.asarray(direction, dtype=float)

    def letter(vector: np.ndarray) -> str:
        axis = int(np.argmax(np.abs(vector)))
        return _LPS_LETTERS[axis][0 if vector[axis] > 0 else 1]

    columns, rows = direction[:, 0], direction[:, 1]
    return {"left": letter(-columns), "right": letter(columns), "top": letter(-rows), "bottom": letter(rows)}


def key_slice(labels: np.ndarray, lesion: LesionLike, spacing_yx: tuple[float, float]) -> int:
    """Slice of ``lesion`` with the most labelled voxels within 5 mm of its centroid (ties: nearest).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> mask = np.zeros((3, 5, 5), np.uint8); mask[1, 2, 2] = 3; mask[2, 1:4, 1:4] = 3
    >>> key_slice(mask, SimpleNamespace(slices=(1, 2), centroid_zyx=(1.9, 2.0, 2.0)), (1.0, 1.0))
    2
    """
    z0, z1 = lesion.slices
    cz, cy, cx = lesion.centroid_zyx
    ry, rx = (max(1, math.ceil(5.0 / step)) for step in spacing_yx)
    y, x = round(cy), round(cx)
    window = labels[z0 : z1 + 1, max(y - ry, 0) : y + ry + 1, max(x - rx, 0) : x + rx + 1]
    counts = (window > 0).sum(axis=(1, 2))
    candidates = np.flatnonzero(counts == counts.max()) + z0
    return int(candidates[np.argmin(np.abs(candidates - cz))])


def _box(
    center_yx: tuple[float, float], side_mm: float, spacing_yx: tuple[float, float], shape_yx: tuple[int, int]
) -> tuple[slice, slice]:
    """A square of ``side_mm`` around a point, shifted (not shrunk) to stay inside the slice."""
    box = []
    for center, step, size in zip(center_yx, spacing_yx, shape_yx, strict=True):
        length = min(size, max(1, round(side_mm / step)))
        start = int(np.clip(round(center - length / 2), 0, size - length))
        box.append(slice(start, start + length))
    return box[0], box[1]


def _outline(ax: Any, mask: np.ndarray, spacing_yx: tuple[float, float], **style: Any) -> None:
    if mask.any() and min(mask.shape) > 1:
        ys = (np.arange(mask.shape[0]) + 0.5) * spacing_yx[0]
        xs = (np.arange(mask.shape[1]) + 0.5) * spacing_yx[1]
        ax.contour(xs, ys, mask.astype(float), levels=[0.5], **style)


def _stroke() -> list[Any]:
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=2.5, foreground="black")]


def _draw(
    ax: Any,
    volume: CTVolume,
    labels: np.ndarray,
    z: int,
    box: tuple[slice, slice],
    *,
    numbered: Sequence[LesionLike],
    scale_mm: float,
    reference: np.ndarray | None = None,
    orientation: dict[str, str] | None = None,
) -> None:
    """One slice crop in mm coordinates: image, artery outlines, lesion numbers, scale bar, letters."""
    spacing_yx = (float(volume.spacing[1]), float(volume.spacing[2]))
    level, width = WINDOW_HU
    image = volume.hu[z][box]
    height_mm, width_mm = image.shape[0] * spacing_yx[0], image.shape[1] * spacing_yx[1]
    ax.imshow(
        image,
        cmap="gray",
        vmin=level - width / 2,
        vmax=level + width / 2,
        extent=(0, width_mm, height_mm, 0),
        interpolation="nearest",
    )
    crop = labels[z][box]
    for code, colour in ARTERY_COLOURS.items():
        _outline(ax, crop == code, spacing_yx, colors=[colour], linewidths=1.6)
    if reference is not None:
        _outline(ax, reference[z][box] > 0, spacing_yx, **_REFERENCE_STYLE)
    for lesion in numbered:
        y_mm = (lesion.centroid_zyx[1] - box[0].start) * spacing_yx[0]
        x_mm = (lesion.centroid_zyx[2] - box[1].start) * spacing_yx[1]
        if 0 <= y_mm <= height_mm and 0 <= x_mm <= width_mm:
            ax.text(
                x_mm + 0.06 * width_mm,
                y_mm - 0.06 * height_mm,
                str(lesion.id),
                fontsize=9,
                fontweight="bold",
                color=ARTERY_COLOURS.get(lesion.label, "white"),
                path_effects=_stroke(),
            )
    margin = 0.06 * width_mm
    bar_y = height_mm - margin
    ax.plot([margin, margin + scale_mm], [bar_y, bar_y], color="white", linewidth=3, solid_capstyle="butt")
    ax.text(
        margin + scale_mm / 2,
        bar_y - 0.03 * height_mm,
        f"{scale_mm:g} mm",
        color="white",
        fontsize=7,
        ha="center",
        va="bottom",
        path_effects=_stroke(),
    )
    if orientation is not None:
        places = {
            "left": (0.02, 0.5, "left", "center"),
            "right": (0.98, 0.5, "right", "center"),
            "top": (0.5, 0.98, "center", "top"),
            "bottom": (0.5, 0.02, "center", "bottom"),
        }
        for edge, (u, v, ha, va) in places.items():
            ax.text(
                u,
                v,
                orientation[edge],
                transform=ax.transAxes,
                color="#ffe066",
                fontsize=10,
                fontweight="bold",
                ha=ha,
                va=va,
                path_effects=_stroke(),
            )
    ax.set_xlim(0, width_mm)
    ax.set_ylim(height_mm, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)


def _overview(
    ax: Any,
    volume: CTVolume,
    labels: np.ndarray,
    lesions: Sequence[LesionLike],
    artery: str,
    center_yx: tuple[float, float],
    heading: str,
    reference: np.ndarray | None = None,
) -> None:
    """The slice of the artery's highest-scoring lesion, all calcium outlined, its lesions numbered."""
    spacing_yx = (float(volume.spacing[1]), float(volume.spacing[2]))
    own = [lesion for lesion in lesions if lesion.artery == artery]
    if not own:
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            f"{heading}\nno {artery} calcium",
            ha="center",
            va="center",
            fontsize=9,
            transform=ax.transAxes,
        )
        return
    top = max(own, key=lambda lesion: lesion.agatston)
    z = key_slice(labels, top, spacing_yx)
    box = _box(center_yx, OVERVIEW_MM, spacing_yx, volume.shape[1:])
    on_slice = [lesion for lesion in lesions if lesion.slices[0] <= z <= lesion.slices[1]]
    _draw(
        ax,
        volume,
        labels,
        z,
        box,
        numbered=on_slice,
        scale_mm=20.0,
        reference=reference,
        orientation=orientation_labels(volume.direction),
    )
    total = sum(lesion.agatston for lesion in own)
    ax.set_title(
        f"{heading}{artery}: Agatston {total:.1f}, {len(own)} lesion{'s' * (len(own) != 1)}"
        f" - slice {z + 1}/{volume.shape[0]}",
        fontsize=8.5,
        color=ARTERY_COLOURS.get(top.label, "black"),
        fontweight="bold",
    )


def key_images_figure(
    volume: CTVolume,
    labels: np.ndarray,
    lesions: Sequence[LesionLike],
    *,
    reference_labels: np.ndarray | None = None,
    reference_lesions: Sequence[LesionLike] = (),
    title: str = "",
    max_crops: int = MAX_CROPS,
) -> Any:
    """The key-image figure (matplotlib, Agg); see :func:`write_key_images`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    labels = np.asarray(labels)
    if labels.shape != volume.shape:
        raise InvalidInputError(f"label mask shape {labels.shape} does not match volume shape {volume.shape}")
    if reference_labels is not None and np.shape(reference_labels) != volume.shape:
        raise InvalidInputError(
            f"reference mask shape {np.shape(reference_labels)} does not match volume shape {volume.shape}"
        )
    with_reference = reference_labels is not None
    order = [
        name
        for name in (label_codes.ARTERY_NAMES[c] for c in label_codes.MAJORITY_ORDER)
        if any(lesion.artery == name for lesion in [*lesions, *reference_lesions])
    ]
    everything = [*lesions, *reference_lesions]
    center_yx = (
        (
            float(np.mean([les.centroid_zyx[1] for les in everything])),
            float(np.mean([les.centroid_zyx[2] for les in everything])),
        )
        if everything
        else (volume.shape[1] / 2, volume.shape[2] / 2)
    )
    crops = sorted(lesions, key=lambda lesion: -lesion.agatston)[:max_crops]
    overview_rows = len(order) if with_reference else math.ceil(len(order) / 2)
    crop_rows = math.ceil(len(crops) / _COLUMNS)
    if not order:
        fig = plt.figure(figsize=(8.0, 1.6))
        fig.text(
            0.5,
            0.55,
            "No coronary calcium counted (Agatston 0): no key images.",
            ha="center",
            va="center",
            fontsize=11,
        )
        if title:
            fig.suptitle(title, fontsize=10)
        return fig
    heights = [2.0] * overview_rows + [1.1] * crop_rows
    fig = plt.figure(figsize=(8.0, 4.1 * overview_rows + 2.4 * crop_rows + 0.9))
    grid = fig.add_gridspec(
        len(heights),
        _COLUMNS,
        height_ratios=heights,
        hspace=0.28,
        wspace=0.06,
        top=1 - 0.55 / fig.get_figheight(),
        bottom=0.45 / fig.get_figheight(),
        left=0.02,
        right=0.98,
    )
    for i, artery in enumerate(order):
        if with_reference:
            _overview(fig.add_subplot(grid[i, 0:2]), volume, labels, lesions, artery, center_yx, "model: ")
            _overview(
                fig.add_subplot(grid[i, 2:4]),
                volume,
                np.asarray(reference_labels),
                reference_lesions,
                artery,
                center_yx,
                "reference: ",
            )
        else:
            cell = grid[i // 2, 2 * (i % 2) : 2 * (i % 2) + 2]
            _overview(fig.add_subplot(cell), volume, labels, lesions, artery, center_yx, "")
    spacing_yx = (float(volume.spacing[1]), float(volume.spacing[2]))
    for k, lesion in enumerate(crops):
        ax = fig.add_subplot(grid[overview_rows + k // _COLUMNS, k % _COLUMNS])
        z = key_slice(labels, lesion, spacing_yx)
        box = _box((lesion.centroid_zyx[1], lesion.centroid_zyx[2]), CROP_MM, spacing_yx, volume.shape[1:])
        _draw(ax, volume, labels, z, box, numbered=[lesion], scale_mm=10.0, reference=reference_labels)
        ax.set_title(
            f"#{lesion.id} {lesion.artery}\nAgatston {lesion.agatston:.1f}, slice {z + 1}",
            fontsize=8,
            color=ARTERY_COLOURS.get(lesion.label, "black"),
            fontweight="bold",
        )
    handles = [
        Line2D([], [], color=ARTERY_COLOURS[label_codes.ARTERY_CODES[name]], linewidth=2, label=name)
        for name in order
    ]
    if with_reference:
        handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1, label="reference calcium"))
    note = (
        f"; {len(lesions) - len(crops)} smaller lesions only in lesions.csv"
        if len(lesions) > len(crops)
        else ""
    )
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        title=f"numbers: lesion id in lesions.csv; crops {CROP_MM:g} x {CROP_MM:g} mm{note}",
        title_fontsize=7.5,
    )
    if title:
        fig.suptitle(title, fontsize=10, fontweight="bold")
    return fig


def key_images_png(
    volume: CTVolume,
    labels: np.ndarray,
    lesions: Sequence[LesionLike],
    *,
    reference_labels: np.ndarray | None = None,
    reference_lesions: Sequence[LesionLike] = (),
    title: str = "",
    dpi: int = KEY_IMAGE_DPI,
    max_crops: int = MAX_CROPS,
) -> bytes:
    """The key images as PNG bytes (what :func:`write_key_images` writes; the PDF embeds them)."""
    import matplotlib.pyplot as plt

    fig = key_images_figure(
        volume,
        labels,
        lesions,
        reference_labels=reference_labels,
        reference_lesions=reference_lesions,
        title=title,
        max_crops=max_crops,
    )
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def write_key_images(
    path: str | Path,
    volume: CTVolume,
    labels: np.ndarray,
    lesions: Sequence[LesionLike],
    *,
    reference_labels: np.ndarray | None = None,
    reference_lesions: Sequence[LesionLike] = (),
    title: str = "",
    dpi: int = KEY_IMAGE_DPI,
) -> Path:
    """Write the key images of a score as one PNG.

    Parameters
    ----------
    path : str or Path
        PNG to write (its folder is created; written to a temporary file first, then renamed).
    volume : CTVolume
        The image, HU.
    labels : (Z, Y, X) ndarray of int
        Label mask in project codes on the volume's grid (the model's prediction).
    lesions : sequence of Lesion
        The 3-D lesions of its score (:attr:`cacscore.scoring.ScoreResult.lesions`); their ``id``
        is the number drawn.
    reference_labels : (Z, Y, X) ndarray of int, optional
        A reference mask: each artery's overview is drawn for the model and the reference side by
        side, and the crops outline the reference dashed.
    reference_lesions : sequence of Lesion
        The lesions of the reference's score.
    title : str
        Figure title.
    dpi : int
        Resolution (default print resolution, 150 dpi).

    Returns
    -------
    Path
        The PNG written.

    Raises
    ------
    InvalidInputError
        If a mask does not match the volume's shape.
    """
    path = Path(path)
    data = key_images_png(
        volume,
        labels,
        lesions,
        reference_labels=reference_labels,
        reference_lesions=reference_lesions,
        title=title,
        dpi=dpi,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, data)  # readable by others (open()'s mode), as every other output
