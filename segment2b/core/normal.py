"""Acklam's rational approximation of the standard normal inverse CDF (no refinement step).

Pure numpy. S3 maps each Philox uniform through this function (``s3-day-effects.md`` §6.4);
a library ``ndtri``/``erfinv`` gives different bytes and must not be substituted.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["ACKLAM_P_HIGH", "ACKLAM_P_LOW", "acklam_inverse_normal"]

_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
)
_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_D = (
    7.784695709041462e-03,
    3.224671290700398e-01,
    2.445134137142996e00,
    3.754408661907416e00,
)

ACKLAM_P_LOW = 0.02425
"""Lower tail boundary: ``p < ACKLAM_P_LOW`` uses the tail formula."""

ACKLAM_P_HIGH = 1.0 - ACKLAM_P_LOW
"""Upper tail boundary (binary64 ``1.0 - 0.02425``): ``p > ACKLAM_P_HIGH`` uses the tail formula."""


def _tail(q: np.ndarray) -> np.ndarray:
    """Lower-tail rational function of ``q = sqrt(-2 ln p)``, Horner order of the spec."""
    c0, c1, c2, c3, c4, c5 = _C
    d0, d1, d2, d3 = _D
    num = ((((c0 * q + c1) * q + c2) * q + c3) * q + c4) * q + c5
    den = (((d0 * q + d1) * q + d2) * q + d3) * q + 1.0
    return num / den


def _libm_log(x: np.ndarray) -> np.ndarray:
    """Natural log through C libm (``math.log``) element-wise; only used on the tail rows."""
    return np.fromiter(map(math.log, x.tolist()), dtype=np.float64, count=x.size)


def acklam_inverse_normal(p: ArrayLike) -> np.ndarray:
    """Standard normal quantile by Acklam's algorithm, vectorised.

    Parameters
    ----------
    p : array_like
        Probabilities, each strictly inside ``(0, 1)``.

    Returns
    -------
    numpy.ndarray
        float64 array of the same shape with ``z ~= Phi^{-1}(p)`` (relative error ~1.15e-9 by
        construction of the approximation; no Halley refinement is applied).

    Raises
    ------
    ValueError
        If any ``p`` is not in the open interval ``(0, 1)`` (including NaN). S3 meets
        ``p == 1.0`` only when Philox ``out0 >= 2**64 - 1024``; it should detect that first via
        ``philox.uniform_one_indices`` and abort with its own code.

    Notes
    -----
    Three regions, split at ``p_low = 0.02425`` and ``p_high = 1 - p_low``:

    - ``p < p_low``: ``q = sqrt(-2 ln p)``, ``z = C(q) / D(q)``;
    - ``p > p_high``: ``q = sqrt(-2 ln(1 - p))``, ``z = -C(q) / D(q)``;
    - otherwise: ``q = p - 0.5``, ``r = q*q``, ``z = A(r) * q / B(r)``.

    Each polynomial is evaluated in the exact Horner order written in ``s3-day-effects.md``
    §6.4 with plain binary64 multiply and add (numpy does not fuse them into FMA). The central
    region uses only ``+ - * /`` and is therefore bit-identical to a scalar evaluation; the
    tails (about 5 % of rows) take ``ln`` from Python's ``math`` (C libm), as §6.4 asks, because
    numpy's SIMD ``log`` differs from libm in the last ulp on some CPUs and would make S3 bytes
    depend on the machine.

    Compatibility guarantee
    -----------------------
    Coefficients, region boundaries and evaluation order are frozen: S3's ``z``, ``log_gamma``
    and ``gamma`` columns depend on them. Results agree with the ``s3-day-effects.md`` §6.5
    vectors to 1e-12 relative (bit-exact in the central region).
    """
    arr = np.asarray(p, dtype=np.float64)
    # `not (0 < p < 1)` also rejects NaN, which would otherwise fall through to the central branch.
    bad = ~((arr > 0.0) & (arr < 1.0))
    if bad.any():
        first = arr.ravel()[np.flatnonzero(bad.ravel())[0]]
        msg = f"acklam_inverse_normal needs 0 < p < 1; {int(bad.sum())} value(s) fail, e.g. {first}"
        raise ValueError(msg)

    flat = arr.ravel()
    z = np.empty_like(flat)
    low = flat < ACKLAM_P_LOW
    high = flat > ACKLAM_P_HIGH
    mid = ~(low | high)

    # Each region is evaluated only on its own elements, so log() never sees the central values
    # and no wasted work is done on the (rare) tails.
    if mid.any():
        a0, a1, a2, a3, a4, a5 = _A
        b0, b1, b2, b3, b4 = _B
        q = flat[mid] - 0.5
        r = q * q
        num = (((((a0 * r + a1) * r + a2) * r + a3) * r + a4) * r + a5) * q
        den = ((((b0 * r + b1) * r + b2) * r + b3) * r + b4) * r + 1.0
        z[mid] = num / den
    if low.any():
        z[low] = _tail(np.sqrt(-2.0 * _libm_log(flat[low])))
    if high.any():
        # Negating the numerator is exact, so -(C/D) equals (-C)/D bit for bit.
        z[high] = -_tail(np.sqrt(-2.0 * _libm_log(1.0 - flat[high])))
    return z.reshape(arr.shape)
