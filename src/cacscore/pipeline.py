"""The model-based score path.

It is shared by ``cacscore score``, ``cacscore batch``, the DICOM node and the review app.

Reading, the input-domain check and scoring with an already loaded ensemble
live here, below the command line, so that a batch worker runs exactly what
``cacscore score`` runs, with the ensemble loaded once per worker.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from cacscore.anatomy import DomainCheck
    from cacscore.io.volume import CTVolume
    from cacscore.model.ensemble import Ensemble
    from cacscore.scoring.results import ScoreResult


def read_and_check(
    input_path: Path,
    *,
    series: str | None = None,
    skip_unreadable: bool = False,
    skip_domain_check: bool = False,
) -> tuple[CTVolume, DomainCheck]:
    """Read a volume and run the input-domain check, without the model.

    The check is :func:`cacscore.anatomy.check_domain`.

    Cheap (no torch import): a missing file or a refused scan answers at once.

    Raises
    ------
    VolumeReadError
        If the volume cannot be read.
    NoHeartError, ContrastEnhancedError
        If the scan is outside the domain and ``skip_domain_check`` is false.
    """
    from cacscore.io import read_volume

    volume = read_volume(input_path, series_uid=series, skip_unreadable=skip_unreadable)
    check = check_volume(volume, skip_domain_check=skip_domain_check)
    check.require(str(input_path))
    return volume, check


def check_volume(volume: CTVolume, *, skip_domain_check: bool = False) -> DomainCheck:
    """The input-domain check of a volume already read.

    With ``skip_domain_check`` a refusal becomes a warning.

    Never raises for a refused scan (call :meth:`~cacscore.anatomy.DomainCheck.require`): the review app
    shows the refusal instead of an error.
    """
    from cacscore.anatomy import check_domain

    check = check_domain(volume)
    return check.skip() if skip_domain_check else check


def score_checked(
    volume: CTVolume,
    check: DomainCheck,
    ensemble: Ensemble,
    **score_options: Any,
) -> tuple[ScoreResult, dict[str, Any], np.ndarray]:
    """Score a read and checked volume with a loaded ensemble.

    This is the branch of ``cacscore score`` without a mask.

    Parameters
    ----------
    volume, check
        The result of :func:`read_and_check`.
    ensemble : Ensemble
        The model (:func:`cacscore.model.load_ensemble`).
    **score_options
        Passed to :func:`cacscore.scoring.score_volume` (kVp thresholds, area rule...).

    Returns
    -------
    result : ScoreResult
        Lesions carry the ensemble's ``confidence``; ``warnings`` hold the domain check's first.
    extra : dict
        ``{"model": {"name", "version", "members", "head", "path"}, "domain": {...}}``.
    labels : (Z, Y, X) ndarray of uint8
        The predicted label mask on the volume's grid (heart region applied).
    """
    from cacscore.model.ensemble import score_with_model

    prediction = ensemble.predict(volume, region=check.region)
    result = score_with_model(volume, ensemble, prediction=prediction, **score_options)
    result = replace(result, warnings=[*check.warnings, *result.warnings])
    return result, {"model": ensemble.info(), "domain": check.to_dict()}, prediction.labels


def labels_or_refusal(volume: CTVolume, ensemble: Ensemble) -> tuple[np.ndarray, str | None]:
    """The label mask ``cacscore score`` reports for ``volume``, or an empty mask and why it was refused.

    For evaluations that judge the tool as a user runs it: a scan the domain check refuses scores
    nothing (category A), and the refusal is returned for the tally.

    Returns
    -------
    labels : (Z, Y, X) ndarray of uint8
    refusal : str or None
    """
    import numpy as np

    check = check_volume(volume)
    if check.refusal is not None:
        return np.zeros(volume.shape, dtype=np.uint8), check.refusal
    return score_checked(volume, check, ensemble)[2], None
