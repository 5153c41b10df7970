"""Arrival rosters (upstream-world.md §2 and §5.4).

Grain: one row per arrival, in arrival order — merchant_id UInt64, utc_timestamp (rfc3339 with
exactly 6 fraction digits and ``Z``), utc_day (``YYYY-MM-DD`` = date of utc_timestamp),
is_virtual, channel, mcc.

* ``smoke`` — the compat law: one arrival per merchant of ``site_locations`` at
  ``{start_day}T00:00:00.000000Z``, ``is_virtual`` from the SHA-256 hash bucket; ordered by
  merchant_id (the design's order came from an unordered distinct and was unstable).
* ``realistic`` — every day of the range. Merchant m's daily rate is
  ``λ_m ∝ N_m^0.8 × LogNormal(0, 0.7)``, scaled so the expected total is ``roster_arrivals``
  with a floor ``λ_m ≥ 2`` (every merchant active on most days, repeats within a day). The count
  of each merchant-day is Poisson(λ_m × weekly factor of its class and the UTC day's weekday —
  the local weekday of most arrivals, since the diurnal peak sits well inside the day for
  offsets up to ±8 h).
  Each arrival picks one of the merchant's time zones ∝ its site count there and a local time of
  day from the class's diurnal profile (peak 11:00–20:00), converted to UTC with the zone's
  offset at that instant (pinned tz database). The UTC day is fixed first and the local time is
  mapped into it (``utc = day + (local − offset) mod 24 h``), so no arrival leaves the grid and
  none needs resampling; the local clock time is exact except inside a DST gap/fold hour.
  Order: ``(utc_timestamp, merchant_id, k)``; a merchant's equal timestamps are bumped by +1 µs so
  ``(merchant_id, utc_timestamp)`` is unique.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from segment2b.world import keyed
from segment2b.world.config import WorldConfig
from segment2b.world.mcc import CLASSES
from segment2b.world.merchants import smoke_virtual
from segment2b.world.tzdb import lookup_offsets, offset_table

ROSTER_SCHEMA = {
    "merchant_id": pl.UInt64,
    "utc_timestamp": pl.String,
    "utc_day": pl.String,
    "is_virtual": pl.Boolean,
    "channel": pl.String,
    "mcc": pl.Int32,
}

SIZE_EXPONENT = 0.8
RATE_SIGMA = 0.7
RATE_FLOOR = 2.0
"""Mean arrivals per day of the quietest merchants: active on ~86 % of days, and a median of 2
arrivals on the days they are active (certification preconditions, README §3 item 11)."""

WEEKLY_FACTOR: dict[str, tuple[float, ...]] = {
    # Monday … Sunday; each averages 1 over the week.
    "physical_retail": (0.92, 0.92, 0.92, 0.92, 0.92, 1.20, 1.20),  # weekend +20 % shopping
    "services": (1.06, 1.06, 1.06, 1.06, 1.06, 0.85, 0.85),  # appointments: weekend −15 %
    "digital": (0.96, 0.96, 0.96, 0.96, 0.96, 1.10, 1.10),  # leisure use: weekend +10 %
}

_STORE_HOURS = (
    0.20, 0.10, 0.05, 0.05, 0.05, 0.10, 0.30, 0.60, 0.90, 1.10, 1.30, 1.55,
    1.75, 1.65, 1.50, 1.50, 1.60, 1.80, 1.90, 1.70, 1.30, 0.90, 0.60, 0.35,
)  # fmt: skip
_ONLINE_HOURS = (
    0.45, 0.30, 0.20, 0.15, 0.15, 0.20, 0.35, 0.55, 0.75, 0.90, 1.00, 1.15,
    1.25, 1.20, 1.15, 1.15, 1.20, 1.30, 1.45, 1.60, 1.65, 1.40, 1.05, 0.70,
)  # fmt: skip
DIURNAL: dict[str, tuple[float, ...]] = {
    "physical_retail": _STORE_HOURS,  # lunch and after-work peaks, maximum 18:00
    "services": _STORE_HOURS,
    "digital": _ONLINE_HOURS,  # flatter, evening maximum 20:00
}

_US_PER_DAY = 86_400_000_000
_EPOCH = dt.date(1970, 1, 1)


def _format_times(merchant_id: np.ndarray, us: np.ndarray) -> pl.DataFrame:
    ts = pl.Series("t", us, dtype=pl.Int64).cast(pl.Datetime("us"))
    return pl.DataFrame(
        {"merchant_id": merchant_id}, schema={"merchant_id": pl.UInt64}
    ).with_columns(
        utc_timestamp=ts.dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"),
        utc_day=ts.dt.strftime("%Y-%m-%d"),
    )


def smoke_roster(
    config: WorldConfig, seed: int, merchants: pl.DataFrame, locations: pl.DataFrame
) -> pl.DataFrame:
    """The compat (smoke) roster of upstream-world.md §2, ordered by merchant_id."""
    ids = locations["merchant_id"].unique().sort()
    attrs = merchants.join(pl.DataFrame({"merchant_id": ids}), on="merchant_id", how="semi").sort(
        "merchant_id"
    )
    day = config.start_day.isoformat()
    return attrs.select(
        "merchant_id",
        pl.lit(f"{day}T00:00:00.000000Z").alias("utc_timestamp"),
        pl.lit(day).alias("utc_day"),
        pl.Series("is_virtual", smoke_virtual(seed, attrs["merchant_id"].to_numpy())),
        "channel",
        "mcc",
    ).cast(ROSTER_SCHEMA)  # type: ignore[arg-type]


def _daily_rates(
    seed: int, ids: np.ndarray, n_sites: np.ndarray, target: float, n_days: int
) -> np.ndarray:
    shape = keyed.lognormal(
        keyed.keyed_uniforms(seed, "roster:rate", ids.tolist()), 0.0, RATE_SIGMA
    )
    raw = n_sites.astype(np.float64) ** SIZE_EXPONENT * shape
    per_day = target / n_days
    if per_day <= RATE_FLOOR * ids.size:
        return np.full(ids.size, RATE_FLOOR)
    # Solve Σ max(c·raw, floor) = per_day for c by bisection (the sum is increasing in c).
    lo, hi = 0.0, per_day / float(raw.min())
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if float(np.maximum(mid * raw, RATE_FLOOR).sum()) < per_day:
            lo = mid
        else:
            hi = mid
    return np.maximum(hi * raw, RATE_FLOOR)


def realistic_roster(
    config: WorldConfig,
    seed: int,
    merchants: pl.DataFrame,
    locations: pl.DataFrame,
    timezones: pl.DataFrame,
) -> pl.DataFrame:
    """The realistic multi-day roster (module docstring)."""
    # Cumulative site share of each merchant's zones (tzid order), the last one exactly 1.
    zone_sites = (
        timezones.group_by("merchant_id", "tzid")
        .agg(pl.len().alias("sites"))
        .sort("merchant_id", "tzid")
        .with_columns(
            cum=pl.col("sites").cum_sum().over("merchant_id")
            / pl.col("sites").sum().over("merchant_id")
        )
    )
    attrs = merchants.join(
        locations.group_by("merchant_id").agg(pl.len().alias("n_sites")), on="merchant_id"
    ).sort("merchant_id")
    ids = attrs["merchant_id"].to_numpy()
    n_m = ids.size
    n_days = config.n_days
    cls_idx = np.array([CLASSES.index(c) for c in attrs["mcc_class"].to_list()], dtype=np.int64)
    rates = _daily_rates(seed, ids, attrs["n_sites"].to_numpy(), config.roster_arrivals, n_days)

    # Counts per merchant-day: Poisson(rate × weekly factor), draw d of the merchant's stream.
    sub = keyed.subseeds(seed, "roster", ids.tolist())
    start_ord = (config.start_day - _EPOCH).days
    days = np.arange(n_days)
    weekday = (config.start_day.weekday() + days) % 7
    weekly = np.array([WEEKLY_FACTOR[c] for c in CLASSES])  # class × weekday
    lam = rates[:, None] * weekly[cls_idx][:, weekday]
    u_day = keyed.counter_uniforms(sub[:, None], days[None, :].astype(np.uint64))
    counts = keyed.poisson(u_day, lam)
    # Guarantee a repeated merchant-day: a merchant without one gets 2 arrivals on its busiest
    # day (first such day).
    no_repeat = counts.max(axis=1) < 2
    if no_repeat.any():
        rows = np.flatnonzero(no_repeat)
        counts[rows, counts[rows].argmax(axis=1)] = 2

    flat = counts.ravel()
    m_of = np.repeat(np.repeat(np.arange(n_m), n_days), flat)
    d_of = np.repeat(np.tile(days, n_m), flat)
    per_m = counts.sum(axis=1)
    first = np.repeat(np.r_[0, np.cumsum(per_m)[:-1]], per_m)
    k = np.arange(m_of.size) - first  # arrival index within the merchant
    base = np.uint64(1 << 32)  # arrival draws sit above the day draws of the stream
    ctr = base + np.uint64(3) * k.astype(np.uint64)
    u_tz = keyed.counter_uniforms(sub[m_of], ctr)
    u_hour = keyed.counter_uniforms(sub[m_of], ctr + np.uint64(1))
    u_frac = keyed.counter_uniforms(sub[m_of], ctr + np.uint64(2))

    # Time zone ∝ site count: one searchsorted over "merchant index + cumulative share".
    zs_m = np.searchsorted(ids, zone_sites["merchant_id"].to_numpy())
    last = np.r_[zs_m[1:] != zs_m[:-1], True]
    key = zs_m + np.where(last, 1.0, zone_sites["cum"].to_numpy())
    row = np.searchsorted(key, m_of + u_tz, side="left")
    zones, zs_zone = np.unique(zone_sites["tzid"].to_numpy().astype(str), return_inverse=True)
    zone_idx = zs_zone[row]

    # Local time of day from the class profile: hour by inverse CDF, then uniform within it.
    profiles = np.array([np.cumsum(DIURNAL[c]) / np.sum(DIURNAL[c]) for c in CLASSES])
    a_cls = cls_idx[m_of]
    # First hour whose cumulative share reaches u: the count of cumulative shares < u, i.e. a
    # left searchsorted per class (profiles are strictly increasing) — no arrivals × 24 matrix.
    hour = np.empty(m_of.size, dtype=np.int64)
    for c in range(len(CLASSES)):
        sel = a_cls == c
        hour[sel] = np.searchsorted(profiles[c], u_hour[sel], side="left")
    hour = np.minimum(hour, 23)
    local_us = hour.astype(np.int64) * 3_600_000_000 + np.floor(u_frac * 3_600_000_000).astype(
        np.int64
    )

    # Local → UTC inside the fixed UTC day: offset at noon of the day, refined at the instant.
    day0 = (start_ord + d_of).astype(np.int64) * 86_400
    window = (int(day0.min()) - 86_400, int(day0.max()) + 2 * 86_400) if day0.size else (0, 1)
    table = offset_table(zones.tolist(), window[0], window[1])
    off = lookup_offsets(table, zone_idx, day0 + 43_200)
    utc_us = (local_us - off * 1_000_000) % _US_PER_DAY
    off = lookup_offsets(table, zone_idx, day0 + utc_us // 1_000_000)
    utc_us = day0 * 1_000_000 + (local_us - off * 1_000_000) % _US_PER_DAY

    frame = pl.DataFrame(
        {"m": m_of, "k": k, "t": utc_us},
        schema={"m": pl.Int64, "k": pl.Int64, "t": pl.Int64},
    )
    # +1 µs bumps: t'_i = max(t_i, t'_{i-1} + 1) within a merchant = i + cummax(t_j − j).
    frame = (
        frame.sort("m", "t", "k")
        .with_columns(pos=pl.int_range(pl.len()).over("m"))
        .with_columns(t=(pl.col("t") - pl.col("pos")).cum_max().over("m") + pl.col("pos"))
        .sort("t", "m", "k")
    )
    m_sorted = frame["m"].to_numpy()
    out = _format_times(ids[m_sorted], frame["t"].to_numpy())
    return out.with_columns(
        is_virtual=pl.Series(attrs["is_virtual"].to_numpy()[m_sorted]),
        channel=pl.Series(attrs["channel"].to_numpy()[m_sorted]),
        mcc=pl.Series(attrs["mcc"].to_numpy()[m_sorted]),
    ).cast(ROSTER_SCHEMA)  # type: ignore[arg-type]
