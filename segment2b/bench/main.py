"""``segment2b bench``: measure, print and write the runtime report.

Order: per-state profile (seed 42) → fast lane (pure) → witness lane (pure) → certification
lane (pure, then Dagster) → fast lane (Dagster) → optional scale sweep. The report is rewritten
after every section, so an interrupted or killed sweep still leaves what was measured.

Environment knobs (the CLI's flags are shared with other commands): ``SEGMENT2B_BENCH_KEEP=1``
keeps the measured storage homes; ``SEGMENT2B_BENCH_UNIT_TIMEOUT_S`` (default 1800) and
``SEGMENT2B_BENCH_RSS_LIMIT_GIB`` (default 85 % of available memory) bound each child process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from segment2b.bench import lanes
from segment2b.bench.context import BenchContext
from segment2b.bench.probe import machine_probe
from segment2b.bench.report import render_markdown, render_text
from segment2b.bench.sweep import run_sweep
from segment2b.resources import SegmentStore, WorldSettings
from segment2b.run_plan import plan_run

log = logging.getLogger("segment2b.bench")
REPO_ROOT = Path(__file__).resolve().parents[2]
SUPERLINEAR_SLOPE = 1.2

NOTES = [
    "Every measured unit runs in a fresh child process started as `segment2b` starts "
    "(`python -m segment2b.startup segment2b.bench.child`) on a fresh storage home; homes are "
    "deleted afterwards (SEGMENT2B_BENCH_KEEP=1 keeps them).",
    "Per-state seconds are measured inside the child around the state function alone "
    "(`pipeline.state_runners`), so interpreter start-up, imports and loading the compiled "
    "kernels (≈2 s per child) are excluded; lane 'process s' includes them, lane 'compute s' "
    "does not. (A run's process loads the kernels on a background thread while S0-S4 run; a "
    "child that runs one state alone loads them before its clock starts.) S5 and S6 run in "
    "one call (S6 is prepared on a thread beside S5's rendering): S6's seconds are its "
    "finish plus the time S5 waited for that preparation, and S5+S6 is the call's wall-clock.",
    "Peak memory is the kernel's high-water resident set (`ru_maxrss` from `os.wait4`) of the "
    "child that ran the step, so it is that step's own peak, native polars/numpy/Arrow "
    "allocations included (tracemalloc would see only Python objects). 'Δ RSS' subtracts the "
    "child's peak after imports, before the step. RSS counts touched file pages and memory "
    "the allocator keeps, so it is an upper bound of what the step needs. world/gate/roster "
    "share one child, as do S5 and S6 (one Dagster step: S6 joins S5's routing in memory).",
    "'peak anon' is the highest sampled (every 0.1 s) private resident memory (`RssAnon`): "
    "RSS without the file pages a step maps (S7 maps every router log, so its RSS grows with "
    "the logs although the kernel can drop those pages). The memory watchdog "
    "(`SEGMENT2B_BENCH_RSS_LIMIT_GIB`) applies to private memory, since that is what runs the "
    "machine out of memory.",
    "The profile and the sweep use a one-seed panel (seed 42): the 1B gate covers the whole "
    "panel, so a four-seed panel would generate four worlds for a one-seed measurement. The "
    "world is the same; only the manifest_fingerprint differs.",
    "Fast lane: a `day_effect_policy_v1` edit (every σ base ×1.01, H5 digest refreshed) "
    "re-run from S3 onward for one seed; the edit changes parameter_hash, so the new run's "
    "roster and the S0 reseal run too. S1/S2 are unchanged and not re-run.",
    "Scale sweep: ×1, ×10, ×100 merchants (`--sweep-factors`) with roster arrivals scaled "
    "alike (arrivals per merchant fixed unless `--sweep-arrival-factor` multiplies them), one "
    "seed. The world's realistic bands "
    "(upstream-world §5.6) are calibrated at 1,238 merchants, so the larger worlds publish with "
    "their band drift recorded under Findings instead of failing UW-050; structural, time-zone "
    "and roster checks still apply. Before each scale the home's disk use is projected from "
    "the bytes per arrival measured so far; a scale that would not fit 85 % of the free disk "
    "runs with the arrivals that fit and says so. Time slope = least-squares fit of "
    "log(seconds) on log(work) over the scales that finished the step, where work is arrivals "
    "(the roster's published count, which its floor of two per merchant-day can raise above "
    "the request) for roster/S5/S6/S7 and merchants otherwise; "
    "CPU slope the same for CPU seconds (`time.process_time()` around the state: every thread of "
    "the child, without the time spent waiting on the disk; S5's includes S6's preparation); "
    "memory slopes the same for Δ RSS and peak anon (steps sharing a child share its figure).",
    "Witness lane runs pure only: the Dagster definitions fix the panel at the four "
    "required seeds. Lane budgets are checked against process wall-clock.",
    "Dagster overhead: the certification lane runs the same work pure (one process) and "
    "through the Dagster jobs (`execute_in_process`, one seed after the other, like the pure "
    "lane); the lane is also timed as users run it, `segment2b run` (two seeds side by side). "
    "Per stage, 'Dagster step s' is STEP_START → STEP_SUCCESS from the run's event log, so it "
    "also holds what the asset bodies add over the pure state (gate metrics, asset checks, "
    "metadata). 'outside steps' is job wall-clock not inside any step (run launch, planning, "
    "event-log writes).",
    "The machine may be shared and its speed drifts: load averages and a machine probe (a "
    "fixed workload, `bench/probe.py`) are recorded at start and end; compare reports only at "
    "similar probe times.",
]


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"HEAD {head}" + (f" + {len(dirty)} modified tracked file(s)" if dirty else "")


def _host() -> dict[str, Any]:
    import dagster
    import numpy
    import polars

    mem = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 2**20
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpus": cpus,
        "mem_total_gib": mem,
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "polars": polars.__version__,
        "numpy": numpy.__version__,
        "dagster": dagster.__version__,
    }


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def world_knobs(args: argparse.Namespace) -> dict[str, Any]:
    defaults = WorldSettings()
    return {
        "profile": args.profile or defaults.profile,
        "n_merchants": args.merchants or defaults.n_merchants,
        "roster_arrivals": args.arrivals or defaults.roster_arrivals,
    }


def findings(doc: Mapping[str, Any]) -> list[str]:
    """Plain statements of what needs attention: hotspot, budgets, failures, scaling."""
    out: list[str] = []
    gate = doc["runtime_report"]["progression_gate"]
    hot = doc["runtime_report"]["hotspots"]
    if hot:
        out.append(
            f"primary hotspot {hot[0]['state']} ({hot[0]['elapsed_s']:.2f} s, "
            f"{hot[0]['budget_status']}); progression gate {gate['decision']}"
        )
    for lane in doc["lanes"]:
        if lane.get("within_budget") is False:
            out.append(
                f"{lane['lane']} lane ({lane['path']}) over budget: {lane['wall_s']:.0f} s > "
                f"{lane['budget_s']:.0f} s"
            )
    out += [f"failed: {f}" for f in doc.get("failures", [])]
    for row in doc["profile"]["states"]:
        published = row.get("detail", {}).get("published_rows")
        if row["step"] == "S1" and published is not None and published != row.get("rows"):
            out.append(f"S1 published {published:,} of its {row['rows']:,} rows")
    sweep = doc.get("sweep")
    if sweep:
        for point in sweep["scales"]:
            for step, cell in point["states"].items():
                if cell.get("status", "ok") != "ok":
                    peak = (cell.get("peak_rss_bytes") or 0) / 2**30
                    out.append(
                        f"sweep {point['merchants']:,} merchants: {step} {cell['status']} "
                        f"(peak RSS {peak:.1f} GiB): {cell.get('error')}"
                    )
        for point in sweep["scales"]:
            s1 = point["states"].get("S1") or {}
            if s1.get("published_rows") is not None and s1["published_rows"] != s1.get("rows"):
                out.append(
                    f"sweep {point['merchants']:,} merchants: S1 published "
                    f"{s1['published_rows']:,} of its {s1['rows']:,} rows"
                )
            if point.get("arrivals_capped_by_disk"):
                out.append(
                    f"sweep {point['merchants']:,} merchants: roster capped by the disk, "
                    f"{point['arrivals_capped_by_disk']}"
                )
            if point.get("band_drift"):
                out.append(
                    f"sweep {point['merchants']:,} merchants: world published despite band "
                    f"drift (bands are calibrated at 1,238): {'; '.join(point['band_drift'])}"
                )
        steep = {
            s: v for s, v in sweep["slopes"].items() if v is not None and v > SUPERLINEAR_SLOPE
        }
        if steep:
            out.append(
                "super-linear scaling (log-log slope > 1.2): "
                + ", ".join(f"{s} {v:.2f}" for s, v in steep.items())
            )
    return out


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark described in the module docstring; returns the report document."""
    t_start = time.perf_counter()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    home_root: Path = Path(args.home).resolve()
    out_dir = Path(args.out).resolve() if args.out else home_root / "reports" / "bench"
    policies = str(Path(args.policies).resolve()) if args.policies else None
    knobs = world_knobs(args)
    ctx = BenchContext.from_env(
        home_root / "bench" / stamp, knobs, policies, keep=bool(getattr(args, "keep", False))
    )
    store = SegmentStore(home=str(ctx.root), policies=policies or "")
    plan = plan_run(
        WorldSettings(**knobs).config(), (lanes.PROFILE_SEED,), store.pack(), lanes.PROFILE_SEED
    )
    doc: dict[str, Any] = {
        "meta": {
            "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "host": _host(),
            "git": _git(),
            "load_start": _load(),
            "probe_start": machine_probe(ctx.root),
            "world": knobs,
            "policies": policies or str(lanes.default_pack_path(None)),
            "work_root": str(ctx.root),
        },
        "lanes": [],
        "failures": [],
        "notes": NOTES,
    }

    def save(*, final: bool = False) -> None:
        doc["meta"]["load_end"] = _load()
        if final:
            doc["meta"]["probe_end"] = machine_probe(ctx.root)
        doc["meta"]["bench_s"] = time.perf_counter() - t_start
        if "runtime_report" in doc:
            doc["findings"] = findings(doc)
        write_report(doc, out_dir, stamp)

    log.info("bench: per-state profile (seed %s), work folder %s", lanes.PROFILE_SEED, ctx.root)
    profile = lanes.run_profile(ctx, "profile")
    table, runtime = lanes.profile_table(profile, {**plan.tokens(), "seed": plan.seed})
    doc["profile"] = {"seed": lanes.PROFILE_SEED, "panel": [lanes.PROFILE_SEED], "states": table}
    doc["profile_children"] = profile["units"]
    doc["runtime_report"] = runtime
    doc["failures"] += profile["failures"]
    save()

    if args.sweep_only:
        ctx.discard(profile["home"])
    else:
        _run_lanes(ctx, doc, profile, policies, save)

    if args.sweep or args.sweep_only:
        log.info("bench: scale sweep")

        def on_point(sweep: dict[str, Any]) -> None:
            doc["sweep"] = sweep
            save()

        factors = tuple(int(f) for f in args.sweep_factors.split(","))
        doc["sweep"] = run_sweep(
            ctx,
            knobs,
            profile,
            factors=factors,
            arrival_factor=args.sweep_arrival_factor,
            on_point=on_point,
        )
    save(final=True)
    ctx.finish()
    sweep_failed = any(p["failures"] for p in (doc.get("sweep") or {}).get("scales", []))
    if not doc["failures"] and not sweep_failed and not ctx.keep:
        shutil.rmtree(ctx.root, ignore_errors=True)
    print(render_text(doc))
    log.info("bench report written to %s", out_dir)
    return doc


def _run_lanes(
    ctx: BenchContext,
    doc: dict[str, Any],
    profile: Mapping[str, Any],
    policies: str | None,
    save: Callable[[], None],
) -> None:
    """Fast, witness and certification lanes (pure and Dagster) and the Dagster overhead."""
    pack = lanes.edited_day_effect_pack(
        lanes.default_pack_path(policies), ctx.root / "policies-day-effect-edit"
    )
    if not profile["failures"]:
        log.info("bench: fast lane (pure)")
        entry, child = lanes.pure_fast_lane(ctx, profile["home"], pack)
        doc["lanes"].append(entry)
        if not child.ok:
            doc["failures"].append(f"fast lane (pure): {child.error}")
    ctx.discard(profile["home"])

    log.info("bench: witness lane (pure, seeds %s)", lanes.WITNESS_SEEDS)
    entry, child = lanes.pure_full_lane(ctx, "witness", lanes.WITNESS_SEEDS)
    doc["lanes"].append(entry)
    if not child.ok:
        doc["failures"].append(f"witness lane (pure): {child.error}")
    save()

    log.info("bench: certification lane (pure)")
    cert_pure, child = lanes.pure_full_lane(ctx, "certification", lanes.REQUIRED_SEEDS)
    doc["lanes"].append(cert_pure)
    if not child.ok:
        doc["failures"].append(f"certification lane (pure): {child.error}")
    save()

    log.info("bench: certification lane (Dagster)")
    dag_home = ctx.fresh_home("certification-dagster")
    cert_dag, child = lanes.dagster_lane(ctx, dag_home, "certification")
    doc["lanes"].append(cert_dag)
    if child.ok:
        log.info("bench: fast lane (Dagster)")
        entry, fast_child = lanes.dagster_lane(ctx, dag_home, "fast", policies=str(pack))
        doc["lanes"].append(entry)
        if not fast_child.ok:
            doc["failures"].append(f"fast lane (Dagster): {fast_child.error}")
    else:
        doc["failures"].append(f"certification lane (Dagster): {child.error}")
    ctx.discard(dag_home)
    doc["dagster_overhead"] = lanes.dagster_overhead(cert_pure, cert_dag)
    save()

    log.info("bench: certification lane (segment2b run)")
    entry, child = lanes.cli_lane(ctx)
    doc["lanes"].append(entry)
    if not child.ok:
        doc["failures"].append(f"certification lane (segment2b run): {child.error}")
    save()


def write_report(doc: Mapping[str, Any], out_dir: Path, stamp: str) -> tuple[Path, Path]:
    """``bench-<stamp>.json``/``.md`` plus ``latest.json``/``latest.md`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"
    md = render_markdown(doc)
    paths = (out_dir / f"bench-{stamp}.json", out_dir / f"bench-{stamp}.md")
    paths[0].write_text(text)
    paths[1].write_text(md)
    (out_dir / "latest.json").write_text(text)
    (out_dir / "latest.md").write_text(md)
    return paths
