"""Realistic placement of sites over gazetteer places, and their time zones
(upstream-world.md §5.3.6–5.3.7).

Grain of the result: one row per site (merchant_idx, country_idx, site_order, lon, lat, tzid),
``site_order`` 1..n within each (merchant, country), hub place first.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from segment2b.world import keyed
from segment2b.world.tzlookup import lookup_tzids

PLACE_ALPHA = 0.9
"""Places are drawn ∝ population^0.9: big cities attract chains slightly less than in
proportion to their size."""
PLACES_EXPONENT = 0.6
"""A merchant with n sites in a country uses m = min(⌈n^0.6⌉, max(1, ⌊n/2⌋)) distinct places:
the law's ⌈n^0.6⌉ (which is ≤ n/2 from n = 6 on), but at least two sites per place for the
smallest pairs, so a 2-site pair sits in one town rather than two lone outlets."""
KM_PER_DEG = 111.32
JITTER_COUNTER = np.uint64(1 << 20)
"""First counter of the jitter draws in a pair's stream (place keys and shares stay below)."""
JITTER_TRIES = 4


def jitter_radius_km(population: np.ndarray) -> np.ndarray:
    """R = clamp(2 km · (pop / 1e5)^0.4, 1 km, 25 km): the urban footprint of a place."""
    return np.clip(2.0 * (population / 1e5) ** 0.4, 1.0, 25.0)


def _offset_points(
    lon: np.ndarray, lat: np.ndarray, r_km: np.ndarray, theta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    new_lat = np.clip(lat + r_km * np.cos(theta) / KM_PER_DEG, -89.9, 89.9)
    coslat = np.maximum(np.cos(np.radians(lat)), 0.01)
    new_lon = lon + r_km * np.sin(theta) / (KM_PER_DEG * coslat)
    new_lon = (new_lon + 180.0) % 360.0 - 180.0
    return new_lon, new_lat


def place_sites(
    seed: int,
    ids: np.ndarray,
    pairs: pl.DataFrame,
    country_iso: np.ndarray,
    places: pl.DataFrame,
) -> pl.DataFrame:
    """Sites of every (merchant, country) pair.

    Per pair with n sites: draw m places (:data:`PLACES_EXPONENT`, at most the country's
    places) ∝ population^0.9 without repeats (Efraimidis–Spirakis keys), give each
    ``min(2, n // m)`` sites and split the rest by a Dirichlet(½) whose shares, sorted, go to
    the drawn places by population, the largest to the most populous (the hub). Each site is
    jittered radially, r = R·√u, around its place centre; when the polygon lookup of the
    jittered point is empty (sea) or differs from the place's zone it redraws, and after
    :data:`JITTER_TRIES` draws falls back to the place centre (whose zone the gazetteer stores
    as the lookup there), so ``tzid`` always equals the lookup of the stored point.
    """
    by_country = places.with_row_index("gidx").partition_by("iso2", as_dict=True)
    pop_all = places["population"].to_numpy().astype(np.float64)
    lon_all = places["lon"].to_numpy()
    lat_all = places["lat"].to_numpy()
    tz_all = places["tzid"].to_numpy()

    p_m = pairs["merchant_idx"].to_numpy()
    p_c = pairs["country_idx"].to_numpy()
    p_n = pairs["n_sites"].to_numpy()
    pair_keys = [f"{int(ids[m])}:{country_iso[c]}" for m, c in zip(p_m, p_c, strict=True)]
    pair_sub = keyed.subseeds(seed, "place", pair_keys)

    site_pair: list[np.ndarray] = []
    site_place: list[np.ndarray] = []
    for c in np.unique(p_c).tolist():
        cplaces = by_country[(str(country_iso[c]),)]
        gidx = cplaces["gidx"].to_numpy().astype(np.int64)
        w = pop_all[gidx] ** PLACE_ALPHA
        rows = np.flatnonzero(p_c == c)
        n = p_n[rows]
        # m = min(n, ⌈n^0.6⌉) places, but never more than one per two sites (see below).
        m = np.minimum(np.ceil(n**PLACES_EXPONENT).astype(np.int64), np.maximum(n // 2, 1))
        m = np.minimum(m, gidx.size)
        # One uniform per (pair, place); keys ln(u)/w, the m largest win (weighted, no repeats).
        u = keyed.counter_uniforms(pair_sub[rows][:, None], np.arange(gidx.size)[None, :])
        keys = np.log(u) / w[None, :]
        mmax = int(m.max())
        if mmax < gidx.size:
            top = np.argpartition(-keys, mmax - 1, axis=1)[:, :mmax]
        else:
            top = np.broadcast_to(np.arange(gidx.size), (rows.size, gidx.size))
        for r, row in enumerate(rows.tolist()):
            cand = top[r]
            chosen = cand[np.argsort(-keys[r, cand], kind="stable")][: m[r]]
            # Hub first: chosen places by population (desc), shares sorted (desc) alongside.
            chosen = chosen[np.lexsort((chosen, -pop_all[gidx[chosen]]))]
            u_share = keyed.counter_uniforms(
                pair_sub[row], gidx.size + np.arange(chosen.size, dtype=np.uint64)
            )
            shares = np.sort(keyed.half_dirichlet(u_share))[::-1]
            # Every place gets two sites when the pair has enough (one otherwise): a chain that
            # enters a town rarely opens a single outlet there, and lone outlets in small
            # towns would make the nearest-neighbour tail unbounded.
            base = min(2, int(n[r]) // chosen.size)
            alloc = base + keyed.largest_remainder(shares, int(n[r]) - base * chosen.size)
            site_pair.append(np.full(int(n[r]), row, dtype=np.int64))
            site_place.append(np.repeat(gidx[chosen], alloc))
    spair = np.concatenate(site_pair)
    splace = np.concatenate(site_place)
    # site_order: position within the pair in hub-first order.
    starts = np.r_[0, np.flatnonzero(np.diff(spair)) + 1]
    order = np.arange(spair.size) - np.repeat(starts, np.diff(np.r_[starts, spair.size])) + 1

    # Jitter draws sit far above the place keys and share draws of the pair's stream; a site
    # whose jittered point leaves its place's zone (sea, border) redraws up to JITTER_TRIES times
    # before falling back to the place centre, so few sites share identical coordinates.
    place_lon, place_lat = lon_all[splace], lat_all[splace]
    place_tz = tz_all[splace]
    radius = jitter_radius_km(pop_all[splace])
    lon, lat, tz = place_lon.copy(), place_lat.copy(), place_tz.copy()
    todo = np.arange(spair.size)
    for attempt in range(JITTER_TRIES):
        ctr = (
            JITTER_COUNTER
            + np.uint64(2 * JITTER_TRIES) * (order[todo].astype(np.uint64) - np.uint64(1))
            + np.uint64(2 * attempt)
        )
        u_r = keyed.counter_uniforms(pair_sub[spair[todo]], ctr)
        u_t = keyed.counter_uniforms(pair_sub[spair[todo]], ctr + np.uint64(1))
        j_lon, j_lat = _offset_points(
            place_lon[todo], place_lat[todo], radius[todo] * np.sqrt(u_r), 2.0 * math.pi * u_t
        )
        ok = lookup_tzids(j_lon, j_lat) == place_tz[todo]
        lon[todo[ok]] = j_lon[ok]
        lat[todo[ok]] = j_lat[ok]
        todo = todo[~ok]
        if todo.size == 0:
            break
    return pl.DataFrame(
        {
            "merchant_idx": p_m[spair],
            "country_idx": p_c[spair],
            "site_order": order.astype(np.int32),
            "lon_deg": lon,
            "lat_deg": lat,
            "tzid": tz.astype(str),
            "place_idx": splace,
        },
        schema_overrides={"site_order": pl.Int32},
    )
