"""Files written next to a model-based score: the predicted label mask and a montage PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cacscore.io.volume import CTVolume

#: Files :func:`write_model_products` writes.
MODEL_PRODUCTS = ["prediction.nii.gz", "montage.png"]


def write_model_products(out: Path, volume: CTVolume, labels: np.ndarray, *, title: str = "") -> list[Path]:
    """Write ``prediction.nii.gz`` (project label codes on the volume's grid) and ``montage.png``.

    The montage shows the slices with the most predicted calcium, each lesion
    outlined in its artery's colour (LM yellow, LAD red, LCX green, RCA blue).

    Returns
    -------
    list of Path
        The files written.
    """
    from cacscore.io import write_mask
    from cacscore.phantom.preview import render_preview

    mask_path = write_mask(labels, volume, out / "prediction.nii.gz")
    png = render_preview(volume, labels, out / "montage.png", title=title)
    return [Path(mask_path), Path(png)]
