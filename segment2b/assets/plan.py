"""Plan-state assets S1–S4, per seed × manifest_fingerprint, with their gates as checks.

Grain: ``s1_site_weights`` one row per site; ``s2_alias_index``/``s2_alias_blob`` one slice per
merchant; ``s3_day_effects`` one row per merchant × day × tz group; ``s4_group_weights`` the same
grain with the routed group mix. Each asset runs its state's runner and attaches check results.
"""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from segment2b.assets.checks import (
    advisory_result,
    advisory_spec,
    gate_check_results,
    gate_specs,
    structural_result,
    structural_spec,
)
from segment2b.assets.world import upstream_world
from segment2b.certification.gates import S1_GATES
from segment2b.certification.s1_metrics import s1_metrics
from segment2b.certification.s3_metrics import S3_GATES, s3_diagnostics, s3_metrics
from segment2b.certification.s4_metrics import (
    S4_GATES,
    S4_REPORT_ONLY_GATES,
    floor_diagnostic,
    gamma_echo_mismatches,
    regularizer_movement,
    s4_metrics,
)
from segment2b.partitions import SEED_PARTITIONS
from segment2b.resources import SegmentStore, WorldSettings
from segment2b.run_plan import plan_run
from segment2b.states import s1_site_weights as s1
from segment2b.states import s2_alias_tables as s2
from segment2b.states import s3_day_effects as s3
from segment2b.states import s4_group_weights as s4
from segment2b.states.outcome import StateOutcome

S0_KEYS = ["s0_gate_receipt_2B", "sealed_inputs_2B"]
REGULARIZER_TARGET = 0.10  # policy target for the median delta_mass (a bounded tuner)


def _plan(context: dg.AssetExecutionContext, store: SegmentStore, world: WorldSettings):
    seed = int(context.partition_key)
    return seed, plan_run(world.config(), world.panel(), store.pack(), seed)


def _meta(out: StateOutcome) -> dict[str, object]:
    summary = out.report.get("summary", {})
    return {
        "rows": out.frame.height if out.frame is not None else 0,
        "status": summary.get("overall_status", ""),
        "warn_count": summary.get("warn_count", 0),
        "publish": dg.MetadataValue.json([p.outcome for p in out.published]),
    }


@dg.asset(
    partitions_def=SEED_PARTITIONS,
    deps=[*S0_KEYS, upstream_world, "alias_layout_policy_v1"],
    group_name="plan",
    code_version=s1.CODE_VERSION,
    check_specs=gate_specs("s1_site_weights", S1_GATES),
    description="S1 site weights: one row per site (merchant × country × site_order).",
)
def s1_site_weights(
    context: dg.AssetExecutionContext, store: SegmentStore, world: WorldSettings
) -> dg.MaterializeResult:
    seed, plan = _plan(context, store, world)
    out = s1.run_s1(store.storage(), seed=seed, manifest_fingerprint=plan.manifest_fingerprint)
    metrics = s1_metrics(out.frame)
    return dg.MaterializeResult(
        metadata={**_meta(out), "metrics": dg.MetadataValue.json(metrics)},
        check_results=gate_check_results("s1_site_weights", S1_GATES, metrics),
        data_version=dg.DataVersion(out.data_version),
    )


S2_CHECK = "s2_blob_decodes_to_s1"


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "s2_alias_index",
            deps=[s1_site_weights, "alias_layout_policy_v1", *S0_KEYS],
            group_name="plan",
            code_version=s2.CODE_VERSION,
            description="S2 alias index: one row per merchant (offset, length, checksum).",
        ),
        dg.AssetSpec(
            "s2_alias_blob",
            deps=[s1_site_weights, "alias_layout_policy_v1", *S0_KEYS],
            group_name="plan",
            code_version=s2.CODE_VERSION,
            description="S2 alias blob: one aligned slice per merchant.",
        ),
    ],
    check_specs=[
        structural_spec(
            "s2_alias_blob",
            S2_CHECK,
            "Blob SHA-256 equals the index; every slice decodes to S1 within "
            "quantisation_epsilon; merchant count equals S1's.",
        )
    ],
    partitions_def=SEED_PARTITIONS,
    can_subset=True,
)
def s2_alias_tables(
    context: dg.AssetExecutionContext, store: SegmentStore, world: WorldSettings
) -> Iterator[dg.MaterializeResult]:
    seed, plan = _plan(context, store, world)
    home = store.storage()
    out = s2.run_s2(home, seed=seed, manifest_fingerprint=plan.manifest_fingerprint)
    violations = s2.verify_s2_published(
        home, seed=seed, manifest_fingerprint=plan.manifest_fingerprint
    )
    for key in sorted(context.selected_asset_keys, key=lambda k: k.to_user_string()):
        checks = (
            [structural_result("s2_alias_blob", S2_CHECK, violations)]
            if key.to_user_string() == "s2_alias_blob"
            else []
        )
        yield dg.MaterializeResult(
            asset_key=key,
            metadata=_meta(out),
            check_results=checks,
            data_version=dg.DataVersion(out.data_version),
        )


S3_ADVISORY = "s3_sigma_heterogeneity"


@dg.asset(
    partitions_def=SEED_PARTITIONS,
    deps=[*S0_KEYS, upstream_world, s1_site_weights, "day_effect_policy_v1"],
    group_name="plan",
    code_version=s3.CODE_VERSION,
    check_specs=[
        *gate_specs("s3_day_effects", S3_GATES),
        advisory_spec(
            "s3_day_effects",
            S3_ADVISORY,
            "Advisory (certification §10): distinct sigma values, per-merchant sigma "
            "IQR, weekly amplitude actually present.",
        ),
    ],
    description="S3 day effects: one row per merchant × UTC day × tz group (one Philox draw).",
)
def s3_day_effects(
    context: dg.AssetExecutionContext, store: SegmentStore, world: WorldSettings
) -> dg.MaterializeResult:
    seed, plan = _plan(context, store, world)
    out = s3.run_s3(store.storage(), seed=seed, manifest_fingerprint=plan.manifest_fingerprint)
    metrics = s3_metrics(out.frame, out.report.get("rng_accounting"))
    diag = s3_diagnostics(out.frame, out.report)
    return dg.MaterializeResult(
        metadata={
            **_meta(out),
            "metrics": dg.MetadataValue.json(metrics),
            "diagnostics": dg.MetadataValue.json(diag),
        },
        check_results=[
            *gate_check_results("s3_day_effects", S3_GATES, metrics),
            advisory_result(
                "s3_day_effects", S3_ADVISORY, diag["sigma_distinct_values"] > 1, **diag
            ),
        ],
        data_version=dg.DataVersion(out.data_version),
    )


S4_MASS = "T_S4_05"  # mass conservation is structural (blocking), README decision 14
S4_ECHO = "s3_s4_gamma_echo"
S4_FLOOR = "s4_floor_diagnostic"
S4_REG = "s4_regularizer_movement"
_S4_REALISM = tuple(g for g in S4_GATES if g.id != "T-S4-05")


@dg.asset(
    partitions_def=SEED_PARTITIONS,
    deps=[*S0_KEYS, upstream_world, s1_site_weights, s3_day_effects, "group_mix_regularizer_v1"],
    group_name="plan",
    code_version=s4.CODE_VERSION,
    check_specs=[
        *gate_specs("s4_group_weights", (*_S4_REALISM, *S4_REPORT_ONLY_GATES)),
        structural_spec(
            "s4_group_weights", S4_MASS, "T-S4-05: every merchant-day |Σ p_group − 1| ≤ 1e-12."
        ),
        structural_spec(
            "s4_group_weights",
            S4_ECHO,
            "S4 gamma equals S3 gamma on every (merchant, day, tz group).",
        ),
        advisory_spec(
            "s4_group_weights",
            S4_FLOOR,
            "Floor diagnostic: single-tz merchants, single-group days, tail share.",
        ),
        advisory_spec(
            "s4_group_weights",
            S4_REG,
            f"Regularizer movement: median delta_mass ≤ {REGULARIZER_TARGET}.",
        ),
    ],
    description="S4 group weights: one row per merchant × UTC day × tz group (p_group).",
)
def s4_group_weights(
    context: dg.AssetExecutionContext, store: SegmentStore, world: WorldSettings
) -> dg.MaterializeResult:
    seed, plan = _plan(context, store, world)
    home = store.storage()
    out = s4.run_s4(home, seed=seed, manifest_fingerprint=plan.manifest_fingerprint)
    frame = out.frame
    metrics = s4_metrics(frame)
    tz = pl.read_parquet(
        home.path("site_timezones", plan.plan_tokens()), columns=["merchant_id", "tzid"]
    )
    floor = floor_diagnostic(frame, tz)
    movement = regularizer_movement(out.extras["provenance"])
    s3_frame = pl.read_parquet(
        home.path("s3_day_effects", plan.plan_tokens()),
        columns=["merchant_id", "utc_day", "tz_group_id", "gamma"],
    )
    bad_echo = gamma_echo_mismatches(frame, s3_frame)
    mass_max = float(metrics["mass_abs_error_max"])
    return dg.MaterializeResult(
        metadata={
            **_meta(out),
            "metrics": dg.MetadataValue.json(metrics),
            "floor_diagnostic": dg.MetadataValue.json(floor),
            "regularizer_movement": dg.MetadataValue.json(movement),
        },
        check_results=[
            *gate_check_results("s4_group_weights", (*_S4_REALISM, *S4_REPORT_ONLY_GATES), metrics),
            structural_result(
                "s4_group_weights",
                S4_MASS,
                [] if mass_max <= 1e-12 else [f"max |Σp−1| = {mass_max:.3e} > 1e-12"],
                mass_abs_error_max=mass_max,
                mass_rows_over_epsilon=int(metrics["mass_rows_over_epsilon"]),
            ),
            structural_result(
                "s4_group_weights",
                S4_ECHO,
                [
                    f"{r['merchant_id']}/{r['utc_day']}/{r['tz_group_id']}"
                    for r in bad_echo.head(5).iter_rows(named=True)
                ],
                mismatched_rows=bad_echo.height,
            ),
            advisory_result("s4_group_weights", S4_FLOOR, True, **floor),
            advisory_result(
                "s4_group_weights",
                S4_REG,
                movement["delta_mass_median"] <= REGULARIZER_TARGET,
                **movement,
            ),
        ],
        data_version=dg.DataVersion(out.data_version),
    )
