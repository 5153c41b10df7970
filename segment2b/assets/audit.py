"""S7 audit (per seed) and S8 validation bundle (per manifest, over the whole seed panel).

Grain: ``s7_audit_report`` one report per seed × manifest_fingerprint;
``validation_bundle_2B`` one bundle folder (index.json + members + ``_passed.flag``) per
manifest_fingerprint, covering every required seed.
"""

from collections.abc import Iterator

import dagster as dg

from segment2b.assets.checks import structural_result
from segment2b.assets.routing import ROUTER_KEYS
from segment2b.partitions import REQUIRED_SEEDS, SEED_PARTITIONS
from segment2b.pipeline import publish_bundle, state_runners
from segment2b.resources import SegmentStore, WorldSettings
from segment2b.run_plan import plan_run, world_fingerprint
from segment2b.states import s7_audit as s7
from segment2b.states import s8_validation_bundle as s8

AUDIT_GROUP = "audit"
BUNDLE_KEY = "validation_bundle_2B"
BUNDLE_CHECK = "bundle_hash_law"


@dg.asset(
    partitions_def=SEED_PARTITIONS,
    deps=[
        "s0_gate_receipt_2B",
        "sealed_inputs_2B",
        "s1_site_weights",
        "s2_alias_index",
        "s2_alias_blob",
        "s3_day_effects",
        "s4_group_weights",
        *ROUTER_KEYS,
    ],
    group_name=AUDIT_GROUP,
    code_version=s7.CODE_VERSION,
    description="S7 audit report: one per seed × manifest_fingerprint (V-01..V-18). A FAIL "
    "report is written and the asset fails with the first failing code.",
)
def s7_audit_report(
    context: dg.AssetExecutionContext, store: SegmentStore, world: WorldSettings
) -> dg.MaterializeResult:
    seed = int(context.partition_key)
    plan = plan_run(world.config(), world.panel(), store.pack(), seed)
    out = state_runners(store.storage(), plan)["S7"]({})
    report = out.report
    summary = report.get("summary", {})
    return dg.MaterializeResult(
        metadata={
            "overall_status": summary.get("overall_status", ""),
            "warn_count": summary.get("warn_count", 0),
            "fail_count": summary.get("fail_count", 0),
            "checks": dg.MetadataValue.json(
                [{"id": c["id"], "status": c["status"]} for c in report.get("checks", [])]
            ),
            "metrics": dg.MetadataValue.json(dict(report.get("metrics", {}))),
        },
        data_version=dg.DataVersion(out.data_version),
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            BUNDLE_KEY,
            deps=["s7_audit_report"],
            group_name=AUDIT_GROUP,
            code_version=s8.CODE_VERSION,
            skippable=True,
            description="S8 validation bundle + _passed.flag of the manifest: published once "
            "every required seed has an S7 PASS; immutable afterwards.",
        )
    ],
)
def s8_validation_bundle(
    context: dg.AssetExecutionContext, store: SegmentStore, world: WorldSettings
) -> Iterator[dg.MaterializeResult]:
    home = store.storage()
    mf = world_fingerprint(world.config(), world.panel())
    result = publish_bundle(home, mf, REQUIRED_SEEDS)
    if result.status == "WAITING":
        # A single-seed run is not a failure: the bundle simply is not due yet.
        context.log.warning(
            "S8 skipped: waiting for seeds %s (%s)",
            ", ".join(str(s) for s in result.waiting_for),
            result.message,
        )
        return
    yield dg.MaterializeResult(
        asset_key=BUNDLE_KEY,
        metadata={
            "status": result.status,
            "manifest_fingerprint": mf,
            "seeds": dg.MetadataValue.json(list(REQUIRED_SEEDS)),
            "path": dg.MetadataValue.path(str(home.path(BUNDLE_KEY, {"manifest_fingerprint": mf}))),
        },
        data_version=dg.DataVersion(result.outcome.data_version if result.outcome else mf),
    )


@dg.asset_check(
    asset=BUNDLE_KEY,
    description="Consumer re-verification of the published bundle (index, member digests, "
    "_passed.flag); run it any time to detect tampering after publish.",
    blocking=True,
)
def bundle_hash_law(store: SegmentStore, world: WorldSettings) -> dg.AssetCheckResult:
    mf = world_fingerprint(world.config(), world.panel())
    problems = s8.verify_s8_published(store.storage(), manifest_fingerprint=mf)
    return structural_result(BUNDLE_KEY, BUNDLE_CHECK, problems, manifest_fingerprint=mf)
