"""Small array helpers shared by the science modules (pure NumPy, no I/O)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage


def bounding_box(mask: npt.ArrayLike) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding every non-zero element of ``mask``.

    Much cheaper than ``np.nonzero`` on large sparse volumes (one reduction
    per axis), so callers crop to the box before the real work.

    Parameters
    ----------
    mask : ndarray
        Any shape; non-zero means inside.

    Returns
    -------
    tuple of slice, or None
        One slice per axis, or None when ``mask`` is all zero.

    Examples
    --------
    >>> bounding_box(np.array([[0, 0, 0], [0, 1, 1]]))
    (slice(1, 2, None), slice(1, 3, None))
    >>> bounding_box(np.zeros((2, 2))) is None
    True
    """
    mask = np.asarray(mask)
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def grow_box(box: tuple[slice, ...], margin: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """``box`` grown by ``margin`` elements on each side of each axis, clipped to ``shape``.

    Examples
    --------
    >>> grow_box((slice(1, 2), slice(0, 3)), (2, 1), (4, 4))
    (slice(0, 4, None), slice(0, 4, None))
    """
    return tuple(slice(max(b.start - m, 0), min(b.stop + m, n)) for b, m, n in zip(box, margin, shape))


def label_lesions(label: npt.ArrayLike, mask: npt.ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Number the lesions of a label mask: 6-connected groups of voxels with the same non-zero code.

    Parameters
    ----------
    label : (Z, Y, X) ndarray of int
        Label codes, 0 for background.
    mask : (Z, Y, X) ndarray of bool, optional
        Only these voxels can belong to a lesion (e.g. HU >= 130); default all.

    Returns
    -------
    ids : (Z, Y, X) ndarray of int64
        0 outside lesions, lesion id 1..n inside.
    codes : (n + 1,) ndarray of int64
        The label code of each id (``codes[0]`` is 0).

    Examples
    --------
    >>> ids, codes = label_lesions(np.array([[[3, 3, 0, 3, 5]]]))
    >>> ids.tolist(), codes.tolist()
    ([[[1, 1, 0, 2, 3]]], [0, 3, 3, 5])
    """
    # Imported here: cacscore.scoring imports this module.
    from cacscore.scoring.conventions import SIX_CONNECTED

    label = np.asarray(label)
    inside = label != 0 if mask is None else (label != 0) & np.asarray(mask, dtype=bool)
    ids = np.zeros(label.shape, dtype=np.int64)
    codes: list[int] = []
    for code in np.unique(label[inside]):
        component, n = ndimage.label(inside & (label == code), structure=SIX_CONNECTED)
        if n:
            ids[component > 0] = component[component > 0] + len(codes)
            codes.extend([int(code)] * n)
    return ids, np.asarray([0, *codes], dtype=np.int64)
