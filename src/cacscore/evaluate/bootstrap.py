"""Case-resampling bootstrap confidence intervals (percentile method, seedable)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cacscore.errors import InvalidInputError


@dataclass(frozen=True)
class ConfidenceInterval:
    """A percentile bootstrap interval.

    Attributes
    ----------
    low, high : float
        Interval bounds (``nan`` when no resample gave a defined value).
    level : float
        Coverage, e.g. 0.95.
    n_resamples : int
        Resamples drawn.
    n_defined : int
        Resamples whose statistic was defined (not ``nan``); the interval uses these.
    """

    low: float
    high: float
    level: float
    n_resamples: int
    n_defined: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary (``nan`` becomes ``None``)."""
        return {
            "low": _finite_or_none(self.low),
            "high": _finite_or_none(self.high),
            "level": self.level,
            "n_resamples": self.n_resamples,
            "n_defined": self.n_defined,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfidenceInterval:
        """Inverse of :meth:`to_dict`."""

        def value(key: str) -> float:
            return math.nan if data[key] is None else float(data[key])

        return cls(
            value("low"),
            value("high"),
            float(data["level"]),
            int(data["n_resamples"]),
            int(data["n_defined"]),
        )


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def bootstrap_ci(
    statistics: Mapping[str, Callable[..., float]],
    *columns: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, ConfidenceInterval]:
    """Percentile bootstrap intervals of several statistics, resampling cases with replacement.

    All statistics see the same resamples, so their intervals are
    consistent with each other. Each resample draws ``N`` case indices with
    replacement and calls ``statistic(*(column[idx] for column in columns))``.

    Parameters
    ----------
    statistics : mapping of str to callable
        Name -> function of the resampled columns returning a float (``nan`` allowed).
    *columns : (N,) ndarray
        Per-case values, all of the same length N >= 1.
    n_resamples : int
        Number of resamples (>= 1).
    seed : int
        Seed of the NumPy generator; the same seed gives the same intervals.
    level : float
        Coverage in (0, 1).

    Returns
    -------
    dict of str to ConfidenceInterval

    Raises
    ------
    InvalidInputError
        Columns of different lengths or empty, ``n_resamples`` < 1, ``level`` outside (0, 1).

    Examples
    --------
    >>> x = np.arange(10.0)
    >>> ci = bootstrap_ci({"mean": np.mean}, x, n_resamples=200, seed=1)["mean"]
    >>> bool(ci.low < 4.5 < ci.high)
    True
    """
    if not columns:
        raise InvalidInputError("bootstrap_ci needs at least one column of per-case values")
    arrays = [np.asarray(c) for c in columns]
    n = len(arrays[0])
    if n == 0 or any(len(a) != n for a in arrays):
        raise InvalidInputError(
            f"bootstrap columns must be non-empty and of equal length, got {[len(a) for a in arrays]}"
        )
    if isinstance(n_resamples, bool) or int(n_resamples) != n_resamples or n_resamples < 1:
        raise InvalidInputError(f"n_resamples must be an integer >= 1, got {n_resamples!r}")
    if not 0 < level < 1:
        raise InvalidInputError(f"level must be in (0, 1), got {level!r}")
    rng = np.random.default_rng(seed)
    values = {name: np.empty(int(n_resamples)) for name in statistics}
    for r in range(int(n_resamples)):
        idx = rng.integers(0, n, size=n)
        sample = [a[idx] for a in arrays]
        for name, fn in statistics.items():
            values[name][r] = fn(*sample)
    tail = (1 - level) / 2 * 100
    out = {}
    for name, v in values.items():
        defined = v[~np.isnan(v)]
        if defined.size:
            low, high = (float(q) for q in np.percentile(defined, [tail, 100 - tail]))
        else:
            low = high = math.nan
        out[name] = ConfidenceInterval(low, high, float(level), int(n_resamples), int(defined.size))
    return out
