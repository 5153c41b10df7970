"""``segment2b`` command line: run the main job, generate the world, certify, verify a bundle,
show staleness, prune superseded evidence, benchmark, open the UI."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import dagster as dg

from segment2b.partitions import REQUIRED_SEEDS
from segment2b.policy.store import POLICIES_ENV
from segment2b.startup import import_settled
from segment2b.storage.home import HOME_ENV, default_home

REPO_ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("segment2b")


def _instance_home(home: Path) -> Path:
    """``$DAGSTER_HOME`` if set, else ``<storage home>/dagster`` (created with dagster.yaml)."""
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster").resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    cfg = dagster_home / "dagster.yaml"
    if not cfg.exists():
        shutil.copyfile(REPO_ROOT / "dagster.yaml", cfg)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home


def _run_config(args: argparse.Namespace) -> dict[str, Any]:
    store: dict[str, Any] = {"home": str(args.home)}
    if args.policies:
        store["policies"] = str(Path(args.policies).resolve())
    world: dict[str, Any] = {"profile": args.profile}
    if args.merchants:
        world["n_merchants"] = args.merchants
    if args.arrivals:
        world["roster_arrivals"] = args.arrivals
    return {"resources": {"store": {"config": store}, "world": {"config": world}}}


def _execute(job_name: str, run_config: dict[str, Any], partition: str | None = None) -> float:
    from segment2b.definitions import defs

    t0 = time.perf_counter()
    result = defs.resolve_job_def(job_name).execute_in_process(
        run_config=run_config,
        instance=dg.DagsterInstance.get(),
        partition_key=partition,
        raise_on_error=False,
    )
    if not result.success:
        errors = [
            ev.event_specific_data.error.message.strip()  # type: ignore[union-attr]
            for ev in result.all_events
            if ev.is_failure
            and ev.event_specific_data is not None
            and getattr(ev.event_specific_data, "error", None) is not None
        ]
        raise SystemExit(
            f"{job_name} failed (partition {partition}): " + (errors[0] if errors else "")
        )
    return time.perf_counter() - t0


def _execute_seeds(job_name: str, rc: dict[str, Any], seeds: Sequence[int], jobs: int) -> None:
    """One run of ``job_name`` per seed, ``jobs`` at a time in worker processes (each seed's
    steps stay in-process; seeds are independent, so two cores route two seeds at once)."""
    if jobs <= 1 or len(seeds) <= 1:
        for seed in seeds:
            log.info("%s seed=%s done in %.2fs", job_name, seed, _execute(job_name, rc, str(seed)))
        return
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked sqlite handles
    # Each worker imports the Definitions as the command itself does (segment2b.startup).
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=ctx,
        initializer=import_settled,
        initargs=("segment2b.definitions",),
    ) as pool:
        futures = {pool.submit(_execute, job_name, rc, str(seed)): seed for seed in seeds}
        for future in as_completed(futures):
            log.info("%s seed=%s done in %.2fs", job_name, futures[future], future.result())


def cmd_world(args: argparse.Namespace) -> None:
    """World of every panel seed, then the panel's 1B gate (the gate covers the whole panel)."""
    rc = _run_config(args)
    _execute_seeds("world_job", rc, REQUIRED_SEEDS, args.jobs)
    secs = _execute("gate_job", rc)
    log.info("1B gate published in %.2fs", secs)


def cmd_run(args: argparse.Namespace) -> None:
    """Policies → worlds → 1B gate → S0…S7 per seed → S8 bundle + certification, through
    Dagster: in-process steps, two seeds side by side (``--jobs``)."""
    seeds = args.seeds or list(REQUIRED_SEEDS)
    rc = _run_config(args)
    t0 = time.perf_counter()
    _execute("observe_policies", rc)
    cmd_world(args)
    _execute_seeds("seed_job", rc, seeds, args.jobs)
    secs = _execute("certify_job", rc)
    log.info("S8 + certification in %.2fs; total %.2fs", secs, time.perf_counter() - t0)
    _print_panel(args.home)
    log.info("outputs under %s", args.home)


def _print_panel(home: Path) -> None:
    from segment2b.certification.runner import panel_table, read_current_pack

    cert, cards, pack = read_current_pack(_storage(home))
    print(panel_table(cert, cards, pack))


def _storage(home: Path) -> Any:
    from segment2b.resources import SegmentStore

    return SegmentStore(home=str(home)).storage()


def cmd_verify_bundle(args: argparse.Namespace) -> int:
    from segment2b.bundle_verify import main as verify_main

    return verify_main([str(f) for f in args.folders])


def cmd_stale(args: argparse.Namespace) -> None:
    """Dagster's own status of every asset of a partition; policies are observed first so a
    policy edit shows up as a new data version."""
    from segment2b.definitions import defs
    from segment2b.staleness import format_report, stale_report

    _execute("observe_policies", _run_config(args))
    print(format_report(stale_report(defs, dg.DagsterInstance.get(), args.partition)))


def cmd_prune(args: argparse.Namespace) -> None:
    from segment2b.certification.evidence import prune

    report = prune(_storage(args.home), dry_run=not args.apply)
    verb = "deleted" if args.apply else "would delete"
    for item in report.items:
        print(f"{verb} {item.kind:<8} {item.bytes:>12,d} B  {item.path}")
    outcome = "freed" if args.apply else "to free"
    print(f"{len(report.items)} item(s), {report.bytes_freed:,d} bytes {outcome}")


def cmd_bench(args: argparse.Namespace) -> None:
    from segment2b.bench.main import run_bench

    run_bench(args)


def cmd_ui(args: argparse.Namespace) -> None:
    env = {**os.environ, HOME_ENV: str(args.home)}
    if args.policies:
        env[POLICIES_ENV] = str(Path(args.policies).resolve())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-w",
            str(REPO_ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(args.port),
        ],
        env=env,
        cwd=REPO_ROOT,
        check=True,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="segment2b", description=__doc__)
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="storage home (default $SEGMENT2B_HOME or .segment2b)",
    )
    parser.add_argument(
        "--policies",
        default=None,
        help="policy pack folder (default $SEGMENT2B_POLICIES or policies/)",
    )
    parser.add_argument("--profile", default="realistic", choices=["realistic", "replica"])
    parser.add_argument("--merchants", type=int, default=None)
    parser.add_argument("--arrivals", type=int, default=None)
    parser.add_argument(
        "--jobs", type=int, default=2, help="seeds run side by side (default 2 = cores)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="world + every state + certification for the seed panel")
    p_run.add_argument("--seeds", type=int, nargs="*")
    sub.add_parser("world", help="generate the upstream world and its 1B gate")
    p_verify = sub.add_parser("verify-bundle", help="re-verify validation bundle(s) by hash law")
    p_verify.add_argument("folders", nargs="+", type=Path)
    p_stale = sub.add_parser("stale", help="Dagster's fresh/stale status of every asset")
    p_stale.add_argument("--partition", default=str(REQUIRED_SEEDS[0]))
    p_prune = sub.add_parser("prune", help="delete superseded packs, run logs, staging folders")
    p_prune.add_argument("--apply", action="store_true", help="delete (default: dry run)")
    p_bench = sub.add_parser("bench", help="per-state runtime report on the default world")
    p_bench.add_argument("--out", type=Path, default=None)
    p_bench.add_argument("--sweep", action="store_true", help="also run the scale sweep")
    p_bench.add_argument(
        "--sweep-factors",
        default="1,10,100",
        help="merchant multiples of the default world for --sweep (default 1,10,100)",
    )
    p_bench.add_argument(
        "--sweep-arrival-factor",
        type=float,
        default=1.0,
        help="multiply the sweep's arrivals per merchant (default 1; e.g. 2 with "
        "--sweep-factors 10 measures what memory grows with arrivals at fixed merchants)",
    )
    p_bench.add_argument(
        "--sweep-only", action="store_true", help="run only the scale sweep (skip the lanes)"
    )
    p_ui = sub.add_parser("ui", help="Dagster UI (webserver + daemon) on localhost")
    p_ui.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    args.home = (args.home or default_home()).resolve()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # instance-DB migrations: noise
    if args.command == "verify-bundle":
        raise SystemExit(cmd_verify_bundle(args))
    os.environ[HOME_ENV] = str(args.home)
    if args.policies:
        os.environ[POLICIES_ENV] = str(Path(args.policies).resolve())
    _instance_home(args.home)
    commands = {
        "run": cmd_run,
        "world": cmd_world,
        "stale": cmd_stale,
        "prune": cmd_prune,
        "bench": cmd_bench,
        "ui": cmd_ui,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main()
