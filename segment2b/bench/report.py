"""Pure helpers of the benchmark report: fitting, number formatting, plain-text and Markdown.

Nothing here measures or touches storage, so it is unit-tested without running a benchmark.
The report document (``doc``) is the JSON the bench writes; see :func:`render_markdown` for
its sections.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MIB = 2**20

# What each step's throughput counts (certification.md §9 speaks of rows or arrivals).
WORK_UNITS: dict[str, str] = {
    "world": "arrivals",
    "gate": "-",
    "roster": "arrivals",
    "S0": "inputs",
    "S1": "sites",
    "S2": "sites",
    "S3": "rows",
    "S4": "rows",
    "S5": "arrivals",
    "S6": "arrivals",
    "S7": "arrivals",
    "S8": "files",
    "CERT": "seeds",
}


def loglog_slope(xs: Sequence[float], ys: Sequence[float | None]) -> float | None:
    """Least-squares slope of log(y) on log(x): the empirical scaling exponent.

    1.0 means time grows linearly with the scale, 2.0 quadratically. Points with a missing or
    non-positive value are skipped; fewer than two usable points (or one distinct x) give None.
    """
    pts = [
        (math.log(x), math.log(y))
        for x, y in zip(xs, ys, strict=True)
        if y is not None and x > 0 and y > 0
    ]
    if len(pts) < 2:
        return None
    mx = math.fsum(p[0] for p in pts) / len(pts)
    my = math.fsum(p[1] for p in pts) / len(pts)
    sxx = math.fsum((p[0] - mx) ** 2 for p in pts)
    if sxx == 0.0:
        return None
    return math.fsum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def per_second(work: float | None, seconds: float | None) -> float | None:
    if work is None or seconds is None or seconds <= 0:
        return None
    return work / seconds


def fmt_s(value: float | None, dp: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{dp}f}"


def fmt_int(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def fmt_mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / MIB:,.0f}"


def fmt_rate(value: float | None) -> str:
    """Throughput with a k/M suffix (e.g. ``1.2M``), or n/a."""
    if value is None:
        return "n/a"
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= div:
            return f"{value / div:,.1f}{suffix}"
    return f"{value:,.1f}"


def fmt_value(value: Any) -> str:
    """Evidence counters: floats to 3 significant digits, everything else as is."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def fmt_slope(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Fixed-width table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *map(line, cells[1:])])


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "| " + " | ".join(str(h) for h in headers) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"
    body = ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join([head, rule, *body])


# --- sections ---------------------------------------------------------------------------------


def state_rows(doc: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "step",
        "elapsed s",
        "share",
        "budget",
        "work",
        "unit",
        "per s",
        "peak RSS MiB",
        "Δ RSS MiB",
        "peak anon MiB",
    ]
    rows = []
    for r in doc["profile"]["states"]:
        share = r.get("segment_share")
        rows.append(
            [
                r["step"],
                fmt_s(r.get("elapsed_s"), 3),
                "" if share is None else f"{100 * share:.1f}%",
                r.get("budget_status") or "",
                fmt_int(r.get("work")),
                WORK_UNITS.get(r["step"], ""),
                fmt_rate(r.get("per_s")),
                fmt_mib(r.get("peak_rss_bytes")),
                fmt_mib(r.get("delta_rss_bytes")),
                fmt_mib(r.get("peak_anon_bytes")),
            ]
        )
    return headers, rows


def hotspot_rows(doc: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["rank", "state", "elapsed s", "share", "budget", "evidence"]
    rows = []
    for h in doc["runtime_report"]["hotspots"]:
        evidence = ", ".join(
            f"{k}={fmt_value(v)}" for k, v in h["evidence"].items() if v is not None
        )
        share = h.get("segment_share")
        rows.append(
            [
                h["rank"],
                h["state"],
                fmt_s(h["elapsed_s"], 3),
                "" if share is None else f"{100 * share:.1f}%",
                h["budget_status"],
                evidence or "-",
            ]
        )
    return headers, rows


def lane_rows(doc: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["lane", "path", "seeds", "steps", "compute s", "process s", "budget s", "peak MiB"]
    rows = []
    for lane in doc["lanes"]:
        within = lane.get("within_budget")
        budget = fmt_s(lane.get("budget_s"), 0)
        if within is not None:
            budget += " ok" if within else " OVER"
        rows.append(
            [
                lane["lane"],
                lane["path"],
                ",".join(str(s) for s in lane.get("seeds", [])),
                lane.get("steps_label", ""),
                fmt_s(lane.get("compute_s")),
                fmt_s(lane.get("wall_s")),
                budget,
                fmt_mib(lane.get("peak_rss_bytes")),
            ]
            if lane.get("status", "ok") == "ok"
            else [
                lane["lane"],
                lane["path"],
                ",".join(str(s) for s in lane.get("seeds", [])),
                f"{lane.get('status')} (see findings)",
                "n/a",
                fmt_s(lane.get("wall_s")),
                fmt_s(lane.get("budget_s"), 0),
                fmt_mib(lane.get("peak_rss_bytes")),
            ]
        )
    return headers, rows


def overhead_rows(doc: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["stage", "pure s", "Dagster step s", "difference s", "ratio"]
    rows = []
    for r in doc["dagster_overhead"]["stages"]:
        pure, dag = r.get("pure_s"), r.get("dagster_s")
        diff = None if pure is None or dag is None else dag - pure
        ratio = None if not pure or dag is None else dag / pure
        rows.append(
            [
                r["stage"],
                fmt_s(pure),
                fmt_s(dag),
                fmt_s(diff),
                "n/a" if ratio is None else f"{ratio:.2f}x",
            ]
        )
    return headers, rows


def sweep_rows(doc: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    sweep = doc["sweep"]
    scales = sweep["scales"]
    headers = ["step"]
    for s in scales:
        headers += [f"{s['merchants']:,} s", f"{s['merchants']:,} MiB", f"{s['merchants']:,} anon"]
    headers += ["time slope", "CPU slope", "memory slope", "anon slope"]
    arrivals = [f"{a:,}" if isinstance(a := s.get("arrivals"), int) else "n/a" for s in scales]
    rows = [["arrivals", *(c for a in arrivals for c in (a, "", "")), "", "", "", ""]]
    for state in sweep["states"]:
        row = [state]
        for s in scales:
            cell = s["states"].get(state) or {}
            if cell.get("status", "ok") != "ok":
                row += [cell.get("status", "n/a"), fmt_mib(cell.get("peak_rss_bytes"))]
            else:
                row += [fmt_s(cell.get("elapsed_s")), fmt_mib(cell.get("peak_rss_bytes"))]
            row.append(fmt_mib(cell.get("peak_anon_bytes")))
        row.append(fmt_slope(sweep["slopes"].get(state)))
        row.append(fmt_slope(sweep.get("cpu_slopes", {}).get(state)))
        row.append(fmt_slope(sweep.get("memory_slopes", {}).get(state)))
        row.append(fmt_slope(sweep.get("anon_slopes", {}).get(state)))
        rows.append(row)
    return headers, rows


def _sections(doc: Mapping[str, Any]) -> list[tuple[str, tuple[list[str], list[list[str]]]]]:
    out = [
        ("Per-state runtime and peak memory (one child process per step)", state_rows(doc)),
        ("Hotspots (certification.md §9)", hotspot_rows(doc)),
        ("Lanes", lane_rows(doc)),
    ]
    stages = doc.get("dagster_overhead", {}).get("stages", [])
    if any(r.get("dagster_s") is not None for r in stages):
        out.append(("Dagster overhead (certification lane, summed over seeds)", overhead_rows(doc)))
    if doc.get("sweep"):
        out.append(("Scale sweep (one seed, one-seed panel)", sweep_rows(doc)))
    return out


def _probe(probe: Mapping[str, Any] | None) -> str:
    return "n/a" if not probe else f"{probe['total_s']:.3f} s"


def _first_write(probe: Mapping[str, Any] | None) -> str:
    value = (probe or {}).get("first_write_256mib_s")
    return "n/a" if value is None else f"{value:.3f} s"


def _meta_lines(doc: Mapping[str, Any]) -> list[str]:
    meta = doc["meta"]
    host = meta["host"]
    world = meta["world"]
    return [
        f"date (UTC): {meta['date_utc']}",
        f"machine: {host['cpus']} cores, {host['mem_total_gib']:.1f} GiB RAM, {host['platform']}, "
        f"Python {host['python']}, polars {host['polars']}, numpy {host['numpy']}, "
        f"dagster {host['dagster']}",
        f"load average at start / end: {meta['load_start']} / {meta.get('load_end')}",
        f"machine probe (fixed workload, bench/probe.py) at start / end: "
        f"{_probe(meta.get('probe_start'))} / {_probe(meta.get('probe_end'))}",
        f"first 256 MiB page-cache write (bench/probe.py) at start / end: "
        f"{_first_write(meta.get('probe_start'))} / {_first_write(meta.get('probe_end'))}",
        f"code: {meta['git']}",
        f"world: profile {world['profile']}, {world['n_merchants']:,} merchants, "
        f"{world['roster_arrivals']:,} roster arrivals; policies {meta['policies']}",
    ]


def render_text(doc: Mapping[str, Any]) -> str:
    """Plain-text report for the terminal."""
    parts = ["segment2b bench", *_meta_lines(doc), ""]
    for title, (headers, rows) in _sections(doc):
        parts += [title, text_table(headers, rows), ""]
    overhead = doc.get("dagster_overhead", {})
    parts += [f"- {line}" for line in overhead.get("summary", [])]
    parts += [f"- {line}" for line in doc.get("findings", [])]
    return "\n".join(parts).rstrip() + "\n"


def render_markdown(doc: Mapping[str, Any], *, preamble: str = "") -> str:
    """Markdown report (the shape of ``docs/benchmark.md``)."""
    parts = ["# segment2b benchmark", ""]
    if preamble:
        parts += [preamble.rstrip(), ""]
    parts += [f"- {line}" for line in _meta_lines(doc)] + [""]
    for title, (headers, rows) in _sections(doc):
        parts += [f"## {title}", "", md_table(headers, rows), ""]
        if title.startswith("Hotspots"):
            gate = doc["runtime_report"]["progression_gate"]
            parts += [f"Progression gate: **{gate['decision']}** — {gate['reason']}", ""]
        if title.startswith("Dagster overhead"):
            parts += [f"- {line}" for line in doc["dagster_overhead"].get("summary", [])] + [""]
    if doc.get("findings"):
        parts += ["## Findings", "", *[f"- {line}" for line in doc["findings"]], ""]
    if doc.get("notes"):
        parts += ["## How it was measured", "", *[f"- {line}" for line in doc["notes"]], ""]
    return "\n".join(parts).rstrip() + "\n"
