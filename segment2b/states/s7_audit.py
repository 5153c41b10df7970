"""2B.S7 — audit and CI gate (``s7-audit.md``): one authoritative ``s7_audit_report`` per seed.

Grain: one JSON report per ``(seed, manifest_fingerprint)``. RNG-free and read-only: S7 re-reads
the published S2 index and blob, the S3 day effects and S4 group mixes and, when they exist, the
S5/S6 router logs with their Layer-1 RNG evidence, runs validators V-01..V-18 in the order of
§4 and publishes the report. A failure after V-01 still publishes a FAIL report holding the
checks evaluated so far (spec README decision 8), then raises the first failing check's code.

``build_s7`` runs V-04..V-17 over in-memory inputs (lazy frames, bytes, JSONL files parsed here);
``run_s7`` resolves and verifies the inputs (V-01..V-03), publishes (V-18) and writes the
diagnostic run-report.

Evidence logs are read under an explicit schema compiled from the row anchors (integers as
``uint64``, never float). The strict reader is pyarrow's JSON parser with unexpected fields
rejected. Two exact shortcuts come first, both *proved* against the file bytes: polars' NDJSON
reader (lenient on its own: it drops unknown keys and tolerates duplicates) and, for S5's
event families and the trace, rows predicted from the logs they echo. Each candidate frame is
rendered back under the JSONL byte law and must equal the files byte for byte; otherwise the
strict parser decides, with its exact errors. The logs are read ahead on two workers while the
S2/S3/S4 blocks run; results surface in the order of §4. All per-row checks are vectorised
(polars expressions, numpy counter arithmetic).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import math
import mmap
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.json as pj

from segment2b.catalogue.schemas import json_errors, resolve_anchor
from segment2b.core.alias import HEADER_BYTES, AliasSliceError, decode_probabilities, parse_slice
from segment2b.core.routing_rng import site_ids
from segment2b.errors import SegmentError
from segment2b.identity import run_id as derive_run_id
from segment2b.policy.models import AliasLayoutPolicyV1
from segment2b.policy.store import load_policy
from segment2b.states import rng_logs
from segment2b.states.evidence import EvidenceCodes, load_evidence
from segment2b.states.outcome import StateOutcome, input_version
from segment2b.storage.canonical import pretty_json
from segment2b.storage.digests import sha256_bytes, sha256_file
from segment2b.storage.home import StorageHome
from segment2b.storage.publish import PublishResult, publish_file
from segment2b.storage.reports import write_report
from segment2b.storage.roster_scan import line_count

__all__ = [
    "FAMILIES",
    "VALIDATOR_CODES",
    "AuditError",
    "AuditLedger",
    "LogFile",
    "RouterLogs",
    "S7Build",
    "S7Inputs",
    "build_s7",
    "discover_router_logs",
    "read_jsonl",
    "render_report",
    "row_rules",
    "run_s7",
]

PREFIX = "2B-S7"
COMPONENT = "2B.S7"
CODE_VERSION = "s7-1"
REPORT_ID = "s7_audit_report"
RUN_REPORT_ID = "s7_run_report"
REPORT_SCHEMA_REF = "schemas.2B.yaml#/validation/s7_audit_report_v1"
INDEX_SCHEMA_REF = "schemas.2B.yaml#/plan/s2_alias_index"
ALIAS_POLICY = "alias_layout_policy_v1"
ROUTE_POLICY = "route_rng_policy_v1"
EDGE_POLICY = "virtual_edge_policy_v1"
POLICY_IDS: tuple[str, ...] = (ALIAS_POLICY, ROUTE_POLICY, EDGE_POLICY)
INDEX_ID = "s2_alias_index"
BLOB_ID = "s2_alias_blob"
S1_ID = "s1_site_weights"
S3_ID = "s3_day_effects"
S4_ID = "s4_group_weights"
SELECTION_ID = "s5_selection_log"
EDGE_LOG_ID = "s6_edge_log"
TRACE_ID = "rng_trace_log"
AUDIT_ID = "rng_audit_log"
SITE_TZ_ID = "site_timezones"
SAMPLE_MERCHANTS = 32
"""V-07: decode the K = min(32, #merchants) lowest merchant ids (numeric ascending, §11.11)."""
MASS_TOLERANCE = 1e-12
"""V-10 / V-11(b) tolerance: spec README decision 14 ("1e-12 everywhere") tightens §5's 1e-9."""
MAX_KEYS = 5
"""At most five offending keys in a FAIL context (§5.2)."""
GROUP_NORM_SAMPLES = 32

VALIDATOR_CODES: Mapping[str, tuple[str, ...]] = {
    "V-01": ("001",),
    "V-02": ("020", "021", "023"),
    "V-03": ("070",),
    "V-04": ("200", "201"),
    "V-05": ("202", "205"),
    "V-06": ("203", "204"),
    "V-07": ("206",),
    "V-08": ("300",),
    "V-09": ("301",),
    "V-10": ("302",),
    "V-11": ("303", "304"),
    "V-12": ("400", "401", "503"),
    "V-13": ("402", "403", "404", "405"),
    "V-14": ("402", "403", "404", "405"),
    "V-15": ("410", "411"),
    "V-16": ("402",),
    "V-17": ("500", "503"),
    "V-18": ("501", "502", "504"),
}
"""PASS ``codes`` per validator: the §5 code list in table order (the example shows V-16 = 402)."""

NOTE_BOTH_ABSENT = "s5_selection_log and s6_edge_log absent; skipped"
NOTE_S5_ABSENT = "s5_selection_log absent; skipped"
NOTE_S6_ABSENT = "s6_edge_log absent; skipped"
NOTE_ROUTER_ABSENT = "router logs absent; skipped"

_LOG = logging.getLogger(__name__)
_SEED_TOKEN = re.compile(r"(?:^|/)seed=([^/]*)")
_MF_TOKEN = re.compile(r"(?:^|/)manifest_fingerprint=([^/]*)")
_DAY_TOKEN = re.compile(r"(?:^|/)utc_day=([^/]*)")
_JSON_BLOCK = 1 << 24
_STRICT_PIECE = 1 << 24
"""Bytes per piece of the strict parse (whole lines; a longer line is a piece of its own)."""
_EVENT_ANCHOR = "schemas.layer1.yaml#/rng/events/"
_QUOTED = re.compile(r"'([^']*)'")

_EVIDENCE_CODES = EvidenceCodes(
    receipt_missing="001",
    inventory_invalid="001",
    not_sealed="020",
    path_mismatch="070",
    digest_mismatch="070",
    created_missing="001",
    policy_schema="070",
)


@dataclass(frozen=True)
class Family:
    """One Layer-1 RNG event family S7 reconciles (§5.3 table)."""

    name: str
    dataset_id: str
    module: str
    substream_label: str
    stream: Literal["routing_selection", "routing_edge"]

    @property
    def schema_ref(self) -> str:
        return f"schemas.layer1.yaml#/rng/events/{self.name}"


FAMILIES: Mapping[str, Family] = {
    "alias_pick_group": Family(
        "alias_pick_group",
        "rng_event_alias_pick_group",
        "2B.S5.router",
        "alias_pick_group",
        "routing_selection",
    ),
    "alias_pick_site": Family(
        "alias_pick_site",
        "rng_event_alias_pick_site",
        "2B.S5.router",
        "alias_pick_site",
        "routing_selection",
    ),
    "cdn_edge_pick": Family(
        "cdn_edge_pick",
        "rng_event_cdn_edge_pick",
        "2B.virtual_edge",
        "cdn_edge_pick",
        "routing_edge",
    ),
}
S5_FAMILIES = ("alias_pick_group", "alias_pick_site")
S6_FAMILIES = ("cdn_edge_pick",)
_SELECTION_ROW = "schemas.2B.yaml#/trace/s5_selection_log_row"
_EDGE_ROW = "schemas.2B.yaml#/trace/s6_edge_log_row"
_TRACE_ROW = f"schemas.layer1.yaml#/rng/core/{TRACE_ID}"
_READ_AHEAD_WORKERS = 2


# --- failures and the check ledger ----------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Plain JSON values for report contexts (numpy scalars, dates, tuples → JSON types)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class AuditError(Exception):
    """An Abort of one validator: the S7 code(s) raised, a reason and ≤ 5 sample keys.

    ``codes`` are full codes (``2B-S7-206``); the first one is the state's failure code.
    """

    def __init__(
        self,
        validator: str,
        codes: str | Sequence[str],
        reason: str,
        *,
        dataset: str | None = None,
        key: str | None = None,
        **context: Any,
    ) -> None:
        suffixes = [codes] if isinstance(codes, str) else list(codes)
        self.validator = validator
        self.codes = tuple(f"{PREFIX}-{c}" for c in suffixes)
        self.reason = reason
        self.dataset = dataset
        self.key = key
        self.context: dict[str, Any] = _jsonable(context)
        super().__init__(f"[{self.codes[0]}] {validator}: {reason}")

    def check_context(self) -> dict[str, Any]:
        return {"reason": self.reason, **self.context}

    def error(self) -> SegmentError:
        return SegmentError(
            self.codes[0],
            self.reason,
            dataset=self.dataset,
            key=self.key,
            validator=self.validator,
            context={"codes": list(self.codes), **self.context},
        )


class AuditLedger:
    """``checks[]`` in evaluation order; the report lists them sorted by id (§7.3)."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self.failure: AuditError | None = None

    def passed(self, validator: str, context: Mapping[str, Any] | None = None) -> None:
        item: dict[str, Any] = {
            "id": validator,
            "status": "PASS",
            "codes": [f"{PREFIX}-{c}" for c in VALIDATOR_CODES[validator]],
        }
        if context:
            item["context"] = _jsonable(context)
        self._items[validator] = item

    def warned(self, validator: str, codes: Sequence[str], reason: str, **context: Any) -> None:
        self._items[validator] = {
            "id": validator,
            "status": "WARN",
            "codes": [f"{PREFIX}-{c}" for c in codes],
            "context": _jsonable({"reason": reason, **context}),
        }

    def failed(self, failure: AuditError) -> None:
        self._items[failure.validator] = {
            "id": failure.validator,
            "status": "FAIL",
            "codes": list(failure.codes),
            "context": failure.check_context(),
        }
        if self.failure is None:
            self.failure = failure

    def drop(self, validator: str) -> None:
        self._items.pop(validator, None)

    def status(self, validator: str) -> str | None:
        item = self._items.get(validator)
        return None if item is None else str(item["status"])

    def checks(self) -> list[dict[str, Any]]:
        return [dict(self._items[k]) for k in sorted(self._items)]

    def summary(self) -> dict[str, Any]:
        warn = sum(1 for i in self._items.values() if i["status"] == "WARN")
        fail = sum(1 for i in self._items.values() if i["status"] == "FAIL")
        return {
            "overall_status": "FAIL" if fail else "PASS",
            "warn_count": warn,
            "fail_count": fail,
        }


def zero_metrics() -> dict[str, Any]:
    """All eight metrics (§7.1: always written; 0 when not computed)."""
    return {
        "merchants_total": 0,
        "groups_total": 0,
        "days_total": 0,
        "selections_checked": 0,
        "draws_expected": 0,
        "draws_observed": 0,
        "alias_decode_max_abs_delta": 0.0,
        "max_abs_mass_error_s4": 0.0,
    }


# --- JSONL evidence: compiled row rules, strict parse, vectorised checks --------------------


@dataclass(frozen=True)
class FieldRule:
    """One property of a fields-strict JSONL row schema, flattened for vectorised checks."""

    name: str
    kind: Literal["integer", "number", "string", "boolean"]
    required: bool
    nullable: bool
    pattern: str | None = None
    const: Any = None
    has_const: bool = False
    enum: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    min_length: int | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        if self.kind == "integer":
            return pa.uint64() if self.minimum is not None and self.minimum >= 0 else pa.int64()
        return {"number": pa.float64(), "string": pa.string(), "boolean": pa.bool_()}[self.kind]

    def checks(self, *, values: bool = True, const: bool = True) -> list[tuple[str, pl.Expr]]:
        """``(rule, violation expression)`` pairs; null only violates a required field."""
        c = pl.col(self.name)
        out: list[tuple[str, pl.Expr]] = []
        if self.required and not self.nullable:
            out.append(("is missing or null", c.is_null()))
        if not values:
            return out
        if self.pattern is not None:
            out.append((f"does not match {self.pattern}", c.str.contains(self.pattern).not_()))
        if self.min_length is not None:
            out.append((f"is shorter than {self.min_length}", c.str.len_chars() < self.min_length))
        if const and self.has_const:
            out.append((f"is not the constant {self.const!r}", c != self.const))
        if self.enum is not None:
            out.append((f"is not one of {list(self.enum)}", c.is_in(list(self.enum)).not_()))
        if self.minimum is not None and self.kind != "integer":
            out.append((f"is below {self.minimum}", c < self.minimum))
        if self.minimum is not None and self.kind == "integer" and self.minimum > 0:
            out.append((f"is below {int(self.minimum)}", c < int(self.minimum)))
        if self.maximum is not None and (
            self.kind == "number" or (self.kind == "integer" and self.maximum < 2**63)
        ):
            out.append((f"is above {self.maximum}", c > self.maximum))
        if self.exclusive_minimum is not None:
            out.append((f"is not above {self.exclusive_minimum}", c <= self.exclusive_minimum))
        if self.exclusive_maximum is not None:
            out.append((f"is not below {self.exclusive_maximum}", c >= self.exclusive_maximum))
        return out


@dataclass(frozen=True)
class RowRules:
    """A row anchor compiled to an explicit arrow schema plus per-field rules."""

    schema_ref: str
    fields: tuple[FieldRule, ...]
    strict: bool

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([(f.name, f.arrow_type) for f in self.fields])

    def field(self, name: str) -> FieldRule:
        return next(f for f in self.fields if f.name == name)


def _deref(node: Mapping[str, Any], pack: str) -> dict[str, Any]:
    """Follow ``$ref`` chains (Layer-1 ``$defs`` inlined); sibling keys override the target."""
    out = dict(node)
    while "$ref" in out:
        ref = str(out.pop("$ref"))
        target = f"{pack}{ref}" if ref.startswith("#") else ref
        pack = target.partition("#")[0]
        out = {**dict(resolve_anchor(target)), **out}
    return out


def _kind_of(node: Mapping[str, Any]) -> tuple[str, bool]:
    kind = node.get("type")
    nullable = False
    if isinstance(kind, list):
        nullable = "null" in kind
        rest = [k for k in kind if k != "null"]
        kind = rest[0] if len(rest) == 1 else None
    if kind is None:
        sample = node.get("const", (node.get("enum") or [None])[0])
        kind = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(type(sample))
    if kind not in ("integer", "number", "string", "boolean"):
        msg = f"unsupported JSONL field type {kind!r}"
        raise ValueError(msg)
    return str(kind), nullable


@cache
def row_rules(schema_ref: str) -> RowRules:
    """Compile a flat row anchor (Layer-1 RNG rows, 2B trace rows) into :class:`RowRules`."""
    pack = schema_ref.partition("#")[0]
    node = _deref(resolve_anchor(schema_ref), pack)
    required = set(node.get("required") or ())
    fields: list[FieldRule] = []
    for name, raw in (node.get("properties") or {}).items():
        prop = _deref(raw, pack)
        nullable = False
        if "anyOf" in prop:
            branches = [_deref(b, pack) for b in prop["anyOf"]]
            nullable = any(b.get("type") == "null" for b in branches)
            real = [b for b in branches if b.get("type") != "null"]
            if len(real) != 1:
                msg = f"{schema_ref}: anyOf on {name} is not 'X or null'"
                raise ValueError(msg)
            prop = real[0]
        kind, null_type = _kind_of(prop)
        fields.append(
            FieldRule(
                name=name,
                kind=kind,  # type: ignore[arg-type]
                required=name in required,
                nullable=nullable or null_type,
                pattern=prop.get("pattern"),
                const=prop.get("const"),
                has_const="const" in prop,
                enum=tuple(prop["enum"]) if "enum" in prop else None,
                minimum=prop.get("minimum"),
                maximum=prop.get("maximum"),
                exclusive_minimum=prop.get("exclusiveMinimum"),
                exclusive_maximum=prop.get("exclusiveMaximum"),
                min_length=prop.get("minLength"),
            )
        )
    names = {f.name for f in fields}
    if schema_ref.startswith(_EVENT_ANCHOR) and "merchant_id" not in names:
        # Contracts §11 / S6 §3.1: the envelope has an optional ``merchant_id`` (id64) that S6
        # always writes; the layer pack's envelope anchor omits it, so it is restored here.
        fields.append(
            FieldRule("merchant_id", "integer", required=False, nullable=False, minimum=1)
        )
    return RowRules(schema_ref, tuple(fields), strict=node.get("additionalProperties") is False)


@dataclass(frozen=True)
class LogFile:
    """One JSONL file of a run partition: root-relative rendered path (named in reports)."""

    rel: str
    path: Path
    utc_day: str | None = None


@dataclass(frozen=True)
class JsonlTable:
    """Rows of several JSONL files in path order; ``offsets`` delimit the files.

    ``constant``: columns proved to hold one non-null value on every row (checks evaluate
    them on the first row: the first violating row is row 0 or none).
    """

    frame: pl.DataFrame
    files: tuple[LogFile, ...]
    offsets: np.ndarray
    constant: frozenset[str] = frozenset()

    @property
    def height(self) -> int:
        return self.frame.height

    def locate(self, row: int) -> dict[str, Any]:
        """``{file, line}`` of a global row index (1-based physical line number)."""
        if not self.files:
            return {"row": row}
        f = int(np.searchsorted(self.offsets, row, side="right") - 1)
        lf = self.files[f]
        return {"file": lf.rel, "line": _physical_line(lf.path, row - int(self.offsets[f]))}

    def file_column(self, values: Sequence[Any], dtype: pl.DataType) -> pl.Series:
        """One value per file broadcast to its rows (e.g. the partition ``utc_day``)."""
        counts = np.diff(self.offsets)
        idx = np.repeat(np.arange(len(self.files)), counts)
        return pl.Series(values, dtype=dtype).gather(pl.Series(idx, dtype=pl.UInt32))


def _at_row(
    table: JsonlTable,
    row: int,
    validator: str,
    codes: str | Sequence[str],
    reason: str,
    *,
    dataset: str,
    **context: Any,
) -> AuditError:
    """An :class:`AuditError` naming the file and physical line of a table row."""
    where = table.locate(int(row))
    return AuditError(
        validator,
        codes,
        reason,
        dataset=dataset,
        key=f"{where.get('file')}:{where.get('line')}",
        **context,
        **where,
    )


def _physical_line(path: Path, k: int) -> int:
    """1-based line number of the k-th (0-based) non-blank line of a file."""
    seen = -1
    with path.open("rb") as fh:
        for no, line in enumerate(fh, start=1):
            if line.strip():
                seen += 1
                if seen == k:
                    return no
    return 0


def _arrow_parse(data: bytes, rules: RowRules) -> pa.Table:
    return pj.read_json(
        pa.BufferReader(data),
        read_options=pj.ReadOptions(block_size=_JSON_BLOCK),
        parse_options=pj.ParseOptions(
            explicit_schema=rules.arrow_schema,
            unexpected_field_behavior="error" if rules.strict else "ignore",
        ),
    )


def _empty_table(rules: RowRules) -> pa.Table:
    return rules.arrow_schema.empty_table()


def _locate_bad_line(data: bytes, rules: RowRules) -> tuple[int, str]:
    """First physical line that does not parse as exactly one schema-conformant row."""
    lines = data.split(b"\n")
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows = _arrow_parse(line, rules).num_rows
        except (pa.ArrowInvalid, UnicodeDecodeError, ValueError) as exc:
            detail = str(exc).splitlines()[0]
            with contextlib.suppress(ValueError):
                known = {f.name for f in rules.fields}
                errors = [
                    e
                    for e in json_errors(rules.schema_ref, json.loads(line))
                    if not ("unexpected" in e and set(_QUOTED.findall(e)) <= known)
                ]
                if errors:
                    detail = errors[0]
            return no, detail
        if rows != 1:
            return no, f"line holds {rows} JSON objects, not one"
    return 0, "file does not parse as JSONL"


def _line_pieces(path: Path, size: int) -> Iterator[bytes]:
    """The file's bytes in pieces of whole lines of about ``size`` bytes (a longer line is a
    piece of its own; the last piece may lack its newline). Nothing else is held: the strict
    parse of a log larger than memory needs one piece at a time, not the whole file."""
    with path.open("rb", buffering=0) as fh:
        tail = b""
        while block := fh.read(size):
            data = tail + block if tail else block
            cut = data.rfind(b"\n") + 1
            if cut:
                yield data[:cut]
            tail = data[cut:]
        if tail:
            yield tail


def _parse_file(
    lf: LogFile, pieces: Iterable[bytes], rules: RowRules, *, validator: str, dataset: str
) -> list[pa.Table]:
    """One file, piece by piece: strict parse, then exactly one object per non-blank line of
    each piece (else 400 naming the first physical line of the failing piece that does not
    parse alone as one row). A piece is whole lines, so line numbers carry over exactly."""
    tables: list[pa.Table] = []
    before = 0  # lines of the file before this piece
    for data in pieces:
        try:
            table = (
                _arrow_parse(data, rules) if data and not data.isspace() else _empty_table(rules)
            )
        except (pa.ArrowInvalid, UnicodeDecodeError, ValueError):
            table = None
        lines = line_count(data)
        if table is None or (
            table.num_rows != lines
            and table.num_rows != sum(1 for line in data.splitlines() if line.strip())
        ):
            line, detail = _locate_bad_line(data, rules)
            line = before + line if line else 0
            raise AuditError(
                validator,
                "400",
                f"line {line} breaks {rules.schema_ref}: {detail}",
                dataset=dataset,
                key=f"{lf.rel}:{line}",
                file=lf.rel,
                line=line,
            )
        tables.append(table)
        before += lines
    return tables


# --- fast exact path ----------------------------------------------------------------------
#
# polars' NDJSON reader under the explicit schema is several times faster than the strict
# arrow parse, but lenient (duplicate keys, blank lines, non-canonical forms). So its frame is
# only accepted with a proof: every row is rendered back as canonical JSON (the router logs'
# byte law) and the rendering must equal the files byte for byte. Equality proves each line is
# exactly one object holding exactly these values with these JSON types, so the frame equals
# the strict parse. Otherwise (any difference, a partial null column, a reader error) the
# strict arrow path below decides, with its exact errors; valid JSON is never rejected here.

_RENDER_ROWS = 1 << 15
_POLARS_TYPES: Mapping[str, pl.DataType] = {
    "number": pl.Float64(),
    "string": pl.String(),
    "boolean": pl.Boolean(),
}


def _rule_dtype(rule: FieldRule) -> pl.DataType:
    """The polars dtype ``pl.from_arrow`` gives the rule's arrow type."""
    if rule.kind == "integer":
        return pl.UInt64() if rule.arrow_type == pa.uint64() else pl.Int64()
    return _POLARS_TYPES[rule.kind]


class _FileStream:
    """The concatenated bytes of several files, consumed front to back for comparison."""

    def __init__(self, arrays: Sequence[np.ndarray]) -> None:
        self._arrays = [a for a in arrays if a.size]
        self._i = 0
        self._pos = 0

    def match(self, part: Any) -> bool:
        """Whether the next ``len(part)`` bytes equal ``part`` (consumes them)."""
        got = np.frombuffer(part, dtype=np.uint8)
        done = 0
        while done < got.size:
            if self._i >= len(self._arrays):
                return False
            cur = self._arrays[self._i]
            take = min(got.size - done, cur.size - self._pos)
            if not np.array_equal(got[done : done + take], cur[self._pos : self._pos + take]):
                return False
            done += take
            self._pos += take
            if self._pos == cur.size:
                self._i += 1
                self._pos = 0
        return True

    @property
    def exhausted(self) -> bool:
        return self._i >= len(self._arrays)


def _render_fields(
    frame: pl.DataFrame, rules: RowRules
) -> tuple[pl.DataFrame, dict[str, rng_logs.Const | rng_logs.Col]] | None:
    """Canonical-JSON rendering spec of the parsed (variable) columns: a field null on every
    row is an absent key; a partly null one declines (explicit nulls go to the strict parser)."""
    fields: dict[str, rng_logs.Const | rng_logs.Col] = {}
    extra: dict[str, pl.Series] = {}
    for rule in rules.fields:
        if rule.name not in frame.columns:
            continue
        col = frame.get_column(rule.name)
        nulls = col.null_count()
        if nulls == frame.height:
            continue
        if nulls:
            return None
        if rule.kind == "integer":
            fields[rule.name] = rng_logs.Col(rule.name, "int")
        elif rule.kind == "string":
            # Verbatim between quotes: a value that needed escapes renders differently from
            # its escaped source, so the comparison rejects it.
            fields[rule.name] = rng_logs.Col(rule.name, "safe")
        elif rule.kind == "boolean":
            extra[f"_json_{rule.name}"] = col.cast(pl.String)  # "true" / "false"
            fields[rule.name] = rng_logs.Col(f"_json_{rule.name}", "json")
        else:
            try:
                extra[f"_json_{rule.name}"] = rng_logs.float_json(col.to_numpy())
            except ValueError:
                return None
            fields[rule.name] = rng_logs.Col(f"_json_{rule.name}", "json")
    return (frame.with_columns(**extra) if extra else frame), fields


_KIND_TYPES: Mapping[str, type] = {"integer": int, "number": float, "string": str, "boolean": bool}


_PROBES = 16
"""Lines sampled (evenly over the files) to guess the constant fields."""


def _probe_lines(maps: Sequence[mmap.mmap]) -> list[bytes]:
    """Up to :data:`_PROBES` whole lines spread evenly over the concatenated files, the first
    and the last line included."""
    sizes = [len(m) for m in maps]
    total = sum(sizes)
    out: list[bytes] = []
    for k in range(_PROBES):
        pos = (total - 1) * k // (_PROBES - 1)
        i = 0
        while pos >= sizes[i]:
            pos -= sizes[i]
            i += 1
        m = maps[i]
        a = m.rfind(b"\n", 0, pos) + 1 if pos else 0
        b = m.find(b"\n", a)
        out.append(m[a:b])
    return out


def _probe_constants(maps: Sequence[mmap.mmap], rules: RowRules) -> dict[str, Any] | None:
    """Fields with one value on every probed line: guessed constant (run identity, module,
    …). The guess only saves parsing; the byte comparison proves it on every row (and a wrong
    guess is retried with every field parsed). None if a probe is not a JSON object."""
    try:
        probes = [json.loads(line) for line in _probe_lines(maps)]
    except ValueError:
        return None
    if not all(isinstance(x, dict) for x in probes):
        return None
    out: dict[str, Any] = {}
    for rule in rules.fields:
        value = probes[0].get(rule.name)
        if type(value) is not _KIND_TYPES[rule.kind]:
            continue
        if rule.kind == "integer" and not (
            0 <= value <= (2**64 - 1 if _rule_dtype(rule) == pl.UInt64 else 2**63 - 1)
        ):
            continue
        if rule.kind == "number" and not math.isfinite(value):
            continue
        if all(type(x.get(rule.name)) is type(value) and x[rule.name] == value for x in probes):
            out[rule.name] = value
    return out


def _matches(
    plan: rng_logs.JsonlPlan, arrays: Sequence[np.ndarray], *, whole: bool = True
) -> np.ndarray | None:
    """Per-row line lengths if rendering ``plan`` reproduces the files exactly, else None.

    ``whole=False``: the rendering only has to equal the files' first bytes (a window of rows
    starting at the first byte given; see :mod:`.s7_windows`)."""
    stream = _FileStream(arrays)
    line_ends: list[np.ndarray] = []
    out: np.ndarray | None = None
    for start in range(0, plan.n, _RENDER_ROWS):
        done = plan.render(start, start + _RENDER_ROWS, out=out)
        out = done.buffer
        line_ends.append(done.lengths().astype(np.uint32))
        if not stream.match(done.data):
            return None
    if whole and not stream.exhausted:
        return None
    return np.concatenate(line_ends) if line_ends else np.zeros(0, dtype=np.uint32)


_Proof = tuple[pl.DataFrame, np.ndarray, frozenset[str]]
"""A proved frame (every rule field, rule order), its per-row line lengths and the columns
holding one value on every row."""


def _prove(
    frame: pl.DataFrame,
    rules: RowRules,
    constants: Mapping[str, Any],
    arrays: Sequence[np.ndarray],
    *,
    whole: bool = True,
) -> _Proof | None:
    """Render every row from ``frame`` (values of the non-constant fields; a field missing
    from it or null on every row is an absent key) and ``constants`` (literals), compare with
    the files (their first bytes only unless ``whole``), and on equality return the full frame
    in rule order."""
    dtypes = {f.name: _rule_dtype(f) for f in rules.fields if f.name in frame.columns}
    if any(frame.schema[k] != v for k, v in dtypes.items()):
        try:
            frame = frame.cast(dtypes)  # type: ignore[arg-type]
        except pl.exceptions.PolarsError:
            return None
    spec = _render_fields(frame, rules)
    if spec is None:
        return None
    render, fields = spec
    fields.update({k: rng_logs.Const(v) for k, v in constants.items()})
    lengths = _matches(rng_logs.jsonl_plan(render, fields), arrays, whole=whole)
    if lengths is None:
        return None
    n = frame.height
    # Constants take their value; a field neither parsed nor constant is absent: null.
    fill = {
        f.name: constants.get(f.name)
        for f in rules.fields
        if f.name in constants or f.name not in frame.columns
    }
    out = _with_fill(frame, fill, rules)
    return out, lengths, frozenset(constants) if n else frozenset()


def _with_fill(frame: pl.DataFrame, fill: Mapping[str, Any], rules: RowRules) -> pl.DataFrame:
    """``frame`` with a column per ``fill`` entry holding that one value on every row, in rule
    order. The fills are literal (scalar) columns: polars keeps one value, not one per row,
    until something asks for the whole column (checks read constant columns on row 0), so a
    log's run identity, module, label … cost nothing per row (~16 bytes per row per string
    column before)."""
    dtypes = {f.name: _rule_dtype(f) for f in rules.fields}
    if frame.width == 0:  # a frame without columns has no rows: nothing to broadcast to
        return pl.DataFrame(schema=dtypes)
    lits = [pl.lit(value, dtype=dtypes[name]).alias(name) for name, value in fill.items()]
    return frame.with_columns(lits).select([f.name for f in rules.fields])


def _parse_and_prove(
    source: Sequence[LogFile] | bytes,
    arrays: Sequence[np.ndarray],
    rules: RowRules,
    constants: Mapping[str, Any],
) -> _Proof | None:
    """Parse the non-constant fields with polars, then :func:`_prove` them. ``source``: the
    files, or the bytes of a window of whole lines (``arrays`` then holds those bytes)."""
    variable = {f.name: _rule_dtype(f) for f in rules.fields if f.name not in constants}
    try:
        if isinstance(source, bytes):
            frame = pl.read_ndjson(source, schema=variable)
        else:
            frame = pl.scan_ndjson([str(lf.path) for lf in source], schema=variable).collect()
    except (pl.exceptions.PolarsError, OSError, ValueError):
        return None
    return _prove(frame, rules, constants, arrays)


def _proved_table(
    files: Sequence[LogFile],
    rules: RowRules,
    attempt: Callable[[Sequence[mmap.mmap], Sequence[np.ndarray]], _Proof | None],
) -> JsonlTable | None:
    """Map the files (each non-empty, ending with a newline) and run ``attempt`` on them; the
    table of its proof, with per-file row offsets, or None."""
    if not files or any(lf.path.stat().st_size == 0 for lf in files):
        return None
    with contextlib.ExitStack() as stack:
        maps = []
        for lf in files:
            fh = stack.enter_context(lf.path.open("rb"))
            maps.append(stack.enter_context(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)))
        if any(m[-1] != ord("\n") for m in maps):
            return None  # a file ends mid-line: its row count needs the strict path
        arrays = [np.frombuffer(m, dtype=np.uint8) for m in maps]
        sizes = [arr.size for arr in arrays]
        try:
            proved = attempt(maps, arrays)
        finally:
            del arrays  # release the buffers before the maps close
    if proved is None:
        return None
    frame, lengths, constant = proved
    file_ends = np.cumsum(sizes, dtype=np.int64)
    rows = np.searchsorted(np.cumsum(lengths, dtype=np.int64), file_ends, side="right")
    offsets = np.concatenate(([0], rows)).astype(np.int64)
    return JsonlTable(frame, tuple(files), offsets, constant)


def _fast_table(files: Sequence[LogFile], rules: RowRules) -> JsonlTable | None:
    """The strict parse's table of byte-law files via polars + the rendering proof, or None.

    Guessed-constant fields are not parsed at all: they render as literals and become
    repeated columns, so polars only builds the per-row values. If the guess was wrong the
    files are parsed once more with every field.
    """

    return _proved_table(
        files, rules, lambda maps, arrays: parsed_proof(files, maps, arrays, rules)
    )


def parsed_proof(
    source: Sequence[LogFile] | bytes,
    maps: Sequence[mmap.mmap],
    arrays: Sequence[np.ndarray],
    rules: RowRules,
) -> _Proof | None:
    """Parse ``source`` (see :func:`_parse_and_prove`) with the constants probed in ``maps``
    left out, and prove it; once more with every field parsed if the guess was wrong."""
    constants = _probe_constants(maps, rules)
    if constants is None:
        return None
    if len(constants) == len(rules.fields):  # the row count still needs a parsed column
        constants.pop(rules.fields[0].name)
    proved = _parse_and_prove(source, arrays, rules, constants)
    if proved is None and constants:
        proved = _parse_and_prove(source, arrays, rules, {})
    return proved


# --- predicted tables: values from the other logs, proved against the bytes -----------------
#
# Most of an event or trace row repeats another log: S5's group/site events carry their
# selection row's merchant, day, tz-group, site and counters (V-13 requires exactly that),
# p_group is S4's, and every trace row echoes its event's counters (V-16). The timestamps
# follow the time law (first ts + k·step). Such a *candidate* needs no JSON parsing at all; it
# is rendered and compared with the file like a parsed frame, so equality again proves it is
# the file's content. Any difference (another producer, a fault) falls back to the parse.


def _lines_at(maps: Sequence[mmap.mmap], count: int, *, file: int = 0, pos: int = 0) -> list[bytes]:
    """Up to ``count`` whole lines from byte ``pos`` of file ``file`` on (across files)."""
    out: list[bytes] = []
    while len(out) < count and file < len(maps):
        m = maps[file]
        end = m.find(b"\n", pos)
        if end < 0:
            file, pos = file + 1, 0
            continue
        out.append(m[pos:end])
        pos = end + 1
        if pos >= len(m):
            file, pos = file + 1, 0
    return out


def _ts_series(lines: Sequence[bytes], n: int, *, first: int = 0) -> pl.Series | None:
    """``ts_utc`` of rows ``first .. first + n - 1`` from the first two rows' values:
    ``t0 + k·(t1 - t0)`` µs."""
    if not lines or n == 0:
        return None
    try:
        stamps = [json.loads(line)["ts_utc"] for line in lines[:2]]
        t0 = rng_logs.ts_micros(stamps[0])
        step = rng_logs.ts_micros(stamps[1]) - t0 if len(stamps) > 1 else 0
        k = np.arange(first, first + n, dtype=np.int64)
        return rng_logs.ts_utc_series(stamps[0], k * step)
    except (ValueError, KeyError, TypeError):
        return None


def _words(frame: pl.DataFrame, name: str) -> np.ndarray | None:
    """A counter column as uint64, or None if it is not a complete uint64 column."""
    col = frame.get_column(name)
    return None if col.dtype != pl.UInt64 or col.null_count() else col.to_numpy()


def _after(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``before + 1`` over the 128-bit counter (low word carries)."""
    carry = lo == np.uint64(2**64 - 1)
    return hi + carry.astype(np.uint64), np.where(carry, np.uint64(0), lo + np.uint64(1))


def _as_constants(
    columns: dict[str, pl.Series], rules: RowRules, maps: Sequence[mmap.mmap]
) -> dict[str, Any] | None:
    """Turn one-valued integer candidates into literals and take the fields no candidate
    covers from the probed constants (run identity, module, …)."""
    probed = _probe_constants(maps, rules)
    if probed is None:
        return None
    constants = {k: v for k, v in probed.items() if k not in columns}
    for name in [k for k, col in columns.items() if col.dtype.is_integer()]:
        col = columns[name]
        if col.len() and bool((col == col[0]).all()):
            constants[name] = columns.pop(name)[0]
    return constants


Candidate = tuple[dict[str, pl.Series], dict[str, Any]]
"""Predicted per-row columns and the fields holding one value on every row."""


def _event_candidate(
    family: Family,
    selection: JsonlTable,
    s4: pl.LazyFrame | None,
    maps: Sequence[mmap.mmap],
    rules: RowRules,
    *,
    first_row: int = 0,
) -> Candidate | None:
    """Group/site events predicted from the selection rows (same order) and S4; the rows are
    the family's rows ``first_row ..`` (their timestamps follow the file's time law)."""
    f = selection.frame
    n = f.height
    ctr = "ctr_group" if family.name == "alias_pick_group" else "ctr_site"
    hi, lo = _words(f, f"{ctr}_hi"), _words(f, f"{ctr}_lo")
    if hi is None or lo is None:
        return None
    after_hi, after_lo = _after(hi, lo)
    ts = _ts_series(_lines_at(maps, 2), n, first=first_row)
    if ts is None:
        return None
    columns: dict[str, pl.Series] = {
        "ts_utc": ts,
        "merchant_id": f.get_column("merchant_id"),
        "utc_day": f.get_column("utc_day"),
        "tz_group_id": f.get_column("tz_group_id"),
        "rng_counter_before_hi": pl.Series(hi, dtype=pl.UInt64),
        "rng_counter_before_lo": pl.Series(lo, dtype=pl.UInt64),
        "rng_counter_after_hi": pl.Series(after_hi, dtype=pl.UInt64),
        "rng_counter_after_lo": pl.Series(after_lo, dtype=pl.UInt64),
    }
    if family.name == "alias_pick_group":
        if s4 is None:
            return None
        keys = f.select(
            "merchant_id",
            pl.col("utc_day").str.to_date("%Y-%m-%d", strict=False),
            "tz_group_id",
        )
        p = keys.join(
            s4.select("merchant_id", "utc_day", "tz_group_id", "p_group").collect(),
            on=["merchant_id", "utc_day", "tz_group_id"],
            how="left",
            maintain_order="left",
        ).get_column("p_group")
        if p.len() != n or p.null_count():
            return None
        columns["p_group"] = p
    else:
        columns["site_id"] = f.get_column("site_id")
    columns = {k: v.alias(k) for k, v in columns.items() if k in {r.name for r in rules.fields}}
    constants = _as_constants(columns, rules, maps)
    return None if constants is None else (columns, constants)


def _trace_segment(
    fams: Sequence[Family],
    counters: Sequence[tuple[np.ndarray, np.ndarray]],
    lines: Sequence[bytes],
    *,
    first: int = 0,
) -> pl.DataFrame | None:
    """One producer's trace rows: per row ``i`` of ``counters`` one row per family of
    ``fams`` (in that order) with the event's counters (``before`` from the log, ``after =
    before + 1``), running totals ``first + i + 1`` and timestamps by the time law of
    ``lines`` (the segment's first two lines) at segment row ``(first + i)·k + j``. None if
    the law cannot be read."""
    k = len(fams)
    n = len(counters[0][1])
    words = {
        name: np.empty(n * k, dtype=np.uint64)
        for name in (
            "rng_counter_before_hi",
            "rng_counter_before_lo",
            "rng_counter_after_hi",
            "rng_counter_after_lo",
        )
    }
    for j, (hi, lo) in enumerate(counters):
        after_hi, after_lo = _after(hi, lo)
        words["rng_counter_before_hi"][j::k] = hi
        words["rng_counter_before_lo"][j::k] = lo
        words["rng_counter_after_hi"][j::k] = after_hi
        words["rng_counter_after_lo"][j::k] = after_lo
    cols = [pl.Series(name, v, dtype=pl.UInt64) for name, v in words.items()]
    ordinal = np.arange(first + 1, first + n + 1, dtype=np.uint64)
    total = pl.Series(np.repeat(ordinal, k), dtype=pl.UInt64)
    cols += [total.alias(c) for c in ("draws_total", "blocks_total", "events_total")]
    # Family j of row i*k + j: module / label gathered from the k family names.
    slot = pl.Series(np.tile(np.arange(k, dtype=np.uint32), n))
    cols.append(pl.Series("module", [f.module for f in fams]).gather(slot))
    cols.append(pl.Series("substream_label", [f.substream_label for f in fams]).gather(slot))
    ts = _ts_series(lines, n * k, first=first * k)
    if ts is None:
        return None
    return pl.DataFrame(cols).with_columns(ts.alias("ts_utc"))


def _candidate(frame: pl.DataFrame, rules: RowRules, maps: Sequence[mmap.mmap]) -> Candidate | None:
    """``frame``'s rule fields as a candidate; the fields it lacks come from the probed
    constants of ``maps`` (run identity, …)."""
    names = {r.name for r in rules.fields}
    columns = {c: frame.get_column(c) for c in frame.columns if c in names}
    constants = _as_constants(columns, rules, maps)
    return None if constants is None else (columns, constants)


def s5_counters(frame: pl.DataFrame) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """The group and site ``(hi, lo)`` counter words of selection rows (None if incomplete)."""
    pairs = [
        (_words(frame, f"{c}_hi"), _words(frame, f"{c}_lo")) for c in ("ctr_group", "ctr_site")
    ]
    if any(w is None for pair in pairs for w in pair):
        return None
    return pairs  # type: ignore[return-value]


def _trace_candidate(
    selection: JsonlTable | None,
    edge: JsonlTable | None,
    maps: Sequence[mmap.mmap],
    rules: RowRules,
) -> Candidate | None:
    """Trace rows predicted from the router logs: per selection row its group then its site
    event (S5, arrival order), then one row per virtual edge-log row (S6), each with the
    event's counters (``before`` from the log, ``after = before + 1``) and running totals
    1..n per family. Built without the event files, so it runs beside their predictions."""
    segments: list[tuple[list[Family], list[tuple[np.ndarray, np.ndarray]] | None]] = []
    if selection is not None and selection.height:
        segments.append(
            (
                [FAMILIES["alias_pick_group"], FAMILIES["alias_pick_site"]],
                s5_counters(selection.frame),
            )
        )
    virtual = edge.frame.filter(pl.col("is_virtual")) if edge is not None else None
    if virtual is not None and virtual.height:
        hi, lo = _words(virtual, "ctr_edge_hi"), _words(virtual, "ctr_edge_lo")
        pairs = None if hi is None or lo is None else [(hi, lo)]
        segments.append(([FAMILIES["cdn_edge_pick"]], pairs))
    if not segments or any(pairs is None for _, pairs in segments):
        return None
    parts: list[pl.DataFrame] = []
    for index, (fams, counters) in enumerate(segments):
        assert counters is not None
        # Each segment's timestamps follow their own law (S5 and S6 count separately): the
        # S6 segment starts at the first line naming its module.
        pos = 0
        if index:
            pos = _s6_trace_start(maps)
            if pos < 0:
                return None
        part = _trace_segment(fams, counters, _lines_at(maps, 2, pos=pos))
        if part is None:
            return None
        parts.append(part)
    return _candidate(pl.concat(parts), rules, maps)


def _s6_trace_start(maps: Sequence[mmap.mmap]) -> int:
    """Byte offset of the trace's first S6 (``cdn_edge_pick``) line; -1 if none (or the
    trace is not one file)."""
    marker = f'"module": "{FAMILIES["cdn_edge_pick"].module}"'.encode()
    hit = maps[0].find(marker) if len(maps) == 1 else -1
    return -1 if hit < 0 else maps[0].rfind(b"\n", 0, hit) + 1


def _predicted_table(
    files: Sequence[LogFile],
    rules: RowRules,
    candidate: Callable[[Sequence[mmap.mmap]], tuple[dict[str, pl.Series], dict[str, Any]] | None],
) -> JsonlTable | None:
    """The table of a candidate proved against the files, or None."""

    def attempt(maps: Sequence[mmap.mmap], arrays: Sequence[np.ndarray]) -> _Proof | None:
        found = candidate(maps)
        if found is None:
            return None
        columns, constants = found
        return _prove(pl.DataFrame(columns), rules, constants, arrays)

    return _proved_table(files, rules, attempt)


def read_jsonl(
    files: Sequence[LogFile], rules: RowRules, *, validator: str, dataset: str
) -> JsonlTable:
    """Parse JSONL files (path order, blank lines ignored) under ``rules``; 400 on any break.

    Strict: unknown keys, wrong JSON types, integers outside uint64 and duplicate keys fail
    the parse. Byte-law files take the fast exact path (see above); otherwise each file is
    parsed in pieces of whole lines (:data:`_STRICT_PIECE`), so besides the table only one
    piece is in memory, and a failing physical line is looked for in its piece only (a log of
    a large run would otherwise be held whole, and searched line by line from its start).
    """
    fast = _fast_table(files, rules)
    if fast is not None:
        return fast
    parts: list[pa.Table] = []
    counts: list[int] = []
    for lf in files:
        tables = _parse_file(
            lf, _line_pieces(lf.path, _STRICT_PIECE), rules, validator=validator, dataset=dataset
        )
        counts.append(sum(t.num_rows for t in tables))
        parts.extend(tables)
    table = pa.concat_tables(parts) if parts else _empty_table(rules)
    del parts
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    offsets = np.concatenate(([0], np.cumsum(counts, dtype=np.int64))).astype(np.int64)
    return JsonlTable(frame, tuple(files), offsets)


class _LogReader:
    """:func:`read_jsonl` with read-ahead: the router logs are parsed (or predicted and
    proved) on worker threads while the S2/S3/S4 blocks and earlier checks run. A prefetched
    table (or the exception its read raised) is handed over exactly where the serial order of
    §4 asks for that file, so checks and their failure order are unchanged; files not
    prefetched are read on demand."""

    def __init__(self, pool: ThreadPoolExecutor | None = None) -> None:
        self._pool = pool
        self._jobs: dict[tuple[Any, ...], Future[JsonlTable]] = {}

    @staticmethod
    def _key(
        files: Sequence[LogFile], schema_ref: str, validator: str, dataset: str
    ) -> tuple[Any, ...]:
        return (tuple(f.rel for f in files), schema_ref, validator, dataset)

    def prefetch(
        self,
        files: Sequence[LogFile],
        schema_ref: str,
        *,
        validator: str,
        dataset: str,
        predict: Callable[[], JsonlTable | None] | None = None,
    ) -> Future[JsonlTable] | None:
        """Queue the read of ``files``; ``predict`` (optional) may supply the table without
        parsing (it must return the proved table or None, then the files are read)."""
        if self._pool is None or not files:
            return None

        rules = row_rules(schema_ref)

        def read(part: Sequence[LogFile]) -> JsonlTable:
            return read_jsonl(part, rules, validator=validator, dataset=dataset)

        def job() -> JsonlTable:
            if predict is not None:
                try:
                    table = predict()
                except Exception:  # a prediction is optional: the read below decides
                    table = None
                if table is not None:
                    return table
            return read(files)

        key = self._key(files, schema_ref, validator, dataset)
        if predict is None and len(files) > 1 and _total_size(files) >= _SPLIT_BYTES:
            # Day-partitioned logs: two halves read side by side, then joined in file order
            # (the first half's failure, if any, is the one raised, as in one read).
            halves = _split_by_size(files)
            parts = [self._pool.submit(read, half) for half in halves]
            fut = self._pool.submit(lambda: _concat_tables([p.result() for p in parts]))
        else:
            fut = self._pool.submit(job)
        self._jobs[key] = fut
        return fut

    def has(
        self, files: Sequence[LogFile], rules: RowRules, *, validator: str, dataset: str
    ) -> bool:
        """Whether ``files`` were queued for read-ahead (and not yet handed over)."""
        return self._key(files, rules.schema_ref, validator, dataset) in self._jobs

    def __call__(
        self, files: Sequence[LogFile], rules: RowRules, *, validator: str, dataset: str
    ) -> JsonlTable:
        job = self._jobs.pop(self._key(files, rules.schema_ref, validator, dataset), None)
        if job is not None:
            return job.result()
        return read_jsonl(files, rules, validator=validator, dataset=dataset)


_SPLIT_BYTES = 32 << 20
"""Multi-file logs at least this large are read as two halves on the two workers."""


def _total_size(files: Sequence[LogFile]) -> int:
    return sum(lf.path.stat().st_size for lf in files)


def _split_by_size(files: Sequence[LogFile]) -> list[list[LogFile]]:
    """Two consecutive, non-empty runs of files holding about half the bytes each."""
    sizes = np.array([lf.path.stat().st_size for lf in files], dtype=np.int64)
    cut = int(np.searchsorted(np.cumsum(sizes), sizes.sum() / 2)) + 1
    cut = min(max(cut, 1), len(files) - 1)
    return [list(files[:cut]), list(files[cut:])]


def _concat_tables(parts: Sequence[JsonlTable]) -> JsonlTable:
    """One table of consecutive file runs: rows, per-file offsets and the columns that hold
    the same single value in every part."""
    frame = pl.concat([t.frame for t in parts])
    offsets = [0]
    for t in parts:
        offsets += (t.offsets[1:] + offsets[-1]).tolist()
    rows = [t for t in parts if t.height]
    constant = frozenset.intersection(*(t.constant for t in rows)) if rows else frozenset()
    constant = frozenset(
        c for c in constant if all(t.frame[c][0] == rows[0].frame[c][0] for t in rows)
    )
    files = tuple(f for t in parts for f in t.files)
    return JsonlTable(frame, files, np.array(offsets, dtype=np.int64), constant)


def _predict_events(
    family: Family,
    files: Sequence[LogFile],
    selection: Future[JsonlTable] | None,
    s4: pl.LazyFrame | None,
) -> JsonlTable | None:
    if selection is None:
        return None
    sel = selection.result()
    rules = row_rules(family.schema_ref)
    return _predicted_table(
        files, rules, lambda maps: _event_candidate(family, sel, s4, maps, rules)
    )


def _predict_trace(
    files: Sequence[LogFile],
    selection: Future[JsonlTable] | None,
    edge: Future[JsonlTable] | None,
) -> JsonlTable | None:
    sel = selection.result() if selection is not None else None
    edg = edge.result() if edge is not None else None
    return _trace_from(files, sel, edg)


def _trace_from(
    files: Sequence[LogFile], selection: JsonlTable | None, edge: JsonlTable | None
) -> JsonlTable | None:
    """The trace predicted from the selection and edge logs and proved against ``files``."""
    rules = row_rules(_TRACE_ROW)
    return _predicted_table(
        files, rules, lambda maps: _trace_candidate(selection, edge, maps, rules)
    )


TRACE_READ_AHEAD_BYTES = 2 << 30
"""Router logs (bytes on disk) up to which the trace is predicted ahead, beside the event
tables. The default world's ~1 GB per seed is well inside; a ×10 world is not, and there the
trace waits for V-16, after the event tables have been cut to the columns still needed."""


def _trace_read_ahead(logs: RouterLogs) -> bool:
    files = [*logs.selection, *logs.edge, *(f for fs in logs.events.values() for f in fs)]
    if logs.trace is not None:
        files.append(logs.trace)
    return _total_size(files) <= TRACE_READ_AHEAD_BYTES


def _trace_now(
    trace: LogFile, selection: JsonlTable | None, edge: JsonlTable | None
) -> JsonlTable | None:
    """:func:`_trace_from` on the spot (V-16), where a failed prediction just means a read."""
    try:
        return _trace_from([trace], selection, edge)
    except Exception:  # a prediction is optional: reading the file decides
        return None


def _prefetch_router_logs(
    reader: _LogReader, logs: RouterLogs | None, s4: pl.LazyFrame | None
) -> None:
    """Queue every router log for read-ahead; S5's event families and the trace are predicted
    from the logs they echo (then proved). Jobs only wait on jobs queued before them, so two
    workers cannot deadlock."""
    if logs is None or not logs.present:
        return
    sel = (
        reader.prefetch(logs.selection, _SELECTION_ROW, validator="V-12", dataset=SELECTION_ID)
        if logs.selection
        else None
    )
    edge = (
        reader.prefetch(logs.edge, _EDGE_ROW, validator="V-12", dataset=EDGE_LOG_ID)
        if logs.edge
        else None
    )
    # The trace needs only the two router logs: queue it before the event families so the
    # largest prediction is not the last job of a worker. Above the read-ahead budget it is
    # predicted where V-16 needs it instead, from the slimmed selection and edge tables, so
    # it is never resident beside the full event tables (S7's peak at scale).
    if logs.trace is not None and _trace_read_ahead(logs):
        reader.prefetch(
            [logs.trace],
            _TRACE_ROW,
            validator="V-16",
            dataset=TRACE_ID,
            predict=partial(_predict_trace, [logs.trace], sel, edge),
        )
    for name in (*(S5_FAMILIES if logs.selection else ()), *(S6_FAMILIES if logs.edge else ())):
        family = FAMILIES[name]
        files = logs.events.get(name, ())
        reader.prefetch(
            files,
            family.schema_ref,
            validator="V-13" if name in S5_FAMILIES else "V-14",
            dataset=family.dataset_id,
            predict=partial(_predict_events, family, files, sel, s4)
            if name in S5_FAMILIES
            else None,
        )


_NULL_RULE = "is missing or null"
_FEW_VALUES = 256
"""A string column whose first rows show at most this many distinct values has its value
checks (pattern, enum, length, const) run on its distinct values first."""


def _clean_by_values(
    frame: pl.DataFrame, checks: Sequence[tuple[str, str, pl.Expr]], indices: Sequence[int]
) -> set[int]:
    """Indices of value checks (not null checks) on low-cardinality string columns that no
    distinct value violates: they cannot hit any row, so the full scan skips them."""
    clean: set[int] = set()
    by_column: dict[str, list[int]] = {}
    for i in indices:
        name, rule, _ = checks[i]
        if rule != _NULL_RULE and frame.schema.get(name) == pl.String:
            by_column.setdefault(name, []).append(i)
    for name, group in by_column.items():
        col = frame.get_column(name)
        if col.head(4096).n_unique() > _FEW_VALUES:
            continue
        values = col.unique().drop_nulls().to_frame()
        if values.height > _FEW_VALUES * 16:
            continue
        firsts = values.select([checks[i][2].arg_true().first().alias(f"c{i}") for i in group]).row(
            0
        )
        clean.update(i for i, idx in zip(group, firsts, strict=True) if idx is None)
    return clean


def _first_hit(
    frame: pl.DataFrame,
    checks: Sequence[tuple[str, str, pl.Expr]],
    constant: frozenset[str] = frozenset(),
) -> tuple[int, str, str] | None:
    """Smallest row index violating any check: ``(row, field, rule)`` (None if clean; ties go
    to the earlier check). Checks of ``constant`` columns run on the first row only (same
    answer: row 0 or none); value checks of low-cardinality string columns run on the
    distinct values first and only a violated one scans the rows."""
    if not checks or frame.height == 0:
        return None
    firsts: dict[int, int | None] = {}
    full = [i for i, c in enumerate(checks) if c[0] not in constant]
    clean = _clean_by_values(frame, checks, full)
    firsts.update(dict.fromkeys(clean))
    for sub, group in (
        (frame.head(1), [i for i, c in enumerate(checks) if c[0] in constant]),
        (frame, [i for i in full if i not in clean]),
    ):
        if group:
            row = sub.select([checks[i][2].arg_true().first().alias(f"c{i}") for i in group]).row(0)
            firsts.update(zip(group, row, strict=True))
    best: tuple[int, str, str] | None = None
    for i, (name, rule, _) in enumerate(checks):
        idx = firsts[i]
        if idx is not None and (best is None or idx < best[0]):
            best = (int(idx), name, rule)
    return best


def _scan_rows(
    table: JsonlTable,
    rules: RowRules,
    *,
    validator: str,
    dataset: str,
    expected: Sequence[tuple[str, Any, str]] = (),
) -> None:
    """Row schema (400) first, then each ``(field, value, code)`` equality in the given order.

    An expected field's own pattern/const is only evaluated on the rows that differ from the
    expected (schema-valid) value, so identity columns cost one equality each.
    """
    frame = table.frame
    expected_names = {name for name, _, _ in expected}
    checks = [
        (rule.name, text, expr)
        for rule in rules.fields
        for text, expr in rule.checks(values=rule.name not in expected_names)
    ]
    hits: list[tuple[int, str, str]] = []
    if (hit := _first_hit(frame, checks, table.constant)) is not None:
        hits.append(hit)
    mismatches: list[tuple[int, str, str, Any]] = []
    for name, value, code in expected:
        lit = pl.lit(value, dtype=frame.schema[name])
        if name in table.constant:  # one value on every row: all rows differ, or none
            differs = frame.height and frame.head(1).select(pl.col(name) != lit).item()
            rows = pl.Series(np.arange(frame.height if differs else 0, dtype=np.uint32))
        else:
            rows = frame.select((pl.col(name) != lit).arg_true()).to_series()
        if rows.len() == 0:
            continue
        sub = frame[rows]
        rule = rules.field(name)
        own = [(name, text, expr) for text, expr in rule.checks(const=False)]
        if (hit := _first_hit(sub, own)) is not None:
            hits.append((int(rows[hit[0]]), hit[1], hit[2]))
        else:
            mismatches.append((int(rows[0]), name, code, value))
    if hits:
        row, name, rule = min(hits)
        raise _at_row(
            table,
            row,
            validator,
            "400",
            f"{dataset} row breaks {rules.schema_ref}: field {name} {rule}",
            dataset=dataset,
            field=name,
        )
    if mismatches:
        row, name, code, value = mismatches[0]
        where = table.locate(row)
        actual = frame[name][row]
        raise AuditError(
            validator,
            code,
            f"{dataset} field {name} = {actual!r} differs from the run's {value!r}",
            dataset=dataset,
            key=f"{where.get('file')}:{where.get('line')}",
            field=name,
            expected=value,
            actual=actual,
            **where,
        )


def _u64(frame: pl.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy().astype(np.uint64, copy=False)


def _counter_checks(table: JsonlTable, *, validator: str, dataset: str) -> None:
    """Budget (402), wrap (404), ``after − before == blocks`` and strict increase (403)."""
    frame = table.frame
    budget = frame.select(
        ((pl.col("draws") != "1") | (pl.col("blocks") != 1)).arg_true().first()
    ).item()
    if budget is not None:
        raise _at_row(
            table,
            int(budget),
            validator,
            "402",
            f"{dataset} event consumes draws={frame['draws'][budget]!r}, "
            f"blocks={frame['blocks'][budget]} (budget is draws '1', blocks 1)",
            dataset=dataset,
        )
    bh, bl = _u64(frame, "rng_counter_before_hi"), _u64(frame, "rng_counter_before_lo")
    ah, al = _u64(frame, "rng_counter_after_hi"), _u64(frame, "rng_counter_after_lo")
    blocks = _u64(frame, "blocks")
    wrap = (ah < bh) | ((ah == bh) & (al < bl))
    if wrap.any():
        row = int(np.flatnonzero(wrap)[0])
        raise _at_row(
            table,
            row,
            validator,
            "404",
            f"{dataset} counter wraps: after < before",
            dataset=dataset,
        )
    borrow = (al < bl).astype(np.uint64)
    diff_hi = ah - bh - borrow
    diff_lo = al - bl
    step = (diff_hi != 0) | (diff_lo != blocks)
    if step.any():
        row = int(np.flatnonzero(step)[0])
        raise _at_row(
            table,
            row,
            validator,
            "403",
            f"{dataset} counter advance after − before differs from blocks",
            dataset=dataset,
        )
    if ah.size > 1:
        up = (ah[1:] > ah[:-1]) | ((ah[1:] == ah[:-1]) & (al[1:] > al[:-1]))
        if not up.all():
            row = int(np.flatnonzero(~up)[0]) + 1
            raise _at_row(
                table,
                row,
                validator,
                "403",
                f"{dataset} after-counter does not strictly increase in file order",
                dataset=dataset,
            )


# --- inputs and outputs of the pure core ----------------------------------------------------


@dataclass(frozen=True)
class RouterLogs:
    """The current run's router evidence (``[seed, parameter_hash, run_id]``), paths sorted."""

    parameter_hash: str
    run_id: str
    selection: tuple[LogFile, ...] = ()
    edge: tuple[LogFile, ...] = ()
    events: Mapping[str, tuple[LogFile, ...]] = field(default_factory=dict)
    trace: LogFile | None = None
    audit: LogFile | None = None

    @property
    def present(self) -> bool:
        return bool(self.selection or self.edge)

    def fingerprint(self) -> list[tuple[str, int]]:
        """``(path, size)`` of every file: a cheap input-version ingredient."""
        files = [*self.selection, *self.edge, *(f for fs in self.events.values() for f in fs)]
        files += [f for f in (self.trace, self.audit) if f is not None]
        return sorted((f.rel, f.path.stat().st_size) for f in files)


@dataclass(frozen=True)
class S7Inputs:
    """Everything V-04..V-17 read, already resolved through the dictionary and S0 evidence.

    ``blob`` is any bytes-like object (``bytes`` or a read-only ``mmap``); only the sampled
    slices are read from it. ``blob_sha256`` is its H1 digest (streamed by the caller).
    """

    seed: int
    manifest_fingerprint: str
    created_utc: str
    catalogue_resolution: Mapping[str, str]
    alias_policy: AliasLayoutPolicyV1
    alias_policy_digest: str
    route_policy: Mapping[str, Any]
    edge_policy: Mapping[str, Any]
    index_bytes: bytes
    blob: Any
    blob_sha256: str
    s1: pl.LazyFrame
    s3: pl.LazyFrame
    s4: pl.LazyFrame
    inputs_digest: Mapping[str, Any]
    report_rel: str
    router: RouterLogs | None = None
    site_timezones: pl.LazyFrame | None = None
    site_timezones_note: str = "site_timezones is not available"


@dataclass(frozen=True)
class S7Build:
    """The assembled report, its canonical bytes, metrics and the run-report samples."""

    report: Mapping[str, Any]
    report_bytes: bytes
    metrics: Mapping[str, Any]
    samples: Mapping[str, Any]
    failure: AuditError | None
    durations_ms: Mapping[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.failure is None


@dataclass
class _State:
    metrics: dict[str, Any] = field(default_factory=zero_metrics)
    samples: dict[str, Any] = field(default_factory=lambda: {"alias_decode": [], "group_norm": []})
    durations: dict[str, int] = field(default_factory=dict)


# --- S2 block: V-04..V-07 ------------------------------------------------------------------


@dataclass(frozen=True)
class _IndexRows:
    doc: Mapping[str, Any]
    mid: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    sites: np.ndarray
    qbits: np.ndarray
    checksum: tuple[str, ...]
    sample: np.ndarray
    slices: Mapping[int, bytes]


def _u32(endianness: str) -> np.dtype:
    return np.dtype("<u4" if endianness == "little" else ">u4")


def _index_errors(doc: Any) -> list[str]:
    """``#/plan/s2_alias_index``: header by JSON Schema, merchant rows vectorised.

    Per-row JSON-Schema validation of tens of thousands of rows is the slow part (§10), so
    the rows go through the same strict compiled-rules path as the JSONL evidence.
    """
    rows = doc.get("merchants") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        return json_errors(INDEX_SCHEMA_REF, doc)
    errors = json_errors(INDEX_SCHEMA_REF, {**doc, "merchants": []})
    if errors or not rows:
        return errors
    rules = row_rules(f"{INDEX_SCHEMA_REF}/properties/merchants/items")
    data = "\n".join(json.dumps(r) for r in rows).encode("ascii")
    try:
        frame = pl.from_arrow(_arrow_parse(data, rules))
    except (pa.ArrowInvalid, ValueError):
        line, detail = _locate_bad_line(data, rules)
        return [f"merchants/{line - 1}: {detail}"]
    assert isinstance(frame, pl.DataFrame)
    checks = [(r.name, text, expr) for r in rules.fields for text, expr in r.checks()]
    if (hit := _first_hit(frame, checks)) is not None:
        return [f"merchants/{hit[0]}/{hit[1]}: {hit[2]}"]
    return []


def _v04(inputs: S7Inputs) -> _IndexRows:
    """Index schema/counts/uniqueness (200); blob size, row length, sampled slices (201)."""
    policy = inputs.alias_policy
    try:
        doc = json.loads(inputs.index_bytes)
    except ValueError as exc:
        raise AuditError("V-04", "200", f"index.json is not JSON: {exc}", dataset=INDEX_ID) from exc
    errors = _index_errors(doc)
    if errors:
        raise AuditError(
            "V-04",
            "200",
            f"index fails {INDEX_SCHEMA_REF}: {errors[0]}",
            dataset=INDEX_ID,
            schema_errors=errors[:MAX_KEYS],
        )
    rows = doc["merchants"]
    if doc["merchants_count"] != len(rows):
        raise AuditError(
            "V-04",
            "200",
            f"merchants_count={doc['merchants_count']} != {len(rows)} merchant rows",
            dataset=INDEX_ID,
        )
    try:
        mid = np.array([r["merchant_id"] for r in rows], dtype=np.uint64)
        cols = {
            k: np.array([r[k] for r in rows], dtype=np.int64)
            for k in ("offset", "length", "sites", "quantised_bits")
        }
    except OverflowError as exc:
        raise AuditError(
            "V-04", "200", f"index integer out of range: {exc}", dataset=INDEX_ID
        ) from exc
    uniq, counts = np.unique(mid, return_counts=True)
    if uniq.size != mid.size:
        raise AuditError(
            "V-04",
            "200",
            "merchant_id is not unique in the index",
            dataset=INDEX_ID,
            key=f"merchant_id={int(uniq[counts > 1][0])}",
            merchant_ids=uniq[counts > 1][:MAX_KEYS].tolist(),
        )
    size = len(inputs.blob)
    if doc["blob_size_bytes"] != size:
        raise AuditError(
            "V-04",
            "201",
            f"blob is {size} bytes, index blob_size_bytes={doc['blob_size_bytes']}",
            dataset=BLOB_ID,
        )
    payload = HEADER_BYTES + 8 * cols["sites"]
    align = policy.alignment_bytes
    expected_len = payload
    if policy.padding_rule.pad_included_in_slice_length:
        expected_len = payload + (align - payload % align) % align
    bad_len = np.flatnonzero(cols["length"] != expected_len)
    if bad_len.size:
        ids = np.sort(mid[bad_len])[:MAX_KEYS].tolist()
        raise AuditError(
            "V-04",
            "201",
            "row length differs from the slice payload 16 + 8·sites (padding rule)",
            dataset=INDEX_ID,
            key=f"merchant_id={ids[0]}",
            merchant_ids=ids,
        )
    sample = np.argsort(mid, kind="stable")[: min(SAMPLE_MERCHANTS, mid.size)]
    u32 = _u32(policy.endianness)
    slices: dict[int, bytes] = {}
    for i in sample.tolist():
        key = f"merchant_id={int(mid[i])}"
        off, n = int(cols["offset"][i]), int(payload[i])
        if off + n > size:
            raise AuditError(
                "V-04",
                "201",
                f"slice [{off}, {off + n}) is not readable in a {size}-byte blob",
                dataset=BLOB_ID,
                key=key,
            )
        chunk = bytes(inputs.blob[off : off + n])
        if hashlib.sha256(chunk).hexdigest() != rows[i]["checksum"]:
            raise AuditError(
                "V-04",
                "201",
                "slice SHA-256 differs from the index checksum",
                dataset=BLOB_ID,
                key=key,
                merchant_id=int(mid[i]),
            )
        n_sites, _q, res0, res1 = (int(v) for v in np.frombuffer(chunk[:HEADER_BYTES], dtype=u32))
        if n_sites != int(cols["sites"][i]) or res0 or res1:
            raise AuditError(
                "V-04",
                "201",
                f"slice header n_sites={n_sites}, reserved=({res0}, {res1}); "
                f"index sites={int(cols['sites'][i])}",
                dataset=BLOB_ID,
                key=key,
                merchant_id=int(mid[i]),
            )
        slices[i] = chunk
    return _IndexRows(
        doc=doc,
        mid=mid,
        offset=cols["offset"],
        length=cols["length"],
        sites=cols["sites"],
        qbits=cols["quantised_bits"],
        checksum=tuple(r["checksum"] for r in rows),
        sample=sample,
        slices=slices,
    )


def _v05(inputs: S7Inputs, ix: _IndexRows) -> None:
    """Blob and policy digests (202); layout echo and both bit depths (205)."""
    policy = inputs.alias_policy
    doc = ix.doc
    if inputs.blob_sha256 != doc["blob_sha256"]:
        raise AuditError(
            "V-05",
            "202",
            "SHA-256 of alias.bin differs from index blob_sha256",
            dataset=BLOB_ID,
            expected=doc["blob_sha256"],
            actual=inputs.blob_sha256,
        )
    if doc["policy_digest"] != inputs.alias_policy_digest:
        raise AuditError(
            "V-05",
            "202",
            "index policy_digest differs from the sealed alias_layout_policy_v1 digest",
            dataset=INDEX_ID,
            expected=inputs.alias_policy_digest,
            actual=doc["policy_digest"],
        )
    echo = [
        f
        for f in ("layout_version", "endianness", "alignment_bytes", "quantised_bits")
        if doc[f] != getattr(policy, f)
    ]
    if echo:
        raise AuditError(
            "V-05",
            "205",
            f"index header {echo} differ from the policy",
            dataset=INDEX_ID,
            key=echo[0],
            fields=echo,
        )
    off_bits = np.flatnonzero(ix.qbits != policy.quantised_bits)
    if off_bits.size:
        ids = np.sort(ix.mid[off_bits])[:MAX_KEYS].tolist()
        raise AuditError(
            "V-05",
            "205",
            f"row quantised_bits differs from policy quantised_bits={policy.quantised_bits}",
            dataset=INDEX_ID,
            key=f"merchant_id={ids[0]}",
            merchant_ids=ids,
        )
    q_bits = getattr(policy.record_layout, "prob_qbits", None)
    if isinstance(q_bits, bool) or not isinstance(q_bits, int) or not 1 <= q_bits <= 32:
        raise AuditError(
            "V-05",
            "205",
            f"record_layout.prob_qbits={q_bits!r} is not in [1, 32]",
            dataset=ALIAS_POLICY,
        )
    u32 = _u32(policy.endianness)
    for i in ix.sample.tolist():
        q = int(np.frombuffer(ix.slices[i][4:8], dtype=u32)[0])
        if q != q_bits:
            raise AuditError(
                "V-05",
                "205",
                f"slice header prob_qbits={q} != record_layout.prob_qbits={q_bits}",
                dataset=BLOB_ID,
                key=f"merchant_id={int(ix.mid[i])}",
            )


def _v06(inputs: S7Inputs, ix: _IndexRows) -> None:
    """Offset order: alignment and length (204); overlap and bounds (203)."""
    size = len(inputs.blob)
    align = inputs.alias_policy.alignment_bytes
    order = np.lexsort((ix.mid, ix.offset))
    off, length, mid = ix.offset[order], ix.length[order], ix.mid[order]
    end = off + length
    prev_end = np.concatenate(([0], np.maximum.accumulate(end)[:-1])) if end.size else end
    overlap = (off < prev_end) | (end > size)
    misplaced = (off % align != 0) | (length < 1)
    codes = [c for c, m in (("203", overlap), ("204", misplaced)) if m.any()]
    if codes:
        bad = np.flatnonzero(overlap | misplaced)
        ids = mid[bad][:MAX_KEYS].tolist()
        raise AuditError(
            "V-06",
            codes,
            f"{int(overlap.sum())} slice(s) overlap or exceed the blob, "
            f"{int(misplaced.sum())} misaligned or empty (alignment {align})",
            dataset=INDEX_ID,
            key=f"merchant_id={ids[0]}",
            merchant_ids=ids,
        )


def _v07(inputs: S7Inputs, ix: _IndexRows, st: _State) -> None:
    """Decode round-trip of the sampled slices vs S1 ``p_weight`` within ε_q (206)."""
    policy = inputs.alias_policy
    eps_q = float(policy.quantisation_epsilon)
    sample_ids = ix.mid[ix.sample]
    try:
        s1 = (
            inputs.s1.filter(
                pl.col("merchant_id").is_in(pl.Series(sample_ids, dtype=pl.UInt64).implode())
            )
            .select("merchant_id", "legal_country_iso", "site_order", "p_weight")
            .sort("merchant_id", "legal_country_iso", "site_order")
            .collect()
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise AuditError(
            "V-07", "206", f"s1_site_weights unreadable: {exc}", dataset=S1_ID
        ) from exc
    mids = s1["merchant_id"].to_numpy()
    weights = s1["p_weight"].to_numpy()
    starts = np.searchsorted(mids, sample_ids, side="left")
    ends = np.searchsorted(mids, sample_ids, side="right")
    records: list[dict[str, Any]] = []
    offenders: list[int] = []
    reasons: list[str] = []
    for i, a, b in zip(ix.sample.tolist(), starts.tolist(), ends.tolist(), strict=True):
        m = int(ix.mid[i])
        try:
            parsed = parse_slice(ix.slices[i], endianness=policy.endianness)  # type: ignore[arg-type]
        except AliasSliceError as exc:
            offenders.append(m)
            reasons.append(f"merchant_id={m}: {exc}")
            continue
        if b - a != parsed.n_sites:
            offenders.append(m)
            reasons.append(f"merchant_id={m}: {b - a} S1 rows for {parsed.n_sites} slots")
            continue
        p_hat = decode_probabilities(parsed.prob_q, parsed.alias, parsed.prob_qbits)
        sum_p = float(p_hat.sum())
        worst = float(np.abs(p_hat - weights[a:b]).max())
        records.append({"merchant_id": m, "max_abs_delta": worst, "sum_p_hat": sum_p})
        if abs(sum_p - 1.0) > eps_q or worst > eps_q:
            offenders.append(m)
            reasons.append(f"merchant_id={m}: max|p̂−p|={worst!r}, Σp̂={sum_p!r}")
    st.samples["alias_decode"] = records
    st.metrics["alias_decode_max_abs_delta"] = max(
        (r["max_abs_delta"] for r in records), default=0.0
    )
    if offenders:
        raise AuditError(
            "V-07",
            "206",
            f"alias decode incoherent within ε_q={eps_q!r}: {reasons[0]}",
            dataset=BLOB_ID,
            key=f"merchant_id={offenders[0]}",
            merchant_ids=offenders[:MAX_KEYS],
        )


def _s2_block(inputs: S7Inputs, ledger: AuditLedger, st: _State) -> None:
    t0 = time.perf_counter()
    ix = _v04(inputs)
    ledger.passed("V-04")
    _v05(inputs, ix)
    ledger.passed("V-05")
    _v06(inputs, ix)
    ledger.passed("V-06")
    _v07(inputs, ix, st)
    ledger.passed("V-07")
    st.durations["s2_ms"] = round((time.perf_counter() - t0) * 1000)


# --- S3/S4 block: V-08..V-11 ---------------------------------------------------------------

_MD = ("merchant_id", "utc_day")
_MDG = ("merchant_id", "utc_day", "tz_group_id")


def _keys(frame: pl.DataFrame, cols: Sequence[str]) -> list[dict[str, Any]]:
    return [_jsonable(r) for r in frame.select(cols).sort(cols).head(MAX_KEYS).to_dicts()]


def _segment_sums(
    frame: pl.DataFrame, column: str, *, in_pk_order: bool = False
) -> tuple[pl.DataFrame, np.ndarray]:
    """Per (merchant_id, utc_day) sum of ``column`` in PK order (sequential, deterministic).
    ``in_pk_order``: the rows are known to be in strictly increasing PK order already."""
    ordered = frame if in_pk_order else frame.sort(list(_MDG))
    if ordered.height == 0:
        return ordered.select(_MD), np.zeros(0)
    m = ordered["merchant_id"].to_numpy()
    d = ordered["utc_day"].cast(pl.Int32).to_numpy()
    starts = np.flatnonzero(np.r_[True, (m[1:] != m[:-1]) | (d[1:] != d[:-1])])
    sums = np.add.reduceat(ordered[column].to_numpy().astype(np.float64), starts)
    return ordered.select(_MD)[starts], sums


def _pk_aligned(s3: pl.DataFrame, s4: pl.DataFrame) -> bool:
    """Whether S4's rows are in strictly increasing (merchant_id, utc_day, tz_group_id) order,
    without nulls, and S3 holds exactly the same keys row for row.

    Both are published in PK order, so this is the normal case. Then the V-08 key sets are
    equal, V-09 pairs the rows in place, no key repeats (V-11a) and the per-merchant-day sums
    need no sort; any other layout takes the general path (joins, sort), which also words the
    failures.
    """
    if s3.height != s4.height or s4.height == 0:
        return False
    keys = s4.select(_MDG)
    if keys.null_count().sum_horizontal().item() or not keys.equals(s3.select(_MDG)):
        return False
    m, d, g = (pl.col(c) for c in _MDG)
    nxt = [c.shift(-1) for c in (m, d, g)]
    increasing = (nxt[0] > m) | ((nxt[0] == m) & ((nxt[1] > d) | ((nxt[1] == d) & (nxt[2] > g))))
    return bool(keys.select(increasing.head(keys.height - 1).all()).item())


def _s3_s4_block(inputs: S7Inputs, ledger: AuditLedger, st: _State) -> None:
    t0 = time.perf_counter()
    try:
        s3 = inputs.s3.select(*_MDG, "gamma").collect()
        s4 = inputs.s4.select(*_MDG, "p_group", "base_share", "gamma").collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise AuditError(
            "V-08", "300", f"S3/S4 partition unreadable: {exc}", dataset=S4_ID
        ) from exc

    aligned = _pk_aligned(s3, s4)
    # V-08: day grid and group sets (equal by construction when the keys align row for row).
    for cols, what in (
        ()
        if aligned
        else (
            (_MD, "(merchant_id, utc_day)"),
            (_MDG, "(merchant_id, utc_day, tz_group_id)"),
        )
    ):
        a = s3.select(cols).unique()
        b = s4.select(cols).unique()
        only3 = a.join(b, on=list(cols), how="anti", nulls_equal=True)
        only4 = b.join(a, on=list(cols), how="anti", nulls_equal=True)
        if only3.height or only4.height:
            first = _keys(only3 if only3.height else only4, cols)[0]
            raise AuditError(
                "V-08",
                "300",
                f"{what} sets differ: {only3.height} only in S3, {only4.height} only in S4",
                dataset=S4_ID,
                key=json.dumps(first, sort_keys=True),
                only_in_s3=_keys(only3, cols),
                only_in_s4=_keys(only4, cols),
            )
    ledger.passed("V-08")

    # V-09: gamma echo, bitwise.
    if aligned:
        joined = s4.select(*_MDG, "gamma").with_columns(s3.get_column("gamma").alias("gamma_s3"))
    else:
        joined = s4.select(*_MDG, "gamma").join(
            s3.select(*_MDG, "gamma"), on=list(_MDG), how="inner", suffix="_s3"
        )
    g4 = joined["gamma"].to_numpy().astype(np.float64).view(np.uint64)
    g3 = joined["gamma_s3"].to_numpy().astype(np.float64).view(np.uint64)
    bad = np.flatnonzero(g4 != g3)
    if bad.size:
        rows = joined[bad]
        first = _keys(rows, _MDG)[0]
        raise AuditError(
            "V-09",
            "301",
            f"{bad.size} S4 gamma value(s) are not bitwise equal to S3 gamma",
            dataset=S4_ID,
            key=json.dumps(first, sort_keys=True),
            keys=_keys(rows, _MDG),
        )
    ledger.passed("V-09")

    # V-10: Σ_g p_group = 1 per merchant-day.
    md, sums = _segment_sums(s4, "p_group", in_pk_order=aligned)
    err = np.abs(sums - 1.0)
    st.metrics["max_abs_mass_error_s4"] = float(err.max()) if err.size else 0.0
    st.samples["group_norm"] = [
        {"merchant_id": int(m), "utc_day": d.isoformat(), "sum_p_group": float(s)}
        for m, d, s in zip(
            md["merchant_id"].head(GROUP_NORM_SAMPLES).to_list(),
            md["utc_day"].head(GROUP_NORM_SAMPLES).to_list(),
            sums[:GROUP_NORM_SAMPLES].tolist(),
            strict=True,
        )
    ]
    over = np.flatnonzero(~(err <= MASS_TOLERANCE))
    if over.size:
        first = _keys(md[over], _MD)[0]
        raise AuditError(
            "V-10",
            "302",
            f"{over.size} merchant-day(s) with |Σ p_group − 1| > {MASS_TOLERANCE} "
            f"(max {float(err.max())!r})",
            dataset=S4_ID,
            key=json.dumps(first, sort_keys=True),
            keys=_keys(md[over], _MD),
        )
    ledger.passed("V-10")

    # V-11: (a) PK uniqueness, (b) Σ_g base_share = 1 per merchant-day.
    codes: list[str] = []
    reasons: list[str] = []
    context: dict[str, Any] = {}
    for name, frame in () if aligned else (("s3", s3), ("s4", s4)):
        dup = frame.select(_MDG).filter(pl.struct(*_MDG).is_duplicated())
        if dup.height:
            codes.append("303")
            reasons.append(f"{name} primary key (merchant_id, utc_day, tz_group_id) repeats")
            context[f"duplicate_{name}"] = _keys(dup.unique(), _MDG)
    md_b, sums_b = _segment_sums(s4, "base_share", in_pk_order=aligned)
    over_b = np.flatnonzero(~(np.abs(sums_b - 1.0) <= MASS_TOLERANCE))
    if over_b.size:
        codes.append("304")
        reasons.append(f"{over_b.size} merchant-day(s) with |Σ base_share − 1| > {MASS_TOLERANCE}")
        context["base_share_keys"] = _keys(md_b[over_b], _MD)
    if codes:
        raise AuditError("V-11", sorted(set(codes)), "; ".join(reasons), dataset=S4_ID, **context)
    ledger.passed("V-11")
    st.metrics["merchants_total"] = int(s4["merchant_id"].n_unique())
    st.metrics["groups_total"] = int(s4["tz_group_id"].n_unique())
    st.metrics["days_total"] = int(s4["utc_day"].n_unique())
    st.durations["s3_s4_ms"] = round((time.perf_counter() - t0) * 1000)


# --- router block: V-12..V-16 ---------------------------------------------------------------


def _stream_id(route_policy: Mapping[str, Any], stream: str) -> str:
    return str(route_policy["streams"][stream]["rng_stream_id"])


def _read_router_log(
    files: Sequence[LogFile], dataset: str, schema_ref: str, inputs: S7Inputs, reader: _LogReader
) -> JsonlTable:
    """V-12 for one router log: parse + schema (400), lineage (503), day partition, order (401)."""
    rules = row_rules(schema_ref)
    table = reader(files, rules, validator="V-12", dataset=dataset)
    _scan_rows(
        table,
        rules,
        validator="V-12",
        dataset=dataset,
        expected=(
            ("manifest_fingerprint", inputs.manifest_fingerprint, "503"),
            ("created_utc", inputs.created_utc, "503"),
        ),
    )
    frame = table.frame
    part_day = table.file_column([f.utc_day for f in table.files], pl.String)
    off_day = frame.select((pl.col("utc_day") != part_day).arg_true().first()).item()
    if off_day is not None:
        raise _at_row(
            table,
            int(off_day),
            "V-12",
            "503",
            f"{dataset} row utc_day={frame['utc_day'][off_day]!r} differs from its partition",
            dataset=dataset,
        )
    ts = frame["utc_timestamp"]
    back = frame.select((pl.col("utc_timestamp") < ts.shift(1)).arg_true().first()).item()
    if back is not None:
        raise _at_row(
            table,
            int(back),
            "V-12",
            "401",
            f"{dataset} utc_timestamp decreases ({ts[int(back) - 1]} → {ts[int(back)]})",
            dataset=dataset,
        )
    return table


def _read_family(
    family: Family,
    logs: RouterLogs,
    inputs: S7Inputs,
    validator: str,
    *,
    rows_expected: int,
    reader: _LogReader,
) -> JsonlTable:
    """Event scan: presence, schema (400), identity (503), module/label (405), budget, counters.

    A family without files is only accepted when its router log has no rows to account for.
    """
    files = logs.events.get(family.name, ())
    if not files and rows_expected == 0:
        return read_jsonl((), row_rules(family.schema_ref), validator=validator, dataset="")
    if not files:
        raise AuditError(
            validator,
            "402",
            f"rng_event_{family.name} has no part-*.jsonl for the run "
            "(required with the router log)",
            dataset=family.dataset_id,
        )
    rules = row_rules(family.schema_ref)
    table = reader(files, rules, validator=validator, dataset=family.dataset_id)
    check_events(table, family, logs, inputs, validator)
    return table


def check_events(
    table: JsonlTable, family: Family, logs: RouterLogs, inputs: S7Inputs, validator: str
) -> None:
    """An event table's rows: schema (400), identity (503), module/label (405), budget and
    counters (402/403/404)."""
    _scan_rows(
        table,
        row_rules(family.schema_ref),
        validator=validator,
        dataset=family.dataset_id,
        expected=(
            ("run_id", logs.run_id, "503"),
            ("seed", inputs.seed, "503"),
            ("parameter_hash", logs.parameter_hash, "503"),
            ("manifest_fingerprint", inputs.manifest_fingerprint, "503"),
            ("module", family.module, "405"),
            ("substream_label", family.substream_label, "405"),
        ),
    )
    _counter_checks(table, validator=validator, dataset=family.dataset_id)


def _first_diff(
    left: pl.DataFrame, right: pl.DataFrame, pairs: Sequence[tuple[str, str]]
) -> tuple[int, str] | None:
    """First row where any ``left[a] != right[b]`` (aligned frames), with the column name."""
    best: tuple[int, str] | None = None
    for a, b in pairs:
        hit = (left[a] != right[b]).arg_true()
        if hit.len() and (best is None or int(hit[0]) < best[0]):
            best = (int(hit[0]), a)
    return best


_S5_LINEAGE: Mapping[str, Sequence[tuple[str, str]]] = {
    "alias_pick_group": (
        ("rng_counter_before_hi", "ctr_group_hi"),
        ("rng_counter_before_lo", "ctr_group_lo"),
        ("merchant_id", "merchant_id"),
        ("utc_day", "utc_day"),
        ("tz_group_id", "tz_group_id"),
    ),
    "alias_pick_site": (
        ("rng_counter_before_hi", "ctr_site_hi"),
        ("rng_counter_before_lo", "ctr_site_lo"),
        ("merchant_id", "merchant_id"),
        ("utc_day", "utc_day"),
        ("tz_group_id", "tz_group_id"),
        ("site_id", "site_id"),
    ),
}
"""Per S5 family: (event column, selection column) pairs equal on aligned rows (V-13)."""


def s5_lineage(sel: JsonlTable, group: pl.DataFrame, site: pl.DataFrame) -> None:
    """V-13 402: each selection row and its group / site event (same position) agree on the
    counters and keys. Checked in this order, raising at the first row of the first check
    that differs: group counters, site counters, group keys, site keys."""
    for pass_ in (slice(0, 2), slice(2, None)):
        for name, frame in (("alias_pick_group", group), ("alias_pick_site", site)):
            hit = _first_diff(frame, sel.frame, _S5_LINEAGE[name][pass_])
            if hit is not None:
                raise _at_row(
                    sel,
                    hit[0],
                    "V-13",
                    "402",
                    f"selection row {hit[0]} and its {name} event disagree on {hit[1]} "
                    "(each selection consumes exactly its group and site draw)",
                    dataset=SELECTION_ID,
                    field=hit[1],
                )


def check_stream(table: JsonlTable, inputs: S7Inputs, validator: Literal["V-13", "V-14"]) -> None:
    """405: every row of the selection (V-13) or edge log (V-14) names the policy's stream."""
    stream_key, dataset = (
        ("routing_selection", SELECTION_ID)
        if validator == "V-13"
        else ("routing_edge", EDGE_LOG_ID)
    )
    stream = _stream_id(inputs.route_policy, stream_key)
    off = table.frame.select((pl.col("rng_stream_id") != stream).arg_true().first()).item()
    if off is not None:
        raise _at_row(
            table,
            int(off),
            validator,
            "405",
            f"{dataset} rng_stream_id={table.frame['rng_stream_id'][off]!r} != policy {stream!r}",
            dataset=dataset,
        )


def _v13(
    inputs: S7Inputs, logs: RouterLogs, sel: JsonlTable, reader: _LogReader
) -> dict[str, JsonlTable]:
    """S5: stream id (405), both event scans, counts (402), per-arrival draw lineage (402)."""
    check_stream(sel, inputs, "V-13")
    # Each family is cut to the columns the checks after its scan read (lineage here, the
    # counters in V-16) before the next is read: at scale the full event tables are S7's peak.
    tables = {
        name: _slim_table(
            _read_family(
                FAMILIES[name], logs, inputs, "V-13", rows_expected=sel.height, reader=reader
            ),
            (*_COUNTER_COLUMNS, *(column for column, _ in _S5_LINEAGE[name])),
        )
        for name in S5_FAMILIES
    }
    g, s = tables["alias_pick_group"], tables["alias_pick_site"]
    if not g.height == s.height == sel.height:
        raise AuditError(
            "V-13",
            "402",
            f"{g.height} alias_pick_group events, {s.height} alias_pick_site events, "
            f"{sel.height} selection rows (must be equal: 2 draws per selection)",
            dataset="rng_event_alias_pick_group",
            group_events=g.height,
            site_events=s.height,
            selections=sel.height,
        )
    s5_lineage(sel, g.frame, s.frame)
    return tables


def _v14(
    inputs: S7Inputs, logs: RouterLogs, edge: JsonlTable, reader: _LogReader
) -> tuple[JsonlTable, int]:
    """S6: stream id (405), ``cdn_edge_pick`` scan, count vs virtual rows (402), lineage (402)."""
    check_stream(edge, inputs, "V-14")
    virtual = edge.frame.filter(pl.col("is_virtual"))
    events = _read_family(
        FAMILIES["cdn_edge_pick"],
        logs,
        inputs,
        "V-14",
        rows_expected=virtual.height,
        reader=reader,
    )
    if events.height != virtual.height:
        raise AuditError(
            "V-14",
            "402",
            f"{events.height} cdn_edge_pick events for {virtual.height} virtual edge-log rows",
            dataset="rng_event_cdn_edge_pick",
            edge_events=events.height,
            virtual_total=virtual.height,
        )
    edge_lineage(events, virtual)
    return events, virtual.height


def edge_lineage(events: JsonlTable, virtual: pl.DataFrame) -> None:
    """V-14 402: each ``cdn_edge_pick`` event and its virtual edge-log row (same position)
    agree on the counter and the merchant (an event without ``merchant_id`` takes the row's)."""
    ev = events.frame.with_columns(pl.col("merchant_id").fill_null(virtual["merchant_id"]))
    hit = _first_diff(
        ev,
        virtual,
        [
            ("rng_counter_before_hi", "ctr_edge_hi"),
            ("rng_counter_before_lo", "ctr_edge_lo"),
            ("merchant_id", "merchant_id"),
        ],
    )
    if hit is not None:
        raise _at_row(
            events,
            hit[0],
            "V-14",
            "402",
            f"cdn_edge_pick event {hit[0]} and its virtual edge-log row disagree on {hit[1]}",
            dataset="rng_event_cdn_edge_pick",
            field=hit[1],
        )


def _v16(
    inputs: S7Inputs,
    logs: RouterLogs,
    families: Mapping[str, JsonlTable],
    *,
    selections: int,
    virtuals: int,
    st: _State,
    reader: _LogReader,
    predict_from: tuple[JsonlTable | None, JsonlTable | None],
) -> None:
    """Trace per-family totals and final rows, Σ draws, audit presence and identity.

    ``predict_from``: the selection and edge tables, to predict the trace here when it was not
    read ahead (see :data:`TRACE_READ_AHEAD_BYTES`)."""
    for ds, lf in ((TRACE_ID, logs.trace), (AUDIT_ID, logs.audit)):
        if lf is None:
            raise AuditError(
                "V-16",
                "402",
                f"{ds} is missing for the run (required with router logs)",
                dataset=ds,
            )
    assert logs.trace is not None and logs.audit is not None
    rules = row_rules(_TRACE_ROW)
    trace = None
    if not reader.has([logs.trace], rules, validator="V-16", dataset=TRACE_ID):
        trace = _trace_now(logs.trace, *predict_from)  # None: nothing to predict from
    if trace is None:
        trace = reader([logs.trace], rules, validator="V-16", dataset=TRACE_ID)
    _scan_rows(
        trace,
        rules,
        validator="V-16",
        dataset=TRACE_ID,
        expected=(("run_id", logs.run_id, "503"), ("seed", inputs.seed, "503")),
    )
    draws_expected = 2 * selections + virtuals
    st.metrics["draws_expected"] = draws_expected
    # Only the columns reconciled below (the trace's strings are not copied per family).
    tf = trace_frame(trace)
    observed = 0
    finals: list[dict[str, Any]] = []
    for name, events in families.items():
        fam = FAMILIES[name]
        n = events.height
        rows = reconcile_family(trace, tf, fam, events.frame)
        if n == 0:
            finals.append({"family": name, "events": 0})
            continue
        final = _final_row(rows)
        del rows  # one family's trace rows at a time
        if not final["events_total"] == final["draws_total"] == n:
            raise AuditError(
                "V-16",
                "402",
                f"final trace row for {fam.substream_label}: events_total={final['events_total']}, "
                f"draws_total={final['draws_total']}, events={n}",
                dataset=TRACE_ID,
                key=f"{fam.module}/{fam.substream_label}",
            )
        observed += int(final["draws_total"])
        finals.append({"family": name, "events": n})
    st.metrics["draws_observed"] = observed
    if observed != draws_expected:
        raise AuditError(
            "V-16",
            "402",
            f"Σ final draws_total={observed} != 2·selections + virtuals = {draws_expected}",
            dataset=TRACE_ID,
            draws_expected=draws_expected,
            draws_observed=observed,
        )
    check_audit_log(inputs, logs)
    st.samples.setdefault("logs", {})["families"] = finals


def _final_row(rows: pl.DataFrame) -> dict[str, Any]:
    """The final trace row of a family (§5.3): greatest after-counter, ties → last in file
    order (greatest ``_row``). Found with masks, not a sort: at scale a sorted copy of a
    family's rows was S7's peak on a failing run."""
    hi, lo = rows["rng_counter_after_hi"], rows["rng_counter_after_lo"]
    top = hi == hi.max()
    best = top & (lo == lo.filter(top).max())
    ties = rows.filter(best)
    at = ties["_row"].arg_max()
    assert at is not None
    return ties.row(at, named=True)


def trace_frame(trace: JsonlTable) -> pl.DataFrame:
    """The trace columns V-16 reconciles, with each row's index (``_row``)."""
    return trace.frame.select(
        "module", "substream_label", *_COUNTER_COLUMNS, *_TOTAL_COLUMNS
    ).with_row_index("_row")


def reconcile_family(
    trace: JsonlTable, tf: pl.DataFrame, fam: Family, events: pl.DataFrame, *, first: int = 0
) -> pl.DataFrame:
    """V-16 402: ``fam``'s rows of ``tf`` (:func:`trace_frame`) are one per event of
    ``events`` (its rows ``first ..`` of the run), with the event's counters and running totals
    ``first + 1 ..`` (blocks = draws = 1 per event). Returns those trace rows."""
    # Only the compared columns are copied for the family's rows (not its module and label).
    mask = (tf["module"] == fam.module) & (tf["substream_label"] == fam.substream_label)
    rows = tf.drop("module", "substream_label").filter(mask)
    n = events.height
    if rows.height == 0 and n:
        raise AuditError(
            "V-16",
            "402",
            f"rng_trace_log has no rows for ({fam.module}, {fam.substream_label})",
            dataset=TRACE_ID,
            key=f"{fam.module}/{fam.substream_label}",
        )
    if rows.height != n:
        raise AuditError(
            "V-16",
            "402",
            f"{rows.height} trace rows for ({fam.module}, {fam.substream_label}) but {n} events",
            dataset=TRACE_ID,
            key=f"{fam.module}/{fam.substream_label}",
        )
    ordinal = pl.Series(np.arange(first + 1, first + n + 1, dtype=np.uint64))
    checks = {
        **{c: events[c] for c in _COUNTER_COLUMNS},
        "events_total": ordinal,
        "draws_total": ordinal,
        "blocks_total": ordinal,
    }
    for col, want in checks.items():
        diff = (rows[col] != want).arg_true()
        if diff.len():
            row = int(rows["_row"][int(diff[0])])
            raise _at_row(
                trace,
                row,
                "V-16",
                "402",
                f"trace row {row} ({fam.substream_label}) {col}={rows[col][int(diff[0])]} "
                f"does not reconcile with event {first + int(diff[0])} ({want[int(diff[0])]})",
                dataset=TRACE_ID,
                field=col,
            )
    return rows


def check_audit_log(inputs: S7Inputs, logs: RouterLogs) -> None:
    """V-16: the run's ``rng_audit_log`` row exists, follows its schema (400) and names this
    run (503)."""
    assert logs.audit is not None
    audit_rules = row_rules(f"schemas.layer1.yaml#/rng/core/{AUDIT_ID}")
    audit = read_jsonl([logs.audit], audit_rules, validator="V-16", dataset=AUDIT_ID)
    if audit.height == 0:
        raise AuditError("V-16", "402", "rng_audit_log has no row for the run", dataset=AUDIT_ID)
    _scan_rows(
        audit,
        audit_rules,
        validator="V-16",
        dataset=AUDIT_ID,
        expected=(
            ("run_id", logs.run_id, "503"),
            ("seed", inputs.seed, "503"),
            ("parameter_hash", logs.parameter_hash, "503"),
            ("manifest_fingerprint", inputs.manifest_fingerprint, "503"),
        ),
    )


def _edge_catalogue(policy: Mapping[str, Any]) -> pl.DataFrame:
    """``edges[] ∪ default_edges[] ∪ merchant_overrides[*][]`` with coordinates (§5.3)."""
    geo = policy.get("geo_metadata") or {}
    coords: dict[str, tuple[float, float]] = {
        str(k): (float(v["edge_lat"]), float(v["edge_lon"])) for k, v in geo.items()
    }
    for e in policy.get("edges") or []:
        if "edge_lat" in e and "edge_lon" in e:
            coords.setdefault(str(e["edge_id"]), (float(e["edge_lat"]), float(e["edge_lon"])))
    entries = [*(policy.get("edges") or []), *(policy.get("default_edges") or [])]
    for lst in (policy.get("merchant_overrides") or {}).values():
        entries.extend(lst)
    pairs = sorted({(str(e["edge_id"]), str(e["ip_country"])) for e in entries})
    return pl.DataFrame(
        {
            "edge_id": [p[0] for p in pairs],
            "ip_country": [p[1] for p in pairs],
            "cat_lat": [coords.get(p[0], (None, None))[0] for p in pairs],
            "cat_lon": [coords.get(p[0], (None, None))[1] for p in pairs],
        },
        schema={
            "edge_id": pl.String,
            "ip_country": pl.String,
            "cat_lat": pl.Float64,
            "cat_lon": pl.Float64,
        },
    )


def _v15(
    inputs: S7Inputs, sel: JsonlTable | None, edge: JsonlTable | None, ledger: AuditLedger
) -> None:
    """S5 ``tz_group_id`` = 2A tzid of its site (410, WARN if unavailable); S6 edges (411)."""
    warn: str | None = None
    if sel is not None and sel.height:
        if inputs.site_timezones is None:
            warn = inputs.site_timezones_note
        else:
            check_site_groups(sel, site_map(inputs.site_timezones))
    if edge is not None and edge.height:
        check_edges(edge, _edge_catalogue(inputs.edge_policy))
    if warn is not None:
        ledger.warned("V-15", ["410"], warn)
    else:
        ledger.passed("V-15")


def site_map(site_timezones: pl.LazyFrame) -> pl.DataFrame:
    """``(merchant_id, site_id) → tzid`` of 2A's sites (one row per site); 410 if a site has
    two tzids."""
    tz = site_timezones.select("merchant_id", "legal_country_iso", "site_order", "tzid").collect()
    sid = site_ids(
        tz["merchant_id"].to_numpy(),
        tz["legal_country_iso"].to_list(),
        tz["site_order"].to_numpy(),
    )
    out = pl.DataFrame(
        {
            "merchant_id": tz["merchant_id"].cast(pl.UInt64),
            "site_id": pl.Series(sid, dtype=pl.UInt64),
            "tzid": tz["tzid"],
        }
    ).unique(maintain_order=True)
    dup = out.filter(pl.struct("merchant_id", "site_id").is_duplicated())
    if dup.height:
        raise AuditError(
            "V-15",
            "410",
            "a (merchant_id, site_id) maps to two tzids in site_timezones",
            dataset=SITE_TZ_ID,
            keys=_keys(dup, ("merchant_id", "site_id")),
        )
    return out


def check_site_groups(sel: JsonlTable, sites: pl.DataFrame) -> None:
    """V-15 410: every selection's site lies in its ``tz_group_id`` (:func:`site_map`)."""
    joined = (
        sel.frame.select(*_V15_SELECTION)
        .with_row_index("_row")
        .join(sites, on=["merchant_id", "site_id"], how="left")
        .sort("_row")
    )
    bad = joined.filter(pl.col("tzid").is_null() | (pl.col("tzid") != pl.col("tz_group_id")))
    if bad.height:
        first = bad.row(0, named=True)
        raise _at_row(
            sel,
            int(first["_row"]),
            "V-15",
            "410",
            f"{bad.height} selection(s) whose site is not in tz_group_id "
            f"(first: site tzid {first['tzid']!r} vs group {first['tz_group_id']!r})",
            dataset=SELECTION_ID,
            keys=_jsonable(
                bad.select("merchant_id", "site_id", "tz_group_id", "tzid")
                .head(MAX_KEYS)
                .to_dicts()
            ),
        )


def check_edges(edge: JsonlTable, cat: pl.DataFrame) -> None:
    """V-15 411: every edge-log row's edge is in the policy's catalogue (:func:`_edge_catalogue`)
    with the policy's coordinates."""
    known = set(cat["edge_id"].to_list())
    rows = edge.frame.select(*_V15_EDGE).with_row_index("_row")
    joined = rows.join(cat, on=["edge_id", "ip_country"], how="left").sort("_row")
    bad = joined.filter(
        pl.col("cat_lat").is_null()
        | pl.col("cat_lon").is_null()
        | (pl.col("cat_lat") != pl.col("edge_lat"))
        | (pl.col("cat_lon") != pl.col("edge_lon"))
    )
    if bad.height:
        first = bad.row(0, named=True)
        where = edge.locate(int(first["_row"]))
        what = (
            "is not in the edge catalogue"
            if first["edge_id"] not in known
            else "has no coordinates or attributes differing from the policy"
        )
        raise AuditError(
            "V-15",
            "411",
            f"{bad.height} edge-log row(s): edge {first['edge_id']!r} {what}",
            dataset=EDGE_LOG_ID,
            key=f"{where.get('file')}:{where.get('line')}",
            edge_ids=sorted(set(bad["edge_id"].to_list()))[:MAX_KEYS],
            **where,
        )


_COUNTER_COLUMNS = (
    "rng_counter_before_hi",
    "rng_counter_before_lo",
    "rng_counter_after_hi",
    "rng_counter_after_lo",
)
_TOTAL_COLUMNS = ("events_total", "draws_total", "blocks_total")
_SELECTION_COUNTERS = ("ctr_group_hi", "ctr_group_lo", "ctr_site_hi", "ctr_site_lo")
_V15_SELECTION = ("merchant_id", "site_id", "tz_group_id")
_SELECTION_AFTER_V12 = ("rng_stream_id", "utc_day", *_V15_SELECTION, *_SELECTION_COUNTERS)
"""Selection columns read after V-12: the stream id (V-13 405), lineage keys and counters
(V-13 402, the trace prediction), V-15's keys. The timestamps, the largest, are V-12's only."""
_V15_EDGE = ("edge_id", "ip_country", "edge_lat", "edge_lon")


def _slim_table(table: JsonlTable, columns: Sequence[str]) -> JsonlTable:
    """``table`` with only the ``columns`` later validators read; files and offsets stay, so
    rows are still located. Releases the other columns (at scale, most of S7's memory)."""
    keep = [c for c in dict.fromkeys(columns) if c in table.frame.columns]
    return JsonlTable(
        table.frame.select(keep), table.files, table.offsets, table.constant & frozenset(keep)
    )


def _router_block(inputs: S7Inputs, ledger: AuditLedger, st: _State, reader: _LogReader) -> None:
    logs = inputs.router
    if logs is None or not logs.present:
        ledger.passed("V-12", {"note": NOTE_BOTH_ABSENT})
        ledger.passed("V-13", {"note": NOTE_S5_ABSENT})
        ledger.passed("V-14", {"note": NOTE_S6_ABSENT})
        ledger.passed("V-16", {"note": NOTE_ROUTER_ABSENT})
        ledger.passed("V-15", {"note": NOTE_ROUTER_ABSENT})
        return
    t0 = time.perf_counter()
    sel = (
        _slim_table(
            _read_router_log(logs.selection, SELECTION_ID, _SELECTION_ROW, inputs, reader),
            _SELECTION_AFTER_V12,
        )
        if logs.selection
        else None
    )
    edge = (
        _read_router_log(logs.edge, EDGE_LOG_ID, _EDGE_ROW, inputs, reader) if logs.edge else None
    )
    selections = sel.height if sel is not None else 0
    st.metrics["selections_checked"] = selections
    ledger.passed("V-12")
    families: dict[str, JsonlTable] = {}
    if sel is not None:
        families.update(_v13(inputs, logs, sel, reader))
        ledger.passed("V-13", {"selections": selections})
    else:
        ledger.passed("V-13", {"note": NOTE_S5_ABSENT})
    virtuals = 0
    if edge is not None:
        families["cdn_edge_pick"], virtuals = _v14(inputs, logs, edge, reader)
        ledger.passed("V-14", {"virtual_total": virtuals})
    else:
        ledger.passed("V-14", {"note": NOTE_S6_ABSENT})
    # V-16 reconciles the trace with the events' counters and V-15 reads a few selection and
    # edge columns: keep only those from here on.
    families = {k: _slim_table(t, _COUNTER_COLUMNS) for k, t in families.items()}
    # (plus the counters and is_virtual the trace prediction reads, when V-16 makes it).
    if sel is not None:
        sel = _slim_table(sel, (*_V15_SELECTION, *_SELECTION_COUNTERS))
    if edge is not None:
        edge = _slim_table(edge, (*_V15_EDGE, "is_virtual", "ctr_edge_hi", "ctr_edge_lo"))
    st.samples["logs"] = {
        "runs": [
            {
                "parameter_hash": logs.parameter_hash,
                "run_id": logs.run_id,
                "events_total": sum(t.height for t in families.values()),
            }
        ]
    }
    _v16(
        inputs,
        logs,
        families,
        selections=selections,
        virtuals=virtuals,
        st=st,
        reader=reader,
        predict_from=(sel, edge),
    )
    ledger.passed(
        "V-16",
        {
            "draws_expected": st.metrics["draws_expected"],
            "draws_observed": st.metrics["draws_observed"],
        },
    )
    _v15(inputs, sel, edge, ledger)
    st.durations["router_ms"] = round((time.perf_counter() - t0) * 1000)


# --- report assembly: V-17 ------------------------------------------------------------------


def render_report(report: Mapping[str, Any]) -> bytes:
    """§7.4: UTF-8 JSON, keys sorted at every level, indent 2, ASCII escapes, trailing LF."""
    return pretty_json(dict(report))


def _path_tokens(rel: str) -> tuple[str | None, str | None]:
    seed = _SEED_TOKEN.search(rel)
    mf = _MF_TOKEN.search(rel)
    return (seed.group(1) if seed else None, mf.group(1) if mf else None)


def assemble_report(
    *,
    seed: int,
    manifest_fingerprint: str,
    created_utc: str,
    s0_created_utc: str,
    catalogue_resolution: Mapping[str, str],
    inputs_digest: Mapping[str, Any],
    metrics: Mapping[str, Any],
    ledger: AuditLedger,
    report_rel: str,
) -> tuple[dict[str, Any], bytes]:
    """Assemble the report and run V-17 on it (schema 500, path/S0 embeds 503).

    On a PASS path V-17 and V-18 are recorded PASS before validation (V-18 is confirmed by
    the publish); if V-17 fails, the report becomes a FAIL report ending at V-17. A FAIL
    report (failure before V-17) lists only the validators evaluated so far (§7.3).
    """
    passing = ledger.failure is None
    if passing:
        ledger.passed("V-17")
        ledger.passed("V-18")

    def doc() -> dict[str, Any]:
        return {
            "component": COMPONENT,
            "manifest_fingerprint": manifest_fingerprint,
            "seed": seed,
            "created_utc": created_utc,
            "catalogue_resolution": dict(catalogue_resolution),
            "inputs_digest": _jsonable(inputs_digest),
            "checks": ledger.checks(),
            "metrics": _jsonable(metrics),
            "summary": ledger.summary(),
        }

    report = doc()
    problem: AuditError | None = None
    errors = json_errors(REPORT_SCHEMA_REF, report)
    path_seed, path_mf = _path_tokens(report_rel)
    if errors:
        problem = AuditError(
            "V-17", "500", f"report fails {REPORT_SCHEMA_REF}: {errors[0]}", dataset=REPORT_ID
        )
    elif path_seed != str(seed) or path_mf != manifest_fingerprint:
        problem = AuditError(
            "V-17",
            "503",
            "report seed/manifest_fingerprint differ from the path tokens",
            dataset=REPORT_ID,
            path=report_rel,
        )
    elif created_utc != s0_created_utc:
        problem = AuditError(
            "V-17",
            "503",
            f"report created_utc {created_utc!r} != S0 verified_at_utc {s0_created_utc!r}",
            dataset=REPORT_ID,
        )
    if problem is not None:
        if passing:
            ledger.drop("V-18")
            ledger.failed(problem)
            report = doc()
        if json_errors(REPORT_SCHEMA_REF, report):
            raise problem.error()
    data = render_report(report)
    if render_report(json.loads(data)) != data:
        raise SegmentError(
            f"{PREFIX}-502",
            "NON_IDEMPOTENT_REEMIT: rendering the same report twice differs",
            dataset=REPORT_ID,
            validator="V-18",
        )
    return report, data


def build_s7(inputs: S7Inputs, *, ledger: AuditLedger | None = None) -> S7Build:
    """Run V-04..V-17 over resolved inputs and assemble the report; writes nothing.

    Parameters
    ----------
    inputs : S7Inputs
        Resolved inputs; V-01..V-03 are assumed to have passed (recorded PASS in a fresh
        ledger when ``ledger`` is None).
    ledger : AuditLedger, optional
        The runner's ledger holding V-01..V-03.

    Returns
    -------
    S7Build
        ``failure`` is the first Abort (None on PASS); the report is complete either way.
    """
    if ledger is None:
        ledger = AuditLedger()
        for vid in ("V-01", "V-02", "V-03"):
            ledger.passed(vid)
    st = _State()
    # Read-ahead of the router logs (the bulk of the work) overlaps the S2/S3/S4 blocks; each
    # file's parse result surfaces only where §4 reaches it, so the first Abort is unchanged.
    # Large router logs are audited in windows instead (s7_windows imports this module).
    from segment2b.states.s7_windows import router_windows, windowable

    windowed = windowable(inputs.router)
    pool = ThreadPoolExecutor(max_workers=_READ_AHEAD_WORKERS, thread_name_prefix="s7")
    try:
        reader = _LogReader(pool)
        if not windowed:
            _prefetch_router_logs(reader, inputs.router, inputs.s4)
        _s2_block(inputs, ledger, st)
        _s3_s4_block(inputs, ledger, st)
        if not (windowed and router_windows(inputs, ledger, st, pool)):
            _router_block(inputs, ledger, st, reader)
    except AuditError as fail:
        ledger.failed(fail)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    report, data = assemble_report(
        seed=inputs.seed,
        manifest_fingerprint=inputs.manifest_fingerprint,
        created_utc=inputs.created_utc,
        s0_created_utc=inputs.created_utc,
        catalogue_resolution=inputs.catalogue_resolution,
        inputs_digest=inputs.inputs_digest,
        metrics=st.metrics,
        ledger=ledger,
        report_rel=inputs.report_rel,
    )
    return S7Build(report, data, st.metrics, st.samples, ledger.failure, st.durations)


# --- runner -----------------------------------------------------------------------------------


def _tokens(seed: int, manifest_fingerprint: str) -> dict[str, str]:
    return {"seed": str(seed), "manifest_fingerprint": manifest_fingerprint}


def _parquet_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet"), key=lambda p: p.name) if folder.is_dir() else []


def parquet_dir_digest(folder: Path) -> str:
    """§7.2: SHA-256 over the concatenated bytes of ``*.parquet`` in ASCII file-name order."""
    h = hashlib.sha256()
    for path in _parquet_files(folder):
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def discover_router_logs(
    home: StorageHome, *, seed: int, parameter_hash: str, run_id: str
) -> RouterLogs:
    """The current run's router logs: ``utc_day=*`` partitions and ``part-*.jsonl``, path-sorted."""
    run = {"seed": str(seed), "parameter_hash": parameter_hash, "run_id": run_id}

    def logfile(path: Path) -> LogFile:
        rel = path.relative_to(home.root).as_posix()
        day = _DAY_TOKEN.search(rel)
        return LogFile(rel, path, day.group(1) if day else None)

    def days(dataset_id: str) -> tuple[LogFile, ...]:
        pattern = home.rel(dataset_id, {**run, "utc_day": "*"})
        found = [p for p in home.root.glob(pattern) if p.is_file()]
        return tuple(sorted((logfile(p) for p in found), key=lambda f: f.rel))

    def parts(dataset_id: str) -> tuple[LogFile, ...]:
        folder = home.path(dataset_id, run).parent
        found = [p for p in folder.glob("part-*.jsonl") if p.is_file()] if folder.is_dir() else []
        return tuple(sorted((logfile(p) for p in found), key=lambda f: f.rel))

    def single(dataset_id: str) -> LogFile | None:
        path = home.path(dataset_id, run)
        return logfile(path) if path.is_file() else None

    return RouterLogs(
        parameter_hash=parameter_hash,
        run_id=run_id,
        selection=days(SELECTION_ID),
        edge=days(EDGE_LOG_ID),
        events={name: parts(f.dataset_id) for name, f in FAMILIES.items()},
        trace=single(TRACE_ID),
        audit=single(AUDIT_ID),
    )


@dataclass
class _Resolved:
    """What V-01..V-03 established (grows as the runner proceeds)."""

    created_utc: str | None = None
    parameter_hash: str | None = None
    run_id: str | None = None
    inputs_digest: dict[str, Any] = field(default_factory=dict)
    digests: dict[str, Any] = field(default_factory=dict)
    inputs: S7Inputs | None = None


def _resolve(
    home: StorageHome,
    *,
    seed: int,
    manifest_fingerprint: str,
    parameter_hash: str | None,
    run_id: str | None,
    ledger: AuditLedger,
    res: _Resolved,
    stack: contextlib.ExitStack,
) -> S7Inputs:
    """V-01..V-03 then load the S1..S4 handles, router logs and (if needed) site_timezones."""
    tokens = _tokens(seed, manifest_fingerprint)
    cat = home.catalogue
    # V-01: S0 receipt + sealed inventory.
    try:
        ev = load_evidence(
            home,
            seed=seed,
            manifest_fingerprint=manifest_fingerprint,
            prefix=PREFIX,
            codes=_EVIDENCE_CODES,
        )
    except SegmentError as err:
        raise AuditError(
            "V-01",
            "001",
            err.short_message,
            dataset=err.dataset,
            key=home.rel(err.dataset or "s0_gate_receipt_2B", tokens),
        ) from err
    res.created_utc = ev.created_utc
    res.digests["s0_gate_receipt_2B"] = sha256_file(home.path("s0_gate_receipt_2B", tokens))
    res.digests["sealed_inputs_2B"] = sha256_file(home.path("sealed_inputs_2B", tokens))
    ledger.passed("V-01")

    # V-02: dictionary resolution, sealed policy rows and files, S1..S4 partitions, run identity.
    ours = {"dictionary_version": cat.dictionary_version, "registry_version": cat.registry_version}
    theirs = dict(ev.receipt.get("catalogue_resolution") or {})
    if theirs != ours:
        raise AuditError(
            "V-02",
            "020",
            f"catalogue_resolution {ours} differs from the S0 receipt's {theirs}",
            dataset="s0_gate_receipt_2B",
            expected=theirs,
            actual=ours,
        )
    used = (
        *POLICY_IDS,
        INDEX_ID,
        BLOB_ID,
        S1_ID,
        S3_ID,
        S4_ID,
        REPORT_ID,
        SITE_TZ_ID,
        SELECTION_ID,
        EDGE_LOG_ID,
        TRACE_ID,
        AUDIT_ID,
        *(f.dataset_id for f in FAMILIES.values()),
    )
    for dataset_id in used:
        try:
            cat.entry(dataset_id, code=f"{PREFIX}-020")
        except SegmentError as err:
            raise AuditError("V-02", "020", err.short_message, dataset=dataset_id) from err
    for pid in POLICY_IDS:
        if not ev.is_sealed(pid):
            raise AuditError(
                "V-02", "020", "policy has no row in sealed_inputs_2B", dataset=pid, key=pid
            )
        res.inputs_digest[pid] = dict(ev.rows[pid])
        if not home.path(pid).is_file():
            raise AuditError(
                "V-02", "020", "sealed policy file is missing", dataset=pid, key=home.rel(pid, {})
            )
    for dataset_id in (INDEX_ID, BLOB_ID):
        if not home.path(dataset_id, tokens).is_file():
            raise AuditError(
                "V-02",
                "020",
                f"{dataset_id} is missing at [seed, manifest_fingerprint] (run S2)",
                dataset=dataset_id,
                key=home.rel(dataset_id, tokens),
            )
    for dataset_id in (S1_ID, S3_ID, S4_ID):
        if not _parquet_files(home.path(dataset_id, tokens)):
            raise AuditError(
                "V-02",
                "020",
                f"{dataset_id} partition has no *.parquet at [seed, manifest_fingerprint]",
                dataset=dataset_id,
                key=home.rel(dataset_id, tokens),
            )
    ph = parameter_hash or ev.parameter_hash
    if ph != ev.parameter_hash:
        raise AuditError(
            "V-02",
            "020",
            f"parameter_hash {ph} differs from the S0 receipt's {ev.parameter_hash}",
            dataset="s0_gate_receipt_2B",
        )
    rid = run_id or derive_run_id(manifest_fingerprint, seed, ph)
    receipt_path = home.path("run_receipt", {"run_id": rid})
    if receipt_path.is_file():
        try:
            run_doc = json.loads(receipt_path.read_bytes())
        except ValueError as exc:
            raise AuditError(
                "V-02", "020", f"run receipt is not JSON: {exc}", dataset="run_receipt"
            ) from exc
        want = {
            "run_id": rid,
            "seed": seed,
            "parameter_hash": ph,
            "manifest_fingerprint": manifest_fingerprint,
        }
        got = {k: run_doc.get(k) for k in want}
        if got != want:
            raise AuditError(
                "V-02",
                "020",
                "run receipt tokens differ from the run identity",
                dataset="run_receipt",
                key=home.rel("run_receipt", {"run_id": rid}),
                expected=want,
                actual=got,
            )
    res.parameter_hash, res.run_id = ph, rid
    ledger.passed("V-02")

    # V-03: policy path/partition, digest and schema.
    loaded = {}
    for pid in POLICY_IDS:
        row = ev.rows[pid]
        rendered = home.rel(pid, {})
        if row["path"] != rendered or dict(row["partition"]) != {}:
            raise AuditError(
                "V-03",
                "070",
                "sealed path/partition differs from the dictionary rendering",
                dataset=pid,
                key=str(row["path"]),
                sealed_path=row["path"],
                expected_path=rendered,
                sealed_partition=row["partition"],
            )
        digest = sha256_file(home.path(pid))
        res.digests[pid] = digest
        if digest != row["sha256_hex"]:
            raise AuditError(
                "V-03",
                "070",
                f"{pid} bytes changed after S0 sealed them (SHA-256 differs; re-run S0)",
                dataset=pid,
                key=rendered,
                sealed_sha256=row["sha256_hex"],
                actual_sha256=digest,
            )
        try:
            loaded[pid] = load_policy(home.path(pid), pid, code=f"{PREFIX}-070")
        except SegmentError as err:
            raise AuditError("V-03", "070", err.short_message, dataset=pid, key=rendered) from err
    ledger.passed("V-03")
    alias = loaded[ALIAS_POLICY].model
    assert isinstance(alias, AliasLayoutPolicyV1)

    # Load handles and digests (§7.2) for V-04 onwards.
    index_path, blob_path = home.path(INDEX_ID, tokens), home.path(BLOB_ID, tokens)
    index_bytes = index_path.read_bytes()
    blob_sha = sha256_file(blob_path)
    blob: Any = b""
    if blob_path.stat().st_size:
        fh = stack.enter_context(blob_path.open("rb"))
        blob = stack.enter_context(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))

    def entry(dataset_id: str, digest: str) -> dict[str, Any]:
        res.digests[dataset_id] = digest
        return {
            "path": home.rel(dataset_id, tokens),
            "partition": dict(tokens),
            "sha256_hex": digest,
        }

    res.inputs_digest[INDEX_ID] = entry(INDEX_ID, sha256_bytes(index_bytes))
    res.inputs_digest[BLOB_ID] = entry(BLOB_ID, blob_sha)
    for dataset_id in (S3_ID, S4_ID):
        res.inputs_digest[dataset_id] = entry(
            dataset_id, parquet_dir_digest(home.path(dataset_id, tokens))
        )
    res.digests[S1_ID] = parquet_dir_digest(home.path(S1_ID, tokens))

    def scan(dataset_id: str) -> pl.LazyFrame:
        return pl.scan_parquet([str(p) for p in _parquet_files(home.path(dataset_id, tokens))])

    logs = discover_router_logs(home, seed=seed, parameter_hash=ph, run_id=rid)
    site_tz: pl.LazyFrame | None = None
    note = "site_timezones is not sealed by S0"
    if logs.selection and ev.is_sealed(SITE_TZ_ID):
        try:
            folder = ev.path(SITE_TZ_ID)
        except SegmentError as err:
            note = f"site_timezones unavailable: {err.short_message}"
        else:
            files = _parquet_files(folder)
            if files:
                site_tz = pl.scan_parquet([str(p) for p in files])
            else:
                note = "site_timezones partition has no *.parquet"
    return S7Inputs(
        seed=seed,
        manifest_fingerprint=manifest_fingerprint,
        created_utc=ev.created_utc,
        catalogue_resolution=ours,
        alias_policy=alias,
        alias_policy_digest=str(ev.rows[ALIAS_POLICY]["sha256_hex"]),
        route_policy=loaded[ROUTE_POLICY].document,
        edge_policy=loaded[EDGE_POLICY].document,
        index_bytes=index_bytes,
        blob=blob,
        blob_sha256=blob_sha,
        s1=scan(S1_ID),
        s3=scan(S3_ID),
        s4=scan(S4_ID),
        inputs_digest=dict(res.inputs_digest),
        report_rel=home.rel(REPORT_ID, tokens),
        router=logs,
        site_timezones=site_tz,
        site_timezones_note=note,
    )


def _publish(
    home: StorageHome, tokens: Mapping[str, str], data: bytes, version: str
) -> PublishResult:
    """V-18: write-once publish with S7's codes (501 overwrite, 504 atomic/verify)."""
    target = home.path(REPORT_ID, tokens)
    try:
        result = publish_file(
            home, target, data, prefix=PREFIX, dataset_id=REPORT_ID, input_version=version
        )
    except SegmentError as err:
        code = {f"{PREFIX}-080": "501", f"{PREFIX}-082": "504"}.get(err.code)
        if code is None:
            raise
        raise AuditError(
            "V-18",
            code,
            err.short_message,
            dataset=REPORT_ID,
            key=home.rel(REPORT_ID, tokens),
            **{k: v for k, v in err.context.items() if k.startswith("digest")},
        ) from err
    if sha256_file(target) != sha256_bytes(data):
        raise AuditError(
            "V-18",
            "504",
            "post-publish re-read differs from the staged bytes",
            dataset=REPORT_ID,
            key=home.rel(REPORT_ID, tokens),
        )
    return result


def _input_version(home: StorageHome, tokens: Mapping[str, str], res: _Resolved) -> str:
    """Data version of the report: S0 evidence, policy and dataset digests, run log files."""
    logs: list[tuple[str, int]] = []
    if res.parameter_hash and res.run_id:
        logs = discover_router_logs(
            home, seed=int(tokens["seed"]), parameter_hash=res.parameter_hash, run_id=res.run_id
        ).fingerprint()
    return input_version(
        CODE_VERSION,
        digests=dict(sorted(res.digests.items())),
        parameter_hash=res.parameter_hash,
        run_id=res.run_id,
        logs=logs,
    )


def run_s7(
    home: StorageHome,
    *,
    seed: int,
    manifest_fingerprint: str,
    parameter_hash: str | None = None,
    run_id: str | None = None,
) -> StateOutcome:
    """Audit one seed × fingerprint and publish ``s7_audit_report``.

    ``parameter_hash`` defaults to the S0 receipt's and ``run_id`` to the deterministic run id
    (spec README §2); router logs are looked up under exactly those tokens. On PASS returns the
    outcome (``frame`` = checks table, ``report`` = the audit report). On any Abort after V-01
    publishes the FAIL report, writes the run-report and raises the first failing code.

    Raises
    ------
    SegmentError
        ``2B-S7-NNN`` of the first failing validator.
    """
    t0 = time.perf_counter()
    tokens = _tokens(seed, manifest_fingerprint)
    cat = home.catalogue
    catalogue_resolution = {
        "dictionary_version": cat.dictionary_version,
        "registry_version": cat.registry_version,
    }
    ledger = AuditLedger()
    res = _Resolved()
    report_rel = home.rel(REPORT_ID, tokens)
    build: S7Build | None = None
    with contextlib.ExitStack() as stack:
        try:
            inputs = _resolve(
                home,
                seed=seed,
                manifest_fingerprint=manifest_fingerprint,
                parameter_hash=parameter_hash,
                run_id=run_id,
                ledger=ledger,
                res=res,
                stack=stack,
            )
        except AuditError as fail:
            ledger.failed(fail)
        else:
            res.inputs = inputs
            build = build_s7(inputs, ledger=ledger)
    t1 = time.perf_counter()
    published: list[PublishResult] = []
    report: dict[str, Any] | None = None
    if build is None and res.created_utc is not None:
        report, data = assemble_report(
            seed=seed,
            manifest_fingerprint=manifest_fingerprint,
            created_utc=res.created_utc,
            s0_created_utc=res.created_utc,
            catalogue_resolution=catalogue_resolution,
            inputs_digest=res.inputs_digest,
            metrics=zero_metrics(),
            ledger=ledger,
            report_rel=report_rel,
        )
        metrics: Mapping[str, Any] = zero_metrics()
        samples: Mapping[str, Any] = {"alias_decode": [], "group_norm": []}
    elif build is not None:
        report, data = dict(build.report), build.report_bytes
        metrics, samples = build.metrics, build.samples
    else:
        data, metrics, samples = b"", zero_metrics(), {"alias_decode": [], "group_norm": []}
    if report is not None:
        try:
            published.append(_publish(home, tokens, data, _input_version(home, tokens, res)))
        except AuditError as fail:
            ledger.drop("V-18")
            ledger.failed(fail)
    t2 = time.perf_counter()
    failure = ledger.failure
    run_report = {
        "component": COMPONENT,
        "seed": seed,
        "manifest_fingerprint": manifest_fingerprint,
        "created_utc": res.created_utc,
        "catalogue_resolution": catalogue_resolution,
        "inputs_digest": _jsonable(res.inputs_digest),
        "metrics": _jsonable(metrics),
        "checks": ledger.checks(),
        "summary": ledger.summary(),
        "samples": _jsonable(samples),
        "target": {"audit_report_path": report_rel},
    }
    write_report(home.path(RUN_REPORT_ID, tokens), run_report)
    _LOG.info("%s", json.dumps(run_report, sort_keys=True))
    durations = {
        "audit_ms": round((t1 - t0) * 1000),
        "publish_ms": round((t2 - t1) * 1000),
        **(build.durations_ms if build is not None else {}),
    }
    if failure is not None:
        err = failure.error()
        _LOG.error(
            "%s",
            json.dumps(
                _jsonable(
                    {
                        "code": err.code,
                        "validator": failure.validator,
                        "message": failure.reason,
                        "context": failure.context,
                        "seed": seed,
                        "manifest_fingerprint": manifest_fingerprint,
                        "parameter_hash": res.parameter_hash,
                        "run_id": res.run_id,
                    }
                ),
                sort_keys=True,
            ),
        )
        raise err
    assert report is not None
    checks = pl.DataFrame(
        {
            "id": [c["id"] for c in report["checks"]],
            "status": [c["status"] for c in report["checks"]],
            "codes": [",".join(c["codes"]) for c in report["checks"]],
        }
    )
    return StateOutcome(
        checks,
        report,
        published,
        extras={
            "run_report": run_report,
            "report_bytes": data,
            "durations_ms": durations,
            "run_id": res.run_id,
            "parameter_hash": res.parameter_hash,
        },
    )
