"""2B.S6 — virtual-edge router: one CDN edge per virtual arrival (s6-edge-router.md).

Grain: one ``cdn_edge_pick`` event (and one edge-log row) per virtual roster arrival, in roster
order; non-virtual arrivals consume nothing. The ``v``-th virtual arrival draws once from the
``routing_edge`` stream at ``ctr0 + v`` and decodes the merchant's edge list (its
``merchant_overrides`` entry, else the default catalogue) with an alias table built in policy
array order. S5's ``(tz_group_id, site_id)`` of the same arrival is joined **by arrival
position** (README decision 9): from S5's returned routing, or by re-reading S5's per-day
selection logs in arrival order.

Layout: pure core (:func:`build_edge_catalogue`, :func:`pick_edges`, :func:`s6_log_plans`) and
the thin runner :func:`run_s6`.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import polars as pl

from segment2b.catalogue.schemas import resolve_anchor
from segment2b.core.alias_table import AliasTables, build_alias_tables
from segment2b.core.philox import PhiloxStream
from segment2b.core.routing_rng import (
    EDGE_DOMAIN_MASTER,
    EDGE_DOMAIN_STREAM,
    RoutingDraws,
    derive_routing_stream,
    routing_draws,
)
from segment2b.errors import SegmentError
from segment2b.policy.models import RouteRngPolicyV1, VirtualEdgePolicyV1
from segment2b.states import rng_logs
from segment2b.states.evidence import EvidenceCodes
from segment2b.states.outcome import StateOutcome, input_version
from segment2b.states.rng_logs import Col, Const, RunTokens
from segment2b.states.s5_router import (
    Roster,
    S5Routing,
    check_counters,
    day_ranges,
    environment_block,
    open_run_evidence,
    parse_roster,
    report_path,
    roster_posture,
    spot_check,
)
from segment2b.storage.home import StorageHome
from segment2b.storage.publish import PublishResult
from segment2b.storage.reports import write_report

__all__ = [
    "CODE_VERSION",
    "MODULE",
    "EdgeCatalogue",
    "EdgePicks",
    "build_edge_catalogue",
    "pick_edges",
    "run_s6",
    "s6_log_plans",
    "selection_from_logs",
]

PREFIX = "2B-S6"
CODE_VERSION = "s6-edge-router-1"
MODULE = "2B.virtual_edge"
LABEL = "cdn_edge_pick"
SUM_TOLERANCE = 1e-9
VALIDATOR_IDS: tuple[str, ...] = tuple(f"V-{i:02d}" for i in range(1, 16))
EVIDENCE_CODES = EvidenceCodes(
    receipt_missing="001",
    inventory_invalid="020",
    not_sealed="020",
    path_mismatch="070",
    digest_mismatch="020",
    created_missing="001",
    policy_schema="030",
)
SELECTION_FIELDS: dict[str, pl.DataType] = {
    "merchant_id": pl.UInt64(),
    "utc_timestamp": pl.String(),
    "utc_day": pl.String(),
    "tz_group_id": pl.String(),
    "site_id": pl.UInt64(),
    "rng_stream_id": pl.String(),
    "ctr_group_hi": pl.UInt64(),
    "ctr_group_lo": pl.UInt64(),
    "ctr_site_hi": pl.UInt64(),
    "ctr_site_lo": pl.UInt64(),
    "manifest_fingerprint": pl.String(),
    "created_utc": pl.String(),
}


def _err(
    code: str, message: str, *, dataset: str | None = None, key: str | None = None, **ctx: Any
) -> SegmentError:
    return SegmentError(code, message, dataset=dataset, key=key, context=ctx)


# ---------------------------------------------------------------------------------------------
# Edge catalogue (pure)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeCatalogue:
    """Every edge list of the policy as CSR alias tables.

    Table 0 is the default list (``edges``, else ``default_edges``); table ``t >= 1`` is the
    override list of merchant ``override_merchants[t - 1]``. Flat per-entry attributes are in
    list array order.
    """

    edge_id: tuple[str, ...]
    ip_country: tuple[str, ...]
    edge_lat: np.ndarray
    edge_lon: np.ndarray
    tables: AliasTables
    override_merchants: np.ndarray
    edges_declared: int


def _normalise_list(
    entries: Sequence[Mapping[str, Any]],
    *,
    label: str,
    geo: Mapping[str, Mapping[str, Any]],
    catalogue_coords: Mapping[str, tuple[float, float]],
    prefix: str,
) -> list[tuple[str, str, float, float, float]]:
    """s6 §4 edge-list normalisation (array order); any failure -> ``<prefix>-031``."""

    def bad(msg: str, key: str) -> SegmentError:
        return _err(
            f"{prefix}-031",
            f"POLICY_MINIMA_MISSING: {label}: {msg}",
            dataset="virtual_edge_policy_v1",
            key=key,
        )

    if not entries:
        raise bad("edge_policy_empty", label)
    seen: set[str] = set()
    out: list[tuple[str, str, float, float, float]] = []
    for pos, e in enumerate(entries):
        eid = e.get("edge_id")
        where = f"{label}[{pos}]"
        if not isinstance(eid, str) or not eid:
            raise bad("edge_id is empty", where)
        if eid in seen:
            raise bad(f"edge_id {eid} is not unique", where)
        seen.add(eid)
        ipc = e.get("ip_country")
        if not isinstance(ipc, str) or not ipc:
            raise bad("ip_country is empty", where)
        if e.get("edge_lat") is not None and e.get("edge_lon") is not None:
            lat, lon = float(e["edge_lat"]), float(e["edge_lon"])
        elif eid in geo:
            lat, lon = float(geo[eid]["edge_lat"]), float(geo[eid]["edge_lon"])
        elif eid in catalogue_coords:
            lat, lon = catalogue_coords[eid]
        else:
            raise bad(f"edge {eid} has no coordinates", where)
        if not (-90.0 <= lat <= 90.0) or not (-180.0 < lon <= 180.0):
            raise bad(f"edge {eid} coordinates out of range", where)
        if e.get("weight") is not None:
            weight = float(e["weight"])
        elif e.get("country_weights") is not None:
            weight = float(e["country_weights"].get(ipc, 0.0))
        else:
            weight = 0.0
        if not math.isfinite(weight) or weight <= 0.0:
            raise bad(f"edge {eid} weight {weight!r} is not finite and > 0", where)
        out.append((eid, ipc, lat, lon, weight))
    total = 0.0
    for row in out:
        total += row[4]
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise bad(f"weights sum to {total!r}, not 1 within {SUM_TOLERANCE}", label)
    return out


def build_edge_catalogue(document: Mapping[str, Any], *, prefix: str = PREFIX) -> EdgeCatalogue:
    """Normalise the default list and every override list at start-up (s6 §4, pitfall 4).

    Coordinates of an entry come from the entry, else ``geo_metadata[edge_id]``, else (our
    extension for ``edges``-form policies with overrides) the ``edges`` catalogue entry with the
    same ``edge_id``.
    """
    geo = document.get("geo_metadata") or {}
    edges = document.get("edges")
    default = edges if edges is not None else document.get("default_edges") or []
    catalogue_coords = {
        e["edge_id"]: (float(e["edge_lat"]), float(e["edge_lon"]))
        for e in (edges or [])
        if "edge_lat" in e and "edge_lon" in e
    }
    lists = [
        _normalise_list(
            default, label="default", geo=geo, catalogue_coords=catalogue_coords, prefix=prefix
        )
    ]
    overrides = document.get("merchant_overrides") or {}
    merchants: list[int] = []
    for key in sorted(overrides, key=int):
        merchants.append(int(key))
        lists.append(
            _normalise_list(
                overrides[key],
                label=f"merchant_overrides[{key}]",
                geo=geo,
                catalogue_coords=catalogue_coords,
                prefix=prefix,
            )
        )
    flat = [row for lst in lists for row in lst]
    offsets = np.concatenate(([0], np.cumsum([len(lst) for lst in lists]))).astype(np.int64)
    tables = build_alias_tables(np.array([r[4] for r in flat], dtype=np.float64), offsets)
    return EdgeCatalogue(
        edge_id=tuple(r[0] for r in flat),
        ip_country=tuple(r[1] for r in flat),
        edge_lat=np.array([r[2] for r in flat], dtype=np.float64),
        edge_lon=np.array([r[3] for r in flat], dtype=np.float64),
        tables=tables,
        override_merchants=np.array(merchants, dtype=np.uint64),
        edges_declared=len({r[0] for r in flat}),
    )


# ---------------------------------------------------------------------------------------------
# Picking (pure)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EdgePicks:
    """Per virtual arrival (roster order): its arrival index, chosen flat edge and the draw."""

    arrival: np.ndarray
    edge: np.ndarray
    draws: RoutingDraws

    @property
    def n(self) -> int:
        return int(self.arrival.size)


def pick_edges(
    roster: Roster, catalogue: EdgeCatalogue, stream: PhiloxStream, *, prefix: str = PREFIX
) -> EdgePicks:
    """One draw per virtual arrival (``ctr0 + v``), decoded against the merchant's list.

    Raises
    ------
    SegmentError
        ``052`` counter wrap, ``051`` non-monotone counters, ``060`` chosen edge lacks
        attributes in domain.
    """
    virtual = roster.frame.get_column("is_virtual").to_numpy()
    arrival = np.flatnonzero(virtual)
    v = arrival.size
    try:
        draws = routing_draws(stream, v)
    except OverflowError as exc:
        raise _err(f"{prefix}-052", f"RNG_COUNTER_WRAP: {exc}", dataset="rng_trace_log") from exc
    bad = check_counters(draws.before_hi, draws.before_lo, draws.after_hi, draws.after_lo)
    if bad is not None:
        raise _err(f"{prefix}-051", "RNG_COUNTER_NOT_MONOTONE", key=f"event {bad}")
    mids = roster.frame.get_column("merchant_id").to_numpy()[arrival]
    table = np.zeros(v, dtype=np.int64)
    om = catalogue.override_merchants
    if om.size and v:
        pos = np.searchsorted(om, mids)
        pos_c = np.minimum(pos, om.size - 1)
        hit = om[pos_c] == mids
        table[hit] = pos_c[hit] + 1
    local = catalogue.tables.decode(table, draws.u)
    edge = catalogue.tables.offsets[table] + local
    if v:
        lat, lon = catalogue.edge_lat[edge], catalogue.edge_lon[edge]
        bad_attr = ~((lat >= -90) & (lat <= 90) & (lon > -180) & (lon <= 180))
        if bad_attr.any():
            raise _err(
                f"{prefix}-060",
                "EDGE_ATTR_MISSING: chosen edge attributes out of domain",
                key=catalogue.edge_id[int(edge[np.flatnonzero(bad_attr)[0]])],
            )
    return EdgePicks(arrival=arrival, edge=edge, draws=draws)


@dataclass(frozen=True)
class S6Plans:
    """Serialisation plans of S6's evidence. ``edge`` rows are sorted stably by day;
    ``edge_days`` maps each ``utc_day`` to its row range in that plan."""

    events: rng_logs.JsonlPlan
    trace: rng_logs.JsonlPlan
    edge: rng_logs.JsonlPlan | None
    edge_days: dict[str, tuple[int, int]]


def s6_log_plans(
    roster: Roster,
    picks: EdgePicks,
    catalogue: EdgeCatalogue,
    tokens: RunTokens,
    *,
    selection: pl.DataFrame | None,
    rng_stream_id: str,
) -> S6Plans:
    """Plans for S6's evidence (s6 §3, §6.1): virtual arrival ``v`` -> event ``ts = 2v``, its
    trace row ``2v + 1``. ``selection`` (per virtual arrival, roster order: ``tz_group_id``,
    ``site_id``) enables the edge log; ``None`` disables it. Pure; nothing rendered."""
    v = picks.n
    d = picks.draws
    f = roster.frame[picks.arrival]
    mid = f.get_column("merchant_id")
    counters = (d.before_hi, d.before_lo, d.after_hi, d.after_lo)
    events = rng_logs.event_plan(
        tokens,
        module=MODULE,
        substream_label=LABEL,
        counters=counters,
        ts=(2, 0),
        extra_columns={"merchant_id": mid},
        extra_fields={"merchant_id": Col("merchant_id")},
    )
    trace = rng_logs.trace_plan(
        tokens,
        modules=(MODULE,),
        labels=(LABEL,),
        key_codes=np.zeros(v, dtype=np.int64),
        counters=counters,
        ts=(2, 1),
    )
    if selection is None or v == 0:
        return S6Plans(events, trace, None, {})
    gather = pl.Series(picks.edge.astype(np.uint32))

    def dictionary(values: Sequence[str]) -> pl.Series:
        return pl.Series(rng_logs.json_strings(values), dtype=pl.String).gather(gather)

    order, days = day_ranges(f.get_column("utc_day"))
    frame = pl.DataFrame(
        {
            "merchant_id": mid,
            "utc_day": f.get_column("utc_day"),
            "utc_timestamp": f.get_column("utc_timestamp"),
            "tz_group_id": selection.get_column("tz_group_id"),
            "site_id": selection.get_column("site_id"),
            "edge_q": dictionary(catalogue.edge_id),
            "ip_q": dictionary(catalogue.ip_country),
            "lat_q": rng_logs.float_json(catalogue.edge_lat[picks.edge]),
            "lon_q": rng_logs.float_json(catalogue.edge_lon[picks.edge]),
            "c_hi": pl.Series(d.before_hi, dtype=pl.UInt64),
            "c_lo": pl.Series(d.before_lo, dtype=pl.UInt64),
        }
    )[pl.Series(order.astype(np.uint32))]
    edge = rng_logs.jsonl_plan(
        frame,
        {
            "merchant_id": Col("merchant_id"),
            "is_virtual": Const(True),
            "utc_timestamp": Col("utc_timestamp", "str"),
            "utc_day": Col("utc_day", "str"),
            "tz_group_id": Col("tz_group_id", "str"),
            "site_id": Col("site_id"),
            "edge_id": Col("edge_q", "json"),
            "ip_country": Col("ip_q", "json"),
            "edge_lat": Col("lat_q", "json"),
            "edge_lon": Col("lon_q", "json"),
            "rng_stream_id": Const(rng_stream_id),
            "ctr_edge_hi": Col("c_hi"),
            "ctr_edge_lo": Col("c_lo"),
            "manifest_fingerprint": Const(tokens.manifest_fingerprint),
            "created_utc": Const(tokens.created_utc),
        },
    )
    return S6Plans(events, trace, edge, days)


# ---------------------------------------------------------------------------------------------
# S5 join by arrival position
# ---------------------------------------------------------------------------------------------


def selection_from_routing(
    roster: Roster, routing: S5Routing, arrival: np.ndarray, *, prefix: str = PREFIX
) -> pl.DataFrame:
    """``tz_group_id``/``site_id`` of the given arrivals from S5's in-memory routing."""
    same = routing.roster is roster or (
        routing.n == roster.n
        and bool(
            (
                routing.roster.frame.select("merchant_id", "utc_timestamp")
                == roster.frame.select("merchant_id", "utc_timestamp")
            )
            .select(pl.all().all())
            .row(0)
            == (True, True)
        )
    )
    if not same:
        raise _err(
            f"{prefix}-071",
            "S5 routing was produced for a different roster (arrival positions differ)",
            dataset="s5_selection_log",
        )
    idx = pl.Series(arrival.astype(np.uint32))
    return pl.DataFrame(
        {
            "tz_group_id": routing.tz_group_ids().gather(idx),
            "site_id": pl.Series(routing.site_id[arrival], dtype=pl.UInt64),
        }
    )


def selection_from_logs(
    home: StorageHome,
    run_tokens: Mapping[str, str],
    roster: Roster,
    arrival: np.ndarray,
    *,
    manifest_fingerprint: str,
    prefix: str = PREFIX,
) -> pl.DataFrame:
    """Re-read S5's per-day selection logs and join them to arrivals **by position**.

    Within day ``d`` the k-th selection row is the k-th roster arrival of day ``d`` (both in
    arrival order). Row identity (merchant_id, utc_timestamp) and counts are verified; nothing
    is keyed by a value that can collide (README decision 9).

    Raises
    ------
    SegmentError
        ``020`` dictionary entry or a needed day file missing; ``071`` rows unreadable, of the
        wrong shape, a different count, or a different arrival at some position.
    """
    ds = "s5_selection_log"
    if ds not in home.catalogue.entries:
        raise _err(f"{prefix}-020", "s5_selection_log is not in the dictionary", dataset=ds)
    f = roster.frame.with_columns(
        pl.int_range(pl.len()).over("utc_day").alias("pos"),
        pl.int_range(pl.len()).alias("arrival"),
    )
    wanted = f[arrival]
    parts: list[pl.DataFrame] = []
    for day in sorted(set(wanted.get_column("utc_day").to_list())):
        path = home.path(ds, {**run_tokens, "utc_day": day})
        if not path.is_file():
            raise _err(
                f"{prefix}-020",
                "selection log of a virtual arrival's day is missing",
                dataset=ds,
                key=str(path),
            )
        try:
            rows = pl.read_ndjson(path, infer_schema_length=None)
        except (pl.exceptions.PolarsError, ValueError) as exc:
            raise _err(
                f"{prefix}-071", f"selection log unreadable: {exc}", dataset=ds, key=str(path)
            ) from exc
        if set(rows.columns) != set(SELECTION_FIELDS):
            raise _err(
                f"{prefix}-071",
                f"selection log fields {sorted(rows.columns)}",
                dataset=ds,
                key=str(path),
            )
        try:
            rows = rows.select([pl.col(c).cast(t) for c, t in SELECTION_FIELDS.items()])
        except pl.exceptions.PolarsError as exc:
            raise _err(
                f"{prefix}-071", f"selection log field types: {exc}", dataset=ds, key=str(path)
            ) from exc
        day_arrivals = f.filter(pl.col("utc_day") == day)
        if rows.height != day_arrivals.height or rows.null_count().sum_horizontal().item():
            raise _err(
                f"{prefix}-071",
                "selection_log_missing_key: row count differs from the "
                "roster's arrivals of the day",
                dataset=ds,
                key=str(path),
            )
        same = (
            (rows.get_column("merchant_id") == day_arrivals.get_column("merchant_id"))
            & (rows.get_column("utc_timestamp") == day_arrivals.get_column("utc_timestamp"))
            & (rows.get_column("utc_day") == day)
            & (rows.get_column("manifest_fingerprint") == manifest_fingerprint)
        )
        if not same.all():
            k = int((~same).arg_true()[0])
            raise _err(
                f"{prefix}-071",
                "selection_log_missing_key: arrival differs at position",
                dataset=ds,
                key=f"{path.name} row {k + 1}",
            )
        parts.append(
            rows.select("tz_group_id", "site_id").with_columns(
                pl.lit(day).alias("utc_day"), pl.int_range(pl.len()).alias("pos")
            )
        )
    if not parts:
        return pl.DataFrame(schema={"tz_group_id": pl.String, "site_id": pl.UInt64})
    sel = pl.concat(parts)
    out = wanted.select("utc_day", "pos").join(
        sel, on=["utc_day", "pos"], how="left", maintain_order="left"
    )
    return out.select("tz_group_id", "site_id")


# ---------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------


def _check_edge_stream(route: RouteRngPolicyV1) -> None:
    edge = route.streams.routing_edge
    fam = edge.event_families.get("cdn_edge_pick")
    if fam is None or fam.substream_label not in (None, LABEL) or fam.draws != "1":
        raise _err(
            f"{PREFIX}-053",
            "RNG_STREAM_MISCONFIGURED: routing_edge.event_families.cdn_edge_pick must exist with "
            "substream_label cdn_edge_pick, blocks 1, draws '1'",
            dataset="route_rng_policy_v1",
            key="streams.routing_edge.event_families.cdn_edge_pick",
        )


def run_s6(
    home: StorageHome,
    *,
    seed: int,
    manifest_fingerprint: str,
    parameter_hash: str,
    run_id: str,
    s5: StateOutcome | None = None,
) -> StateOutcome:
    """Pick an edge for every virtual arrival and publish S6's evidence (s6 §6).

    ``s5``: S5's outcome of the same run; its ``extras["routing"]`` supplies
    ``(tz_group_id, site_id)`` per arrival. Without it S6 re-reads S5's selection logs (only
    when the edge log is enabled). S5 must have completed first (shared trace file).

    This is S6 on its own: S5's trace is already published, so S6 appends its rows by the
    spec's staged copy of the whole file (s6 §7). The copy runs on its own thread while S6
    validates and renders. A step that runs S5 and S6 together uses :func:`prepare_s6`
    instead, and S5 publishes both parts of the trace with one write.
    """
    run_tokens = {"seed": str(seed), "parameter_hash": parameter_hash, "run_id": run_id}
    trace_path = home.path("rng_trace_log", run_tokens)
    copier = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s6-copy")
    ahead = copier.submit(rng_logs.copy_trace_ahead, trace_path)
    steps = _s6_steps(
        home,
        seed=seed,
        manifest_fingerprint=manifest_fingerprint,
        parameter_hash=parameter_hash,
        run_id=run_id,
        s5=s5,
    )
    try:
        tail, version = next(steps)
        trace = rng_logs.publish_trace_s6(
            home,
            trace_path,
            tail,
            input_version=version,
            # A failed copy only means the publish copies the trace itself.
            ahead=ahead.result() if ahead.exception() is None else None,
        )
        return _finish(steps, trace)
    finally:
        steps.close()
        copier.shutdown(wait=True, cancel_futures=True)
        copy = ahead.result() if ahead.done() and ahead.exception() is None else None
        if copy is not None:
            copy.discard()


@dataclass
class S6Pending:
    """S6 validated, picked and staged up to its publish (see :func:`prepare_s6`).

    ``tail``: S6's trace rows (bytes) and ``input_version`` S6's, for
    :func:`~segment2b.states.rng_logs.publish_trace_s5_s6`. :meth:`finish` publishes the rest
    with the trace's result; :meth:`abandon` drops the staged files.
    """

    tail: bytes
    input_version: str
    steps: Generator[tuple[bytes, str], PublishResult | None, StateOutcome]

    def finish(self, trace: PublishResult | None) -> StateOutcome:
        return _finish(self.steps, trace)

    def abandon(self) -> None:
        self.steps.close()


def prepare_s6(
    home: StorageHome,
    *,
    seed: int,
    manifest_fingerprint: str,
    parameter_hash: str,
    run_id: str,
    s5: StateOutcome | Callable[[], StateOutcome],
) -> S6Pending:
    """S6 up to its publish, from S5's in-memory routing, before S5 publishes its trace.

    For a step that runs S5 and S6 together: S5 then publishes its trace rows and S6's tail
    as one file (one write, no copy of S5's rows) and hands S6 the trace's result.
    Every S6 check runs here, so an S6 failure stops the step before anything is published.
    ``s5`` may be a callable that waits for S5's provisional outcome (S6's own entry checks
    run before it is called).
    """
    steps = _s6_steps(
        home,
        seed=seed,
        manifest_fingerprint=manifest_fingerprint,
        parameter_hash=parameter_hash,
        run_id=run_id,
        s5=s5,
    )
    tail, version = next(steps)
    return S6Pending(tail, version, steps)


def _finish(
    steps: Generator[tuple[bytes, str], PublishResult | None, StateOutcome],
    trace: PublishResult | None,
) -> StateOutcome:
    try:
        steps.send(trace)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("S6 steps asked for a second trace publish")


def _s6_steps(
    home: StorageHome, **kwargs: Any
) -> Generator[tuple[bytes, str], PublishResult | None, StateOutcome]:
    """:func:`_run_s6` on a worker pool of its own, shut down however the steps end."""
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="s6")
    try:
        return (yield from _run_s6(home, pool=pool, **kwargs))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_s6(
    home: StorageHome,
    *,
    seed: int,
    manifest_fingerprint: str,
    parameter_hash: str,
    run_id: str,
    s5: StateOutcome | Callable[[], StateOutcome] | None,
    pool: ThreadPoolExecutor,
) -> Generator[tuple[bytes, str], PublishResult | None, StateOutcome]:
    """S6 as steps: everything up to the trace publish, then (once the caller has published
    the trace and sent its result) the other publishes and the report.

    ``s5`` may be a callable that waits for S5's outcome: S6's own checks up to the edge
    catalogue run first, while S5 routes. Yields ``(trace tail, input version)`` once; the
    time the caller holds the steps there, like the wait for S5, is not S6's and is left out
    of S6's timings.
    """
    t_start = time.perf_counter()
    ev = open_run_evidence(
        home,
        seed=seed,
        manifest_fingerprint=manifest_fingerprint,
        parameter_hash=parameter_hash,
        run_id=run_id,
        prefix=PREFIX,
        codes=EVIDENCE_CODES,
        required=("route_rng_policy_v1", "virtual_edge_policy_v1", "s5_arrival_roster"),
    )
    created_utc = ev.created_utc
    run_tokens = {"seed": str(seed), "parameter_hash": parameter_hash, "run_id": run_id}

    route_loaded = ev.policy("route_rng_policy_v1")
    edge_loaded = ev.policy("virtual_edge_policy_v1")
    route, edge_policy = route_loaded.model, edge_loaded.model
    assert isinstance(route, RouteRngPolicyV1)
    assert isinstance(edge_policy, VirtualEdgePolicyV1)
    _check_edge_stream(route)
    edge_stream_cfg = route.streams.routing_edge
    try:
        stream = derive_routing_stream(
            EDGE_DOMAIN_MASTER,
            EDGE_DOMAIN_STREAM,
            edge_stream_cfg.rng_stream_id,
            seed=seed,
            parameter_hash=parameter_hash,
            run_id=run_id,
            counter_start=(
                edge_stream_cfg.basis.counter_start.hi,
                edge_stream_cfg.basis.counter_start.lo,
            ),
        )
    except ValueError as exc:
        raise _err(
            f"{PREFIX}-053", f"RNG_STREAM_MISCONFIGURED: {exc}", dataset="route_rng_policy_v1"
        ) from exc
    catalogue = build_edge_catalogue(edge_loaded.document, prefix=PREFIX)
    edge_log = bool((edge_policy.extensions or {}).get("edge_log_enabled", False)) and (
        "s6_edge_log" in home.catalogue.entries
    )

    waited = 0.0
    if callable(s5):
        t_wait = time.perf_counter()
        s5 = s5()
        waited = time.perf_counter() - t_wait
    s5_routing = s5.extras.get("routing") if s5 is not None else None
    if (
        isinstance(s5_routing, S5Routing)
        and s5 is not None
        and s5.extras.get("roster_sha256") == ev.rows["s5_arrival_roster"]["sha256_hex"]
    ):
        # S5 of this run parsed exactly the bytes it verified against this sealed row: S6
        # consumes that parse, so the file is neither read nor hashed a second time.
        roster = s5_routing.roster
        posture = dict(s5.report.get("roster") or roster_posture(roster))
    else:
        roster = parse_roster(ev.sealed_bytes("s5_arrival_roster", run_tokens), prefix=PREFIX)
        posture = roster_posture(roster)
    t_inputs = time.perf_counter()
    picks = pick_edges(roster, catalogue, stream, prefix=PREFIX)
    selection: pl.DataFrame | None = None
    selection_source = "disabled"
    if edge_log:
        if isinstance(s5_routing, S5Routing):
            selection = selection_from_routing(roster, s5_routing, picks.arrival, prefix=PREFIX)
            selection_source = "s5_outcome"
        else:
            selection = selection_from_logs(
                home,
                run_tokens,
                roster,
                picks.arrival,
                manifest_fingerprint=manifest_fingerprint,
                prefix=PREFIX,
            )
            selection_source = "s5_selection_log"
    t_route = time.perf_counter()

    tokens = RunTokens(seed, parameter_hash, manifest_fingerprint, run_id, created_utc)
    plans = s6_log_plans(
        roster,
        picks,
        catalogue,
        tokens,
        selection=selection,
        rng_stream_id=edge_stream_cfg.rng_stream_id,
    )
    v = picks.n
    for ds in (
        "rng_event_cdn_edge_pick",
        "rng_trace_log",
        "rng_audit_log",
        *(("s6_edge_log",) if edge_log else ()),
    ):
        toks = {**run_tokens, "utc_day": "0000-00-00"}
        rel = home.rel(ds, toks)
        if not rel.startswith("logs/"):
            raise _err(
                f"{PREFIX}-090", "PROHIBITED_WRITE: output outside logs/", dataset=ds, key=rel
            )
        for k in (*run_tokens, *(("utc_day",) if ds == "s6_edge_log" else ())):
            if f"{k}={toks[k]}" not in rel:
                raise _err(f"{PREFIX}-071", "PATH_EMBED_MISMATCH", dataset=ds, key=rel)
    ev_target = home.path("rng_event_cdn_edge_pick", run_tokens)
    edge_folder = home.path("s6_edge_log", {**run_tokens, "utc_day": "0000-00-00"}).parent.parent
    stage_root = home.tmp / f"s6_stage_{uuid.uuid4().hex}"
    # Events and edge log render on the workers (hashed while written) while the main thread
    # renders the trace tail; polars, hashlib and file writes release the GIL.
    try:
        events_job = pool.submit(
            rng_logs.write_jsonl, stage_root / "events" / ev_target.name, plans.events
        )
        edge_job = None
        if plans.edge is not None:
            ranges = {
                stage_root
                / "edge"
                / home.path("s6_edge_log", {**run_tokens, "utc_day": day}).relative_to(
                    edge_folder
                ): span
                for day, span in plans.edge_days.items()
            }
            edge_job = pool.submit(  # only the folder's H2 digest is published
                rng_logs.write_jsonl_folder,
                plans.edge,
                ranges,
                stage_root / "edge",
                file_digests=False,
            )
        trace_tail = rng_logs.plan_bytes(plans.trace)
        events_file = events_job.result()
        edge_files: list[rng_logs.WrittenFile] = []
        edge_digest: str | None = None
        if edge_job is not None:
            written = edge_job.result()
            edge_files = [written.files[p] for p in sorted(written.files)]
            edge_digest = written.sha256
        trace_rows = trace_tail.count(b"\n")
        edge_rows = sum(w.rows for w in edge_files)
        if events_file.rows != v or trace_rows != v or edge_rows != (v if edge_log else 0):
            raise _err(
                f"{PREFIX}-050",
                f"RNG_DRAWS_COUNT_MISMATCH: events/trace/edge rows != virtual arrivals {v}",
            )
        event_schema = home.catalogue.entry("rng_event_cdn_edge_pick").schema_ref
        declared = resolve_anchor(event_schema).get("properties", {})
        spot_check(
            [events_file.first, events_file.last],
            event_schema,
            f"{PREFIX}-050",
            "rng_event_cdn_edge_pick",
            # s6 §3.1: merchant_id is envelope-optional and always written; the layer pack's
            # cdn_edge_pick anchor omits it (contract gap reported upstream).
            envelope_optional=() if "merchant_id" in declared else ("merchant_id",),
        )
        # First and last row of the tail (ASCII JSON lines: the byte law escapes the rest).
        tail_ends = (
            [
                trace_tail[: trace_tail.index(b"\n") + 1].decode("ascii"),
                trace_tail[trace_tail.rfind(b"\n", 0, len(trace_tail) - 1) + 1 :].decode("ascii"),
            ]
            if trace_tail
            else []
        )
        spot_check(
            tail_ends,
            rng_logs.TRACE_SCHEMA,
            f"{PREFIX}-050",
            "rng_trace_log",
        )
        for w in (edge_files[:1] + edge_files[-1:]) if edge_files else []:
            spot_check(
                [w.first, w.last],
                home.catalogue.entry("s6_edge_log").schema_ref,
                f"{PREFIX}-071",
                "s6_edge_log",
            )
        t_lines = time.perf_counter()

        sel_digest = ""
        if selection is not None:
            h = hashlib.sha256(selection.get_column("site_id").to_numpy().tobytes())
            h.update("\n".join(selection.get_column("tz_group_id").to_list()).encode())
            sel_digest = h.hexdigest()
        ver = input_version(
            CODE_VERSION,
            roster=ev.rows["s5_arrival_roster"]["sha256_hex"],
            route_policy=route_loaded.sha256_hex,
            edge_policy=edge_loaded.sha256_hex,
            selection=sel_digest,
            created_utc=created_utc,
            tokens=tokens.path_tokens(),
        )
        if not v and ev_target.is_file() and ev_target.stat().st_size:
            raise _err(
                f"{PREFIX}-095",
                "REPLAY_MISMATCH: no virtual arrivals now, but a non-empty "
                "cdn_edge_pick event file exists",
                dataset="rng_event_cdn_edge_pick",
                key=str(ev_target),
            )

        t_yield = time.perf_counter()
        trace_result = yield trace_tail, ver
        paused = time.perf_counter() - t_yield
        jobs: list[Callable[[], PublishResult | None]] = []
        if v:
            jobs.append(
                partial(
                    rng_logs.publish_staged,
                    home,
                    ev_target.parent,
                    events_file.path.parent,
                    prefix=PREFIX,
                    state="s6_rng_event_cdn_edge_pick",
                    dataset_id="rng_event_cdn_edge_pick",
                    input_version=ver,
                    # A one-file folder: its H2 digest is the file's SHA-256.
                    digest=events_file.sha256,
                )
            )
        if edge_files:
            jobs.append(
                partial(
                    rng_logs.publish_staged,
                    home,
                    edge_folder,
                    stage_root / "edge",
                    prefix=PREFIX,
                    state="s6_edge_log",
                    dataset_id="s6_edge_log",
                    input_version=ver,
                    digest=edge_digest,
                )
            )
        results = [trace_result, *pool.map(lambda job: job(), jobs)]
        published: list[PublishResult] = [r for r in results if r is not None]
        published.append(
            rng_logs.ensure_audit_row(
                home.path("rng_audit_log", run_tokens), rng_logs.audit_row(tokens), prefix=PREFIX
            )
        )
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)
    t_end = time.perf_counter() - paused  # the caller's time at the yield is not S6's

    elapsed = t_end - t_start - waited  # nor is the wait for S5's outcome
    d = picks.draws
    first = {"hi": stream.counter_hi, "lo": stream.counter_lo}
    last = {"hi": int(d.before_hi[-1]), "lo": int(d.before_lo[-1])} if v else first
    head = roster.frame[picks.arrival[:20]]
    samples = []
    for j, row in enumerate(head.iter_rows(named=True)):
        e = int(picks.edge[j])
        item = {
            "merchant_id": row["merchant_id"],
            "utc_day": row["utc_day"],
            "edge_id": catalogue.edge_id[e],
            "ip_country": catalogue.ip_country[e],
        }
        if selection is not None:
            item["site_id"] = int(selection.get_column("site_id")[j])
        samples.append(item)
    warnings = (
        []
        if roster.is_virtual_present or roster.n == 0
        else ["is_virtual is absent from every roster row: missing => false, all bypassed"]
    )
    validators = [
        {"id": vid, "status": "WARN" if (vid == "V-05" and warnings) else "PASS", "codes": []}
        for vid in VALIDATOR_IDS
    ]
    report: dict[str, Any] = {
        "component": "2B.S6",
        "manifest_fingerprint": manifest_fingerprint,
        "seed": seed,
        "parameter_hash": parameter_hash,
        "run_id": run_id,
        "created_utc": created_utc,
        "catalogue_resolution": {
            "dictionary_version": home.catalogue.dictionary_version,
            "registry_version": home.catalogue.registry_version,
        },
        "policy": {
            "id": "route_rng_policy_v1",
            "version_tag": route.policy_version or route.version_tag,
            "sha256_hex": route_loaded.sha256_hex,
            "rng_engine": route.rng_engine,
            "rng_stream_id": edge_stream_cfg.rng_stream_id,
            "draws_per_virtual": edge_stream_cfg.draws_per_unit.draws_per_virtual,
        },
        "policy_edge": {
            "id": "virtual_edge_policy_v1",
            "version_tag": edge_policy.policy_version or edge_policy.version_tag,
            "sha256_hex": edge_loaded.sha256_hex,
            "edges_declared": catalogue.edges_declared,
        },
        "inputs_summary": {},
        "rng_accounting": {
            "events_edge": v,
            "events_total": v,
            "draws_total": v,
            "first_counter": first,
            "last_counter": last,
        },
        "counts": {
            "arrivals_total": roster.n,
            "virtual_arrivals": v,
            "non_virtual_bypassed": roster.n - v,
        },
        "logging": {
            "edge_log_enabled": edge_log,
            "selection_source": selection_source,
            **({"edge_log_partition": "[seed,parameter_hash,run_id,utc_day]"} if edge_log else {}),
        },
        "validators": validators,
        "warnings": warnings,
        "samples": {"selections": samples},
        "summary": {
            "overall_status": "PASS",
            "warn_count": sum(1 for x in validators if x["status"] == "WARN"),
            "fail_count": 0,
        },
        "environment": environment_block(),
        "roster": posture,
        "publish": {
            "targets": [
                {
                    "path": p.path.relative_to(home.root).as_posix(),
                    "bytes": p.bytes,
                    "outcome": p.outcome,
                }
                for p in published
            ],
        },
        "performance": {
            "arrivals": roster.n,
            "elapsed_s": round(elapsed, 4),
            "arrivals_per_second": round(roster.n / elapsed, 1) if elapsed > 0 else None,
            "durations_ms": {
                "gate_policies_roster": int((t_inputs - t_start - waited) * 1000),
                "pick_and_join": int((t_route - t_inputs) * 1000),
                "serialise": int((t_lines - t_route) * 1000),
                "publish": int((t_end - t_lines) * 1000),
            },
        },
    }
    write_report(report_path(home, "S6", seed, manifest_fingerprint), report)
    frame = pl.DataFrame(
        {
            "arrival": picks.arrival.astype(np.int64),
            "merchant_id": roster.frame.get_column("merchant_id")[picks.arrival],
            "edge_id": pl.Series(catalogue.edge_id, dtype=pl.String).gather(
                pl.Series(picks.edge.astype(np.uint32))
            )
            if v
            else pl.Series([], dtype=pl.String),
            "ctr_edge_hi": pl.Series(d.before_hi, dtype=pl.UInt64),
            "ctr_edge_lo": pl.Series(d.before_lo, dtype=pl.UInt64),
        }
    )
    return StateOutcome(
        frame=frame,
        report=report,
        published=tuple(published),
        extras={"picks": picks, "catalogue": catalogue},
    )
