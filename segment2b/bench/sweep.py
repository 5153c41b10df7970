"""Scale sweep: the per-step profile at ×1, ×10 and ×100 the default world, and the log-log
slope of time against merchants per step.

Roster arrivals scale with merchants (400,000 at 1,238), so arrivals per merchant stay fixed.
Each scale is one seed on a one-seed panel: the 1B gate covers the whole panel, and four
worlds at ×100 would measure world generation four times without telling us more per state.
The world's realistic bands are calibrated at 1,238 merchants, so the larger worlds publish with
their band drift recorded (not raised); structural problems still stop them. A step that the
watchdog stops (memory or time) ends that scale's profile and is reported as
the finding it is; the slope then uses the scales that finished.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from segment2b.bench.context import BenchContext
from segment2b.bench.lanes import run_profile
from segment2b.bench.report import loglog_slope

SCALE_FACTORS: tuple[int, ...] = (1, 10, 100)
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


def scale_point(profile: Mapping[str, Any], merchants: int, arrivals: int) -> dict[str, Any]:
    """One scale's per-step time and peak memory from a profile's rows."""
    states: dict[str, dict[str, Any]] = {}
    for row in profile["rows"]:
        cell = {
            "status": row.get("status", "ok"),
            "elapsed_s": row.get("elapsed_s"),
            "peak_rss_bytes": row.get("peak_rss_bytes"),
            "delta_rss_bytes": row.get("delta_rss_bytes"),
            "child": row.get("unit"),
        }
        if row.get("error"):
            cell["error"] = row["error"]
        if "published_rows" in row:
            cell |= {"rows": row.get("rows"), "published_rows": row["published_rows"]}
        states.setdefault(row["step"], cell)
    return {
        "merchants": merchants,
        "arrivals": arrivals,
        "states": states,
        "failures": list(profile.get("failures", [])),
        "band_drift": list(profile.get("band_drift", [])),
    }


def slopes(
    points: Sequence[Mapping[str, Any]], field: str = "elapsed_s"
) -> dict[str, float | None]:
    """Per step: slope of log(``field``) on log(merchants) over the scales that finished it
    (``elapsed_s`` for time; ``delta_rss_bytes``, the peak over the child's after-import
    baseline, for memory, so the ~170 MiB interpreter does not flatten the slope)."""
    out: dict[str, float | None] = {}
    for step in STEPS:
        xs, ys = [], []
        for p in points:
            cell = p["states"].get(step) or {}
            if cell.get("status") == "ok" and cell.get(field):
                xs.append(float(p["merchants"]))
                ys.append(float(cell[field]))
        out[step] = loglog_slope(xs, ys)
    return out


def run_sweep(
    ctx: BenchContext,
    base: Mapping[str, Any],
    first: Mapping[str, Any] | None,
    *,
    on_point: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Profiles at every scale factor; ``first`` (the default-world profile) is reused for ×1.

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
            "memory_slopes": slopes(scales, "delta_rss_bytes"),
        }

    for factor in SCALE_FACTORS:
        merchants, arrivals = m0 * factor, a0 * factor
        if factor == 1 and first is not None:
            profile = first
        else:
            world = {**base, "n_merchants": merchants, "roster_arrivals": arrivals}

            def partial(prof: dict[str, Any], m: int = merchants, a: int = arrivals) -> None:
                if on_point is not None:
                    on_point(doc([scale_point(prof, m, a)]))

            profile = run_profile(
                ctx,
                f"sweep-x{factor}",
                world=world,
                tolerate_band_drift=True,
                on_unit=partial,
            )
            ctx.discard(profile["home"])
        points.append(scale_point(profile, merchants, arrivals))
        if on_point is not None:
            on_point(doc())
    return doc()
