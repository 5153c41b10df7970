"""The generated world: determinism, schemas, keys, identity law, rosters and self-checks."""

from __future__ import annotations

import hashlib
import io
import json
import zoneinfo

import polars as pl
import pytest

from segment2b.world.generator import World, generate_world
from segment2b.world.merchants import merchant_ids
from segment2b.world.report import self_check
from segment2b_tests.world.worlds import SMALL, small_config, small_world

PK = ["merchant_id", "legal_country_iso", "site_order"]


def _digest(df: pl.DataFrame) -> str:
    buf = io.BytesIO()
    df.write_ipc(buf, compression="uncompressed")
    return hashlib.sha256(buf.getvalue()).hexdigest()


def _frames(world: World) -> dict[str, pl.DataFrame]:
    return {
        "site_locations": world.site_locations,
        "site_timezones": world.site_timezones,
        "merchants": world.merchants,
        "roster": world.roster,
    }


@pytest.mark.parametrize("profile", ["realistic", "replica"])
def test_generation_is_deterministic(profile: str) -> None:
    again = generate_world(small_config(profile), 42)
    first = _frames(small_world(profile))
    for name, frame in _frames(again).items():
        assert _digest(frame) == _digest(first[name]), name


def test_seeds_give_different_worlds() -> None:
    other = generate_world(small_config(), 7)
    assert _digest(other.site_locations) != _digest(small_world().site_locations)


@pytest.mark.parametrize("profile", ["realistic", "replica"])
def test_schemas(profile: str) -> None:
    world = small_world(profile)
    assert world.site_locations.schema == pl.Schema(
        {
            "merchant_id": pl.UInt64,
            "legal_country_iso": pl.String,
            "site_order": pl.Int32,
            "lon_deg": pl.Float64,
            "lat_deg": pl.Float64,
        }
    )
    assert world.site_timezones.schema == pl.Schema(
        {
            "merchant_id": pl.UInt64,
            "legal_country_iso": pl.String,
            "site_order": pl.Int32,
            "tzid": pl.String,
            "tzid_source": pl.String,
            "override_scope": pl.String,
            "nudge_lat_deg": pl.Float64,
            "nudge_lon_deg": pl.Float64,
        }
    )
    assert world.merchants.schema == pl.Schema(
        {
            "merchant_id": pl.UInt64,
            "mcc": pl.Int32,
            "mcc_class": pl.String,
            "channel": pl.String,
            "home_country_iso": pl.String,
            "is_virtual": pl.Boolean,
        }
    )
    assert world.roster.schema == pl.Schema(
        {
            "merchant_id": pl.UInt64,
            "utc_timestamp": pl.String,
            "utc_day": pl.String,
            "is_virtual": pl.Boolean,
            "channel": pl.String,
            "mcc": pl.Int32,
        }
    )


@pytest.mark.parametrize("profile", ["realistic", "replica"])
def test_keys_parity_and_site_order(profile: str) -> None:
    world = small_world(profile)
    loc, tz = world.site_locations, world.site_timezones
    assert not loc.select(PK).is_duplicated().any()
    assert loc.select(PK).equals(loc.select(PK).sort(PK))
    assert loc.select(PK).equals(tz.select(PK))
    groups = loc.group_by("merchant_id", "legal_country_iso").agg(
        pl.len().alias("n"), pl.col("site_order").max().alias("hi")
    )
    assert (groups["n"] == groups["hi"]).all()
    assert loc["merchant_id"].n_unique() == SMALL == world.merchants.height
    assert world.merchants["merchant_id"].is_sorted()


@pytest.mark.parametrize("profile", ["realistic", "replica"])
def test_self_check_is_clean(profile: str) -> None:
    world = small_world(profile)
    assert self_check(world, small_config(profile)) == []
    tzids = set(world.site_timezones["tzid"].unique().to_list())
    assert tzids <= zoneinfo.available_timezones()


def test_merchant_id_law() -> None:
    ids = merchant_ids(42, 1238)
    first = int.from_bytes(hashlib.sha256(b"uw:merchant:42:0").digest()[:8], "big")
    assert int(ids[0]) == first == 16102919845533773761
    assert len(set(ids.tolist())) == 1238 and 0 not in ids.tolist()
    high = sum(int(m) >= 2**63 for m in ids)
    assert 0.4 * 1238 < high < 0.6 * 1238
    world_ids = small_world().merchants["merchant_id"]
    assert world_ids.max() >= 2**63  # type: ignore[operator]


def test_nullable_columns_are_exercised() -> None:
    tz = small_world().site_timezones
    over = tz.filter(pl.col("tzid_source") == "override")
    assert over.height >= 1 and (over["override_scope"] == "country").all()
    assert tz.filter(pl.col("tzid_source") == "polygon")["override_scope"].is_null().all()
    nudged = tz.filter(pl.col("nudge_lat_deg").is_not_null())
    assert nudged.height >= 1 and nudged["nudge_lon_deg"].is_not_null().all()


def test_realistic_roster_invariants_and_preconditions() -> None:
    world = small_world()
    r = world.roster
    assert r.height > 0.9 * 30_000
    assert (r["utc_day"] == r["utc_timestamp"].str.slice(0, 10)).all()
    assert r["utc_timestamp"].str.contains(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$").all()
    assert r["utc_timestamp"].is_sorted()
    assert not r.select("merchant_id", "utc_timestamp").is_duplicated().any()
    assert r["utc_day"].min() == "2026-01-01" and r["utc_day"].max() == "2026-03-31"
    per_day = r.group_by("merchant_id", "utc_day").agg(pl.len().alias("n"))
    assert per_day["n"].median() >= 2  # type: ignore[operator]
    assert (per_day.group_by("merchant_id").agg(pl.col("n").max())["n"] >= 2).all()
    assert per_day["merchant_id"].n_unique() == SMALL
    cells = world.merchants.select("mcc_class", "channel").unique()
    seen = r.join(world.merchants.select("merchant_id", "mcc_class"), on="merchant_id")
    assert seen.select("mcc_class", "channel").unique().height == cells.height
    virtual = world.merchants.filter(pl.col("is_virtual"))
    assert (virtual["channel"] == "card_not_present").all()


def test_smoke_roster_follows_the_compat_law() -> None:
    # Known answers: bucket(202, 42) = 7 (virtual), bucket(101, 42) = 31 (not virtual).
    def bucket(mid: int, seed: int) -> int:
        return int.from_bytes(hashlib.sha256(f"{mid}:{seed}".encode()).digest()[:4], "big") % 100

    assert bucket(202, 42) == 7 and bucket(101, 42) == 31
    world = small_world("replica")
    r = world.roster
    assert r.height == SMALL and r["merchant_id"].is_sorted()
    assert (r["utc_timestamp"] == "2026-01-01T00:00:00.000000Z").all()
    assert (r["utc_day"] == "2026-01-01").all()
    expected = [bucket(int(m), 42) < 10 for m in r["merchant_id"]]
    assert r["is_virtual"].to_list() == expected
    assert world.merchants["is_virtual"].to_list() == expected


def test_single_site_knob() -> None:
    world = generate_world(small_config(single_site_share=0.2), 42)
    sizes = world.site_locations.group_by("merchant_id").len()["len"]
    assert (sizes == 1).sum() == 30
    assert (sizes >= 1).all()
    assert self_check(world, small_config(single_site_share=0.2)) == []


def test_roster_jsonl_chunks_are_json_dumps_lines() -> None:
    from segment2b.world.outputs import roster_jsonl, roster_jsonl_chunks

    roster = small_world("realistic").roster.head(2_000)
    expected = "".join(
        json.dumps(row, sort_keys=True) + "\n" for row in roster.iter_rows(named=True)
    )
    whole = roster_jsonl(roster)
    assert whole == expected.encode("utf-8")
    assert b"".join(roster_jsonl_chunks(roster, chunk_rows=333)) == whole
    assert list(roster_jsonl_chunks(roster.clear())) == []
