"""Calcium that is not coronary counted as coronary: aortic valve, mitral annulus, aortic root.

A phantom's ``truth.json`` lists its distractors (calcified structures a
method must not count) as ellipsoids in patient mm. A case *counts* a kind of
distractor when predicted calcium that is not reference calcium lies inside
one of them, with a :data:`MARGIN_MM` margin. Reference voxels are left out
because the mitral annulus runs beside the LCX and root plaques sit at the
coronary ostia: a correctly found coronary lesion within the margin is not a
distractor counted. The percentage of cases with valve or annulus calcium
counted is a quality target (<= 2 %) and a term of member selection's
objective (:mod:`cacscore.model.selection`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

#: Distractor kinds of the valve/annulus figure (target <= 2 % of cases).
VALVE_KINDS: tuple[str, ...] = ("mitral_annulus", "aortic_valve")
#: Distractor kinds of the aortic root figure (no target: reported beside it).
ROOT_KINDS: tuple[str, ...] = ("aortic_root",)
#: Margin around each distractor ellipsoid, mm (the blur of a 0.4-0.5 mm pixel series reaches about this far).
MARGIN_MM = 1.5


class IndexToPatient(Protocol):
    """Anything that maps voxel indices ``(N, 3)`` (z, y, x) to patient LPS mm (x, y, z), as CTVolume does."""

    def index_to_patient(self, zyx: np.ndarray) -> np.ndarray: ...


def distractor_hit(
    volume: IndexToPatient,
    labels: np.ndarray,
    reference: np.ndarray,
    distractors: Sequence[dict[str, Any]],
    kinds: Sequence[str],
) -> bool:
    """Whether predicted calcium that is not reference calcium lies inside a distractor of one of ``kinds``.

    Parameters
    ----------
    volume : CTVolume
        Gives patient coordinates of the voxels (``index_to_patient``).
    labels : (Z, Y, X) ndarray of int
        Predicted label mask (non-zero: calcium counted as coronary).
    reference : (Z, Y, X) ndarray of int
        Reference label mask.
    distractors : sequence of dict
        ``truth.json`` entries: ``type`` and either ``parts`` (each ``center_mm``, ``axes``
        (3 x 3, rows the ellipsoid's axes in LPS) and ``radii_mm``) or ``position_mm`` and
        ``size_mm`` (a sphere of that diameter).
    kinds : sequence of str
        Distractor types that count.

    Returns
    -------
    bool

    Examples
    --------
    >>> from cacscore.io import CTVolume
    >>> volume = CTVolume(hu=np.zeros((1, 1, 10), np.int16), spacing=(1.0, 1.0, 1.0))
    >>> labels = np.zeros((1, 1, 10), np.uint8); labels[0, 0, 6] = 1
    >>> valve = {"type": "aortic_valve", "position_mm": [3.0, 0.0, 0.0], "size_mm": 4.0}
    >>> distractor_hit(volume, labels, np.zeros_like(labels), [valve], VALVE_KINDS)  # 3 mm < 2 + 1.5 mm
    True
    >>> distractor_hit(volume, labels, labels, [valve], VALVE_KINDS)  # reference calcium: not counted
    False
    """
    zyx = np.argwhere((labels > 0) & (reference == 0))
    if zyx.size == 0:
        return False
    xyz = volume.index_to_patient(zyx)
    for d in distractors:
        if d["type"] not in kinds:
            continue
        sphere = {
            "center_mm": d.get("position_mm"),
            "axes": np.eye(3).tolist(),
            "radii_mm": [float(d.get("size_mm", 0.0)) / 2] * 3,
        }
        for part in d.get("parts") or [sphere]:
            local = (xyz - np.asarray(part["center_mm"], dtype=float)) @ np.asarray(
                part["axes"], dtype=float
            ).T
            scaled = local / (np.asarray(part["radii_mm"], dtype=float) + MARGIN_MM)
            if np.any((scaled**2).sum(axis=1) <= 1):
                return True
    return False
