"""From placed sites to the two egress tables: ``site_locations`` (1B) and ``site_timezones``
(2A, without the seed / manifest_fingerprint / created_utc columns the writer adds).

Grain of both: one row per site, PK and sort order (merchant_id, legal_country_iso, site_order);
built in one pass so key parity holds by construction (upstream-world.md §6.4).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from segment2b.world import keyed
from segment2b.world.tzdb import country_zones
from segment2b.world.tzlookup import lookup_tzids

OVERRIDE_RATE = 1e-4
NUDGE_RATE = 2e-4
NUDGE_EPSILON_DEG = 1e-5
"""2A's boundary ε-nudge moves a point by (+ε, +ε) degrees and records the nudged point in
``nudge_lat_deg`` / ``nudge_lon_deg``; its tzid is the lookup there. The generator injects
``max(1, round(rate · sites))`` overrides (scope ``country``, another zone of a multi-zone country)
and nudges so the nullable columns are exercised (§5.3.7)."""

LOCATION_SCHEMA = {
    "merchant_id": pl.UInt64,
    "legal_country_iso": pl.String,
    "site_order": pl.Int32,
    "lon_deg": pl.Float64,
    "lat_deg": pl.Float64,
}
TIMEZONE_SCHEMA = {
    "merchant_id": pl.UInt64,
    "legal_country_iso": pl.String,
    "site_order": pl.Int32,
    "tzid": pl.String,
    "tzid_source": pl.String,
    "override_scope": pl.String,
    "nudge_lat_deg": pl.Float64,
    "nudge_lon_deg": pl.Float64,
}
PK = ["merchant_id", "legal_country_iso", "site_order"]


def _lowest(u: np.ndarray, eligible: np.ndarray, count: int) -> np.ndarray:
    idx = np.flatnonzero(eligible)
    return idx[np.lexsort((idx, u[idx]))[:count]]


def build_site_tables(seed: int, sites: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``sites`` has merchant_id, legal_country_iso, site_order, lon_deg, lat_deg, tzid (the
    polygon zone at the point). Returns (site_locations, site_timezones), PK-sorted."""
    s = sites.sort(PK)
    n = s.height
    tz = s["tzid"].to_numpy().astype(object)
    lon = s["lon_deg"].to_numpy()
    lat = s["lat_deg"].to_numpy()
    sub = keyed.subseeds(seed, "tz:inject", ["sites"])
    u_over = keyed.counter_uniforms(sub, np.arange(n, dtype=np.uint64))
    u_nudge = keyed.counter_uniforms(sub, np.arange(n, dtype=np.uint64) + np.uint64(n))

    # Another zone of the site's country, only for countries the tz database splits in two or
    # more zones (computed per distinct (country, zone), then mapped back to the rows).
    zones = country_zones()
    combos = s.select("legal_country_iso", "tzid").unique().sort("legal_country_iso", "tzid")
    alt_of = {
        (c, t): next((z for z in zones.get(c, ()) if z != t), "")
        if len(zones.get(c, ())) > 1
        else ""
        for c, t in combos.iter_rows()
    }
    alt = (
        s.select("legal_country_iso", "tzid")
        .join(
            pl.DataFrame(
                {
                    "legal_country_iso": [k[0] for k in alt_of],
                    "tzid": [k[1] for k in alt_of],
                    "alt": list(alt_of.values()),
                },
                schema={"legal_country_iso": pl.String, "tzid": pl.String, "alt": pl.String},
            ),
            on=["legal_country_iso", "tzid"],
            how="left",
            maintain_order="left",
        )["alt"]
        .to_numpy()
        .astype(object)
    )
    source = np.full(n, "polygon", dtype=object)
    scope = np.full(n, None, dtype=object)
    over = _lowest(u_over, alt != "", max(1, round(OVERRIDE_RATE * n)) if n else 0)
    tz[over] = alt[over]
    source[over] = "override"
    scope[over] = "country"

    nudge_lat = np.full(n, np.nan)
    nudge_lon = np.full(n, np.nan)
    eligible = source == "polygon"
    want = max(1, round(NUDGE_RATE * n)) if n else 0
    cand = _lowest(u_nudge, eligible, want + 8)
    moved_lat = np.minimum(lat[cand] + NUDGE_EPSILON_DEG, 90.0)
    moved_lon = (lon[cand] + NUDGE_EPSILON_DEG + 180.0) % 360.0 - 180.0
    moved_tz = lookup_tzids(moved_lon, moved_lat)
    ok = np.flatnonzero(moved_tz != "")[:want]
    rows = cand[ok]
    nudge_lat[rows] = moved_lat[ok]
    nudge_lon[rows] = moved_lon[ok]
    tz[rows] = moved_tz[ok]

    locations = s.select(list(LOCATION_SCHEMA)).cast(LOCATION_SCHEMA)  # type: ignore[arg-type]
    timezones = s.select(PK).with_columns(
        pl.Series("tzid", tz.astype(str), dtype=pl.String),
        pl.Series("tzid_source", source.astype(str), dtype=pl.String),
        pl.Series("override_scope", scope.tolist(), dtype=pl.String),
        pl.Series("nudge_lat_deg", nudge_lat, dtype=pl.Float64).fill_nan(None),
        pl.Series("nudge_lon_deg", nudge_lon, dtype=pl.Float64).fill_nan(None),
    )
    return locations, timezones.cast(TIMEZONE_SCHEMA)  # type: ignore[arg-type]
