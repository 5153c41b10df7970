"""Asset jobs. Seed-partitioned work runs per seed; manifest-scoped work runs once."""

import dagster as dg

from segment2b.assets.routing import ROUTER_KEYS
from segment2b.policy.models import POLICY_IDS

observe_policies_job = dg.define_asset_job(
    "observe_policies",
    selection=dg.AssetSelection.assets(*POLICY_IDS),
    description="Record each policy file's digest as its data version (staleness input).",
)
world_job = dg.define_asset_job(
    "world_job",
    selection=dg.AssetSelection.assets("upstream_world"),
    description="Generate the upstream world of one seed.",
)
gate_job = dg.define_asset_job(
    "gate_job",
    selection=dg.AssetSelection.assets("validation_bundle_1B"),
    description="Publish the panel's 1B PASS gate and tz cache (after every seed's world).",
)
SEED_STATE_KEYS: tuple[str, ...] = (
    "s5_arrival_roster",
    "sealed_inputs_2B",
    "s0_gate_receipt_2B",
    "s1_site_weights",
    "s2_alias_index",
    "s2_alias_blob",
    "s3_day_effects",
    "s4_group_weights",
    *ROUTER_KEYS,
    "s7_audit_report",
)
seed_job = dg.define_asset_job(
    "seed_job",
    selection=dg.AssetSelection.assets(*SEED_STATE_KEYS),
    description="Roster, S0 … S7 of one seed, in lineage order.",
)
certify_job = dg.define_asset_job(
    "certify_job",
    selection=dg.AssetSelection.assets("validation_bundle_2B", "certification_2B"),
    description="S8 bundle over the panel, then realism certification (prune, score, pack, lock).",
)
ALL_JOBS = [observe_policies_job, world_job, gate_job, seed_job, certify_job]
