"""World report: the realistic default hits the §5.5 bands; the replica keeps its artefacts."""

from __future__ import annotations

import json

import polars as pl

from segment2b.world.config import WorldConfig
from segment2b.world.report import self_check, world_report
from segment2b_tests.world.worlds import default_world, small_config, small_world


def test_realistic_default_world_is_in_band() -> None:
    config = WorldConfig()
    world = default_world()
    report = world_report(world, config)
    json.dumps(report)  # JSON-ready
    assert report["bands_judged"] is True
    assert report["out_of_band"] == []
    stats = report["statistics"]
    # Emergent, reported, never judged.
    assert stats["single_tz_merchant_share"]["in_band"] is None
    assert 0.0 < stats["single_tz_merchant_share"]["value"] < 1.0
    assert stats["distinct_tzids"]["in_band"] is None
    assert report["roster"]["horizon_span_days"] == 90
    assert self_check(world, config) == []


def test_small_worlds_report_without_judging() -> None:
    report = world_report(small_world(), small_config())
    assert report["bands_judged"] is False and report["out_of_band"] == []
    assert report["statistics"]["virtual_share"]["value"] == 0.1


def test_replica_keeps_the_measured_artefacts() -> None:
    config = WorldConfig.for_profile("replica")
    world = default_world("replica")
    stats = world_report(world, config)["statistics"]
    tz = world.site_timezones
    per_country = tz.group_by("legal_country_iso").agg(pl.col("tzid").n_unique().alias("k"))
    # Artefact 1: within-country collapse — most countries are single-tzid, none has more
    # than a few.
    assert (per_country["k"] == 1).mean() >= 0.7
    assert per_country["k"].max() <= 3  # type: ignore[operator]
    assert 0.40 <= stats["single_tz_merchant_share"]["value"] <= 0.60
    # Artefact 2: non-representative placement.
    zones = dict(
        tz.group_by("legal_country_iso")
        .agg(pl.col("tzid").mode().first())
        .select("legal_country_iso", "tzid")
        .iter_rows()
    )
    assert zones["NL"] == "America/Kralendijk"
    assert zones["NO"] == "Arctic/Longyearbyen"
    assert zones["US"] == "America/Phoenix"
    assert zones["AU"] == "Australia/Brisbane"
    # Measured shape: 77 countries, Europe-centric with a Bermuda-heavy micro-jurisdiction.
    assert stats["countries_with_sites"]["value"] == 77
    assert stats["max_micro_jurisdiction_share"]["value"] > 0.03
    assert 14 <= stats["sites_p50"]["value"] <= 18
    assert stats["single_site_share"]["value"] == 0.0
    assert world.roster.height == config.n_merchants
