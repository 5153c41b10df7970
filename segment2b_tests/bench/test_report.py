"""Pure helpers of ``segment2b bench``: slope fit, formatting, overhead arithmetic, rendering.

No timing assertions and nothing measured: every input is synthetic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from segment2b.bench import lanes, sweep
from segment2b.bench.probe import machine_probe
from segment2b.bench.procs import ChildResult, running_step
from segment2b.bench.report import (
    fmt_rate,
    fmt_value,
    loglog_slope,
    md_table,
    per_second,
    render_markdown,
    render_text,
    text_table,
)
from segment2b.policy.store import DEFAULT_PACK, load_policy


@pytest.mark.parametrize("k", [0.5, 1.0, 2.0])
def test_loglog_slope_recovers_power_law(k: float) -> None:
    xs = [1238.0, 12380.0, 123800.0]
    assert loglog_slope(xs, [3.0 * x**k for x in xs]) == pytest.approx(k)


def test_loglog_slope_skips_missing_points_and_needs_two() -> None:
    assert loglog_slope([10.0, 100.0, 1000.0], [1.0, 10.0, None]) == pytest.approx(1.0)
    assert loglog_slope([10.0, 100.0], [1.0, 0.0]) is None
    assert loglog_slope([10.0], [1.0]) is None
    assert loglog_slope([10.0, 10.0], [1.0, 2.0]) is None


def test_formatting() -> None:
    assert fmt_rate(None) == "n/a"
    assert fmt_rate(950.0) == "950.0"
    assert fmt_rate(64_224.3) == "64.2k"
    assert fmt_rate(2_500_000.0) == "2.5M"
    assert fmt_value(4.440892098500626e-16) == "4.44e-16"
    assert fmt_value(7) == "7"
    assert per_second(100, 0.0) is None
    assert per_second(100, 4.0) == 25.0


def test_tables_align() -> None:
    lines = text_table(["step", "s"], [["S5", "6.4"], ["S10", "12.25"]]).splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[2].startswith("S5 ") and lines[2].endswith("  6.4")
    assert md_table(["a", "b"], [[1, 2]]).splitlines() == ["| a | b |", "|---|---:|", "| 1 | 2 |"]


def test_sweep_slopes_use_finished_scales_only() -> None:
    def point(m: int, s7: dict[str, Any]) -> dict[str, Any]:
        return {
            "merchants": m,
            "arrivals": 300 * m,
            "states": {"S5": {"status": "ok", "elapsed_s": m / 100}, "S7": s7},
        }

    points = [
        point(100, {"status": "ok", "elapsed_s": 1.0}),
        point(1000, {"status": "ok", "elapsed_s": 100.0}),
        point(10000, {"status": "memory_limit", "elapsed_s": None}),
    ]
    got = sweep.slopes(points)
    assert got["S5"] == pytest.approx(1.0)
    assert got["S7"] == pytest.approx(2.0)
    assert got["S3"] is None


def test_a_disk_capped_scale_measures_arrival_steps_against_arrivals() -> None:
    # ×100 merchants but only ×25 arrivals: S5 time follows arrivals (slope 1 on arrivals,
    # which a merchants axis would misread as 0.7); S3 follows merchants.
    points = [
        {
            "merchants": m,
            "arrivals": a,
            "states": {k: {"status": "ok", "elapsed_s": t} for k, t in st},
        }
        for m, a, st in [
            (1_000, 100_000, [("S5", 1.0), ("S3", 0.1)]),
            (100_000, 2_500_000, [("S5", 25.0), ("S3", 10.0)]),
        ]
    ]
    got = sweep.slopes(points)
    assert got["S5"] == pytest.approx(1.0)
    assert got["S3"] == pytest.approx(1.0)


def test_a_scale_point_counts_the_arrivals_its_roster_published() -> None:
    # 400k asked of 12,380 merchants; the roster's floor (two per merchant-day) gave 2.2M.
    rows = [
        {"step": "roster", "elapsed_s": 1.0, "rows": 2_225_849},
        {"step": "S5", "elapsed_s": 9.0},
    ]
    point = sweep.scale_point({"rows": rows}, 12_380, 400_000)
    assert (point["arrivals"], point["arrivals_requested"]) == (2_225_849, 400_000)
    # A profile without the roster's count keeps the request.
    point = sweep.scale_point({"rows": rows[1:]}, 12_380, 400_000)
    assert point["arrivals"] == point["arrivals_requested"] == 400_000


def test_arrivals_that_fit_caps_only_when_the_projection_overflows_the_disk() -> None:
    assert sweep.arrivals_that_fit(4_000_000, 2_500.0, 100 * 10**9) == (4_000_000, None)
    assert sweep.arrivals_that_fit(4_000_000, None, 10**6) == (4_000_000, None)
    n, why = sweep.arrivals_that_fit(40_000_000, 2_500.0, 80 * 10**9)
    assert n == 27_200_000  # 0.85 × 80 GB / 2,500 B, rounded down to 100,000
    assert n * 2_500.0 <= sweep.DISK_MARGIN * 80 * 10**9
    assert why is not None and "40,000,000 arrivals" in why and "27,200,000" in why


def _jobs() -> list[dict[str, Any]]:
    return [
        {
            "job": "observe_policies",
            "wall_s": 1.0,
            "steps": [{"step_key": "day_effect_policy_v1", "start": 0.0, "end": 0.5}],
        },
        {
            "job": "seed_job",
            "wall_s": 10.0,
            "steps": [
                {"step_key": "s3_day_effects", "start": 0.0, "end": 3.0},
                {"step_key": "s5_s6_router", "start": 3.0, "end": 8.0},
                {"step_key": "s4_group_weights", "start": 8.0, "end": None},
            ],
        },
    ]


def test_dagster_stage_totals_and_overhead() -> None:
    totals = lanes._dagster_stage_totals(_jobs())
    assert totals["policies"] == 0.5
    assert totals["S3"] == 3.0
    assert totals["S5+S6"] == 5.0
    assert "S4" not in totals  # a step without an end marker is not timed
    assert totals["outside steps"] == pytest.approx(0.5 + 2.0)
    pure = {"steps": {"S3": 1.0, "S5+S6": 4.0}, "compute_s": 5.0, "wall_s": 8.0}
    dag = {"steps": totals, "compute_s": 11.0, "wall_s": 14.0}
    over = lanes.dagster_overhead(pure, dag)
    by_stage = {r["stage"]: r for r in over["stages"]}
    assert by_stage["S3"] == {"stage": "S3", "pure_s": 1.0, "dagster_s": 3.0}
    assert by_stage["outside steps"]["dagster_s"] == pytest.approx(2.5)
    assert any("2.20x" in line for line in over["summary"])


def test_running_step_names_the_unfinished_step() -> None:
    progress = [
        {"event": "start", "step": "S5", "seed": 42},
        {"event": "done", "step": "S5", "seed": 42},
        {"event": "start", "step": "S6", "seed": 42},
    ]
    assert running_step({"progress": progress}) == "S6 seed=42"
    assert running_step({"progress": progress[:2]}) is None


def test_edited_pack_is_valid_and_differs(tmp_path: Path) -> None:
    pack = lanes.edited_day_effect_pack(DEFAULT_PACK, tmp_path / "pack")
    name = "day_effect_policy_v1"
    edited = load_policy(pack / f"{name}.json", name)  # H5 self-digest still holds
    original = load_policy(DEFAULT_PACK / f"{name}.json", name)
    assert edited.sha256_hex != original.sha256_hex
    assert sorted(p.name for p in pack.glob("*.json")) == sorted(
        p.name for p in DEFAULT_PACK.glob("*.json")
    )


def _doc() -> dict[str, Any]:
    hot = {
        "rank": "primary",
        "state": "S5",
        "elapsed_s": 6.4,
        "segment_share": 0.5,
        "budget_status": "GREEN",
        "evidence": {"draws_total": 799438},
    }
    return {
        "meta": {
            "date_utc": "2026-01-01T00:00:00+00:00",
            "host": {
                "cpus": 2,
                "mem_total_gib": 23.5,
                "platform": "Linux",
                "python": "3.11",
                "polars": "x",
                "numpy": "y",
                "dagster": "z",
            },
            "load_start": "1.0",
            "load_end": "1.0",
            "probe_start": {"total_s": 0.3017, "first_write_256mib_s": 0.0912},
            "git": "HEAD abc",
            "world": {"profile": "realistic", "n_merchants": 1238, "roster_arrivals": 400000},
            "policies": "policies",
        },
        "profile": {
            "states": [
                {
                    "step": "S5",
                    "elapsed_s": 6.4,
                    "segment_share": 0.5,
                    "budget_status": "GREEN",
                    "work": 399719.0,
                    "per_s": 62456.1,
                    "peak_rss_bytes": 700 * 2**20,
                    "delta_rss_bytes": 530 * 2**20,
                }
            ]
        },
        "runtime_report": {
            "hotspots": [hot],
            "progression_gate": {"decision": "HOLD", "reason": "GREEN", "next_state": None},
        },
        "lanes": [
            {
                "lane": "fast",
                "path": "pure",
                "seeds": [42],
                "steps_label": "S3 … S7",
                "status": "ok",
                "compute_s": 12.0,
                "wall_s": 15.0,
                "budget_s": 1200.0,
                "within_budget": True,
                "peak_rss_bytes": 2**30,
            }
        ],
        "sweep": {
            "scales": [
                {"merchants": 1238, "states": {"S5": {"status": "ok", "elapsed_s": 6.4}}},
                {"merchants": 12380, "states": {"S5": {"status": "timeout"}}},
            ],
            "states": ["S5"],
            "slopes": {"S5": None},
        },
        "findings": ["primary hotspot S5"],
        "notes": ["one child per step"],
    }


def test_render_text_and_markdown() -> None:
    doc = _doc()
    text = render_text(doc)
    md = render_markdown(doc, preamble="Preamble.")
    for out in (text, md):
        assert "62.5k" in out and "530" in out and "timeout" in out
    assert "Preamble." in md and "## Findings" in md and "**HOLD**" in md
    assert "Dagster overhead" not in md  # no Dagster lane measured
    assert "machine probe (fixed workload, bench/probe.py) at start / end: 0.302 s / n/a" in md
    assert "first 256 MiB page-cache write (bench/probe.py) at start / end: 0.091 s / n/a" in md
    json.dumps(doc)  # the document is JSON-ready


def test_machine_probe_times_every_part(tmp_path: Path) -> None:
    probe = machine_probe(tmp_path / "work")
    parts = [k for k in probe if k not in ("total_s", "first_write_256mib_s")]
    assert len(parts) == 5 and all(probe[k] > 0 for k in parts)
    assert probe["first_write_256mib_s"] > 0  # timed once, outside the sum
    assert list((tmp_path / "work").iterdir()) == []  # the disk part cleans up
    assert probe["total_s"] == pytest.approx(sum(probe[k] for k in parts), abs=1e-3)


def test_salvaged_steps_keep_what_a_killed_child_finished() -> None:
    progress = [
        {"t": 10.0, "event": "start", "step": "world", "seed": 42},
        {"t": 70.0, "event": "done", "step": "world", "seed": 42, "elapsed_s": 60.0},
        {"t": 70.1, "event": "start", "step": "roster", "seed": 42},
    ]
    child = ChildResult("memory_limit", 90.0, 2**34, result={"progress": progress}, error="killed")
    (row,) = lanes.salvaged_steps(child)
    assert (row["step"], row["elapsed_s"], row["start"]) == ("world", 60.0, 10.0)
    assert row["peak_rss_bytes"] is None


def test_a_disk_capped_scale_is_named_in_the_findings() -> None:
    from segment2b.bench.main import findings

    doc = _doc()
    doc["sweep"]["scales"][1]["arrivals_capped_by_disk"] = "needs about 109 GB: ran with 26,300,000"
    doc["sweep"]["scales"][1]["failures"] = []
    lines = [x for x in findings(doc) if "capped by the disk" in x]
    assert lines == [
        "sweep 12,380 merchants: roster capped by the disk, needs about 109 GB: ran with 26,300,000"
    ]


def test_the_arrival_factor_scales_arrivals_per_merchant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--sweep-arrival-factor``: same merchants, arrivals × factor; ×1 is measured again
    (the default-world profile has the default arrivals)."""
    worlds: list[dict[str, Any]] = []

    def fake_profile(ctx: Any, name: str, *, world: dict[str, Any], **_: Any) -> dict[str, Any]:
        worlds.append(world)
        return {"rows": [], "home": None, "home_bytes": None}

    class Ctx:
        root = tmp_path

        def discard(self, home: Any) -> None:
            pass

    monkeypatch.setattr(sweep, "run_profile", fake_profile)
    base = {"n_merchants": 1_000, "roster_arrivals": 300_000}
    first = {"rows": [], "home_bytes": None}
    doc = sweep.run_sweep(Ctx(), base, first, factors=(1, 10), arrival_factor=2.0)  # type: ignore[arg-type]
    assert [(w["n_merchants"], w["roster_arrivals"]) for w in worlds] == [
        (1_000, 600_000),
        (10_000, 6_000_000),
    ]
    assert [p["arrivals"] for p in doc["scales"]] == [600_000, 6_000_000]
    assert doc["arrival_factor"] == 2.0
    worlds.clear()
    sweep.run_sweep(Ctx(), base, first, factors=(1, 10))  # type: ignore[arg-type]
    assert [w["roster_arrivals"] for w in worlds] == [3_000_000]  # ×1 reuses the profile


def test_the_sweep_table_shows_the_cpu_slope() -> None:
    from segment2b.bench.report import sweep_rows

    points = [
        {
            "merchants": m,
            "arrivals": 400 * m,
            "states": {"S5": {"status": "ok", "elapsed_s": w, "cpu_s": c}},
        }
        for m, w, c in [(1_000, 1.0, 2.0), (10_000, 20.0, 20.0)]
    ]
    doc = {
        "sweep": {
            "scales": points,
            "states": ["S5"],
            "slopes": sweep.slopes(points),
            "cpu_slopes": sweep.slopes(points, "cpu_s"),
        }
    }
    headers, rows = sweep_rows(doc)
    assert headers[-4:] == ["time slope", "CPU slope", "memory slope", "anon slope"]
    assert rows[0][:4] == ["arrivals", "400,000", "", ""]
    s5 = rows[1]
    assert s5[-4:-2] == ["1.30", "1.00"]  # wall-clock grew 20x, CPU 10x for 10x the arrivals
