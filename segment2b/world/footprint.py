"""Country footprint of each merchant: home country, foreign countries and the split of its
sites (upstream-world.md §5.3.5).

Grain of the result: one row per (merchant, legal country) with the number of sites there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from segment2b.world import keyed


@dataclass(frozen=True)
class FootprintLaw:
    """Parameters of the footprint model.

    P(multi-country) = logistic(``multi_a + multi_b · ln N``); home share of the sites
    h ~ U(``home_lo``, ``home_hi``); extra countries k − 1 ~ Zipf(s) truncated at
    ``max_countries − 1`` and at the sites left after the home share; each extra country is
    drawn in the home region with probability ``region_share``, otherwise anywhere, always
    ∝ country weight among countries not yet chosen.
    ``market_budget`` (if set): a country absorbs at most ``market_budget × weight × total
    sites`` sites of the world (market saturation); merchants choose in descending size order,
    so the largest chains pick first and smaller ones fill the remaining room.
    ``extra_pmf`` (if set) replaces the Zipf law: P(k = 2, 3, …) of multi-country merchants.
    ``breadth_by_size`` also bounds the extra countries by ⌊√(2N)⌋. The foreign sites are split
    one each plus the rest ∝ weight × Exp(1) (a Dirichlet(1) draw tilted by the country weights),
    clamped to each market's capacity and room, the overflow going home.
    """

    multi_a: float
    multi_b: float
    zipf_s: float
    max_countries: int
    home_lo: float
    home_hi: float
    region_share: float
    market_budget: float | None = None
    extra_pmf: tuple[float, ...] | None = None
    breadth_by_size: bool = True


REALISTIC_FOOTPRINT = FootprintLaw(
    multi_a=-4.5,
    multi_b=1.4,
    zipf_s=0.8,
    max_countries=12,
    home_lo=0.40,
    home_hi=0.80,
    region_share=0.65,
    market_budget=1.4,
)
"""Calibrated to the measured footprint (§3: 37.4 % multi-country, p90 5, max 11, rising with
size) inside the §5.5 bands (30–40 %, p90 4–5, max 10–12, Spearman(sites, countries) ≥ 0.35):
P(multi) ≈ 0.03 at 2 sites, 0.35 at 16, 0.88 at 100; extra countries Zipf(0.8) truncated at
⌊√(2N)⌋ and 11, its exponent fading to 0 between 16 and 500 sites (large chains are the most
international). A market absorbs at most 1.4× its weight share of all sites: without it one or two
of the heavy-tailed largest chains landing in the same big market would give that country
11–12 % of the world (band ≤ 10 %; artefact 4 had 13.7 %)."""


@dataclass(frozen=True)
class Footprint:
    """Home country index per merchant and the (merchant, country, sites) pairs."""

    home: np.ndarray
    pairs: pl.DataFrame  # merchant_idx Int64, country_idx Int64, n_sites Int64


def _pick(u: float, weights: np.ndarray, allowed: np.ndarray) -> int:
    w = np.where(allowed, weights, 0.0)
    return int(keyed.weighted_choice(np.array([u]), w)[0])


def draw_footprint(
    seed: int,
    ids: np.ndarray,
    sizes: np.ndarray,
    countries: pl.DataFrame,
    law: FootprintLaw,
) -> Footprint:
    """Footprints of all merchants. ``countries`` has ``weight``, ``capacity`` and
    ``continent`` rows (index = country_idx)."""
    n = ids.size
    keys = [int(m) for m in ids]
    weight = countries["weight"].to_numpy()
    capacity = countries["capacity"].to_numpy()
    region = countries["continent"].to_numpy()
    positive = weight > 0

    logit = law.multi_a + law.multi_b * np.log(np.maximum(sizes, 1))
    p_multi = 1.0 / (1.0 + np.exp(-logit))
    multi = (keyed.keyed_uniforms(seed, "footprint:multi", keys) < p_multi) & (sizes >= 2)
    h = law.home_lo + (law.home_hi - law.home_lo) * keyed.keyed_uniforms(
        seed, "footprint:home_share", keys
    )
    home_multi = np.clip(np.rint(h * sizes).astype(np.int64), 1, np.maximum(sizes - 1, 1))
    # Extra countries are bounded by size too: at most ⌊√(2N)⌋ (a 4-site chain spans ≤ 3
    # countries, a 50-site one ≤ 11), which ties breadth to size as in the measured world, and
    # by the sites left after the home share (one site per foreign country at least).
    breadth = np.floor(np.sqrt(2 * sizes)).astype(np.int64) if law.breadth_by_size else sizes
    kmax = np.clip(
        np.minimum(np.minimum(law.max_countries - 1, breadth), sizes - home_multi), 1, None
    )
    u_k = keyed.keyed_uniforms(seed, "footprint:k", keys)
    if law.extra_pmf is None:
        # Large chains spread wider: the Zipf exponent fades from s (≤ 16 sites) to 0, i.e.
        # uniform over the allowed counts, at 500 sites.
        fade = np.clip(1.0 - np.log(np.maximum(sizes, 1) / 16.0) / np.log(500.0 / 16.0), 0, 1)
        extra = keyed.truncated_zipf(u_k, law.zipf_s * fade, kmax)
    else:
        cum = np.cumsum(np.asarray(law.extra_pmf, dtype=np.float64))
        kmax = np.minimum(kmax, cum.size)
        extra = np.minimum(np.searchsorted(cum, u_k * cum[kmax - 1], side="left") + 1, kmax)
    extra = np.where(multi, extra, 0)
    n_home = np.where(multi, home_multi, sizes)
    u_home = keyed.keyed_uniforms(seed, "footprint:home", keys)

    total = float(sizes.sum())
    budget = (
        np.full(weight.size, np.inf)
        if law.market_budget is None
        else law.market_budget * weight * total
    )
    used = np.zeros(weight.size, dtype=np.float64)

    home = np.empty(n, dtype=np.int64)
    alloc_of: dict[int, tuple[list[int], list[int]]] = {}
    for i in np.lexsort((np.arange(n), -sizes)).tolist():
        # A merchant's home must hold its home sites (capacity) with room left in the market;
        # fall back to the roomiest markets only if none qualifies (absurd sizes).
        room = budget - used
        eligible = positive & (capacity >= n_home[i]) & (room >= n_home[i])
        if not eligible.any():
            eligible = positive & (room >= np.max(room[positive]))
        home[i] = _pick(float(u_home[i]), weight, eligible)
        if extra[i] == 0:
            alloc_of[i] = ([int(home[i])], [int(sizes[i])])
            used[home[i]] += sizes[i]
            continue
        chosen = [int(home[i])]
        taken = np.zeros(weight.size, dtype=bool)
        taken[home[i]] = True
        for j in range(int(extra[i])):
            u_r = keyed.keyed_uniforms(seed, "footprint:region", [keys[i]], k=j)[0]
            u_c = keyed.keyed_uniforms(seed, "footprint:country", [keys[i]], k=j)[0]
            allowed = positive & ~taken & (budget - used >= 1)
            if not allowed.any():
                break
            in_region = allowed & (region == region[home[i]])
            pool = in_region if (u_r < law.region_share and in_region.any()) else allowed
            c = _pick(float(u_c), weight, pool)
            chosen.append(c)
            taken[c] = True
        foreign = np.array(chosen[1:], dtype=np.int64)
        if foreign.size == 0:
            alloc_of[i] = ([int(home[i])], [int(sizes[i])])
            used[home[i]] += sizes[i]
            continue
        u_split = keyed.counter_uniforms(
            keyed.subseeds(seed, "footprint:split", [keys[i]]), np.arange(foreign.size)
        )
        shares = weight[foreign] * keyed.exponential(u_split)
        rest = int(sizes[i] - n_home[i])
        alloc = 1 + keyed.largest_remainder(shares, rest - foreign.size)
        # A foreign market holds at most its capacity and remaining room; the overflow goes home.
        limit = np.maximum(np.minimum(capacity[foreign], np.floor(budget - used)[foreign]), 1)
        over = np.maximum(alloc - limit, 0).astype(np.int64)
        alloc = alloc - over
        counts = [int(n_home[i] + over.sum()), *alloc.tolist()]
        alloc_of[i] = (chosen, counts)
        used[np.array(chosen)] += np.array(counts, dtype=np.float64)
    rows_m: list[int] = []
    rows_c: list[int] = []
    rows_n: list[int] = []
    for i in range(n):
        cs, ns = alloc_of[i]
        rows_m.extend([i] * len(cs))
        rows_c.extend(cs)
        rows_n.extend(ns)
    pairs = pl.DataFrame(
        {"merchant_idx": rows_m, "country_idx": rows_c, "n_sites": rows_n},
        schema={"merchant_idx": pl.Int64, "country_idx": pl.Int64, "n_sites": pl.Int64},
    )
    return Footprint(home=home, pairs=pairs)
