"""Upstream world assets: the per-seed generated world, the panel's 1B gate, the roster.

Grain: ``upstream_world`` — one world (merchants, sites, time zones, arrivals) per seed;
``validation_bundle_1B`` — one PASS gate and tz cache per manifest_fingerprint (whole panel);
``s5_arrival_roster`` — one JSONL roster per seed × parameter_hash × run_id.
"""

import dagster as dg

from segment2b.partitions import SEED_PARTITIONS
from segment2b.pipeline import publish_gate, publish_roster, publish_world
from segment2b.policy.models import POLICY_IDS
from segment2b.resources import SegmentStore, WorldSettings
from segment2b.world.config import GENERATOR_VERSION

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
    step = publish_world(store.storage(), world.config(), world.panel(), seed)
    context.log.info("world seed=%s mf=%s sites=%s", seed, step.manifest_fingerprint, step.sites)
    return dg.MaterializeResult(
        metadata={
            "manifest_fingerprint": step.manifest_fingerprint,
            "profile": world.profile,
            "merchants": step.merchants,
            "sites": step.sites,
            "arrivals": step.arrivals,
            "world_report": dg.MetadataValue.json(dict(step.report)),
        },
        data_version=dg.DataVersion(step.data_version),
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
    step = publish_gate(store.storage(), world.config(), world.panel())
    context.log.info(
        "1B gate published mf=%s digest=%s", step.manifest_fingerprint, step.bundle_sha256
    )
    return dg.MaterializeResult(
        metadata={
            "manifest_fingerprint": step.manifest_fingerprint,
            "bundle_sha256": step.bundle_sha256,
            "tzids": step.tzids,
        },
        data_version=dg.DataVersion(step.bundle_sha256),
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
    step = publish_roster(store.storage(), world.config(), world.panel(), store.pack(), seed)
    meta = dict(step.metadata)
    meta["path"] = dg.MetadataValue.path(meta["path"])
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(step.data_version))
