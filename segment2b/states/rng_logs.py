"""RNG evidence shared by S5 and S6: JSONL rows, the time law, trace totals, audit, publish.

* **Byte law** (``s5-router.md`` §3): every line equals
  ``json.dumps(obj, ensure_ascii=True, sort_keys=True) + "\\n"``. A :class:`JsonlPlan` compiles
  a file's fields into one line layout (keys sorted once, constant runs merged into single
  literals); floats use Python's shortest round-trip ``repr`` evaluated once per *distinct*
  value; strings are JSON-escaped per distinct value when they hold anything outside
  printable ASCII minus ``"`` and ``\\``. No Python loop per row.
* **Rendering**: the compiled kernel of :mod:`segment2b.storage.jsonl_render` assembles
  :data:`CHUNK_ROWS` rows at a time into one reused buffer (DECISIONS 27), so ~1 GB of logs
  never sits in memory at once. The same buffer feeds SHA-256 (file and per-day folder
  digests), so publishing never re-reads a log; files are written in pieces of at most
  :data:`_WRITE_BYTES`.
* **Time law** (contracts §14): ``ts_utc`` of event/trace row ``k`` is ``created_utc + k µs``.
* **Trace** (S5 §3.2): one row after each event; ``draws_total``/``blocks_total``/``events_total``
  cumulative per ``(module, substream_label)`` within the state invocation.
* **Shared files**: the trace is published by S5 and extended by S6 (S6 publishes the whole
  file ``S5 rows ‖ S6 rows`` by staged copy + atomic replace); the audit log holds one row per
  run and is only ever appended to, never republished.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa

from segment2b.catalogue.schemas import json_errors
from segment2b.core.philox import counters_from_base
from segment2b.errors import SegmentError
from segment2b.storage import jsonl_render
from segment2b.storage.digests import sha256_file
from segment2b.storage.home import StorageHome
from segment2b.storage.publish import PublishResult, publish_folder

__all__ = [
    "AUDIT_SCHEMA",
    "CHUNK_ROWS",
    "TRACE_SCHEMA",
    "Col",
    "Const",
    "CounterLaw",
    "JsonlPlan",
    "RenderStoppedError",
    "RunTokens",
    "TraceCopy",
    "WrittenFile",
    "WrittenFolder",
    "audit_row",
    "build_commit",
    "copy_trace_ahead",
    "ensure_audit_row",
    "event_plan",
    "float_json",
    "json_strings",
    "jsonl_lines",
    "jsonl_plan",
    "line_buffers",
    "lines_bytes",
    "periodic_trace_plan",
    "plan_bytes",
    "plan_lines",
    "publish_staged",
    "publish_trace_s5",
    "publish_trace_s5_s6",
    "publish_trace_s6",
    "trace_plan",
    "ts_micros",
    "ts_utc_series",
    "write_jsonl",
    "write_jsonl_folder",
    "write_jsonl_split",
    "write_lines",
    "write_series",
]

TRACE_SCHEMA = "schemas.layer1.yaml#/rng/core/rng_trace_log"
AUDIT_SCHEMA = "schemas.layer1.yaml#/rng/core/rng_audit_log"
_TS = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})Z$")
# JSON-safe without escaping: printable ASCII except '"' (0x22) and '\' (0x5C).
_UNSAFE = r"[^ !#-\[\]-~]"
_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_WRITE_BYTES = 1 << 20
"""Largest ``write``: on this VM, 20 MB writes cost ~1 s more kernel time per GB than 1 MiB."""
CHUNK_ROWS = 32_768
"""Rows rendered per kernel call: ~25 MB of lines, so memory stays bounded."""


@dataclass(frozen=True)
class RunTokens:
    """Run identity written into every RNG row, plus the S0 ``verified_at_utc`` anchor."""

    seed: int
    parameter_hash: str
    manifest_fingerprint: str
    run_id: str
    created_utc: str

    def path_tokens(self) -> dict[str, str]:
        return {
            "seed": str(self.seed),
            "parameter_hash": self.parameter_hash,
            "run_id": self.run_id,
            "manifest_fingerprint": self.manifest_fingerprint,
        }


# ---------------------------------------------------------------------------------------------
# Line assembly
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    """A value identical on every row (serialised once with ``json.dumps``)."""

    value: Any


@dataclass(frozen=True)
class Col:
    """A per-row value from a frame column.

    ``kind``: ``"int"`` (integer column, exact decimal), ``"str"`` (string column, quoted and
    escaped as needed), ``"json"`` (column already holds JSON text, e.g. :func:`float_json`),
    ``"safe"`` (string column the caller has validated against a pattern that admits no
    character JSON escapes, e.g. a date or an rfc3339 timestamp: quoted without a scan).
    """

    name: str
    kind: Literal["int", "str", "json", "safe"] = "int"


def json_strings(values: Sequence[str]) -> list[str]:
    """JSON text (``json.dumps``, ASCII-escaped) of each string, for small dictionaries."""
    return [json.dumps(v, ensure_ascii=True) for v in values]


def float_json(values: np.ndarray) -> pl.Series:
    """``json.dumps`` text of float64 values (shortest round-trip ``repr``), vectorised.

    ``repr`` runs once per distinct value (``np.unique``), then the strings are gathered.

    Raises
    ------
    ValueError
        On NaN or infinity (``json.dumps`` would emit non-JSON tokens).
    """
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if arr.size and not np.isfinite(arr).all():
        msg = "non-finite float cannot be written as JSON"
        raise ValueError(msg)
    # Unique by bit pattern, not by value: 0.0 and -0.0 compare equal but print differently.
    bits, inverse = np.unique(arr.view(np.uint64), return_inverse=True)
    text = pl.Series([repr(v) for v in bits.view(np.float64).tolist()], dtype=pl.String)
    return text.gather(pl.Series(inverse.ravel().astype(np.uint32)))


def _safe_strings(col: pl.Series) -> bool:
    """True when every value is printable ASCII without ``"`` or ``\\`` (no JSON escaping)."""
    if col.dtype == pl.Categorical:
        col = col.cast(pl.String)
    return not bool(col.str.contains(_UNSAFE).any())


Derive = Callable[[int, int], Mapping[str, pl.Series]]
"""Columns of rows ``[start, stop)`` computed from the row numbers when a chunk is rendered."""


@dataclass(frozen=True)
class CounterLaw:
    """Counters that follow from the row number, so a plan need not store them.

    Row ``r`` is event ``k = step * r + offset`` of a stream whose first counter is
    ``(hi, lo)``: ``before = base + k`` and ``after = before + 1`` (128-bit, the low word
    carries into the high word). S5's events and trace rows are such rows: two arrays of
    ``uint64`` words per counter would otherwise cost 32 bytes per row for each family.
    """

    hi: int
    lo: int
    step: int = 1
    offset: int = 0

    def events(self, rows: np.ndarray) -> np.ndarray:
        """Event numbers ``k`` of the given rows (uint64)."""
        return np.asarray(rows, dtype=np.uint64) * np.uint64(self.step) + np.uint64(self.offset)

    def before(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """``(hi, lo)`` words of the before-counters of rows ``[start, stop)``."""
        return self.before_rows(np.arange(start, stop, dtype=np.uint64))

    def before_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(hi, lo)`` words of the before-counters of arbitrary rows."""
        return counters_from_base(self.hi, self.lo, self.events(rows))

    def arrays(
        self, start: int, stop: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(before_hi, before_lo, after_hi, after_lo)`` of rows ``[start, stop)``."""
        k = self.events(np.arange(start, stop, dtype=np.uint64))
        before_hi, before_lo = counters_from_base(self.hi, self.lo, k)
        after_hi, after_lo = counters_from_base(self.hi, self.lo, k + np.uint64(1))
        return before_hi, before_lo, after_hi, after_lo

    def hi_zero(self, rows: int) -> bool:
        """Whether every high word (before and after) of rows ``[0, rows)`` is 0."""
        if rows == 0:
            return True
        last_after = self.step * (rows - 1) + self.offset + 1
        return self.hi == 0 and self.lo + last_after < 2**64

    def derive(self, *, hi_zero: bool) -> Derive:
        """The counter columns of :func:`_counter_columns` for a chunk of rows."""

        def columns(start: int, stop: int) -> dict[str, pl.Series]:
            cols, _ = _counter_columns(*self.arrays(start, stop), hi_zero=hi_zero)
            return cols

        return columns


@dataclass(frozen=True)
class JsonlPlan:
    """How to serialise every row of ``frame`` as one JSONL line (keys sorted).

    ``program`` is the line layout (:mod:`segment2b.storage.jsonl_render`); integer piece ``k``
    prints column ``ints[k]`` and text piece ``k`` copies column ``texts[k]``. ``ts`` =
    ``(created_utc, a, b)`` gives ``ts_utc = created_utc + (a * row + b) µs`` (time law),
    printed by the renderer from the row number; ``derive`` adds other columns that follow from
    the row numbers (e.g. :class:`CounterLaw`), chunk by chunk. ``rows`` is the row count when
    ``frame`` has no columns (every column derived). Build with :func:`jsonl_plan`.
    """

    frame: pl.DataFrame
    program: jsonl_render.Program
    ints: tuple[str, ...]
    texts: tuple[str, ...]
    ts: tuple[str, int, int] | None = None
    derive: Derive | None = None
    rows: int | None = None

    @property
    def n(self) -> int:
        return self.frame.height if self.rows is None else self.rows

    def render(
        self, start: int, stop: int, *, out: np.ndarray | None = None
    ) -> jsonl_render.Rendered:
        """The bytes of rows ``[start, stop)`` (into ``out`` when it is large enough, so a
        writer reuses one buffer instead of faulting in fresh pages per chunk)."""
        stop = max(start, min(stop, self.n))
        rows = stop - start
        cols: dict[str, pl.Series] = {}
        if self.frame.width:
            sub = self.frame.slice(start, rows)
            cols = {
                name: sub.get_column(name)
                for name in (*self.ints, *self.texts)
                if name in sub.columns
            }
        if self.derive is not None:
            cols |= self.derive(start, stop)
        first, step = 0, 0
        if self.ts is not None:
            created, a, b = self.ts
            first, step = _parse_ts(created) + a * start + b, a
        return jsonl_render.render(
            self.program,
            rows,
            ints=[cols[name].to_numpy() for name in self.ints],
            texts=[_text_buffers(cols[name]) for name in self.texts],
            ts=(first, step),
            out=out,
        )

    def chunk(self, start: int, stop: int) -> pl.Series:
        """Lines of rows ``[start, stop)`` as strings (tests and small files)."""
        done = self.render(start, stop)
        text = bytes(done.data).decode("ascii")
        lines = text.splitlines(keepends=True)
        return pl.Series("line", lines, dtype=pl.String)


def _text_buffers(col: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(data, offsets)`` of a string column in Arrow's large-string layout."""
    if col.dtype != pl.String:
        col = col.cast(pl.String)
    arr = col.to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        msg = f"text column {col.name!r} holds nulls"
        raise ValueError(msg)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64, count=arr.offset + len(arr) + 1)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return data, offsets[arr.offset :]


def jsonl_plan(
    frame: pl.DataFrame,
    fields: Mapping[str, Const | Col],
    *,
    ts: tuple[str, int, int] | None = None,
    derive: Derive | None = None,
    rows: int | None = None,
) -> JsonlPlan:
    """Compile ``fields`` (JSON key -> :class:`Const` | :class:`Col`) into one line layout.

    Keys are sorted once; constant runs (keys, separators, constant values, the quotes around
    escape-free string columns) are merged into single literals. ``Col(..., "str")`` columns
    are scanned once: if any value needs JSON escaping, the column is replaced by its
    ``json.dumps`` text mapped per distinct value. A ``ts_utc`` field must be
    ``Col("ts_utc", "str")`` and needs ``ts``. Columns made by ``derive`` must be of kind
    ``"int"``, ``"json"`` or ``"safe"`` (they do not exist yet to be scanned).

    Compatibility guarantee
    -----------------------
    Each line equals ``json.dumps(row, ensure_ascii=True, sort_keys=True) + "\\n"``: ``", "``
    and ``": "`` separators, ASCII escapes, integers exact, floats by ``repr``.
    """
    frame_cols: dict[str, pl.Series] = {}
    ints: list[str] = []
    texts: list[str] = []
    pieces: list[tuple[int, int] | bytes] = [b"{"]

    def column(names: list[str], op: int, name: str) -> tuple[int, int]:
        if name not in names:
            names.append(name)
        return op, names.index(name)

    for i, key in enumerate(sorted(fields)):
        spec = fields[key]
        head = ("" if i == 0 else ", ") + json.dumps(key, ensure_ascii=True) + ": "
        pieces.append(head.encode("ascii"))
        if isinstance(spec, Const):
            text = json.dumps(spec.value, ensure_ascii=True, sort_keys=True)
            pieces.append(text.encode("ascii"))
        elif spec.kind == "int":
            pieces.append(column(ints, jsonl_render.OP_INT, spec.name))
        elif spec.kind == "json":
            pieces.append(column(texts, jsonl_render.OP_TEXT, spec.name))
        elif spec.kind == "safe":
            pieces += [b'"', column(texts, jsonl_render.OP_TEXT, spec.name), b'"']
        elif spec.name == "ts_utc" and ts is not None:
            # Time law: the renderer prints "YYYY-MM-DDTHH:MM:SS.ffffffZ" from the row number.
            pieces += [b'"', (jsonl_render.OP_TS, 0), b'"']
        else:
            col = frame.get_column(spec.name).cast(pl.String)
            if _safe_strings(col):
                pieces += [b'"', column(texts, jsonl_render.OP_TEXT, spec.name), b'"']
            else:
                uniq = col.unique(maintain_order=True)
                mapped = pl.Series(json_strings(uniq.to_list()), dtype=pl.String)
                frame_cols[spec.name] = col.replace_strict(uniq, mapped)
                pieces.append(column(texts, jsonl_render.OP_TEXT, spec.name))
    pieces.append(b"}\n")
    if frame_cols:
        frame = frame.with_columns(**frame_cols)
    program = jsonl_render.Program.build(pieces)
    return JsonlPlan(frame, program, tuple(ints), tuple(texts), ts, derive, rows)


def plan_lines(plan: JsonlPlan) -> pl.Series:
    """All lines of a plan at once (small files, tests)."""
    return plan.chunk(0, plan.n)


def jsonl_lines(frame: pl.DataFrame, fields: Mapping[str, Const | Col]) -> pl.Series:
    """One JSONL line per frame row (with its trailing newline); see :func:`jsonl_plan`."""
    return plan_lines(jsonl_plan(frame, fields))


def lines_bytes(lines: pl.Series) -> bytes:
    """The file bytes of a line series (small files and tests)."""
    if lines.len() == 0:
        return b""
    return str(lines.str.join("").item()).encode("ascii")


def plan_bytes(plan: JsonlPlan, *, chunk_rows: int = CHUNK_ROWS) -> bytes:
    """The file bytes of a whole plan (in-memory files such as S6's trace tail)."""
    return b"".join(
        plan.render(a, a + chunk_rows).data.tobytes() for a in range(0, plan.n, chunk_rows)
    )


def _view_buffers(lines: pl.Series) -> list[memoryview] | None:
    """Zero-copy byte ranges holding the concatenated lines, or None if not contiguous.

    polars stores strings as Arrow ``string_view``: values longer than 12 bytes live in data
    buffers, appended in row order by ``concat_str``. When every value is out-of-line and the
    views walk the buffers strictly sequentially (also true for a slice of such a column), the
    covered buffer ranges *are* the file bytes.
    """
    arr = lines.to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(arr, pa.ChunkedArray):
        if arr.num_chunks != 1:
            return None
        arr = arr.chunk(0)
    if arr.type != pa.string_view() or arr.null_count or len(arr) == 0:
        return None
    bufs = arr.buffers()
    views = np.frombuffer(bufs[1], dtype=np.uint32, count=4 * (arr.offset + len(arr)))
    views = views.reshape(-1, 4)[arr.offset :]
    length = views[:, 0].astype(np.int64)
    if int(length.min()) <= 12:
        return None
    idx = views[:, 2].astype(np.int64)
    off = views[:, 3].astype(np.int64)
    end = off + length
    same = idx[1:] == idx[:-1]
    step = (idx[1:] == idx[:-1] + 1) & (off[1:] == 0)
    if not bool(np.all(np.where(same, off[1:] == end[:-1], step))):
        return None
    data = bufs[2:]
    firsts = np.flatnonzero(np.concatenate(([True], ~same)))
    lasts = np.flatnonzero(np.concatenate((~same, [True])))
    out = []
    for lo, hi in zip(firsts.tolist(), lasts.tolist(), strict=True):
        b = int(idx[lo])
        if b >= len(data) or int(end[hi]) > data[b].size:
            return None
        out.append(memoryview(data[b])[int(off[lo]) : int(end[hi])])
    return out


def line_buffers(lines: pl.Series) -> list[Any]:
    """The bytes of a line series as buffers in order: zero-copy views when the layout allows
    (see :func:`_view_buffers`), else one joined ``bytes``."""
    if lines.len() == 0:
        return []
    parts = _view_buffers(lines)
    return parts if parts is not None else [lines_bytes(lines)]


def write_series(fh: Any, lines: pl.Series, *hashers: Any) -> int:
    """Append a line series verbatim to an open binary file; returns bytes written.

    ``hashers`` (``hashlib`` objects) are fed the same bytes in the same order, so digests come
    from the buffers already in memory instead of a second read of the file.
    """
    return sum(_write(fh, mv, hashers) for mv in line_buffers(lines))


@dataclass(frozen=True)
class WrittenFile:
    """A staged JSONL file: rows, bytes, its first/last line (for spot checks) and the
    SHA-256 of its bytes (H1, computed while writing; ``""`` when the writer was told not to
    hash)."""

    path: Path
    rows: int
    bytes: int
    first: str | None
    last: str | None
    sha256: str = ""


@dataclass(frozen=True)
class WrittenFolder:
    """Files written by :func:`write_jsonl_folder`.

    ``sha256`` is the H2 folder digest (every file's bytes, concatenated in relative-path
    order) of the files below ``root``, or None when it was not computed: the writer was told
    not to hash, or the plan's row order does not follow the path order (then the publisher
    digests the folder itself if it needs the digest).
    """

    files: dict[Path, WrittenFile]
    sha256: str | None


def _write(fh: Any, data: Any, hashers: Sequence[Any]) -> int:
    """Append bytes to an open file and feed them to ``hashers`` (``hashlib`` objects: both
    ``write`` and ``update`` release the GIL on multi-MB buffers); returns bytes written."""
    view = memoryview(data).cast("B")
    for a in range(0, len(view), _WRITE_BYTES):
        fh.write(view[a : a + _WRITE_BYTES])
    for h in hashers:
        h.update(view)
    return len(view)


class RenderStoppedError(Exception):
    """A render was told to stop (its output is incomplete and must be discarded)."""


def write_jsonl(
    path: Path,
    plan: JsonlPlan,
    *,
    chunk_rows: int = CHUNK_ROWS,
    stop: threading.Event | None = None,
    hashed: bool = True,
) -> WrittenFile:
    """Serialise every row of a plan into ``path``, chunk by chunk (bounded memory, one reused
    render buffer), hashing the bytes on the way unless ``hashed`` is off. ``stop`` set
    between two chunks raises :class:`RenderStoppedError`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    first = last = None
    size = 0
    h = hashlib.sha256() if hashed else None
    out: np.ndarray | None = None
    with path.open("wb") as fh:
        for a in range(0, plan.n, chunk_rows):
            if stop is not None and stop.is_set():
                raise RenderStoppedError(str(path))
            done = plan.render(a, a + chunk_rows, out=out)
            out = done.buffer
            if a == 0:
                first = done.line(0)
            last = done.line(done.rows - 1)
            size += _write(fh, done.data, (h,) if h is not None else ())
    return WrittenFile(path, plan.n, size, first, last, h.hexdigest() if h is not None else "")


def write_jsonl_folder(
    plan: JsonlPlan,
    ranges: Mapping[Path, tuple[int, int]],
    root: Path | None,
    *,
    chunk_rows: int = CHUNK_ROWS,
    file_digests: bool = True,
    folder_digest: bool = True,
) -> WrittenFolder:
    """Render a plan once, chunk by chunk, writing consecutive row ranges to their own files
    below ``root`` (per-day logs: the plan's rows are sorted by day; ``ranges`` cover
    ``[0, n)``). Each file is hashed while written (unless ``file_digests`` is off: then each
    :attr:`WrittenFile.sha256` is ``""``, for a publisher that needs only the folder's); when
    ``folder_digest`` is on, ``root`` is given and the files' row order equals their
    relative-path order, the folder digest (H2) is accumulated in the same pass."""
    spans = [(p, r) for p, r in sorted(ranges.items(), key=lambda kv: kv[1]) if r[1] > r[0]]
    rels = [p.relative_to(root).as_posix() for p, _ in spans] if root is not None else None
    in_path_order = rels is not None and rels == sorted(rels)
    folder = hashlib.sha256() if folder_digest and in_path_order else None
    out_files: dict[Path, WrittenFile] = {}
    k = 0
    fh: Any = None
    h: Any = None
    state: dict[str, Any] = {}
    buffer: np.ndarray | None = None
    try:
        for a in range(0, plan.n, chunk_rows):
            b = min(a + chunk_rows, plan.n)
            done = plan.render(a, b, out=buffer)
            buffer = done.buffer
            while k < len(spans) and spans[k][1][0] < b:
                path, (lo, hi) = spans[k]
                if fh is None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    fh = path.open("wb")
                    h = hashlib.sha256() if file_digests else None
                    state = {"rows": 0, "bytes": 0, "first": None}
                s0, s1 = max(lo, a), min(hi, b)
                hashers = tuple(x for x in (h, folder) if x is not None)
                size = _write(fh, done.span(s0 - a, s1 - a), hashers)
                if state["first"] is None:
                    state["first"] = done.line(s0 - a)
                state["rows"] += s1 - s0
                state["bytes"] += size
                if hi > b:
                    break
                fh.close()
                fh = None
                out_files[path] = WrittenFile(
                    path,
                    state["rows"],
                    state["bytes"],
                    state["first"],
                    done.line(s1 - a - 1),
                    h.hexdigest() if h is not None else "",
                )
                k += 1
    finally:
        if fh is not None:
            fh.close()
    return WrittenFolder(out_files, folder.hexdigest() if folder is not None else None)


def write_jsonl_split(
    plan: JsonlPlan,
    ranges: Mapping[Path, tuple[int, int]],
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> dict[Path, WrittenFile]:
    """Render a plan once, chunk by chunk, writing consecutive row ranges to their own files
    (per-day logs: the plan's rows are sorted by day; ``ranges`` cover ``[0, n)`` in order)."""
    return write_jsonl_folder(plan, ranges, None, chunk_rows=chunk_rows).files


def write_lines(lines: pl.Series, path: Path) -> None:
    """Write a line series verbatim to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        write_series(fh, lines)


# ---------------------------------------------------------------------------------------------
# Time law
# ---------------------------------------------------------------------------------------------


def ts_micros(ts_utc: str) -> int:
    """Microseconds since the epoch of an rfc3339_micros timestamp (inverse of the time law's
    formatting); ``ValueError`` if it is not ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return _parse_ts(ts_utc)


def _parse_ts(created_utc: str) -> int:
    m = _TS.match(created_utc)
    if not m:
        msg = f"created_utc {created_utc!r} is not rfc3339_micros"
        raise ValueError(msg)
    y, mo, d, h, mi, s, us = (int(g) for g in m.groups())
    base = dt.datetime(y, mo, d, h, mi, s, tzinfo=dt.UTC)
    return int(base.timestamp()) * 1_000_000 + us


_TS_PREFIX = "_ts_prefix"
_TS_MICROS = "_ts_micros"
# Six zero-padded digits of the microsecond: ``1_000_000 + f`` printed, leading "1" dropped.
_TS_FRACTION = (pl.col(_TS_MICROS) + 1_000_000).cast(pl.String).str.slice(1)


def _ts_parts(created_utc: str, k: np.ndarray) -> tuple[pl.Series, pl.Series]:
    """``created_utc + k µs`` as ``(_ts_prefix, _ts_micros)``: the ``YYYY-MM-DDTHH:MM:SS.``
    text of each row's second and its microsecond (0..999999).

    Only distinct whole seconds (a handful per million rows) go through ``datetime``.
    """
    kk = np.asarray(k, dtype=np.int64)
    total = _parse_ts(created_utc) + kk
    sec = total // 1_000_000
    frac = total - sec * 1_000_000
    s0 = int(sec.min()) if kk.size else 0
    s1 = int(sec.max()) if kk.size else -1
    prefixes = pl.Series(
        [
            dt.datetime.fromtimestamp(s, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            for s in range(s0, s1 + 1)
        ],
        dtype=pl.String,
    )
    prefix = prefixes.gather(pl.Series((sec - s0).astype(np.uint32))).alias(_TS_PREFIX)
    return prefix, pl.Series(_TS_MICROS, frac, dtype=pl.Int64)


def ts_utc_series(created_utc: str, k: np.ndarray) -> pl.Series:
    """``created_utc + k µs`` formatted ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (contracts §14)."""
    kk = np.asarray(k, dtype=np.int64)
    if kk.size == 0:
        return pl.Series("ts_utc", [], dtype=pl.String)
    frame = pl.DataFrame(_ts_parts(created_utc, kk))
    return frame.select(
        pl.concat_str([pl.col(_TS_PREFIX), _TS_FRACTION, pl.lit("Z")]).alias("ts_utc")
    ).to_series()


# ---------------------------------------------------------------------------------------------
# Event and trace rows
# ---------------------------------------------------------------------------------------------


def _envelope(tokens: RunTokens, *, hi_zero: bool) -> dict[str, Const | Col]:
    return {
        "ts_utc": Col("ts_utc", "str"),
        "run_id": Const(tokens.run_id),
        "seed": Const(int(tokens.seed)),
        "parameter_hash": Const(tokens.parameter_hash),
        "manifest_fingerprint": Const(tokens.manifest_fingerprint),
        **_counter_fields(hi_zero=hi_zero),
        "draws": Const("1"),
        "blocks": Const(1),
    }


def _counter_fields(*, hi_zero: bool) -> dict[str, Const | Col]:
    """Counter keys; high words that are 0 on every row become constants (fewer pieces)."""
    return {
        "rng_counter_before_lo": Col("before_lo"),
        "rng_counter_before_hi": Const(0) if hi_zero else Col("before_hi"),
        "rng_counter_after_lo": Col("after_lo"),
        "rng_counter_after_hi": Const(0) if hi_zero else Col("after_hi"),
    }


def _counter_columns(
    before_hi: np.ndarray,
    before_lo: np.ndarray,
    after_hi: np.ndarray,
    after_lo: np.ndarray,
    *,
    hi_zero: bool | None = None,
) -> tuple[dict[str, pl.Series], bool]:
    """Counter columns and whether the high words were left out (all zero: constants in the
    line). ``hi_zero`` given: a whole plan's decision applied to one chunk of it."""
    if hi_zero is None:
        hi_zero = not (before_hi.any() or after_hi.any())
    cols = {
        "before_lo": pl.Series(before_lo, dtype=pl.UInt64),
        "after_lo": pl.Series(after_lo, dtype=pl.UInt64),
    }
    if not hi_zero:
        cols["before_hi"] = pl.Series(before_hi, dtype=pl.UInt64)
        cols["after_hi"] = pl.Series(after_hi, dtype=pl.UInt64)
    return cols, hi_zero


def event_plan(
    tokens: RunTokens,
    *,
    module: str,
    substream_label: str,
    counters: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | CounterLaw,
    ts: tuple[int, int],
    extra_columns: Mapping[str, pl.Series],
    extra_fields: Mapping[str, Const | Col],
) -> JsonlPlan:
    """Rows of one event family (single-uniform events: ``draws="1"``, ``blocks=1``).

    ``counters`` = (before_hi, before_lo, after_hi, after_lo) per event, or the
    :class:`CounterLaw` they follow (rendered per chunk, never stored); event ``e`` gets
    ``ts_utc = created_utc + (ts[0] * e + ts[1]) µs``; ``extra_fields`` are the family's keys.
    """
    derive: Derive | None = None
    if isinstance(counters, CounterLaw):
        rows = len(next(iter(extra_columns.values()))) if extra_columns else 0
        hi_zero = counters.hi_zero(rows)
        derive = counters.derive(hi_zero=hi_zero)
        cols: dict[str, pl.Series] = {}
    else:
        cols, hi_zero = _counter_columns(*counters)
    frame = pl.DataFrame({**cols, **extra_columns})
    fields: dict[str, Const | Col] = {
        **_envelope(tokens, hi_zero=hi_zero),
        "module": Const(module),
        "substream_label": Const(substream_label),
        **extra_fields,
    }
    return jsonl_plan(frame, fields, ts=(tokens.created_utc, *ts), derive=derive)


def trace_plan(
    tokens: RunTokens,
    *,
    modules: Sequence[str],
    labels: Sequence[str],
    key_codes: np.ndarray,
    counters: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ts: tuple[int, int],
) -> JsonlPlan:
    """Trace rows, one per event in event order, with cumulative per-key totals (S5 §3.2).

    ``key_codes[e]`` indexes ``(modules[c], labels[c])`` of event ``e``. Every routing event has
    ``draws = 1`` and ``blocks = 1``, so ``draws_total = blocks_total = events_total`` = the
    running count of the key (accumulator starting at zero per state invocation). Row ``e``
    gets ``ts_utc = created_utc + (ts[0] * e + ts[1]) µs``.
    """
    codes = np.asarray(key_codes, dtype=np.int64)
    totals = np.zeros(codes.size, dtype=np.uint64)
    for c in range(len(modules)):
        idx = np.flatnonzero(codes == c)
        totals[idx] = np.arange(1, idx.size + 1, dtype=np.uint64)
    # A key part shared by every key (S5: one module, two labels) is a constant, not a column.
    gather = pl.Series(codes.astype(np.uint32))
    key_cols: dict[str, pl.Series] = {}
    mod_field: Const | Col = Const(modules[0])
    lab_field: Const | Col = Const(labels[0])
    if len(set(modules)) > 1:
        key_cols["module"] = pl.Series(json_strings(modules), dtype=pl.String).gather(gather)
        mod_field = Col("module", "json")
    if len(set(labels)) > 1:
        key_cols["label"] = pl.Series(json_strings(labels), dtype=pl.String).gather(gather)
        lab_field = Col("label", "json")
    cols, hi_zero = _counter_columns(*counters)
    frame = pl.DataFrame({**cols, "total": pl.Series(totals, dtype=pl.UInt64), **key_cols})
    fields = _trace_fields(tokens, mod_field, lab_field, hi_zero=hi_zero)
    return jsonl_plan(frame, fields, ts=(tokens.created_utc, *ts))


def _trace_fields(
    tokens: RunTokens, module: Const | Col, label: Const | Col, *, hi_zero: bool
) -> dict[str, Const | Col]:
    return {
        "ts_utc": Col("ts_utc", "str"),
        "run_id": Const(tokens.run_id),
        "seed": Const(int(tokens.seed)),
        "module": module,
        "substream_label": label,
        **_counter_fields(hi_zero=hi_zero),
        "draws_total": Col("total"),
        "blocks_total": Col("total"),
        "events_total": Col("total"),
    }


def periodic_trace_plan(
    tokens: RunTokens,
    *,
    module: str,
    labels: Sequence[str],
    counters: CounterLaw,
    events: int,
    ts: tuple[int, int],
) -> JsonlPlan:
    """:func:`trace_plan` of ``events`` events whose keys take turns: event ``k`` is
    ``(module, labels[k % len(labels)])`` (S5: group, site, group, …), so its running total is
    ``k // len(labels) + 1``. Every column follows from the row number (``counters`` a law
    with ``step`` 1, ``offset`` 0), so the plan stores nothing per row.
    """
    period = len(labels)
    label_json = pl.Series(json_strings(labels), dtype=pl.String)
    hi_zero = counters.hi_zero(events)
    counter_cols = counters.derive(hi_zero=hi_zero)

    def columns(start: int, stop: int) -> dict[str, pl.Series]:
        k = np.arange(start, stop, dtype=np.uint64)
        cols = dict(counter_cols(start, stop))
        cols["total"] = pl.Series(k // np.uint64(period) + np.uint64(1), dtype=pl.UInt64)
        if period > 1:
            cols["label"] = label_json.gather(pl.Series((k % np.uint64(period)).astype(np.uint32)))
        return cols

    label: Const | Col = Col("label", "json") if period > 1 else Const(labels[0])
    fields = _trace_fields(tokens, Const(module), label, hi_zero=hi_zero)
    return jsonl_plan(
        pl.DataFrame(), fields, ts=(tokens.created_utc, *ts), derive=columns, rows=events
    )


# ---------------------------------------------------------------------------------------------
# Audit row (one per run; wall-clock allowed)
# ---------------------------------------------------------------------------------------------


def build_commit() -> str:
    """``build_commit``: ``$ENGINE_COMMIT`` as hex64 (a SHA-1 left-padded with 24 zeros), else
    64 zeros."""
    raw = os.environ.get("ENGINE_COMMIT", "").strip().lower()
    if _HEX64.fullmatch(raw):
        return raw
    if _HEX40.fullmatch(raw):
        return "0" * 24 + raw
    return "0" * 64


def audit_row(tokens: RunTokens, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The run's ``rng_audit_log`` row (S5 §3.3): wall-clock ``ts_utc``, null digest/notes."""
    stamp = (now or dt.datetime.now(tz=dt.UTC)).astimezone(dt.UTC)
    return {
        "ts_utc": stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "run_id": tokens.run_id,
        "seed": int(tokens.seed),
        "manifest_fingerprint": tokens.manifest_fingerprint,
        "parameter_hash": tokens.parameter_hash,
        "algorithm": "philox2x64-10",
        "build_commit": build_commit(),
        "code_digest": None,
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "notes": None,
    }


def _stage_replace(target: Path, data: bytes | Callable[[Path], None], code: str, ds: str) -> None:
    """Write ``data`` to a sibling ``_tmp.<uuid>/`` file and ``os.replace`` it onto ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = target.parent / f"_tmp.{uuid.uuid4().hex}"
    try:
        stage.mkdir()
        staged = stage / target.name
        if callable(data):
            data(staged)
        else:
            staged.write_bytes(data)
        os.replace(staged, target)
    except OSError as exc:
        raise SegmentError(
            code,
            f"ATOMIC_PUBLISH_FAILED: {exc}",
            dataset=ds,
            key=str(target),
            context={"staging_path": str(stage), "final_path": str(target)},
        ) from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def ensure_audit_row(target: Path, row: Mapping[str, Any], *, prefix: str) -> PublishResult:
    """Append ``row`` unless a row with the same run identity already exists (S5 §8).

    Identity = ``(run_id, seed, parameter_hash, manifest_fingerprint)``. The file is never
    rewritten otherwise: the append is ``existing ‖ line`` staged and atomically renamed.
    """
    errors = json_errors(AUDIT_SCHEMA, dict(row))
    if errors:
        raise SegmentError(
            f"{prefix}-050",
            f"audit row fails its schema: {errors[0]}",
            dataset="rng_audit_log",
            key=str(target),
        )
    ident = tuple(row[k] for k in ("run_id", "seed", "parameter_hash", "manifest_fingerprint"))
    existing = target.read_bytes() if target.is_file() else b""
    for raw in existing.splitlines():
        if not raw.strip():
            continue
        try:
            prev = json.loads(raw)
        except ValueError as exc:
            raise SegmentError(
                f"{prefix}-050",
                f"existing audit log holds a non-JSON line: {exc}",
                dataset="rng_audit_log",
                key=str(target),
            ) from exc
        if (
            tuple(prev.get(k) for k in ("run_id", "seed", "parameter_hash", "manifest_fingerprint"))
            == ident
        ):
            return PublishResult(target, len(existing), sha256_file(target), "idempotent")
    line = (json.dumps(dict(row), ensure_ascii=True, sort_keys=True) + "\n").encode("ascii")
    data = existing + line
    _stage_replace(target, data, f"{prefix}-082", "rng_audit_log")
    return PublishResult(target, len(data), hashlib.sha256(data).hexdigest(), "published")


# ---------------------------------------------------------------------------------------------
# Publishing
# ---------------------------------------------------------------------------------------------


def publish_staged(
    home: StorageHome,
    target: Path,
    staged: Path,
    *,
    prefix: str,
    state: str,
    dataset_id: str,
    input_version: str,
    digest: str | None = None,
    hash_fresh: bool = True,
) -> PublishResult:
    """Publish a partition folder whose files were already written (validated) under ``staged``.

    The children of ``staged`` are moved (same-filesystem renames) into
    :func:`~segment2b.storage.publish.publish_folder`'s stage, which digests the folder (H2) and
    renames it onto ``target``: existing identical folder -> idempotent; different ->
    ``<prefix>-080`` unless the input version changed (README §2 working-output replace).
    Used for event families (``run_id=…/part-00000.jsonl``) and the per-day logs (the whole
    ``run_id=…/`` folder with its ``utc_day=…/`` files: one atomic rename for every day).
    ``digest``: the staged folder's H2 digest when the writer already computed it from the
    bytes it wrote (saves re-reading them); None digests the staged folder, unless
    ``hash_fresh`` is off and no target exists (then nothing is compared and the result's
    digest is None).
    """

    def write(stage: Path) -> None:
        for child in sorted(staged.iterdir()):
            os.replace(child, stage / child.name)

    return publish_folder(
        home,
        target,
        write,
        prefix=prefix,
        state=state,
        dataset_id=dataset_id,
        input_version=input_version,
        digest=digest,
        hash_fresh=hash_fresh,
    )


def _version_file(home: StorageHome, target: Path, tag: str) -> Path:
    rel = target.relative_to(home.root).as_posix()
    return home.versions / f"{rel}.{tag}.version"


def _read_version(home: StorageHome, target: Path, tag: str) -> str | None:
    vf = _version_file(home, target, tag)
    return vf.read_text(encoding="ascii") if vf.is_file() else None


def _write_version(home: StorageHome, target: Path, tag: str, version: str) -> None:
    vf = _version_file(home, target, tag)
    vf.parent.mkdir(parents=True, exist_ok=True)
    tmp = vf.with_name(f"{vf.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(version, encoding="ascii")
    os.replace(tmp, vf)


def _hash_and_prefix_match(staged: Path, target: Path | None) -> tuple[str, bool]:
    """SHA-256 of ``staged`` and whether ``target`` starts with exactly its bytes (one pass)."""
    h = hashlib.sha256()
    chunk = 1 << 22
    match = target is not None and target.stat().st_size >= staged.stat().st_size
    with (
        staged.open("rb") as b,
        target.open("rb") if match and target else open(os.devnull, "rb") as a,
    ):
        while want := b.read(chunk):
            h.update(want)
            if match and a.read(len(want)) != want:
                match = False
    return h.hexdigest(), match


def _last_line(path: Path) -> bytes:
    size = path.stat().st_size
    if size == 0:
        return b""
    with path.open("rb") as fh:
        back = min(size, 1 << 16)
        while True:
            fh.seek(size - back)
            tail = fh.read(back).rstrip(b"\n")
            cut = tail.rfind(b"\n")
            if cut >= 0 or back == size:
                return tail[cut + 1 :]
            back = min(size, back * 4)


_S6_ROW_MARK = b'"module": "2B.virtual_edge"'
"""Bytes every S6 trace row holds (S6 §3.2): how a trace's tail is recognised as S6's."""


def _ends_with(path: Path, data: bytes) -> bool:
    """Whether the file at ``path`` ends with exactly ``data`` (reads only that many bytes)."""
    size = path.stat().st_size
    if size < len(data):
        return False
    with path.open("rb") as fh:
        fh.seek(size - len(data))
        return fh.read() == data


def _s5_overwrite(target: Path, digest: str) -> SegmentError:
    return SegmentError(
        "2B-S5-080",
        "IMMUTABLE_OVERWRITE: existing trace does not start with this run's S5 rows",
        dataset="rng_trace_log",
        key=str(target),
        context={"digest_now": digest},
    )


def _s6_reemit(target: Path) -> SegmentError:
    return SegmentError(
        "2B-S6-081",
        "NON_IDEMPOTENT_REEMIT: the trace already holds a different S6 append",
        dataset="rng_trace_log",
        key=str(target),
    )


def _s6_replay_mismatch(target: Path) -> SegmentError:
    return SegmentError(
        "2B-S6-095",
        "REPLAY_MISMATCH: no virtual arrivals now, but the trace holds S6 rows",
        dataset="rng_trace_log",
        key=str(target),
    )


def publish_trace_s5(
    home: StorageHome,
    target: Path,
    staged: Path,
    *,
    input_version: str,
    digest: str | None = None,
) -> PublishResult:
    """Publish S5's trace rows (S5 §8) from a staged file on the target's filesystem.

    * target absent -> publish;
    * target starts with exactly the new bytes (equal, or S6 appended after S5) -> idempotent;
    * otherwise, if S5's recorded input version differs -> replace the file with the new S5 rows
      (any S6 tail is dropped: S6 is stale and re-appends);
    * else ``2B-S5-080``.

    ``digest``: SHA-256 of the staged bytes if the writer computed it. A fresh target needs
    no read at all; it is not hashed either when ``digest`` is None (the result's digest is
    then None: the trace is versioned by ``input_version``).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    exists = target.exists()
    prefix_ok = False
    if exists:
        digest, prefix_ok = _hash_and_prefix_match(staged, target)
    size = staged.stat().st_size
    outcome: Literal["published", "idempotent", "replaced"] = "published"
    if exists:
        if prefix_ok:
            _write_version(home, target, "s5", input_version)
            return PublishResult(target, size, digest, "idempotent")
        prev = _read_version(home, target, "s5")
        if prev is None or prev == input_version:
            raise _s5_overwrite(target, digest)
        outcome = "replaced"

    def move(dst: Path) -> None:
        os.replace(staged, dst)

    _stage_replace(target, move, "2B-S5-082", "rng_trace_log")
    _write_version(home, target, "s5", input_version)
    return PublishResult(target, size, digest, outcome)


def publish_trace_s5_s6(
    home: StorageHome,
    target: Path,
    staged: Path,
    *,
    input_version: str,
    tail: bytes,
    tail_version: str,
    digest: str | None = None,
) -> tuple[PublishResult, PublishResult | None]:
    """S5's trace rows and S6's tail published as one file, with one write and one rename.

    For a step that runs S5 and S6 together (S6 rendered its tail from S5's in-memory routing
    before S5 published). The end state, outcomes and codes are those of
    :func:`publish_trace_s5` followed by :func:`publish_trace_s6`, checked in that order; but
    S5's rows are not copied a second time to append S6's (a copy that grows with all arrivals,
    not with S6's virtual ones): the tail is appended to S5's private staged file before its
    one rename. ``staged`` holds S5's rows only (SHA-256 ``digest`` if known; a fresh target
    leaves an unknown one None, as :func:`publish_trace_s5` does) and is consumed.
    Returns S5's result (its rows) and S6's (its tail; None when there is no tail).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tail_digest = hashlib.sha256(tail).hexdigest()
    size = staged.stat().st_size
    exists = target.exists()
    prefix_ok = False
    if exists:
        digest, prefix_ok = _hash_and_prefix_match(staged, target)
    s5_outcome: Literal["published", "idempotent", "replaced"] = "published"
    s6_outcome: Literal["published", "idempotent", "replaced"] = "published"
    keep = (size, size)  # target bytes [a, b) kept between S5's rows and the new tail
    if exists and prefix_ok:
        s5_outcome = "idempotent"
        total = target.stat().st_size
        # S6's rules on "target after S5": its tail (or, with no tail, no S6 rows) already
        # there -> nothing to write.
        s6_rows_last = _S6_ROW_MARK in _last_line(target)
        if (tail and total - size >= len(tail) and _ends_with(target, tail)) or (
            not tail and not s6_rows_last
        ):
            _write_version(home, target, "s5", input_version)
            if tail:
                _write_version(home, target, "s6", tail_version)
            return (
                PublishResult(target, size, digest, "idempotent"),
                PublishResult(target, len(tail), tail_digest, "idempotent") if tail else None,
            )
        if total > size and s6_rows_last:
            if not tail:
                raise _s6_replay_mismatch(target)
            prev = _read_version(home, target, "s6")
            if prev is None or prev == tail_version:
                raise _s6_reemit(target)
            existing = target.read_bytes()  # rare: an S6 tail is being replaced
            pos = existing.find(_S6_ROW_MARK, size)
            keep = (size, existing.rfind(b"\n", 0, pos) + 1)
            s6_outcome = "replaced"
        else:
            keep = (size, total)  # whatever follows S5's rows stays, as a plain append would
    elif exists:
        prev = _read_version(home, target, "s5")
        if prev is None or prev == input_version:
            raise _s5_overwrite(target, digest)
        s5_outcome = "replaced"  # an old S6 tail goes with the old S5 rows

    def move(dst: Path) -> None:
        with staged.open("ab") as out:
            if keep[1] > keep[0]:
                with target.open("rb") as src:
                    src.seek(keep[0])
                    out.write(src.read(keep[1] - keep[0]))
            out.write(tail)
        os.replace(staged, dst)

    _stage_replace(target, move, "2B-S5-082", "rng_trace_log")
    _write_version(home, target, "s5", input_version)
    if tail:
        _write_version(home, target, "s6", tail_version)
    return (
        PublishResult(target, size, digest, s5_outcome),
        PublishResult(target, len(tail), tail_digest, s6_outcome) if tail else None,
    )


@dataclass(frozen=True)
class TraceCopy:
    """A private copy of the shared trace (S5's rows) made while S6 renders, so S6's publish
    only appends its tail and renames. ``source`` is the copied file's ``(inode, size,
    mtime_ns)``: the copy is used only if the trace is still exactly that file."""

    stage: Path
    path: Path
    source: tuple[int, int, int]

    def discard(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def copy_trace_ahead(target: Path) -> TraceCopy | None:
    """Copy the trace into a private ``_tmp.<uuid>/`` sibling ahead of :func:`publish_trace_s6`
    (a kernel copy that overlaps S6's rendering). None if there is no trace, it changed while
    being copied, or the copy failed (the publish then copies as usual)."""
    stage = target.parent / f"_tmp.{uuid.uuid4().hex}"
    try:
        before = _stat_key(target)
        if before is None:
            return None
        stage.mkdir()
        path = stage / target.name
        shutil.copyfile(target, path)
        if _stat_key(target) != before:
            shutil.rmtree(stage, ignore_errors=True)
            return None
    except OSError:
        shutil.rmtree(stage, ignore_errors=True)
        return None
    return TraceCopy(stage, path, before)


def publish_trace_s6(
    home: StorageHome,
    target: Path,
    tail: bytes,
    *,
    input_version: str,
    ahead: TraceCopy | None = None,
) -> PublishResult | None:
    """Append S6's trace rows after S5's (S6 §7) by publishing ``existing ‖ tail`` atomically.

    * no S6 rows -> no-op (``None``), but an existing S6 tail is a replay mismatch
      (``2B-S6-095``);
    * target ends with exactly the tail -> idempotent;
    * target's last row is an S6 row -> ``2B-S6-081``, unless S6's recorded input version
      differs, in which case the old S6 tail is replaced;
    * target absent -> the tail becomes the file (spec: rename temp into place).

    ``ahead``: a :func:`copy_trace_ahead` copy, used instead of copying the trace now when the
    trace is still the file it was made from (the caller discards it afterwards).
    The returned digest and size are those of S6's tail (S6's contribution to the shared file).
    """
    if not tail:
        if target.is_file() and _S6_ROW_MARK in _last_line(target):
            raise _s6_replay_mismatch(target)
        return None
    digest = hashlib.sha256(tail).hexdigest()
    if not target.exists():
        _stage_replace(target, tail, "2B-S6-082", "rng_trace_log")
        _write_version(home, target, "s6", input_version)
        return PublishResult(target, len(tail), digest, "published")
    if _ends_with(target, tail):
        _write_version(home, target, "s6", input_version)
        return PublishResult(target, len(tail), digest, "idempotent")
    size = target.stat().st_size
    outcome: Literal["published", "replaced"] = "published"
    keep = size
    if _S6_ROW_MARK in _last_line(target):
        prev = _read_version(home, target, "s6")
        if prev is None or prev == input_version:
            raise _s6_reemit(target)
        existing = target.read_bytes()
        pos = existing.find(_S6_ROW_MARK)
        keep = existing.rfind(b"\n", 0, pos) + 1
        outcome = "replaced"

    def write(staged: Path) -> None:
        if ahead is not None and ahead.path.is_file() and _stat_key(target) == ahead.source:
            os.replace(ahead.path, staged)  # the copy made while S6 rendered
        else:
            shutil.copyfile(target, staged)  # kernel copy of the S5 part
        with staged.open("r+b") as dst:
            dst.truncate(keep)
            dst.seek(keep)
            dst.write(tail)

    _stage_replace(target, write, "2B-S6-082", "rng_trace_log")
    _write_version(home, target, "s6", input_version)
    return PublishResult(target, len(tail), digest, outcome)
