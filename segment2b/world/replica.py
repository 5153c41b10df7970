"""The ``replica`` profile: a statistical re-creation of the measured upstream world
(upstream-world.md §3) including artefacts 1 and 2 of §4.

Calibrated only to the measured world, never to Segment 2B's gates:

* **Sizes** — the measured quantiles and size bins as a piecewise log-linear quantile function,
  sampled with stratified uniforms (:data:`SIZE_KNOTS`).
* **Countries** — the measured top-20 site counts plus 57 further countries (77 in all) whose
  counts decay geometrically to make up the other 14.3 % of sites; home and foreign countries are
  drawn ∝ those counts, a market absorbs at most 1.2× its measured share, and a country that
  drew no merchant receives one site of a large merchant so all 77 appear.
* **Footprint** — P(multi-country) logistic in log N (37 % overall), the measured ECDF of
  countries per merchant (:data:`EXTRA_COUNTRY_PMF`) and a home share of 20–55 %, which gives
  the measured ~38 % of rows with home ≠ legal country.
* **Placement (artefact 1)** — 1B's tile layout: each country's sites sit on ``⌈S_c^0.64⌉``
  tiles on one latitude row (DE: ~210 tiles at lat 51.279167), and largest-remainder allocation
  reused the same top tiles for every merchant: site ``s`` of a (merchant, country) goes to tile
  ``(s − 1) mod T`` in the country's fixed tile order. Points jitter within their tile.
* **Non-representative rows (artefact 2)** — :data:`ROWS`: NL on Bonaire (America/Kralendijk),
  NO at lat 78.63 (Arctic/Longyearbyen), US on the Arizona–Sonora line (Phoenix + Hermosillo),
  CN at (25.60, ~98.3) (Yangon + Shanghai), BR at lat 1.72 (Manaus + Bogota), AU in Queensland
  (Brisbane), BE mostly across the French border (≈ 60 % Europe/Paris), CH ≈ 15 % Paris, DE's
  row running into Poland (≈ 9 % of DE sites outside Europe/Berlin, as measured). Other
  countries' rows run through their largest gazetteer place; a row that crosses a border gives
  the country a second zone, as in the measured 23 two-zone countries.

Virtual flags and the roster follow the smoke law (artefact 6) — see ``roster.smoke_roster``.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from segment2b.world import keyed
from segment2b.world import merchants as mer
from segment2b.world.config import WorldConfig
from segment2b.world.footprint import FootprintLaw, draw_footprint
from segment2b.world.gazetteer import load_countries, load_places
from segment2b.world.tzlookup import lookup_tzids

MEASURED_MERCHANTS = 1238
MEASURED_SITES = 31_257

SIZE_KNOTS: tuple[tuple[float, float], ...] = (
    (0.0, 2.0),
    (16 / 1238, 3.0),  # 16 merchants with 2 sites
    (112 / 1238, 6.0),  # ≤ 5 sites: 112
    (0.25, 9.5),  # p25 = 9
    (385 / 1238, 11.0),  # ≤ 10 sites: 385
    (0.50, 16.5),  # p50 = 16
    (0.75, 23.5),  # p75 = 23
    (977 / 1238, 26.0),  # ≤ 25 sites: 977
    (0.90, 36.5),  # p90 = 36
    (1173 / 1238, 51.0),  # ≤ 50 sites: 1,173
    (1209 / 1238, 101.0),  # ≤ 100 sites: 1,209
    (0.99, 168.5),  # p99 = 168
    (1230 / 1238, 251.0),  # ≤ 250 sites: 1,230
    (1233 / 1238, 501.0),  # ≤ 500 sites: 1,233
    (1236 / 1238, 1001.0),  # ≤ 1,000 sites: 1,236
    (1.0, 2547.0),  # max 2,546
)
"""Quantile function of X + 2 = sites (log-linear between knots) from §3's quantiles and bins."""

TOP20_SITES: dict[str, int] = {
    "DE": 4269, "FR": 3131, "GB": 2915, "DK": 1977, "BM": 1777, "CH": 1727, "IT": 1568,
    "AU": 1309, "ES": 1285, "NO": 1167, "NL": 1019, "SG": 678, "HK": 643, "US": 599,
    "QA": 537, "MO": 493, "IS": 481, "AE": 413, "BE": 412, "IL": 395,
}  # fmt: skip
OTHER_COUNTRIES: tuple[str, ...] = (
    "SE", "AT", "LU", "IE", "JP", "KR", "CA", "FI", "PT", "GR", "FJ", "CZ", "PL", "KW", "SA",
    "TW", "BH", "OM", "CY", "MT", "MC", "HU", "SK", "SI", "EE", "LV", "LT", "HR", "RO", "BG",
    "CO", "CN", "LB", "RS", "BR", "MX", "MY", "TH", "TR", "ZA", "PA", "PR", "TT", "BB", "BS",
    "AD", "JE", "IM", "GI", "BN", "MN", "CR", "KE", "IN", "ID", "PH", "JO",
)  # fmt: skip
"""The 57 countries beyond the top 20, in decreasing size: a GDP-per-capita-weighted, Europe-
centric mix (artefact 4) with CN and BR at their measured ~54 / ~46 sites. None lies south of
the measured minimum latitude (−30.1°); FJ supplies the measured near-dateline longitudes."""
OTHER_FIRST = 200.0
OTHER_RATIO = 0.9597  # 200 · 0.9597^i, i = 0..56, sums to the remaining 4,462 sites

EXTRA_COUNTRY_PMF: tuple[float, ...] = (
    0.305, 0.214, 0.187, 0.134, 0.053, 0.030, 0.023, 0.020, 0.018, 0.016,
)  # fmt: skip
"""P(k = 2 … 11 | multi-country) from the measured ECDF (1: 62.6 %, ≤2: 74 %, ≤3: 82 %, ≤4:
89 %, ≤5: 94 %, ≤6: 96 %, ≤8: 98 %, max 11)."""

REPLICA_FOOTPRINT = FootprintLaw(
    multi_a=-3.1,
    multi_b=0.95,
    zipf_s=0.0,  # unused: EXTRA_COUNTRY_PMF replaces the Zipf law
    max_countries=11,
    home_lo=0.20,
    home_hi=0.55,
    region_share=0.65,
    market_budget=1.2,
    extra_pmf=EXTRA_COUNTRY_PMF,
    breadth_by_size=False,
)

ROWS: dict[str, tuple[float, float, float]] = {
    "DE": (51.279167, 7.0, 15.8),
    "FR": (47.0, 0.0, 4.5),
    "GB": (52.5, -2.5, 0.5),
    "DK": (55.6, 9.2, 12.4),
    "BM": (32.30, -64.85, -64.70),
    "CH": (46.8, 6.0, 9.5),
    "IT": (42.0, 12.0, 14.0),
    "AU": (-27.5, 150.5, 153.0),
    "ES": (40.4, -5.0, -1.5),
    "NO": (78.63, 12.0, 17.0),
    "NL": (12.11, -68.30, -68.20),
    "SG": (1.35, 103.7, 103.95),
    "HK": (22.35, 114.05, 114.25),
    "US": (31.36, -111.25, -109.2),
    "QA": (25.29, 51.40, 51.55),
    "MO": (22.19, 113.535, 113.56),
    "IS": (64.14, -21.95, -21.80),
    "AE": (25.20, 55.20, 55.40),
    "BE": (50.45, 2.0, 4.8),
    "IL": (32.08, 34.77, 34.95),
    "CN": (25.60, 97.9, 98.55),
    "BR": (1.72, -70.5, -67.5),
}
"""Explicit tile rows (lat, lon_west, lon_east) of the measured / artefact-2 countries."""

TILE_EXPONENT = 0.64  # DE: 4,269 sites → 210 tiles (measured 215)
TILE_LAT_JITTER = 0.0025  # degrees; the measured within-country spread is Δlat < 0.05°


def replica_country_sites() -> dict[str, float]:
    """Measured site count per replica country (77 countries)."""
    out: dict[str, float] = {k: float(v) for k, v in TOP20_SITES.items()}
    for i, iso in enumerate(OTHER_COUNTRIES):
        out[iso] = OTHER_FIRST * OTHER_RATIO**i
    return dict(sorted(out.items()))


def replica_size_x(u: np.ndarray) -> np.ndarray:
    """X = sites − 2 at uniforms ``u`` from :data:`SIZE_KNOTS` (log-linear interpolation)."""
    qu = np.array([k[0] for k in SIZE_KNOTS])
    qv = np.log(np.array([k[1] for k in SIZE_KNOTS]))
    return np.exp(np.interp(u, qu, qv)) - 2.0


def _country_frame() -> pl.DataFrame:
    sites = replica_country_sites()
    total = sum(sites.values())
    cont = dict(load_countries().select("iso2", "continent").iter_rows())
    return pl.DataFrame(
        {
            "iso2": list(sites),
            "continent": [cont[c] for c in sites],
            "weight": [v / total for v in sites.values()],
            "capacity": [1 << 40] * len(sites),
        },
        schema={
            "iso2": pl.String,
            "continent": pl.String,
            "weight": pl.Float64,
            "capacity": pl.Int64,
        },
    )


def _cover_all(seed: int, ids: np.ndarray, pairs: pl.DataFrame, n_countries: int) -> pl.DataFrame:
    """Give each country that drew no merchant one site of a merchant with ≥ 2 sites in its
    first (home) country, chosen by keyed uniform ∝ those home sites."""
    present = set(pairs["country_idx"].unique().to_list())
    missing = [c for c in range(n_countries) if c not in present]
    if not missing:
        return pairs
    rows = pairs.with_row_index("r")
    homes = rows.group_by("merchant_idx", maintain_order=True).first().sort("merchant_idx")
    n = pairs["n_sites"].to_numpy().copy()
    extra_m: list[int] = []
    extra_c: list[int] = []
    u = keyed.keyed_uniforms(seed, "replica:cover", missing)
    for c, uc in zip(missing, u.tolist(), strict=True):
        r = homes["r"].to_numpy()
        w = np.maximum(n[r] - 1, 0).astype(np.float64)
        if w.sum() == 0:
            break
        pick = int(r[int(keyed.weighted_choice(np.array([uc]), w)[0])])
        n[pick] -= 1
        extra_m.append(int(pairs["merchant_idx"][pick]))
        extra_c.append(c)
    fixed = pairs.with_columns(n_sites=pl.Series(n, dtype=pl.Int64))
    add = pl.DataFrame(
        {"merchant_idx": extra_m, "country_idx": extra_c, "n_sites": [1] * len(extra_m)},
        schema=fixed.schema,
    )
    return pl.concat([fixed, add]).sort("merchant_idx", maintain_order=True)


def _tiles(seed: int, iso: str, n_tiles: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(lon, lat) of the country's tiles in their fixed allocation order, and tile width."""
    if iso in ROWS:
        lat, west, east = ROWS[iso]
    else:
        places = load_places().filter(pl.col("iso2") == iso)
        hub = places.sort(["population", "place_id"], descending=[True, False]).row(0, named=True)
        extent = float(places["lon"].max() - places["lon"].min())  # type: ignore[operator]
        half = min(max(0.5 * extent, 0.005), 1.0)
        lat, west, east = hub["lat"], hub["lon"] - half, hub["lon"] + half
    width = (east - west) / n_tiles
    lon = west + width * (np.arange(n_tiles) + 0.5)
    lats = np.full(n_tiles, lat)
    land = lookup_tzids(lon, lats) != ""
    if not land.any():  # an all-sea row: one tile on the row's centre
        lon, lats, width = np.array([(west + east) / 2]), np.array([lat]), 0.0
    else:
        lon, lats = lon[land], lats[land]
    order = keyed.keyed_uniforms(seed, "replica:tile", [f"{iso}:{i}" for i in range(lon.size)])
    perm = np.lexsort((np.arange(lon.size), order))
    return lon[perm], lats[perm], width


def replica_sites(
    config: WorldConfig, seed: int, ids: np.ndarray
) -> tuple[pl.DataFrame, np.ndarray]:
    """Sites (merchant_id, legal_country_iso, site_order, lon_deg, lat_deg, tzid) and the home
    country of each merchant, for the replica profile."""
    countries = _country_frame()
    iso = countries["iso2"].to_numpy().astype(str)
    sizes = mer.site_counts(seed, ids, config.single_site_share, replica_size_x)
    fp = draw_footprint(seed, ids, sizes, countries, REPLICA_FOOTPRINT)
    pairs = _cover_all(seed, ids, fp.pairs, iso.size).filter(pl.col("n_sites") > 0)

    p_m = pairs["merchant_idx"].to_numpy()
    p_c = pairs["country_idx"].to_numpy()
    p_n = pairs["n_sites"].to_numpy()
    site_pair = np.repeat(np.arange(p_m.size), p_n)
    starts = np.r_[0, np.cumsum(p_n)[:-1]]
    order = np.arange(site_pair.size) - np.repeat(starts, p_n) + 1
    country_sites = np.bincount(p_c, weights=p_n, minlength=iso.size)

    lon = np.empty(site_pair.size)
    lat = np.empty(site_pair.size)
    half_w = np.empty(site_pair.size)
    for c in np.unique(p_c).tolist():
        n_tiles = max(1, math.ceil(country_sites[c] ** TILE_EXPONENT))
        t_lon, t_lat, width = _tiles(seed, str(iso[c]), n_tiles)
        rows = np.flatnonzero(p_c[site_pair] == c)
        tile = (order[rows] - 1) % t_lon.size  # the same top tiles for every merchant
        lon[rows] = t_lon[tile]
        lat[rows] = t_lat[tile]
        half_w[rows] = width / 2
    sub = keyed.subseeds(seed, "replica:jitter", ["sites"])
    ctr = 2 * np.arange(site_pair.size, dtype=np.uint64)
    u1 = keyed.counter_uniforms(sub, ctr)
    u2 = keyed.counter_uniforms(sub, ctr + np.uint64(1))
    c_lon, c_lat = lon.copy(), lat.copy()
    lon = lon + (2 * u1 - 1) * half_w
    lat = lat + (2 * u2 - 1) * TILE_LAT_JITTER
    tz = lookup_tzids(lon, lat)
    centre_tz = lookup_tzids(c_lon, c_lat)
    sea = tz == ""  # a jittered point off the coast goes back to its tile centre
    lon = np.where(sea, c_lon, lon)
    lat = np.where(sea, c_lat, lat)
    tz = np.where(sea, centre_tz, tz)
    sites = pl.DataFrame(
        {
            "merchant_id": ids[p_m[site_pair]],
            "legal_country_iso": iso[p_c[site_pair]],
            "site_order": order.astype(np.int32),
            "lon_deg": lon,
            "lat_deg": lat,
            "tzid": tz.astype(str),
        },
        schema={
            "merchant_id": pl.UInt64,
            "legal_country_iso": pl.String,
            "site_order": pl.Int32,
            "lon_deg": pl.Float64,
            "lat_deg": pl.Float64,
            "tzid": pl.String,
        },
    )
    return sites, iso[fp.home]
