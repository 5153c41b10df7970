"""Upstream world assets: the per-seed generated world, the panel's 1B gate, the roster.

Grain: ``upstream_world`` — one world (merchants, sites, time zones, arrivals) per seed;
``validation_bundle_1B`` — one PASS gate and tz cache per manifest_fingerprint (whole panel);
``s5_arrival_roster`` — one JSONL roster per seed × parameter_hash × run_id.
"""


import dagster as dg
import polars as pl

from segment2b.errors import SegmentError
from segment2b.partitions import SEED_PARTITIONS
from segment2b.policy.models import POLICY_IDS
from segment2b.resources import SegmentStore, WorldSettings
from segment2b.run_plan import plan_run, world_fingerprint
from segment2b.storage.digests import sha256_bytes
from segment2b.world.config import GENERATOR_VERSION
from segment2b.world.generator import generate_world
from segment2b.world.outputs import (
    roster_jsonl,
    tz_cache_for,
    world_created_utc,
    write_gate_bundle,
    write_roster,
    write_run_receipt,
    write_seed_world,
)
from segment2b.world.report import self_check, world_report

UPSTREAM_GROUP = "upstream"


@dg.asset(
    partitions_def=SEED_PARTITIONS,
    group_name=UPSTREAM_GROUP,
    code_version=GENERATOR_VERSION,
    description="Generated upstream world of one seed (site_locations, site_timezones, "
    "merchant attributes, arrival stream, world_report). One world per seed.",
)
def upstream_world(
    context: dg.AssetExecutionContext, store: SegmentStore, world: WorldSettings
) -> dg.MaterializeResult:
    seed = int(context.partition_key)
    config = world.config()
    home = store.storage()
    mf = world_fingerprint(config, world.panel())
    generated = generate_world(config, seed)
    problems = self_check(generated, config)
    if problems:
        raise SegmentError(
            "UW-050",
            f"world self-check failed: {problems[0]}",
            dataset="upstream_world",
            key=f"seed={seed}",
            context={"problems": problems[:20]},
        )
    report = world_report(generated, config)
    digests = write_seed_world(
        home,
        seed=seed,
        manifest_fingerprint=mf,
        created_utc=world_created_utc(config.start_day),
        site_locations=generated.site_locations,
        site_timezones=generated.site_timezones,
        merchants=generated.merchants,
        arrivals=generated.roster,
        report=report,
    )
    context.log.info("world seed=%s mf=%s sites=%s", seed, mf, generated.site_locations.height)
    return dg.MaterializeResult(
        metadata={
            "manifest_fingerprint": mf,
            "profile": config.profile,
            "merchants": generated.merchants.height,
            "sites": generated.site_locations.height,
            "arrivals": generated.roster.height,
            "world_report": dg.MetadataValue.json(report),
        },
        data_version=dg.DataVersion(digests.data_version()),
    )


@dg.asset(
    deps=[upstream_world],
    group_name=UPSTREAM_GROUP,
    code_version=GENERATOR_VERSION,
    description="1B validation bundle + _passed.flag and the 2A tz cache of the manifest: one "
    "per manifest_fingerprint, covering every panel seed. Immutable evidence.",
)
def validation_bundle_1B(  # noqa: N802 - asset key is the dictionary id
    context: dg.AssetExecutionContext, store: SegmentStore, world: WorldSettings
) -> dg.MaterializeResult:
    config = world.config()
    home = store.storage()
    panel = world.panel()
    mf = world_fingerprint(config, panel)
    counts: dict[int, int] = {}
    tzids: set[str] = set()
    for seed in panel:
        tokens = {"seed": str(seed), "manifest_fingerprint": mf}
        tz = pl.read_parquet(home.path("site_timezones", tokens), columns=["tzid"])
        counts[seed] = tz.height
        tzids.update(tz["tzid"].unique().to_list())
    cache = tz_cache_for(
        sorted(tzids),
        mf,
        world_created_utc(config.start_day),
        config.start_day.year,
        config.end_day.year,
    )
    digest = write_gate_bundle(
        home,
        manifest_fingerprint=mf,
        seeds=panel,
        knobs=config.knobs(),
        site_counts=counts,
        tz_cache=cache,
    )
    context.log.info("1B gate published mf=%s digest=%s", mf, digest)
    return dg.MaterializeResult(
        metadata={"manifest_fingerprint": mf, "bundle_sha256": digest, "tzids": len(tzids)},
        data_version=dg.DataVersion(digest),
    )


@dg.asset(
    partitions_def=SEED_PARTITIONS,
    deps=[upstream_world, *POLICY_IDS],
    group_name=UPSTREAM_GROUP,
    code_version="roster-1",
    description="Arrival roster of one run (JSONL, arrival order) and its run receipt, written "
    "before S0. One file per seed × parameter_hash × run_id.",
)
def s5_arrival_roster(
    context: dg.AssetExecutionContext, store: SegmentStore, world: WorldSettings
) -> dg.MaterializeResult:
    seed = int(context.partition_key)
    config = world.config()
    home = store.storage()
    plan = plan_run(config, world.panel(), store.pack(), seed)
    arrivals = pl.read_parquet(home.path("world_arrivals", plan.plan_tokens()))
    data = roster_jsonl(arrivals)
    write_run_receipt(
        home,
        run_id=plan.run_id,
        seed=seed,
        parameter_hash=plan.parameter_hash,
        manifest_fingerprint=plan.manifest_fingerprint,
        created_utc=plan.created_utc,
    )
    res = write_roster(home, plan.tokens(), data)
    days = arrivals["utc_day"]
    return dg.MaterializeResult(
        metadata={
            "run_id": plan.run_id,
            "parameter_hash": plan.parameter_hash,
            "arrivals": arrivals.height,
            "virtual_arrivals": int(arrivals["is_virtual"].sum()),
            "first_day": days.min(),
            "last_day": days.max(),
            "bytes": res.bytes,
            "path": dg.MetadataValue.path(str(res.path)),
        },
        # Content digest: a policy edit moves the roster to a new run path but leaves its bytes
        # (and so this version) unchanged.
        data_version=dg.DataVersion(sha256_bytes(data)),
    )
