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
import numpy.typing as npt

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
#: The four coronary arteries (vessels for CAC-DRS ``N``), in code order.
NAMED_ARTERIES: tuple[int, ...] = (LM, LAD, LCX, RCA)

#: Display colour of each calcium label code as ``#rrggbb``: the one table behind the
#: key images, the review viewer (served to the page by the web app) and the PDF report.
ARTERY_COLOURS: dict[int, str] = {
    UNSPECIFIED: "#ba68c8",
    LM: "#f2c12e",
    LAD: "#ef5350",
    LCX: "#42a5f5",
    RCA: "#66bb6a",
}
#: The same colours keyed by artery name.
ARTERY_COLOURS_BY_NAME: dict[str, str] = {
    ARTERY_NAMES[code]: colour for code, colour in ARTERY_COLOURS.items()
}

#: Tie-break order of the majority-artery rule: named arteries in code order, then unspecified.
MAJORITY_ORDER: tuple[int, ...] = (*NAMED_ARTERIES, UNSPECIFIED)

#: Artery spellings found in point files and dataset annotations (upper case) -> label code.
ARTERY_ALIASES: dict[str, int] = {
    "UNSPECIFIED": UNSPECIFIED,
    "CAC": UNSPECIFIED,
    "CALCIUM": UNSPECIFIED,
    "CORONARY": UNSPECIFIED,
    "CORONARY CALCIUM": UNSPECIFIED,
    "CORONARY ARTERY CALCIUM": UNSPECIFIED,
    "CALCIFICATION": UNSPECIFIED,
    "LM": LM,
    "LMCA": LM,
    "LCA": LM,
    "LEFT MAIN": LM,
    "LEFT CORONARY ARTERY": LM,
    "LAD": LAD,
    "LEFT ANTERIOR DESCENDING": LAD,
    "LEFT ANTERIOR DESCENDING ARTERY": LAD,
    "LCX": LCX,
    "CX": LCX,
    "CIRC": LCX,
    "LEFT CIRCUMFLEX": LCX,
    "LEFT CIRCUMFLEX ARTERY": LCX,
    "RCA": RCA,
    "RIGHT CORONARY": RCA,
    "RIGHT CORONARY ARTERY": RCA,
}


def majority_artery(counts: npt.ArrayLike) -> np.ndarray:
    """Majority artery code of each lesion, from its voxel (or point) count per label code.

    The one tie rule of the project: the code with the most voxels wins; among
    equal counts a named artery beats unspecified, and the lower code wins
    between named arteries (LM, LAD, LCX, RCA). A lesion with no calcium
    voxels at all gets :data:`BACKGROUND`.

    Parameters
    ----------
    counts : (..., C) array_like of int
        Count of each label code ``0..C-1`` (C >= 6); the background column is ignored.

    Returns
    -------
    (...) ndarray of int64
        Winning code per lesion.

    Raises
    ------
    InvalidInputError
        If the last axis has fewer than 6 columns (codes 0-5).

    Examples
    --------
    >>> majority_artery([[0, 2, 0, 2, 2, 0], [0, 3, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0]]).tolist()
    [3, 1, 0]
    """
    table = np.asarray(counts)
    if table.ndim < 1 or table.shape[-1] <= max(MAJORITY_ORDER):
        raise InvalidInputError(
            f"counts must have one column per label code 0-{max(MAJORITY_ORDER)}, got shape {table.shape}"
        )
    ordered = table[..., list(MAJORITY_ORDER)]
    winner = np.asarray(MAJORITY_ORDER, dtype=np.int64)[np.argmax(ordered, axis=-1)]
    return np.where(ordered.max(axis=-1) > 0, winner, BACKGROUND).astype(np.int64)


def parse_artery(value: object, *, where: str = "artery") -> int:
    """Project label code of an artery given by name or code.

    Parameters
    ----------
    value : str, int or None
        ``"LAD"``, ``"Left Circumflex Artery"``, ``3``, ``"3"``...; None or
        an empty string mean unspecified (1).
    where : str
        Where the value comes from, for the error message.

    Returns
    -------
    int
        1 (unspecified), 2 (LM), 3 (LAD), 4 (LCX) or 5 (RCA).

    Raises
    ------
    InvalidInputError
        If the name or code is unknown.

    Examples
    --------
    >>> [parse_artery(v) for v in ("LAD", "left circumflex artery", 5, "", None)]
    [3, 4, 5, 1, 1]
    """
    if value is None:
        return UNSPECIFIED
    if isinstance(value, bool):
        raise InvalidInputError(f"{where}: artery {value!r} is neither a name nor a label code")
    if isinstance(value, (int, float)):
        code = int(value)
        if code != value or code not in ARTERY_NAMES:
            raise InvalidInputError(f"{where}: artery code {value!r} is not one of {sorted(ARTERY_NAMES)}")
        return code
    text = " ".join(str(value).replace("_", " ").split()).upper()
    if not text:
        return UNSPECIFIED
    if text.isdigit():
        return parse_artery(int(text), where=where)
    if text in ARTERY_ALIASES:
        return ARTERY_ALIASES[text]
    raise InvalidInputError(
        f"{where}: unknown artery {value!r}; use LM, LAD, LCX, RCA, unspecified or a label code 1-5"
    )


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
