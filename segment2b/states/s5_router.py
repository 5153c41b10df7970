"""2B.S5 — router core: for every arrival pick a tz-group, then a site inside it (s5-router.md).

Grain: one routing decision per roster arrival (roster order = arrival order); two
single-uniform Philox draws each from the ``routing_selection`` stream keyed by
``(seed, parameter_hash, run_id)``: arrival ``i`` uses ``ctr0 + 2i`` (group) and ``ctr0 + 2i + 1``
(site). Outputs are run-scoped RNG evidence only (two event families, the shared trace, the
audit row) plus the per-day selection log; no plan table is written.

Layout: a pure, vectorised core (:func:`parse_roster`, :func:`build_routing_plan`,
:func:`route_arrivals`, :func:`s5_log_plans`) and a thin I/O runner (:func:`run_s5`). Alias
tables for every needed merchant-day (Stage A) and every (merchant, tz-group) site slice
(Stage B) are built once; all uniforms come from one Philox call; decoding is array indexing.
The runner overlaps input reads, routing and log rendering on two workers and hashes every
file from the buffers it writes (no file is read back); outputs are byte-identical to a
serial run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
import pyarrow as pa

# polars imports pyarrow.compute (~60 ms) on its first Arrow -> Series conversion (the
# roster's string columns): load it with the module, not in the middle of a route.
import pyarrow.compute

from segment2b.catalogue.schemas import json_errors
from segment2b.core.alias_table import AliasBuildError, AliasTables, build_alias_tables
from segment2b.core.philox import PhiloxStream
from segment2b.core.routing_rng import (
    ROUTING_DOMAIN_MASTER,
    ROUTING_DOMAIN_STREAM,
    derive_routing_stream,
    routing_uniforms,
    site_ids,
)
from segment2b.errors import SegmentError
from segment2b.policy.models import AliasLayoutPolicyV1, RouteRngPolicyV1
from segment2b.states import rng_logs
from segment2b.states.evidence import EvidenceCodes, S0Evidence, load_evidence
from segment2b.states.outcome import StateOutcome, input_version
from segment2b.states.rng_logs import Col, Const, CounterLaw, RunTokens
from segment2b.states.s0_gate import read_run_receipt
from segment2b.storage import roster_scan
from segment2b.storage.digests import folder_digest, sha256_file
from segment2b.storage.home import StorageHome
from segment2b.storage.publish import PublishResult
from segment2b.storage.reports import write_report
from segment2b.storage.tables import read_partition

__all__ = [
    "CODE_VERSION",
    "MODULE",
    "GroupPlan",
    "Roster",
    "RoutingPlan",
    "S5Routing",
    "SitePlan",
    "build_routing_plan",
    "check_counters",
    "day_ranges",
    "parse_roster",
    "roster_posture",
    "route_arrivals",
    "run_s5",
    "s5_group_plan",
    "s5_log_plans",
    "s5_selection_plan",
    "s5_site_plan",
    "s5_trace_plan",
]

PREFIX = "2B-S5"
CODE_VERSION = "s5-router-1"
MODULE = "2B.S5.router"
GROUP_LABEL = "alias_pick_group"
SITE_LABEL = "alias_pick_site"
SUM_TOLERANCE = 1e-9
VALIDATOR_IDS: tuple[str, ...] = tuple(f"V-{i:02d}" for i in range(1, 17))
EVIDENCE_CODES = EvidenceCodes(
    receipt_missing="001",
    inventory_invalid="020",
    not_sealed="020",
    path_mismatch="070",
    digest_mismatch="020",
    created_missing="086",
    policy_schema="053",
)
ROSTER_FIELDS: tuple[str, ...] = (
    "merchant_id",
    "utc_timestamp",
    "utc_day",
    "is_virtual",
    "channel",
    "mcc",
)
ROSTER_REQUIRED: tuple[str, ...] = ("merchant_id", "utc_timestamp", "utc_day")
ROSTER_SCHEMA = "schemas.2B.yaml#/trace/s5_arrival_roster_row"
CHANNELS: tuple[str, ...] = ("card_present", "card_not_present")
_TS_RE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"
_CANONICAL_SCHEMA = {
    "channel": pl.String,
    "is_virtual": pl.Boolean,
    "mcc": pl.Int64,
    "merchant_id": pl.UInt64,
    "utc_day": pl.String,
    "utc_timestamp": pl.String,
}
_DATE_RE = r"^\d{4}-\d{2}-\d{2}$"
_ISO2_RE = r"^[A-Z]{2}$"
_TZID_RE = r"^[A-Za-z0-9._+-]+(?:/[A-Za-z0-9._+-]+)*$"
_U64_MAX = 2**64 - 1
_EPOCH = np.datetime64("1970-01-01", "D")


def _err(
    code: str, message: str, *, dataset: str | None = None, key: str | None = None, **ctx: Any
) -> SegmentError:
    return SegmentError(code, message, dataset=dataset, key=key, context=ctx)


# ---------------------------------------------------------------------------------------------
# Roster (shared with S6)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Roster:
    """Validated arrivals in file order.

    ``frame`` columns: ``merchant_id`` UInt64, ``utc_timestamp`` and ``utc_day`` String
    (verbatim), ``day`` Date, ``is_virtual`` Boolean (missing -> false), plus ``channel``/``mcc``
    when the file carries them (README decision 10).
    """

    frame: pl.DataFrame
    is_virtual_present: bool

    @property
    def n(self) -> int:
        return self.frame.height


def _roster_row_problem(obj: Any) -> str | None:
    """First schema problem of one parsed roster row (the slow, exact path)."""
    if not isinstance(obj, dict):
        return "row is not a JSON object"
    extra = sorted(set(obj) - set(ROSTER_FIELDS))
    if extra:
        return f"unexpected field(s) {extra}"
    mid = obj.get("merchant_id")
    if "merchant_id" in obj and type(mid) is not int:
        return f"merchant_id {mid!r} is not a JSON integer"
    if "mcc" in obj and type(obj["mcc"]) is not int:
        return f"mcc {obj['mcc']!r} is not a JSON integer"
    errors = json_errors(ROSTER_SCHEMA, obj, limit=1)
    if errors:
        return errors[0]
    ts, day = obj["utc_timestamp"], obj["utc_day"]
    try:
        np.datetime64(day, "D")
    except ValueError:
        return f"utc_day {day!r} is not a calendar date"
    if ts[:10] != day:
        return f"utc_day {day} is not the UTC date of utc_timestamp {ts}"
    return None


def _roster_error(data: bytes, prefix: str, hint: str, *, only_null_lines: bool = False) -> None:
    """Locate the first invalid roster line exactly and raise ``<prefix>-020`` for it."""
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip() or (only_null_lines and b"null" not in raw):
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            problem: str | None = f"not JSON ({exc})"
        else:
            problem = _roster_row_problem(obj)
        if problem:
            raise _err(
                f"{prefix}-020",
                f"roster row invalid: {problem}",
                dataset="s5_arrival_roster",
                key=f"line {number}",
                line=number,
            )
    if only_null_lines:
        return
    raise _err(f"{prefix}-020", f"roster invalid: {hint}", dataset="s5_arrival_roster")


def parse_roster(data: bytes, *, prefix: str = PREFIX, lines: int | None = None) -> Roster:
    """Parse and validate the arrival roster (s5 §11, README decisions 9-10), vectorised.

    Every non-blank line must be an object with only the roster fields; ``merchant_id`` an exact
    JSON integer in ``[1, 2**64 - 1]`` (never a float: ``1.0`` and ``1e3`` are rejected);
    ``utc_timestamp`` rfc3339_micros; ``utc_day`` a calendar date equal to the timestamp's UTC
    date; optional ``is_virtual`` boolean, ``channel`` enum, ``mcc`` integer 1000..9999. Any
    failure is ``<prefix>-020`` naming the 1-based line. ``lines``: ``data``'s line count
    (:func:`~segment2b.storage.roster_scan.line_count`) when the caller has it.
    """
    empty = pl.DataFrame(
        schema={
            "merchant_id": pl.UInt64,
            "utc_timestamp": pl.String,
            "utc_day": pl.String,
            "day": pl.Date,
            "is_virtual": pl.Boolean,
        }
    )
    if not data or data.isspace():  # (no stripped copy of a large roster)
        return Roster(empty, False)
    canonical = _parse_canonical(data, lines=lines)
    if canonical is not None:
        return _finish_roster(canonical, data, prefix)
    try:
        df = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
    except (pl.exceptions.PolarsError, ValueError) as exc:
        _roster_error(data, prefix, f"unreadable NDJSON ({exc})")
        raise  # pragma: no cover - _roster_error always raises here
    cols = set(df.columns)
    if cols - set(ROSTER_FIELDS) or set(ROSTER_REQUIRED) - cols:
        _roster_error(data, prefix, f"fields {sorted(cols)}")
    schema = df.schema
    problems: list[str] = []
    if not schema["merchant_id"].is_integer():
        problems.append(f"merchant_id dtype {schema['merchant_id']}")
    for name in ("utc_timestamp", "utc_day", "channel"):
        if name in cols and schema[name] != pl.String:
            problems.append(f"{name} dtype {schema[name]}")
    if "is_virtual" in cols and schema["is_virtual"] != pl.Boolean:
        problems.append(f"is_virtual dtype {schema['is_virtual']}")
    if "mcc" in cols and not schema["mcc"].is_integer():
        problems.append(f"mcc dtype {schema['mcc']}")
    if problems:
        _roster_error(data, prefix, "; ".join(problems))
    nulls = df.null_count().row(0, named=True)
    if any(nulls[c] for c in ROSTER_REQUIRED):
        _roster_error(data, prefix, "required field missing or null")
    if any(nulls.get(c, 0) for c in ("is_virtual", "channel", "mcc")) and b"null" in data:
        # Missing optional keys read as null; an explicit JSON null is a schema violation.
        _roster_error(data, prefix, "explicit null", only_null_lines=True)
    mid = df.get_column("merchant_id")
    checks = [
        (mid.min() < 1 or mid.max() > _U64_MAX, "merchant_id outside [1, 2**64 - 1]"),  # type: ignore[operator]
        (not df.get_column("utc_timestamp").str.contains(_TS_RE).all(), "utc_timestamp format"),
        (not df.get_column("utc_day").str.contains(_DATE_RE).all(), "utc_day format"),
    ]
    for bad, hint in checks:
        if bad:
            _roster_error(data, prefix, hint)
    return _finish_roster(df.with_columns(pl.col("merchant_id").cast(pl.UInt64)), data, prefix)


# The optional keys of a canonical roster line's prefix (everything before the merchant id).
_OPTIONAL: tuple[str, ...] = ("channel", "is_virtual", "mcc")


def _prefix_fields(prefix: str) -> dict[str, Any] | None:
    """The optional fields of one distinct canonical line prefix (``{`` + ``"key": value, ``
    for each present optional key, sorted), or None unless it is exactly canonical and in
    domain: channel in the enum, is_virtual a boolean, mcc an integer in 1000..9999."""
    try:
        obj = json.loads(prefix + '"merchant_id": 1}')
    except ValueError:
        return None
    if (
        not isinstance(obj, dict)
        or len(obj) < 1
        or not set(obj) - {"merchant_id"} <= set(_OPTIONAL)
    ):
        return None
    obj.pop("merchant_id")
    canonical = "{" + "".join(f"{json.dumps(k)}: {json.dumps(v)}, " for k, v in sorted(obj.items()))
    if prefix != canonical:
        return None
    if "channel" in obj and obj["channel"] not in CHANNELS:
        return None
    if "is_virtual" in obj and type(obj["is_virtual"]) is not bool:
        return None
    if "mcc" in obj and (type(obj["mcc"]) is not int or not 1000 <= obj["mcc"] <= 9999):
        return None
    return obj


def _fixed_width_strings(name: str, data: np.ndarray, width: int) -> pl.Series:
    """A String series of values packed back to back, ``width`` bytes each (ASCII)."""
    rows = data.size // width
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int64)
    arr = pa.Array.from_buffers(
        pa.large_string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    return pl.Series(name, arr, dtype=pl.String)


def _parse_canonical(data: bytes, *, lines: int | None = None) -> pl.DataFrame | None:
    """Fast path for rosters written as ``json.dumps(row, sort_keys=True)`` lines.

    :func:`segment2b.storage.roster_scan.scan` checks every line's shape in one compiled pass
    (prefix, exact merchant-id decimal in ``[1, 2**64 - 1]``, ASCII day and timestamp
    patterns, no blank lines); the distinct prefixes (optional channel / is_virtual / mcc, a
    few hundred) are decoded with ``json`` and must hold only those keys, in domain. A line of
    that shape *is* the canonical JSON of the extracted values (only roster keys, exact
    integers, nothing coerced). Anything else returns None and the general NDJSON path
    decides, so valid JSON is never rejected here.

    The frame equals the schema-driven NDJSON parse (``_CANONICAL_SCHEMA`` column order and
    dtypes, optional columns absent from every row dropped). Its strings own their bytes (no
    view into the roster, which would keep ~180 bytes per arrival alive).
    """
    found = roster_scan.scan(data, lines=lines)
    if found is None:
        return None
    decoded: list[dict[str, Any]] = []
    for start, length in found.prefix_spans.tolist():
        try:
            fields = _prefix_fields(data[start : start + length].decode("utf-8"))
        except UnicodeDecodeError:
            return None
        if fields is None:
            return None
        decoded.append(fields)
    table = pl.DataFrame(
        {c: [d.get(c) for d in decoded] for c in _OPTIONAL},
        schema={c: _CANONICAL_SCHEMA[c] for c in _OPTIONAL},
    )
    ids = pl.Series("ids", found.prefix_ids)
    frame = pl.DataFrame(
        [
            *table.select(pl.all().gather(ids)).get_columns(),
            pl.Series("merchant_id", found.merchant_ids, dtype=pl.UInt64),
            _fixed_width_strings("utc_day", found.days, roster_scan.DAY_BYTES),
            _fixed_width_strings("utc_timestamp", found.timestamps, roster_scan.TIMESTAMP_BYTES),
        ]
    )
    return frame.drop([c for c in _OPTIONAL if table.get_column(c).null_count() == table.height])


def _finish_roster(df: pl.DataFrame, data: bytes, prefix: str) -> Roster:
    """Checks shared by both parse paths: calendar day, day == date(timestamp), enums."""
    cols = set(df.columns)
    out = df.with_columns(
        pl.col("utc_day").str.to_date("%Y-%m-%d", strict=False).alias("day"),
    )
    if out.get_column("day").null_count():
        _roster_error(data, prefix, "utc_day is not a calendar date")
    if not (out.get_column("utc_timestamp").str.slice(0, 10) == out.get_column("utc_day")).all():
        _roster_error(data, prefix, "utc_day differs from the date of utc_timestamp")
    if "channel" in cols and not out.get_column("channel").drop_nulls().is_in(CHANNELS).all():
        _roster_error(data, prefix, "channel not in the enum")
    if "mcc" in cols:
        mcc = out.get_column("mcc").drop_nulls()
        if mcc.len() and (mcc.min() < 1000 or mcc.max() > 9999):  # type: ignore[operator]
            _roster_error(data, prefix, "mcc outside 1000..9999")
    present = "is_virtual" in cols
    if present:
        out = out.with_columns(pl.col("is_virtual").fill_null(False))
    else:
        out = out.with_columns(pl.lit(False).alias("is_virtual"))
    keep = ["merchant_id", "utc_timestamp", "utc_day", "day", "is_virtual"]
    keep += [c for c in ("channel", "mcc") if c in cols]
    return Roster(out.select(keep), present)


def roster_posture(roster: Roster) -> dict[str, Any]:
    """Realism posture of the roster (s5 §11 item 5; README decisions 10-11), report-only."""
    f = roster.frame
    n = f.height
    virtual = int(f.get_column("is_virtual").sum()) if n else 0
    out: dict[str, Any] = {
        "arrivals": n,
        "virtual": virtual,
        "physical": n - virtual,
        "virtual_share": (virtual / n) if n else 0.0,
        "is_virtual_field_present": roster.is_virtual_present,
    }
    if n == 0:
        return {**out, "ready_for_realism_grading": False}
    days = f.get_column("day")
    span = int((days.max() - days.min()).days) + 1  # type: ignore[operator]
    per_md = f.group_by("merchant_id", "day").len()
    counts = per_md.get_column("len")
    ge2 = int((counts >= 2).sum())
    merchants = int(f.get_column("merchant_id").n_unique())
    merchants_ge2 = int(per_md.filter(pl.col("len") >= 2).get_column("merchant_id").n_unique())
    dup = n - f.select(pl.struct("merchant_id", "utc_timestamp").n_unique()).item()
    out.update(
        {
            "day_min": str(days.min()),
            "day_max": str(days.max()),
            "day_count": int(days.n_unique()),
            "horizon_span_days": span,
            "merchants_active": merchants,
            "merchant_days": per_md.height,
            "merchant_days_repeat_ge2": ge2,
            "merchant_days_repeat_ge2_share": ge2 / per_md.height,
            "merchants_with_repeat_day": merchants_ge2,
            "median_arrivals_per_merchant_day": float(counts.median()),  # type: ignore[arg-type]
            "duplicate_merchant_timestamp_keys": int(dup),
            "sorted_by_utc_timestamp": bool(f.get_column("utc_timestamp").is_sorted()),
            "horizon_ge_28_days": span >= 28,
            "repeated_arrivals_present": ge2 > 0,
        }
    )
    observable = "channel" in f.columns and "mcc" in f.columns
    out["class_channel_observable"] = observable
    if "channel" in f.columns:
        ch = f.get_column("channel").value_counts(sort=True)
        out["channel_counts"] = {str(k): int(v) for k, v in ch.iter_rows()}
    if observable:
        cells = f.drop_nulls(["channel", "mcc"]).select("channel", "mcc").unique()
        out["mcc_distinct"] = int(f.get_column("mcc").n_unique())
        out["channel_mcc_cells"] = cells.height
    out["ready_for_realism_grading"] = bool(span >= 28 and ge2 > 0 and observable)
    return out


# ---------------------------------------------------------------------------------------------
# Routing plan (pure)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SitePlan:
    """Stage-B alias tables, one per (merchant, tz-group) slice of the S1 x site_timezones join.

    Per table: ``merchant_id`` and ``tz_code``; per flat entry: ``site_id`` and ``site_tz``.
    """

    merchant_id: np.ndarray
    tz_code: np.ndarray
    site_id: np.ndarray
    site_tz: np.ndarray
    tables: AliasTables


@dataclass(frozen=True)
class GroupPlan:
    """Stage-A alias tables, one per roster merchant-day, over S4 rows sorted by PK.

    Per table: ``merchant_id``, ``day`` (days since epoch); per flat entry (S4 row): ``tz_code``,
    ``p_group`` (echoed into events) and ``site_table`` (Stage-B table of (m, group), -1 if the
    merchant has no site in that group).
    """

    merchant_id: np.ndarray
    day: np.ndarray
    tz_code: np.ndarray
    p_group: np.ndarray
    site_table: np.ndarray
    tables: AliasTables


@dataclass(frozen=True)
class RoutingPlan:
    """Everything S5 samples from; ``tz_names[c]`` is the tzid of code ``c``."""

    tz_names: tuple[str, ...]
    groups: GroupPlan
    sites: SitePlan


def _csr_starts(*keys: np.ndarray) -> np.ndarray:
    """Offsets of runs of equal consecutive keys (inputs already sorted by those keys)."""
    n = keys[0].size
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    change = np.zeros(n - 1, dtype=bool)
    for k in keys:
        change |= k[1:] != k[:-1]
    return np.concatenate(([0], np.flatnonzero(change) + 1, [n])).astype(np.int64)


def build_routing_plan(
    s1: pl.DataFrame,
    site_timezones: pl.DataFrame,
    s4: pl.DataFrame,
    merchant_days: pl.DataFrame,
    *,
    prefix: str = PREFIX,
) -> RoutingPlan:
    """Build Stage-A and Stage-B alias tables for the given merchant-days (s5 §6 step 4).

    Parameters
    ----------
    s1, site_timezones, s4 : polars.DataFrame
        Validated upstream tables (S1 PK order is the join order of every site slice). S1 may
        carry its rows' ``site_id`` already (:func:`with_site_ids`); otherwise it is derived.
    merchant_days : polars.DataFrame
        Distinct ``(merchant_id, day)`` pairs of the roster; tables are built only for these.

    Raises
    ------
    SegmentError
        ``041`` an S1 site without a tzid; ``060`` one (merchant, site_id) with two tzids;
        ``040`` a merchant-day whose S4 ``p_group`` do not sum to 1 within 1e-9 (serial sum).
    """
    merchants = merchant_days.select("merchant_id").unique()
    sites = s1.join(merchants, on="merchant_id", how="semi", maintain_order="left")
    given = ["site_id"] if "site_id" in s1.columns else []
    joined = sites.select(
        "merchant_id", "legal_country_iso", "site_order", "p_weight", *given
    ).join(
        site_timezones.select("merchant_id", "legal_country_iso", "site_order", "tzid"),
        on=["merchant_id", "legal_country_iso", "site_order"],
        how="left",
        maintain_order="left",
    )
    missing = joined.filter(pl.col("tzid").is_null())
    if missing.height:
        row = missing.row(0, named=True)
        raise _err(
            f"{prefix}-041",
            "S1 site has no tzid in site_timezones",
            dataset="site_timezones",
            key=f"{row['merchant_id']}:{row['legal_country_iso']}:{row['site_order']}",
        )
    if not given:
        joined = with_site_ids(joined)
    clash = joined.group_by("merchant_id", "site_id").agg(pl.col("tzid").n_unique().alias("k"))
    clash = clash.filter(pl.col("k") > 1)
    if clash.height:
        row = clash.row(0, named=True)
        raise _err(
            f"{prefix}-060",
            "one site_id maps to two tzids",
            dataset="site_timezones",
            key=f"{row['merchant_id']}:{row['site_id']}",
        )
    groups = (
        s4.select("merchant_id", "utc_day", "tz_group_id", "p_group")
        .join(
            merchant_days.rename({"day": "utc_day"}),
            on=["merchant_id", "utc_day"],
            how="semi",
        )
        .sort("merchant_id", "utc_day", "tz_group_id", maintain_order=True)
    )
    tz_names = tuple(
        pl.concat([groups.get_column("tz_group_id"), joined.get_column("tzid")])
        .unique()
        .sort()
        .to_list()
    )
    tz_index = pl.Series(range(len(tz_names)), dtype=pl.Int32)
    names = pl.Series(tz_names, dtype=pl.String)
    joined = joined.with_columns(
        pl.col("tzid").replace_strict(names, tz_index, return_dtype=pl.Int32).alias("tz")
    )
    groups = groups.with_columns(
        pl.col("tz_group_id").replace_strict(names, tz_index, return_dtype=pl.Int32).alias("tz")
    )

    # Stage B: contiguous (merchant, tz) slices, each in S1 join order.
    slices = joined.with_row_index("ord").sort("merchant_id", "tz", "ord")
    s_m = slices.get_column("merchant_id").to_numpy()
    s_tz = slices.get_column("tz").to_numpy()
    s_off = _csr_starts(s_m, s_tz)
    try:
        site_tables = build_alias_tables(slices.get_column("p_weight").to_numpy(), s_off)
    except AliasBuildError as exc:
        start = int(s_off[exc.table])
        raise _err(
            f"{prefix}-041",
            f"site slice cannot form an alias table: {exc.reason}",
            dataset="s1_site_weights",
            key=f"{s_m[start]}:{s_tz.tolist()[start]}",
        ) from exc
    site_plan = SitePlan(
        merchant_id=s_m[s_off[:-1]],
        tz_code=s_tz[s_off[:-1]],
        site_id=slices.get_column("site_id").to_numpy(),
        site_tz=s_tz,
        tables=site_tables,
    )
    site_keys = pl.DataFrame(
        {
            "merchant_id": pl.Series(site_plan.merchant_id, dtype=pl.UInt64),
            "tz": pl.Series(site_plan.tz_code, dtype=pl.Int32),
            "site_table": np.arange(site_plan.merchant_id.size, dtype=np.int64),
        }
    )
    groups = groups.join(site_keys, on=["merchant_id", "tz"], how="left", maintain_order="left")

    # Stage A: one table per merchant-day, groups in (merchant, day, tz_group_id) order.
    g_m = groups.get_column("merchant_id").to_numpy()
    g_d = groups.get_column("utc_day").to_physical().to_numpy()
    g_off = _csr_starts(g_m, g_d)
    g_p = groups.get_column("p_group").to_numpy()
    try:
        group_tables = build_alias_tables(g_p, g_off)
    except AliasBuildError as exc:
        start = int(g_off[exc.table])
        raise _err(
            f"{prefix}-040",
            f"group mix cannot form an alias table: {exc.reason}",
            dataset="s4_group_weights",
            key=f"{g_m[start]}:{_EPOCH + int(g_d[start])}",
        ) from exc
    off_sum = np.abs(group_tables.totals - 1.0) > SUM_TOLERANCE
    if off_sum.any():
        t = int(np.flatnonzero(off_sum)[0])
        start = int(g_off[t])
        raise _err(
            f"{prefix}-040",
            f"GROUP_PROBABILITY_MISMATCH: sum(p_group) = {group_tables.totals[t]!r}",
            dataset="s4_group_weights",
            key=f"{g_m[start]}:{_EPOCH + int(g_d[start])}",
        )
    group_plan = GroupPlan(
        merchant_id=g_m[g_off[:-1]],
        day=g_d[g_off[:-1]],
        tz_code=groups.get_column("tz").to_numpy(),
        p_group=g_p,
        site_table=groups.get_column("site_table").fill_null(-1).to_numpy(),
        tables=group_tables,
    )
    return RoutingPlan(tz_names=tz_names, groups=group_plan, sites=site_plan)


# ---------------------------------------------------------------------------------------------
# Routing (pure)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S5Routing:
    """Per-arrival routing, in roster order (what S6 joins by position, README decision 9).

    ``counters`` is the law of the 2N events in event order (group of arrival i is event 2i,
    site event 2i+1; event k uses counter ``ctr0 + k``): counters follow from positions, so
    none is stored per arrival (:meth:`counter_arrays` materialises them when asked).
    """

    roster: Roster
    tz_names: tuple[str, ...]
    tz_code: np.ndarray
    p_group: np.ndarray
    site_id: np.ndarray
    counters: CounterLaw

    @property
    def n(self) -> int:
        return self.roster.n

    def family_counters(self, family: int) -> CounterLaw:
        """Counter law of one family's rows (0 = group events, 1 = site events): arrival
        ``i`` is event ``2i + family``."""
        c = self.counters
        return CounterLaw(c.hi, c.lo, step=2, offset=family)

    def counter_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(before_hi, before_lo, after_hi, after_lo)`` of all 2N events, in event order."""
        return self.counters.arrays(0, 2 * self.n)

    def tz_group_ids(self) -> pl.Series:
        """Chosen tz-group id per arrival (String)."""
        names = pl.Series(self.tz_names, dtype=pl.String)
        return names.gather(pl.Series(self.tz_code.astype(np.uint32))).alias("tz_group_id")

    def to_frame(self) -> pl.DataFrame:
        """One row per arrival: identity, choice and the group/site before-counters."""
        f = self.roster.frame
        g_hi, g_lo = self.family_counters(0).before(0, self.n)
        s_hi, s_lo = self.family_counters(1).before(0, self.n)
        return pl.DataFrame(
            {
                "arrival": np.arange(self.n, dtype=np.int64),
                "merchant_id": f.get_column("merchant_id"),
                "utc_timestamp": f.get_column("utc_timestamp"),
                "utc_day": f.get_column("utc_day"),
                "is_virtual": f.get_column("is_virtual"),
                "tz_group_id": self.tz_group_ids(),
                "p_group": self.p_group,
                "site_id": pl.Series(self.site_id, dtype=pl.UInt64),
                "ctr_group_hi": pl.Series(g_hi, dtype=pl.UInt64),
                "ctr_group_lo": pl.Series(g_lo, dtype=pl.UInt64),
                "ctr_site_hi": pl.Series(s_hi, dtype=pl.UInt64),
                "ctr_site_lo": pl.Series(s_lo, dtype=pl.UInt64),
            }
        )


def check_counters(
    before_hi: np.ndarray, before_lo: np.ndarray, after_hi: np.ndarray, after_lo: np.ndarray
) -> int | None:
    """Index of the first event violating ``after = before + 1`` or the chain
    ``before[k+1] = after[k]`` (so counters strictly increase), else None."""
    one = np.uint64(1)
    carry = before_lo == np.uint64(_U64_MAX)
    inc = np.where(
        carry,
        (after_lo == 0) & (after_hi == before_hi + one),
        (after_lo == before_lo + one) & (after_hi == before_hi),
    )
    bad = ~inc
    if before_lo.size > 1:
        chain = (before_lo[1:] == after_lo[:-1]) & (before_hi[1:] == after_hi[:-1])
        bad[1:] |= ~chain
    idx = np.flatnonzero(bad)
    return int(idx[0]) if idx.size else None


def route_arrivals(
    roster: Roster, plan: RoutingPlan, stream: PhiloxStream, *, prefix: str = PREFIX
) -> S5Routing:
    """Stage A then Stage B for every arrival, vectorised (s5 §6 step 6).

    Raises
    ------
    SegmentError
        ``040`` arrival whose merchant-day has no S4 mix; ``041`` chosen group without sites;
        ``060`` chosen site outside the chosen group; ``052`` counter wrap. (``051``,
        non-monotone counters, cannot arise: event ``k`` uses ``ctr0 + k``.)
    """
    n = roster.n
    f = roster.frame
    try:
        # Event k uses ctr0 + k, so counters are a law (strictly increasing by construction:
        # 2B-S5-051 cannot arise) and only the uniforms are kept.
        u = routing_uniforms(stream, 2 * n)
    except OverflowError as exc:
        raise _err(f"{prefix}-052", f"RNG_COUNTER_WRAP: {exc}", dataset="rng_trace_log") from exc
    g = plan.groups
    keys = pl.DataFrame(
        {
            "merchant_id": pl.Series(g.merchant_id, dtype=pl.UInt64),
            "day": pl.Series(g.day.astype(np.int32), dtype=pl.Int32).cast(pl.Date),
            "table": np.arange(g.merchant_id.size, dtype=np.int64),
        }
    )
    tab = (
        f.select("merchant_id", "day")
        .join(keys, on=["merchant_id", "day"], how="left", maintain_order="left")
        .get_column("table")
    )
    if tab.null_count():
        i = int(tab.is_null().arg_true()[0])
        row = f.row(i, named=True)
        raise _err(
            f"{prefix}-040",
            "group_weights_missing: no S4 mix for the arrival's merchant-day",
            dataset="s4_group_weights",
            key=f"arrival {i}: merchant {row['merchant_id']} day {row['utc_day']}",
        )
    gtab = tab.to_numpy()
    g_local = g.tables.decode(gtab, u[0::2])
    g_row = g.tables.offsets[gtab] + g_local
    stab = g.site_table[g_row]
    if n and int(stab.min()) < 0:
        i = int(np.flatnonzero(stab < 0)[0])
        raise _err(
            f"{prefix}-041",
            "site_slice_empty: chosen tz-group has no site of the merchant",
            dataset="s1_site_weights",
            key=f"arrival {i}: merchant {f.row(i, named=True)['merchant_id']} group "
            f"{plan.tz_names[int(g.tz_code[g_row[i]])]}",
        )
    s = plan.sites
    s_local = s.tables.decode(stab, u[1::2])
    s_row = s.tables.offsets[stab] + s_local
    tz = g.tz_code[g_row]
    incoherent = np.flatnonzero(s.site_tz[s_row] != tz)
    if incoherent.size:
        i = int(incoherent[0])
        raise _err(
            f"{prefix}-060",
            "GROUP_SITE_MISMATCH: chosen site's tzid differs from the chosen group",
            key=f"arrival {i}",
        )
    return S5Routing(
        roster=roster,
        tz_names=plan.tz_names,
        tz_code=tz,
        p_group=g.p_group[g_row],
        site_id=s.site_id[s_row],
        counters=CounterLaw(stream.counter_hi, stream.counter_lo),
    )


# ---------------------------------------------------------------------------------------------
# Log lines (pure)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S5Plans:
    """Serialisation plans of S5's evidence (nothing rendered yet).

    ``selection`` holds the selection rows sorted stably by day (arrival order within a day);
    ``selection_days`` maps each ``utc_day`` to its row range ``[start, stop)`` in that plan.
    """

    group: rng_logs.JsonlPlan
    site: rng_logs.JsonlPlan
    trace: rng_logs.JsonlPlan
    selection: rng_logs.JsonlPlan | None = None
    selection_days: dict[str, tuple[int, int]] = field(default_factory=dict)


def day_ranges(days: pl.Series) -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """Stable permutation grouping rows by day and each day's row range in it.

    Days come in ascending ``utc_day`` order (the path order of the per-day files, so a
    writer can digest the whole folder in one pass); arrival order is kept within a day.
    """
    if days.len() == 0:
        return np.zeros(0, dtype=np.int64), {}
    names = days.unique().sort()
    codes = days.cast(pl.Enum(names.to_list())).to_physical().to_numpy()
    # Few distinct days: 16-bit codes take numpy's radix sort (stable, linear).
    small = codes.astype(np.uint16) if names.len() <= np.iinfo(np.uint16).max else codes
    order = np.argsort(small, kind="stable")
    counts = np.bincount(codes, minlength=names.len())
    stops = np.cumsum(counts)
    out = {
        str(day): (int(stop - count), int(stop))
        for day, count, stop in zip(names.to_list(), counts.tolist(), stops.tolist(), strict=True)
        if count
    }
    return order.astype(np.int64), out


def _tz_json(routing: S5Routing) -> pl.Series:
    """JSON text of each arrival's chosen tz-group (escaped once per distinct tzid)."""
    tz_json = pl.Series(rng_logs.json_strings(routing.tz_names), dtype=pl.String)
    return tz_json.gather(pl.Series(routing.tz_code.astype(np.uint32)))


def _family_fields() -> dict[str, Const | Col]:
    return {
        "merchant_id": Col("merchant_id"),
        # utc_day passed the roster's date pattern: nothing in it needs JSON escaping.
        "utc_day": Col("utc_day", "safe"),
        "tz_group_id": Col("tz_q", "json"),
    }


def s5_group_plan(routing: S5Routing, tokens: RunTokens) -> rng_logs.JsonlPlan:
    """``alias_pick_group`` rows (s5 §3.1): arrival ``i`` -> event ``ts = 4i``, counters of
    draw ``2i``, the chosen group's S4 ``p_group``."""
    f = routing.roster.frame
    return rng_logs.event_plan(
        tokens,
        module=MODULE,
        substream_label=GROUP_LABEL,
        counters=routing.family_counters(0),
        ts=(4, 0),
        extra_columns={
            "merchant_id": f.get_column("merchant_id"),
            "utc_day": f.get_column("utc_day"),
            "tz_q": _tz_json(routing),
            "p_group_q": rng_logs.float_json(routing.p_group),
        },
        extra_fields={**_family_fields(), "p_group": Col("p_group_q", "json")},
    )


def s5_site_plan(routing: S5Routing, tokens: RunTokens) -> rng_logs.JsonlPlan:
    """``alias_pick_site`` rows (s5 §3.1): arrival ``i`` -> event ``ts = 4i + 2``, counters of
    draw ``2i + 1``, the chosen ``site_id``."""
    f = routing.roster.frame
    return rng_logs.event_plan(
        tokens,
        module=MODULE,
        substream_label=SITE_LABEL,
        counters=routing.family_counters(1),
        ts=(4, 2),
        extra_columns={
            "merchant_id": f.get_column("merchant_id"),
            "utc_day": f.get_column("utc_day"),
            "tz_q": _tz_json(routing),
            "site_id": pl.Series(routing.site_id, dtype=pl.UInt64),
        },
        extra_fields={**_family_fields(), "site_id": Col("site_id")},
    )


def s5_trace_plan(tokens: RunTokens, counters: CounterLaw, events: int) -> rng_logs.JsonlPlan:
    """S5's trace rows (s5 §3.2): event ``k`` (group ``2i``, site ``2i+1``) -> one row with its
    counters at ``ts = 2k + 1``. Depends on the arrival count only, not on the routing."""
    return rng_logs.periodic_trace_plan(
        tokens,
        module=MODULE,
        labels=(GROUP_LABEL, SITE_LABEL),
        counters=counters,
        events=events,
        ts=(2, 1),
    )


def s5_selection_plan(
    routing: S5Routing, tokens: RunTokens, *, rng_stream_id: str
) -> tuple[rng_logs.JsonlPlan, dict[str, tuple[int, int]]]:
    """Selection-log rows (s5 §3.4) sorted stably by day, and each day's row range."""
    f = routing.roster.frame
    order, days = day_ranges(f.get_column("utc_day"))
    frame = pl.DataFrame(
        {
            "merchant_id": f.get_column("merchant_id"),
            "utc_day": f.get_column("utc_day"),
            "utc_timestamp": f.get_column("utc_timestamp"),
            "tz_q": _tz_json(routing),
            "site_id": pl.Series(routing.site_id, dtype=pl.UInt64),
        }
    )
    group, site = routing.family_counters(0), routing.family_counters(1)
    sorted_by_day = bool((order == np.arange(order.size)).all())  # a time-sorted roster

    def counters(start: int, stop: int) -> dict[str, pl.Series]:
        # Row r is arrival r (a time-sorted roster) or arrival order[r].
        cols = {}
        for name, law in (("g", group), ("s", site)):
            if sorted_by_day:
                hi, lo = law.before(start, stop)
            else:
                hi, lo = law.before_rows(order[start:stop])
            cols[f"{name}_hi"] = pl.Series(hi, dtype=pl.UInt64)
            cols[f"{name}_lo"] = pl.Series(lo, dtype=pl.UInt64)
        return cols

    if not sorted_by_day:
        frame = frame[pl.Series(order.astype(np.uint32))]
    plan = rng_logs.jsonl_plan(
        frame,
        {
            "merchant_id": Col("merchant_id"),
            # Both passed the roster's date/timestamp patterns: no JSON escaping possible.
            "utc_timestamp": Col("utc_timestamp", "safe"),
            "utc_day": Col("utc_day", "safe"),
            "tz_group_id": Col("tz_q", "json"),
            "site_id": Col("site_id"),
            "rng_stream_id": Const(rng_stream_id),
            "ctr_group_hi": Col("g_hi"),
            "ctr_group_lo": Col("g_lo"),
            "ctr_site_hi": Col("s_hi"),
            "ctr_site_lo": Col("s_lo"),
            "manifest_fingerprint": Const(tokens.manifest_fingerprint),
            "created_utc": Const(tokens.created_utc),
        },
        derive=counters,
    )
    return plan, days


def s5_log_plans(
    routing: S5Routing,
    tokens: RunTokens,
    *,
    rng_stream_id: str,
    selection_log: bool,
) -> S5Plans:
    """Plans for S5's evidence (s5 §3.1-3.4, §6.1 time law); pure, nothing rendered.

    Arrival ``i``: group event ``ts = 4i``, its trace ``4i+1``, site event ``4i+2``, trace
    ``4i+3`` (µs after ``created_utc``); trace row ``k`` (group ``2i``, site ``2i+1``) copies
    the counters of event ``k``. The runner builds the same plans one by one on its workers.
    """
    group = s5_group_plan(routing, tokens)
    site = s5_site_plan(routing, tokens)
    trace = s5_trace_plan(tokens, routing.counters, 2 * routing.n)
    if not selection_log:
        return S5Plans(group=group, site=site, trace=trace)
    selection, days = s5_selection_plan(routing, tokens, rng_stream_id=rng_stream_id)
    return S5Plans(group, site, trace, selection, days)


# ---------------------------------------------------------------------------------------------
# Input reading and validation (runner helpers)
# ---------------------------------------------------------------------------------------------


def _bad_rows(frame: pl.DataFrame, predicate: pl.Expr) -> pl.DataFrame:
    return frame.with_row_index("_row").filter(predicate)


def _require(
    frame: pl.DataFrame, predicate: pl.Expr, code: str, dataset: str, message: str
) -> None:
    """Raise ``code`` for the first row where ``predicate`` (a violation) holds."""
    bad = _bad_rows(frame, predicate)
    if bad.height:
        raise _err(code, message, dataset=dataset, key=f"row {bad.item(0, '_row')}")


def read_s1(
    home: StorageHome, tokens: Mapping[str, str], created_utc: str, prefix: str
) -> pl.DataFrame:
    """``s1_site_weights`` with row-level checks (strict mode) and the created_utc law."""
    ds = "s1_site_weights"
    frame = read_partition(
        home.path(ds, tokens),
        dataset_id=ds,
        schema_ref=home.catalogue.entry(ds).schema_ref,
        code=f"{prefix}-020",
    )
    _require(
        frame,
        (pl.col("merchant_id") < 1)
        | ~pl.col("legal_country_iso").str.contains(_ISO2_RE)
        | (pl.col("site_order") < 1)
        | ~pl.col("p_weight").is_between(0.0, 1.0)
        | pl.col("p_weight").is_nan(),
        f"{prefix}-020",
        ds,
        "S1 row breaks its schema (id64, iso2, site_order >= 1, p_weight in [0, 1])",
    )
    _require(
        frame,
        pl.col("created_utc") != created_utc,
        f"{prefix}-086",
        ds,
        f"CREATED_UTC_MISMATCH: created_utc != verified_at_utc {created_utc}",
    )
    return frame


def read_site_timezones(ev: S0Evidence, prefix: str) -> pl.DataFrame:
    ds = "site_timezones"
    frame = read_partition(
        ev.path(ds),
        dataset_id=ds,
        schema_ref=ev.home.catalogue.entry(ds).schema_ref,
        code=f"{prefix}-020",
    )
    _require(
        frame,
        ~pl.col("tzid").str.contains(_TZID_RE) | (pl.col("site_order") < 1),
        f"{prefix}-020",
        ds,
        "site_timezones row breaks its schema (iana_tzid, site_order >= 1)",
    )
    return frame


def read_s4(
    home: StorageHome, tokens: Mapping[str, str], created_utc: str, prefix: str
) -> pl.DataFrame:
    ds = "s4_group_weights"
    frame = read_partition(
        home.path(ds, tokens),
        dataset_id=ds,
        schema_ref=home.catalogue.entry(ds).schema_ref,
        code=f"{prefix}-020",
    )
    _require(
        frame,
        ~pl.col("p_group").is_between(0.0, 1.0)
        | pl.col("p_group").is_nan()
        | ~pl.col("tz_group_id").str.contains(_TZID_RE),
        f"{prefix}-020",
        ds,
        "S4 row breaks its schema (p_group in [0, 1], iana_tzid)",
    )
    _require(
        frame,
        pl.col("created_utc") != created_utc,
        f"{prefix}-086",
        ds,
        f"CREATED_UTC_MISMATCH: created_utc != verified_at_utc {created_utc}",
    )
    return frame


_INDEX_ROW_KEYS = frozenset(
    {"merchant_id", "offset", "length", "sites", "quantised_bits", "checksum"}
)
_HEX_RE = re.compile(r"[A-Fa-f0-9]+")


def _index_errors(schema_ref: str, index: Any) -> list[str]:
    """``#/plan/s2_alias_index`` errors: JSON Schema on the header (plus one merchant row), and
    the same row rules checked in plain Python for every row (jsonschema costs ~0.2 ms/row)."""
    if not isinstance(index, dict) or not isinstance(index.get("merchants"), list):
        return json_errors(schema_ref, index)
    rows = index["merchants"]
    errors = json_errors(schema_ref, {**index, "merchants": rows[:1]})
    if errors:
        return errors
    for i, r in enumerate(rows):
        ok = (
            isinstance(r, dict)
            and r.keys() == _INDEX_ROW_KEYS
            and all(
                type(r[k]) is int
                for k in ("merchant_id", "offset", "length", "sites", "quantised_bits")
            )
            and 1 <= r["merchant_id"] <= _U64_MAX
            and r["offset"] >= 0
            and min(r["length"], r["sites"], r["quantised_bits"]) >= 1
            and isinstance(r["checksum"], str)
            and _HEX_RE.fullmatch(r["checksum"]) is not None
        )
        if not ok:
            return [f"merchants/{i}: row breaks #/plan/s2_alias_index/merchants/items"]
    return []


def check_s2_parity(
    home: StorageHome,
    tokens: Mapping[str, str],
    layout: AliasLayoutPolicyV1,
    sealed_digest: str,
    prefix: str,
) -> dict[str, Any]:
    """S2 integrity echo (s5 §6 step 5): index schema, blob digest/size, policy echoes -> 041.

    The blob is hashed, never decoded ("Option A")."""
    index_path = home.path("s2_alias_index", tokens)
    blob_path = home.path("s2_alias_blob", tokens)
    for ds, p in (("s2_alias_index", index_path), ("s2_alias_blob", blob_path)):
        if not p.is_file():
            raise _err(
                f"{prefix}-020", "S2 output is missing (run S2 first)", dataset=ds, key=str(p)
            )
    try:
        index = json.loads(index_path.read_bytes())
    except ValueError as exc:
        raise _err(
            f"{prefix}-041", f"index.json is not JSON: {exc}", dataset="s2_alias_index"
        ) from exc
    errors = _index_errors(home.catalogue.entry("s2_alias_index").schema_ref, index)
    if errors:
        raise _err(
            f"{prefix}-041", f"S2 index fails its schema: {errors[0]}", dataset="s2_alias_index"
        )
    blob_sha = sha256_file(blob_path)
    blob_size = blob_path.stat().st_size
    checks = {
        "blob_sha256": (index["blob_sha256"], blob_sha),
        "blob_size_bytes": (index["blob_size_bytes"], blob_size),
        "policy_digest": (index["policy_digest"], sealed_digest),
        "layout_version": (index["layout_version"], layout.layout_version),
        "endianness": (index["endianness"], layout.endianness),
        "alignment_bytes": (index["alignment_bytes"], layout.alignment_bytes),
        "quantised_bits": (index["quantised_bits"], layout.quantised_bits),
    }
    for name, (seen, expected) in checks.items():
        if seen != expected:
            raise _err(
                f"{prefix}-041",
                f"S2 parity: index {name} {seen!r} != {expected!r}",
                dataset="s2_alias_index",
                key=name,
            )
    return {"blob_sha256": blob_sha, "blob_size_bytes": blob_size}


def read_identity(
    home: StorageHome,
    *,
    seed: int,
    manifest_fingerprint: str,
    parameter_hash: str,
    run_id: str,
    prefix: str,
) -> None:
    """The run receipt must exist and carry exactly the tokens the runner was given."""
    try:
        ident = read_run_receipt(home, run_id)
    except SegmentError as exc:
        raise _err(
            f"{prefix}-001", f"run receipt unusable: {exc.short_message}", dataset="run_receipt"
        ) from exc
    given = (int(seed), manifest_fingerprint, parameter_hash, run_id)
    if (ident.seed, ident.manifest_fingerprint, ident.parameter_hash, ident.run_id) != given:
        raise _err(
            f"{prefix}-070",
            "run tokens differ from the run receipt",
            dataset="run_receipt",
            key=run_id,
        )


def open_run_evidence(
    home: StorageHome,
    *,
    seed: int,
    manifest_fingerprint: str,
    parameter_hash: str,
    run_id: str,
    prefix: str,
    codes: EvidenceCodes,
    required: Sequence[str],
) -> S0Evidence:
    """A router state's entry checks (S5 and S6 alike): the run receipt matches the tokens, S0's
    evidence loads, its parameter_hash is the run's, and every ``required`` input is sealed."""
    read_identity(
        home,
        seed=seed,
        manifest_fingerprint=manifest_fingerprint,
        parameter_hash=parameter_hash,
        run_id=run_id,
        prefix=prefix,
    )
    ev = load_evidence(
        home, seed=seed, manifest_fingerprint=manifest_fingerprint, prefix=prefix, codes=codes
    )
    if ev.parameter_hash != parameter_hash:
        raise _err(
            f"{prefix}-070",
            "S0 receipt parameter_hash differs from the run's",
            dataset="s0_gate_receipt_2B",
            key=ev.parameter_hash,
        )
    for asset in required:
        ev.row(asset)
    return ev


def report_path(home: StorageHome, state: str, seed: int, manifest_fingerprint: str) -> Path:
    """Run-report copy ``reports/layer1/2B/state=Sx/seed=…/manifest_fingerprint=…/`` (non-
    authoritative): the dictionary id ``s5_run_report``/``s6_run_report`` when registered."""
    ds = f"{state.lower()}_run_report"
    tokens = {"seed": str(seed), "manifest_fingerprint": manifest_fingerprint}
    if ds in home.catalogue.entries:
        return home.path(ds, tokens)
    return (
        home.root
        / f"reports/layer1/2B/state={state}/seed={seed}/manifest_fingerprint={manifest_fingerprint}"
        / f"{ds}.json"
    )


def environment_block() -> dict[str, Any]:
    """Run-report ``environment`` block (non-authoritative)."""
    return {
        "engine_commit": os.environ.get("ENGINE_COMMIT", "unknown"),
        "python_version": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "network_io_detected": 0,
    }


def spot_check(
    lines: Sequence[str | None],
    schema_ref: str,
    code: str,
    dataset: str,
    *,
    envelope_optional: tuple[str, ...] = (),
) -> None:
    """Sample lines (a file's first/last): byte law round trip and row schema (first error).

    ``envelope_optional``: spec-optional envelope keys (``merchant_id``, s5 §3.1) that the
    contract pack does not (yet) declare for a family; they are checked as id64 and removed
    before schema validation instead of failing every row.
    """
    for idx, text in enumerate(lines):
        if text is None:
            continue
        where = f"sample line {idx + 1}: {text[:80]}"
        obj = json.loads(text)
        if json.dumps(obj, ensure_ascii=True, sort_keys=True) + "\n" != text:
            raise _err(code, "JSONL byte law broken", dataset=dataset, key=where)
        for name in envelope_optional:
            value = obj.pop(name, 1)
            if type(value) is not int or not 1 <= value <= _U64_MAX:
                raise _err(code, f"{name} is not an id64", dataset=dataset, key=where)
        errors = json_errors(schema_ref, obj, limit=1)
        if errors:
            raise _err(code, f"row fails its schema: {errors[0]}", dataset=dataset, key=where)


def _ensure_tokens(rel: str, tokens: Mapping[str, str], code: str, dataset: str) -> None:
    for k in ("seed", "parameter_hash", "run_id"):
        if f"{k}={tokens[k]}" not in rel:
            raise _err(
                code, "PATH_EMBED_MISMATCH: output path lacks a run token", dataset=dataset, key=rel
            )


def _selection_run_folder(home: StorageHome, run_tokens: Mapping[str, str]) -> Path:
    """``…/s5_selection_log/seed=…/parameter_hash=…/run_id=…/`` (parent of the day folders)."""
    return home.path("s5_selection_log", {**run_tokens, "utc_day": "0000-00-00"}).parent.parent


@dataclass(frozen=True)
class _PlanInputs:
    """Validated plan inputs of one run and the digests its publish version needs."""

    s1: pl.DataFrame
    site_tz: pl.DataFrame
    s4: pl.DataFrame
    s2: dict[str, Any]
    s1_digest: str
    s4_digest: str


def with_site_ids(sites: pl.DataFrame) -> pl.DataFrame:
    """``sites`` with a ``site_id`` column (:func:`~segment2b.core.routing_rng.site_ids` of its
    merchant_id, legal_country_iso and site_order)."""
    sid = site_ids(
        sites.get_column("merchant_id").to_numpy(),
        sites.get_column("legal_country_iso").to_list(),
        sites.get_column("site_order").to_numpy(),
    )
    return sites.with_columns(pl.Series("site_id", sid, dtype=pl.UInt64))


def _read_plan_inputs(
    home: StorageHome,
    ev: S0Evidence,
    plan_tokens: Mapping[str, str],
    layout: AliasLayoutPolicyV1,
) -> _PlanInputs:
    """S1, site_timezones and S4 (row checks, created_utc law) and the S2 parity echo, in the
    order of s5 §6 steps 4-5 (the first failure raises). S1 comes with its rows' ``site_id``
    (one SHA-256 per site, in Python: done here, while the roster is parsed, rather than in
    the plan)."""
    s1 = with_site_ids(read_s1(home, plan_tokens, ev.created_utc, PREFIX))
    site_tz = read_site_timezones(ev, PREFIX)
    s4 = read_s4(home, plan_tokens, ev.created_utc, PREFIX)
    s2 = check_s2_parity(
        home, plan_tokens, layout, ev.rows["alias_layout_policy_v1"]["sha256_hex"], PREFIX
    )
    return _PlanInputs(
        s1,
        site_tz,
        s4,
        s2,
        folder_digest(home.path("s1_site_weights", plan_tokens)),
        folder_digest(home.path("s4_group_weights", plan_tokens)),
    )


def _stage_file(
    home: StorageHome,
    stage_root: Path,
    run_tokens: Mapping[str, str],
    *,
    key: str,
    dataset_id: str,
    build: Callable[[], rng_logs.JsonlPlan],
    stop: threading.Event | None = None,
    hashed: bool = True,
) -> rng_logs.WrittenFile:
    """Render one single-file log into ``stage_root/<key>/`` (hashed while written if
    ``hashed``); its rendered output path must carry the run tokens (``2B-S5-071``). ``stop``
    set: give up between chunks (:class:`~segment2b.states.rng_logs.RenderStoppedError`)."""
    _ensure_tokens(home.rel(dataset_id, run_tokens), run_tokens, f"{PREFIX}-071", dataset_id)
    path = stage_root / key / home.path(dataset_id, run_tokens).name
    return rng_logs.write_jsonl(path, build(), stop=stop, hashed=hashed)


def _stage_selection(
    home: StorageHome,
    stage_root: Path,
    run_tokens: Mapping[str, str],
    *,
    routing: S5Routing,
    tokens: RunTokens,
    rng_stream_id: str,
    hashed: bool = True,
) -> tuple[rng_logs.WrittenFolder, dict[Path, str]]:
    """Render the per-day selection logs into ``stage_root/selection/utc_day=…/`` in one pass
    (days ascending = path order, so the folder digest comes with it if ``hashed``); returns
    the written folder and each file's ``utc_day=…`` key."""
    plan, days = s5_selection_plan(routing, tokens, rng_stream_id=rng_stream_id)
    run_folder = _selection_run_folder(home, run_tokens)
    root = stage_root / "selection"
    keys: dict[Path, str] = {}
    ranges: dict[Path, tuple[int, int]] = {}
    for day, span in days.items():
        day_tokens = {**run_tokens, "utc_day": day}
        _ensure_tokens(
            home.rel("s5_selection_log", day_tokens),
            run_tokens,
            f"{PREFIX}-071",
            "s5_selection_log",
        )
        path = root / home.path("s5_selection_log", day_tokens).relative_to(run_folder)
        keys[path] = f"utc_day={day}"
        ranges[path] = span
    # Only the folder's H2 digest is published: the day files need no digests of their own.
    written = rng_logs.write_jsonl_folder(
        plan, ranges, root, file_digests=False, folder_digest=hashed
    )
    return written, keys


# ---------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------


class TraceJoin(Protocol):
    """What :func:`run_s5` needs from a prepared S6 (``s6_edge_router.S6Pending``)."""

    tail: bytes
    input_version: str

    def abandon(self) -> None: ...


def run_s5(
    home: StorageHome,
    *,
    seed: int,
    manifest_fingerprint: str,
    parameter_hash: str,
    run_id: str,
    join_s6: Callable[[Callable[[], StateOutcome]], TraceJoin] | None = None,
) -> StateOutcome:
    """Route every roster arrival and publish S5's RNG evidence (s5-router.md §6).

    Returns a :class:`StateOutcome` whose ``frame`` is the per-arrival routing (S5Routing
    .to_frame()) and whose ``extras["routing"]`` is the :class:`S5Routing` that S6 joins by
    arrival position.

    ``join_s6`` (S5 and S6 in one step): called on its own thread once the routing plan is
    built (its result or failure is taken once everything is rendered and checked), with a
    callable that waits for the provisional outcome (``extras`` routing and roster digest,
    ``report["roster"]``; it raises S5's failure if S5 fails first), it prepares S6 and
    returns its trace tail. S5 then publishes its trace rows and S6's tail as
    one file (:func:`~segment2b.states.rng_logs.publish_trace_s5_s6`) instead of leaving S6 to
    copy the whole trace to append; ``extras["s6_join"]`` and ``extras["s6_trace"]`` carry
    the join and the tail's publish result. If S5 fails after the join, the join is abandoned.

    Concurrency (two workers; polars, numpy, ``hashlib`` and file writes release the GIL): the
    plan inputs are read while the roster is parsed; the trace, which depends on the arrival
    count alone, is rendered from the roster's line count while the main thread parses, plans
    and routes (S6's entry checks run beside the routing, on a third thread: ``join_s6``);
    then the two event families and the selection log are rendered, each file hashed from
    the buffers it was written from, while S6 is prepared. Checks still fail in
    the order of s5 §6 (a worker's failure is raised only where the serial algorithm would have
    reached it), and nothing is visible before publish.
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
        required=(
            "route_rng_policy_v1",
            "alias_layout_policy_v1",
            "site_timezones",
            "s5_arrival_roster",
        ),
    )
    created_utc = ev.created_utc
    plan_tokens = {"seed": str(seed), "manifest_fingerprint": manifest_fingerprint}
    run_tokens = {"seed": str(seed), "parameter_hash": parameter_hash, "run_id": run_id}

    route_loaded = ev.policy("route_rng_policy_v1")
    layout_loaded = ev.policy("alias_layout_policy_v1")
    route = route_loaded.model
    layout = layout_loaded.model
    assert isinstance(route, RouteRngPolicyV1)
    assert isinstance(layout, AliasLayoutPolicyV1)
    sel = route.streams.routing_selection
    for name, fam in sel.event_families.items():
        if fam.substream_label not in (None, name):
            raise _err(
                f"{PREFIX}-053",
                "event family substream_label differs from its name",
                dataset="route_rng_policy_v1",
                key=name,
            )
    try:
        stream = derive_routing_stream(
            ROUTING_DOMAIN_MASTER,
            ROUTING_DOMAIN_STREAM,
            sel.rng_stream_id,
            seed=seed,
            parameter_hash=parameter_hash,
            run_id=run_id,
            counter_start=(sel.basis.counter_start.hi, sel.basis.counter_start.lo),
        )
    except ValueError as exc:
        raise _err(
            f"{PREFIX}-053", f"RNG_STREAM_MISCONFIGURED: {exc}", dataset="route_rng_policy_v1"
        ) from exc
    ext = route.extensions or {}
    selection_enabled = bool(ext.get("selection_log_enabled", False)) and (
        "s5_selection_log" in home.catalogue.entries
    )
    tokens = RunTokens(seed, parameter_hash, manifest_fingerprint, run_id, created_utc)
    stage_root = home.tmp / f"s5_stage_{uuid.uuid4().hex}"
    join: TraceJoin | None = None
    s6_job: Future[TraceJoin] | None = None
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="s5")
    s6_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s5-s6")
    stop_trace = threading.Event()  # set on failure: the trace render need not finish
    routed: Future[S5Routing] = Future()  # what S6 waits for once its entry checks are done
    try:
        inputs_job = pool.submit(_read_plan_inputs, home, ev, plan_tokens, layout)
        # The roster's digest is computed on S6's (still idle) thread while the roster is
        # counted and parsed; verify_roster() comes before anything the parse concluded.
        roster_bytes, verify_roster = ev.sealed_bytes_verified_by(
            "s5_arrival_roster", run_tokens, s6_pool
        )
        # The trace echoes counters only (ctr0 + k), so it follows from the arrival count:
        # render it from the roster's line count while the roster is parsed and routed. A
        # roster with blank lines (a different count) has it rendered again once parsed.
        # The logs are versioned by their input version (DECISIONS 29), so a fresh publish
        # needs no digest: they are hashed while written only when a target exists, to be
        # compared with it (one that appears meanwhile is compared by reading the stage).
        log_targets = (
            home.path("rng_trace_log", run_tokens),
            home.path("rng_event_alias_pick_group", run_tokens).parent,
            home.path("rng_event_alias_pick_site", run_tokens).parent,
            _selection_run_folder(home, run_tokens),
        )
        hashed = any(t.exists() for t in log_targets)
        stage = partial(_stage_file, home, stage_root, run_tokens, hashed=hashed)

        def trace(arrivals: int) -> Future[rng_logs.WrittenFile]:
            return pool.submit(
                stage,
                key="trace",
                dataset_id="rng_trace_log",
                build=lambda: s5_trace_plan(
                    tokens, CounterLaw(stream.counter_hi, stream.counter_lo), 2 * arrivals
                ),
                stop=stop_trace,
            )

        lines = roster_scan.line_count(roster_bytes)
        trace_job = trace(lines)
        try:
            roster = parse_roster(roster_bytes, prefix=PREFIX, lines=lines)
        except Exception:
            verify_roster()  # changed bytes are reported before what their parse found
            raise
        verify_roster()
        # The frame owns its values: the roster's bytes (~170 per arrival) are not needed
        # again (S6 joined here consumes this parse).
        del roster_bytes
        n = roster.n
        if n != lines:
            stop_trace.set()
            # Discarded: a failure of its own (not just the stop) is raised again, in file
            # order, by the render that replaces it.
            with contextlib.suppress(Exception):
                trace_job.result()
            stop_trace.clear()
            trace_job = trace(n)
        t_inputs = time.perf_counter()
        posture_job = pool.submit(roster_posture, roster)

        inputs = inputs_job.result()
        unknown = roster.frame.join(
            inputs.s1.select("merchant_id").unique(),
            on="merchant_id",
            how="anti",
            maintain_order="left",
        )
        if unknown.height:
            row = unknown.row(0, named=True)
            raise _err(
                f"{PREFIX}-020",
                "roster row invalid: merchant_id is not in s1_site_weights",
                dataset="s5_arrival_roster",
                key=f"merchant {row['merchant_id']} at {row['utc_timestamp']}",
            )
        t_read = time.perf_counter()
        merchant_days = roster.frame.select("merchant_id", "day").unique()
        plan = build_routing_plan(
            inputs.s1, inputs.site_tz, inputs.s4, merchant_days, prefix=PREFIX
        )
        t_plan = time.perf_counter()
        # Only digests are needed from the inputs from here on, and only counts from the plan
        # once routed: S1/S4 frames and the alias tables are freed before the logs render.
        plan_counts = {
            "group_tables": len(plan.groups.tables),
            "site_tables": len(plan.sites.tables),
            "tz_groups_distinct": len(plan.tz_names),
        }
        input_digests = {
            "s1": inputs.s1_digest,
            "s4": inputs.s4_digest,
            "s2_blob": inputs.s2["blob_sha256"],
        }
        del inputs, inputs_job, merchant_days, unknown
        if join_s6 is not None:
            # S6's entry checks (evidence, policies, edge catalogue) need no routing: they run
            # on S6's thread while S5 routes, then S6 waits for the routing and is prepared
            # while S5 renders. Its outcome is collected (and a failure raised) where the
            # serial order reaches it.
            def provisional() -> StateOutcome:
                return StateOutcome(
                    frame=pl.DataFrame(),
                    report={"roster": posture_job.result()},
                    extras={
                        "routing": routed.result(),
                        "roster_sha256": ev.rows["s5_arrival_roster"]["sha256_hex"],
                    },
                )

            s6_job = s6_pool.submit(join_s6, provisional)
        routing = route_arrivals(roster, plan, stream, prefix=PREFIX)
        routed.set_result(routing)
        del plan
        t_route = time.perf_counter()

        group_job = pool.submit(
            stage,
            key="group",
            dataset_id="rng_event_alias_pick_group",
            build=lambda: s5_group_plan(routing, tokens),
        )
        selection_job = (
            pool.submit(
                _stage_selection,
                home,
                stage_root,
                run_tokens,
                routing=routing,
                tokens=tokens,
                rng_stream_id=sel.rng_stream_id,
                hashed=hashed,
            )
            if selection_enabled
            else None
        )
        # The main thread renders the site family itself instead of idling on the workers
        # (three renders share two cores better than two renders and a waiting thread). Its
        # failure is raised in file order: after the trace's and the group's.
        site_job: Future[rng_logs.WrittenFile] = Future()
        try:
            site_job.set_result(
                stage(
                    key="site",
                    dataset_id="rng_event_alias_pick_site",
                    build=lambda: s5_site_plan(routing, tokens),
                )
            )
        except Exception as exc:  # re-raised below, in file order
            site_job.set_exception(exc)
        staged = {
            "trace": trace_job.result(),
            "group": group_job.result(),
            "site": site_job.result(),
        }
        selection_folder: rng_logs.WrittenFolder | None = None
        if selection_job is not None:
            selection_folder, day_keys = selection_job.result()
            for path, written in sorted(selection_folder.files.items()):
                staged[day_keys[path]] = written
        counts = (staged["group"].rows, staged["site"].rows, staged["trace"].rows)
        sel_rows = sum(w.rows for k, w in staged.items() if k.startswith("utc_day="))
        if counts != (n, n, 2 * n) or sel_rows != (n if selection_enabled else 0):
            raise _err(f"{PREFIX}-050", f"RNG_DRAWS_COUNT_MISMATCH: {counts} for {n} arrivals")
        for key, ds, code in (
            ("group", "rng_event_alias_pick_group", "056"),
            ("site", "rng_event_alias_pick_site", "056"),
            ("trace", "rng_trace_log", "050"),
        ):
            w = staged[key]
            spot_check(
                [w.first, w.last], home.catalogue.entry(ds).schema_ref, f"{PREFIX}-{code}", ds
            )
        day_files = [w for k, w in staged.items() if k.startswith("utc_day=")]
        for w in (day_files[:1] + day_files[-1:]) if day_files else []:
            spot_check(
                [w.first, w.last],
                home.catalogue.entry("s5_selection_log").schema_ref,
                f"{PREFIX}-071",
                "s5_selection_log",
            )
        posture = posture_job.result()
        t_lines = time.perf_counter()
        if s6_job is not None:
            join = s6_job.result()
        t_join = time.perf_counter()

        # Publish (everything above validated; nothing is visible until here).
        ver = input_version(
            CODE_VERSION,
            roster=ev.rows["s5_arrival_roster"]["sha256_hex"],
            route_policy=route_loaded.sha256_hex,
            alias_layout_policy=layout_loaded.sha256_hex,
            s1=input_digests["s1"],
            s4=input_digests["s4"],
            site_timezones=ev.rows["site_timezones"]["sha256_hex"],
            s2_blob=input_digests["s2_blob"],
            created_utc=created_utc,
            tokens=tokens.path_tokens(),
        )
        # Fresh targets are renames (digests known); existing ones are read and compared, so
        # the targets go on two threads.
        s6_trace: list[PublishResult | None] = []

        def publish_trace() -> PublishResult:
            target = home.path("rng_trace_log", run_tokens)
            if join is None:
                return rng_logs.publish_trace_s5(
                    home,
                    target,
                    staged["trace"].path,
                    input_version=ver,
                    digest=staged["trace"].sha256 or None,
                )
            mine, theirs = rng_logs.publish_trace_s5_s6(
                home,
                target,
                staged["trace"].path,
                input_version=ver,
                tail=join.tail,
                tail_version=join.input_version,
                digest=staged["trace"].sha256 or None,
            )
            s6_trace.append(theirs)
            return mine

        jobs: list[Callable[[], PublishResult]] = [publish_trace]
        for key, ds in (
            ("group", "rng_event_alias_pick_group"),
            ("site", "rng_event_alias_pick_site"),
        ):
            jobs.append(
                partial(
                    rng_logs.publish_staged,
                    home,
                    home.path(ds, run_tokens).parent,
                    staged[key].path.parent,
                    prefix=PREFIX,
                    state=f"s5_{ds}",
                    dataset_id=ds,
                    input_version=ver,
                    # A one-file folder: its H2 digest is the file's SHA-256.
                    digest=staged[key].sha256 or None,
                    hash_fresh=False,
                )
            )
        if day_files and selection_folder is not None:
            jobs.append(
                partial(
                    rng_logs.publish_staged,
                    home,
                    _selection_run_folder(home, run_tokens),
                    stage_root / "selection",
                    prefix=PREFIX,
                    state="s5_selection_log",
                    dataset_id="s5_selection_log",
                    input_version=ver,
                    digest=selection_folder.sha256,
                    hash_fresh=False,
                )
            )
        published: list[PublishResult] = list(pool.map(lambda job: job(), jobs))
        published.append(
            rng_logs.ensure_audit_row(
                home.path("rng_audit_log", run_tokens), rng_logs.audit_row(tokens), prefix=PREFIX
            )
        )
    except BaseException as exc:
        stop_trace.set()
        if not routed.done():  # S6 may be waiting for the routing: release it
            routed.set_exception(exc)
        if join is None and s6_job is not None and not s6_job.cancel():
            # S5 failed while S6 was being prepared: wait for it, so it can be abandoned.
            with contextlib.suppress(Exception):
                join = s6_job.result()
        if join is not None:
            join.abandon()
        raise
    finally:
        # A failure stops queued renders; running ones finish before the stage is removed.
        s6_pool.shutdown(wait=True, cancel_futures=True)
        pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(stage_root, ignore_errors=True)
    t_end = time.perf_counter() - (t_join - t_lines)  # waiting for S6 is not S5's time

    elapsed = t_end - t_start
    first = {"hi": stream.counter_hi, "lo": stream.counter_lo}
    last = first
    if n:
        last_hi, last_lo = routing.counters.before(2 * n - 1, 2 * n)
        last = {"hi": int(last_hi[0]), "lo": int(last_lo[0])}
    tz_ids = routing.tz_group_ids()
    sample = pl.DataFrame(
        {
            "merchant_id": roster.frame.get_column("merchant_id").head(20),
            "utc_day": roster.frame.get_column("utc_day").head(20),
            "tz_group_id": tz_ids.head(20),
            "site_id": pl.Series(routing.site_id[:20], dtype=pl.UInt64),
        }
    ).to_dicts()
    inputs_summary = {
        "group_weights_path": home.rel("s4_group_weights", plan_tokens),
        "site_weights_path": home.rel("s1_site_weights", plan_tokens),
        "site_timezones_path": home.rel("site_timezones", plan_tokens),
        "alias_index_path": home.rel("s2_alias_index", plan_tokens),
        "alias_blob_path": home.rel("s2_alias_blob", plan_tokens),
    }
    report: dict[str, Any] = {
        "component": "2B.S5",
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
            "version_tag": ev.rows["route_rng_policy_v1"]["version_tag"],
            "sha256_hex": route_loaded.sha256_hex,
            "rng_engine": route.rng_engine,
            "rng_stream_id": sel.rng_stream_id,
            "draws_per_selection": sel.draws_per_unit.draws_per_selection,
        },
        "inputs_summary": inputs_summary,
        "rng_accounting": {
            "events_group": n,
            "events_site": n,
            "events_total": 2 * n,
            "draws_total": 2 * n,
            "first_counter": first,
            "last_counter": last,
        },
        "logging": {
            "selection_log_enabled": selection_enabled,
            **(
                {"selection_log_partition": "[seed,parameter_hash,run_id,utc_day]"}
                if selection_enabled
                else {}
            ),
        },
        "validators": [{"id": v, "status": "PASS", "codes": []} for v in VALIDATOR_IDS],
        "summary": {"overall_status": "PASS", "warn_count": 0, "fail_count": 0},
        "environment": environment_block(),
        "samples": {"selections": sample, "inputs": inputs_summary},
        "roster": posture,
        "plan": plan_counts,
        "publish": {
            "targets": [
                {
                    "path": p.path.relative_to(home.root).as_posix(),
                    "bytes": p.bytes,
                    "outcome": p.outcome,
                }
                for p in published
            ],
            "bytes_total": sum(p.bytes for p in published),
        },
        "performance": {
            "arrivals": n,
            "elapsed_s": round(elapsed, 4),
            "arrivals_per_second": round(n / elapsed, 1) if elapsed > 0 else None,
            "durations_ms": {
                "gate_policies_roster": int((t_inputs - t_start) * 1000),
                "read_inputs": int((t_read - t_inputs) * 1000),
                "plan": int((t_plan - t_read) * 1000),
                "route": int((t_route - t_plan) * 1000),
                "serialise": int((t_lines - t_route) * 1000),
                "publish": int((t_end - t_lines) * 1000),
                **({"s6_prepare": int((t_join - t_lines) * 1000)} if join is not None else {}),
            },
        },
    }
    write_report(report_path(home, "S5", seed, manifest_fingerprint), report)
    return StateOutcome(
        frame=routing.to_frame(),
        report=report,
        published=tuple(published),
        version=ver,
        extras={
            "routing": routing,
            "roster_sha256": ev.rows["s5_arrival_roster"]["sha256_hex"],
            "selection_log_enabled": selection_enabled,
            **({"s6_join": join, "s6_trace": s6_trace[0]} if join is not None else {}),
        },
    )
