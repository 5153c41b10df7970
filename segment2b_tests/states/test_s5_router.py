"""S5 router: byte law, time law, invariants, an independent serial replay, idempotent
re-materialisation, error codes, and empirical frequencies against S4 x S1.

S1/S4/S2 outputs are written here from small synthetic frames (no dependency on the S1-S4
modules); the helpers are reused by ``test_s6_edge_router.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import shutil
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from segment2b.catalogue.schemas import json_errors
from segment2b.core.philox import PhiloxStream, philox2x64_10
from segment2b.core.routing_rng import (
    ROUTING_DOMAIN_MASTER,
    ROUTING_DOMAIN_STREAM,
    derive_routing_stream,
    site_id,
)
from segment2b.errors import SegmentError
from segment2b.policy.store import DEFAULT_PACK
from segment2b.states import rng_logs
from segment2b.states.rng_logs import Col, Const, RunTokens
from segment2b.states.s0_gate import run_s0
from segment2b.states.s5_router import (
    build_routing_plan,
    day_ranges,
    parse_roster,
    roster_posture,
    route_arrivals,
    run_s5,
)
from segment2b.storage.digests import folder_digest, sha256_bytes, sha256_file
from segment2b.storage.publish import publish_file, publish_folder
from segment2b.storage.tables import write_parquet_part
from segment2b.world.outputs import write_roster
from segment2b_tests.fixtures import BIG, SITES, TinyRun, build_tiny_run

CREATED = "2026-01-01T00:00:00.000000Z"
DAYS = ("2026-01-01", "2026-01-02", "2026-01-03")
S1_WEIGHTS = {
    101: [0.5, 0.2, 0.3],
    202: [0.6, 0.4],
    BIG: [0.2, 0.3, 0.5],
}
# (tz_group_id, p_group) per merchant in tz_group_id order; day d shifts mass slightly.
S4_MIX = {
    101: [("Europe/London", 0.3), ("Europe/Paris", 0.7)],
    202: [("America/Los_Angeles", 0.45), ("America/New_York", 0.55)],
    BIG: [("Asia/Tokyo", 1.0)],
}


# ---------------------------------------------------------------------------------------------
# Fixture helpers (shared with the S6 tests)
# ---------------------------------------------------------------------------------------------


def s1_frame(weights: Mapping[int, Sequence[float]] = S1_WEIGHTS) -> pl.DataFrame:
    rows = [
        (m, c, o, w)
        for m, sites in SITES.items()
        for (c, o, *_), w in zip(sites, weights[m], strict=True)
    ]
    return pl.DataFrame(
        {
            "merchant_id": [r[0] for r in rows],
            "legal_country_iso": [r[1] for r in rows],
            "site_order": [r[2] for r in rows],
            "p_weight": [r[3] for r in rows],
            "weight_source": "uniform",
            "quantised_bits": 24,
            "floor_applied": False,
            "created_utc": CREATED,
        },
        schema_overrides={
            "merchant_id": pl.UInt64,
            "site_order": pl.Int32,
            "quantised_bits": pl.Int32,
        },
    )


def s4_frame(days: Sequence[str] = DAYS, mix: Mapping[int, Any] = S4_MIX) -> pl.DataFrame:
    rows = []
    for m, groups in mix.items():
        for k, day in enumerate(days):
            shift = 0.05 * k if len(groups) == 2 else 0.0
            for j, (tz, p) in enumerate(groups):
                q = p + (shift if j == 0 else -shift) if len(groups) == 2 else p
                rows.append((m, dt.date.fromisoformat(day), tz, q))
    return pl.DataFrame(
        {
            "merchant_id": [r[0] for r in rows],
            "utc_day": [r[1] for r in rows],
            "tz_group_id": [r[2] for r in rows],
            "p_group": [r[3] for r in rows],
            "base_share": [r[3] for r in rows],
            "gamma": 1.0,
            "created_utc": CREATED,
            "mass_raw": None,
            "denom_raw": None,
        },
        schema_overrides={
            "merchant_id": pl.UInt64,
            "mass_raw": pl.Float64,
            "denom_raw": pl.Float64,
        },
    ).sort("merchant_id", "utc_day", "tz_group_id")


def write_plan_inputs(run: TinyRun, s1: pl.DataFrame, s4: pl.DataFrame) -> None:
    """Publish synthetic S1/S4 tables and a minimal, consistent S2 index + blob."""
    home = run.home
    tokens = {"seed": str(run.seed), "manifest_fingerprint": run.manifest_fingerprint}
    for ds, frame in (("s1_site_weights", s1), ("s4_group_weights", s4)):
        publish_folder(
            home,
            home.path(ds, tokens),
            lambda stage, f=frame: write_parquet_part(f, stage),
            prefix="TEST",
            state=f"test_{ds}",
            dataset_id=ds,
            input_version=sha256_bytes(f"{ds}:{frame.hash_rows().sum()}".encode()),
        )
    layout = json.loads((home.policy_root / "alias_layout_policy_v1.json").read_bytes())
    sealed = json.loads(home.path("sealed_inputs_2B", tokens).read_bytes())
    digest = next(r["sha256_hex"] for r in sealed if r["asset_id"] == "alias_layout_policy_v1")
    merchants = sorted(set(s1.get_column("merchant_id").to_list()))
    blob = b""
    rows = []
    for m in merchants:
        k = s1.filter(pl.col("merchant_id") == m).height
        payload = bytes(16 + 8 * k)
        rows.append(
            {
                "merchant_id": m,
                "offset": len(blob),
                "length": len(payload),
                "sites": k,
                "quantised_bits": layout["quantised_bits"],
                "checksum": hashlib.sha256(payload).hexdigest(),
            }
        )
        blob += payload
    index = {
        "layout_version": layout["layout_version"],
        "endianness": layout["endianness"],
        "alignment_bytes": layout["alignment_bytes"],
        "quantised_bits": layout["quantised_bits"],
        "created_utc": CREATED,
        "policy_id": "alias_layout_policy_v1",
        "policy_digest": digest,
        "blob_sha256": hashlib.sha256(blob).hexdigest(),
        "blob_size_bytes": len(blob),
        "merchants_count": len(rows),
        "merchants": rows,
    }
    publish_file(
        home,
        home.path("s2_alias_blob", tokens),
        blob,
        prefix="TEST",
        dataset_id="s2_alias_blob",
        input_version=sha256_bytes(blob),
    )
    data = json.dumps(index, sort_keys=True, indent=2).encode() + b"\n"
    publish_file(
        home,
        home.path("s2_alias_index", tokens),
        data,
        prefix="TEST",
        dataset_id="s2_alias_index",
        input_version=sha256_bytes(data),
    )


def sealed_run(tmp_path: Path, **kwargs: Any) -> TinyRun:
    """Tiny world + S0 seal + synthetic S1/S4/S2 outputs for the tiny roster's days."""
    run = build_tiny_run(tmp_path, **kwargs)
    run_s0(run.home, run.run_id)
    write_plan_inputs(run, s1_frame(), s4_frame())
    return run


def reseal_roster(run: TinyRun, lines: Sequence[Mapping[str, Any] | str]) -> None:
    """Replace the roster and re-run S0 so the new bytes are sealed."""
    text = "".join(
        (ln if isinstance(ln, str) else json.dumps(ln, sort_keys=True)) + "\n" for ln in lines
    )
    write_roster(run.home, run.tokens(), text.encode())
    run_s0(run.home, run.run_id)


def s5_kwargs(run: TinyRun) -> dict[str, Any]:
    return {
        "seed": run.seed,
        "manifest_fingerprint": run.manifest_fingerprint,
        "parameter_hash": run.parameter_hash,
        "run_id": run.run_id,
    }


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_bytes().splitlines()]


def assert_byte_law(path: Path) -> None:
    for raw in path.read_bytes().splitlines(keepends=True):
        obj = json.loads(raw)
        assert (json.dumps(obj, ensure_ascii=True, sort_keys=True) + "\n").encode() == raw


# ---------------------------------------------------------------------------------------------
# Serial reference router (deliberately naive: one Python step per arrival)
# ---------------------------------------------------------------------------------------------


def serial_alias(w: Sequence[float]) -> tuple[list[float], list[int]]:
    n = len(w)
    total = 0.0
    for x in w:
        total += x
    s = [x / total * n for x in w]
    small = deque(i for i in range(n) if s[i] < 1.0)
    large = deque(i for i in range(n) if s[i] >= 1.0)
    prob, alias = [1.0] * n, list(range(n))
    while small and large:
        a, b = small.popleft(), large.popleft()
        prob[a], alias[a] = s[a], b
        s[b] = s[b] - (1.0 - prob[a])
        (small if s[b] < 1.0 else large).append(b)
    return prob, alias


def serial_u(stream: PhiloxStream, counter: int) -> float:
    hi, lo = divmod((stream.counter_hi << 64) + stream.counter_lo + counter, 2**64)
    w = int(philox2x64_10(np.array([lo], np.uint64), np.array([hi], np.uint64), stream.key)[0][0])
    u = (float(w) + 1.0) * 2.0**-64
    return 1.0 - 2.0**-53 if u == 1.0 else u


def serial_decode(prob: list[float], alias: list[int], u: float) -> int:
    x = u * len(prob)
    j = math.floor(x)
    return j if x - j < prob[j] else alias[j]


def serial_route(
    roster: list[dict[str, Any]],
    s1: pl.DataFrame,
    tz_of: Mapping[tuple[int, str, int], str],
    s4: pl.DataFrame,
    stream: PhiloxStream,
) -> list[tuple[str, int, float]]:
    out = []
    for i, arr in enumerate(roster):
        m, day = arr["merchant_id"], dt.date.fromisoformat(arr["utc_day"])
        g = s4.filter((pl.col("merchant_id") == m) & (pl.col("utc_day") == day)).sort("tz_group_id")
        prob, alias = serial_alias(g.get_column("p_group").to_list())
        gi = serial_decode(prob, alias, serial_u(stream, 2 * i))
        tz, p = g.get_column("tz_group_id")[gi], g.get_column("p_group")[gi]
        sites = [
            r
            for r in s1.filter(pl.col("merchant_id") == m).iter_rows(named=True)
            if tz_of[(m, r["legal_country_iso"], r["site_order"])] == tz
        ]
        prob, alias = serial_alias([r["p_weight"] for r in sites])
        si = serial_decode(prob, alias, serial_u(stream, 2 * i + 1))
        r = sites[si]
        out.append((tz, site_id(m, r["legal_country_iso"], r["site_order"]), p))
    return out


# ---------------------------------------------------------------------------------------------
# Runner: outputs, laws, invariants
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def run(tmp_path: Path) -> TinyRun:
    return sealed_run(tmp_path)


def _paths(run: TinyRun) -> dict[str, Path]:
    t = run.tokens()
    return {
        ds: run.home.path(ds, t)
        for ds in (
            "rng_event_alias_pick_group",
            "rng_event_alias_pick_site",
            "rng_trace_log",
            "rng_audit_log",
        )
    }


def test_s5_outputs_follow_the_laws(run: TinyRun) -> None:
    out = run_s5(run.home, **s5_kwargs(run))
    paths = _paths(run)
    roster = read_jsonl(run.home.path("s5_arrival_roster", run.tokens()))
    n = len(roster)
    group, site = (
        read_jsonl(paths["rng_event_alias_pick_group"]),
        read_jsonl(paths["rng_event_alias_pick_site"]),
    )
    trace = read_jsonl(paths["rng_trace_log"])
    assert (len(group), len(site), len(trace)) == (n, n, 2 * n)
    for p in paths.values():
        assert_byte_law(p)
    cat = run.home.catalogue
    for rows, ds in ((group, "rng_event_alias_pick_group"), (site, "rng_event_alias_pick_site")):
        assert all(json_errors(cat.entry(ds).schema_ref, r) == [] for r in rows)
    assert all(json_errors(rng_logs.TRACE_SCHEMA, r) == [] for r in trace)
    audit = read_jsonl(paths["rng_audit_log"])
    assert len(audit) == 1 and json_errors(rng_logs.AUDIT_SCHEMA, audit[0]) == []
    assert audit[0]["build_commit"] == "0" * 64 or len(audit[0]["build_commit"]) == 64

    # Time law: group 4i, trace 4i+1, site 4i+2, trace 4i+3 (µs after verified_at_utc).
    def us(ts: str) -> int:
        return int(ts[17:19]) * 1_000_000 + int(ts[20:26])

    for i in range(n):
        assert us(group[i]["ts_utc"]) == 4 * i and us(site[i]["ts_utc"]) == 4 * i + 2
        assert us(trace[2 * i]["ts_utc"]) == 4 * i + 1
        assert us(trace[2 * i + 1]["ts_utc"]) == 4 * i + 3
        # Counters: group 2i -> 2i+1, site 2i+1 -> 2i+2; trace copies the event's.
        assert (group[i]["rng_counter_before_lo"], group[i]["rng_counter_after_lo"]) == (
            2 * i,
            2 * i + 1,
        )
        assert (site[i]["rng_counter_before_lo"], site[i]["rng_counter_after_lo"]) == (
            2 * i + 1,
            2 * i + 2,
        )
        assert trace[2 * i]["substream_label"] == "alias_pick_group"
        assert trace[2 * i + 1]["substream_label"] == "alias_pick_site"
        for t in trace[2 * i : 2 * i + 2]:
            assert t["draws_total"] == t["blocks_total"] == t["events_total"] == i + 1
        assert group[i]["merchant_id"] == roster[i]["merchant_id"] == site[i]["merchant_id"]
        assert group[i]["tz_group_id"] == site[i]["tz_group_id"]
        assert group[i]["draws"] == "1" and group[i]["blocks"] == 1
    assert [t["rng_counter_before_lo"] for t in trace] == list(range(2 * n))

    # Chosen site belongs to the chosen group; p_group echoes S4.
    tz_of = {site_id(m, c, o): tz for m, sites in SITES.items() for (c, o, _x, _y, tz) in sites}
    s4 = s4_frame()
    for g, s in zip(group, site, strict=True):
        assert tz_of[s["site_id"]] == g["tz_group_id"]
        p = s4.filter(
            (pl.col("merchant_id") == g["merchant_id"])
            & (pl.col("utc_day") == dt.date.fromisoformat(g["utc_day"]))
            & (pl.col("tz_group_id") == g["tz_group_id"])
        ).get_column("p_group")
        assert p.to_list() == [g["p_group"]]

    # Selection log: one file per day, arrival order, lineage, ctr_site = ctr_group + 1.
    sel_rows: list[dict[str, Any]] = []
    for day in sorted({r["utc_day"] for r in roster}):
        path = run.home.path("s5_selection_log", {**run.tokens(), "utc_day": day})
        assert_byte_law(path)
        rows = read_jsonl(path)
        assert [r["utc_timestamp"] for r in rows] == [
            r["utc_timestamp"] for r in roster if r["utc_day"] == day
        ]
        sel_rows += rows
    assert len(sel_rows) == n
    schema = cat.entry("s5_selection_log").schema_ref
    for r in sel_rows:
        assert json_errors(schema, r) == []
        assert r["created_utc"] == CREATED and r["rng_stream_id"] == "2B.routing"
        assert r["manifest_fingerprint"] == run.manifest_fingerprint
        assert r["ctr_site_lo"] == r["ctr_group_lo"] + 1
    # Outcome: per-arrival routing for S6, the report's posture and speed.
    frame = out.frame
    assert frame is not None and frame.height == n
    assert frame.get_column("merchant_id").to_list() == [r["merchant_id"] for r in roster]
    assert frame.get_column("site_id").to_list() == [s["site_id"] for s in site]
    rep = out.report
    assert rep["rng_accounting"]["draws_total"] == 2 * n
    assert rep["rng_accounting"]["last_counter"] == {"hi": 0, "lo": 2 * n - 1}
    assert rep["roster"]["arrivals"] == n and rep["roster"]["virtual"] == 2
    assert rep["roster"]["class_channel_observable"] is True
    assert rep["performance"]["arrivals_per_second"] > 0
    assert (
        json.loads(
            (
                run.home.root
                / "reports/layer1/2B/state=S5"
                / f"seed={run.seed}"
                / f"manifest_fingerprint={run.manifest_fingerprint}"
                / "s5_run_report.json"
            ).read_bytes()
        )["component"]
        == "2B.S5"
    )


def test_s5_equals_an_independent_serial_replay(run: TinyRun) -> None:
    run_s5(run.home, **s5_kwargs(run))
    roster = read_jsonl(run.home.path("s5_arrival_roster", run.tokens()))
    stream = derive_routing_stream(
        ROUTING_DOMAIN_MASTER,
        ROUTING_DOMAIN_STREAM,
        "2B.routing",
        seed=run.seed,
        parameter_hash=run.parameter_hash,
        run_id=run.run_id,
    )
    tz_of = {(m, c, o): tz for m, sites in SITES.items() for (c, o, _x, _y, tz) in sites}
    expected = serial_route(roster, s1_frame(), tz_of, s4_frame(), stream)
    group = read_jsonl(_paths(run)["rng_event_alias_pick_group"])
    site = read_jsonl(_paths(run)["rng_event_alias_pick_site"])
    got = [(g["tz_group_id"], s["site_id"], g["p_group"]) for g, s in zip(group, site, strict=True)]
    assert got == expected


def test_selection_log_of_an_unsorted_roster_keeps_each_arrivals_counters(run: TinyRun) -> None:
    # Days out of order: the selection log is regrouped by day, and each row must still carry
    # its own arrival's counters (event 2i for the group draw, 2i + 1 for the site draw).
    roster = list(reversed(_roster(run)))
    assert [r["utc_day"] for r in roster] != sorted(r["utc_day"] for r in roster)
    reseal_roster(run, roster)
    run_s5(run.home, **s5_kwargs(run))
    position = {(r["merchant_id"], r["utc_timestamp"]): i for i, r in enumerate(roster)}
    seen = 0
    for day in sorted({r["utc_day"] for r in roster}):
        rows = read_jsonl(run.home.path("s5_selection_log", {**run.tokens(), "utc_day": day}))
        assert [r["utc_timestamp"] for r in rows] == [
            r["utc_timestamp"] for r in roster if r["utc_day"] == day
        ]
        for r in rows:
            i = position[(r["merchant_id"], r["utc_timestamp"])]
            assert (r["ctr_group_hi"], r["ctr_group_lo"]) == (0, 2 * i)
            assert (r["ctr_site_hi"], r["ctr_site_lo"]) == (0, 2 * i + 1)
        seen += len(rows)
    assert seen == len(roster)


def test_s5_rematerialises_byte_for_byte(run: TinyRun) -> None:
    first = run_s5(run.home, **s5_kwargs(run))
    files = sorted(
        p for p in (run.home.root / "logs").rglob("*.jsonl") if "audit" not in p.parts[-5:][0]
    )
    before = {p: p.read_bytes() for p in files}
    again = run_s5(run.home, **s5_kwargs(run))
    assert {p: p.read_bytes() for p in files} == before
    assert {p.outcome for p in again.published} == {"idempotent"}
    # A fresh publish does not hash the logs (DECISIONS 29); the re-emit compared digests.
    logs = [p for p in first.published if "audit" not in p.path.as_posix()]
    assert logs and all(p.digest is None for p in logs)
    for p in again.published:
        on_disk = folder_digest(p.path) if p.path.is_dir() else sha256_file(p.path)
        assert p.digest == on_disk
    assert again.data_version == first.data_version
    # ... which is the input version every log was published under.
    trace = _paths(run)["rng_trace_log"]
    assert first.data_version == rng_logs._read_version(run.home, trace, "s5")
    assert len(read_jsonl(_paths(run)["rng_audit_log"])) == 1


def test_selection_log_disabled_writes_none(tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    shutil.copytree(DEFAULT_PACK, pack, ignore=shutil.ignore_patterns("baseline"))
    doc = json.loads((pack / "route_rng_policy_v1.json").read_bytes())
    doc["extensions"]["selection_log_enabled"] = False
    (pack / "route_rng_policy_v1.json").write_text(json.dumps(doc, indent=2))
    run = sealed_run(tmp_path / "w", pack=pack)
    out = run_s5(run.home, **s5_kwargs(run))
    assert out.report["logging"] == {"selection_log_enabled": False}
    assert not (run.home.root / "data/layer1/2B/s5_selection_log").exists()


# ---------------------------------------------------------------------------------------------
# Runner error codes
# ---------------------------------------------------------------------------------------------


def _code(run: TinyRun) -> SegmentError:
    with pytest.raises(SegmentError) as exc:
        run_s5(run.home, **s5_kwargs(run))
    return exc.value


def _roster(run: TinyRun) -> list[dict[str, Any]]:
    return read_jsonl(run.home.path("s5_arrival_roster", run.tokens()))


def test_day_outside_s4_grid_is_040(run: TinyRun) -> None:
    rows = _roster(run)
    rows.append(
        {
            "merchant_id": 101,
            "utc_day": "2026-01-09",
            "utc_timestamp": "2026-01-09T10:00:00.000000Z",
        }
    )
    reseal_roster(run, rows)
    err = _code(run)
    assert err.code == "2B-S5-040" and err.dataset == "s4_group_weights"
    assert "arrival 6" in (err.key or "") and "2026-01-09" in (err.key or "")
    assert not _paths(run)["rng_trace_log"].exists()  # an abort publishes nothing


def test_unknown_merchant_is_020(run: TinyRun) -> None:
    rows = [
        *_roster(run),
        {
            "merchant_id": 999,
            "utc_day": "2026-01-01",
            "utc_timestamp": "2026-01-01T12:00:00.000000Z",
        },
    ]
    reseal_roster(run, rows)
    err = _code(run)
    assert err.code == "2B-S5-020" and "999" in (err.key or "")


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        (
            '{"merchant_id": 101, "utc_day": "2026-01-02", '
            '"utc_timestamp": "2026-01-01T23:59:59.999999Z"}',
            "UTC date",
        ),
        (
            '{"merchant_id": 101, "utc_day": "2026-01-01", "extra": 1, '
            '"utc_timestamp": "2026-01-01T10:00:00.000000Z"}',
            "unexpected field",
        ),
        (
            '{"merchant_id": 101.0, "utc_day": "2026-01-01", '
            '"utc_timestamp": "2026-01-01T10:00:00.000000Z"}',
            "not a JSON integer",
        ),
        (
            '{"merchant_id": "101", "utc_day": "2026-01-01", '
            '"utc_timestamp": "2026-01-01T10:00:00.000000Z"}',
            "not a JSON integer",
        ),
    ],
)
def test_bad_roster_row_is_020_with_line(run: TinyRun, line: str, needle: str) -> None:
    reseal_roster(run, [*_roster(run), line])
    err = _code(run)
    assert err.code == "2B-S5-020" and err.key == "line 7" and needle in str(err)


def test_roster_changed_after_seal_is_020(run: TinyRun) -> None:
    path = run.home.path("s5_arrival_roster", run.tokens())
    path.write_bytes(path.read_bytes() + b"\n")
    err = _code(run)
    assert err.code == "2B-S5-020" and err.dataset == "s5_arrival_roster"


def test_roster_changed_after_seal_is_reported_before_its_parse_error(run: TinyRun) -> None:
    # The digest is computed beside the parse: a changed roster that also fails to parse must
    # still be reported as changed (the first check of s5 §6), not as a bad row.
    path = run.home.path("s5_arrival_roster", run.tokens())
    path.write_bytes(path.read_bytes() + b'{"merchant_id": "x"}\n')
    err = _code(run)
    assert err.code == "2B-S5-020" and "changed after S0 sealed" in str(err)
    assert "sealed_sha256" in err.context


def test_created_utc_mismatch_is_086(run: TinyRun) -> None:
    write_plan_inputs(
        run,
        s1_frame(),
        s4_frame().with_columns(pl.lit("2026-01-05T00:00:00.000000Z").alias("created_utc")),
    )
    err = _code(run)
    assert err.code == "2B-S5-086" and err.dataset == "s4_group_weights"


def test_group_mix_not_summing_to_one_is_040(run: TinyRun) -> None:
    s4 = s4_frame().with_columns(
        pl.when(pl.col("merchant_id") == 202)
        .then(pl.col("p_group") * 0.9)
        .otherwise(pl.col("p_group"))
        .alias("p_group")
    )
    write_plan_inputs(run, s1_frame(), s4)
    err = _code(run)
    assert err.code == "2B-S5-040" and "GROUP_PROBABILITY_MISMATCH" in str(err)
    assert (err.key or "").startswith("202:")


def test_group_without_sites_is_041(run: TinyRun) -> None:
    mix = {**S4_MIX, BIG: [("Asia/Seoul", 1.0)]}
    write_plan_inputs(run, s1_frame(), s4_frame(mix=mix))
    err = _code(run)
    assert err.code == "2B-S5-041" and "site_slice_empty" in str(err)


def test_s2_blob_tampered_is_041(run: TinyRun) -> None:
    tokens = {"seed": str(run.seed), "manifest_fingerprint": run.manifest_fingerprint}
    blob = run.home.path("s2_alias_blob", tokens)
    blob.write_bytes(blob.read_bytes() + b"\x00")
    err = _code(run)
    assert err.code == "2B-S5-041" and err.key == "blob_sha256"


def test_missing_s0_receipt_is_001(run: TinyRun) -> None:
    tokens = {"seed": str(run.seed), "manifest_fingerprint": run.manifest_fingerprint}
    run.home.path("s0_gate_receipt_2B", tokens).unlink()
    assert _code(run).code == "2B-S5-001"


def test_trace_with_foreign_bytes_is_080(run: TinyRun) -> None:
    run_s5(run.home, **s5_kwargs(run))
    trace = _paths(run)["rng_trace_log"]
    trace.write_bytes(b"{}\n" + trace.read_bytes())
    assert _code(run).code == "2B-S5-080"


# ---------------------------------------------------------------------------------------------
# Roster parsing (pure)
# ---------------------------------------------------------------------------------------------


def _parse(lines: Sequence[str]) -> pl.DataFrame:
    return parse_roster("".join(x + "\n" for x in lines).encode()).frame


OK = '"utc_day": "2026-01-01", "utc_timestamp": "2026-01-01T00:00:00.000000Z"'


def test_canonical_fast_path_equals_general_path() -> None:
    rows = [
        {
            "channel": "card_present",
            "is_virtual": True,
            "mcc": 5411,
            "merchant_id": 2**64 - 1,
            "utc_day": "2026-01-01",
            "utc_timestamp": "2026-01-01T00:00:00.000000Z",
        },
        {"merchant_id": 3, "utc_day": "2026-01-02", "utc_timestamp": "2026-01-02T00:00:00.000000Z"},
        {
            "is_virtual": False,
            "merchant_id": 4,
            "utc_day": "2026-01-02",
            "utc_timestamp": "2026-01-02T00:00:01.000000Z",
        },
    ]
    canonical = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
    spaced = "".join(json.dumps(r, separators=(" ,", " : ")) + "\r\n" for r in rows).encode()
    a, b = parse_roster(canonical), parse_roster(spaced)
    assert a.frame.equals(b.frame) and a.is_virtual_present and b.is_virtual_present
    assert a.frame.get_column("is_virtual").to_list() == [True, False, False]
    assert a.frame.get_column("mcc").to_list() == [5411, None, None]


def test_roster_parses_uint64_ids_exactly() -> None:
    f = _parse([f'{{"merchant_id": {2**64 - 1}, {OK}}}', "", f'{{"merchant_id": 1, {OK}}}'])
    assert f.get_column("merchant_id").dtype == pl.UInt64
    assert f.get_column("merchant_id").to_list() == [2**64 - 1, 1]
    assert f.get_column("is_virtual").to_list() == [False, False]


def test_roster_accepts_channel_and_mcc() -> None:
    f = _parse(
        [f'{{"channel": "card_present", "is_virtual": true, "mcc": 5411, "merchant_id": 7, {OK}}}']
    )
    assert f.row(0, named=True)["channel"] == "card_present" and f.row(0, named=True)["mcc"] == 5411


@pytest.mark.parametrize(
    "bad",
    [
        f'{{"merchant_id": {2**64}, {OK}}}',
        f'{{"merchant_id": 0, {OK}}}',
        f'{{"merchant_id": -3, {OK}}}',
        f'{{"merchant_id": 1.5, {OK}}}',
        f'{{"merchant_id": 1e3, {OK}}}',
        f'{{"merchant_id": 5, "is_virtual": null, {OK}}}',
        f'{{"merchant_id": 5, "is_virtual": 1, {OK}}}',
        f'{{"merchant_id": 5, "channel": "online", {OK}}}',
        f'{{"merchant_id": 5, "mcc": 99, {OK}}}',
        '{"merchant_id": 5, "utc_day": "2026-02-30", '
        '"utc_timestamp": "2026-02-30T00:00:00.000000Z"}',
        '{"merchant_id": 5, "utc_day": "2026-01-01", "utc_timestamp": "2026-01-01T00:00:00Z"}',
        '{"merchant_id": 5, "utc_timestamp": "2026-01-01T00:00:00.000000Z"}',
        "[1, 2]",
        "{not json",
    ],
)
def test_roster_rejects_bad_rows_with_020(bad: str) -> None:
    with pytest.raises(SegmentError) as exc:
        _parse([f'{{"merchant_id": 5, {OK}}}', bad])
    assert exc.value.code == "2B-S5-020" and exc.value.key == "line 2"


def test_roster_posture_counts_repeats_and_horizon() -> None:
    lines = [
        f'{{"merchant_id": 1, "utc_day": "2026-01-01", '
        f'"utc_timestamp": "2026-01-01T0{h}:00:00.000000Z"}}'
        for h in range(3)
    ] + [
        '{"is_virtual": true, "merchant_id": 2, "utc_day": "2026-01-30", '
        '"utc_timestamp": "2026-01-30T00:00:00.000000Z"}'
    ]
    p = roster_posture(parse_roster("\n".join(lines).encode()))
    assert p["arrivals"] == 4 and p["virtual"] == 1 and p["horizon_span_days"] == 30
    assert p["merchant_days_repeat_ge2"] == 1 and p["horizon_ge_28_days"] is True
    assert p["class_channel_observable"] is False and p["ready_for_realism_grading"] is False


# ---------------------------------------------------------------------------------------------
# Pure core: worked example (s5 §5) and shared log helpers
# ---------------------------------------------------------------------------------------------


def test_worked_example_of_s5_section_5() -> None:
    stream = derive_routing_stream(
        ROUTING_DOMAIN_MASTER,
        ROUTING_DOMAIN_STREAM,
        "2B.routing",
        seed=42,
        parameter_hash="ab" * 32,
        run_id="cd" * 16,
    )
    m = 1694081450446801
    day = dt.date(2026, 1, 1)
    s4 = pl.DataFrame(
        {
            "merchant_id": [m] * 3,
            "utc_day": [day] * 3,
            "tz_group_id": ["America/Chicago", "America/New_York", "Europe/London"],
            "p_group": [0.5, 0.3, 0.2],
        },
        schema_overrides={"merchant_id": pl.UInt64},
    )
    sites = [
        ("US", 1, "America/New_York", 0.1),
        ("US", 2, "America/New_York", 0.3),
        ("US", 3, "America/Chicago", 0.4),
        ("GB", 1, "Europe/London", 0.2),
    ]
    s1 = pl.DataFrame(
        {
            "merchant_id": [m] * 4,
            "legal_country_iso": [s[0] for s in sites],
            "site_order": [s[1] for s in sites],
            "p_weight": [s[3] for s in sites],
        },
        schema_overrides={"merchant_id": pl.UInt64, "site_order": pl.Int32},
    ).sort("merchant_id", "legal_country_iso", "site_order")
    tz = s1.select("merchant_id", "legal_country_iso", "site_order").join(
        pl.DataFrame(
            {
                "legal_country_iso": ["US", "US", "US", "GB"],
                "site_order": [1, 2, 3, 1],
                "tzid": [s[2] for s in sites],
            },
            schema_overrides={"site_order": pl.Int32},
        ),
        on=["legal_country_iso", "site_order"],
    )
    lines = [
        f'{{"merchant_id": {m}, "utc_day": "2026-01-01", '
        f'"utc_timestamp": "2026-01-01T00:00:0{k}.000000Z"}}'
        for k in range(2)
    ]
    roster = parse_roster("\n".join(lines).encode())
    plan = build_routing_plan(s1, tz, s4, roster.frame.select("merchant_id", "day").unique())
    routing = route_arrivals(roster, plan, stream)
    assert routing.tz_group_ids().to_list() == ["America/New_York", "America/New_York"]
    assert routing.site_id.tolist() == [site_id(m, "US", 1), site_id(m, "US", 2)]
    assert routing.p_group.tolist() == [0.3, 0.3]
    assert site_id(m, "US", 1) == 3881771984399143709  # s5 §7 example


def test_jsonl_lines_reproduce_json_dumps() -> None:
    rng = np.random.default_rng(7)
    floats = np.concatenate(
        [
            rng.random(200),
            [
                0.0,
                -0.0,
                1.0,
                0.1,
                1e-5,
                1e-4,
                1e16,
                1.5e300,
                5e-324,
                0.3,
                0.30000000000000004,
                1 / 3,
                -77.4558,
                38.9445,
                180.0,
            ],
        ]
    )
    texts = [
        "plain",
        'quo"te',
        "back\\slash",
        "tab\there",
        "caf\u00e9",
        "\u2603",
        "new\nline",
        "Europe/London",
    ]
    n = floats.size
    frame = pl.DataFrame(
        {
            "i": np.arange(n, dtype=np.uint64) * np.uint64(2**60 // n),
            "s": [texts[k % len(texts)] for k in range(n)],
            "f": rng_logs.float_json(floats),
            "big": pl.Series([2**64 - 1 - k for k in range(n)], dtype=pl.UInt64),
        }
    )
    lines = rng_logs.jsonl_lines(
        frame,
        {
            "zeta": Col("i"),
            "alpha": Col("s", "str"),
            "mid": Col("f", "json"),
            "big": Col("big"),
            "const": Const({"b": [1, None, True], "a": "x"}),
            "flag": Const(False),
        },
    )
    for k, line in enumerate(lines.to_list()):
        obj = {
            "zeta": int(frame["i"][k]),
            "alpha": texts[k % len(texts)],
            "mid": float(floats[k]),
            "big": 2**64 - 1 - k,
            "const": {"b": [1, None, True], "a": "x"},
            "flag": False,
        }
        assert line == json.dumps(obj, ensure_ascii=True, sort_keys=True) + "\n"
    assert rng_logs.lines_bytes(lines) == "".join(lines.to_list()).encode()


@pytest.mark.parametrize("rows", [0, 1, 5, 40_000])
def test_chunked_zero_copy_writer_equals_joined_lines(tmp_path: Path, rows: int) -> None:
    tokens = RunTokens(42, "ab" * 32, "ef" * 32, "cd" * 16, "2026-01-01T23:59:59.900000Z")
    k = np.arange(rows, dtype=np.uint64)
    z = np.zeros(rows, dtype=np.uint64)
    plan = rng_logs.event_plan(
        tokens,
        module="2B.S5.router",
        substream_label="alias_pick_site",
        counters=(z, k, z, k + np.uint64(1)),
        ts=(4, 2),
        extra_columns={"site_id": pl.Series(k * np.uint64(7919) + np.uint64(1))},
        extra_fields={"site_id": Col("site_id")},
    )
    written = rng_logs.write_jsonl(tmp_path / "a" / "x.jsonl", plan, chunk_rows=16_384)
    expected = rng_logs.lines_bytes(rng_logs.plan_lines(plan))
    assert (tmp_path / "a" / "x.jsonl").read_bytes() == expected
    assert (written.rows, written.bytes) == (rows, len(expected))
    if rows:
        assert written.first == expected.decode().splitlines(keepends=True)[0]
        assert written.last == expected.decode().splitlines(keepends=True)[-1]
        row = json.loads(written.last)
        ts = rng_logs.ts_utc_series(tokens.created_utc, np.array([4 * (rows - 1) + 2]))
        assert row["ts_utc"] == ts[0]
    # The fallback (short values force inline views) writes the same bytes.
    short = pl.Series(["a\n", "bc\n", "x" * 40 + "\n"])
    with (tmp_path / "s.txt").open("wb") as fh:
        rng_logs.write_series(fh, short)
    assert (tmp_path / "s.txt").read_bytes() == b"a\nbc\n" + b"x" * 40 + b"\n"


def test_ts_sequence_crosses_second_and_day_boundaries() -> None:
    ts = rng_logs.ts_utc_series("2026-12-31T23:59:59.999998Z", np.array([0, 1, 2, 3, 1_000_002]))
    assert ts.to_list() == [
        "2026-12-31T23:59:59.999998Z",
        "2026-12-31T23:59:59.999999Z",
        "2027-01-01T00:00:00.000000Z",
        "2027-01-01T00:00:00.000001Z",
        "2027-01-01T00:00:01.000000Z",
    ]


def test_trace_totals_are_cumulative_per_key() -> None:
    tokens = RunTokens(42, "ab" * 32, "ef" * 32, "cd" * 16, CREATED)
    codes = np.array([0, 1, 1, 0, 1])
    z = np.zeros(5, dtype=np.uint64)
    k = np.arange(5, dtype=np.uint64)
    plan = rng_logs.trace_plan(
        tokens,
        modules=("m", "m"),
        labels=("a", "b"),
        key_codes=codes,
        counters=(z, k, z, k + np.uint64(1)),
        ts=(2, 1),
    )
    lines = rng_logs.plan_lines(plan)
    rows = [json.loads(x) for x in lines.to_list()]
    assert [(r["substream_label"], r["events_total"]) for r in rows] == [
        ("a", 1),
        ("b", 1),
        ("b", 2),
        ("a", 2),
        ("b", 3),
    ]
    assert all(r["draws_total"] == r["blocks_total"] == r["events_total"] for r in rows)
    assert all(json_errors(rng_logs.TRACE_SCHEMA, r) == [] for r in rows)


def test_audit_row_is_written_once_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_COMMIT", "a" * 40)
    tokens = RunTokens(42, "ab" * 32, "ef" * 32, "cd" * 16, CREATED)
    target = tmp_path / "audit" / "rng_audit_log.jsonl"
    first = rng_logs.ensure_audit_row(target, rng_logs.audit_row(tokens), prefix="2B-S5")
    second = rng_logs.ensure_audit_row(target, rng_logs.audit_row(tokens), prefix="2B-S6")
    assert (first.outcome, second.outcome) == ("published", "idempotent")
    rows = read_jsonl(target)
    assert len(rows) == 1 and rows[0]["build_commit"] == "0" * 24 + "a" * 40
    other = RunTokens(7, "ab" * 32, "ef" * 32, "cd" * 16, CREATED)
    rng_logs.ensure_audit_row(target, rng_logs.audit_row(other), prefix="2B-S5")
    assert len(read_jsonl(target)) == 2


# ---------------------------------------------------------------------------------------------
# Statistics: empirical group and site frequencies match S4 x S1
# ---------------------------------------------------------------------------------------------


def chi2_sf(x: float, k: int) -> float:
    """Upper tail of the chi-square(k) distribution: Q(k/2, x/2) (Numerical Recipes gammq)."""
    a, z = k / 2.0, x / 2.0
    if z <= 0:
        return 1.0
    gln = math.lgamma(a)
    if z < a + 1.0:  # series for P, then Q = 1 - P
        ap, total, delta = a, 1.0 / a, 1.0 / a
        for _ in range(10_000):
            ap += 1.0
            delta *= z / ap
            total += delta
            if abs(delta) < abs(total) * 1e-15:
                break
        return 1.0 - total * math.exp(-z + a * math.log(z) - gln)
    b = z + 1.0 - a  # continued fraction for Q (Lentz)
    c, d = 1.0 / 1e-300, 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return math.exp(-z + a * math.log(z) - gln) * h


def test_chi2_sf_matches_known_quantiles() -> None:
    assert chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-9)
    assert chi2_sf(23.20925115895, 10) == pytest.approx(0.01, rel=1e-9)
    assert chi2_sf(2.0, 4) == pytest.approx(math.exp(-1.0) * 2.0, rel=1e-12)


def test_empirical_frequencies_match_s4_times_s1() -> None:
    """200k arrivals over 6 merchant-days; chi-square per merchant-day (groups, 6 tests) and
    per multi-site (merchant, group) (sites within the chosen group, 7 tests). Fixed stream, so
    the test is deterministic; the tolerance is p > 1e-4 for each of the 13 tests (family-wise
    false-alarm rate < 1.3e-3 under a correct sampler)."""
    rng = np.random.default_rng(2024)
    merchants = np.array([11, 12, 2**64 - 5], dtype=np.uint64)
    tzs = ["America/New_York", "Asia/Tokyo", "Europe/Berlin", "Europe/London"]
    days = [dt.date(2026, 3, 1), dt.date(2026, 3, 2)]
    s1_rows, tz_rows, s4_rows = [], [], []
    for m in merchants.tolist():
        order = 0
        for g, tz in enumerate(tzs[: 2 + (m % 3)]):
            for _ in range(1 + g):
                order += 1
                w = float(rng.random()) + (0.0 if order % 4 else 0.5)
                s1_rows.append((m, "ZZ", order, w))
                tz_rows.append((m, "ZZ", order, tz))
        for day in days:
            k = 2 + (m % 3)
            p = rng.dirichlet(np.ones(k)).tolist()
            p[-1] = 1.0 - sum(p[:-1])
            s4_rows += [(m, day, tzs[j], p[j]) for j in range(k)]
    s1 = pl.DataFrame(
        s1_rows,
        schema=[
            ("merchant_id", pl.UInt64),
            ("legal_country_iso", pl.String),
            ("site_order", pl.Int32),
            ("p_weight", pl.Float64),
        ],
        orient="row",
    )
    s1 = s1.with_columns(
        (pl.col("p_weight") / pl.col("p_weight").sum().over("merchant_id")).alias("p_weight")
    )
    site_tz = pl.DataFrame(
        tz_rows,
        schema=[
            ("merchant_id", pl.UInt64),
            ("legal_country_iso", pl.String),
            ("site_order", pl.Int32),
            ("tzid", pl.String),
        ],
        orient="row",
    )
    s4 = pl.DataFrame(
        s4_rows,
        schema=[
            ("merchant_id", pl.UInt64),
            ("utc_day", pl.Date),
            ("tz_group_id", pl.String),
            ("p_group", pl.Float64),
        ],
        orient="row",
    )
    n = 200_000
    pick_m = merchants[rng.integers(0, merchants.size, n)]
    pick_d = rng.integers(0, len(days), n)
    roster = pl.DataFrame(
        {
            "merchant_id": pl.Series(pick_m, dtype=pl.UInt64),
            "utc_day": pl.Series(np.array([str(d) for d in days])[pick_d]),
            "utc_timestamp": pl.Series(np.array([f"{d}T00:00:00.000000Z" for d in days])[pick_d]),
        }
    )
    data = rng_logs.lines_bytes(
        rng_logs.jsonl_lines(
            roster,
            {
                "merchant_id": Col("merchant_id"),
                "utc_day": Col("utc_day", "str"),
                "utc_timestamp": Col("utc_timestamp", "str"),
            },
        )
    )
    parsed = parse_roster(data)
    stream = derive_routing_stream(
        ROUTING_DOMAIN_MASTER,
        ROUTING_DOMAIN_STREAM,
        "2B.routing",
        seed=7,
        parameter_hash="12" * 32,
        run_id="34" * 16,
    )
    plan = build_routing_plan(s1, site_tz, s4, parsed.frame.select("merchant_id", "day").unique())
    routing = route_arrivals(parsed, plan, stream)
    out = pl.DataFrame(
        {
            "merchant_id": parsed.frame["merchant_id"],
            "day": parsed.frame["day"],
            "tz": routing.tz_group_ids(),
            "site_id": pl.Series(routing.site_id, dtype=pl.UInt64),
        }
    )
    # Stage A: groups per merchant-day vs S4.
    obs = out.group_by("merchant_id", "day", "tz").len()
    exp = (
        s4.rename({"utc_day": "day", "tz_group_id": "tz"})
        .join(
            out.group_by("merchant_id", "day").len().rename({"len": "total"}),
            on=["merchant_id", "day"],
        )
        .join(obs, on=["merchant_id", "day", "tz"], how="left")
    )
    pvals = []
    for (_m, _d), g in exp.group_by("merchant_id", "day"):
        e = (g["p_group"] * g["total"]).to_numpy()
        o = g["len"].fill_null(0).to_numpy()
        pvals.append(chi2_sf(float(((o - e) ** 2 / e).sum()), g.height - 1))
    # Stage B: sites within (merchant, group) vs renormalised S1 weights.
    sites = s1.join(site_tz, on=["merchant_id", "legal_country_iso", "site_order"]).with_columns(
        pl.Series(
            "site_id",
            [
                site_id(m, c, o)
                for m, c, o in s1.select("merchant_id", "legal_country_iso", "site_order").rows()
            ],
            dtype=pl.UInt64,
        ),
        (pl.col("p_weight") / pl.col("p_weight").sum().over("merchant_id", "tzid")).alias("q"),
    )
    obs_s = out.group_by("merchant_id", "tz", "site_id").len()
    exp_s = (
        sites.rename({"tzid": "tz"})
        .join(
            out.group_by("merchant_id", "tz").len().rename({"len": "total"}),
            on=["merchant_id", "tz"],
        )
        .join(obs_s, on=["merchant_id", "tz", "site_id"], how="left")
    )
    for _key, g in exp_s.group_by("merchant_id", "tz"):
        if g.height < 2:
            assert g["len"].fill_null(0).to_list() == g["total"].to_list()
            continue
        e = (g["q"] * g["total"]).to_numpy()
        o = g["len"].fill_null(0).to_numpy()
        pvals.append(chi2_sf(float(((o - e) ** 2 / e).sum()), g.height - 1))
    assert len(pvals) == 13
    assert min(pvals) > 1e-4, sorted(pvals)[:3]


# ---------------------------------------------------------------------------------------------
# Scale: synthetic 1,238-merchant x 90-day world (slow; run with -m slow)
# ---------------------------------------------------------------------------------------------

BENCH_TZ = (
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/New_York",
    "America/Sao_Paulo",
    "America/Toronto",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Europe/Berlin",
    "Europe/London",
    "Europe/Madrid",
    "Europe/Paris",
    "Europe/Rome",
    "Europe/Warsaw",
    "Pacific/Auckland",
)


def build_bench_run(
    tmp_path: Path,
    *,
    merchants: int = 1238,
    days: int = 90,
    arrivals: int = 400_000,
    seed: int = 42,
) -> TinyRun:
    """A sealed run over a synthetic world: 2-40 sites per merchant over 1-5 zones, S4 mixes for
    every merchant-day of the grid, a time-sorted roster with ~10 % virtual merchants."""
    from segment2b.identity import run_id as derive_run_id
    from segment2b.policy.store import load_pack, parameter_hash
    from segment2b.storage.home import StorageHome
    from segment2b.world.outputs import (
        manifest_fingerprint,
        run_created_utc,
        world_created_utc,
        write_gate_bundle,
        write_run_receipt,
        write_seed_world,
    )

    rng = np.random.default_rng(seed)
    policy_root = tmp_path / "policies"
    shutil.copytree(DEFAULT_PACK, policy_root, ignore=shutil.ignore_patterns("baseline"))
    home = StorageHome(root=tmp_path / "home", policy_root=policy_root)
    start = dt.date(2026, 1, 1)
    knobs = {"generator_version": "bench", "merchants": merchants, "days": days}
    mf = manifest_fingerprint(knobs, [seed], "0" * 64)
    mids = np.unique(rng.integers(1, 2**64 - 1, merchants, dtype=np.uint64, endpoint=True))
    loc_rows, tz_rows, s4_rows = [], [], []
    s1_w = []
    for m in mids.tolist():
        zones = sorted(rng.choice(len(BENCH_TZ), int(rng.integers(1, 6)), replace=False).tolist())
        k = int(rng.integers(max(2, len(zones)), 41))
        site_zone = np.concatenate([zones, rng.choice(zones, k - len(zones))]).astype(int)
        for o, z in enumerate(site_zone.tolist(), start=1):
            loc_rows.append((m, "ZZ", o, 0.0, 0.0))
            tz_rows.append(BENCH_TZ[z])
        w = rng.random(k) + 0.05
        s1_w += (w / w.sum()).tolist()
        names = sorted(BENCH_TZ[z] for z in zones)
        for d in range(days):
            p = rng.dirichlet(np.ones(len(names)))
            p = p / p.sum()
            for tz, q in zip(names, p.tolist(), strict=True):
                s4_rows.append((m, start + dt.timedelta(days=d), tz, q))
    loc = pl.DataFrame(
        loc_rows,
        orient="row",
        schema=[
            ("merchant_id", pl.UInt64),
            ("legal_country_iso", pl.String),
            ("site_order", pl.Int32),
            ("lon_deg", pl.Float64),
            ("lat_deg", pl.Float64),
        ],
    )
    tz = loc.select("merchant_id", "legal_country_iso", "site_order").with_columns(
        tzid=pl.Series(tz_rows),
        tzid_source=pl.lit("polygon"),
        override_scope=pl.lit(None, dtype=pl.String),
        nudge_lat_deg=pl.lit(None, dtype=pl.Float64),
        nudge_lon_deg=pl.lit(None, dtype=pl.Float64),
    )
    virtual = rng.random(merchants) < 0.10
    mcc = rng.choice([5411, 5812, 4111, 4812, 5999], merchants).astype(np.int32)
    channel = np.where(virtual, "card_not_present", "card_present")
    merchant_frame = pl.DataFrame(
        {
            "merchant_id": pl.Series(mids, dtype=pl.UInt64),
            "mcc": mcc,
            "mcc_class": "services",
            "channel": channel,
            "home_country_iso": "ZZ",
            "is_virtual": virtual,
        }
    )
    pick = rng.integers(0, merchants, arrivals)
    day = rng.integers(0, days, arrivals)
    micros = rng.integers(0, 86_400_000_000, arrivals)
    order = np.lexsort((pick, micros, day))
    pick, day, micros = pick[order], day[order], micros[order]
    base = np.datetime64(start.isoformat(), "us")
    stamps = base + day.astype("timedelta64[D]") + micros.astype("timedelta64[us]")
    ts = pl.Series(stamps).dt.strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
    arrivals_frame = pl.DataFrame(
        {
            "merchant_id": pl.Series(mids[pick], dtype=pl.UInt64),
            "utc_timestamp": ts,
            "utc_day": ts.str.slice(0, 10),
            "is_virtual": virtual[pick],
            "channel": channel[pick],
            "mcc": mcc[pick],
        }
    )
    write_seed_world(
        home,
        seed=seed,
        manifest_fingerprint=mf,
        created_utc=world_created_utc(start),
        site_locations=loc,
        site_timezones=tz,
        merchants=merchant_frame,
        arrivals=arrivals_frame,
        report={"profile": "bench"},
    )
    write_gate_bundle(
        home,
        manifest_fingerprint=mf,
        seeds=[seed],
        knobs=knobs,
        site_counts={seed: loc.height},
        tz_cache=None,
    )
    ph = parameter_hash(load_pack(policy_root).digests(), {"mode": "bench", "n": arrivals})
    rid = derive_run_id(mf, seed, ph)
    write_run_receipt(
        home,
        run_id=rid,
        seed=seed,
        parameter_hash=ph,
        manifest_fingerprint=mf,
        created_utc=run_created_utc(start),
    )
    run = TinyRun(home, seed, mf, ph, rid)
    from segment2b.world.outputs import roster_jsonl

    write_roster(home, run.tokens(), roster_jsonl(arrivals_frame))
    run_s0(home, rid)
    s1 = loc.select("merchant_id", "legal_country_iso", "site_order").with_columns(
        p_weight=pl.Series(s1_w),
        weight_source=pl.lit("bench"),
        quantised_bits=pl.lit(24, dtype=pl.Int32),
        floor_applied=pl.lit(False),
        created_utc=pl.lit(CREATED),
    )
    s4 = pl.DataFrame(
        s4_rows,
        orient="row",
        schema=[
            ("merchant_id", pl.UInt64),
            ("utc_day", pl.Date),
            ("tz_group_id", pl.String),
            ("p_group", pl.Float64),
        ],
    ).with_columns(
        base_share=pl.col("p_group"),
        gamma=pl.lit(1.0),
        created_utc=pl.lit(CREATED),
        mass_raw=pl.lit(None, dtype=pl.Float64),
        denom_raw=pl.lit(None, dtype=pl.Float64),
    )
    write_plan_inputs(run, s1, s4)
    return run


@pytest.mark.slow
def test_s5_s6_throughput_on_a_400k_roster(tmp_path: Path) -> None:
    import time

    from segment2b.states.s6_edge_router import run_s6

    run = build_bench_run(tmp_path)
    t0 = time.perf_counter()
    s5 = run_s5(run.home, **s5_kwargs(run))
    s6 = run_s6(run.home, **s5_kwargs(run), s5=s5)
    elapsed = time.perf_counter() - t0
    n = s5.report["rng_accounting"]["events_group"]
    rate = n / elapsed
    sizes = {
        f"{state}:{p.path.relative_to(run.home.root).as_posix().split('/seed=')[0]}": p.bytes
        for state, out in (("S5", s5), ("S6", s6))
        for p in out.published
    }
    print(
        f"\nS5+S6: {n} arrivals in {elapsed:.2f} s = {rate:,.0f} arrivals/s; "
        f"S5 {s5.report['performance']['durations_ms']}; "
        f"S6 {s6.report['performance']['durations_ms']}; bytes {sizes}"
    )
    assert n == 400_000


def test_split_writer_cuts_days_across_chunk_boundaries(tmp_path: Path) -> None:
    n = 50
    frame = pl.DataFrame(
        {
            "k": np.arange(n, dtype=np.uint64),
            "day": [f"2026-01-{1 + i // 13:02d}" for i in range(n)],
        }
    )
    plan = rng_logs.jsonl_plan(
        frame, {"k": Col("k"), "utc_day": Col("day", "str"), "pad": Const("x" * 20)}
    )
    _order, days = day_ranges(frame.get_column("day"))
    ranges = {tmp_path / f"utc_day={d}" / "f.jsonl": span for d, span in days.items()}
    written = rng_logs.write_jsonl_split(plan, ranges, chunk_rows=7)
    everything = rng_logs.plan_lines(plan)
    for path, (a, b) in ranges.items():
        assert path.read_bytes() == rng_logs.lines_bytes(everything.slice(a, b - a))
        w = written[path]
        assert (w.rows, w.bytes) == (b - a, path.stat().st_size)
        assert (w.first, w.last) == (everything[a], everything[b - 1])


def test_counters_with_a_high_word_serialise_exactly() -> None:
    tokens = RunTokens(2**64 - 1, "ab" * 32, "ef" * 32, "cd" * 16, CREATED)
    before_hi = np.array([0, 1, 1], dtype=np.uint64)
    before_lo = np.array([2**64 - 1, 0, 1], dtype=np.uint64)
    after_hi = np.array([1, 1, 1], dtype=np.uint64)
    after_lo = np.array([0, 1, 2], dtype=np.uint64)
    plan = rng_logs.trace_plan(
        tokens,
        modules=("2B.virtual_edge",),
        labels=("cdn_edge_pick",),
        key_codes=np.zeros(3, dtype=np.int64),
        counters=(before_hi, before_lo, after_hi, after_lo),
        ts=(2, 1),
    )
    for k, line in enumerate(rng_logs.plan_lines(plan).to_list()):
        expected = {
            "ts_utc": f"2026-01-01T00:00:00.{2 * k + 1:06d}Z",
            "run_id": "cd" * 16,
            "seed": 2**64 - 1,
            "module": "2B.virtual_edge",
            "substream_label": "cdn_edge_pick",
            "rng_counter_before_hi": int(before_hi[k]),
            "rng_counter_before_lo": int(before_lo[k]),
            "rng_counter_after_hi": int(after_hi[k]),
            "rng_counter_after_lo": int(after_lo[k]),
            "draws_total": k + 1,
            "blocks_total": k + 1,
            "events_total": k + 1,
        }
        assert line == json.dumps(expected, sort_keys=True) + "\n"


@pytest.mark.parametrize("base", [(0, 0), (0, 2**64 - 5), (3, 9)])
def test_counter_laws_render_like_stored_counters(base: tuple[int, int]) -> None:
    # Law-derived counters (rendered per chunk, never stored) against the same counters as
    # arrays: event families (step 2, offsets 0/1) and the alternating trace, with chunks of 3
    # rows that straddle the low word's carry for (0, 2**64 - 5).
    tokens = RunTokens(7, "ab" * 32, "ef" * 32, "cd" * 16, CREATED)
    n = 7
    law = rng_logs.CounterLaw(*base)
    for offset, label in ((0, "alias_pick_group"), (1, "alias_pick_site")):
        fam = rng_logs.CounterLaw(*base, step=2, offset=offset)
        extra = {"site_id": pl.Series(np.arange(n, dtype=np.uint64) + np.uint64(11))}
        kwargs: dict[str, Any] = {
            "module": "2B.S5.router",
            "substream_label": label,
            "ts": (4, 2 * offset),
            "extra_columns": extra,
            "extra_fields": {"site_id": Col("site_id")},
        }
        by_law = rng_logs.event_plan(tokens, counters=fam, **kwargs)
        stored = rng_logs.event_plan(tokens, counters=fam.arrays(0, n), **kwargs)
        assert rng_logs.plan_bytes(by_law, chunk_rows=3) == rng_logs.plan_bytes(stored)
    periodic = rng_logs.periodic_trace_plan(
        tokens,
        module="2B.S5.router",
        labels=("alias_pick_group", "alias_pick_site"),
        counters=law,
        events=2 * n,
        ts=(2, 1),
    )
    general = rng_logs.trace_plan(
        tokens,
        modules=("2B.S5.router", "2B.S5.router"),
        labels=("alias_pick_group", "alias_pick_site"),
        key_codes=np.arange(2 * n, dtype=np.int64) % 2,
        counters=law.arrays(0, 2 * n),
        ts=(2, 1),
    )
    assert rng_logs.plan_bytes(periodic, chunk_rows=3) == rng_logs.plan_bytes(general)
    assert periodic.n == 2 * n
    assert (
        rng_logs.plan_lines(
            rng_logs.periodic_trace_plan(
                tokens, module="m", labels=("a",), counters=law, events=0, ts=(2, 1)
            )
        ).len()
        == 0
    )


# ---------------------------------------------------------------------------------------------
# Fast paths: roster round trip, hashed writers, day order, trace copy, sealed bytes
# ---------------------------------------------------------------------------------------------

_FULL = (
    '"channel": "card_present", "is_virtual": false, "mcc": 5411, "merchant_id": 7, '
    '"utc_day": "2026-01-01", "utc_timestamp": "2026-01-01T00:00:00.000000Z"'
)
ROSTER_VARIANTS: dict[str, str] = {
    "canonical": "{" + _FULL + "}",
    "no_optional": '{"merchant_id": 7, ' + OK + "}",
    "leading_zero_id": "{" + _FULL.replace('"merchant_id": 7', '"merchant_id": 07') + "}",
    "plus_id": "{" + _FULL.replace('"merchant_id": 7', '"merchant_id": +7') + "}",
    "escaped_day": "{"
    + _FULL.replace('"utc_day": "2026-01-01"', '"utc_day": "2026-01-0\\u0031"')
    + "}",
    "escaped_channel": "{" + _FULL.replace('"card_present"', '"card\\u005fpresent"') + "}",
    "duplicate_id": "{"
    + _FULL.replace('"merchant_id": 7', '"merchant_id": 7, "merchant_id": 8')
    + "}",
    "unsorted_prefix": "{"
    + _FULL.replace(
        '"channel": "card_present", "is_virtual": false',
        '"is_virtual": false, "channel": "card_present"',
    )
    + "}",
    "float_mcc": "{" + _FULL.replace('"mcc": 5411', '"mcc": 5411.0') + "}",
    "bool_as_int": "{" + _FULL.replace('"is_virtual": false', '"is_virtual": 0') + "}",
    "extra_key": "{" + _FULL.replace('"mcc": 5411', '"mcc": 5411, "note": "x"') + "}",
    "spaces": "{" + _FULL.replace('"merchant_id": 7', '"merchant_id":  7') + "}",
    "id_zero": "{" + _FULL.replace('"merchant_id": 7', '"merchant_id": 0') + "}",
    "id_overflow": "{" + _FULL.replace('"merchant_id": 7', f'"merchant_id": {2**64}') + "}",
}


@pytest.mark.parametrize("variant", sorted(ROSTER_VARIANTS))
def test_roster_fast_path_answers_like_the_general_path(
    monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    """The canonical round trip accepts exactly what the general parser accepts, with the same
    frame, and declines everything else (the general path then raises its own error)."""
    from segment2b.states import s5_router

    good = (
        '{"channel": "card_not_present", "is_virtual": true, "mcc": 4511, "merchant_id": 9, '
        + OK
        + "}"
    )
    data = "".join(x + "\n" for x in [good, ROSTER_VARIANTS[variant], good]).encode()

    def outcome() -> Any:
        try:
            r = parse_roster(data)
        except SegmentError as err:
            return ("error", err.code, err.key, str(err))
        return ("roster", r.frame, r.is_virtual_present)

    fast = outcome()
    took_fast = s5_router._parse_canonical(data) is not None
    assert took_fast == (variant in ("canonical", "no_optional"))
    monkeypatch.setattr(s5_router, "_parse_canonical", lambda *_, **__: None)
    general = outcome()
    assert fast[0] == general[0]
    if fast[0] == "roster":
        assert fast[1].schema == general[1].schema and fast[1].equals(general[1])
        assert fast[2] == general[2]
    else:
        assert fast[1:] == general[1:]


def test_roster_prefix_that_is_not_utf8_goes_to_the_general_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from segment2b.states import s5_router

    line = ('{"channel": "card_present", "merchant_id": 9, ' + OK + "}\n").encode()
    data = line + line.replace(b"card_present", b"card_\xffresent")
    assert s5_router._parse_canonical(data) is None
    with pytest.raises(SegmentError) as fast:
        parse_roster(data)
    monkeypatch.setattr(s5_router, "_parse_canonical", lambda *_, **__: None)
    with pytest.raises(SegmentError) as general:
        parse_roster(data)
    assert fast.value.code == general.value.code == "2B-S5-020"
    assert str(fast.value) == str(general.value)


def test_parsed_timestamps_do_not_keep_the_roster_lines_alive() -> None:
    # The roster frame lives through S5 and S6: its timestamps must own their bytes rather than
    # view into the parsed lines (which would hold ~180 bytes per arrival).
    rows = 5_000
    lines = [
        json.dumps(
            {
                "channel": "card_not_present",
                "is_virtual": False,
                "mcc": 5411,
                "merchant_id": 10**18 + k,
                "utc_day": "2026-01-01",
                "utc_timestamp": f"2026-01-01T00:00:{k % 60:02d}.{k:06d}Z",
            },
            sort_keys=True,
        )
        for k in range(rows)
    ]
    frame = parse_roster(("\n".join(lines) + "\n").encode()).frame
    ts = frame.get_column("utc_timestamp").to_arrow(compat_level=pl.CompatLevel.newest())
    chunks = ts.chunks if isinstance(ts, pa.ChunkedArray) else [ts]
    data_bytes = sum(b.size for c in chunks for b in c.buffers()[2:] if b is not None)
    assert data_bytes <= 27 * rows + 4096


@pytest.mark.parametrize("variant", ["canonical", "no_optional", "blank_line_inside"])
def test_roster_fast_path_keeps_optional_columns_present_in_any_row(variant: str) -> None:
    """An optional column present only in the last row is kept (null elsewhere), one absent
    from every row is dropped, and a blank line sends the roster to the general parse."""
    from segment2b.states import s5_router

    rows = [f'{{"merchant_id": {m}, ' + OK + "}" for m in range(1, 8)]
    if variant == "canonical":
        rows.append('{"channel": "card_present", "mcc": 5411, "merchant_id": 3, ' + OK + "}")
    lines = [r + "\n" for r in rows]
    if variant == "blank_line_inside":
        lines.insert(4, "\n")
    data = "".join(lines).encode()
    fast = s5_router._parse_canonical(data)
    if variant == "blank_line_inside":
        assert fast is None
        return
    assert fast is not None
    general = pl.read_ndjson(io.BytesIO(data), schema_overrides={"merchant_id": pl.UInt64})
    assert fast.columns == sorted(general.columns)
    assert fast.equals(general.select(fast.columns))
    assert ("channel" in fast.columns) == (variant == "canonical")
    if variant == "canonical":
        assert fast.get_column("mcc").to_list() == [None] * 7 + [5411]


def test_hashed_writers_report_the_digests_of_what_they_wrote(tmp_path: Path) -> None:

    frame = pl.DataFrame({"k": np.arange(50), "day": [DAYS[i % 3] for i in range(50)]})
    plan = rng_logs.jsonl_plan(frame, {"k": Col("k"), "utc_day": Col("day", "safe")})
    single = rng_logs.write_jsonl(tmp_path / "one" / "x.jsonl", plan, chunk_rows=7)
    assert single.sha256 == sha256_bytes((tmp_path / "one" / "x.jsonl").read_bytes())
    order, days = day_ranges(frame.get_column("day"))
    assert list(days) == sorted(days) and [a for a, _ in days.values()] == sorted(
        a for a, _ in days.values()
    )
    sorted_plan = rng_logs.jsonl_plan(
        frame[pl.Series(order.astype(np.uint32))],
        {"k": Col("k"), "utc_day": Col("day", "safe")},
    )
    root = tmp_path / "days"
    ranges = {root / f"utc_day={d}" / "f.jsonl": span for d, span in days.items()}
    folder = rng_logs.write_jsonl_folder(sorted_plan, ranges, root, chunk_rows=4)
    assert folder.sha256 == folder_digest(root)
    for path, written in folder.files.items():
        assert written.sha256 == sha256_bytes(path.read_bytes())
    # Folder digest only (what S5 and S6 publish): same files, same H2, no per-file digests.
    bare_root = tmp_path / "bare"
    bare = rng_logs.write_jsonl_folder(
        sorted_plan,
        {bare_root / p.relative_to(root): span for p, span in ranges.items()},
        bare_root,
        chunk_rows=4,
        file_digests=False,
    )
    assert bare.sha256 == folder.sha256
    assert all(w.sha256 == "" for w in bare.files.values())
    assert [w.rows for w in bare.files.values()] == [w.rows for w in folder.files.values()]
    # Row order that does not follow path order: no one-pass folder digest.
    other_root = tmp_path / "x"
    paths = [other_root / p.relative_to(root) for p in reversed(list(ranges))]
    shuffled = dict(zip(paths, ranges.values(), strict=True))
    other = rng_logs.write_jsonl_folder(sorted_plan, shuffled, other_root, chunk_rows=4)
    assert other.sha256 is None


def test_trace_copied_ahead_is_used_only_while_the_trace_is_unchanged(tmp_path: Path) -> None:
    from segment2b.storage.home import StorageHome

    home = StorageHome(root=tmp_path / "home", policy_root=DEFAULT_PACK)
    target = tmp_path / "home" / "logs" / "trace" / "rng_trace_log.jsonl"
    target.parent.mkdir(parents=True)
    target.write_bytes(b'{"module": "2B.S5.router"}\n' * 3)
    tail = b'{"module": "2B.virtual_edge"}\n'
    ahead = rng_logs.copy_trace_ahead(target)
    assert ahead is not None and ahead.path.read_bytes() == target.read_bytes()
    out = rng_logs.publish_trace_s6(home, target, tail, input_version="v", ahead=ahead)
    assert out is not None and out.outcome == "published"
    assert target.read_bytes() == b'{"module": "2B.S5.router"}\n' * 3 + tail
    assert not ahead.path.exists()  # moved into place
    ahead.discard()
    # A copy of a trace that changed afterwards is ignored (the publish copies afresh).
    target.write_bytes(b'{"module": "2B.S5.router"}\n')
    stale = rng_logs.copy_trace_ahead(target)
    assert stale is not None
    target.write_bytes(b'{"module": "2B.S5.router"}\n' * 2)
    rng_logs.publish_trace_s6(home, target, tail, input_version="v2", ahead=stale)
    assert target.read_bytes() == b'{"module": "2B.S5.router"}\n' * 2 + tail
    stale.discard()
    assert rng_logs.copy_trace_ahead(tmp_path / "absent.jsonl") is None
    assert not list(target.parent.glob("_tmp.*"))


def test_sealed_bytes_are_the_hashed_bytes(run: TinyRun) -> None:
    from segment2b.states.evidence import load_evidence

    ev = load_evidence(
        run.home, seed=run.seed, manifest_fingerprint=run.manifest_fingerprint, prefix="2B-S5"
    )
    path = ev.sealed_file("s5_arrival_roster", run.tokens())
    assert ev.sealed_bytes("s5_arrival_roster", run.tokens()) == path.read_bytes()
    path.write_bytes(path.read_bytes() + b"\n")
    with pytest.raises(SegmentError) as exc:
        ev.sealed_bytes("s5_arrival_roster", run.tokens())
    assert "changed after S0 sealed" in str(exc.value)


def test_a_roster_with_blank_lines_routes_like_the_same_roster_without(tmp_path: Path) -> None:
    # S5 starts the trace from the roster's line count before parsing; blank lines (legal,
    # skipped) make that count wrong, and the trace is rendered again from the parsed count.
    plain, blank = sealed_run(tmp_path / "plain"), sealed_run(tmp_path / "blank")
    rows = read_jsonl(plain.home.path("s5_arrival_roster", plain.tokens()))
    reseal_roster(blank, [*rows[:2], "", *rows[2:], ""])
    run_s5(plain.home, **s5_kwargs(plain))
    run_s5(blank.home, **s5_kwargs(blank))
    for ds in ("rng_trace_log", "rng_event_alias_pick_group", "rng_event_alias_pick_site"):
        mine, theirs = blank.home.path(ds, blank.tokens()), plain.home.path(ds, plain.tokens())
        assert mine.read_bytes() == theirs.read_bytes()
    assert not list(blank.home.tmp.iterdir())


def test_write_jsonl_stops_between_chunks_when_told(tmp_path: Path) -> None:
    import threading

    plan = rng_logs.jsonl_plan(pl.DataFrame({"k": np.arange(100)}), {"k": Col("k")})
    stop = threading.Event()
    stop.set()
    with pytest.raises(rng_logs.RenderStoppedError):
        rng_logs.write_jsonl(tmp_path / "x.jsonl", plan, chunk_rows=10, stop=stop)
    done = rng_logs.write_jsonl(tmp_path / "y.jsonl", plan, chunk_rows=10, stop=threading.Event())
    assert done.rows == 100
