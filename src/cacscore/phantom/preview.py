"""A montage PNG of axial slices through the calcium, reference lesions outlined in artery colours.

Distractors (not to be scored) are marked with a magenta ring and a short
name, so that a reader sees at once what a method must ignore.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cacscore import labels
from cacscore.errors import InvalidInputError
from cacscore.io.volume import CTVolume

#: Outline colour of each artery's reference calcium: the project's one table.
ARTERY_COLOURS = labels.ARTERY_COLOURS
_SHORT = {
    "aortic_valve": "AV",
    "aortic_root": "Ao root",
    "mitral_annulus": "MAC",
    "aortic_wall": "Ao wall",
    "sternal_wire": "wire",
    "stent": "stent",
    "pacemaker_lead": "lead",
    "pericardial": "pericardium",
    "lymph_node": "node",
    "costal_cartilage": "cartilage",
    "osteophyte": "osteophyte",
    "breast": "breast",
}
#: Largest ring drawn around a distractor, mm (a breast would hide the slice).
_MAX_RING_MM = 40.0


def pick_slices(
    volume: CTVolume, label: np.ndarray, distractors: Sequence[dict[str, Any]], n: int
) -> list[int]:
    """Up to ``n`` slice indices.

    Those with the most reference calcium come first, then distractors, then slices evenly spread.
    """
    per_slice = (label > 0).sum(axis=(1, 2))
    chosen = [int(i) for i in np.argsort(-per_slice, kind="stable") if per_slice[i] > 0][: max(1, n * 2 // 3)]
    for d in distractors:
        z = float(volume.patient_to_index(np.array(d["position_mm"]))[0, 0])
        k = round(z)
        if 0 <= k < volume.shape[0] and k not in chosen and len(chosen) < n - 2:
            chosen.append(k)
    spread = np.linspace(volume.shape[0] * 0.15, volume.shape[0] * 0.85, n).round().astype(int)
    for k in spread:
        if len(chosen) >= n:
            break
        if int(k) not in chosen:
            chosen.append(int(k))
    return sorted(chosen[:n])


def render_preview(
    volume: CTVolume,
    label: np.ndarray,
    path: str | Path,
    *,
    distractors: Sequence[dict[str, Any]] = (),
    title: str = "",
    n_slices: int = 9,
    window: tuple[float, float] = (40.0, 400.0),
    dpi: int = 72,
) -> Path:
    """Write a PNG montage of ``n_slices`` axial slices with the reference outlined.

    Parameters
    ----------
    volume : CTVolume
        The image (HU).
    label : (Z, Y, X) ndarray of int
        Reference mask in project codes, same grid as ``volume``.
    path : str or Path
        PNG to write (its folder is created).
    distractors : sequence of dict
        Distractor entries of ``truth.json`` (``type`` and ``position_mm``), marked where they lie.
    title : str
        Figure title.
    n_slices : int
        Number of slices in the montage (3 columns).
    window : (level, width)
        Display window, HU (default soft tissue 40 / 400, calcium and bone show white).
    dpi : int
        Resolution; each slice is drawn 4 inches wide.

    Returns
    -------
    Path
        The PNG written.

    Raises
    ------
    InvalidInputError
        If ``label`` does not match the volume's shape or ``n_slices`` < 1.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if label.shape != volume.shape:
        raise InvalidInputError(f"label shape {label.shape} does not match volume shape {volume.shape}")
    if n_slices < 1:
        raise InvalidInputError(f"n_slices must be >= 1, got {n_slices}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    slices = pick_slices(volume, label, distractors, n_slices)
    cols = 3
    rows = int(np.ceil(len(slices) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 4, rows * 4 + (0.4 if title else 0)), squeeze=False)
    level, width = window
    dz, dy, dx = volume.spacing
    for ax in axes.ravel():
        ax.axis("off")
    for ax, k in zip(axes.ravel(), slices, strict=False):
        ax.imshow(
            volume.hu[k],
            cmap="gray",
            vmin=level - width / 2,
            vmax=level + width / 2,
            interpolation="bilinear",
            aspect=dy / dx,
        )
        for code, colour in ARTERY_COLOURS.items():
            m = label[k] == code
            if m.any():
                ax.contour(m.astype(float), levels=[0.5], colors=[colour], linewidths=1.2)
        for d in distractors:
            zyx = volume.patient_to_index(np.array(d["position_mm"]))[0]
            size_px = min(max(float(d.get("size_mm", 4.0)), 4.0), _MAX_RING_MM) / dx
            if abs(zyx[0] - k) * dz <= max(dz, float(d.get("size_mm", 4.0)) / 2):
                ax.add_patch(
                    plt.Circle(
                        (zyx[2], zyx[1]),
                        size_px * 0.8,
                        fill=False,
                        color="#ff2dff",
                        linewidth=1.0,
                        linestyle="--",
                    )
                )
                ax.text(
                    zyx[2] + size_px,
                    zyx[1] - size_px,
                    _SHORT.get(d["type"], d["type"]),
                    color="#ff2dff",
                    fontsize=7,
                )
        z_mm = volume.index_to_patient(np.array([k, 0, 0]))[0, 2]
        ax.set_title(f"slice {k}  z={z_mm:.1f} mm", fontsize=8)
        # Rings and names beyond the image must not shrink it.
        ax.set_xlim(-0.5, volume.shape[2] - 0.5)
        ax.set_ylim(volume.shape[1] - 0.5, -0.5)
    handles = [
        plt.Line2D([], [], color=c, label=labels.ARTERY_NAMES[code])
        for code, c in ARTERY_COLOURS.items()
        if code != labels.UNSPECIFIED
    ]
    if distractors:
        handles.append(plt.Line2D([], [], color="#ff2dff", linestyle="--", label="distractor (not scored)"))
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=dpi, facecolor="black" if False else "white")
    plt.close(fig)
    return path


def render_strip(
    volume: CTVolume,
    label: np.ndarray,
    path: str | Path,
    *,
    centres_mm: Sequence[Sequence[float]],
    distractors: Sequence[dict[str, Any]] = (),
    title: str = "",
    crop_mm: float = 140.0,
    window: tuple[float, float] = (40.0, 400.0),
    dpi: int = 60,
    coronal: bool = False,
) -> Path:
    """Write a small PNG: up to 3 axial crops of ``crop_mm`` around ``centres_mm`` (LPS), reference outlined.

    ``coronal`` shows coronal reformats through the centres instead (the whole z range), where
    slice thickness and stair-step artefacts show.

    For the documentation of single variations and distractor kinds (``docs/phantom.md``); the
    rings of :func:`render_preview` mark ``distractors``.

    Raises
    ------
    InvalidInputError
        If ``label`` does not match the volume's shape or no centre is given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if label.shape != volume.shape:
        raise InvalidInputError(f"label shape {label.shape} does not match volume shape {volume.shape}")
    if not centres_mm:
        raise InvalidInputError("render_strip needs at least one centre")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _, dy, dx = volume.spacing
    half_y, half_x = round(crop_mm / 2 / dy), round(crop_mm / 2 / dx)
    centres = [volume.patient_to_index(np.asarray(c, dtype=float))[0] for c in list(centres_mm)[:3]]
    fig, axes = plt.subplots(
        1, len(centres), figsize=(2.6 * len(centres), 2.9 if title else 2.6), squeeze=False
    )
    level, width = window
    for ax, (cz, cy, cx) in zip(axes.ravel(), centres, strict=True):
        if coronal:
            row = int(np.clip(round(cy), 0, volume.shape[1] - 1))
            x0 = int(np.clip(round(cx) - half_x, 0, max(volume.shape[2] - 2 * half_x, 0)))
            xs = slice(x0, x0 + 2 * half_x)
            ax.imshow(
                volume.hu[::-1, row, xs],
                cmap="gray",
                vmin=level - width / 2,
                vmax=level + width / 2,
                interpolation="nearest",
                aspect=volume.spacing[0] / dx,
            )
            m = label[::-1, row, xs] > 0
            if m.any():
                ax.contour(m.astype(float), levels=[0.5], colors=["#ff3b30"], linewidths=0.8)
            ax.axis("off")
            continue
        k = int(np.clip(round(cz), 0, volume.shape[0] - 1))
        y0 = int(np.clip(round(cy) - half_y, 0, max(volume.shape[1] - 2 * half_y, 0)))
        x0 = int(np.clip(round(cx) - half_x, 0, max(volume.shape[2] - 2 * half_x, 0)))
        ys, xs = slice(y0, y0 + 2 * half_y), slice(x0, x0 + 2 * half_x)
        ax.imshow(
            volume.hu[k, ys, xs],
            cmap="gray",
            vmin=level - width / 2,
            vmax=level + width / 2,
            interpolation="bilinear",
        )
        for code, colour in ARTERY_COLOURS.items():
            m = label[k, ys, xs] == code
            if m.any():
                ax.contour(m.astype(float), levels=[0.5], colors=[colour], linewidths=0.8)
        for d in distractors:
            zyx = volume.patient_to_index(np.array(d["position_mm"]))[0]
            size_px = min(max(float(d.get("size_mm", 4.0)), 4.0), _MAX_RING_MM) / dx
            if abs(zyx[0] - k) <= 1.0:
                ax.add_patch(
                    plt.Circle(
                        (zyx[2] - x0, zyx[1] - y0),
                        size_px * 0.8,
                        fill=False,
                        color="#ff2dff",
                        linewidth=0.8,
                        linestyle="--",
                    )
                )
        ax.set_xlim(-0.5, 2 * half_x - 0.5)
        ax.set_ylim(2 * half_y - 0.5, -0.5)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=dpi, facecolor="white")
    plt.close(fig)
    return path
