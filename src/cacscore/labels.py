"""Label conventions for coronary calcium masks.

The project's convention (used by every mask cacscore reads or writes):

====  ===========================================
code  meaning
====  ===========================================
0     background
1     coronary calcium, artery not specified
2     LM, left main
3     LAD, left anterior descending (with diagonals)
4     LCX, left circumflex (with marginals)
5     RCA, right coronary artery
====  ===========================================

Code 1 makes a plain binary mask (0/1) a valid calcium mask. Other datasets
are converted when read; orCaScore uses 1 = LAD including LM, 2 = LCX,
3 = RCA (Wolterink et al., Med Phys 2016).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from cacscore.errors import InvalidInputError

BACKGROUND = 0
UNSPECIFIED = 1
LM = 2
LAD = 3
LCX = 4
RCA = 5

#: Artery name of each calcium label code, in code order.
ARTERY_NAMES: dict[int, str] = {
    UNSPECIFIED: "unspecified",
    LM: "LM",
    LAD: "LAD",
    LCX: "LCX",
    RCA: "RCA",
}
#: Label code of each artery name.
ARTERY_CODES: dict[str, int] = {name: code for code, name in ARTERY_NAMES.items()}

#: orCaScore reference label -> project label. orCaScore does not separate
#: the LM from the LAD, so its LAD calcium becomes LAD here.
ORCASCORE_TO_PROJECT: dict[int, int] = {0: BACKGROUND, 1: LAD, 2: LCX, 3: RCA}

MaskConvention = Literal["project", "orcascore", "binary"]


def to_project_labels(mask: np.ndarray, convention: MaskConvention = "project") -> np.ndarray:
    """Convert a label mask to the project's label convention.

    Parameters
    ----------
    mask : (Z, Y, X) ndarray of int
        Label mask in the convention named by ``convention``.
    convention : {"project", "orcascore", "binary"}
        ``"project"``: codes 0-5 as in this module's table (checked).
        ``"orcascore"``: 0 background, 1 LAD incl. LM, 2 LCX, 3 RCA.
        ``"binary"``: any non-zero voxel is calcium of unspecified artery.

    Returns
    -------
    (Z, Y, X) ndarray of uint8
        Mask with the project's codes.

    Raises
    ------
    InvalidInputError
        If the mask holds codes that the convention does not define.

    Examples
    --------
    >>> to_project_labels(np.array([[[0, 1, 2, 3]]]), "orcascore").tolist()
    [[[0, 3, 4, 5]]]
    """
    mask = np.asarray(mask)
    if convention == "binary":
        return (mask != 0).astype(np.uint8)
    if convention == "orcascore":
        table = ORCASCORE_TO_PROJECT
    elif convention == "project":
        table = {code: code for code in (BACKGROUND, *ARTERY_NAMES)}
    else:
        raise InvalidInputError(
            f"unknown mask label convention {convention!r}; use 'project', 'orcascore' or 'binary'"
        )
    present = np.unique(mask)
    unknown = [int(v) for v in present if int(v) not in table]
    if unknown:
        raise InvalidInputError(
            f"mask holds label values {unknown} that the {convention!r} convention does not define "
            f"(allowed: {sorted(table)})"
        )
    lut = np.zeros(max(table) + 1, dtype=np.uint8)
    for source, target in table.items():
        lut[source] = target
    return lut[mask.astype(np.int64)]
