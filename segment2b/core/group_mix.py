"""The S4 anti-dominance regularizer ``group_mix_regularizer_v1`` (``s4-group-weights.md`` §6).

Pure numpy (plus ``math`` for the scalar libm logarithm): no Dagster, no I/O, no clock.

Many merchant-days are regularized at once. Their probability vectors are laid end to end in one
flat float64 array and described by ``lengths`` (groups per merchant-day, in order). Every
reduction the spec writes as a sum (entropy, the step-6 total, ``delta_mass``) is a *serial*
left-to-right sum in group order; ``numpy.bincount`` with weights accumulates exactly that way
(``out[seg[i]] += w[i]`` for ascending ``i``), whereas ``ndarray.sum`` uses pairwise summation
and would change the last bits. Logarithms go through Python's ``math.log`` (C libm) because
numpy's SIMD ``log`` differs from libm in the last ulp on some CPUs, which would break both the
§6 test vectors and byte-identical output across hosts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "EPSILON",
    "RANK_GUARD",
    "SOLVE_ITERATIONS",
    "RegularizeResult",
    "RegularizerError",
    "RegularizerParams",
    "libm_log",
    "regularize",
    "regularize_one",
    "segment_entropy",
    "segment_ids",
    "segment_max",
    "segment_sum",
]

EPSILON = 1e-12
"""Programme tolerance ε (hard-coded; no policy supplies it)."""

RANK_GUARD = 1.0 - 1e-9
"""Largest blend weight allowed when ``preserve_rank_order`` (keeps the affine slope > 0)."""

SOLVE_ITERATIONS = 36
"""Bisection steps of ``Solve`` (fixed by the design; the upper bracket is returned)."""

_APPLIED_TOL = 1e-15


class RegularizerError(ValueError):
    """Steps 5-6 of ``Regularize`` failed (S4 maps this to ``2B-S4-096``).

    Attributes
    ----------
    segment : int
        Index (into ``lengths``) of the first offending merchant-day.
    reason : str
        ``"negative"`` (a value below −ε) or ``"total"`` (sum non-finite or ≤ 0).
    """

    def __init__(self, segment: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.segment = segment
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RegularizerParams:
    """Parsed policy knobs (the S4 state applies the policy's parse-as defaults).

    Attributes
    ----------
    soft_cap : float
        ``max_p_group_soft_cap`` (1.0 = off).
    strength : float
        ``regularization_strength`` λ_s (0 = off).
    entropy_floor : float
        ``entropy_floor`` in nats (0 = off).
    preserve_rank_order : bool
        Cap λ_c and λ_e at ``1 − 1e-9`` so strict order survives.
    sum_to_one : bool
        Always divide by the total in step 6.
    """

    soft_cap: float = 1.0
    strength: float = 0.0
    entropy_floor: float = 0.0
    preserve_rank_order: bool = True
    sum_to_one: bool = True


@dataclass(frozen=True)
class RegularizeResult:
    """Output of :func:`regularize`: the new flat vector plus per-merchant-day metadata.

    ``p`` has the layout of the input; every other array has one entry per segment.
    """

    p: np.ndarray
    applied: np.ndarray
    delta_mass: np.ndarray
    h_pre: np.ndarray
    h_post: np.ndarray
    max_pre: np.ndarray
    max_post: np.ndarray
    lambda_s: np.ndarray
    lambda_c: np.ndarray
    lambda_e: np.ndarray


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def libm_log(x: npt.ArrayLike) -> np.ndarray:
    """Element-wise natural log through C libm (``math.log``), for last-ulp parity.

    Parameters
    ----------
    x : array_like
        Strictly positive finite values.

    Returns
    -------
    numpy.ndarray
        float64 array of the same shape.
    """
    arr = np.asarray(x, dtype=np.float64)
    flat = arr.ravel()
    return np.fromiter(map(math.log, flat.tolist()), dtype=np.float64, count=flat.size).reshape(
        arr.shape
    )


def segment_ids(lengths: npt.ArrayLike) -> np.ndarray:
    """Segment index of every flat element (``repeat(arange(S), lengths)``)."""
    lens = np.asarray(lengths, dtype=np.int64)
    return np.repeat(np.arange(lens.size, dtype=np.int64), lens)


def segment_sum(values: np.ndarray, seg: np.ndarray, n_segments: int) -> np.ndarray:
    """Serial (left-to-right, in flat order) sum of ``values`` per segment.

    Compatibility guarantee
    -----------------------
    Bit-identical to ``s = 0.0; for x in segment: s += x`` in Python floats, because
    ``numpy.bincount`` accumulates weights in index order. Never replace by ``reduceat`` or
    ``sum`` (pairwise summation).
    """
    return np.bincount(seg, weights=values, minlength=n_segments).astype(np.float64, copy=False)


def segment_max(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Maximum per non-empty segment (exact: order-independent)."""
    if lengths.size == 0:
        return np.empty(0, dtype=np.float64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return np.maximum.reduceat(values, starts)


def segment_entropy(values: np.ndarray, seg: np.ndarray, n_segments: int) -> np.ndarray:
    """``H(v) = −Σ_{v_g>0} v_g·ln v_g`` per segment, natural log, serial in group order."""
    terms = np.zeros_like(values)
    pos = values > 0.0
    if pos.any():
        vp = values[pos]
        terms[pos] = vp * libm_log(vp)
    # ``0.0 - s`` equals ``-s`` bit for bit except that an all-zero segment gives +0.0, not -0.0.
    return 0.0 - segment_sum(terms, seg, n_segments)


def _blend(v: np.ndarray, lam_row: np.ndarray, u_row: np.ndarray) -> np.ndarray:
    """``blend(v, λ)`` on rows whose λ > 0: ``(1−λ)·v + λ·u``; rows with λ ≤ 0 unchanged."""
    scale = 1.0 - lam_row
    offset = lam_row * u_row
    return np.where(lam_row > 0.0, scale * v + offset, v)


def _solve(
    v: np.ndarray,
    seg: np.ndarray,
    lengths: np.ndarray,
    u_row: np.ndarray,
    target: float,
) -> np.ndarray:
    """Vectorised ``Solve(v, T)``: the blend weight that lifts H(v) to the floor T."""
    n_seg = lengths.size
    lam = np.zeros(n_seg, dtype=np.float64)
    h_now = segment_entropy(v, seg, n_seg)
    ln_n = np.array([math.log(float(n)) for n in lengths.tolist()], dtype=np.float64)
    met = target <= h_now + EPSILON
    full = ~met & (target >= ln_n - EPSILON)
    lam[full] = 1.0
    todo = ~met & ~full
    if not todo.any():
        return lam
    # Bisect only the merchant-days that need it, on a compacted copy of their elements.
    idx = np.flatnonzero(todo)
    row_mask = todo[seg]
    sub_v = v[row_mask]
    sub_u = u_row[row_mask]
    sub_len = lengths[idx]
    sub_seg = segment_ids(sub_len)
    lo = np.zeros(idx.size, dtype=np.float64)
    hi = np.ones(idx.size, dtype=np.float64)
    for _ in range(SOLVE_ITERATIONS):
        mid = (lo + hi) / 2
        h_mid = segment_entropy(_blend(sub_v, mid[sub_seg], sub_u), sub_seg, idx.size)
        below = h_mid + EPSILON < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    lam[idx] = hi
    return lam


def regularize(
    p_raw: npt.ArrayLike,
    lengths: npt.ArrayLike,
    params: RegularizerParams,
) -> RegularizeResult:
    """``Regularize(p_raw)`` of s4 §6 for many merchant-days at once.

    Parameters
    ----------
    p_raw : array_like
        Flat float64 array: the raw group mixes of every merchant-day, end to end, each in
        sorted-tzid order.
    lengths : array_like
        Group count ``n`` of each merchant-day (≥ 1), in the same order.
    params : RegularizerParams
        Parsed policy knobs.

    Returns
    -------
    RegularizeResult
        New flat vector and per-merchant-day metadata (``applied``, ``delta_mass``, entropies,
        maxima, ``λ_s``, ``λ_c``, ``λ_e``).

    Raises
    ------
    RegularizerError
        A value below −ε after the blends (step 5) or a non-finite / non-positive total
        (step 6); ``segment`` names the first offending merchant-day.

    Notes
    -----
    Per merchant-day, with ``u = 1/n`` and ``blend(v, λ) = (1−λ)·v + λ·u``:
    strength blend (λ_s), soft cap (λ_c lands the top group on the cap), entropy floor (λ_e by
    36-step bisection, upper bracket), clamp negatives, divide by the serial total. Each step is
    an affine map with positive slope, so strict rank order and ties are preserved. A
    merchant-day with ``n = 1`` is returned untouched (the state never sends one; blending a
    one-element vector with uniform would only add rounding).

    Compatibility guarantee
    -----------------------
    Bit-identical to a scalar Python-float evaluation of the §6 pseudo-code (serial sums,
    ``math.log``); it reproduces every §6 test vector exactly (``repr`` equality).
    """
    p0 = np.ascontiguousarray(p_raw, dtype=np.float64)
    lens = np.ascontiguousarray(lengths, dtype=np.int64)
    if lens.size and int(lens.min()) < 1:
        msg = "every merchant-day needs at least one group"
        raise ValueError(msg)
    if int(lens.sum()) != p0.size:
        msg = f"lengths sum to {int(lens.sum())} but p_raw has {p0.size} values"
        raise ValueError(msg)
    n_seg = lens.size
    seg = segment_ids(lens)
    zeros = np.zeros(n_seg, dtype=np.float64)
    h_pre = segment_entropy(p0, seg, n_seg)
    max_pre = segment_max(p0, lens)
    active = lens >= 2
    if not active.any():
        return RegularizeResult(
            p=p0.copy(),
            applied=np.zeros(n_seg, dtype=bool),
            delta_mass=zeros.copy(),
            h_pre=h_pre,
            h_post=h_pre.copy(),
            max_pre=max_pre,
            max_post=max_pre.copy(),
            lambda_s=zeros.copy(),
            lambda_c=zeros.copy(),
            lambda_e=zeros.copy(),
        )
    active_row = active[seg]
    u_seg = 1.0 / lens.astype(np.float64)
    u_row = u_seg[seg]
    v = p0.copy()

    # Step 2: strength blend on every eligible merchant-day.
    lam_s_val = _clamp(float(params.strength), 0.0, 1.0)
    lambda_s = np.where(active, lam_s_val, 0.0)
    if lam_s_val > 0.0:
        v = _blend(v, lambda_s[seg], u_row)

    # Step 3: soft cap; lands the top group on c.
    cap = _clamp(float(params.soft_cap), 0.0, 1.0)
    lambda_c = zeros.copy()
    if cap < 1.0:
        m = segment_max(v, lens)
        binds = active & (m > cap + EPSILON) & (m > u_seg + EPSILON)
        if binds.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                lam = np.clip((m - cap) / (m - u_seg), 0.0, 1.0)
            if params.preserve_rank_order:
                lam = np.where(lam >= 1.0, RANK_GUARD, lam)
            lambda_c = np.where(binds, lam, 0.0)
            v = _blend(v, lambda_c[seg], u_row)

    # Step 4: entropy floor.
    lambda_e = zeros.copy()
    floor = float(params.entropy_floor)
    if floor > 0.0:
        act_idx = np.flatnonzero(active)
        sub = _solve(
            v[active_row], segment_ids(lens[active]), lens[active], u_row[active_row], floor
        )
        if params.preserve_rank_order:
            sub = np.where(sub >= 1.0, RANK_GUARD, sub)
        lambda_e[act_idx] = sub
        if (lambda_e > 0.0).any():
            v = _blend(v, lambda_e[seg], u_row)

    # Step 5: negatives.
    neg = active_row & (v < -EPSILON)
    if neg.any():
        first = int(seg[np.flatnonzero(neg)[0]])
        raise RegularizerError(first, "negative", "regularized value below -epsilon")
    v = np.where(active_row & (v < 0.0), 0.0, v)

    # Step 6: renormalise by the serial total.
    total = segment_sum(v, seg, n_seg)
    bad = active & ~(np.isfinite(total) & (total > 0.0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise RegularizerError(first, "total", "regularized total is non-finite or <= 0")
    divide = active if params.sum_to_one else active & (np.abs(total - 1.0) > EPSILON)
    if divide.any():
        div_row = divide[seg]
        v = np.where(div_row, v / np.where(div_row, total[seg], 1.0), v)

    # Step 7: metadata.
    diff = np.abs(v - p0)
    applied = segment_sum((diff > _APPLIED_TOL).astype(np.float64), seg, n_seg) > 0.0
    delta_mass = 0.5 * segment_sum(diff, seg, n_seg)
    h_post = np.where(active, segment_entropy(v, seg, n_seg), h_pre)
    max_post = segment_max(v, lens)
    return RegularizeResult(
        p=v,
        applied=applied,
        delta_mass=delta_mass,
        h_pre=h_pre,
        h_post=h_post,
        max_pre=max_pre,
        max_post=max_post,
        lambda_s=lambda_s,
        lambda_c=lambda_c,
        lambda_e=lambda_e,
    )


def regularize_one(p_raw: Sequence[float], params: RegularizerParams) -> dict[str, Any]:
    """Regularize a single merchant-day; returns plain Python values (tests, reports).

    Returns
    -------
    dict
        ``p`` (list of floats), ``applied``, ``delta_mass``, ``h_pre``, ``h_post``,
        ``max_pre``, ``max_post``, ``lambda_s``, ``lambda_c``, ``lambda_e``.
    """
    res = regularize(np.asarray(p_raw, dtype=np.float64), [len(p_raw)], params)
    return {
        "p": res.p.tolist(),
        "applied": bool(res.applied[0]),
        "delta_mass": float(res.delta_mass[0]),
        "h_pre": float(res.h_pre[0]),
        "h_post": float(res.h_post[0]),
        "max_pre": float(res.max_pre[0]),
        "max_post": float(res.max_post[0]),
        "lambda_s": float(res.lambda_s[0]),
        "lambda_c": float(res.lambda_c[0]),
        "lambda_e": float(res.lambda_e[0]),
    }
