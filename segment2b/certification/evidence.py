"""The certification evidence pack, lock records, retention pointers and prune.

``certification.md`` §8 (artifact shapes, Markdown), §9 (runtime evidence) and spec README §2
(evidence immutability, retention). Everything rendered here is a pure function of scorecards,
the certification record, the seeds' loaded inputs (plots) and caller-supplied timings, so
certifying unchanged inputs twice yields the same bytes: JSON is sorted and indented, floats in
Markdown have fixed decimals, PNGs are rendered at a fixed size and dpi with no software or
time metadata. The pack is published once into a content-addressed folder
(``publish_folder(immutable=True)``): a rerun is an idempotent no-op, tampered evidence fails
with ``2B-CERT-080``. All certification locations come from :func:`certification_path`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from segment2b.certification.s4_metrics import floor_movement, merchant_day_table
from segment2b.certification.scorecard import (
    ERROR_PREFIX,
    GATE_KEYS,
    PASS_B,
    PASS_BPLUS,
    PHASE,
    SEGMENT,
    SeedInputs,
    artifact_name,
    json_ready,
    score_seed,
)
from segment2b.certification.verdict import CV_SERIES, certify, freeze_status, seed_metrics_document
from segment2b.partitions import REQUIRED_SEEDS
from segment2b.storage.canonical import pretty_json
from segment2b.storage.digests import sha256_bytes
from segment2b.storage.home import StorageHome
from segment2b.storage.publish import publish_file, publish_folder

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "LANE_BUDGETS_S",
    "PLOT_NAMES",
    "POINTER_NAMES",
    "STATE_BUDGETS",
    "TEMPLATES",
    "CertificationRun",
    "LockRef",
    "PackRef",
    "PruneItem",
    "PruneReport",
    "advance_pointers",
    "build_pack_files",
    "certification_markdown",
    "certification_path",
    "hms",
    "lock_record",
    "pack_digest",
    "prune",
    "publish_pack",
    "read_pointer",
    "render_seed_plots",
    "runtime_markdown",
    "runtime_report",
    "scorecard_markdown",
    "write_certification_pack",
    "write_lock",
    "write_pointer",
    "write_runtime_evidence",
]

# --------------------------------------------------------------------------------------------
# layout: the one place certification paths are built

_CERT = "reports/layer1/2B/certification"
TEMPLATES: dict[str, str] = {
    "root": f"{_CERT}/",
    "packs": f"{_CERT}/packs/",
    "pack": f"{_CERT}/packs/phase={{phase}}/run_set={{run_set}}/pack={{pack_digest}}/",
    "locks": f"{_CERT}/locks/",
    "lock": f"{_CERT}/locks/run_set={{run_set}}/pack={{pack_digest}}/lock.json",
    "pointers": f"{_CERT}/pointers/",
    "pointer": f"{_CERT}/pointers/{{pointer}}.json",
    "runtime": f"{_CERT}/runtime/run_set={{run_set}}/",
}
"""Home-relative templates (candidates for dataset-dictionary ids). ``pack_digest`` is the
first 16 hex of the pack's H2 folder digest, so a pack's folder name is its content."""

PACK_DIGEST_CHARS = 16
_TOKEN = re.compile(r"\{([a-z_]+)\}")


def certification_path(home: StorageHome, name: str, **tokens: object) -> Path:
    """Absolute path of certification location ``name`` (a :data:`TEMPLATES` key)."""
    template = TEMPLATES[name]
    missing = [t for t in _TOKEN.findall(template) if t not in tokens]
    if missing:
        raise KeyError(f"missing token(s) {missing} for certification path {name!r}")
    return home.root / _TOKEN.sub(lambda m: str(tokens[m.group(1)]), template)


def _rel(home: StorageHome, path: Path) -> str:
    return path.relative_to(home.root).as_posix()


# --------------------------------------------------------------------------------------------
# Markdown (§8): values 6 dp, mass row 1 − mass_abs_error_max at 12 dp


def _num(value: Any, dp: int = 6) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value or "-"
    if isinstance(value, int):
        return str(value)  # counts stay integers; metric values are floats
    return f"{float(value):.{dp}f}"


def _pf(flag: bool) -> str:
    return "PASS" if flag else "FAIL"


def _band(row: Mapping[str, Any], band: str) -> str:
    threshold = row["b_threshold"] if band == "B" else row["bplus_threshold"]
    flag = row["pass_b"] if band == "B" else row["pass_bplus"]
    return f"{_pf(flag)} ({row['op']} {threshold:g})"


def scorecard_markdown(card: Mapping[str, Any]) -> str:
    """Per-seed Markdown: lineage, ``Axis | Value | B | B+`` gate table, rails, advisory rows,
    diagnostics, roster posture and the verdict."""
    key_of = {gid: key for key, gid in GATE_KEYS}
    lines = [
        f"# Segment {SEGMENT} realism scorecard — seed {card['seed']}",
        "",
        f"- run_id: `{card['run_id']}`",
        f"- seed: {card['seed']}",
        f"- manifest_fingerprint: `{card['baseline_authority']['manifest_fingerprint']}`",
        f"- parameter_hash: `{card['baseline_authority']['parameter_hash']}`",
        f"- phase: {card['phase']}",
        f"- generated_utc: {card['generated_utc']}",
        "",
        "## Hard gates",
        "",
        "| Axis | Value | B | B+ |",
        "|---|---|---|---|",
    ]
    for row in card["gates"]:
        if row["id"] == "T-S4-05":
            err = card["metrics"]["s4"]["mass_abs_error_max"]
            axis = f"{row['id']} s4_mass_conservation (1 − mass_abs_error_max)"
            value = "n/a" if err is None else f"{1.0 - float(err):.12f}"
        else:
            axis = f"{row['id']} {key_of[row['id']]}"
            value = _num(row["value"])
        lines.append(f"| {axis} | {value} | {_band(row, 'B')} | {_band(row, 'BPLUS')} |")
    lines += ["", "## Rails", "", "| Rail | Status | Detail |", "|---|---|---|"]
    for rid, rail in sorted(card["rails"].items()):
        lines.append(f"| {rid} | {_pf(rail['pass'])} | {rail['reason'] or '-'} |")
    lines += [
        "",
        "## Advisory (report-only)",
        "",
        "| Axis | Value | B | B+ |",
        "|---|---|---|---|",
    ]
    for row in card["advisory"]:
        axis = f"{row['id']} {row['metric']}"
        lines.append(
            f"| {axis} | {_num(row['value'])} | {_band(row, 'B')} | {_band(row, 'BPLUS')} |"
        )
    lines += ["", "## S3 diagnostics", ""]
    lines += [f"- {k}: {_num(v)}" for k, v in sorted(card["s3_diagnostics"].items())]
    lines += ["", "## Realism floor diagnostic", ""]
    lines += [f"- {k}: {_num(v)}" for k, v in sorted(card["floor_diagnostic"].items())]
    lines += ["", "## Collapse flags", ""]
    lines += [f"- {k}: {_num(v)}" for k, v in sorted(card["collapse_flags"].items())]
    roster = card["roster_posture"]
    lines += ["", "## Roster posture", ""]
    for key, value in sorted(roster.items()):
        if key == "preconditions":
            continue
        shown = ", ".join(value) or "-" if isinstance(value, list) else _num(value)
        lines.append(f"- {key}: {shown}")
    lines += ["", "### Preconditions", ""]
    lines += [f"- {k}: {_num(v)}" for k, v in sorted(roster["preconditions"].items())]
    lines += ["", "## Policy fingerprints (sealed by S0)", ""]
    lines += [f"- {k}: `{v}`" for k, v in sorted(card["policy_fingerprints"].items())] or ["- none"]
    lines += ["", f"**verdict**: {card['verdict']}", ""]
    return "\n".join(lines)


def _cell(card: Mapping[str, Any], test_id: str) -> str:
    if test_id.startswith("R-"):
        return _pf(card["rails"][test_id]["pass"])
    if test_id.startswith("P-"):
        pre = card["roster_posture"]["preconditions"]
        key = {
            "P-HORIZON": "horizon_ge_28_days",
            "P-REPEAT": "repeated_arrivals_present",
            "P-COVERAGE": "class_channel_retained",
        }[test_id]
        return _pf(pre[key])
    row = next(g for g in card["gates"] if g["id"] == test_id)
    return f"{_pf(row['pass_b'])} / {_pf(row['pass_bplus'])}"


def certification_markdown(
    certification: Mapping[str, Any], scorecards: Sequence[Mapping[str, Any]]
) -> str:
    """Aggregate Markdown: per-seed table by test ID, cross-seed CV table, policy fingerprint
    snapshot and the final record (status, failed gates)."""
    cards = {int(c["seed"]): c for c in scorecards}
    seeds = [s for s in certification["required_seeds"] if s in cards]
    seeds += [s for s in certification["extra_seeds"] if s in cards]
    lines = [
        f"# Segment {SEGMENT} realism certification — {certification['run_set']}",
        "",
        f"- status: **{certification['status']}**",
        f"- phase: {certification['phase']}",
        f"- generated_utc: {certification['generated_utc']}",
        f"- required seeds: {', '.join(str(s) for s in certification['required_seeds'])}",
        f"- missing seeds: {', '.join(str(s) for s in certification['missing_seeds']) or '-'}",
        "",
        "## Selected runs",
        "",
        "| Seed | run_id | Verdict |",
        "|---|---|---|",
    ]
    for s in seeds:
        lines.append(f"| {s} | `{cards[s]['run_id']}` | {cards[s]['verdict']} |")
    if seeds:
        gate_ids = [g["id"] for g in cards[seeds[0]]["gates"]]
        rail_ids = sorted(cards[seeds[0]]["rails"])
        tests = [*gate_ids, *rail_ids, "P-HORIZON", "P-REPEAT", "P-COVERAGE"]
        lines += [
            "",
            "## Per-seed gates (T-*: B / B+; R-*, P-*: pass)",
            "",
            "| Test | " + " | ".join(f"seed {s}" for s in seeds) + " |",
            "|---|" + "---|" * len(seeds),
        ]
        lines += [f"| {t} | " + " | ".join(_cell(cards[s], t) for s in seeds) + " |" for t in tests]
    stab = certification["stability"]
    lines += [
        "",
        "## Cross-seed stability (CV = population std / |mean|)",
        "",
        f"| Series | CV | B (≤ {stab['thresholds']['B']}) | B+ (≤ {stab['thresholds']['BPLUS']}) |",
        "|---|---|---|---|",
    ]
    for key, _block, _metric in CV_SERIES:
        cv = stab["cv_unrounded"][key]
        finite = isinstance(cv, float)
        ok_b = finite and cv <= stab["thresholds"]["B"]
        ok_bp = finite and cv <= stab["thresholds"]["BPLUS"]
        lines.append(f"| {key} | {_num(cv)} | {_pf(ok_b)} | {_pf(ok_bp)} |")
    fp = certification["policy_fingerprints"]
    lines += ["", "## Policy fingerprints", "", "| Policy | Pinned |", "|---|---|"]
    lines += [f"| {pid} | `{digest}` |" for pid, digest in sorted(fp["pinned"].items())]
    lines += ["", f"- match on every seed: {_num(fp['match'])}"]
    for mm in fp["mismatches"]:
        lines.append(
            f"- mismatch: seed {mm.get('seed')}, policy {mm.get('policy')}: "
            f"sealed `{mm.get('sealed')}` vs pinned `{mm.get('pinned')}`"
            if mm.get("policy")
            else f"- mismatch: {mm.get('reason')}"
        )
    lines += [
        "",
        "## Final record",
        "",
        f"- status: **{certification['status']}**",
        f"- freeze status if frozen: {freeze_status(certification['status'])}",
        f"- failing gates: {', '.join(certification['failing_gates']) or '-'}",
        f"- B+ shortfall: {', '.join(certification['bplus_shortfall']) or '-'}",
        "",
    ]
    return "\n".join(lines)


def _seed_metrics_markdown(doc: Mapping[str, Any]) -> str:
    lines = [
        f"# Segment {SEGMENT} seed metrics",
        "",
        f"- required seeds: {', '.join(str(s) for s in doc['required_seeds'])}",
        f"- missing seeds: {', '.join(str(s) for s in doc['missing_seeds']) or '-'}",
        "",
        "| Seed | run_id | " + " | ".join(m for _k, _b, m in CV_SERIES) + " | Verdict |",
        "|---|---|" + "---|" * len(CV_SERIES) + "---|",
    ]
    for card in doc["seed_results"]:
        values = " | ".join(_num(card["metrics"][b].get(m)) for _k, b, m in CV_SERIES)
        lines.append(f"| {card['seed']} | `{card['run_id']}` | {values} | {card['verdict']} |")
    return "\n".join([*lines, ""])


def _fingerprints_markdown(fp: Mapping[str, Any]) -> str:
    seeds = sorted(fp["by_seed"], key=int)
    policies = sorted({*fp["pinned"], *(p for s in seeds for p in fp["by_seed"][s])})
    lines = [
        "# Policy fingerprint snapshot",
        "",
        "| Policy | Pinned | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|---|" + "---|" * len(seeds),
    ]
    for pid in policies:
        cells = [f"`{fp['by_seed'][s].get(pid, 'n/a')}`" for s in seeds]
        lines.append(f"| {pid} | `{fp['pinned'].get(pid, 'n/a')}` | " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", f"- match: {_num(fp['match'])}", ""])


# --------------------------------------------------------------------------------------------
# plots: deterministic PNG bytes (fixed size/dpi, no Software metadata, sorted data)

FIGSIZE = (6.4, 4.0)
DPI = 100
TOP_ZONES = 8
TRACKED_MERCHANTS = 3
_RC = {
    "font.family": "DejaVu Sans",
    "font.size": 8.0,
    "axes.titlesize": 9.0,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "path.simplify": True,
}

PLOT_NAMES: tuple[str, ...] = (
    "s1_hhi_distribution",
    "s1_top1_vs_top2",
    "s1_uniform_residuals",
    "s3_sigma_distribution",
    "s3_gamma_by_tz",
    "s3_merchant_gamma_over_time",
    "s4_max_p_group_distribution",
    "s4_entropy_distribution",
    "s4_groups_vs_sites",
    "roster_arrivals_per_day",
    "roster_arrivals_per_merchant",
)


def _render(
    draw: Callable[[Axes], None], *, title: str, xlabel: str, ylabel: str, bottom: float = 0.13
) -> bytes:
    # Imported here: matplotlib costs ~0.2 s to import, and every process that loads the
    # Definitions imports this module, while only certification draws.
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=FIGSIZE, dpi=DPI)
        FigureCanvasAgg(fig)
        # Fixed margins instead of tight_layout: one draw per figure, and the layout can't
        # shift with label extents.
        fig.subplots_adjust(left=0.11, right=0.97, top=0.92, bottom=bottom)
        ax = fig.add_subplot()
        draw(ax)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")


def _hist(values: np.ndarray, bins: int = 30) -> Callable[[Axes], None]:
    def draw(ax: Axes) -> None:
        if values.size == 0:
            _no_data(ax)
        else:
            ax.hist(np.sort(values), bins=bins, color="#4c72b0")

    return draw


def _scatter(x: np.ndarray, y: np.ndarray, *, diagonal: bool = False) -> Callable[[Axes], None]:
    def draw(ax: Axes) -> None:
        if x.size == 0:
            _no_data(ax)
            return
        ax.scatter(x, y, s=8, color="#4c72b0", alpha=0.6, linewidths=0)
        if diagonal:
            hi = float(max(x.max(), y.max(), 0.0))
            ax.plot([0.0, hi], [0.0, hi], color="#999999", linewidth=0.8)

    return draw


def _s1_frames(s1: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    p = pl.col("p_weight")
    rows = (
        s1.select("merchant_id", "p_weight")
        .sort(["merchant_id", "p_weight"], descending=[False, True])
        .with_columns(n=pl.len().over("merchant_id"))
        .with_columns(resid=(p - 1.0 / pl.col("n")).abs())
    )
    per_m = rows.group_by("merchant_id", maintain_order=True).agg(
        hhi=(p * p).sum(),
        top1=p.first(),
        top2=p.get(1, null_on_oob=True).fill_null(0.0),
        n_sites=pl.len(),
    )
    return rows, per_m


def render_seed_plots(inputs: SeedInputs) -> dict[str, bytes]:
    """The seed's PNGs (``<name>.png`` for every :data:`PLOT_NAMES`), byte-deterministic."""
    rows, per_m = _s1_frames(inputs.s1)
    s3 = inputs.s3.sort(["merchant_id", "utc_day", "tz_group_id"])
    md = merchant_day_table(inputs.s4)
    out: dict[str, bytes] = {}

    out["s1_hhi_distribution"] = _render(
        _hist(per_m["hhi"].to_numpy()),
        title="S1 merchant HHI (Σ p²)",
        xlabel="HHI",
        ylabel="merchants",
    )
    out["s1_top1_vs_top2"] = _render(
        _scatter(per_m["top1"].to_numpy(), per_m["top2"].to_numpy(), diagonal=True),
        title="S1 top-1 vs top-2 site weight",
        xlabel="top-1 p_weight",
        ylabel="top-2 p_weight",
    )
    out["s1_uniform_residuals"] = _render(
        _hist(rows["resid"].to_numpy()),
        title="S1 |p − 1/N| residuals (per site)",
        xlabel="|p_weight − 1/n_sites|",
        ylabel="sites",
    )
    out["s3_sigma_distribution"] = _render(
        _hist(s3["sigma_gamma"].to_numpy()),
        title="S3 sigma_gamma (per row)",
        xlabel="sigma_gamma",
        ylabel="rows",
    )
    zones = (
        s3.group_by("tz_group_id")
        .agg(pl.len().alias("n"))
        .sort(["n", "tz_group_id"], descending=[True, False])
        .head(TOP_ZONES)["tz_group_id"]
        .to_list()
    )
    zone_gamma = [s3.filter(pl.col("tz_group_id") == z)["gamma"].sort().to_numpy() for z in zones]

    def draw_zones(ax: Axes) -> None:
        if not zones:
            _no_data(ax)
            return
        ax.boxplot(zone_gamma, showfliers=False)
        ax.set_xticks(range(1, len(zones) + 1), zones, rotation=30, ha="right")

    out["s3_gamma_by_tz"] = _render(
        draw_zones,
        title=f"S3 gamma by tz group (top {TOP_ZONES})",
        xlabel="",
        ylabel="gamma",
        bottom=0.30,
    )
    tracked = (
        s3.group_by("merchant_id")
        .agg(pl.len().alias("n"))
        .sort(["n", "merchant_id"], descending=[True, False])
        .head(TRACKED_MERCHANTS)["merchant_id"]
        .to_list()
    )
    day0 = s3["utc_day"].min() if s3.height else None
    series = [
        s3.filter(pl.col("merchant_id") == m)
        .group_by("utc_day", maintain_order=True)
        .agg(pl.col("gamma").mean())
        .sort("utc_day")
        for m in tracked
    ]

    def draw_over_time(ax: Axes) -> None:
        if not tracked:
            _no_data(ax)
            return
        for m, frame in zip(tracked, series, strict=True):
            x = np.array([(d - day0).days for d in frame["utc_day"].to_list()], dtype=float)
            ax.plot(x, frame["gamma"].to_numpy(), linewidth=0.9, label=f"merchant {m}")
        ax.legend(loc="upper right")

    out["s3_merchant_gamma_over_time"] = _render(
        draw_over_time,
        title="S3 merchant gamma over time (mean over tz groups)",
        xlabel=f"days since {day0}",
        ylabel="gamma",
    )
    out["s4_max_p_group_distribution"] = _render(
        _hist(md["max_p"].to_numpy()),
        title="S4 max p_group per merchant-day",
        xlabel="max p_group",
        ylabel="merchant-days",
    )
    out["s4_entropy_distribution"] = _render(
        _hist(md["H"].to_numpy()),
        title="S4 group-mix entropy per merchant-day (nats)",
        xlabel="H",
        ylabel="merchant-days",
    )
    groups = (
        md.group_by("merchant_id", maintain_order=True)
        .agg(pl.col("n_groups").mean().alias("groups"))
        .join(per_m.select("merchant_id", "n_sites"), on="merchant_id", how="inner")
        .sort("merchant_id")
    )
    out["s4_groups_vs_sites"] = _render(
        _scatter(groups["n_sites"].to_numpy().astype(float), groups["groups"].to_numpy()),
        title="S4 tz groups vs site count (per merchant)",
        xlabel="sites (S1)",
        ylabel="mean tz groups per day",
    )
    roster = inputs.roster
    if roster is not None and roster.height:
        day = pl.col("utc_day").cast(pl.String)
        per_day = roster.group_by(day.alias("d")).agg(pl.len().alias("n")).sort("d")
        per_merchant = roster.group_by("merchant_id").agg(pl.len().alias("n")).sort("merchant_id")
        day_counts = per_day["n"].to_numpy()
        merchant_counts = per_merchant["n"].to_numpy()
        first_day = per_day["d"][0]
    else:
        day_counts = merchant_counts = np.array([], dtype=np.int64)
        first_day = None

    def draw_days(ax: Axes) -> None:
        if day_counts.size == 0:
            _no_data(ax)
        else:
            ax.bar(np.arange(day_counts.size), day_counts, width=0.9, color="#4c72b0")

    out["roster_arrivals_per_day"] = _render(
        draw_days,
        title="Roster arrivals per UTC day",
        xlabel=f"day index from {first_day}",
        ylabel="arrivals",
    )
    out["roster_arrivals_per_merchant"] = _render(
        _hist(merchant_counts.astype(float)),
        title="Roster arrivals per merchant",
        xlabel="arrivals",
        ylabel="merchants",
    )
    return {f"{name}.png": out[name] for name in PLOT_NAMES}


# --------------------------------------------------------------------------------------------
# runtime evidence (§9)

STATE_BUDGETS: dict[str, tuple[float, float]] = {
    "S0": (1.0, 2.0),
    "S1": (4.0, 6.0),
    "S2": (3.0, 5.0),
    "S3": (18.0, 24.0),
    "S4": (18.0, 24.0),
    "S5": (16.0, 22.0),
    "S6": (1.0, 2.0),
    "S7": (1.0, 2.0),
    "S8": (1.0, 2.0),
}
"""Per-state (target, stretch) seconds at the design's scale: GREEN ≤ target, AMBER ≤
stretch, else RED."""

LANE_BUDGETS_S: dict[str, float] = {"fast": 1200.0, "witness": 2400.0, "certification": 5400.0}
HOTSPOT_RANKS = ("primary", "secondary", "closure")


def hms(seconds: float | None) -> str | None:
    """``hh:mm:ss`` of a duration, rounded half-up to whole seconds."""
    if seconds is None:
        return None
    total = math.floor(seconds + 0.5)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def _budget_status(state: str, elapsed: float | None) -> str:
    if elapsed is None:
        return "MISSING"
    target, stretch = STATE_BUDGETS.get(state, (math.inf, math.inf))
    if elapsed <= target:
        return "GREEN"
    return "AMBER" if elapsed <= stretch else "RED"


def runtime_report(
    windows: Mapping[str, tuple[float | None, float | None]],
    *,
    run: Mapping[str, Any],
    counters: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """§9 runtime JSON of one run from caller-supplied wall-clock numbers (never measured here).

    Parameters
    ----------
    windows : Mapping[str, (start, completion)]
        Per state (``"S0"`` … ``"S8"``): the first start and first completion marker, in
        seconds on one clock (e.g. asset materialisation times). A missing marker or a
        negative elapsed yields a null row.
    run : Mapping
        Lineage echoed as ``run`` (seed, manifest_fingerprint, parameter_hash, run_id).
    counters : Mapping[str, Mapping], optional
        Per-state evidence counters from the run-reports, echoed on hotspots.
    """
    counters = counters or {}
    states = [*STATE_BUDGETS, *sorted(s for s in windows if s not in STATE_BUDGETS)]
    elapsed: dict[str, float | None] = {}
    for state in states:
        start, done = windows.get(state, (None, None))
        value = done - start if start is not None and done is not None else None
        elapsed[state] = value if value is not None and value >= 0 else None
    total = math.fsum(v for v in elapsed.values() if v is not None)

    def share(v: float | None) -> float | None:
        return v / total if v is not None and total > 0 else None

    starts = {s: w[0] for s, w in windows.items() if w[0] is not None}
    completes = {s: w[1] for s, w in windows.items() if w[1] is not None}
    window = max(completes.values()) - min(starts.values()) if starts and completes else None
    ranked = sorted(
        ((v, s) for s, v in elapsed.items() if v is not None), key=lambda t: (-t[0], t[1])
    )[: len(HOTSPOT_RANKS)]
    hotspots = [
        {
            "rank": rank,
            "state": state,
            "elapsed_s": value,
            "elapsed_hms": hms(value),
            "segment_share": share(value),
            "budget_status": _budget_status(state, value),
            "evidence": dict(sorted((counters.get(state) or {}).items())),
        }
        for rank, (value, state) in zip(HOTSPOT_RANKS, ranked, strict=False)
    ]
    if not hotspots:
        gate = {"decision": "HOLD", "reason": "no state timings", "next_state": None}
    elif hotspots[0]["budget_status"] in ("RED", "AMBER"):
        primary = hotspots[0]
        gate = {
            "decision": "GO",
            "reason": f"primary hotspot {primary['state']} is {primary['budget_status']} "
            f"({primary['elapsed_s']:.3f} s)",
            "next_state": primary["state"],
        }
    else:
        gate = {
            "decision": "HOLD",
            "reason": f"primary hotspot {hotspots[0]['state']} is GREEN",
            "next_state": None,
        }
    return json_ready(
        {
            "run": dict(run),
            "timing": {
                "segment_elapsed_s": total,
                "segment_elapsed_hms": hms(total),
                "state_table": [
                    {
                        "state": s,
                        "elapsed_s": elapsed[s],
                        "elapsed_hms": hms(elapsed[s]),
                        "segment_share": share(elapsed[s]),
                    }
                    for s in states
                ],
                "log_window": {
                    "start_by_state": starts,
                    "complete_by_state": completes,
                    "segment_window_elapsed_s": window,
                },
            },
            "budgets": {
                s: {
                    "target_s": STATE_BUDGETS[s][0],
                    "stretch_s": STATE_BUDGETS[s][1],
                    "status": _budget_status(s, elapsed[s]),
                }
                for s in STATE_BUDGETS
            },
            "hotspots": hotspots,
            "progression_gate": gate,
        }
    )


def lane_summary(
    reports: Mapping[int, Mapping[str, Any]], *, lane: str = "certification"
) -> dict[str, Any]:
    """Lane budget (§9, binding): the sum of the seeds' segment elapsed vs the lane budget."""
    elapsed = math.fsum(float(r["timing"]["segment_elapsed_s"]) for r in reports.values())
    budget = LANE_BUDGETS_S[lane]
    return {
        "lane": lane,
        "budget_s": budget,
        "elapsed_s": elapsed,
        "elapsed_hms": hms(elapsed),
        "within_budget": elapsed <= budget,
        "seeds_timed": sorted(int(s) for s in reports),
    }


def runtime_markdown(report: Mapping[str, Any]) -> str:
    """§9 runtime table (seconds 3 dp, hh:mm:ss, share), budgets, hotspots and the gate."""
    run = report["run"]
    timing = report["timing"]
    lines = [
        f"# Segment {SEGMENT} runtime evidence — seed {run.get('seed')}",
        "",
        f"- run_id: `{run.get('run_id')}`",
        f"- segment_elapsed_s: {_num(timing['segment_elapsed_s'], 3)} "
        f"({timing['segment_elapsed_hms']})",
        f"- log window: {_num(timing['log_window']['segment_window_elapsed_s'], 3)} s",
        "",
        "| State | Elapsed (s) | hh:mm:ss | Share | Budget |",
        "|---|---|---|---|---|",
    ]
    for row in timing["state_table"]:
        status = report["budgets"].get(row["state"], {}).get("status", "-")
        share = row["segment_share"]
        lines.append(
            f"| {row['state']} | {_num(row['elapsed_s'], 3)} | {row['elapsed_hms'] or 'n/a'} | "
            f"{'n/a' if share is None else f'{100.0 * share:.2f}%'} | {status} |"
        )
    lines += ["", "## Hotspots", ""]
    for h in report["hotspots"]:
        evidence = ", ".join(f"{k}={v}" for k, v in h["evidence"].items()) or "-"
        lines.append(
            f"- {h['rank']}: {h['state']} {_num(h['elapsed_s'], 3)} s "
            f"({h['budget_status']}); evidence: {evidence}"
        )
    gate = report["progression_gate"]
    lines += [
        "",
        f"**progression gate**: {gate['decision']} — {gate['reason']}"
        + (f" (next: {gate['next_state']})" if gate["next_state"] else ""),
        "",
    ]
    return "\n".join(lines)


def _lane_markdown(doc: Mapping[str, Any]) -> str:
    lane = doc["lane"]
    lines = [
        f"# Segment {SEGMENT} runtime lane — {lane['lane']}",
        "",
        f"- elapsed: {_num(lane['elapsed_s'], 3)} s ({lane['elapsed_hms']}) of "
        f"{_num(lane['budget_s'], 3)} s budget: {'within' if lane['within_budget'] else 'OVER'}",
        "",
        "| Seed | Elapsed (s) | Primary hotspot | Gate |",
        "|---|---|---|---|",
    ]
    for seed, rep in sorted(doc["runs"].items(), key=lambda kv: int(kv[0])):
        primary = rep["hotspots"][0]["state"] if rep["hotspots"] else "-"
        lines.append(
            f"| {seed} | {_num(rep['timing']['segment_elapsed_s'], 3)} | {primary} | "
            f"{rep['progression_gate']['decision']} |"
        )
    return "\n".join([*lines, ""])


# --------------------------------------------------------------------------------------------
# the pack


@dataclass(frozen=True)
class PackRef:
    """A published (immutable) evidence pack."""

    path: Path
    rel: str
    digest: str
    phase: str
    run_set: str
    status: str
    selected_seed_run_map: Mapping[str, str]
    outcome: str


@dataclass(frozen=True)
class CertificationRun:
    """What :func:`write_certification_pack` produced."""

    pack: PackRef
    certification: Mapping[str, Any]
    scorecards: tuple[Mapping[str, Any], ...]
    pointers: tuple[str, ...]


def pack_digest(files: Mapping[str, bytes]) -> str:
    """H2 digest of the pack: bytes of every file concatenated in code-point path order
    (equals ``folder_digest`` of the published folder)."""
    return sha256_bytes(b"".join(files[rel] for rel in sorted(files)))


def build_pack_files(
    certification: Mapping[str, Any],
    scorecards: Sequence[Mapping[str, Any]],
    *,
    plots: Mapping[int, Mapping[str, bytes]] | None = None,
    runtime: Mapping[int, Mapping[str, Any]] | None = None,
    required_seeds: Sequence[int] = REQUIRED_SEEDS,
    lane: str = "certification",
) -> dict[str, bytes]:
    """Every file of the pack (relative path → bytes), pure.

    Layout::

        segment2b_<phase>_certification_<run_set>.{json,md}
        segment2b_<phase>_seed_metrics_<run_set>.{json,md}
        segment2b_<phase>_policy_fingerprints_<run_set>.{json,md}
        segment2b_<phase>_runtime_<run_set>.{json,md}          (when timings are given)
        seeds/seed=<n>/segment2b_<phase>_scorecard_<run_id>.{json,md}
        seeds/seed=<n>/segment2b_<phase>_runtime_<run_id>.{json,md}   (when timed)
        seeds/seed=<n>/plots/<plot>.png
        pack_index.json                                        (path, sha256_hex, bytes)
    """
    phase = str(certification["phase"])
    run_set = str(certification["run_set"])

    def name(kind: str, suffix: str, ext: str) -> str:
        return artifact_name(kind, suffix, ext, phase=phase)

    files: dict[str, bytes] = {
        name("certification", run_set, "json"): pretty_json(certification),
        name("certification", run_set, "md"): certification_markdown(
            certification, scorecards
        ).encode("utf-8"),
    }
    seed_doc = seed_metrics_document(scorecards, required_seeds=required_seeds)
    files[name("seed_metrics", run_set, "json")] = pretty_json(seed_doc)
    files[name("seed_metrics", run_set, "md")] = _seed_metrics_markdown(seed_doc).encode("utf-8")
    fp = certification["policy_fingerprints"]
    files[name("policy_fingerprints", run_set, "json")] = pretty_json(fp)
    files[name("policy_fingerprints", run_set, "md")] = _fingerprints_markdown(fp).encode("utf-8")
    for card in scorecards:
        folder = f"seeds/seed={card['seed']}"
        files[f"{folder}/{name('scorecard', card['run_id'], 'json')}"] = pretty_json(card)
        files[f"{folder}/{name('scorecard', card['run_id'], 'md')}"] = scorecard_markdown(
            card
        ).encode("utf-8")
        for plot, data in (plots or {}).get(int(card["seed"]), {}).items():
            files[f"{folder}/plots/{plot}"] = data
        report = (runtime or {}).get(int(card["seed"]))
        if report is not None:
            files[f"{folder}/{name('runtime', card['run_id'], 'json')}"] = pretty_json(report)
            files[f"{folder}/{name('runtime', card['run_id'], 'md')}"] = runtime_markdown(
                report
            ).encode("utf-8")
    if runtime:
        lane_doc = json_ready({"lane": lane_summary(runtime, lane=lane), "runs": runtime})
        files[name("runtime", run_set, "json")] = pretty_json(lane_doc)
        files[name("runtime", run_set, "md")] = _lane_markdown(lane_doc).encode("utf-8")
    index = [
        {"path": rel, "sha256_hex": sha256_bytes(data), "bytes": len(data)}
        for rel, data in sorted(files.items())
    ]
    files["pack_index.json"] = pretty_json(index)
    return files


def publish_pack(
    home: StorageHome, files: Mapping[str, bytes], *, certification: Mapping[str, Any]
) -> PackRef:
    """Publish ``files`` once, into ``pack=<first 16 hex of its digest>`` (immutable)."""
    digest = pack_digest(files)
    phase, run_set = str(certification["phase"]), str(certification["run_set"])
    target = certification_path(
        home, "pack", phase=phase, run_set=run_set, pack_digest=digest[:PACK_DIGEST_CHARS]
    )

    def write(stage: Path) -> None:
        for rel, data in sorted(files.items()):
            path = stage / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    result = publish_folder(
        home,
        target,
        write,
        prefix=ERROR_PREFIX,
        state="certification",
        dataset_id="certification_pack",
        immutable=True,
    )
    return PackRef(
        path=target,
        rel=_rel(home, target),
        digest=digest,
        phase=phase,
        run_set=run_set,
        status=str(certification["status"]),
        selected_seed_run_map=dict(certification["selected_seed_run_map"]),
        outcome=result.outcome,
    )


def write_certification_pack(
    home: StorageHome,
    seed_inputs: Sequence[SeedInputs],
    *,
    pinned_policy_digests: Mapping[str, str],
    required_seeds: Sequence[int] = REQUIRED_SEEDS,
    timings: Mapping[int, Mapping[str, tuple[float | None, float | None]]] | None = None,
    counters: Mapping[int, Mapping[str, Mapping[str, Any]]] | None = None,
    phase: str = PHASE,
    lane: str = "certification",
    update_pointers: bool = True,
) -> CertificationRun:
    """Score every seed, certify, render, publish the pack and advance the pointers.

    The thin writer: scoring and rendering are the pure functions above; the only writes are
    the immutable pack folder and the retention pointers (``current``; ``baseline`` when
    absent; ``last_good`` on PASS_B / PASS_BPLUS). Lock with :func:`write_lock`.
    """
    inputs = [dataclasses.replace(i, phase=phase) for i in seed_inputs]
    cards = [score_seed(i) for i in inputs]
    cert = certify(
        cards,
        pinned_policy_digests=pinned_policy_digests,
        required_seeds=required_seeds,
        phase=phase,
    )
    plots = {i.seed: render_seed_plots(i) for i in inputs}
    runtime = {
        i.seed: runtime_report(
            timings[i.seed],
            run={**i.run_tokens(), "seed": i.seed},
            counters=(counters or {}).get(i.seed),
        )
        for i in inputs
        if timings and i.seed in timings
    }
    files = build_pack_files(
        cert, cards, plots=plots, runtime=runtime, required_seeds=required_seeds, lane=lane
    )
    pack = publish_pack(home, files, certification=cert)
    names = advance_pointers(home, pack) if update_pointers else ()
    return CertificationRun(pack=pack, certification=cert, scorecards=tuple(cards), pointers=names)


def write_runtime_evidence(
    home: StorageHome,
    run_set: str,
    runtime: Mapping[int, Mapping[str, Any]],
    *,
    lane: str = "certification",
    phase: str = PHASE,
) -> Path:
    """Publish the latest runtime reports of ``run_set`` beside the packs (§9), replacing the
    previous ones.

    Wall-clock figures differ on every run, so they live outside the content-addressed pack:
    the pack stays byte-identical for unchanged inputs, and this folder holds the timings of
    the most recent certification run of the same run set (non-authoritative evidence).
    """
    files: dict[str, bytes] = {}
    for seed, report in sorted(runtime.items()):
        run_id = str(report.get("run", {}).get("run_id", seed))
        base = f"seeds/seed={seed}/{artifact_name('runtime', run_id, '', phase=phase)}"
        files[f"{base}json"] = pretty_json(report)
        files[f"{base}md"] = runtime_markdown(report).encode("utf-8")
    lane_doc = json_ready({"lane": lane_summary(runtime, lane=lane), "runs": runtime})
    files[artifact_name("runtime", run_set, "json", phase=phase)] = pretty_json(lane_doc)
    files[artifact_name("runtime", run_set, "md", phase=phase)] = _lane_markdown(lane_doc).encode(
        "utf-8"
    )
    target = certification_path(home, "runtime", run_set=run_set)

    def write(stage: Path) -> None:
        for rel, data in sorted(files.items()):
            path = stage / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    # Input version = the content itself: every new timing set legitimately replaces the last.
    publish_folder(
        home,
        target,
        write,
        prefix=ERROR_PREFIX,
        state="runtime",
        dataset_id="runtime_evidence",
        input_version=pack_digest(files),
    )
    return target


# --------------------------------------------------------------------------------------------
# retention pointers

POINTER_NAMES: tuple[str, ...] = ("baseline", "current", "last_good", "certified")


def read_pointer(home: StorageHome, name: str) -> dict[str, Any] | None:
    """The pointer record, or ``None`` when it was never written."""
    path = certification_path(home, "pointer", pointer=name)
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None


def write_pointer(home: StorageHome, name: str, record: Mapping[str, Any]) -> Path:
    """Replace a pointer atomically (temp file in the same folder, then ``os.replace``)."""
    if name not in POINTER_NAMES:
        raise ValueError(f"unknown retention pointer {name!r}; expected one of {POINTER_NAMES}")
    path = certification_path(home, "pointer", pointer=name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(pretty_json(json_ready(record)))
    os.replace(tmp, path)
    return path


def _pointer_record(name: str, pack: PackRef, lock: LockRef | None = None) -> dict[str, Any]:
    return {
        "pointer": name,
        "pack": pack.rel,
        "pack_digest": pack.digest,
        "phase": pack.phase,
        "run_set": pack.run_set,
        "status": pack.status,
        "selected_seed_run_map": dict(pack.selected_seed_run_map),
        "lock": lock.rel if lock else None,
        "freeze_status": lock.freeze_status if lock else None,
    }


def advance_pointers(
    home: StorageHome, pack: PackRef, *, lock: LockRef | None = None
) -> tuple[str, ...]:
    """Move ``current`` to ``pack``; set ``baseline`` if absent; ``last_good`` when the pack
    passes (PASS_B / PASS_BPLUS); ``certified`` when a lock is given. Returns the names."""
    names = ["current"]
    if read_pointer(home, "baseline") is None:
        names.append("baseline")
    if pack.status in (PASS_B, PASS_BPLUS):
        names.append("last_good")
    if lock is not None:
        names.append("certified")
    for name in names:
        write_pointer(home, name, _pointer_record(name, pack, lock))
    return tuple(sorted(names))


# --------------------------------------------------------------------------------------------
# lock records


_FLOOR_KEYS = ("merchant_share_single_tz", "share_n_groups_eq_1", "share_max_p_ge_095")


@dataclass(frozen=True)
class LockRef:
    """A published (immutable) lock record."""

    path: Path
    rel: str
    freeze_status: str
    outcome: str


def _lock_metrics(
    certification: Mapping[str, Any], scorecards: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    seeds: dict[str, Any] = {}
    for card in scorecards:
        values: dict[str, Any] = {
            row["id"]: row["value"] for row in (*card["gates"], *card["advisory"])
        }
        floor = card["floor_diagnostic"]
        if floor.get("available"):
            values["floor"] = {k: floor[k] for k in _FLOOR_KEYS}
        seeds[str(card["seed"])] = values
    return {"seeds": seeds, "stability": dict(certification["stability"]["cv_metrics"])}


def _floor_movements(now: Mapping[str, Any], before: Mapping[str, Any]) -> dict[str, Any]:
    """§8 floor movement (baseline = previous lock, candidate = this one) per shared seed."""
    out: dict[str, Any] = {}
    for seed in sorted(set(now["seeds"]) & set(before.get("seeds") or {})):
        a, b = now["seeds"][seed].get("floor"), before["seeds"][seed].get("floor")
        if a and b:
            out[seed] = floor_movement(b, a)
    return out


def _delta(now: Mapping[str, Any], before: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(set(now) & set(before)):
        a, b = now[key], before[key]
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out[key] = _delta(a, b)
        elif isinstance(a, int | float) and isinstance(b, int | float):
            out[key] = float(a) - float(b)
    return out


def lock_record(
    certification: Mapping[str, Any],
    scorecards: Sequence[Mapping[str, Any]],
    *,
    pack_rel: str,
    pack_digest: str,
    data_versions: Mapping[str, Any],
    previous: Mapping[str, Any] | None = None,
    previous_rel: str | None = None,
) -> dict[str, Any]:
    """The lock of a certified candidate: policy digests, data versions of every state,
    verdict, freeze status, metric values and their deltas against the previous lock."""
    metrics = _lock_metrics(certification, scorecards)
    status = str(certification["status"])
    return json_ready(
        {
            "segment": SEGMENT,
            "phase": certification["phase"],
            "generated_utc": certification["generated_utc"],
            "run_set": certification["run_set"],
            "status": status,
            "freeze_status": freeze_status(status),
            "failing_gates": list(certification["failing_gates"]),
            "pack": {"path": pack_rel, "digest": pack_digest},
            "selected_seed_run_map": dict(certification["selected_seed_run_map"]),
            "policy_digests": certification["policy_fingerprints"],
            "data_versions": data_versions,
            "metrics": metrics,
            "previous_lock": None
            if previous is None
            else {
                "path": previous_rel,
                "run_set": previous.get("run_set"),
                "status": previous.get("status"),
                "freeze_status": previous.get("freeze_status"),
                "pack_digest": (previous.get("pack") or {}).get("digest"),
            },
            "metric_deltas": None
            if previous is None
            else _delta(metrics, previous.get("metrics") or {}),
            "floor_movement": None
            if previous is None
            else _floor_movements(metrics, previous.get("metrics") or {}),
        }
    )


def _load_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def write_lock(
    home: StorageHome, run: CertificationRun, *, data_versions: Mapping[str, Any]
) -> LockRef:
    """Publish the lock record of ``run``'s pack once (immutable) and point ``certified`` at it.

    The previous lock is the one ``certified`` pointed to (or, when this lock already exists,
    the one it recorded), so an identical re-lock is an idempotent no-op and a lock is never
    overwritten (``2B-CERT-080``).
    """
    pack = run.pack
    target = certification_path(
        home, "lock", run_set=pack.run_set, pack_digest=pack.digest[:PACK_DIGEST_CHARS]
    )
    if target.is_file():
        existing = _load_json(target) or {}
        previous_rel = (existing.get("previous_lock") or {}).get("path")
    else:
        pointer = read_pointer(home, "certified")
        previous_rel = pointer.get("lock") if pointer else None
    previous = _load_json(home.root / previous_rel) if previous_rel else None
    record = lock_record(
        run.certification,
        run.scorecards,
        pack_rel=pack.rel,
        pack_digest=pack.digest,
        data_versions=data_versions,
        previous=previous,
        previous_rel=previous_rel if previous is not None else None,
    )
    result = publish_file(
        home,
        target,
        pretty_json(record),
        prefix=ERROR_PREFIX,
        dataset_id="certification_lock",
        immutable=True,
    )
    lock = LockRef(target, _rel(home, target), record["freeze_status"], result.outcome)
    write_pointer(home, "certified", _pointer_record("certified", pack, lock))
    return lock


# --------------------------------------------------------------------------------------------
# prune

_TMP_FILE = re.compile(r".*\.[0-9a-f]{32}\.tmp$")


@dataclass(frozen=True)
class PruneItem:
    """One superseded item: ``kind`` is ``pack``, ``run_log`` or ``staging``."""

    kind: str
    path: str
    bytes: int


@dataclass(frozen=True)
class PruneReport:
    """What :func:`prune` found (and, unless ``dry_run``, deleted)."""

    dry_run: bool
    items: tuple[PruneItem, ...]
    kept_packs: tuple[str, ...]
    live_run_ids: tuple[str, ...]

    @property
    def bytes_freed(self) -> int:
        return sum(i.bytes for i in self.items)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "bytes_freed": self.bytes_freed,
            "items": [dataclasses.asdict(i) for i in self.items],
            "kept_packs": list(self.kept_packs),
            "live_run_ids": list(self.live_run_ids),
        }


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            total += (Path(dirpath) / f).lstat().st_size
    return total


def _live_sets(
    home: StorageHome, current_run_ids: Iterable[str] | None
) -> tuple[set[str], set[str]]:
    pointers = [p for n in POINTER_NAMES if (p := read_pointer(home, n)) is not None]
    packs = {str(p["pack"]) for p in pointers if p.get("pack")}
    runs = {str(r) for p in pointers for r in (p.get("selected_seed_run_map") or {}).values()}
    locks_root = certification_path(home, "locks")
    if locks_root.is_dir():
        for lock_file in sorted(locks_root.rglob("lock.json")):
            doc = _load_json(lock_file) or {}
            if (doc.get("pack") or {}).get("path"):
                packs.add(str(doc["pack"]["path"]))
    if current_run_ids is None:
        for receipt in sorted((home.root / "runs").glob("*/run_receipt.json")):
            doc = _load_json(receipt)
            runs.add(str(doc.get("run_id")) if isinstance(doc, dict) else receipt.parent.name)
    else:
        runs.update(str(r) for r in current_run_ids)
    return packs, runs


def _candidates(home: StorageHome, packs: set[str], runs: set[str]) -> list[PruneItem]:
    root = home.root
    found: list[tuple[str, Path]] = []
    packs_root = certification_path(home, "packs")
    if packs_root.is_dir():
        for folder in sorted(packs_root.glob("phase=*/run_set=*/pack=*")):
            if folder.is_dir() and _rel(home, folder) not in packs:
                found.append(("pack", folder))
    logs = root / "logs"
    for dirpath, dirnames, _files in os.walk(logs):
        keep = []
        for d in sorted(dirnames):
            if d.startswith("run_id="):
                if d.removeprefix("run_id=") not in runs:
                    found.append(("run_log", Path(dirpath) / d))
            else:
                keep.append(d)
        dirnames[:] = keep
    if home.tmp.is_dir():
        found.extend(("staging", child) for child in sorted(home.tmp.iterdir()))
    for dirpath, dirnames, files in os.walk(root):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if here == root and d == home.tmp.name:
                continue
            if d.startswith("_tmp."):
                found.append(("staging", here / d))
            else:
                keep.append(d)
        dirnames[:] = keep
        found.extend(
            ("staging", here / f)
            for f in sorted(files)
            if f.startswith("_tmp.") or _TMP_FILE.match(f)
        )
    listed = {_rel(home, path) for _kind, path in found}
    items: list[PruneItem] = []
    for kind, path in sorted(found, key=lambda kv: kv[1].as_posix()):
        rel = _rel(home, path)
        parts = rel.split("/")
        if any("/".join(parts[:i]) in listed for i in range(1, len(parts))):
            continue  # nested inside an item already listed (counted there)
        items.append(PruneItem(kind, rel, _size(path)))
    return items


def _remove_empty_parents(path: Path, stop: Path) -> None:
    parent = path.parent
    while parent != stop and stop in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent


def prune(
    home: StorageHome,
    *,
    dry_run: bool = True,
    current_run_ids: Iterable[str] | None = None,
) -> PruneReport:
    """List (and unless ``dry_run``, delete) every superseded item of the home.

    - **pack**: a certification pack folder no retention pointer and no lock record names.
    - **run_log**: a ``logs/…/run_id=<id>`` partition whose run is neither named by a pointer's
      run map nor current. Current runs are ``current_run_ids`` when given (the certification
      job passes the runs it is about to certify); otherwise every run with a receipt under
      ``runs/`` counts as current (conservative default: only orphaned logs go).
    - **staging**: everything in ``<home>/tmp``, any ``_tmp.*`` entry and any ``*.<uuid>.tmp``
      file left by an interrupted atomic write.

    Locks, pointers, receipts and data partitions are never touched. Runs before each
    certification run; not safe concurrently with a publish.
    """
    packs, runs = _live_sets(home, current_run_ids)
    items = _candidates(home, packs, runs)
    if not dry_run:
        stops = {"pack": certification_path(home, "packs"), "run_log": home.root / "logs"}
        for item in items:
            path = home.root / item.path
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            if item.kind in stops:
                _remove_empty_parents(path, stops[item.kind])
    return PruneReport(
        dry_run=dry_run,
        items=tuple(items),
        kept_packs=tuple(sorted(packs)),
        live_run_ids=tuple(sorted(runs)),
    )
