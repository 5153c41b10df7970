"""S6 virtual-edge router: s6 §5 worked example, bypass of non-virtual arrivals, the shared
trace (S5 rows then S6 rows, idempotent in either re-run order), the edge log joined to S5 by
arrival position (from S5's outcome or from its selection log: same bytes), and error codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segment2b.catalogue.schemas import json_errors, resolve_anchor
from segment2b.core.routing_rng import (
    EDGE_DOMAIN_MASTER,
    EDGE_DOMAIN_STREAM,
    derive_routing_stream,
)
from segment2b.errors import SegmentError
from segment2b.policy.store import DEFAULT_PACK
from segment2b.states import rng_logs
from segment2b.states.s5_router import parse_roster, run_s5
from segment2b.states.s6_edge_router import build_edge_catalogue, pick_edges, run_s6
from segment2b_tests.fixtures import BIG, TinyRun
from segment2b_tests.states.test_s5_router import (
    CREATED,
    assert_byte_law,
    read_jsonl,
    reseal_roster,
    s5_kwargs,
    sealed_run,
)

ALPHA = {
    "policy_id": "virtual_edge_policy_v1",
    "version_tag": "alpha",
    "policy_version": "0.1.0",
    "default_edges": [
        {"edge_id": "iad-us", "ip_country": "US", "weight": 0.35},
        {"edge_id": "dub-ie", "ip_country": "IE", "weight": 0.25},
        {"edge_id": "sin-sg", "ip_country": "SG", "weight": 0.20},
        {"edge_id": "syd-au", "ip_country": "AU", "weight": 0.20},
    ],
    "geo_metadata": {
        "iad-us": {"edge_lat": 38.9445, "edge_lon": -77.4558},
        "dub-ie": {"edge_lat": 53.3331, "edge_lon": -6.2489},
        "sin-sg": {"edge_lat": 1.3521, "edge_lon": 103.8198},
        "syd-au": {"edge_lat": -33.8688, "edge_lon": 151.2093},
    },
    "merchant_overrides": {
        "1694081450446801": [
            {"edge_id": "iad-us", "ip_country": "US", "weight": 0.60},
            {"edge_id": "dub-ie", "ip_country": "IE", "weight": 0.40},
        ],
        "2697116941085629": [
            {"edge_id": "sin-sg", "ip_country": "SG", "weight": 0.50},
            {"edge_id": "syd-au", "ip_country": "AU", "weight": 0.50},
        ],
    },
    "extensions": {"edge_log_enabled": False},
}


def _roster_bytes(rows: list[tuple[int, bool]]) -> bytes:
    return "".join(
        json.dumps(
            {
                "is_virtual": v,
                "merchant_id": m,
                "utc_day": "2026-01-01",
                "utc_timestamp": f"2026-01-01T00:00:{k:02d}.000000Z",
            },
            sort_keys=True,
        )
        + "\n"
        for k, (m, v) in enumerate(rows)
    ).encode()


def _edge_stream() -> Any:
    return derive_routing_stream(
        EDGE_DOMAIN_MASTER,
        EDGE_DOMAIN_STREAM,
        "2B.routing_edge",
        seed=42,
        parameter_hash="ab" * 32,
        run_id="cd" * 16,
    )


def test_worked_example_of_s6_section_5() -> None:
    cat = build_edge_catalogue(ALPHA)
    assert cat.tables.prob[:4].tolist() == [1.0, 0.8, 0.8, 0.8]
    assert cat.tables.alias[:4].tolist() == [0, 0, 0, 1]
    assert cat.edges_declared == 4
    # Non-virtual arrivals in between consume no draw: virtual v uses ctr0 + v.
    roster = parse_roster(
        _roster_bytes(
            [(1111111111111111, True), (1694081450446801, False), (1111111111111111, True)]
        )
    )
    picks = pick_edges(roster, cat, _edge_stream())
    assert picks.arrival.tolist() == [0, 2]
    assert picks.draws.before_lo.tolist() == [0, 1]
    assert [cat.edge_id[e] for e in picks.edge.tolist()] == ["iad-us", "sin-sg"]


def test_overrides_select_the_merchant_list() -> None:
    cat = build_edge_catalogue(ALPHA)
    roster = parse_roster(
        _roster_bytes([(2697116941085629, True)] * 50 + [(1694081450446801, True)] * 50)
    )
    picks = pick_edges(roster, cat, _edge_stream())
    chosen = [cat.edge_id[e] for e in picks.edge.tolist()]
    assert set(chosen[:50]) <= {"sin-sg", "syd-au"} and set(chosen[50:]) <= {"iad-us", "dub-ie"}
    assert len(set(chosen[:50])) == 2


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"merchant_overrides": {"7": []}}, "edge_policy_empty"),
        (
            {
                "merchant_overrides": {
                    "7": [{"edge_id": "iad-us", "ip_country": "US", "weight": 0.5}]
                }
            },
            "sum",
        ),
        (
            {
                "merchant_overrides": {
                    "7": [{"edge_id": "nowhere", "ip_country": "US", "weight": 1.0}]
                }
            },
            "no coordinates",
        ),
        (
            {
                "default_edges": [
                    {"edge_id": "iad-us", "ip_country": "US", "weight": 0.5},
                    {"edge_id": "iad-us", "ip_country": "US", "weight": 0.5},
                ]
            },
            "not unique",
        ),
    ],
)
def test_edge_list_minima_are_031(patch: dict[str, Any], needle: str) -> None:
    with pytest.raises(SegmentError) as exc:
        build_edge_catalogue({**ALPHA, **patch})
    assert exc.value.code == "2B-S6-031" and needle in str(exc.value)


def test_edges_form_overrides_take_coordinates_from_the_catalogue() -> None:
    doc = json.loads((DEFAULT_PACK / "virtual_edge_policy_v1.json").read_bytes())
    doc["merchant_overrides"] = {
        "5": [{"edge_id": "JP-EDGE-002", "ip_country": "JP", "weight": 1.0}]
    }
    cat = build_edge_catalogue(doc)
    k = len(doc["edges"])
    assert cat.edge_id[k] == "JP-EDGE-002"
    jp = next(e for e in doc["edges"] if e["edge_id"] == "JP-EDGE-002")
    assert (cat.edge_lat[k], cat.edge_lon[k]) == (jp["edge_lat"], jp["edge_lon"])


# ---------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def run(tmp_path: Path) -> TinyRun:
    return sealed_run(tmp_path)


def _path(run: TinyRun, ds: str, **extra: str) -> Path:
    return run.home.path(ds, {**run.tokens(), **extra})


def test_s6_outputs_and_shared_trace(run: TinyRun) -> None:
    s5 = run_s5(run.home, **s5_kwargs(run))
    s5_trace = _path(run, "rng_trace_log").read_bytes()
    out = run_s6(run.home, **s5_kwargs(run), s5=s5)
    roster = read_jsonl(_path(run, "s5_arrival_roster"))
    virtual = [i for i, r in enumerate(roster) if r.get("is_virtual")]
    v = len(virtual)
    assert v == 2
    events = read_jsonl(_path(run, "rng_event_cdn_edge_pick"))
    assert len(events) == v
    assert_byte_law(_path(run, "rng_event_cdn_edge_pick"))
    schema = run.home.catalogue.entry("rng_event_cdn_edge_pick").schema_ref
    # s6 §3.1: merchant_id (envelope-optional) is always written; the layer pack's anchor does
    # not declare it yet, so validate the rest against the pack and merchant_id separately.
    declared = resolve_anchor(schema)["properties"]
    for e in events:
        rest = (
            e if "merchant_id" in declared else {k: x for k, x in e.items() if k != "merchant_id"}
        )
        assert json_errors(schema, rest) == []
        assert type(e["merchant_id"]) is int and e["merchant_id"] >= 1
    trace_bytes = _path(run, "rng_trace_log").read_bytes()
    assert trace_bytes.startswith(s5_trace)
    tail = [json.loads(x) for x in trace_bytes[len(s5_trace) :].splitlines()]
    assert len(tail) == v
    for k, (e, t) in enumerate(zip(events, tail, strict=True)):
        assert e["module"] == t["module"] == "2B.virtual_edge"
        assert e["substream_label"] == t["substream_label"] == "cdn_edge_pick"
        assert (e["rng_counter_before_lo"], e["rng_counter_after_lo"]) == (k, k + 1)
        assert t["events_total"] == t["draws_total"] == t["blocks_total"] == k + 1
        assert e["ts_utc"] == f"2026-01-01T00:00:00.{2 * k:06d}Z"
        assert t["ts_utc"] == f"2026-01-01T00:00:00.{2 * k + 1:06d}Z"
        assert e["merchant_id"] == roster[virtual[k]]["merchant_id"] == BIG
        assert json_errors(rng_logs.TRACE_SCHEMA, t) == []
    # Edge log: S5's choice of the same arrival, policy attributes, lineage.
    s5_site = read_jsonl(_path(run, "rng_event_alias_pick_site"))
    policy = {
        e["edge_id"]: e
        for e in json.loads((run.home.policy_root / "virtual_edge_policy_v1.json").read_bytes())[
            "edges"
        ]
    }
    log_rows: list[dict[str, Any]] = []
    for day in sorted({roster[i]["utc_day"] for i in virtual}):
        p = _path(run, "s6_edge_log", utc_day=day)
        assert_byte_law(p)
        log_rows += read_jsonl(p)
    log_schema = run.home.catalogue.entry("s6_edge_log").schema_ref
    for k, row in enumerate(log_rows):
        i = virtual[k]
        assert json_errors(log_schema, row) == []
        assert (row["merchant_id"], row["utc_timestamp"]) == (
            roster[i]["merchant_id"],
            roster[i]["utc_timestamp"],
        )
        assert (row["tz_group_id"], row["site_id"]) == (
            s5_site[i]["tz_group_id"],
            s5_site[i]["site_id"],
        )
        edge = policy[row["edge_id"]]
        assert (row["ip_country"], row["edge_lat"], row["edge_lon"]) == (
            edge["ip_country"],
            edge["edge_lat"],
            edge["edge_lon"],
        )
        assert (row["ctr_edge_hi"], row["ctr_edge_lo"]) == (0, k)
        assert row["is_virtual"] is True and row["created_utc"] == CREATED
        assert row["rng_stream_id"] == "2B.routing_edge"
    assert len(read_jsonl(_path(run, "rng_audit_log"))) == 1
    rep = out.report
    assert rep["counts"] == {"arrivals_total": 6, "virtual_arrivals": 2, "non_virtual_bypassed": 4}
    assert rep["rng_accounting"]["events_edge"] == rep["rng_accounting"]["draws_total"] == 2
    assert rep["logging"]["selection_source"] == "s5_outcome"
    assert rep["policy_edge"]["edges_declared"] == len(policy)


def test_reruns_in_any_order_are_idempotent(run: TinyRun) -> None:
    s5 = run_s5(run.home, **s5_kwargs(run))
    run_s6(run.home, **s5_kwargs(run), s5=s5)
    logs = sorted(p for p in (run.home.root / "logs").rglob("*.jsonl") if "audit" not in str(p))
    before = {p: p.read_bytes() for p in logs}
    # S6 alone, joining S5 through its selection log: same bytes.
    again = run_s6(run.home, **s5_kwargs(run))
    assert again.report["logging"]["selection_source"] == "s5_selection_log"
    assert {p.outcome for p in again.published} == {"idempotent"}
    # S5 re-run after S6 accepts the S6 tail; then S6 once more.
    s5b = run_s5(run.home, **s5_kwargs(run))
    assert {p.outcome for p in s5b.published} == {"idempotent"}
    run_s6(run.home, **s5_kwargs(run), s5=s5b)
    assert {p: p.read_bytes() for p in logs} == before
    assert len(read_jsonl(_path(run, "rng_audit_log"))) == 1


def test_no_virtual_arrivals_writes_no_s6_rows(run: TinyRun) -> None:
    rows = [{**r, "is_virtual": False} for r in read_jsonl(_path(run, "s5_arrival_roster"))]
    reseal_roster(run, rows)
    s5 = run_s5(run.home, **s5_kwargs(run))
    trace = _path(run, "rng_trace_log").read_bytes()
    out = run_s6(run.home, **s5_kwargs(run), s5=s5)
    assert not _path(run, "rng_event_cdn_edge_pick").exists()
    assert _path(run, "rng_trace_log").read_bytes() == trace
    assert out.report["rng_accounting"]["last_counter"] == {"hi": 0, "lo": 0}
    assert not (run.home.root / "logs/layer1/2B/edge").exists()


def test_override_pack_routes_the_merchant_to_its_list(tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    shutil.copytree(DEFAULT_PACK, pack, ignore=shutil.ignore_patterns("baseline"))
    doc = json.loads((pack / "virtual_edge_policy_v1.json").read_bytes())
    doc["merchant_overrides"] = {
        str(BIG): [{"edge_id": "JP-EDGE-001", "ip_country": "JP", "weight": 1.0}]
    }
    (pack / "virtual_edge_policy_v1.json").write_text(json.dumps(doc, indent=2))
    run = sealed_run(tmp_path / "w", pack=pack)
    s5 = run_s5(run.home, **s5_kwargs(run))
    run_s6(run.home, **s5_kwargs(run), s5=s5)
    rows = read_jsonl(_path(run, "s6_edge_log", utc_day="2026-01-01"))
    rows += read_jsonl(_path(run, "s6_edge_log", utc_day="2026-01-02"))
    assert [r["edge_id"] for r in rows] == ["JP-EDGE-001", "JP-EDGE-001"]


def test_override_not_summing_to_one_is_031(tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    shutil.copytree(DEFAULT_PACK, pack, ignore=shutil.ignore_patterns("baseline"))
    doc = json.loads((pack / "virtual_edge_policy_v1.json").read_bytes())
    doc["merchant_overrides"] = {
        str(BIG): [{"edge_id": "JP-EDGE-001", "ip_country": "JP", "weight": 0.7}]
    }
    (pack / "virtual_edge_policy_v1.json").write_text(json.dumps(doc, indent=2))
    run = sealed_run(tmp_path / "w", pack=pack)
    s5 = run_s5(run.home, **s5_kwargs(run))
    with pytest.raises(SegmentError) as exc:
        run_s6(run.home, **s5_kwargs(run), s5=s5)
    assert exc.value.code == "2B-S6-031" and exc.value.key == f"merchant_overrides[{BIG}]"
    assert not _path(run, "rng_event_cdn_edge_pick").exists()


def test_missing_selection_day_is_020_and_mismatch_is_071(run: TinyRun) -> None:
    run_s5(run.home, **s5_kwargs(run))
    day = _path(run, "s5_selection_log", utc_day="2026-01-02")
    data = day.read_bytes()
    day.unlink()
    with pytest.raises(SegmentError) as exc:
        run_s6(run.home, **s5_kwargs(run))
    assert exc.value.code == "2B-S6-020" and exc.value.dataset == "s5_selection_log"
    lines = data.splitlines(keepends=True)
    day.write_bytes(b"".join(reversed(lines)))  # arrivals at the wrong positions
    with pytest.raises(SegmentError) as exc:
        run_s6(run.home, **s5_kwargs(run))
    assert exc.value.code == "2B-S6-071" and "row 1" in (exc.value.key or "")


def test_different_s6_tail_is_081(run: TinyRun) -> None:
    s5 = run_s5(run.home, **s5_kwargs(run))
    run_s6(run.home, **s5_kwargs(run), s5=s5)
    trace = _path(run, "rng_trace_log")
    data = trace.read_bytes()
    trace.write_bytes(data.replace(b'"events_total": 2', b'"events_total": 9'))
    with pytest.raises(SegmentError) as exc:
        run_s6(run.home, **s5_kwargs(run), s5=s5)
    assert exc.value.code == "2B-S6-081"


def test_s5_outcome_of_another_roster_is_071(run: TinyRun) -> None:
    s5 = run_s5(run.home, **s5_kwargs(run))
    rows = read_jsonl(_path(run, "s5_arrival_roster"))
    reseal_roster(run, rows[:-1])
    with pytest.raises(SegmentError) as exc:
        run_s6(run.home, **s5_kwargs(run), s5=s5)
    assert exc.value.code == "2B-S6-071"


def test_roster_without_is_virtual_bypasses_everything_with_a_warning(run: TinyRun) -> None:
    rows = [
        {k: v for k, v in r.items() if k != "is_virtual"}
        for r in read_jsonl(_path(run, "s5_arrival_roster"))
    ]
    reseal_roster(run, rows)
    s5 = run_s5(run.home, **s5_kwargs(run))
    out = run_s6(run.home, **s5_kwargs(run), s5=s5)
    v05 = next(v for v in out.report["validators"] if v["id"] == "V-05")
    assert v05["status"] == "WARN" and out.report["counts"]["virtual_arrivals"] == 0
    assert out.report["warnings"] and out.report["summary"]["warn_count"] == 1
    assert np.asarray(out.extras["picks"].arrival).size == 0
