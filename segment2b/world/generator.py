"""``generate_world(config, seed)``: the embedded upstream world as pure polars tables.

No I/O (beyond reading the packaged gazetteer), no clock, no unseeded randomness: the same
config and seed give identical frames. The lead's writer adds the partition columns and writes.

Tables of :class:`World`:

* ``site_locations`` — one row per site: merchant_id UInt64, legal_country_iso, site_order Int32,
  lon_deg, lat_deg; PK-sorted (merchant_id, legal_country_iso, site_order).
* ``site_timezones`` — one row per site (1:1 with site_locations, same order): PK, tzid,
  tzid_source, override_scope (nullable), nudge_lat_deg / nudge_lon_deg (nullable).
* ``merchants`` — one row per merchant: merchant_id, mcc Int32, mcc_class, channel,
  home_country_iso, is_virtual; sorted by merchant_id.
* ``roster`` — one row per arrival in arrival order: merchant_id, utc_timestamp (rfc3339, 6
  fraction digits, Z), utc_day, is_virtual, channel, mcc.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from segment2b.world import merchants as mer
from segment2b.world import replica
from segment2b.world.config import WorldConfig
from segment2b.world.country_mix import country_table
from segment2b.world.footprint import REALISTIC_FOOTPRINT, draw_footprint
from segment2b.world.gazetteer import load_countries, load_places
from segment2b.world.mcc import CHANNELS, CLASSES
from segment2b.world.placement import place_sites
from segment2b.world.roster import realistic_roster, smoke_roster
from segment2b.world.site_tables import build_site_tables

MERCHANT_SCHEMA = {
    "merchant_id": pl.UInt64,
    "mcc": pl.Int32,
    "mcc_class": pl.String,
    "channel": pl.String,
    "home_country_iso": pl.String,
    "is_virtual": pl.Boolean,
}


@dataclass(frozen=True)
class World:
    """One generated world (see the module docstring for the grain of each table)."""

    site_locations: pl.DataFrame
    site_timezones: pl.DataFrame
    merchants: pl.DataFrame
    roster: pl.DataFrame
    seed: int
    profile: str


def _merchant_table(
    ids: np.ndarray,
    *,
    mcc: np.ndarray,
    cls: np.ndarray,
    channel: np.ndarray,
    home_iso: np.ndarray,
    virtual: np.ndarray,
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "merchant_id": ids,
            "mcc": mcc.astype(np.int32),
            "mcc_class": np.array(CLASSES, dtype=object)[cls].astype(str),
            "channel": np.array(CHANNELS, dtype=object)[channel].astype(str),
            "home_country_iso": home_iso.astype(str),
            "is_virtual": virtual,
        },
        schema=MERCHANT_SCHEMA,
    ).sort("merchant_id")


def _realistic_sites(
    config: WorldConfig, seed: int, ids: np.ndarray
) -> tuple[pl.DataFrame, np.ndarray]:
    countries = country_table(load_countries())
    iso = countries["iso2"].to_numpy().astype(str)
    sizes = mer.site_counts(seed, ids, config.single_site_share, mer.realistic_size_x)
    fp = draw_footprint(seed, ids, sizes, countries, REALISTIC_FOOTPRINT)
    placed = place_sites(seed, ids, fp.pairs, iso, load_places())
    sites = pl.DataFrame(
        {
            "merchant_id": ids[placed["merchant_idx"].to_numpy()],
            "legal_country_iso": iso[placed["country_idx"].to_numpy()],
        },
        schema={"merchant_id": pl.UInt64, "legal_country_iso": pl.String},
    ).hstack(placed.select("site_order", "lon_deg", "lat_deg", "tzid"))
    return sites, iso[fp.home]


def generate_world(config: WorldConfig, seed: int) -> World:
    """Generate the world of one seed (pure; deterministic in ``config`` and ``seed``)."""
    if seed < 0 or seed >= 2**64:
        raise ValueError("seed must be a uint64")
    ids = mer.merchant_ids(seed, config.n_merchants)
    mcc, cls, channel = mer.merchant_attributes(seed, ids)
    if config.profile == "replica":
        sites, home_iso = replica.replica_sites(config, seed, ids)
        virtual = mer.smoke_virtual(seed, ids)
    else:
        sites, home_iso = _realistic_sites(config, seed, ids)
        virtual = mer.realistic_virtual(seed, ids, cls, channel, config.virtual_share)
    locations, timezones = build_site_tables(seed, sites)
    merchants = _merchant_table(
        ids, mcc=mcc, cls=cls, channel=channel, home_iso=home_iso, virtual=virtual
    )
    if config.roster_mode == "smoke":
        roster = smoke_roster(config, seed, merchants, locations)
    else:
        roster = realistic_roster(config, seed, merchants, locations, timezones)
    return World(
        site_locations=locations,
        site_timezones=timezones,
        merchants=merchants,
        roster=roster,
        seed=seed,
        profile=config.profile,
    )
