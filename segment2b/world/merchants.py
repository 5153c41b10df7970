"""Merchant identities, sizes and attributes (upstream-world.md §5.3.3–5.3.4, §5.3.8).

All functions return numpy arrays indexed by merchant position ``idx = 0..n-1`` (generation
order); the generator sorts by merchant_id only when it builds the output tables.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from segment2b.world import keyed
from segment2b.world.mcc import CHANNELS, CLASSES, VIRTUAL_DIGITAL_CNP, mcc_arrays

# Realistic size law: N = 2 + floor(X), X a lognormal body spliced into a truncated Pareto tail.
SIZE_MEDIAN_X = 12.0
SIZE_SIGMA = 0.81
SIZE_SPLICE_U = 0.95
SIZE_ALPHA = 1.25
SIZE_CAP_X = 10_000.0
"""Calibrated to upstream-world.md §5.5: median X 12 → p50 ≈ 14 sites; σ 0.81 → p90 ≈ 36; the
top 5 % follow a Pareto tail (α = 1.25, inside the 1.1–1.3 band) continuous with the body at
u = 0.95, truncated at 2,800 so the largest merchant has at most ~2,800 sites (measured 2,546)."""


def merchant_ids(seed: int, n: int) -> np.ndarray:
    """Merchant ids by the world law: first 8 bytes (big-endian) of
    SHA-256(``"uw:merchant:{seed}:{idx}"``), re-hashed as ``"uw:merchant:{seed}:{idx}:{r}"``
    (r = 1, 2, …) when the value is 0 or already taken by a lower idx. Covers the full uint64
    range (about half ≥ 2^63)."""
    seen: set[int] = set()
    out = np.empty(n, dtype=np.uint64)
    for idx in range(n):
        text = f"uw:merchant:{seed}:{idx}"
        r = 0
        while True:
            value = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
            if value != 0 and value not in seen:
                break
            r += 1
            text = f"uw:merchant:{seed}:{idx}:{r}"
        seen.add(value)
        out[idx] = value
    return out


def stratified_uniforms(seed: int, stream: str, keys: list[int]) -> np.ndarray:
    """One uniform per key, jointly stratified: key i gets a uniform in the central half of
    stratum ``rank_i`` of ``len(keys)`` equal strata, ranks being a keyed random permutation.

    Each merchant's size stays random, but the sample quantiles of the whole population sit
    within half a stratum of the law's quantiles, so p99 and the maximum (one or two merchants)
    do not swing from seed to seed.
    """
    n = len(keys)
    if n == 0:
        return np.empty(0, dtype=np.float64)
    order = keyed.keyed_uniforms(seed, f"{stream}:rank", keys)
    jitter = keyed.keyed_uniforms(seed, f"{stream}:jitter", keys)
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((np.arange(n), order))] = np.arange(n)
    return (rank + (1.0 + jitter) / 3.0) / n


def realistic_size_x(u: np.ndarray) -> np.ndarray:
    """The continuous size variable X of the realistic law at uniforms ``u``."""
    mu = np.log(SIZE_MEDIAN_X)
    body = keyed.lognormal(np.minimum(u, SIZE_SPLICE_U), mu, SIZE_SIGMA)
    x0 = float(keyed.lognormal(np.array([SIZE_SPLICE_U]), mu, SIZE_SIGMA)[0])
    tail_u = np.clip((u - SIZE_SPLICE_U) / (1.0 - SIZE_SPLICE_U), 0.0, 1.0 - 1e-16)
    tail = keyed.truncated_pareto(tail_u, x0, SIZE_ALPHA, SIZE_CAP_X)
    return np.where(u <= SIZE_SPLICE_U, body, tail)


def site_counts(
    seed: int,
    ids: np.ndarray,
    single_site_share: float,
    size_x: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Sites per merchant: exactly ``round(share·n)`` single-site merchants (lowest keyed
    uniforms), the others ``2 + floor(X)`` with X from ``size_x`` at stratified uniforms."""
    n = ids.size
    keys = [int(m) for m in ids]
    n_single = round(single_site_share * n)
    pick = keyed.keyed_uniforms(seed, "size:single", keys)
    single = np.zeros(n, dtype=bool)
    single[np.lexsort((np.arange(n), pick))[:n_single]] = True
    sizes = np.ones(n, dtype=np.int64)
    multi_keys = [k for k, s in zip(keys, single, strict=True) if not s]
    u = stratified_uniforms(seed, "size", multi_keys)
    sizes[~single] = 2 + np.floor(size_x(u)).astype(np.int64)
    return sizes


def merchant_attributes(seed: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mcc Int32, class index, channel index) per merchant: MCC ∝ table weight, then
    card-not-present with the MCC's probability."""
    keys = [int(m) for m in ids]
    mcc, cls, weight, p_cnp = mcc_arrays()
    pick = keyed.weighted_choice(keyed.keyed_uniforms(seed, "mcc", keys), weight)
    cnp = keyed.keyed_uniforms(seed, "channel", keys) < p_cnp[pick]
    return mcc[pick], cls[pick], cnp.astype(np.int64)


def realistic_virtual(
    seed: int, ids: np.ndarray, cls: np.ndarray, channel: np.ndarray, virtual_share: float
) -> np.ndarray:
    """Virtual flags calibrated to exactly ``round(virtual_share · n)`` merchants.

    Card-present merchants are never virtual. Card-not-present digital merchants take
    ``min(round(0.9 · D), target)`` of the places (D = their count); the rest go to other
    card-not-present merchants, so those are virtual only rarely. Within each pool the merchants
    with the lowest keyed uniforms are chosen.
    """
    n = ids.size
    target = round(virtual_share * n)
    u = keyed.keyed_uniforms(seed, "virtual", [int(m) for m in ids])
    cnp = channel == CHANNELS.index("card_not_present")
    digital = cls == CLASSES.index("digital")
    out = np.zeros(n, dtype=bool)
    pools = (np.flatnonzero(cnp & digital), np.flatnonzero(cnp & ~digital))
    take_d = min(round(VIRTUAL_DIGITAL_CNP * pools[0].size), target)
    take_o = min(target - take_d, pools[1].size)
    for pool, take in zip(pools, (take_d, take_o), strict=True):
        chosen = pool[np.lexsort((pool, u[pool]))[:take]]
        out[chosen] = True
    return out


def smoke_virtual(seed: int, ids: np.ndarray) -> np.ndarray:
    """The compat law of upstream-world.md §2:
    ``uint32_BE(SHA256(utf8("{merchant_id}:{seed}"))[0:4]) mod 100 < 10``."""
    return np.fromiter(
        (
            int.from_bytes(hashlib.sha256(f"{int(m)}:{seed}".encode()).digest()[:4], "big") % 100
            < 10
            for m in ids
        ),
        dtype=bool,
        count=ids.size,
    )
