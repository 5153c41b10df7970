"""S7's arrival windows: the plan of windows, line arithmetic and when windows apply.

Their checks are tested end to end in ``test_s7_audit`` (every router fault and the passing
runs, windowed and exact)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from segment2b.states import s7_windows
from segment2b.states.s7_audit import LogFile, RouterLogs
from segment2b.states.s7_windows import (
    _line_end,
    _plan,
    _S4Days,
    _SiteIndex,
    _UndecidedError,
    windowable,
)


def _file(tmp_path: Path, name: str, size: int, day: str | None = None) -> LogFile:
    path = tmp_path / name
    path.write_bytes(b"x" * (size - 1) + b"\n")
    return LogFile(name, path, day)


def _logs(tmp_path: Path, days: list[str], edge_days: list[str], **kw: object) -> RouterLogs:
    sel = tuple(_file(tmp_path, f"sel-{d}", 100, d) for d in days)
    edge = tuple(_file(tmp_path, f"edge-{d}", 10, d) for d in edge_days)
    events = {
        name: (_file(tmp_path, name, 50),)
        for name in ("alias_pick_group", "alias_pick_site", "cdn_edge_pick")
    }
    args: dict[str, object] = {
        "selection": sel,
        "edge": edge,
        "events": events,
        "trace": _file(tmp_path, "trace", 50),
        "audit": _file(tmp_path, "audit", 5),
    }
    args.update(kw)
    return RouterLogs("ab" * 32, "cd" * 16, **args)  # type: ignore[arg-type]


def test_windows_take_whole_days_and_the_edge_days_they_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s7_windows, "WINDOW_SELECTION_BYTES", 200)  # two 100-byte days each
    days = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"]
    logs = _logs(tmp_path, days, ["2026-01-02", "2026-01-03", "2026-01-05"])
    plan = _plan(logs)
    assert [[f.utc_day for f in sel] for sel, _ in plan] == [days[:2], days[2:4], days[4:]]
    assert [[f.utc_day for f in edge] for _, edge in plan] == [
        ["2026-01-02"],
        ["2026-01-03"],
        ["2026-01-05"],
    ]


@pytest.mark.parametrize("orphan", ["2025-12-31", "2026-01-06"])
def test_an_edge_day_without_selections_leaves_it_to_the_exact_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, orphan: str
) -> None:
    monkeypatch.setattr(s7_windows, "WINDOW_SELECTION_BYTES", 1)
    logs = _logs(tmp_path, ["2026-01-01", "2026-01-02"], [orphan])
    with pytest.raises(_UndecidedError):
        _plan(logs)


def test_line_end_counts_newlines_from_a_position() -> None:
    data = np.frombuffer(b"a\nbb\n\nccc\n" * 30_000, dtype=np.uint8)
    ends = np.flatnonzero(data == ord("\n")) + 1
    for start_line, count in [(0, 1), (0, 4), (3, 5), (7, 60_000), (100, 119_900)]:
        start = 0 if start_line == 0 else int(ends[start_line - 1])
        assert _line_end(data, start, count) == ends[start_line + count - 1]
    with pytest.raises(_UndecidedError):
        _line_end(data, int(ends[-3]), 3 + 1)


def test_windows_apply_to_large_logs_laid_out_as_s5_and_s6_write_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    days = ["2026-01-01", "2026-01-02"]
    logs = _logs(tmp_path, days, days[:1])
    assert not windowable(logs)  # below the size
    monkeypatch.setattr(s7_windows, "WINDOW_BYTES", 0)
    assert windowable(logs)
    assert not windowable(None)
    assert not windowable(_logs(tmp_path, days, [], trace=None))
    assert not windowable(_logs(tmp_path, [], days))  # edge log without selection log
    parts = dict(logs.events)
    parts["alias_pick_site"] = (*parts["alias_pick_site"], _file(tmp_path, "part2", 5))
    assert not windowable(_logs(tmp_path, days, [], events=parts))
    no_cdn = {k: v for k, v in logs.events.items() if k != "cdn_edge_pick"}
    assert windowable(_logs(tmp_path, days, [], events=no_cdn))  # no edge log: not needed
    assert not windowable(_logs(tmp_path, days, days, events=no_cdn))


def _sites() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "merchant_id": pl.Series([7, 7, 9], dtype=pl.UInt64),
            "site_id": pl.Series([2**63 + 5, 3, 11], dtype=pl.UInt64),
            "tzid": ["Europe/Paris", "Europe/Berlin", "America/Lima"],
        }
    )


def _selections(rows: list[tuple[int, int, str]]) -> pl.DataFrame:
    mid, sid, tz = zip(*rows, strict=True)
    return pl.DataFrame(
        {
            "merchant_id": pl.Series(mid, dtype=pl.UInt64),
            "site_id": pl.Series(sid, dtype=pl.UInt64),
            "tz_group_id": list(tz),
        }
    )


def test_the_site_index_passes_selections_of_their_merchants_sites_in_their_group() -> None:
    index = _SiteIndex.of(_sites())
    assert index is not None
    good = [(9, 11, "America/Lima"), (7, 2**63 + 5, "Europe/Paris"), (7, 3, "Europe/Berlin")]
    assert index.holds(_selections(good))


@pytest.mark.parametrize(
    "bad",
    [
        (7, 3, "Europe/Paris"),  # another group's site
        (9, 3, "Europe/Berlin"),  # another merchant's site
        (7, 4, "Europe/Berlin"),  # no such site (between two ids)
        (7, 2**64 - 1, "Europe/Paris"),  # no such site (past the last id)
        (7, 3, "Asia/Tokyo"),  # a tzid no site has
    ],
)
def test_the_site_index_refuses_what_v15_410_refuses(bad: tuple[int, int, str]) -> None:
    index = _SiteIndex.of(_sites())
    assert index is not None
    assert not index.holds(_selections([(9, 11, "America/Lima"), bad]))


def test_the_site_index_declines_sites_it_cannot_tell_apart() -> None:
    shared = _sites().with_columns(pl.Series("site_id", [3, 3, 11], dtype=pl.UInt64))
    assert _SiteIndex.of(shared) is None
    assert _SiteIndex.of(_sites().clear()) is None
    assert _SiteIndex.of(_sites().with_columns(pl.lit(None, pl.String).alias("tzid"))) is None


def test_s4_by_day_gives_a_windows_days_and_nothing_for_unparsed_days() -> None:
    day = [dt.date(2026, 1, d) for d in (1, 2, 3, 2)]
    s4 = pl.DataFrame(
        {"merchant_id": [1, 1, 1, 2], "utc_day": day, "tz_group_id": ["A"] * 4, "p_group": 1.0}
    )
    by_day = _S4Days(s4)
    got = by_day.between(dt.date(2026, 1, 2), dt.date(2026, 1, 3)).collect()
    assert sorted(got.select("merchant_id", "utc_day").rows()) == [
        (1, day[1]),
        (1, day[2]),
        (2, day[1]),
    ]
    for first, last in ((None, day[2]), (dt.date(2026, 2, 1), dt.date(2026, 2, 9))):
        empty = by_day.between(first, last).collect()
        assert empty.height == 0 and empty.schema == s4.schema
