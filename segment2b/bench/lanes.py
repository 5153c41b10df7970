"""What the benchmark measures on the default world: the per-state profile, the three lanes of
certification.md §9, and Dagster's overhead over the pure state functions.

* **profile** — seed 42 on a one-seed panel, one child process per step (world + gate + roster,
  S0 … S4, S5/S6, S7, S8, certification), in lineage order on one fresh home; gives per-state
  wall-clock, throughput and each step's own peak memory.
* **fast lane** — after a ``day_effect_policy_v1`` edit, one seed from S3 onward (plus the new
  run's roster and the S0 reseal the edit forces: policy bytes enter ``parameter_hash``).
  Measured pure (on the profile's home) and through Dagster (on the certification home).
* **witness lane** — two seeds end to end (world … S8 + certification) on a two-seed panel,
  pure only: the Dagster definitions fix the panel at four seeds.
* **certification lane** — four seeds end to end, pure and through Dagster; the difference is
  the Dagster overhead, per stage (step windows from the event log) and in total. Both run the
  seeds one after the other, so stages compare like for like; the lane is also timed as users
  run it, ``segment2b run`` (two seeds side by side in worker processes).
"""

from __future__ import annotations

import json
import math
import shutil
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from segment2b.bench.context import BenchContext
from segment2b.bench.procs import ChildResult, running_step
from segment2b.bench.report import per_second
from segment2b.certification.evidence import LANE_BUDGETS_S, STATE_BUDGETS, runtime_report
from segment2b.partitions import REQUIRED_SEEDS
from segment2b.policy.store import default_pack, policy_self_digest
from segment2b.storage.digests import tree_bytes

PROFILE_SEED = REQUIRED_SEEDS[0]
WITNESS_SEEDS: tuple[int, ...] = REQUIRED_SEEDS[:2]
PROFILE_UNITS: tuple[str, ...] = (
    "world",
    "S0",
    "S1",
    "S2",
    "S3",
    "S4",
    "S5S6",
    "S7",
    "S8",
    "CERT",
)
FAST_STATES: tuple[str, ...] = ("S0", "S3", "S4", "S5", "S6", "S7")
ALL_STATES: tuple[str, ...] = ("S0", "S1", "S2", "S3", "S4", "S5", "S6", "S7")
# Dagster step key → the stage it runs (S5 and S6 share one step).
STEP_STAGES: dict[str, str] = {
    "upstream_world": "world",
    "validation_bundle_1B": "gate",
    "s5_arrival_roster": "roster",
    "s0_gate": "S0",
    "s1_site_weights": "S1",
    "s2_alias_tables": "S2",
    "s3_day_effects": "S3",
    "s4_group_weights": "S4",
    "s5_s6_router": "S5+S6",
    "s7_audit_report": "S7",
    "s8_validation_bundle": "S8",
    "certification_2B": "CERT",
}
STAGE_ORDER: tuple[str, ...] = (
    "policies",
    "world",
    "gate",
    "roster",
    "S0",
    "S1",
    "S2",
    "S3",
    "S4",
    "S5+S6",
    "S7",
    "S8",
    "CERT",
    "checks",
)
# Roster, S0 keys, S3, S4, the router's keys and S7 (the fast lane's Dagster selection).
FAST_KEYS_BASE: tuple[str, ...] = (
    "s5_arrival_roster",
    "sealed_inputs_2B",
    "s0_gate_receipt_2B",
    "s3_day_effects",
    "s4_group_weights",
)


# --- helpers ----------------------------------------------------------------------------------


def edited_day_effect_pack(source: Path, dest: Path) -> Path:
    """A copy of the pack with every σ base of ``day_effect_policy_v1`` raised by 1 %.

    A real, valid edit (the H5 self-digest is refreshed) that changes S3's bytes and therefore
    everything downstream of it — the fast lane's trigger.
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for path in sorted(source.glob("*.json")):
        shutil.copyfile(path, dest / path.name)
    target = dest / "day_effect_policy_v1.json"
    doc = json.loads(target.read_text())
    bases = doc["sigma_gamma_policy_v2"]["sigma_base_by_segment"]
    for key, value in list(bases.items()):
        bases[key] = round(float(value) * 1.01, 6)
    if "sha256_hex" in doc:
        doc["sha256_hex"] = policy_self_digest(doc)
    target.write_text(json.dumps(doc, indent=2) + "\n")
    return dest


def _steps(child: ChildResult) -> list[dict[str, Any]]:
    return list(child.result.get("steps", []))


def _failure(name: str, child: ChildResult) -> str:
    return f"{name}: {child.status} — {child.error}"


# --- profile ----------------------------------------------------------------------------------


def run_profile(
    ctx: BenchContext,
    home_name: str,
    *,
    seed: int = PROFILE_SEED,
    world: Mapping | None = None,
    tolerate_band_drift: bool = False,
    on_unit: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every step of one seed, one child per step, on a fresh home (one-seed panel).

    Returns ``{"home", "units": {unit: child}, "rows": [per-step rows], "failures": [...],
    "band_drift": [...]}``; ``tolerate_band_drift`` (scale sweep) lets a world whose realistic
    bands drift at scale publish anyway (see ``child.tolerate_band_drift``); ``on_unit`` gets
    the profile so far after every unit (partial reports during a long sweep).
    A failing or killed step stops the profile (later steps need its outputs); its row says
    how far it got and how much memory it held.
    """
    home = ctx.fresh_home(home_name)
    units: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    drift: list[str] = []
    world_knobs = dict(world or ctx.world)
    for unit in PROFILE_UNITS:
        spec = ctx.spec(
            "state",
            home,
            panel=[seed],
            seed=seed,
            state=unit,
            world=world_knobs,
            tolerate_band_drift=tolerate_band_drift,
        )
        child = ctx.run(spec, f"{home_name}-{unit}")
        drift += child.result.get("band_drift", [])
        units[unit] = {**child.to_dict(), "baseline": child.result.get("baseline_maxrss_bytes")}
        base = child.result.get("baseline_maxrss_bytes")
        for step in _steps(child):
            rows.append(
                {
                    **step,
                    "unit": unit,
                    "status": child.status,
                    "peak_rss_bytes": child.peak_rss_bytes,
                    "delta_rss_bytes": child.peak_rss_bytes - base if base else None,
                    "peak_anon_bytes": child.peak_anon_bytes,
                    "process_wall_s": child.wall_s,
                }
            )
        if not child.ok:
            failures.append(_failure(f"{home_name} {unit}", child))
            rows += salvaged_steps(child)
            running = running_step(child.result)
            rows.append(
                {
                    "step": running.split(" ")[0] if running else unit,
                    "unit": unit,
                    "status": child.status,
                    "error": child.error,
                    "elapsed_s": None,
                    "peak_rss_bytes": child.peak_rss_bytes,
                    "peak_anon_bytes": child.peak_anon_bytes,
                    "process_wall_s": child.wall_s,
                }
            )
            break
        if on_unit is not None:
            on_unit(
                {
                    "rows": rows,
                    "failures": failures,
                    "band_drift": drift,
                }
            )
    return {
        "home": home,
        "home_bytes": tree_bytes(home),  # what the measured home holds on disk
        "units": units,
        "rows": rows,
        "failures": failures,
        "band_drift": drift,
    }


def salvaged_steps(child: ChildResult) -> list[dict[str, Any]]:
    """Steps a killed child finished before it died, from its progress log (time only: the
    child's peak memory belongs to the step that was running)."""
    if child.result.get("steps"):
        return []
    return [
        {
            "step": mark["step"],
            "seed": mark.get("seed"),
            "elapsed_s": mark["elapsed_s"],
            "start": mark["t"] - mark["elapsed_s"],
            "status": "ok",
            "peak_rss_bytes": None,
            "note": f"finished before the child was {child.status}",
        }
        for mark in child.result.get("progress", [])
        if mark.get("event") == "done"
    ]


def _work(row: Mapping[str, Any]) -> float | None:
    step = row["step"]
    keys = {
        "S2": "sites_total",
        "S5": "arrivals",
        "S6": "arrivals",
        "S7": "selections_checked",
        "S8": "files_indexed",
    }
    value = row.get(keys.get(step, "rows"))
    return float(value) if value is not None else None


def profile_table(
    profile: Mapping[str, Any], run: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-step table rows (with throughput and §9 budget status) and the §9 runtime report."""
    windows: dict[str, tuple[float, float]] = {}
    counters: dict[str, dict[str, Any]] = {}
    for row in profile["rows"]:
        if row.get("elapsed_s") is not None and row["step"] in STATE_BUDGETS:
            windows[row["step"]] = (row["start"], row["start"] + row["elapsed_s"])
            counters[row["step"]] = {
                k: v
                for k, v in row.items()
                if k
                not in {
                    "step",
                    "start",
                    "elapsed_s",
                    "seed",
                    "unit",
                    "status",
                    "peak_rss_bytes",
                    "delta_rss_bytes",
                    "peak_anon_bytes",
                    "process_wall_s",
                    "rows",
                    "published_rows",
                }
                and not isinstance(v, dict)
            }
    report = runtime_report(windows, run=run, counters=counters)
    shares = {r["state"]: r["segment_share"] for r in report["timing"]["state_table"]}
    budgets = report["budgets"]
    table = []
    for row in profile["rows"]:
        step = row["step"]
        work = _work(row)
        table.append(
            {
                "step": step,
                "status": row.get("status"),
                "elapsed_s": row.get("elapsed_s"),
                "segment_share": shares.get(step),
                "budget_status": budgets.get(step, {}).get("status"),
                "work": work,
                "per_s": per_second(work, row.get("elapsed_s")),
                "peak_rss_bytes": row.get("peak_rss_bytes"),
                "delta_rss_bytes": row.get("delta_rss_bytes"),
                "peak_anon_bytes": row.get("peak_anon_bytes"),
                "child": row.get("unit"),
                "rows": row.get("rows"),
                "detail": {
                    k: v
                    for k, v in row.items()
                    if k
                    in ("durations_ms", "virtual_arrivals", "verdict", "error", "published_rows")
                },
            }
        )
    return table, report


# --- lanes ------------------------------------------------------------------------------------


def _lane_entry(
    lane: str,
    path: str,
    seeds: Sequence[int],
    steps_label: str,
    *,
    child: ChildResult,
    compute_s: float | None,
) -> dict[str, Any]:
    budget = LANE_BUDGETS_S[lane]
    return {
        "lane": lane,
        "path": path,
        "seeds": list(seeds),
        "steps_label": steps_label,
        "status": child.status,
        "error": child.error,
        "compute_s": compute_s,
        "wall_s": child.wall_s,
        "budget_s": budget,
        "within_budget": child.wall_s <= budget if child.ok else None,
        "peak_rss_bytes": child.peak_rss_bytes,
        "peak_anon_bytes": child.peak_anon_bytes,
    }


def pure_fast_lane(ctx: BenchContext, home: Path, pack: Path) -> tuple[dict, ChildResult]:
    spec = ctx.spec(
        "pure_lane",
        home,
        panel=[PROFILE_SEED],
        seeds=[PROFILE_SEED],
        generate_world=False,
        states=list(FAST_STATES),
        lane="fast",
        policies=str(pack),
    )
    child = ctx.run(spec, "fast-pure")
    entry = _lane_entry(
        "fast",
        "pure",
        [PROFILE_SEED],
        "roster, S0 reseal, S3, S4, S5/S6, S7",
        child=child,
        compute_s=child.result.get("total_s"),
    )
    entry["steps"] = _step_summary(_steps(child))
    return entry, child


def pure_full_lane(ctx: BenchContext, lane: str, seeds: Sequence[int]) -> tuple[dict, ChildResult]:
    home = ctx.fresh_home(f"{lane}-pure")
    spec = ctx.spec(
        "pure_lane",
        home,
        panel=list(seeds),
        seeds=list(seeds),
        generate_world=True,
        states=list(ALL_STATES),
        bundle=True,
        certify=True,
        lane=lane,
    )
    child = ctx.run(spec, f"{lane}-pure")
    ctx.discard(home)
    entry = _lane_entry(
        lane,
        "pure",
        seeds,
        "world … S8 + certification",
        child=child,
        compute_s=child.result.get("total_s"),
    )
    entry["steps"] = _step_summary(_steps(child))
    return entry, child


def dagster_lane(
    ctx: BenchContext, home: Path, mode: str, *, policies: str | None = None
) -> tuple[dict, ChildResult]:
    from segment2b.assets.routing import ROUTER_KEYS

    seeds = [PROFILE_SEED] if mode == "fast" else list(REQUIRED_SEEDS)
    fields: dict[str, Any] = {
        "seeds": seeds,
        "mode": mode,
        "fast_keys": [*FAST_KEYS_BASE, *ROUTER_KEYS, "s7_audit_report"],
    }
    if policies:
        fields["policies"] = policies
    spec = ctx.spec("dagster_lane", home, **fields)
    child = ctx.run(spec, f"{mode}-dagster")
    jobs = child.result.get("jobs", [])
    lane = "fast" if mode == "fast" else "certification"
    label = (
        "observe policies, roster, S0 reseal, S3, S4, S5/S6, S7"
        if mode == "fast"
        else "observe policies, world … S8 + certification"
    )
    compute = sum(j["wall_s"] for j in jobs)
    entry = _lane_entry(lane, "Dagster", seeds, label, child=child, compute_s=compute)
    entry["import_s"] = child.result.get("import_s")
    entry["steps"] = _dagster_stage_totals(jobs)
    return entry, child


def cli_lane(ctx: BenchContext) -> tuple[dict, ChildResult]:
    """The certification lane through ``segment2b run`` (two seeds side by side), on a fresh
    home: what a user's end-to-end run costs, start-up included."""
    home = ctx.fresh_home("certification-cli")
    child = ctx.run(ctx.spec("cli_run", home), "certification-cli")
    ctx.discard(home)
    entry = _lane_entry(
        "certification",
        "segment2b run",
        REQUIRED_SEEDS,
        "observe policies, world … S8 + certification, two seeds side by side",
        child=child,
        compute_s=child.result.get("total_s"),
    )
    return entry, child


def _step_summary(steps: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Seconds per step name, summed over seeds (S5 and S6 also reported as ``S5+S6``)."""
    out: dict[str, float] = defaultdict(float)
    for s in steps:
        out[s["step"]] += float(s["elapsed_s"])
        if s["step"] in ("S5", "S6"):
            out["S5+S6"] += float(s["elapsed_s"])
    return dict(out)


def _dagster_stage_totals(jobs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Seconds per stage from step windows, summed over seeds, plus ``outside steps`` time."""
    out: dict[str, float] = defaultdict(float)
    for job in jobs:
        inside = 0.0
        for step in job["steps"]:
            if step.get("start") is None or step.get("end") is None:
                continue
            secs = float(step["end"]) - float(step["start"])
            inside += secs
            key = step["step_key"]
            stage = STEP_STAGES.get(key)
            if stage is None:
                stage = "policies" if job["job"] == "observe_policies" else "checks"
            out[stage] += secs
        out["outside steps"] += float(job["wall_s"]) - inside
    return dict(out)


def dagster_overhead(pure: Mapping[str, Any], dag: Mapping[str, Any]) -> dict[str, Any]:
    """Per-stage pure vs Dagster seconds of the certification lane, and the totals."""
    p, d = pure.get("steps", {}), dag.get("steps", {})
    stages = []
    for stage in STAGE_ORDER:
        pure_s = p.get(stage)
        if pure_s is None and stage not in d:
            continue
        stages.append({"stage": stage, "pure_s": pure_s, "dagster_s": d.get(stage)})
    outside = d.get("outside steps")
    stages.append({"stage": "outside steps", "pure_s": None, "dagster_s": outside})
    pure_compute = pure.get("compute_s")
    dag_compute = dag.get("compute_s")
    in_steps = math.fsum(
        (r["dagster_s"] or 0.0) - (r["pure_s"] or 0.0)
        for r in stages
        if r["stage"] not in ("outside steps",) and r["dagster_s"] is not None
    )
    summary = []
    if pure_compute and dag_compute:
        summary.append(
            f"certification lane compute: pure {pure_compute:.1f} s, Dagster {dag_compute:.1f} s "
            f"(+{dag_compute - pure_compute:.1f} s, {dag_compute / pure_compute:.2f}x)"
        )
        summary.append(
            f"of the difference: {in_steps:.1f} s inside steps (asset bodies' checks, metadata "
            f"and I/O, plus step set-up) and {outside or 0.0:.1f} s outside steps (run launch, "
            "planning, event-log writes)"
        )
    if pure.get("wall_s") and dag.get("wall_s"):
        summary.append(
            f"process wall-clock: pure {pure['wall_s']:.1f} s, Dagster {dag['wall_s']:.1f} s "
            "(both children import dagster at start-up: the resources are Dagster resources)"
        )
    return {
        "stages": stages,
        "summary": summary,
        "pure_compute_s": pure_compute,
        "dagster_compute_s": dag_compute,
    }


def default_pack_path(policies: str | None) -> Path:
    return Path(policies).resolve() if policies else default_pack()
