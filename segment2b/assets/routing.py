"""Run-scoped router assets: S5 (two-stage routing) and S6 (virtual edges), per seed.

Grain: every key is one run's log (seed × parameter_hash × run_id): one event row per draw
(``rng_event_*``), one trace row per draw, one audit row per run, one selection row per arrival
(``s5_selection_log``) and one edge row per virtual arrival (``s6_edge_log``).

S5 and S6 run as one step: S6 joins S5 by arrival position, in memory, so the two never meet
through a key that could collide (README decision 9), and they share the run's trace log.
A route- or edge-policy edit therefore stales both, which is the "S5 (S6) … S8" row of the
rerun matrix.
"""

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from segment2b.assets.checks import structural_result, structural_spec
from segment2b.partitions import SEED_PARTITIONS
from segment2b.pipeline import state_runners
from segment2b.resources import SegmentStore, WorldSettings
from segment2b.run_plan import plan_run
from segment2b.states import s5_router as s5
from segment2b.states import s6_edge_router as s6
from segment2b.states.outcome import StateOutcome

ROUTER_GROUP = "router"
S5_KEYS = ("rng_event_alias_pick_group", "rng_event_alias_pick_site", "s5_selection_log")
S6_KEYS = ("rng_event_cdn_edge_pick", "s6_edge_log")
RUN_LOG_KEYS = ("rng_trace_log", "rng_audit_log")
ROUTER_KEYS = (*S5_KEYS, *S6_KEYS, *RUN_LOG_KEYS)
_DEPS = [
    "s0_gate_receipt_2B",
    "sealed_inputs_2B",
    "s5_arrival_roster",
    "s1_site_weights",
    "s2_alias_index",
    "s2_alias_blob",
    "s4_group_weights",
    "route_rng_policy_v1",
    "virtual_edge_policy_v1",
]
_DESCRIPTIONS = {
    "rng_event_alias_pick_group": "S5 Stage A events: one row per arrival (group draw).",
    "rng_event_alias_pick_site": "S5 Stage B events: one row per arrival (site draw).",
    "s5_selection_log": "S5 selection log: one row per arrival, partitioned by utc_day.",
    "rng_event_cdn_edge_pick": "S6 events: one row per virtual arrival (edge draw).",
    "s6_edge_log": "S6 edge log: one row per virtual arrival with edge coordinates.",
    "rng_trace_log": "The run's RNG trace: one row per draw of S5 then S6.",
    "rng_audit_log": "The run's RNG audit row (one per run).",
}
TWO_DRAWS = "s5_two_draws_per_arrival"
SITE_IN_GROUP = "s5_site_in_group"
COUNTERS = "s5_counters_increasing"
EDGE_DRAWS = "s6_one_draw_per_virtual_arrival"


def _check_specs() -> list[dg.AssetCheckSpec]:
    site = "rng_event_alias_pick_site"
    return [
        structural_spec(
            site,
            TWO_DRAWS,
            "Two draws per arrival: group events = site events = arrivals, "
            "S5 trace rows = 2 × arrivals, and every group event precedes its site event.",
        ),
        structural_spec(
            site, SITE_IN_GROUP, "Every routed site belongs to the routed time-zone group."
        ),
        structural_spec(
            site,
            COUNTERS,
            "Counters strictly increase: after = before + 1 and each event's "
            "before equals the previous event's after.",
        ),
        structural_spec(
            "rng_event_cdn_edge_pick",
            EDGE_DRAWS,
            "Exactly one edge draw per virtual arrival and none for non-virtual arrivals.",
        ),
    ]


def site_in_group_violations(frame: pl.DataFrame, site_timezones: pl.DataFrame) -> list[str]:
    """Routed (merchant, site_id, tz_group) rows whose site is not in that group (vectorised)."""
    tz = s5.with_site_ids(site_timezones).select(
        "merchant_id", "site_id", pl.col("tzid").alias("site_tz")
    )
    joined = frame.select("arrival", "merchant_id", "site_id", "tz_group_id").join(
        tz, on=["merchant_id", "site_id"], how="left"
    )
    bad = joined.filter(
        pl.col("site_tz").is_null() | (pl.col("site_tz") != pl.col("tz_group_id"))
    ).sort("arrival")
    return [
        f"arrival {r['arrival']}: merchant {r['merchant_id']} site {r['site_id']} not in "
        f"{r['tz_group_id']}"
        for r in bad.head(5).iter_rows(named=True)
    ] + ([f"... {bad.height} rows in all"] if bad.height > 5 else [])


def _s5_checks(out: StateOutcome, site_tz: pl.DataFrame) -> list[dg.AssetCheckResult]:
    routing: s5.S5Routing = out.extras["routing"]
    acc = out.report["rng_accounting"]
    n = routing.n
    before_hi, before_lo, after_hi, after_lo = routing.counter_arrays()
    draws_bad = []
    if (acc["events_group"], acc["events_site"], acc["draws_total"]) != (n, n, 2 * n):
        draws_bad.append(f"accounting {acc} for {n} arrivals")
    if before_lo.size != 2 * n:
        draws_bad.append(f"{before_lo.size} draws for {n} arrivals")
    first_bad = s5.check_counters(before_hi, before_lo, after_hi, after_lo)
    site = "rng_event_alias_pick_site"
    return [
        structural_result(site, TWO_DRAWS, draws_bad, arrivals=n, draws=int(before_lo.size)),
        structural_result(
            site,
            SITE_IN_GROUP,
            site_in_group_violations(out.frame, site_tz) if out.frame is not None else ["none"],
            arrivals=n,
        ),
        structural_result(
            site,
            COUNTERS,
            [] if first_bad is None else [f"event {first_bad} breaks the counter chain"],
            first_counter=dg.MetadataValue.json(acc["first_counter"]),
            last_counter=dg.MetadataValue.json(acc["last_counter"]),
        ),
    ]


def _s6_check(out: StateOutcome, routing: s5.S5Routing) -> dg.AssetCheckResult:
    picks: s6.EdgePicks = out.extras["picks"]
    virtual = np.flatnonzero(routing.roster.frame.get_column("is_virtual").to_numpy())
    bad = []
    if picks.n != virtual.size or not np.array_equal(picks.arrival, virtual):
        bad.append(f"{picks.n} edge draws for {virtual.size} virtual arrivals")
    first_bad = s5.check_counters(
        picks.draws.before_hi, picks.draws.before_lo, picks.draws.after_hi, picks.draws.after_lo
    )
    if first_bad is not None:
        bad.append(f"edge event {first_bad} breaks the counter chain")
    return structural_result(
        "rng_event_cdn_edge_pick", EDGE_DRAWS, bad, virtual_arrivals=int(virtual.size)
    )


def _publish_meta(out: StateOutcome) -> list[dict[str, Any]]:
    return [{"path": p.path.name, "bytes": p.bytes, "outcome": p.outcome} for p in out.published]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key,
            deps=_DEPS,
            group_name=ROUTER_GROUP,
            code_version=f"{s5.CODE_VERSION}+{s6.CODE_VERSION}",
            description=_DESCRIPTIONS[key],
        )
        for key in ROUTER_KEYS
    ],
    check_specs=_check_specs(),
    partitions_def=SEED_PARTITIONS,
)
def s5_s6_router(
    context: dg.AssetExecutionContext, store: SegmentStore, world: WorldSettings
) -> Iterator[dg.MaterializeResult]:
    seed = int(context.partition_key)
    home = store.storage()
    plan = plan_run(world.config(), world.panel(), store.pack(), seed)
    runners = state_runners(home, plan, join_router=True)  # S6 runs right after S5 here
    done: dict[str, Any] = {}
    done["S5"] = out5 = runners["S5"](done)
    done["S6"] = out6 = runners["S6"](done)
    site_tz = pl.read_parquet(
        home.path("site_timezones", plan.plan_tokens()),
        columns=["merchant_id", "legal_country_iso", "site_order", "tzid"],
    )
    checks = [*_s5_checks(out5, site_tz), _s6_check(out6, out5.extras["routing"])]
    posture = dict(out5.report.get("roster", {}))
    perf5: Mapping[str, Any] = out5.report.get("performance", {})
    perf6: Mapping[str, Any] = out6.report.get("performance", {})
    context.log.info(
        "router seed=%s arrivals=%s S5 %.0f/s S6 %s s",
        seed,
        out5.report["rng_accounting"]["events_group"],
        perf5.get("arrivals_per_second") or 0.0,
        perf6.get("elapsed_s"),
    )
    version5 = dg.DataVersion(out5.data_version)
    version6 = dg.DataVersion(out6.data_version)
    for key in ROUTER_KEYS:
        meta: dict[str, Any] = {"run_id": plan.run_id, "parameter_hash": plan.parameter_hash}
        if key in S5_KEYS:
            meta |= {
                "roster_posture": dg.MetadataValue.json(posture),
                "rng_accounting": dg.MetadataValue.json(out5.report["rng_accounting"]),
                "performance": dg.MetadataValue.json(dict(perf5)),
                "publish": dg.MetadataValue.json(_publish_meta(out5)),
            }
        else:
            meta |= {
                "rng_accounting": dg.MetadataValue.json(out6.report["rng_accounting"]),
                "counts": dg.MetadataValue.json(out6.report.get("counts", {})),
                "performance": dg.MetadataValue.json(dict(perf6)),
                "publish": dg.MetadataValue.json(_publish_meta(out6)),
            }
        yield dg.MaterializeResult(
            asset_key=key,
            metadata=meta,
            check_results=[c for c in checks if c.asset_key.to_user_string() == key],
            data_version=version5 if key in S5_KEYS else version6,
        )
