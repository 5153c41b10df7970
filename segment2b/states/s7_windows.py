"""S7's router block over arrival windows: memory bounded by a window, not by the run.

Grain: a *window* is a run of consecutive selection-log days (whole files, about
:data:`WINDOW_SELECTION_BYTES` of them) with the same rows of the group and site event files,
the edge-log days it spans with their rows of ``cdn_edge_pick``, and the window's rows of the
trace's S5 segment. The trace's S6 segment is checked after the last window, in windows of
virtual arrivals.

Why: the exact path (:func:`.s7_audit._router_block`) holds the tables of every router log at
once, about 0.75 kB per arrival at its peak: some 30 GiB for the 40M arrivals of a
123,800-merchant world, on a 24 GiB machine (issue 7).

How it stays exact: this is an optimisation of the *passing* audit only. Each window runs the
exact path's checks (the same functions) on predicted-and-proved tables of its rows, and what
those checks chain across rows is carried from window to window: timestamp order, the strict
increase of each family's counters, running totals and the byte position in each file. Nothing
is recorded until every window has passed. Any doubt (a failed check, a prediction that does
not prove, a layout this module does not know) returns False, and the caller then runs the
exact path from the start. Codes, failure order and locations are therefore the exact path's
by construction; the tests run every router fault both ways.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import mmap
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl

from segment2b.states import s7_audit as audit
from segment2b.states.s7_audit import (
    FAMILIES,
    S5_FAMILIES,
    AuditError,
    AuditLedger,
    JsonlTable,
    LogFile,
    RouterLogs,
    S7Inputs,
)

__all__ = ["WINDOW_BYTES", "WINDOW_SELECTION_BYTES", "router_windows", "windowable"]

WINDOW_BYTES = 4 << 30
"""Router logs (bytes on disk) above which the router block runs in windows. The default
world's ~1 GB per seed stays on the exact path (one pass, read ahead beside the S2-S4 checks);
a 12,380-merchant world (~10 GB) and larger run in windows."""

WINDOW_SELECTION_BYTES = 256 << 20
"""Selection-log bytes per window (~600k arrivals, ~0.6 GB of tables at a time)."""

_VIRTUAL_WINDOW = 1 << 20
"""Virtual arrivals per window of the trace's S6 segment."""


class _UndecidedError(Exception):
    """The windows cannot decide: leave it to the exact path."""


@dataclass
class _Stream:
    """One single-file log consumed front to back, window after window."""

    lf: LogFile
    mm: mmap.mmap
    data: np.ndarray
    pos: int = 0
    last_after: tuple[int, int] | None = None
    released: int = 0

    @property
    def done(self) -> bool:
        return self.pos == self.data.size

    def release(self) -> None:
        """Unmap the pages before the position from this process (they stay in the page
        cache): a window's file pages would otherwise stay resident until the end, and the
        resident set of a large run would grow with the logs again."""
        end = self.pos - self.pos % mmap.PAGESIZE
        if end > self.released and hasattr(mmap, "MADV_DONTNEED"):
            self.mm.madvise(mmap.MADV_DONTNEED, self.released, end - self.released)
            self.released = end


def _read_ahead(ranges: Sequence[tuple[LogFile, float, float]]) -> None:
    """Read ``(file, from share, to share)`` ranges into the page cache (run on a thread: the
    reads release the GIL). Only a hint: the windows map and check the files themselves.

    Reading, not ``posix_fadvise(WILLNEED)``: Linux caps that request at one read-ahead window.
    From a cold cache at 4M arrivals it measured 23-27 s, like no read-ahead (25-27 s); reading
    measured 21-23 s."""
    buf = bytearray(8 << 20)
    for lf, lo, hi in ranges:
        with lf.path.open("rb", buffering=0) as fh:
            size = os.fstat(fh.fileno()).st_size
            pos, end = int(lo * size), min(size, int(hi * size))
            fh.seek(pos)
            while pos < end and (n := fh.readinto(buf)):
                pos += n


def windowable(logs: RouterLogs | None) -> bool:
    """Whether ``logs`` are large enough for windows and laid out as S5/S6 write them: the
    selection log (and edge log) per day, each event family and the trace in one file."""
    if logs is None or not logs.selection or logs.trace is None or logs.audit is None:
        return False
    families = (*S5_FAMILIES, *(("cdn_edge_pick",) if logs.edge else ()))
    if any(len(logs.events.get(name, ())) != 1 for name in families):
        return False
    if any(lf.utc_day is None for lf in (*logs.selection, *logs.edge)):
        return False
    files = [*logs.selection, *logs.edge, logs.trace, *(logs.events[n][0] for n in families)]
    return audit._total_size(files) > WINDOW_BYTES


def _plan(logs: RouterLogs) -> list[tuple[list[LogFile], list[LogFile]]]:
    """Windows of whole selection days (about :data:`WINDOW_SELECTION_BYTES` each) and the
    edge-log days each spans, in file order."""
    windows: list[list[LogFile]] = [[]]
    size = 0
    for lf in logs.selection:
        if size >= WINDOW_SELECTION_BYTES:
            windows.append([])
            size = 0
        windows[-1].append(lf)
        size += lf.path.stat().st_size
    firsts = [str(w[0].utc_day) for w in windows]
    lasts = [str(w[-1].utc_day) for w in windows]
    edges: list[list[LogFile]] = [[] for _ in windows]
    for lf in logs.edge:
        day = str(lf.utc_day)
        w = bisect.bisect_right(firsts, day) - 1
        if w < 0 or day > lasts[w]:
            raise _UndecidedError  # a virtual arrival on a day S5 routed nothing
        edges[w].append(lf)
    return list(zip(windows, edges, strict=True))


def _open(lf: LogFile) -> _Stream:
    """A non-empty file ending with a newline, mapped. The map is not closed explicitly: the
    tables' proofs hold views of it until they are dropped, and it goes with the stream."""
    if lf.path.stat().st_size == 0:
        raise _UndecidedError
    with lf.path.open("rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    if mm[-1] != ord("\n"):
        raise _UndecidedError
    return _Stream(lf, mm, np.frombuffer(mm, dtype=np.uint8))


def _proved_rows(
    stream: _Stream, rules: audit.RowRules, found: audit.Candidate | None
) -> JsonlTable:
    """The candidate's rows proved against ``stream`` from its position (which moves past
    them)."""
    if found is None:
        raise _UndecidedError
    columns, constants = found
    proved = audit._prove(
        pl.DataFrame(columns), rules, constants, [stream.data[stream.pos :]], whole=False
    )
    if proved is None:
        raise _UndecidedError
    frame, lengths, constant = proved
    stream.pos += int(lengths.sum(dtype=np.int64))
    return JsonlTable(frame, (stream.lf,), np.array([0, frame.height], dtype=np.int64), constant)


def _line_end(data: np.ndarray, start: int, count: int) -> int:
    """Byte offset just past the ``count``-th newline from ``start``."""
    span = max(count * 256, 1 << 16)
    while True:
        ends = np.flatnonzero(data[start : start + span] == ord("\n"))
        if ends.size >= count:
            return start + int(ends[count - 1]) + 1
        if start + span >= data.size:
            raise _UndecidedError  # fewer lines than rows to match
        span *= 4


def _parsed_rows(stream: _Stream, count: int, rules: audit.RowRules) -> JsonlTable:
    """The next ``count`` (> 0) lines of ``stream`` parsed and proved (a family S7 does not
    predict)."""
    end = _line_end(stream.data, stream.pos, count)
    window = stream.data[stream.pos : end]
    proved = audit.parsed_proof(window.tobytes(), [stream.mm], [window], rules)
    if proved is None or proved[0].height != count:
        raise _UndecidedError
    stream.pos = end
    frame, _, constant = proved
    return JsonlTable(frame, (stream.lf,), np.array([0, count], dtype=np.int64), constant)


def _carry_order(table: JsonlTable, column: str, last: str | None) -> str | None:
    """V-12 401 across windows: the first timestamp is not before the previous window's last."""
    if table.height == 0:
        return last
    ts = table.frame.get_column(column)
    if last is not None and ts[0] < last:
        raise _UndecidedError
    return str(ts[-1])


def _carry_counters(stream: _Stream, table: JsonlTable) -> None:
    """403 across windows: after-counters keep strictly increasing in file order."""
    if table.height == 0:
        return
    f = table.frame
    first = (int(f["rng_counter_after_hi"][0]), int(f["rng_counter_after_lo"][0]))
    if stream.last_after is not None and first <= stream.last_after:
        raise _UndecidedError
    stream.last_after = (int(f["rng_counter_after_hi"][-1]), int(f["rng_counter_after_lo"][-1]))


@dataclass(frozen=True)
class _SiteIndex:
    """2A's sites sorted by ``site_id`` (one row per site) with their merchant and tzid code:
    V-15 410 for a window is a binary search of its selections.

    Why not the exact path's join per window: a window of ~600k arrivals names nearly every
    merchant of a large world, so each join would hash every site of the world again (2.9M at
    123,800 merchants, 30 windows): time that grows with merchants × arrivals.
    """

    site_id: np.ndarray
    merchant_id: np.ndarray
    tz: np.ndarray
    tzids: pl.Enum

    @classmethod
    def of(cls, sites: pl.DataFrame) -> _SiteIndex | None:
        """The index of :func:`.s7_audit.site_map`'s table; None if two sites share a
        ``site_id`` (then a window cannot tell them apart by it alone) or a tzid is null."""
        ordered = sites.sort("site_id")
        sid = ordered.get_column("site_id").to_numpy()
        if sid.size == 0 or bool(np.any(sid[1:] == sid[:-1])) or ordered["tzid"].null_count():
            return None
        tzids = pl.Enum(ordered.get_column("tzid").unique().sort())
        return cls(
            site_id=sid,
            merchant_id=ordered.get_column("merchant_id").to_numpy(),
            tz=ordered.get_column("tzid").cast(tzids).to_physical().to_numpy(),
            tzids=tzids,
        )

    def holds(self, selections: pl.DataFrame) -> bool:
        """Whether every selection's ``(merchant_id, site_id)`` is a site whose tzid is the
        row's ``tz_group_id`` (V-15 410 passes)."""
        keys = selections.select(
            pl.col("merchant_id").cast(pl.UInt64, strict=False),
            pl.col("site_id").cast(pl.UInt64, strict=False),
            pl.col("tz_group_id").cast(self.tzids, strict=False).to_physical(),
        )
        if any(keys.null_count().row(0)):
            return False  # an unknown tzid, or an id that is not a u64
        mid, sid, tz = (keys.get_column(c).to_numpy() for c in keys.columns)
        at = np.minimum(np.searchsorted(self.site_id, sid), self.site_id.size - 1)
        return bool(
            np.all((self.site_id[at] == sid) & (self.merchant_id[at] == mid) & (self.tz[at] == tz))
        )


class _S4Days:
    """S4's rows (grain: merchant × UTC day × tz-group) split by ``utc_day`` once, so a window
    takes its days' rows instead of filtering the whole table (which grows with merchants) once
    per window (which grow with arrivals)."""

    def __init__(self, s4: pl.DataFrame) -> None:
        self._empty = s4.clear()
        self._days = {
            day: rows for (day,), rows in s4.partition_by("utc_day", as_dict=True).items()
        }

    def between(self, first: object, last: object) -> pl.LazyFrame:
        """The rows of the days from ``first`` to ``last`` (dates; none if either is null)."""
        if not isinstance(first, dt.date) or not isinstance(last, dt.date):
            return self._empty.lazy()
        rows = [
            r for day, r in self._days.items() if isinstance(day, dt.date) and first <= day <= last
        ]
        return pl.concat([self._empty, *rows], how="vertical").lazy()


@dataclass
class _Totals:
    windows: int = 0
    selections: int = 0
    virtuals: int = 0


def _windows(
    inputs: S7Inputs, logs: RouterLogs, pool: ThreadPoolExecutor, stack: contextlib.ExitStack
) -> _Totals:
    """Every router check of the exact path, window by window; raises on any doubt."""
    plan = _plan(logs)
    assert logs.trace is not None
    group, site = (_open(logs.events[n][0]) for n in S5_FAMILIES)
    cdn = _open(logs.events["cdn_edge_pick"][0]) if logs.edge else None
    trace = _open(logs.trace)
    fam_g, fam_s, fam_e = (FAMILIES[n] for n in (*S5_FAMILIES, "cdn_edge_pick"))
    rules_g, rules_s, rules_e = (audit.row_rules(f.schema_ref) for f in (fam_g, fam_s, fam_e))
    trace_rules = audit.row_rules(audit._TRACE_ROW)
    s5_law = audit._lines_at([trace.mm], 2)
    s4 = _S4Days(inputs.s4.select("merchant_id", "utc_day", "tz_group_id", "p_group").collect())
    sites = None
    if inputs.site_timezones is not None:
        sites = _SiteIndex.of(audit.site_map(inputs.site_timezones))
        if sites is None:
            raise _UndecidedError
    catalogue = audit._edge_catalogue(inputs.edge_policy) if logs.edge else None
    reader = audit._LogReader(None)
    totals = _Totals(windows=len(plan))
    last_sel: str | None = None
    last_edge: str | None = None
    virtual_words: list[tuple[np.ndarray, np.ndarray]] = []
    # Logs larger than memory come from disk: while a window is checked, a thread reads the
    # next window's bytes (its selection days; each single-file log by its share of the
    # selection bytes), so reading overlaps the checks instead of stalling them page by page.
    sel_bytes = np.cumsum([0, *(sum(f.path.stat().st_size for f in w) for w, _ in plan)])
    share = sel_bytes / max(int(sel_bytes[-1]), 1)
    singles = [s.lf for s in (group, site, cdn, trace) if s is not None]
    ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s7-ahead")
    stack.callback(ahead.shutdown, wait=False, cancel_futures=True)
    ahead.submit(
        _read_ahead,
        [(f, 0.0, 1.0) for f in (*plan[0][0], *plan[0][1])]
        + [(f, 0.0, float(share[1]) * 1.02) for f in singles],
    )

    def router_logs(k: int) -> tuple[JsonlTable, JsonlTable | None]:
        """V-12 for window ``k``'s two router logs, in the exact path's functions."""
        sel_files, edge_files = plan[k]
        sel = audit._read_router_log(
            sel_files, audit.SELECTION_ID, audit._SELECTION_ROW, inputs, reader
        )
        edge = (
            audit._read_router_log(edge_files, audit.EDGE_LOG_ID, audit._EDGE_ROW, inputs, reader)
            if edge_files
            else None
        )
        return sel, edge

    # The next window's router logs are parsed while a window is checked: the parse is the
    # one step of a window that needs nothing from the one before.
    parse = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s7-parse")
    stack.callback(parse.shutdown, wait=False, cancel_futures=True)
    upcoming = parse.submit(router_logs, 0)
    for k in range(len(plan)):
        a = totals.selections
        if k + 1 < len(plan):
            lo, hi = float(share[k + 1]) * 0.98, float(share[k + 2]) * 1.02
            ranges = [(f, 0.0, 1.0) for f in (*plan[k + 1][0], *plan[k + 1][1])]
            ahead.submit(_read_ahead, ranges + [(f, lo, hi) for f in singles])
        sel, edge = upcoming.result()
        if k + 1 < len(plan):
            upcoming = parse.submit(router_logs, k + 1)
        if sel.height == 0:
            raise _UndecidedError
        last_sel = _carry_order(sel, "utc_timestamp", last_sel)
        if edge is not None:
            last_edge = _carry_order(edge, "utc_timestamp", last_edge)
        # V-13: the window's group and site events, predicted from its selection rows.
        audit.check_stream(sel, inputs, "V-13")
        days = sel.frame.get_column("utc_day").str.to_date("%Y-%m-%d", strict=False)
        s4_days = s4.between(days.min(), days.max())
        counters = audit.s5_counters(sel.frame)
        if counters is None:
            raise _UndecidedError
        # The trace rows need only the selection rows: proved beside the events.
        trace_job = pool.submit(_s5_trace_rows, trace, trace_rules, counters, s5_law, a)
        g_job = pool.submit(_event_rows, group, fam_g, rules_g, sel, s4_days, first=a)
        s_rows = _event_rows(site, fam_s, rules_s, sel, None, first=a)
        g_rows = g_job.result()
        for stream, rows, fam in ((group, g_rows, fam_g), (site, s_rows, fam_s)):
            audit.check_events(rows, fam, logs, inputs, "V-13")
            _carry_counters(stream, rows)
        audit.s5_lineage(sel, g_rows.frame, s_rows.frame)
        # V-14: the window's virtual arrivals and their cdn_edge_pick events.
        if edge is not None:
            assert cdn is not None
            audit.check_stream(edge, inputs, "V-14")
            virtual = edge.frame.filter(pl.col("is_virtual"))
            if virtual.height:
                events = _parsed_rows(cdn, virtual.height, rules_e)
                audit.check_events(events, fam_e, logs, inputs, "V-14")
                _carry_counters(cdn, events)
                audit.edge_lineage(events, virtual)
            words = (audit._words(virtual, "ctr_edge_hi"), audit._words(virtual, "ctr_edge_lo"))
            if words[0] is None or words[1] is None:
                raise _UndecidedError
            virtual_words.append((words[0], words[1]))
            totals.virtuals += virtual.height
        # V-16: the window's rows of the trace's S5 segment.
        rows = trace_job.result()
        _check_trace(rows, trace_rules, logs, inputs)
        tf = audit.trace_frame(rows)
        audit.reconcile_family(rows, tf, fam_g, g_rows.frame, first=a)
        audit.reconcile_family(rows, tf, fam_s, s_rows.frame, first=a)
        # V-15 on the window's rows.
        if sites is not None and not sites.holds(sel.frame):
            raise _UndecidedError  # the exact path's V-15 join names the row
        if edge is not None and edge.height and catalogue is not None:
            audit.check_edges(edge, catalogue)
        totals.selections += sel.height
        for stream in (group, site, cdn, trace):
            if stream is not None:
                stream.release()
    if not (group.done and site.done and (cdn is None or cdn.done)):
        raise _UndecidedError  # more events than selections / virtual arrivals
    _s6_trace(trace, virtual_words, trace_rules, logs, inputs)
    if not trace.done:
        raise _UndecidedError
    audit.check_audit_log(inputs, logs)
    return totals


def _event_rows(
    stream: _Stream,
    fam: audit.Family,
    rules: audit.RowRules,
    sel: JsonlTable,
    s4: pl.LazyFrame | None,
    *,
    first: int,
) -> JsonlTable:
    """The window's group or site events, predicted from its selection rows and proved."""
    found = audit._event_candidate(fam, sel, s4, [stream.mm], rules, first_row=first)
    return _proved_rows(stream, rules, found)


def _s5_trace_rows(
    trace: _Stream,
    rules: audit.RowRules,
    counters: Sequence[tuple[np.ndarray, np.ndarray]],
    law: Sequence[bytes],
    first: int,
) -> JsonlTable:
    """The window's rows of the trace's S5 segment (group then site per arrival), proved."""
    frame = _segment([FAMILIES[n] for n in S5_FAMILIES], counters, law, first=first)
    return _proved_rows(trace, rules, audit._candidate(frame, rules, [trace.mm]))


def _segment(
    fams: Sequence[audit.Family],
    counters: Sequence[tuple[np.ndarray, np.ndarray]],
    law: Sequence[bytes],
    *,
    first: int,
) -> pl.DataFrame:
    frame = audit._trace_segment(fams, counters, law, first=first)
    if frame is None:
        raise _UndecidedError
    return frame


def _check_trace(
    rows: JsonlTable, rules: audit.RowRules, logs: RouterLogs, inputs: S7Inputs
) -> None:
    audit._scan_rows(
        rows,
        rules,
        validator="V-16",
        dataset=audit.TRACE_ID,
        expected=(("run_id", logs.run_id, "503"), ("seed", inputs.seed, "503")),
    )


def _s6_trace(
    trace: _Stream,
    virtual_words: list[tuple[np.ndarray, np.ndarray]],
    rules: audit.RowRules,
    logs: RouterLogs,
    inputs: S7Inputs,
) -> None:
    """V-16 for the trace's S6 segment (it follows the S5 segment): one row per virtual
    arrival with its event's counters. The events equal the edge-log counters (V-14 lineage)
    plus one block (V-14 budget), so the rows are predicted from those."""
    if not virtual_words:
        return
    hi = np.concatenate([h for h, _ in virtual_words])
    lo = np.concatenate([w for _, w in virtual_words])
    if hi.size == 0:
        return
    law = audit._lines_at([trace.mm], 2, pos=trace.pos)
    fam = FAMILIES["cdn_edge_pick"]
    for start in range(0, hi.size, _VIRTUAL_WINDOW):
        stop = start + _VIRTUAL_WINDOW
        frame = _segment([fam], [(hi[start:stop], lo[start:stop])], law, first=start)
        rows = _proved_rows(trace, rules, audit._candidate(frame, rules, [trace.mm]))
        _check_trace(rows, rules, logs, inputs)
        trace.release()


def router_windows(
    inputs: S7Inputs, ledger: AuditLedger, st: audit._State, pool: ThreadPoolExecutor
) -> bool:
    """V-12..V-16 in windows, recorded exactly as the exact path records a pass; False (and
    nothing recorded) if the windows cannot show that every check passes."""
    logs = inputs.router
    if not windowable(logs):
        return False
    assert logs is not None
    t0 = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            totals = _windows(inputs, logs, pool, stack)
    except (_UndecidedError, AuditError):
        return False
    n, v = totals.selections, totals.virtuals
    st.metrics["selections_checked"] = n
    ledger.passed("V-12")
    ledger.passed("V-13", {"selections": n})
    if logs.edge:
        ledger.passed("V-14", {"virtual_total": v})
    else:
        ledger.passed("V-14", {"note": audit.NOTE_S6_ABSENT})
    families = [("alias_pick_group", n), ("alias_pick_site", n)]
    if logs.edge:
        families.append(("cdn_edge_pick", v))
    st.samples["logs"] = {
        "runs": [
            {
                "parameter_hash": logs.parameter_hash,
                "run_id": logs.run_id,
                "events_total": sum(k for _, k in families),
            }
        ],
        "families": [{"family": name, "events": k} for name, k in families],
    }
    st.metrics["draws_expected"] = st.metrics["draws_observed"] = 2 * n + v
    ledger.passed("V-16", {"draws_expected": 2 * n + v, "draws_observed": 2 * n + v})
    if inputs.site_timezones is None:
        ledger.warned("V-15", ["410"], inputs.site_timezones_note)
    else:
        ledger.passed("V-15")
    st.durations["router_ms"] = round((time.perf_counter() - t0) * 1000)
    st.durations["router_windows"] = totals.windows
    return True
