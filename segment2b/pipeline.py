"""The segment's steps as plain functions: world → 1B gate → roster → S0 … S8 → certification.

Dagster assets call exactly these (one step per asset), and the benchmark and the replica
reproduction call them in-process without Dagster, so "state compute" and "Dagster overhead"
can be timed apart. No step reads the wall clock for anything it writes.

Grain: ``WorldStep`` one seed's world; ``GateStep`` one manifest; ``RosterStep`` one run
(seed × parameter_hash × run_id); ``SeedRun`` timings of one seed's states.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from segment2b.errors import SegmentError
from segment2b.policy.store import PolicyPack
from segment2b.run_plan import RunPlan, plan_run, world_fingerprint
from segment2b.states import s1_site_weights as s1
from segment2b.states import s2_alias_tables as s2
from segment2b.states import s3_day_effects as s3
from segment2b.states import s4_group_weights as s4
from segment2b.states import s5_router as s5
from segment2b.states import s6_edge_router as s6
from segment2b.states import s7_audit as s7
from segment2b.states import s8_validation_bundle as s8
from segment2b.states.outcome import StateOutcome
from segment2b.states.s0_gate import S0Outcome, run_s0
from segment2b.storage import compiled
from segment2b.storage.home import StorageHome
from segment2b.world.config import WorldConfig
from segment2b.world.generator import generate_world
from segment2b.world.outputs import (
    ROSTER_CHUNK_ROWS,
    roster_chunk_bytes,
    tz_cache_for,
    world_created_utc,
    write_gate_bundle,
    write_roster_chunks,
    write_run_receipt,
    write_seed_world,
)
from segment2b.world.report import self_check, world_report

STATES: tuple[str, ...] = ("S0", "S1", "S2", "S3", "S4", "S5", "S6", "S7")


@dataclass(frozen=True)
class WorldStep:
    manifest_fingerprint: str
    data_version: str
    report: Mapping[str, Any]
    merchants: int
    sites: int
    arrivals: int


@dataclass(frozen=True)
class GateStep:
    manifest_fingerprint: str
    bundle_sha256: str
    tzids: int


@dataclass(frozen=True)
class RosterStep:
    plan: RunPlan
    data_version: str
    metadata: Mapping[str, Any]


def publish_world(
    home: StorageHome, config: WorldConfig, panel: Sequence[int], seed: int
) -> WorldStep:
    """Generate, self-check and publish one seed's upstream world (immutable evidence)."""
    mf = world_fingerprint(config, panel)
    world = generate_world(config, seed)
    problems = self_check(world, config)
    if problems:
        raise SegmentError(
            "UW-050",
            f"world self-check failed: {problems[0]}",
            dataset="upstream_world",
            key=f"seed={seed}",
            context={"problems": problems[:20]},
        )
    report = world_report(world, config)
    digests = write_seed_world(
        home,
        seed=seed,
        manifest_fingerprint=mf,
        created_utc=world_created_utc(config.start_day),
        site_locations=world.site_locations,
        site_timezones=world.site_timezones,
        merchants=world.merchants,
        arrivals=world.roster,
        report=report,
    )
    return WorldStep(
        mf,
        digests.data_version(),
        report,
        world.merchants.height,
        world.site_locations.height,
        world.roster.height,
    )


def publish_gate(home: StorageHome, config: WorldConfig, panel: Sequence[int]) -> GateStep:
    """The manifest's 1B PASS gate and 2A tz cache, over every panel seed's published world."""
    mf = world_fingerprint(config, panel)
    counts: dict[int, int] = {}
    tzids: set[str] = set()
    for seed in panel:
        tokens = {"seed": str(seed), "manifest_fingerprint": mf}
        path = home.path("site_timezones", tokens)
        if not path.exists():
            raise SegmentError(
                "UW-051",
                "the 1B gate covers the whole panel: a seed's world is not generated yet",
                dataset="site_timezones",
                key=f"seed={seed}",
            )
        tz = pl.read_parquet(path, columns=["tzid"])
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
    return GateStep(mf, digest, len(tzids))


def publish_roster(
    home: StorageHome, config: WorldConfig, panel: Sequence[int], pack: PolicyPack, seed: int
) -> RosterStep:
    """The run's receipt and arrival roster (JSONL, arrival order), written before S0.

    The world's arrivals are read and serialised ``ROSTER_CHUNK_ROWS`` rows at a time and
    streamed into the staged roster (hashed as written), so memory stays flat in the roster
    size; the bytes are those of :func:`roster_jsonl` over the whole table.
    """
    plan = plan_run(config, panel, pack, seed)
    arrivals = pl.scan_parquet(home.path("world_arrivals", plan.plan_tokens()))
    figures = (
        arrivals.select(
            total=pl.len(),
            virtual=pl.col("is_virtual").sum(),
            first_day=pl.col("utc_day").min(),
            last_day=pl.col("utc_day").max(),
        )
        .collect()
        .row(0, named=True)
    )
    total = int(figures["total"])
    chunks = (
        roster_chunk_bytes(arrivals.slice(offset, ROSTER_CHUNK_ROWS).collect())
        for offset in range(0, total, ROSTER_CHUNK_ROWS)
    )
    write_run_receipt(
        home,
        run_id=plan.run_id,
        seed=seed,
        parameter_hash=plan.parameter_hash,
        manifest_fingerprint=plan.manifest_fingerprint,
        created_utc=plan.created_utc,
    )
    res = write_roster_chunks(home, plan.tokens(), chunks)
    meta = {
        "run_id": plan.run_id,
        "parameter_hash": plan.parameter_hash,
        "arrivals": total,
        "virtual_arrivals": int(figures["virtual"]),
        "first_day": figures["first_day"],
        "last_day": figures["last_day"],
        "bytes": res.bytes,
        "path": str(res.path),
    }
    # Content digest: a policy edit moves the roster to a new run path but leaves its bytes
    # (and so this version) unchanged. ``res.digest`` is the SHA-256 of exactly those bytes.
    return RosterStep(plan, res.digest, meta)


# --- states ----------------------------------------------------------------------------------


def state_runners(
    home: StorageHome, plan: RunPlan, *, join_router: bool = False
) -> dict[str, Callable[[Mapping[str, Any]], Any]]:
    """One callable per state of one seed; each takes the outcomes so far (S6 joins S5's).

    ``join_router``: the caller runs S6 right after S5 in this process (the router step).
    S5 then prepares S6 before its publish and writes the shared trace once, S5's rows and
    S6's tail together, so S6 need not copy the whole trace to append (s6 §7); the S6 runner
    finishes what S5 prepared. Off, each state runs alone as the spec describes.
    """
    compiled.preload()  # S5's kernels load while the states before it run
    seed, mf = plan.seed, plan.manifest_fingerprint
    run = {"parameter_hash": plan.parameter_hash, "run_id": plan.run_id}

    def prepare_s6(s5_so_far: Callable[[], StateOutcome]) -> s6.S6Pending:
        return s6.prepare_s6(home, seed=seed, manifest_fingerprint=mf, s5=s5_so_far, **run)

    def run_s6(done: Mapping[str, Any]) -> StateOutcome:
        s5_out = done.get("S5")
        join = s5_out.extras.get("s6_join") if isinstance(s5_out, StateOutcome) else None
        if isinstance(join, s6.S6Pending):
            return join.finish(s5_out.extras.get("s6_trace"))
        return s6.run_s6(home, seed=seed, manifest_fingerprint=mf, s5=s5_out, **run)

    return {
        "S0": lambda _: run_s0(home, plan.run_id),
        "S1": lambda _: s1.run_s1(home, seed=seed, manifest_fingerprint=mf),
        "S2": lambda _: s2.run_s2(home, seed=seed, manifest_fingerprint=mf),
        "S3": lambda _: s3.run_s3(home, seed=seed, manifest_fingerprint=mf),
        "S4": lambda _: s4.run_s4(home, seed=seed, manifest_fingerprint=mf),
        "S5": lambda _: s5.run_s5(
            home,
            seed=seed,
            manifest_fingerprint=mf,
            join_s6=prepare_s6 if join_router else None,
            **run,
        ),
        "S6": run_s6,
        "S7": lambda _: s7.run_s7(home, seed=seed, manifest_fingerprint=mf, **run),
    }


@dataclass
class SeedRun:
    """What running one seed's states in-process produced: outcomes and wall-clock windows."""

    plan: RunPlan
    outcomes: dict[str, StateOutcome | S0Outcome] = field(default_factory=dict)
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)

    def seconds(self, state: str) -> float:
        start, end = self.windows[state]
        return end - start


def run_seed_states(home: StorageHome, plan: RunPlan, *, states: Sequence[str] = STATES) -> SeedRun:
    """Run ``states`` of one seed in lineage order, in-process (no Dagster)."""
    runners = state_runners(home, plan, join_router="S5" in states and "S6" in states)
    out = SeedRun(plan)
    for state in states:
        t0 = time.perf_counter()
        out.outcomes[state] = runners[state](out.outcomes)
        out.windows[state] = (t0, time.perf_counter())
    return out


def publish_bundle(
    home: StorageHome, manifest_fingerprint: str, required_seeds: Sequence[int]
) -> s8.S8Result:
    """S8 over the panel: publishes once every required seed has an S7 PASS, else WAITING."""
    return s8.run_s8(home, manifest_fingerprint=manifest_fingerprint, required_seeds=required_seeds)
