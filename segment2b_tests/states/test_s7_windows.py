"""S7's arrival windows: the plan of windows, line arithmetic and when windows apply.

Their checks are tested end to end in ``test_s7_audit`` (every router fault and the passing
runs, windowed and exact)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segment2b.states import s7_windows
from segment2b.states.s7_audit import LogFile, RouterLogs
from segment2b.states.s7_windows import _line_end, _plan, _UndecidedError, windowable


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
