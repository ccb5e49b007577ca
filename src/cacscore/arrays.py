"""Small array helpers shared by the science modules (pure NumPy, no I/O)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


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
