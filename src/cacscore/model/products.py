"""Files written next to a model-based score: the predicted label mask and the key images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cacscore.io.volume import CTVolume
from cacscore.scoring.results import Lesion, ScoreResult

#: Files :func:`write_model_products` writes.
MODEL_PRODUCTS = ["prediction.nii.gz", "montage.png"]


def write_model_products(
    out: Path,
    volume: CTVolume,
    labels: np.ndarray,
    *,
    title: str = "",
    result: ScoreResult | None = None,
    reference_labels: np.ndarray | None = None,
    reference_lesions: Sequence[Lesion] = (),
) -> list[Path]:
    """Write ``prediction.nii.gz`` (project label codes on the volume's grid) and ``montage.png``.

    The montage holds the key images of :mod:`cacscore.render.key_images`: one
    overview slice per artery with calcium and one 40 mm crop per lesion,
    numbered as in ``lesions.csv``, outlined in the artery colours of
    :data:`cacscore.labels.ARTERY_COLOURS`.

    Parameters
    ----------
    out : Path
        Output folder.
    volume : CTVolume
        The scored image.
    labels : (Z, Y, X) ndarray of uint8
        The model's label mask.
    title : str
        Title of the montage.
    result : ScoreResult, optional
        The score of ``labels`` (its lesions are numbered); scored here when not given.
    reference_labels, reference_lesions
        A reference to draw beside the model (the demo's phantom truth).

    Returns
    -------
    list of Path
        The files written.
    """
    from cacscore.io import write_mask
    from cacscore.render import write_key_images
    from cacscore.scoring import score_volume

    if result is None:
        result = score_volume(volume, labels)
    mask_path = write_mask(labels, volume, out / "prediction.nii.gz")
    png = write_key_images(
        out / "montage.png",
        volume,
        labels,
        result.lesions,
        title=title,
        reference_labels=reference_labels,
        reference_lesions=reference_lesions,
    )
    return [Path(mask_path), Path(png)]
