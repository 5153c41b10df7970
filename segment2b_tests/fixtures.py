"""Tiny hand-made worlds written to a temporary storage home, for state and asset tests."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from segment2b.identity import run_id as derive_run_id
from segment2b.policy.store import DEFAULT_PACK, load_pack, parameter_hash
from segment2b.storage.home import StorageHome
from segment2b.world.outputs import (
    manifest_fingerprint,
    roster_jsonl,
    run_created_utc,
    world_created_utc,
    write_gate_bundle,
    write_roster,
    write_run_receipt,
    write_seed_world,
)

BIG = 2**63 + 12345  # ids above 2^63 catch int64 casts
MERCHANTS = (101, 202, BIG)
SITES = {
    101: [
        ("FR", 1, 2.35, 48.85, "Europe/Paris"),
        ("FR", 2, 5.37, 43.30, "Europe/Paris"),
        ("GB", 1, -0.12, 51.50, "Europe/London"),
    ],
    202: [
        ("US", 1, -74.0, 40.7, "America/New_York"),
        ("US", 2, -118.2, 34.05, "America/Los_Angeles"),
    ],
    BIG: [
        ("JP", 1, 139.69, 35.68, "Asia/Tokyo"),
        ("JP", 2, 135.50, 34.69, "Asia/Tokyo"),
        ("JP", 3, 130.40, 33.59, "Asia/Tokyo"),
    ],
}
START = dt.date(2026, 1, 1)
ROSTER_SETTINGS = {"mode": "tiny-test", "arrivals": 6}


def tiny_frames() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rows = [(m, c, o, lon, lat, tz) for m in MERCHANTS for (c, o, lon, lat, tz) in SITES[m]]
    loc = pl.DataFrame(
        {
            "merchant_id": [r[0] for r in rows],
            "legal_country_iso": [r[1] for r in rows],
            "site_order": [r[2] for r in rows],
            "lon_deg": [r[3] for r in rows],
            "lat_deg": [r[4] for r in rows],
        },
        schema={
            "merchant_id": pl.UInt64,
            "legal_country_iso": pl.String,
            "site_order": pl.Int32,
            "lon_deg": pl.Float64,
            "lat_deg": pl.Float64,
        },
    )
    tz = loc.select("merchant_id", "legal_country_iso", "site_order").with_columns(
        tzid=pl.Series([r[5] for r in rows]),
        tzid_source=pl.lit("polygon"),
        override_scope=pl.lit(None, dtype=pl.String),
        nudge_lat_deg=pl.lit(None, dtype=pl.Float64),
        nudge_lon_deg=pl.lit(None, dtype=pl.Float64),
    )
    merchants = pl.DataFrame(
        {
            "merchant_id": list(MERCHANTS),
            "mcc": [5411, 4111, 4812],
            "mcc_class": ["physical_retail", "services", "digital"],
            "channel": ["card_present", "card_present", "card_not_present"],
            "home_country_iso": ["FR", "US", "JP"],
            "is_virtual": [False, False, True],
        },
        schema_overrides={"merchant_id": pl.UInt64, "mcc": pl.Int32},
    )
    arrivals = pl.DataFrame(
        {
            "merchant_id": [101, 202, BIG, 101, BIG, 202],
            "utc_timestamp": [
                f"2026-01-0{d}T{h:02d}:00:00.000000Z"
                for d, h in [(1, 9), (1, 10), (1, 11), (2, 9), (2, 12), (3, 8)]
            ],
            "utc_day": [
                "2026-01-01",
                "2026-01-01",
                "2026-01-01",
                "2026-01-02",
                "2026-01-02",
                "2026-01-03",
            ],
            "is_virtual": [False, False, True, False, True, False],
            "channel": [
                "card_present",
                "card_present",
                "card_not_present",
                "card_present",
                "card_not_present",
                "card_present",
            ],
            "mcc": [5411, 4111, 4812, 5411, 4812, 4111],
        },
        schema_overrides={"merchant_id": pl.UInt64, "mcc": pl.Int32},
    )
    return loc, tz, merchants, arrivals


@dataclass(frozen=True)
class TinyRun:
    home: StorageHome
    seed: int
    manifest_fingerprint: str
    parameter_hash: str
    run_id: str

    def tokens(self) -> dict[str, str]:
        return {
            "seed": str(self.seed),
            "manifest_fingerprint": self.manifest_fingerprint,
            "parameter_hash": self.parameter_hash,
            "run_id": self.run_id,
        }


def build_tiny_run(
    tmp_path: Path, *, seed: int = 42, pack: Path = DEFAULT_PACK, with_roster: bool = True
) -> TinyRun:
    """Write a 3-merchant world, its 1B gate, a policy pack copy, run receipt and roster."""
    policy_root = tmp_path / "policies"
    shutil.copytree(pack, policy_root, ignore=shutil.ignore_patterns("baseline"))
    home = StorageHome(root=tmp_path / "home", policy_root=policy_root)
    knobs = {"generator_version": "tiny-test", "profile": "tiny"}
    mf = manifest_fingerprint(knobs, [seed], "0" * 64)
    loc, tz, merchants, arrivals = tiny_frames()
    write_seed_world(
        home,
        seed=seed,
        manifest_fingerprint=mf,
        created_utc=world_created_utc(START),
        site_locations=loc,
        site_timezones=tz,
        merchants=merchants,
        arrivals=arrivals,
        report={"profile": "tiny"},
    )
    write_gate_bundle(
        home,
        manifest_fingerprint=mf,
        seeds=[seed],
        knobs=knobs,
        site_counts={seed: loc.height},
        tz_cache=None,
    )
    ph = parameter_hash(load_pack(policy_root).digests(), ROSTER_SETTINGS)
    rid = derive_run_id(mf, seed, ph)
    write_run_receipt(
        home,
        run_id=rid,
        seed=seed,
        parameter_hash=ph,
        manifest_fingerprint=mf,
        created_utc=run_created_utc(START),
    )
    run = TinyRun(home, seed, mf, ph, rid)
    if with_roster:
        write_roster(home, run.tokens(), roster_jsonl(arrivals))
    return run
