"""Scale sweep: the per-step profile at ×1, ×10 and ×100 the default world, and the log-log
slope of time against merchants per step.

Roster arrivals scale with merchants (400,000 at 1,238), so arrivals per merchant stay fixed.
Each scale is one seed on a one-seed panel: the 1B gate covers the whole panel, and four
worlds at ×100 would measure world generation four times without telling us more per state.
The world's realistic bands are calibrated at 1,238 merchants, so the larger worlds publish with
their band drift recorded (not raised); structural problems still stop them. A step that the
watchdog stops (memory or time) ends that scale's profile and is reported as
the finding it is; the slope then uses the scales that finished.

Disk: the router logs are spec-mandated JSONL (about 2.5 kB per arrival with the selection log
on), so a scale's home needs roughly ``bytes per arrival × arrivals``. Before each scale the
sweep projects that from the largest home measured so far; when the projection does not fit
the free disk (with a margin), the scale keeps its merchants but runs with the arrivals that
fit, and says so (``arrivals_capped_by_disk``) instead of failing half-way with ENOSPC. Slopes
therefore use the work each step scales with: arrivals for the roster, S5, S6 and S7,
merchants for the rest (for an uncapped scale the two ratios are the same).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from segment2b.bench.context import BenchContext
from segment2b.bench.lanes import run_profile
from segment2b.bench.report import loglog_slope

SCALE_FACTORS: tuple[int, ...] = (1, 10, 100)
ARRIVAL_STEPS = frozenset({"roster", "S5", "S6", "S7"})
"""Steps whose work is the roster's arrivals; every other step's work grows with merchants."""
DISK_MARGIN = 0.85
"""Share of the free disk a scale's projected home may take (the rest: page cache, logs)."""
ARRIVAL_ROUNDING = 100_000
STEPS: tuple[str, ...] = (
    "world",
    "gate",
    "roster",
    "S0",
    "S1",
    "S2",
    "S3",
    "S4",
    "S5",
    "S6",
    "S7",
    "S8",
    "CERT",
)


def scale_point(
    profile: Mapping[str, Any], merchants: int, arrivals: int, *, capped: str | None = None
) -> dict[str, Any]:
    """One scale's per-step time and peak memory from a profile's rows (``capped``: why the
    arrivals are fewer than the scale's share, if they are).

    ``arrivals`` is what the world was asked for; the point records the roster's own count
    when the profile has it (the realistic roster's floor of two arrivals per merchant-day can
    exceed a small request), so the slopes of the arrival steps use the arrivals they routed.
    """
    states: dict[str, dict[str, Any]] = {}
    published = [r.get("rows") for r in profile["rows"] if r["step"] == "roster" and r.get("rows")]
    for row in profile["rows"]:
        cell = {
            "status": row.get("status", "ok"),
            "elapsed_s": row.get("elapsed_s"),
            "cpu_s": row.get("cpu_s"),
            "peak_rss_bytes": row.get("peak_rss_bytes"),
            "delta_rss_bytes": row.get("delta_rss_bytes"),
            "peak_anon_bytes": row.get("peak_anon_bytes"),
            "child": row.get("unit"),
        }
        if row.get("error"):
            cell["error"] = row["error"]
        if "published_rows" in row:
            cell |= {"rows": row.get("rows"), "published_rows": row["published_rows"]}
        states.setdefault(row["step"], cell)
    return {
        "merchants": merchants,
        "arrivals": int(published[0]) if published else arrivals,
        "arrivals_requested": arrivals,
        "arrivals_capped_by_disk": capped,
        "home_bytes": profile.get("home_bytes"),
        "states": states,
        "failures": list(profile.get("failures", [])),
        "band_drift": list(profile.get("band_drift", [])),
    }


def slopes(
    points: Sequence[Mapping[str, Any]], field: str = "elapsed_s"
) -> dict[str, float | None]:
    """Per step: slope of log(``field``) on log(work) over the scales that finished it.

    Work is arrivals for :data:`ARRIVAL_STEPS` and merchants otherwise. ``field``:
    ``elapsed_s`` for time, ``cpu_s`` for CPU time; ``delta_rss_bytes`` (the peak over the
    child's after-import baseline, so the ~170 MiB interpreter does not flatten the slope) or
    ``peak_anon_bytes`` for memory.
    """
    out: dict[str, float | None] = {}
    for step in STEPS:
        xs, ys = [], []
        for p in points:
            cell = p["states"].get(step) or {}
            if cell.get("status") == "ok" and cell.get(field):
                xs.append(float(p["arrivals" if step in ARRIVAL_STEPS else "merchants"]))
                ys.append(float(cell[field]))
        out[step] = loglog_slope(xs, ys)
    return out


def arrivals_that_fit(
    arrivals: int, bytes_per_arrival: float | None, free_bytes: int
) -> tuple[int, str | None]:
    """``arrivals``, or fewer (rounded down to :data:`ARRIVAL_ROUNDING`) when the projected home
    (``bytes_per_arrival × arrivals``) would not fit :data:`DISK_MARGIN` of ``free_bytes``;
    the second value says why they were capped."""
    if not bytes_per_arrival:
        return arrivals, None
    room = DISK_MARGIN * free_bytes
    need = bytes_per_arrival * arrivals
    if need <= room:
        return arrivals, None
    fit = int(room / bytes_per_arrival) // ARRIVAL_ROUNDING * ARRIVAL_ROUNDING
    reason = (
        f"needs about {need / 1e9:.0f} GB of disk for {arrivals:,} arrivals "
        f"({bytes_per_arrival:,.0f} B per arrival measured), {free_bytes / 1e9:.0f} GB free: "
        f"ran with {fit:,} arrivals"
    )
    return max(fit, ARRIVAL_ROUNDING), reason


def run_sweep(
    ctx: BenchContext,
    base: Mapping[str, Any],
    first: Mapping[str, Any] | None,
    *,
    factors: Sequence[int] = SCALE_FACTORS,
    arrival_factor: float = 1.0,
    on_point: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Profiles at every scale factor; ``first`` (the default-world profile) is reused for ×1.

    ``arrival_factor`` multiplies the arrivals per merchant (default 1): two sweeps of one
    merchant count with different factors separate what a step's memory owes to arrivals from
    what it owes to merchants.

    ``on_point(sweep_doc)`` is called after every measured step, so a long sweep leaves a
    partial report behind.
    """
    m0, a0 = int(base["n_merchants"]), int(base["roster_arrivals"])
    points: list[dict[str, Any]] = []

    def doc(extra: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        scales = [*points, *extra]
        return {
            "scales": scales,
            "states": list(STEPS),
            "slopes": slopes(scales),
            "cpu_slopes": slopes(scales, "cpu_s"),
            "memory_slopes": slopes(scales, "delta_rss_bytes"),
            "anon_slopes": slopes(scales, "peak_anon_bytes"),
            "arrival_factor": arrival_factor,
        }

    def per_arrival() -> float | None:
        """Disk bytes per arrival of the largest home measured so far (``first`` included)."""
        sized = [(p["home_bytes"], p["arrivals"]) for p in points if p.get("home_bytes")]
        if first is not None and first.get("home_bytes"):
            sized.append((first["home_bytes"], a0))
        if not sized:
            return None
        size, arrivals = max(sized, key=lambda s: s[1])
        return float(size) / arrivals

    for factor in factors:
        merchants, capped = m0 * factor, None
        if factor == 1 and arrival_factor == 1 and first is not None:
            arrivals, profile = a0, first
        else:
            Path(ctx.root).mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(ctx.root).free
            wanted = round(a0 * factor * arrival_factor)
            arrivals, capped = arrivals_that_fit(wanted, per_arrival(), free)
            world = {**base, "n_merchants": merchants, "roster_arrivals": arrivals}

            def partial(
                prof: dict[str, Any], m: int = merchants, a: int = arrivals, c: str | None = capped
            ) -> None:
                if on_point is not None:
                    on_point(doc([scale_point(prof, m, a, capped=c)]))

            profile = run_profile(
                ctx,
                f"sweep-x{factor}",
                world=world,
                tolerate_band_drift=True,
                on_unit=partial,
            )
            ctx.discard(profile["home"])
        points.append(scale_point(profile, merchants, arrivals, capped=capped))
        if on_point is not None:
            on_point(doc())
    return doc()
