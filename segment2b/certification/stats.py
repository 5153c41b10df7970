"""Statistical conventions of certification.md §2, exactly (numpy, no interpolation)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


def nearest_rank(values: npt.ArrayLike, q: float) -> float:
    """Quantile q by nearest rank on ascending values: index ``round(q·(n−1))``, .5 rounds up."""
    arr = np.sort(np.asarray(values, dtype=np.float64))
    if arr.size == 0:
        return math.nan
    idx = math.floor(q * (arr.size - 1) + 0.5)
    return float(arr[min(max(idx, 0), arr.size - 1)])


def median(values: npt.ArrayLike) -> float:
    """True median (mean of the two middle values when n is even)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(np.median(arr)) if arr.size else math.nan


def share(flags: npt.ArrayLike) -> float:
    """Mean of a boolean over its universe (a fraction); 0.0 for an empty universe."""
    arr = np.asarray(flags, dtype=bool)
    return float(arr.mean()) if arr.size else 0.0
