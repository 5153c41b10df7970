"""S0 gate assets: ``sealed_inputs_2B`` (one row per sealed input) and ``s0_gate_receipt_2B``
(one object), per seed × manifest_fingerprint. Thin wiring around ``states.s0_gate``."""

from collections.abc import Iterator

import dagster as dg

from segment2b.assets.world import s5_arrival_roster, upstream_world, validation_bundle_1B
from segment2b.partitions import SEED_PARTITIONS
from segment2b.policy.models import POLICY_IDS
from segment2b.resources import SegmentStore, WorldSettings
from segment2b.run_plan import plan_run
from segment2b.states.s0_gate import run_s0, s0_data_version

S0_CODE_VERSION = "s0-1"
_DEPS = [validation_bundle_1B, upstream_world, s5_arrival_roster, *POLICY_IDS]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "sealed_inputs_2B",
            deps=_DEPS,
            group_name="s0_gate",
            description="Sealed inventory: one row per input S0 sealed.",
            code_version=S0_CODE_VERSION,
        ),
        dg.AssetSpec(
            "s0_gate_receipt_2B",
            deps=_DEPS,
            group_name="s0_gate",
            description="Gate receipt: one object per seed × manifest_fingerprint.",
            code_version=S0_CODE_VERSION,
        ),
    ],
    partitions_def=SEED_PARTITIONS,
    can_subset=True,
)
def s0_gate(
    context: dg.AssetExecutionContext, store: SegmentStore, world: WorldSettings
) -> Iterator[dg.MaterializeResult]:
    seed = int(context.partition_key)
    plan = plan_run(world.config(), world.panel(), store.pack(), seed)
    out = run_s0(store.storage(), plan.run_id)
    version = dg.DataVersion(s0_data_version(out.inventory, out.receipt))
    summary = out.report["summary"]
    context.log.info(
        "S0 %s seed=%s warn=%s", summary["overall_status"], seed, summary["warn_count"]
    )
    for key in sorted(context.selected_asset_keys, key=lambda k: k.to_user_string()):
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "manifest_fingerprint": plan.manifest_fingerprint,
                "parameter_hash": plan.parameter_hash,
                "run_id": plan.run_id,
                "verified_at_utc": out.receipt["verified_at_utc"],
                "sealed_rows": len(out.inventory),
                "gate_sha256": out.report["gate"]["bundle_sha256_actual"],
                "warn_count": summary["warn_count"],
                "policy_digests": dg.MetadataValue.json(
                    out.report["inputs_summary"]["policy_digests"]
                ),
                "publish": dg.MetadataValue.json(out.report["publish"]["outcomes"]),
            },
            data_version=version,
        )
