"""Keyed-hash randomness for the world generator: every draw is addressed, none is sequential.

Two sources, both independent of numpy's generators (whose streams may change between
releases):

* **Keyed uniforms** — ``SHA-256(utf8("uw:{seed}:{stream}:{key}:{k}"))``; the first 8 bytes,
  big-endian, give a uint64 ``x`` and the uniform is ``((x >> 12) + 0.5) / 2**52``, which lies
  in the open interval (0, 1) (52 bits: with 53 the top word would round to exactly 1.0). Used
  for per-merchant and per-country decisions (thousands of keys; hashlib costs about a
  microsecond each).
* **Counter uniforms** — for per-site, per-day and per-arrival draws (up to millions) a 64-bit
  sub-seed is derived once per (seed, stream, key) by the same SHA-256 law, and draw ``n`` of
  that sub-seed is ``splitmix64_mix(subseed + (n + 1) * 0x9E3779B97F4A7C15)`` mapped to (0, 1) as
  above. The mixer is implemented in numpy uint64 arithmetic (wrapping multiply), so it is
  vectorised and bit-exact on every platform.

Samplers are inverse-CDF transforms of those uniforms, implemented here: the inverse normal
(Acklam's rational approximation, relative error < 1.2e-9), lognormal, truncated Pareto,
truncated Zipf, exponential, Dirichlet(½, …, ½) by normalised squared normals (Gamma(½) = Z²/2
exactly), Poisson, a weighted choice by cumulative search and a largest-remainder split.
Callers build weighted sampling without replacement from these uniforms with
Efraimidis–Spirakis keys ``ln(u)/w``. No library sampler (numpy.random, scipy.stats) is used.

Compatibility guarantee
-----------------------
The integer part (the SHA-256 law, sub-seeds and the splitmix64 stream) is bit-exact and must not
change without bumping ``GENERATOR_VERSION``. The float transforms use numpy's ``log``/``exp``;
they agree across platforms to a few ulp, which can only matter for a draw sitting exactly on a
decision boundary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TWO_M52 = 2.0**-52


def key_text(seed: int, stream: str, key: object, k: int = 0) -> str:
    """The hashed key of one draw: ``uw:{seed}:{stream}:{key}:{k}``."""
    return f"uw:{seed}:{stream}:{key}:{k}"


def hash_u64(text: str) -> int:
    """First 8 bytes (big-endian) of SHA-256(utf8(text))."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def u64_to_uniform(x: np.ndarray) -> np.ndarray:
    """Map uint64 words to float64 uniforms in the open interval (0, 1): top 52 bits + ½,
    so the extremes are 2^-53 and 1 − 2^-53 (both exactly representable)."""
    return ((x >> np.uint64(12)).astype(np.float64) + 0.5) * _TWO_M52


def keyed_uniforms(seed: int, stream: str, keys: Iterable[object], k: int = 0) -> np.ndarray:
    """One open-interval uniform per key, each from its own SHA-256 (per-merchant decisions)."""
    words = np.fromiter((hash_u64(key_text(seed, stream, key, k)) for key in keys), dtype=np.uint64)
    return u64_to_uniform(words)


def subseeds(seed: int, stream: str, keys: Iterable[object]) -> np.ndarray:
    """Per-key 64-bit sub-seeds of a counter stream (``k`` fixed to 0 in the hashed key)."""
    return np.fromiter((hash_u64(key_text(seed, stream, key, 0)) for key in keys), dtype=np.uint64)


def splitmix64_mix(z: np.ndarray) -> np.ndarray:
    """The splitmix64 output function, vectorised (uint64 wrapping arithmetic)."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def counter_words(sub: np.ndarray, counter: np.ndarray) -> np.ndarray:
    """Word ``counter`` of each sub-seed's splitmix64 stream (broadcasts)."""
    sub = np.asarray(sub, dtype=np.uint64)
    ctr = np.asarray(counter, dtype=np.uint64)
    with np.errstate(over="ignore"):
        state = sub + (ctr + np.uint64(1)) * GAMMA
    return splitmix64_mix(state)


def counter_uniforms(sub: np.ndarray, counter: np.ndarray) -> np.ndarray:
    """Open-interval uniforms of draw ``counter`` of each sub-seed (broadcasts)."""
    return u64_to_uniform(counter_words(sub, counter))


# --- inverse-CDF samplers -------------------------------------------------------------------

_A = (-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.3577518672690,
      -30.66479806614716, 2.506628277459239)  # fmt: skip
_B = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972,
      -13.28068155288572)  # fmt: skip
_C = (-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734,
      4.374664141464968, 2.938163982698783)  # fmt: skip
_D = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416)
_P_LOW = 0.02425


def inverse_normal(u: np.ndarray) -> np.ndarray:
    """Standard normal quantile by Acklam's rational approximation (vectorised, u in (0, 1))."""
    u = np.asarray(u, dtype=np.float64)
    out = np.empty_like(u)
    lo = u < _P_LOW
    hi = u > 1.0 - _P_LOW
    mid = ~(lo | hi)
    q = u[mid] - 0.5
    r = q * q
    num = ((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]
    den = ((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0
    out[mid] = num * q / den
    for mask, sign, p in ((lo, 1.0, u[lo]), (hi, -1.0, 1.0 - u[hi])):
        t = np.sqrt(-2.0 * np.log(p))
        num = ((((_C[0] * t + _C[1]) * t + _C[2]) * t + _C[3]) * t + _C[4]) * t + _C[5]
        den = (((_D[0] * t + _D[1]) * t + _D[2]) * t + _D[3]) * t + 1.0
        out[mask] = sign * num / den
    return out


def lognormal(u: np.ndarray, mu: float | np.ndarray, sigma: float | np.ndarray) -> np.ndarray:
    """LogNormal(mu, sigma) quantile."""
    return np.exp(mu + sigma * inverse_normal(u))


def exponential(u: np.ndarray) -> np.ndarray:
    """Exp(1) quantile of the upper tail, ``-ln u`` (u in (0, 1) so always finite)."""
    return -np.log(u)


def truncated_pareto(u: np.ndarray, xm: float, alpha: float, cap: float) -> np.ndarray:
    """Pareto(xm, alpha) truncated to ``[xm, cap]``, by inverse CDF."""
    tail = 1.0 - (xm / cap) ** alpha
    return xm * (1.0 - u * tail) ** (-1.0 / alpha)


def truncated_zipf(u: np.ndarray, s: float | np.ndarray, kmax: np.ndarray) -> np.ndarray:
    """Zipf on ``1..kmax_i`` (P(j) ∝ j^-s_i), one draw per element; ``kmax`` ≥ 1 per element,
    ``s`` a scalar or one exponent per element."""
    kmax = np.asarray(kmax, dtype=np.int64)
    u = np.asarray(u, dtype=np.float64)
    s_arr = np.broadcast_to(np.asarray(s, dtype=np.float64), u.shape)
    top = int(kmax.max()) if kmax.size else 1
    j = np.arange(1, top + 1, dtype=np.float64)
    cum = np.cumsum(j[None, :] ** -s_arr[:, None], axis=1)
    target = u * cum[np.arange(u.size), kmax - 1]
    return np.minimum((cum < target[:, None]).sum(axis=1) + 1, kmax)


def weighted_choice(u: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Index drawn ∝ ``weights`` for each uniform (inverse CDF over the cumulative weights)."""
    cum = np.cumsum(np.asarray(weights, dtype=np.float64))
    idx = np.searchsorted(cum, u * cum[-1], side="right")
    return np.minimum(idx, cum.size - 1)


def half_dirichlet(u: np.ndarray) -> np.ndarray:
    """Dirichlet(½, …, ½) along the last axis: Gamma(½) is Z²/2 for a standard normal Z, so the
    normalised squares of inverse-normal draws are exact."""
    z2 = inverse_normal(u) ** 2
    return z2 / z2.sum(axis=-1, keepdims=True)


def poisson(u: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Poisson(lam) quantile of ``u``, vectorised.

    Exact inverse CDF (recursive pmf) for ``lam ≤ 40``; above that the Cornish–Fisher normal
    approximation with continuity correction, whose error is negligible at those rates.
    """
    u = np.asarray(u, dtype=np.float64)
    lam = np.asarray(lam, dtype=np.float64)
    out = np.zeros(u.shape, dtype=np.int64)
    small = lam <= 40.0
    if small.any():
        us, ls = u[small], lam[small]
        pmf = np.exp(-ls)
        cdf = pmf.copy()
        k = np.zeros(us.shape, dtype=np.int64)
        active = us > cdf
        j = 0
        while active.any() and j < 400:
            j += 1
            pmf = pmf * ls / j
            cdf = cdf + pmf
            k = np.where(active, j, k)
            active = active & (us > cdf)
        out[small] = k
    big = ~small
    if big.any():
        z = inverse_normal(u[big])
        lb = lam[big]
        x = lb + np.sqrt(lb) * z + (z * z - 1.0) / 6.0
        out[big] = np.maximum(np.floor(x + 0.5), 0).astype(np.int64)
    return out


def largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    """Integer split of ``total`` ∝ ``shares`` (Hamilton); ties go to the lower index."""
    shares = np.asarray(shares, dtype=np.float64)
    quota = shares / shares.sum() * total
    base = np.floor(quota).astype(np.int64)
    rest = total - int(base.sum())
    if rest > 0:
        frac = quota - base
        order = np.lexsort((np.arange(frac.size), -frac))
        base[order[:rest]] += 1
    return base
