"""The frozen gazetteer snapshot, the tz database helpers and the tz cache payload."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
from importlib import resources

import polars as pl

from segment2b.world.config import WorldConfig
from segment2b.world.gazetteer import gazetteer_digest, load_countries, load_places
from segment2b.world.tzcache import decode_tz_cache, encode_tz_cache, tzdb_release_tag
from segment2b.world.tzdb import canonical_tzid, canonical_zones, iso_countries

DATA = resources.files("segment2b.world").joinpath("data")


def test_snapshot_files_are_small_and_digest_is_raw_bytes() -> None:
    raw = DATA.joinpath("gazetteer.parquet").read_bytes()
    assert len(raw) < 1_500_000
    assert len(DATA.joinpath("countries.csv").read_bytes()) < 1_500_000
    assert gazetteer_digest() == hashlib.sha256(raw).hexdigest()


def test_places_schema_order_and_canonical_zones() -> None:
    places = load_places()
    assert places.columns == ["place_id", "iso2", "lat", "lon", "population", "tzid"]
    assert places["place_id"].is_sorted() and not places["place_id"].is_duplicated().any()
    assert places["population"].min() >= 15_000  # type: ignore[operator]
    assert set(places["tzid"].unique().to_list()) <= canonical_zones()
    assert set(places["iso2"].unique().to_list()) <= set(iso_countries())
    # Territories with their own ISO code stay separate from their parent.
    assert {"GP", "RE", "PR"} <= set(places["iso2"].unique().to_list())


def test_country_table_covers_every_place_country() -> None:
    countries = load_countries()
    assert countries["iso2"].is_sorted()
    assert set(load_places()["iso2"].unique().to_list()) <= set(countries["iso2"].to_list())
    assert countries.filter(pl.col("iso2") == "NA")["name"].item() == "Namibia"
    assert set(countries["income_tier"].unique().to_list()) == {
        "high",
        "upper_middle",
        "lower_middle",
        "low",
    }


def test_aliases_map_to_canonical_zones() -> None:
    assert canonical_tzid("Asia/Calcutta") == "Asia/Kolkata"
    assert canonical_tzid("US/Eastern") == "America/New_York"
    # Per-country names zone.tab lists stay as the polygon lookup returns them.
    assert canonical_tzid("Europe/Copenhagen") == "Europe/Copenhagen"
    assert canonical_tzid("America/Kralendijk") == "America/Kralendijk"


def test_release_tag_follows_the_pinned_wheel() -> None:
    version = importlib.metadata.version("tzdata")  # e.g. 2026.6 → 2026f
    year, minor = version.split(".")[:2]
    assert tzdb_release_tag() == f"{year}{chr(ord('a') + int(minor) - 1)}"


def test_tz_cache_is_deterministic_and_exact() -> None:
    payload = encode_tz_cache(["Europe/Berlin", "Asia/Tokyo", "Europe/Berlin"], 2026, 2026)
    assert payload == encode_tz_cache(["Asia/Tokyo", "Europe/Berlin"], 2026, 2026)
    table = decode_tz_cache(payload)
    assert list(table) == ["Asia/Tokyo", "Europe/Berlin"]
    start = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp())
    assert table["Asia/Tokyo"] == [(start, 9 * 3600)]
    spring = int(dt.datetime(2026, 3, 29, 1, tzinfo=dt.UTC).timestamp())
    autumn = int(dt.datetime(2026, 10, 25, 1, tzinfo=dt.UTC).timestamp())
    assert table["Europe/Berlin"] == [(start, 3600), (spring, 7200), (autumn, 3600)]


def test_config_knobs_and_profile_defaults() -> None:
    realistic = WorldConfig.for_profile("realistic")
    replica = WorldConfig.for_profile("replica")
    assert realistic.roster_mode == "realistic" and replica.roster_mode == "smoke"
    assert realistic.n_days == 90
    knobs = realistic.knobs()
    assert knobs["n_merchants"] == 1238 and knobs["virtual_share"] == 0.10
    assert knobs["day_range"] == {"start_day": "2026-01-01", "end_day": "2026-03-31"}
    assert WorldConfig.for_profile("realistic", roster_mode="smoke").roster_mode == "smoke"
